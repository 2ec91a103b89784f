// The outbox: publishes in order until acked, replayed after a reconnect with their keys,
// bounded, and kept in a store so a reload finds them.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore, Outbox, byteLength, compareRecords, newKey } from '../../src/staywire/static/outbox.js';
import { QueueFull } from '../../src/staywire/static/errors.js';

describe('Outbox', () => {
  it('keeps publishes in order, with their JSON text, until acked', async () => {
    const box = new Outbox({ owner: 'tab1', target: 'ws://h/ws' });
    await box.add('room', { text: 'a' }, 'k1');
    await box.add('room', { text: 'b' }, 'k2');
    await box.add('other', 3, 'k3');
    assert.deepEqual(box.entries().map((e) => e.key), ['k1', 'k2', 'k3']);
    assert.deepEqual(box.entries().map((e) => e.seq), [1, 2, 3]);
    assert.equal(box.get('k1').data, '{"text":"a"}');
    assert.equal(box.get('k1').owner, 'tab1');
    assert.equal(box.get('k1').target, 'ws://h/ws');
    assert.equal(box.size, 3);
    assert.equal(box.bytes, 12 + 12 + 1);
    assert.equal(box.ack('k2').key, 'k2');
    assert.equal(box.ack('k2'), null);
    assert.deepEqual(box.entries().map((e) => e.key), ['k1', 'k3']);
    assert.equal(box.bytes, 13);
  });

  it('replays what a connection did not acknowledge, in order, on the next one', async () => {
    const box = new Outbox();
    for (const k of ['a', 'b', 'c', 'd']) await box.add('room', k, k);
    assert.deepEqual(box.unsent('c1').map((e) => e.key), ['a', 'b', 'c', 'd']);
    for (const e of box.unsent('c1')) box.markSent(e.key, 'c1');
    assert.deepEqual(box.unsent('c1'), []);
    box.ack('a');
    box.ack('c');
    // Connection c1 died with b and d in flight: both go again on c2, in order.
    assert.deepEqual(box.unsent('c2').map((e) => e.key), ['b', 'd']);
    await box.add('room', 'e', 'e');
    assert.deepEqual(box.unsent('c2').map((e) => e.key), ['b', 'd', 'e']);
    box.connectionLost();
    assert.deepEqual(box.unsent().map((e) => e.key), ['b', 'd', 'e']);
  });

  it('refuses over its bound and keeps nothing (QueueFull)', async () => {
    const box = new Outbox({ maxMessages: 2 });
    await box.add('c', 1, 'a');
    await box.add('c', 2, 'b');
    await assert.rejects(box.add('c', 3, 'c'), QueueFull);
    assert.equal(box.size, 2);
    const small = new Outbox({ maxBytes: 10 });
    await small.add('c', '12345678', 'x'); // 10 bytes with the quotes
    await assert.rejects(small.add('c', 1, 'y'), QueueFull);
    assert.equal(small.bytes, 10);
    small.ack('x');
    await small.add('c', 1, 'y');
  });

  it('counts UTF-8 bytes', () => {
    assert.equal(byteLength('"é"'), 4);
    assert.equal(byteLength('"😀"'), 6);
  });

  it('refuses a key it already holds', async () => {
    const box = new Outbox();
    await box.add('c', 1, 'same');
    await assert.rejects(box.add('c', 2, 'same'), /already in the outbox/);
  });

  it('writes each entry to its store before holding it, and removes it on ack or reject', async () => {
    const store = new MemoryStore();
    const box = new Outbox({ store, owner: 't' });
    await box.add('c', { n: 1 }, 'k1');
    await box.add('c', { n: 2 }, 'k2');
    const records = await store.all();
    assert.deepEqual(records.map((r) => r.key), ['k1', 'k2']);
    assert.equal(records[0].data, '{"n":1}');
    assert.equal('sent' in records[0], false);
    box.ack('k1');
    box.reject('k2');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(await store.all(), []);
  });

  it('keeps nothing when the store fails', async () => {
    const store = { add: async () => { throw new Error('disk full'); }, remove: async () => {}, all: async () => [] };
    const box = new Outbox({ store, maxMessages: 1 });
    await assert.rejects(box.add('c', 1, 'k'), /disk full/);
    assert.equal(box.size, 0);
    assert.equal(box.bytes, 0);
  });

  it('holds the bound across concurrent adds', async () => {
    let release;
    const gate = new Promise((r) => { release = r; });
    const store = { add: () => gate, remove: async () => {}, all: async () => [] };
    const box = new Outbox({ store, maxMessages: 2 });
    const adds = [box.add('c', 1, 'a'), box.add('c', 2, 'b'), box.add('c', 3, 'c')];
    release();
    const results = await Promise.allSettled(adds);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'rejected']);
    assert.ok(results[2].reason instanceof QueueFull);
  });

  it('orders stored records oldest first, for the tab that adopts them after a reload', () => {
    const rs = [
      { key: 'b', seq: 2, createdAt: 10 }, { key: 'a', seq: 1, createdAt: 10 }, { key: 'z', seq: 9, createdAt: 5 },
    ];
    assert.deepEqual(rs.sort(compareRecords).map((r) => r.key), ['z', 'a', 'b']);
  });

  it('makes distinct keys of at most 128 characters', () => {
    const keys = new Set(Array.from({ length: 1000 }, () => newKey()));
    assert.equal(keys.size, 1000);
    for (const k of keys) assert.ok(k.length >= 16 && k.length <= 128);
  });
});
