// The binary codec (binary.js) beyond the shared vectors (vectors.test.mjs runs
// tests/vectors/binary.json), and the incremental SHA-256 (sha256.js) against node:crypto.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { encodeFrame, fromBase64, serverMessage, toBase64 } from '../../src/staywire/static/binary.js';
import { Sha256 } from '../../src/staywire/static/sha256.js';

describe('binary frames', () => {
  it('refuses a client frame among server frames, and a msg without its position', () => {
    assert.throws(() => serverMessage(encodeFrame({ type: 'pub', id: 1, channel: 'r' })), { code: 'unknown_type' });
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
