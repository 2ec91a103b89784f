// The publish pacer with a fake clock: what it lets out never empties the server's own
// buckets (the same limits at full rate and burst), as the Python client's Pacer test.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Pacer, TokenBucket, RATE_SHARE, utf8Length } from '../../src/staywire/static/pacer.js';

class ServerBucket extends TokenBucket {
  take(now, cost = 1) {
    this._refill(now);
    if (this.tokens + 1e-9 < cost) return false;
    this.tokens -= cost;
    return true;
  }
}

describe('Pacer', () => {
  it('says how long to wait, and takes nothing while waiting', () => {
    const b = new TokenBucket(2, 4, 0);
    assert.equal(b.delay(0, 4), 0);
    b.tokens = 0;
    assert.equal(b.delay(0), 0.5);
    assert.equal(b.delay(0.25), 0.25);
    assert.equal(b.tokens, 0.5);
  });

  it('keeps a client under the server\'s buckets, at about its share of the rate', () => {
    const limit = { messages: 10, burst: 20, bytes: 1000, bytes_burst: 2000 };
    const msgs = new ServerBucket(10, 20, 0);
    const bytes = new ServerBucket(1000, 2000, 0);
    const pacer = new Pacer(limit, 0);
    const sizes = Array.from({ length: 40 }, () => [50, 300, 2000, 10, 900]).flat();
    let now = 0;
    for (const size of sizes) {
      now += pacer.delay(now, size); // wait for the turn, as the hub does
      assert.equal(pacer.delay(now, size), 0); // one wait is always enough
      pacer.charge(now, size);
      assert.ok(msgs.take(now) && bytes.take(now, size), `refused at ${now}`);
    }
    const total = sizes.reduce((a, b) => a + b, 0);
    assert.ok(now <= total / (1000 * RATE_SHARE) + 1, `${now}`);
    assert.ok(pacer.delay(now, 10) > 0);
  });

  it('charges what else was sent: a publish right after waits its turn', () => {
    const pacer = new Pacer({ messages: 10, burst: 20, bytes: 1e6, bytes_burst: 1e6 }, 0);
    assert.equal(pacer.inFlight, 10); // half the burst awaits its ack at most
    for (let i = 0; i < 12; i += 1) pacer.charge(0, 30); // subscribes: never wait, may overdraw
    assert.ok(Math.abs(pacer.delay(0, 30) - 3 / 8) < 1e-9); // 3 tokens short at 8/s
  });

  it('counts UTF-8 bytes, as the server does', () => {
    assert.equal(utf8Length('abc'), 3);
    assert.equal(utf8Length('é'), 2);
    assert.equal(utf8Length('日本'), 6);
    assert.equal(utf8Length('😀'), 4);
  });

  it('paces nothing without a well-formed announcement', () => {
    assert.equal(Pacer.from(undefined, 0), null);
    assert.equal(Pacer.from({ messages: 0, burst: 1, bytes: 1, bytes_burst: 1 }, 0), null);
    assert.ok(Pacer.from({ messages: 1, burst: 1, bytes: 1, bytes_burst: 1 }, 0) instanceof Pacer);
  });
});
