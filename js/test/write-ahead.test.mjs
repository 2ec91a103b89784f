// The write-ahead: a publish is durable (in localStorage) before publish() returns, copied to
// IndexedDB in batches, and gone from localStorage once that committed or once acked; what a
// reload cut short is found, once, by whoever reads the store next.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { WriteAheadStore, defaultStorage } from '../../src/staywire/static/write-ahead.js';
import { Outbox } from '../../src/staywire/static/outbox.js';
import { QueueFull } from '../../src/staywire/static/errors.js';

/** localStorage: synchronous, shared by every "tab" given the same one, with a quota. */
class FakeStorage {
  constructor({ quota = Infinity } = {}) {
    this.map = new Map();
    this.quota = quota;
    this.sets = 0;
  }
  get length() { return this.map.size; }
  key(i) { return [...this.map.keys()][i] ?? null; }
  getItem(k) { return this.map.has(k) ? this.map.get(k) : null; }
  setItem(k, v) {
    const used = [...this.map].reduce((n, [key, val]) => n + (key === k ? 0 : key.length + val.length), 0);
    if (used + k.length + v.length > this.quota) {
      const err = new Error('quota');
      err.name = 'QuotaExceededError';
      throw err;
    }
    this.sets += 1;
    this.map.set(k, String(v));
  }
  removeItem(k) { this.map.delete(k); }
  items(prefix = 'staywire:wal:') { return [...this.map.keys()].filter((k) => k.startsWith(prefix)).sort(); }
}

/**
 * IndexedDB as the write-ahead sees it: committed records, shared by the tabs given the same
 * `db`; commits wait for `gate()` when held, or never come (`hang`: the page went away).
 */
class FakeBacking {
  constructor(db = new Map()) {
    this.name = 'staywire';
    this.db = db;
    this.batches = [];
    this.removed = [];
    this.hang = false;
    this.fail = null;
    this.held = null;
  }
  hold() {
    let release;
    this.held = new Promise((r) => { release = r; });
    return () => { this.held = null; release(); };
  }
  async ready() {}
  async addMany(records) {
    this.batches.push(records.map((r) => r.key));
    if (this.held) await this.held;
    if (this.hang) return new Promise(() => {});
    if (this.fail) throw this.fail;
    for (const r of records) this.db.set(r.key, { ...r });
  }
  async add(record) { return this.addMany([record]); }
  async remove(key) { this.removed.push(key); this.db.delete(key); }
  async all() { return [...this.db.values()]; }
}

const tick = () => new Promise((r) => setImmediate(r));
let n = 0;
const rec = (key, extra = {}) => ({ key, seq: (n += 1), channel: 'room', data: JSON.stringify({ key }), size: 9,
  owner: 'tab1', target: 'ws://h/ws', createdAt: 1000 + n, ...extra });

