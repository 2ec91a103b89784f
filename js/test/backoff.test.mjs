// Backoff: 1 s doubling to a 30 s cap, times 0.5 + random(); a retry budget; the retry timer.
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

  it('runs the callback after each delay and counts attempts in a row', () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
    const calls = [];
    const timer = new RetryTimer(() => calls.push(Date.now()), new Backoff({ random: () => 0.5 }));
    assert.deepEqual(timer.schedule(), { attempt: 1, delay: 1000, at: 1000 });
    assert.equal(timer.at, 1000);
    mock.timers.tick(999);
    assert.deepEqual(calls, []);
    mock.timers.tick(1);
    assert.deepEqual(calls, [1000]);
    assert.equal(timer.at, null);
    assert.deepEqual(timer.schedule(), { attempt: 2, delay: 2000, at: 3000 });
    mock.timers.tick(2000);
    assert.deepEqual(timer.schedule(), { attempt: 3, delay: 4000, at: 7000 });
    mock.timers.tick(4000);
    assert.deepEqual(calls, [1000, 3000, 7000]);
  });

  it('starts again from the base delay after reset() (a welcome)', () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
    const timer = new RetryTimer(() => {}, new Backoff({ jitter: false }));
    timer.schedule();
    mock.timers.tick(1000);
    timer.schedule();
    timer.reset();
    assert.equal(timer.pending, false);
    assert.equal(timer.schedule().delay, 1000);
  });

  it('returns null when the budget is spent, without scheduling', () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
    let calls = 0;
    const timer = new RetryTimer(() => { calls += 1; }, new Backoff({ jitter: false, maxRetries: 2 }));
    assert.ok(timer.schedule());
    mock.timers.tick(1000);
    assert.ok(timer.schedule());
    mock.timers.tick(2000);
    assert.equal(timer.schedule(), null);
    assert.equal(timer.pending, false);
    mock.timers.tick(60000);
    assert.equal(calls, 2);
    assert.equal(timer.attempts, 2);
  });

  it('lets a drain override the delay, still counting the attempt', () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
    let calls = 0;
    const timer = new RetryTimer(() => { calls += 1; }, new Backoff({ jitter: false }));
    assert.deepEqual(timer.schedule(250), { attempt: 1, delay: 250, at: 250 });
    mock.timers.tick(250);
    assert.equal(calls, 1);
    timer.schedule();
    timer.cancel();
    mock.timers.tick(10000);
    assert.equal(calls, 1);
  });
});
