// Removing acknowledged publishes from the store: a failure is counted, reported and retried
// with a growing delay, a bounded number of times; never dropped in silence.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Removals, removalWarning } from '../../src/staywire/static/removals.js';
import { MemoryStore, Outbox } from '../../src/staywire/static/outbox.js';

/** Timers run by hand: `run()` fires the earliest. */
class FakeTimers {
  constructor() {
    this.pending = [];
    this.now = 0;
    this.setTimeout = (fn, ms) => {
      const t = { fn, at: this.now + ms, ms };
      this.pending.push(t);
      return t;
    };
    this.clearTimeout = (t) => { this.pending = this.pending.filter((p) => p !== t); };
  }
  async run() {
    this.pending.sort((a, b) => a.at - b.at);
    const t = this.pending.shift();
    assert.ok(t, 'a timer is pending');
    this.now = t.at;
    t.fn();
    await new Promise((r) => setImmediate(r));
    return t.ms;
  }
}

/** A store whose removals fail `failures` times, then work. */
function flakyStore(failures) {
  const store = new MemoryStore();
  const real = store.remove.bind(store);
  store.calls = 0;
  store.remove = async (key) => {
    store.calls += 1;
    if (store.calls <= failures) throw new Error(`refused ${store.calls}`);
    return real(key);
  };
  return store;
}

describe('Removals', () => {
  it('retries a failed removal with a doubling delay until it works', async () => {
    const timers = new FakeTimers();
    const store = flakyStore(3);
    await store.add({ key: 'k' });
    const errors = [];
    const removals = new Removals(store, { ...timers, delay: 100,
      onError: (err, key, attempt, final) => errors.push([err.message, key, attempt, final]) });
    const done = removals.remove('k');
    await new Promise((r) => setImmediate(r));
    assert.equal(removals.failures, 1);
    assert.equal(removals.retrying('k'), true);
    assert.deepEqual([await timers.run(), await timers.run(), await timers.run()], [100, 200, 400]);
    assert.equal(await done, true);
    assert.equal(store.records.size, 0);
    assert.equal(removals.failures, 3);
    assert.equal(removals.pending, 0);
    assert.deepEqual(errors, [['refused 1', 'k', 1, false], ['refused 2', 'k', 2, false],
      ['refused 3', 'k', 3, false]]);
  });

  it('gives up after `attempts`, saying so, and resolves false', async () => {
    const timers = new FakeTimers();
    const store = flakyStore(Infinity);
    const errors = [];
    const removals = new Removals(store, { ...timers, attempts: 3, delay: 10,
      onError: (err, key, attempt, final) => errors.push([attempt, final]) });
    const done = removals.remove('k');
    await new Promise((r) => setImmediate(r));
    await timers.run();
    await timers.run();
    assert.equal(await done, false);
    assert.deepEqual(errors, [[1, false], [2, false], [3, true]]);
    assert.equal(timers.pending.length, 0);
    assert.match(removalWarning(new Error('x'), 'k', 3, true), /failed 3 times .*next page retries/);
  });

  it('close() stops the retries and settles their promises', async () => {
    const timers = new FakeTimers();
    const removals = new Removals(flakyStore(Infinity), timers);
    const done = removals.remove('k');
    await new Promise((r) => setImmediate(r));
    assert.equal(timers.pending.length, 1);
    removals.close();
    assert.equal(await done, false);
    assert.equal(timers.pending.length, 0);
  });
});

describe('Outbox removals', () => {
  it('an acked entry whose removal fails is reported, counted and removed on a retry', async () => {
    const store = flakyStore(1);
    const timers = new FakeTimers();
    const errors = [];
    const onError = (err, key) => errors.push(key);
    const box = new Outbox({ store, removals: new Removals(store, { ...timers, onError }) });
    await box.add('room', 'a', 'k1');
    box.ack('k1');
    await new Promise((r) => setImmediate(r));
    assert.equal(box.size, 0); // forgotten here at once
    assert.deepEqual(errors, ['k1']);
    assert.equal(box.removeFailures, 1);
    assert.equal(store.records.size, 1); // still stored
    await timers.run();
    assert.equal(store.records.size, 0);
  });

  it('reports through onStoreError by default', async () => {
    const store = flakyStore(Infinity);
    const seen = [];
    const box = new Outbox({ store, onStoreError: (err, key, attempt) => seen.push([key, attempt]) });
    await box.add('room', 'a', 'k1');
    box.reject('k1');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(seen, [['k1', 1]]);
    box.close(); // no retry timer left behind
  });
});