describe('WriteAheadStore', () => {
  it('makes a record durable before write() returns, then moves it to the backing store', async () => {
    const storage = new FakeStorage();
    const backing = new FakeBacking();
    const store = new WriteAheadStore(backing, { storage });
    assert.equal(store.write(rec('k1')), true);
    // Synchronously: in localStorage, not yet in the backing store.
    assert.deepEqual(storage.items(), ['staywire:wal:k1']);
    assert.equal(JSON.parse(storage.getItem('staywire:wal:k1')).key, 'k1');
    assert.equal(backing.db.size, 0);
    assert.equal(store.size, 1);
    await tick();
    assert.deepEqual([...backing.db.keys()], ['k1']);
    assert.deepEqual(storage.items(), []); // removed once committed
    assert.equal(store.size, 0);
    assert.equal(store.bytes, 0);
  });

  it('copies a burst in one transaction', async () => {
    const storage = new FakeStorage();
    const backing = new FakeBacking();
    const store = new WriteAheadStore(backing, { storage });
    for (let i = 0; i < 10; i += 1) store.write(rec(`k${i}`));
    assert.equal(storage.items().length, 10);
    await store.flush();
    assert.equal(backing.batches.length, 1);
    assert.equal(backing.batches[0].length, 10);
    assert.deepEqual(storage.items(), []);
    // Written while a commit is under way: the next batch, after it.
    const release = backing.hold();
    store.write(rec('a'));
    await tick();
    store.write(rec('b'));
    store.write(rec('c'));
    await tick();
    assert.deepEqual(backing.batches.slice(1), [['a']]);
    release();
    await store.flush();
    assert.deepEqual(backing.batches.slice(1), [['a'], ['b', 'c']]);
    assert.deepEqual(storage.items(), []);
  });

  it('loses nothing to a reload before the commit: the next page lists each record once', async () => {
    const storage = new FakeStorage();
    const db = new Map();
    const dying = new FakeBacking(db);
    dying.hang = true; // the transaction never commits: the page is gone
    const before = new WriteAheadStore(dying, { storage });
    for (let i = 0; i < 10; i += 1) before.write(rec(`k${i}`));
    await tick();
    assert.equal(db.size, 0);
    // A commit that made it, but whose localStorage copies were not removed (the page died
    // between the two): listed once.
    db.set('k3', { ...JSON.parse(storage.getItem('staywire:wal:k3')) });
    db.set('old', rec('old', { createdAt: 1 }));

    const after = new WriteAheadStore(new FakeBacking(db), { storage });
    const all = await after.all();
    assert.deepEqual(all.map((r) => r.key), ['old', ...Array.from({ length: 10 }, (_, i) => `k${i}`)]);
    assert.equal(all[1].data, '{"key":"k0"}');
    // The adopting tab acks them one by one: gone from both.
    for (const r of all) await after.remove(r.key);
    assert.deepEqual(storage.items(), []);
    assert.deepEqual(await after.all(), []);
  });

  it('never copies back a record removed before its commit (acked first)', async () => {
    const storage = new FakeStorage();
    const backing = new FakeBacking();
    const store = new WriteAheadStore(backing, { storage });
    store.write(rec('early'));
    await store.remove('early'); // before the flush even started
    store.write(rec('mid'));
    let readyGate;
    backing.ready = () => new Promise((r) => { readyGate = r; });
    const flushed = store.flush();
    await store.remove('mid'); // taken by the flush, not yet in a transaction
    readyGate();
    await flushed;
    assert.deepEqual(backing.batches, []);
    assert.deepEqual(backing.db.size, 0);
    assert.deepEqual(storage.items(), []);
    assert.equal(store.size, 0);
  });

  it('does not copy back a record another tab adopted and removed meanwhile', async () => {
    const storage = new FakeStorage();
    const db = new Map();
    const mine = new FakeBacking(db);
    let readyGate;
    mine.ready = () => new Promise((r) => { readyGate = r; });
    const owner = new WriteAheadStore(mine, { storage });
    owner.write(rec('x'));
    owner.write(rec('y'));
    const flushed = owner.flush();
    // The tab holding the connection found x in localStorage, sent it, got its ack.
    const leader = new WriteAheadStore(new FakeBacking(db), { storage });
    assert.deepEqual((await leader.all()).map((r) => r.key), ['x', 'y']);
    await leader.remove('x');
    readyGate();
    await flushed;
    assert.deepEqual(mine.batches, [['y']]);
    assert.deepEqual([...db.keys()], ['y']);
    assert.deepEqual(storage.items(), []);
  });

  it('keeps a rewritten key ahead until its own copy commits', async () => {
    const storage = new FakeStorage();
    const backing = new FakeBacking();
    const store = new WriteAheadStore(backing, { storage });
    const release = backing.hold();
    store.write(rec('k', { data: '"first"' }));
    await tick(); // its commit is under way
    await store.remove('k'); // acked
    store.write(rec('k', { data: '"second"' })); // published again with the same key
    release();
    await tick();
    await store.flush();
    assert.equal(backing.db.get('k').data, '"second"');
    assert.deepEqual(storage.items(), []);
  });

  it('is bounded: QueueFull keeps nothing; room again once committed', async () => {
    const storage = new FakeStorage();
    const backing = new FakeBacking();
    const release = backing.hold();
    const store = new WriteAheadStore(backing, { storage, maxMessages: 3 });
    for (const k of ['a', 'b', 'c']) store.write(rec(k));
    assert.throws(() => store.write(rec('d')), QueueFull);
    assert.deepEqual(storage.items(), ['staywire:wal:a', 'staywire:wal:b', 'staywire:wal:c']);
    release();
    await store.flush();
    assert.equal(store.write(rec('d')), true);

    const small = new WriteAheadStore(new FakeBacking(), { storage: new FakeStorage(), maxBytes: 400 });
    small.write(rec('e'));
    assert.throws(() => small.write(rec('f', { data: 'x'.repeat(300) })), /exceeds max 400/);
    assert.equal(small.size, 1);
  });

  it("turns the origin's localStorage quota into QueueFull, keeping nothing", () => {
    const storage = new FakeStorage({ quota: 600 });
    const store = new WriteAheadStore(new FakeBacking(), { storage });
    store.write(rec('a'));
    assert.throws(() => store.write(rec('b', { data: 'x'.repeat(500) })),
      (err) => err instanceof QueueFull && err.cause.name === 'QuotaExceededError');
    assert.equal(store.size, 1);
    assert.deepEqual(storage.items(), ['staywire:wal:a']);
  });

  it('keeps records ahead when the backing store fails, and copies them later', async () => {
    const storage = new FakeStorage();
    const backing = new FakeBacking();
    backing.fail = new Error('disk full');
    const store = new WriteAheadStore(backing, { storage, retryDelay: 5 });
    store.write(rec('a'));
    store.write(rec('b'));
    await tick();
    assert.equal(backing.db.size, 0);
    assert.deepEqual(storage.items(), ['staywire:wal:a', 'staywire:wal:b']);
    assert.deepEqual((await store.all()).map((r) => r.key), ['a', 'b']); // still found
    backing.fail = null;
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual([...backing.db.keys()].sort(), ['a', 'b']);
    assert.deepEqual(storage.items(), []);
    store.close();
  });

  it('without localStorage, write() declines and add() waits for the backing store', async () => {
    const backing = new FakeBacking();
    const store = new WriteAheadStore(backing, { storage: null });
    assert.equal(store.write(rec('a')), false);
    await store.add(rec('b'));
    assert.deepEqual([...backing.db.keys()], ['b']);
    const refusing = { setItem() { throw new Error('SecurityError'); }, removeItem() {} };
    globalThis.localStorage = refusing;
    try {
      assert.equal(defaultStorage(), null);
      globalThis.localStorage = new FakeStorage();
      assert.equal(defaultStorage(), globalThis.localStorage);
    } finally {
      delete globalThis.localStorage;
    }
    assert.equal(defaultStorage(), null);
  });

  it('ignores items that are not records of its own', async () => {
    const storage = new FakeStorage();
    storage.setItem('staywire:wal:junk', '{not json');
    storage.setItem('staywire:wal:other', JSON.stringify({ key: 'mismatch', channel: 'c', data: '1', owner: 't' }));
    storage.setItem('app:setting', '1');
    const store = new WriteAheadStore(new FakeBacking(), { storage });
    assert.deepEqual(await store.all(), []);
  });
});

