// Backoff: 1 s doubling to a 30 s cap, times 0.5 + random(); a retry budget; the retry timer.
// The decision after each close is in reconnect.js, held to the Python client's by
// tests/vectors/reconnect.json (vectors.test.mjs).
import { describe, it, mock, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff, RetryTimer, jittered } from '../../src/staywire/static/backoff.js';

describe('Backoff', () => {
  it('doubles from 1 s to a 30 s cap before jitter', () => {
    const b = new Backoff({ jitter: false, maxRetries: Infinity });
    const delays = Array.from({ length: 8 }, (_, i) => b.delay(i + 1));
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    assert.equal(b.nominal(1000), 30000); // no overflow far out
  });

  it('multiplies by 0.5 + random(), so each delay is in [0.5, 1.5) times the nominal', () => {
    assert.equal(new Backoff({ random: () => 0 }).delay(1), 500);
    assert.equal(new Backoff({ random: () => 0.5 }).delay(2), 2000);
    assert.equal(new Backoff({ random: () => 0.999 }).delay(6), 30000 * (0.5 + 0.999));
    // The cap applies before the jitter: clients at the cap stay spread out.
    assert.equal(new Backoff({ random: () => 0.999, maxRetries: Infinity }).delay(20), 30000 * (0.5 + 0.999));
    assert.equal(jittered(1000, () => 0.25), 750);
  });

  it('uses Math.random by default, within the bounds', () => {
    const b = new Backoff({ maxRetries: Infinity });
    for (let attempt = 1; attempt <= 10; attempt += 1) {
      for (let i = 0; i < 50; i += 1) {
        const d = b.delay(attempt);
        assert.ok(d >= 0.5 * b.nominal(attempt) && d < 1.5 * b.nominal(attempt), `${attempt}: ${d}`);
      }
    }
  });

  it('gives up after maxRetries attempts (10 by default, like the Python client)', () => {
    const b = new Backoff();
    assert.notEqual(b.delay(10), null);
    assert.equal(b.delay(11), null);
    assert.equal(new Backoff({ maxRetries: 0 }).delay(1), null);
    assert.notEqual(new Backoff({ maxRetries: Infinity }).delay(1e6), null);
  });

  it('refuses nonsense', () => {
    assert.throws(() => new Backoff({ factor: 0.5 }), RangeError);
    assert.throws(() => new Backoff({ base: -1 }), RangeError);
    assert.throws(() => new Backoff({ maxRetries: -1 }), RangeError);
    assert.throws(() => new Backoff().nominal(0), RangeError);
  });
});

describe('RetryTimer', () => {
  afterEach(() => mock.timers.reset());

  it('runs the callback once after the delay and says when', () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
    const calls = [];
    const timer = new RetryTimer(() => calls.push(Date.now()));
    assert.equal(timer.schedule(1000), 1000);
    assert.equal(timer.at, 1000);
    assert.equal(timer.pending, true);
    mock.timers.tick(999);
    assert.deepEqual(calls, []);
    mock.timers.tick(1);
    assert.deepEqual(calls, [1000]);
    assert.equal(timer.at, null);
    assert.equal(timer.pending, false);
  });

  it('keeps one pending attempt: a new schedule replaces it, cancel drops it', () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
    let calls = 0;
    const timer = new RetryTimer(() => { calls += 1; });
    timer.schedule(5000);
    assert.equal(timer.schedule(250), 250);
    mock.timers.tick(10000);
    assert.equal(calls, 1);
    timer.schedule(-5); // never in the past
    assert.equal(timer.at, 10000);
    timer.cancel();
    mock.timers.tick(10000);
    assert.equal(calls, 1);
    assert.equal(timer.at, null);
  });
});
