// The shared vectors in tests/vectors/*.json: the same event sequences and expected
// decisions (and, for binary.json, the same bytes) that tests/protocol/test_vectors.py and
// test_binary.py run against the Python twins, so a change
// to one side that the other lacks fails here or there. The vectors count time in seconds;
// the browser client counts milliseconds for reconnects (converted here) and seconds for the
// pacer (as in Python).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Backoff } from '../../src/staywire/static/backoff.js';
import { ChannelCursor } from '../../src/staywire/static/cursor.js';
import { Outbox } from '../../src/staywire/static/outbox.js';
import { Pacer } from '../../src/staywire/static/pacer.js';
import { ReconnectSchedule } from '../../src/staywire/static/reconnect.js';
import { QueueFull } from '../../src/staywire/static/errors.js';
import { BinaryFrameError, decodeFrame, encodeFrame, serverMessage } from '../../src/staywire/static/binary.js';
import { SUBPROTOCOLS } from '../../src/staywire/static/codes.js';

const load = (name) => JSON.parse(readFileSync(new URL(`../../tests/vectors/${name}.json`, import.meta.url)));

/** Equal within a relative 1e-9: both sides do the same float operations, in other units. */
function close(actual, expected, what) {
  assert.ok(typeof actual === 'number', `${what}: ${actual} is not a number`);
  assert.ok(Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected)), `${what}: ${actual} != ${expected}`);
}

function randoms(values = []) {
  let i = 0;
  return () => {
    assert.ok(i < values.length, 'the vector gives too few random values');
    return values[i++];
  };
}

function backoff(policy, random) {
  return new Backoff({
    base: policy.base * 1000, factor: policy.factor, cap: policy.cap * 1000,
    maxRetries: policy.max_retries ?? Infinity, jitter: policy.jitter ?? false, random,
  });
}

const hex = (bytes) => Buffer.from(bytes).toString('hex');
const unhex = (text) => new Uint8Array(Buffer.from(text, 'hex'));

const pos = (p) => (p === null ? null : [p.epoch, p.offset]);

describe('shared vectors: backoff', () => {
  for (const c of load('backoff').cases) {
    it(c.name, () => {
      if (c.invalid) {
        assert.throws(() => backoff(c.policy), RangeError);
        return;
      }
      const b = backoff(c.policy, randoms(c.random));
      for (const [attempt, delay] of c.expect) {
        const got = b.delay(attempt);
        if (delay === null) assert.equal(got, null, `attempt ${attempt}`);
        else close(got, delay * 1000, `attempt ${attempt}`);
      }
    });
  }
});

describe('shared vectors: reconnect decision', () => {
  for (const c of load('reconnect').cases) {
    it(c.name, () => {
      const random = randoms(c.random);
      const s = new ReconnectSchedule(backoff(c.policy, random), { canRefresh: c.can_refresh, random });
      c.steps.forEach((step, i) => {
        const what = `step ${i}`;
        if (step.opened) {
          s.opened();
        } else if ('drain' in step) {
          close(s.drain(step.drain, step.now * 1000), step.expect * 1000, what);
        } else {
          const got = s.after(step.close, 'why', step.now * 1000);
          if (typeof step.expect === 'number') close(got, step.expect * 1000, what);
          else {
            assert.ok(got instanceof Error, `${what}: ${got} is not an error`);
            assert.equal(got.constructor.name, step.expect.error, what);
            assert.equal(got.code, step.close, what);
          }
        }
        if ('attempts' in step) assert.equal(s.attempts, step.attempts, `${what}: attempts`);
      });
    });
  }
});

describe('shared vectors: pacer', () => {
  for (const c of load('pacer').cases) {
    it(c.name, () => {
      const p = Pacer.from(c.limit, c.now);
      if (c.none) {
        assert.equal(p, null);
        return;
      }
      assert.equal(p.inFlight, c.in_flight);
      c.steps.forEach((step, i) => {
        if ('charge' in step) p.charge(step.now, step.charge);
        else close(p.delay(step.now, step.delay), step.expect, `step ${i}`);
      });
    });
  }
});

describe('shared vectors: channel cursor', () => {
  for (const c of load('cursor').cases) {
    it(c.name, () => {
      const start = c.position === null ? null : { epoch: c.position[0], offset: c.position[1] };
      const cursor = new ChannelCursor('room', start);
      c.steps.forEach((step, i) => {
        const what = `step ${i}`;
        if (step.subscribe) assert.deepEqual(pos(cursor.subscribe()), step.since, what);
        else if (step.lost) cursor.connectionLost();
        else if (step.unsub_ack) cursor.onUnsubscribed();
        else if (step.begin_resync) assert.deepEqual(pos(cursor.beginResync()), step.since, what);
        else if (step.msg) assert.equal(cursor.onMessage(...step.msg), step.expect, what);
        else if (step.ack) {
          const o = cursor.onSubscribed(...step.ack);
          assert.deepEqual({
            live: o.live, unrecovered: o.unrecovered, epoch_changed: o.epochChanged,
            previous: pos(o.previous), resync_from: pos(o.resyncFrom), missing: o.missing,
          }, step.expect, what);
        } else assert.fail(`${what}: unknown step ${JSON.stringify(step)}`);
        if ('state' in step) assert.equal(cursor.state, step.state, `${what}: state`);
        if ('position' in step) assert.deepEqual(pos(cursor.position), step.position, `${what}: position`);
      });
    });
  }
});

describe('shared vectors: outbox', () => {
  for (const c of load('outbox').cases) {
    it(c.name, async () => {
      const outbox = new Outbox({ maxMessages: c.bounds.max_messages, maxBytes: c.bounds.max_bytes });
      let conn = 1;
      for (const [i, step] of c.steps.entries()) {
        const what = `step ${i}`;
        if (step.add) {
          const [key, channel, data] = step.add;
          const adding = outbox.add(channel, data, key);
          if (step.error === 'queue_full') await assert.rejects(adding, QueueFull, what);
          else if (step.error === 'duplicate') await assert.rejects(adding, /already in the outbox/, what);
          else await adding;
        } else if (step.send) outbox.markSent(step.send, `c${conn}`);
        else if (step.ack) outbox.ack(step.ack);
        else if (step.reject) outbox.reject(step.reject);
        else if (step.discard) outbox.discard(step.discard);
        else if (step.lost) {
          outbox.connectionLost();
          conn += 1;
        } else assert.fail(`${what}: unknown step ${JSON.stringify(step)}`);
        if ('unsent' in step) assert.deepEqual(outbox.unsent(`c${conn}`).map((e) => e.key), step.unsent, `${what}: unsent`);
        if ('held' in step) assert.deepEqual(outbox.entries().map((e) => e.key), step.held, `${what}: held`);
        if ('size' in step) assert.equal(outbox.size, step.size, `${what}: size`);
        if ('bytes' in step) assert.equal(outbox.bytes, step.bytes, `${what}: bytes`);
      }
      outbox.close();
    });
  }
});

// Refused by the server for their fields (a channel name, a chunk's rules, an unknown
// field): the client never decodes client frames, and checks a header's fields as it checks
// a text message's. Every other invalid vector is broken framing the codec itself refuses.
const FIELD_RULES = new Set([
  'unknown field', 'bad channel', 'chunk at on seq 0', 'chunk last without sha256',
  'chunk sha256 not last', 'chunk meta after seq 0', 'chunk abort from a client',
  'chunk transfer id with a space',
]);

describe('shared vectors: binary frames', () => {
  const vectors = load('binary');
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
});