describe('Outbox with a write-ahead', () => {
  it('holds and stores an entry inside add(), before it returns', async () => {
    const storage = new FakeStorage();
    const backing = new FakeBacking();
    backing.hang = true;
    const box = new Outbox({ store: new WriteAheadStore(backing, { storage }), owner: 'tab1' });
    const added = box.add('room', { text: 'hi' }, 'k1');
    // No await yet: it is held, sendable, and durable.
    assert.equal(box.size, 1);
    assert.equal(box.get('k1').stored, true);
    assert.deepEqual(box.unsent('c1').map((e) => e.key), ['k1']);
    const record = JSON.parse(storage.getItem('staywire:wal:k1'));
    assert.deepEqual(record, { key: 'k1', seq: 1, channel: 'room', data: '{"text":"hi"}', size: 13,
      owner: 'tab1', target: '', createdAt: record.createdAt });
    assert.equal((await added).key, 'k1');
  });

  it('keeps nothing when the write-ahead refuses (QueueFull)', async () => {
    const storage = new FakeStorage();
    const backing = new FakeBacking();
    backing.hold();
    const box = new Outbox({ store: new WriteAheadStore(backing, { storage, maxMessages: 1 }) });
    await box.add('room', 1, 'a');
    await assert.rejects(box.add('room', 2, 'b'), QueueFull);
    assert.equal(box.size, 1);
    assert.equal(box.bytes, 1);
    assert.deepEqual(storage.items(), ['staywire:wal:a']);
  });

  it('removes both copies when the entry is acked', async () => {
    const storage = new FakeStorage();
    const backing = new FakeBacking();
    const box = new Outbox({ store: new WriteAheadStore(backing, { storage }) });
    box.add('room', 1, 'a');
    box.ack('a'); // acked before its copy to IndexedDB: never copied
    await box.add('room', 2, 'b');
    await tick();
    assert.deepEqual([...backing.db.keys()], ['b']);
    box.ack('b'); // after it
    await tick();
    assert.deepEqual(backing.batches, [['b']]);
    assert.equal(backing.db.size, 0);
    assert.deepEqual(storage.items(), []);
  });
});

