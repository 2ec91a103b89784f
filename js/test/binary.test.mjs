// The binary codec (binary.js) against the byte vectors shared with protocol/binary.py, and
// the incremental SHA-256 (sha256.js) against node:crypto.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import {
  BinaryFrameError, decodeFrame, encodeFrame, fromBase64, serverMessage, toBase64,
} from '../../src/staywire/static/binary.js';
import { Sha256 } from '../../src/staywire/static/sha256.js';
import { SUBPROTOCOLS } from '../../src/staywire/static/codes.js';

const vectors = JSON.parse(readFileSync(new URL('../../tests/vectors/binary.json', import.meta.url)));
const hex = (bytes) => Buffer.from(bytes).toString('hex');
const unhex = (text) => new Uint8Array(Buffer.from(text, 'hex'));

// Refused by the server for their fields (a channel name, a chunk's rules, an unknown
// field): the client never decodes client frames, and checks a header's fields as it checks
// a text message's. Every other invalid vector is broken framing the codec itself refuses.
const FIELD_RULES = new Set([
  'unknown field', 'bad channel', 'chunk at on seq 0', 'chunk last without sha256',
  'chunk sha256 not last', 'chunk meta after seq 0', 'chunk abort from a client',
  'chunk transfer id with a space',
]);

describe('binary frames: shared vectors', () => {
  it('offers v2 then v1', () => assert.deepEqual([...SUBPROTOCOLS], ['staywire.v2', 'staywire.v1']));

  for (const v of vectors.frames) {
    it(`encodes and decodes: ${v.name}`, () => {
      assert.equal(hex(encodeFrame(v.header, unhex(v.payload))), v.frame);
      const { header, payload } = decodeFrame(unhex(v.frame), [v.header.type]);
      assert.deepEqual(header, v.header);
      assert.equal(hex(payload), v.payload);
    });
  }

  it('server frames become messages with an ArrayBuffer of their own', () => {
    for (const v of vectors.frames.filter((f) => f.header.type === 'msg' || f.header.type === 'result')) {
      const frame = unhex(v.frame);
      const msg = serverMessage(frame);
      assert.ok(msg.data instanceof ArrayBuffer);
      assert.equal(hex(new Uint8Array(msg.data)), v.payload);
      assert.equal(msg.data.byteLength, unhex(v.payload).length); // not the whole frame
      assert.deepEqual({ ...msg, data: undefined, binary: undefined }, { ...v.header, data: undefined, binary: undefined });
    }
  });

  for (const v of vectors.invalid) {
    it(`refuses: ${v.name}`, () => {
      const frame = unhex(v.frame);
      if (FIELD_RULES.has(v.name)) {
        // Framing and type are fine: the codec hands the header on.
        assert.equal(decodeFrame(frame, ['pub', 'rpc']).header.type, 'pub');
        return;
      }
      assert.throws(() => decodeFrame(frame, ['pub', 'rpc']),
        (err) => err instanceof BinaryFrameError && err.code === v.code, v.name);
    });
  }

  it('refuses a client frame among server frames, and a msg without its position', () => {
    assert.throws(() => serverMessage(unhex(vectors.frames[0].frame)), { code: 'unknown_type' });
    assert.throws(() => serverMessage(encodeFrame({ type: 'msg', channel: 'r' })), { code: 'bad_request' });
  });

  it('refuses to encode a header over 2048 bytes', () => {
    assert.throws(() => encodeFrame({ type: 'pub', id: 1, channel: 'x'.repeat(2048) }), RangeError);
  });

  it('base64 round-trips every byte value, and long inputs', () => {
    const all = new Uint8Array(256).map((_, i) => i);
    assert.equal(toBase64(all), Buffer.from(all).toString('base64'));
    const big = new Uint8Array(randomBytes(200_001));
    assert.deepEqual(fromBase64(toBase64(big)), big);
  });
});

describe('sha256', () => {
  it('matches node:crypto for every length around the block and padding edges', () => {
    for (let n = 0; n < 200; n += 1) {
      const data = new Uint8Array(randomBytes(n));
      assert.equal(new Sha256().update(data).hex(), createHash('sha256').update(data).digest('hex'), `length ${n}`);
    }
  });

  it('gives the same digest fed in uneven pieces', () => {
    const data = new Uint8Array(randomBytes(300_000));
    const h = new Sha256();
    let at = 0;
    for (const size of [1, 63, 64, 65, 1000, 4096, 7]) {
      h.update(data.subarray(at, at + size));
      at += size;
    }
    h.update(data.subarray(at));
    assert.equal(h.hex(), createHash('sha256').update(data).digest('hex'));
    assert.equal(new Sha256().update(new TextEncoder().encode('abcdef')).hex(),
      'bef57ec7f53a6d40beb640a780a639c83bc29ac8a9816f1fc6c5c6dcd93c4721'); // the vectors' transfer
  });
});