describe('WriteAheadStore: acknowledged means never sent again', () => {
  it('marks a key acknowledged before the delete, and clears the mark once it committed', async () => {
    const storage = new FakeStorage();
    const backing = new FakeBacking();
    const store = new WriteAheadStore(backing, { storage });
    store.write(rec('k1'));
    await store.flush();
    let seen = null;
    backing.remove = async (key) => {
      seen = storage.items('staywire:acked:'); // what a reload at this moment would find
      backing.db.delete(key);
    };
    await store.remove('k1');
    assert.deepEqual(seen, ['staywire:acked:k1']);
    assert.deepEqual(storage.items('staywire:acked:'), []);
    assert.deepEqual(await store.all(), []);
  });

  it('skips a record whose delete failed, on every page, and lists it for another delete', async () => {
    const storage = new FakeStorage();
    const db = new Map();
    const backing = new FakeBacking(db);
    const store = new WriteAheadStore(backing, { storage });
    store.write(rec('k1'));
    store.write(rec('k2'));
    await store.flush();
    const broken = new Error('disk refused the delete');
    backing.remove = async () => { throw broken; };
    await assert.rejects(store.remove('k1'), broken);
    assert.deepEqual([...db.keys()].sort(), ['k1', 'k2']); // still in IndexedDB
    assert.deepEqual(storage.items('staywire:acked:'), ['staywire:acked:k1']);
    // A reload: a new page, same localStorage and IndexedDB.
    const next = new WriteAheadStore(new FakeBacking(db), { storage });
    assert.deepEqual((await next.all()).map((r) => r.key), ['k2']);
    assert.deepEqual(await next.acknowledged(), ['k1']);
    await next.remove('k1'); // its delete works
    assert.deepEqual([...db.keys()], ['k2']);
    assert.deepEqual(storage.items('staywire:acked:'), []);
    assert.deepEqual(await next.acknowledged(), []);
  });

  it('clears a mark whose record is gone from both stores', async () => {
    const storage = new FakeStorage();
    storage.setItem('staywire:acked:gone', '1');
    const store = new WriteAheadStore(new FakeBacking(), { storage });
    assert.deepEqual(await store.acknowledged(), []);
    assert.deepEqual(storage.items('staywire:acked:'), []);
  });

  it('skips a record still written ahead when it is marked (acknowledged by another tab)', async () => {
    const storage = new FakeStorage();
    const backing = new FakeBacking();
    const store = new WriteAheadStore(backing, { storage, schedule: () => {} });
    store.write(rec('k1'));
    storage.setItem('staywire:acked:k1', '1');
    assert.deepEqual(await store.all(), []);
  });
});
