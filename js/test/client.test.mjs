// The client end to end in Node: several "tabs" (Clients) sharing one connection through
// a fake lock manager and a fake BroadcastChannel, against a small fake server that keeps
// offsets, history, epochs and idempotency keys as docs/protocol.md says. The real thing
// (Chromium, the real server) is in tests/browser/; this covers the multiplexing logic
// quickly and deterministically, including cases a browser test cannot force.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  Client, Backoff, MemoryStore, ReconnectFailed, State, WriteAheadStore,
} from '../../src/staywire/static/staywire.js';
import { Bus, LockManager } from './support/tabs.mjs';

// ---------------------------------------------------------------------- a fake server

class FakeServer {
  constructor() {
    this.life = 1;
    this.streams = new Map();
    this.keys = new Map();
    this.conns = new Set();
    this.frames = [];
    this.down = false;
    this.opened = 0;
    this.limit = null; // {burst, refillMs}: a token bucket on pubs, as the real server has
    this.rejected = 0;
  }
  refill() { // once per batch of frames read together, as a server reading a socket would
    if (!this.limit) return;
    const now = Date.now();
    const b = (this.bucket ??= { tokens: this.limit.burst, at: now });
    b.tokens = Math.min(this.limit.burst, b.tokens + (now - b.at) / this.limit.refillMs);
    b.at = now;
  }
  take() {
    if (this.bucket.tokens < 1) return false;
    this.bucket.tokens -= 1;
    return true;
  }
  stream(channel) {
    let s = this.streams.get(channel);
    if (!s) this.streams.set(channel, (s = { epoch: `E${this.life}`, offset: 0, history: [] }));
    return s;
  }
  publish(channel, data, key, { live = true } = {}) {
    const k = `${channel}\0${key}`;
    if (key && this.keys.has(k)) return { ...this.keys.get(k), duplicate: true };
    const s = this.stream(channel);
    s.offset += 1;
    const msg = { type: 'msg', channel, epoch: s.epoch, offset: s.offset, data };
    s.history.push(msg);
    if (live) for (const conn of this.conns) if (conn.subs.has(channel)) conn.push(msg);
    const result = { epoch: s.epoch, offset: s.offset };
    if (key) this.keys.set(k, result);
    return { ...result, duplicate: false };
  }
  /** A refreshed token that no longer grants `channel`: as the server does it. */
  revoke(channel) {
    for (const conn of this.conns) {
      if (!conn.subs.delete(channel)) continue;
      conn.push({ type: 'error', code: 'forbidden', channel, reason: 'the refreshed token does not grant this channel' });
    }
  }
  restart() {
    this.life += 1;
    this.streams.clear();
    this.keys.clear();
    for (const conn of [...this.conns]) conn.kill(1006);
  }
  texts(channel) {
    return (this.streams.get(channel)?.history ?? []).map((m) => m.data.text);
  }
  get WebSocket() {
    const server = this;
    return class ServerConn {
      constructor(url) {
        this.url = url;
        this.readyState = 0;
        this.bufferedAmount = 0;
        this.subs = new Set();
        setImmediate(() => {
          if (server.down) {
            this.readyState = 3;
            this.onclose?.({ code: 1006, reason: '' });
            return;
          }
          server.conns.add(this);
          server.opened += 1;
          this.readyState = 1;
          this.onopen?.({});
          const rateLimit = server.limit && server.announce
            ? { messages: 1000 / server.limit.refillMs, burst: server.limit.burst, bytes: 1e9, bytes_burst: 1e9 }
            : undefined;
          this.push({ type: 'welcome', client: 'c', session: 'abcd', ping_interval: 25,
            pong_timeout: 10, expires_at: null, resumed: false, subs: [], rate_limit: rateLimit });
        });
      }
      push(msg) {
        const text = JSON.stringify(msg);
        setImmediate(() => { if (this.readyState === 1) this.onmessage?.({ data: text }); });
      }
      send(text) {
        if (this.readyState !== 1) return;
        const msg = JSON.parse(text);
        server.frames.push(msg);
        (this.inbox ??= []).push(msg);
        if (this.inbox.length > 1) return;
        setImmediate(() => { // every frame that arrived meanwhile, in one go
          const batch = this.inbox;
          this.inbox = [];
          server.refill();
          for (const m of batch) this.handle(m);
        });
      }
      handle(m) {
        if (this.readyState !== 1) return;
        if (m.type === 'ping') this.push({ type: 'pong', t: m.t });
        if (server.limit && server.limitAll && m.id !== undefined && !server.take()) {
          server.rejected += 1; // as the real server: every request counts
          this.push({ type: 'error', id: m.id, code: 'rate_limited', reason: 'slow down' });
          return;
        }
        if (m.type === 'sub') {
          if (this.subs.has(m.channel)) {
            this.push({ type: 'error', id: m.id, code: 'already_subscribed', reason: '' });
            return;
          }
          const s = server.stream(m.channel);
          let recovered = false;
          if (m.since && m.since.epoch === s.epoch) {
            for (const msg of s.history) if (msg.offset > m.since.offset) this.push(msg);
            recovered = true;
          }
          this.subs.add(m.channel);
          this.push({ type: 'ack', id: m.id, epoch: s.epoch, offset: s.offset, recovered });
        }
        if (m.type === 'unsub') {
          this.subs.delete(m.channel);
          this.push({ type: 'ack', id: m.id });
        }
        if (m.type === 'pub') {
          if (server.limit && !server.limitAll && !server.take()) {
            server.rejected += 1;
            this.push({ type: 'error', id: m.id, code: 'rate_limited', reason: 'slow down' });
            return;
          }
          const r = server.publish(m.channel, m.data, m.key);
          this.push({ type: 'ack', id: m.id, ...r });
        }
      }
      close() { this.kill(null); }
      kill(code) {
        if (this.readyState === 3) return;
        this.readyState = 3;
        server.conns.delete(this);
        if (code !== null) setImmediate(() => this.onclose?.({ code, reason: '' }));
      }
    };
  }
}

// ---------------------------------------------------------------------- fake tabs' world

/** localStorage: synchronous and shared by the tabs given the same one. */
class MapStorage extends Map {
  get length() { return this.size; }
  key(i) { return [...this.keys()][i] ?? null; }
  getItem(k) { return this.has(k) ? this.get(k) : null; }
  setItem(k, v) { this.set(k, String(v)); }
  removeItem(k) { this.delete(k); }
}

const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(predicate, what, ms = 3000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (predicate()) return;
    await wait(2);
  }
  assert.fail(`timed out waiting for ${what}`);
}

let world;
function newWorld() {
  world = { server: new FakeServer(), locks: new LockManager(), bus: new Bus(), store: new MemoryStore(), tabs: [] };
  return world;
}

function tab(name, options = {}) {
  const client = new Client('ws://127.0.0.1:1/ws', {
    tabId: name,
    WebSocket: world.server.WebSocket,
    locks: world.locks.view(name),
    BroadcastChannel: world.bus.for(name),
    store: world.store,
    backoff: new Backoff({ base: 20, cap: 80, random: () => 0.5, maxRetries: options.maxRetries ?? 50 }),
    ...options,
  });
  const got = new Map();
  client.got = (channel) => got.get(channel) ?? [];
  client.join = (channel, since) => client.subscribe(channel, (data) => {
    got.set(channel, [...(got.get(channel) ?? []), data.text]);
  }, { since });
  client.connect().catch(() => {});
  world.tabs.push(client);
  return client;
}

/** A tab that dies at once: no goodbye, its locks released by the browser. */
function crash(client) {
  world.bus.crash(client.tabId);
  client._closed = true;
  client._hub?.stop();
  world.locks.crash(client.tabId);
}

afterEach(async () => {
  for (const t of world?.tabs ?? []) if (!t._closed) await t.close();
  await wait(5);
});

const pubs = () => world.server.frames.filter((f) => f.type === 'pub');
const subs = () => world.server.frames.filter((f) => f.type === 'sub');

describe('Client, tabs sharing one connection', { timeout: 30000 }, () => {
  it('holds one connection for three tabs; each sees only its channels', async () => {
    newWorld();
    const [a, b, c] = [tab('a'), tab('b'), tab('c')];
    await Promise.all([a.join('room'), b.join('room'), c.join('other')]);
    await until(() => [a, b, c].every((t) => t.state === State.OPEN), 'three OPEN tabs');
    assert.equal(world.server.opened, 1);
    assert.equal(a.isLeader, true);
    assert.deepEqual([b.leader, c.leader], ['a', 'a']);
    assert.equal(subs().filter((s) => s.channel === 'room').length, 1); // one sub for two tabs
    await b.publish('room', { text: 'hi' });
    await c.publish('other', { text: 'elsewhere' });
    await until(() => a.got('room').length === 1 && b.got('room').length === 1 && c.got('other').length === 1, 'deliveries');
    assert.deepEqual(c.got('room'), []);
    assert.deepEqual(a.got('other'), []);
    await b.subscription('room').unsubscribe();
    await a.publish('room', { text: 'two' });
    await until(() => a.got('room').length === 2, 'a second message');
    assert.deepEqual(b.got('room'), ['hi']);
  });

  it('refuses a channel name the server would refuse, before queueing or sending anything', async () => {
    newWorld();
    const a = tab('a');
    await a.join('room');
    for (const name of ['has space', 'room\n', '', 'x'.repeat(129), 'é', 42]) {
      await assert.rejects(a.publish(name, { text: 'no' }), RangeError, JSON.stringify(name));
      await assert.rejects(a.subscribe(name), RangeError, JSON.stringify(name));
    }
    assert.equal(a.outbox.size, 0);
    assert.equal(a.subscription('has space'), undefined);
    await a.publish('a:b/c=d@e.f-g_h', { text: 'fine' });
    assert.deepEqual(pubs().map((p) => p.channel), ['a:b/c=d@e.f-g_h']);
    assert.deepEqual(subs().map((s) => s.channel), ['room']);
  });

  it('survives the leader crashing mid-stream: nothing lost, nothing doubled', async () => {
    newWorld();
    const [a, b, c] = [tab('a'), tab('b'), tab('c')];
    await Promise.all([a.join('room'), b.join('room'), c.join('room')]);
    const sent = [];
    for (let i = 0; i < 40; i += 1) {
      world.server.publish('room', { text: `m${i}` });
      sent.push(`m${i}`);
      if (i === 15) crash(a);
      await wait(1);
    }
    await until(() => b.got('room').length >= 40 && c.got('room').length >= 40, 'every message');
    await wait(20);
    assert.deepEqual(b.got('room'), sent);
    assert.deepEqual(c.got('room'), sent);
    assert.ok(b.isLeader || c.isLeader);
    assert.equal(world.server.conns.size, 1);
    // A message of the crashed leader that arrives late is ignored.
    const leader = b.leader;
    b._down({ t: 'status', leader: 'a', term: 0, state: 'OPEN', connId: 'a:1' });
    b._down({ t: 'leader', leader: 'a', term: 0 });
    assert.equal(b.leader, leader);
    assert.notEqual(b.status.connId, 'a:1');
  });

  it('rewinds the shared subscription for a tab that joins with an older position', async () => {
    newWorld();
    const a = tab('a');
    await a.join('room');
    for (let i = 1; i <= 5; i += 1) world.server.publish('room', { text: `m${i}` });
    await until(() => a.got('room').length === 5, 'five messages');
    const epoch = a.subscription('room').position.epoch;
    const b = tab('b');
    await b.join('room', { epoch, offset: 2 }); // "I have seen up to 2"
    assert.deepEqual(b.got('room'), ['m3', 'm4', 'm5']);
    world.server.publish('room', { text: 'm6' });
    await until(() => a.got('room').length === 6 && b.got('room').length === 4, 'm6 everywhere');
    assert.deepEqual(a.got('room'), ['m1', 'm2', 'm3', 'm4', 'm5', 'm6']); // no replay shown twice
    const roomSubs = subs().filter((s) => s.channel === 'room');
    assert.deepEqual(roomSubs.at(-1).since, { epoch, offset: 2 });
  });

  it('tabs that joined at different positions carry on after a leader crash', async () => {
    newWorld();
    const a = tab('a');
    await a.join('room');
    world.server.publish('room', { text: 'm1' });
    await until(() => a.got('room').length === 1, 'm1');
    const epoch = a.subscription('room').position.epoch;
    const b = tab('b');
    const c = tab('c');
    await b.join('room');
    await c.join('room', { epoch, offset: 0 });
    for (let i = 2; i <= 4; i += 1) world.server.publish('room', { text: `m${i}` });
    await until(() => b.got('room').length === 3 && c.got('room').length === 4, 'm2..m4');
    crash(a);
    for (let i = 5; i <= 8; i += 1) world.server.publish('room', { text: `m${i}` });
    await until(() => b.got('room').length === 7 && c.got('room').length === 8, 'm5..m8 after the crash');
    await wait(20);
    assert.deepEqual(b.got('room'), ['m2', 'm3', 'm4', 'm5', 'm6', 'm7', 'm8']);
    assert.deepEqual(c.got('room'), ['m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7', 'm8']);
  });

  it('sends publishes queued while the server was down once, in order, after a restart', async () => {
    newWorld();
    const a = tab('a');
    const b = tab('b');
    await Promise.all([a.join('room'), b.join('room')]);
    await a.publish('room', { text: 'before' });
    world.server.down = true;
    world.server.restart();
    await until(() => a.state === State.RECONNECTING && b.state === State.RECONNECTING, 'RECONNECTING');
    const recoveries = [];
    b.on('recovery', (info) => recoveries.push(info));
    const acks = [b.publish('room', { text: 'q1' }), a.publish('room', { text: 'q2' }), b.publish('room', { text: 'q3' })];
    await wait(50);
    assert.equal(a.outbox.size + b.outbox.size, 3);
    world.server.publish('room', { text: 'other client' }); // into the new stream, before we are back
    world.server.down = false;
    await Promise.all(acks);
    await until(() => b.got('room').length === 5, 'the queue');
    assert.deepEqual(world.server.texts('room').sort(), ['other client', 'q1', 'q2', 'q3']);
    assert.deepEqual(b.got('room').slice(0, 2), ['before', 'other client']);
    assert.deepEqual(b.got('room').slice(2).filter((t) => t !== 'q2'), ['q1', 'q3']);
    assert.equal(recoveries.length, 1);
    assert.equal(recoveries[0].epochChanged, true);
    assert.equal(a.outbox.size + b.outbox.size, 0);
  });

  it('paces a long queue through the server\'s rate limit: all land, once, in order', async () => {
    newWorld();
    world.server.limit = { burst: 20, refillMs: 1 };
    world.server.down = true;
    const a = tab('a', { share: false });
    a.join('room');
    const acks = [];
    for (let i = 0; i < 80; i += 1) acks.push(a.publish('room', { text: `m${i}` }));
    await wait(30);
    world.server.down = false;
    await Promise.all(acks);
    assert.deepEqual(world.server.texts('room'), Array.from({ length: 80 }, (_, i) => `m${i}`));
    // The first batch of 64 meets the limit at 20; after that about one refusal a pause.
    assert.ok(world.server.rejected >= 44 && world.server.rejected <= 50, `${world.server.rejected}`);
    await until(() => a.got('room').length === 80, 'every message delivered');
  });

  it('paces under the rate limit the welcome announces: nothing refused, all in order', async () => {
    newWorld();
    world.server.limit = { burst: 20, refillMs: 2 }; // 500/s
    world.server.announce = true;
    const a = tab('a', { share: false });
    await Promise.all([a.join('room'), a.join('other:1'), a.join('other:2')]); // their share too
    const acks = [];
    for (let i = 0; i < 150; i += 1) acks.push(a.publish('room', { text: `m${i}` }));
    await Promise.all(acks);
    assert.equal(world.server.rejected, 0);
    assert.deepEqual(world.server.texts('room'), Array.from({ length: 150 }, (_, i) => `m${i}`));
    assert.ok(a._hub._pubs.paced > 0, 'the pacer held some back');
    await until(() => a.got('room').length === 150, 'every message delivered');
  });

  it('paces subscribes too: more channels than the burst, joined and rejoined after a restart, none refused', async () => {
    newWorld();
    Object.assign(world.server, { limit: { burst: 20, refillMs: 2 }, announce: true, limitAll: true });
    const a = tab('a', { share: false });
    const names = Array.from({ length: 30 }, (_, i) => `ch:${i}`);
    await Promise.all(names.map((n) => a.join(n)));
    world.server.restart();
    await until(() => world.server.opened === 2 && a.state === State.OPEN, 'the reconnect');
    await until(() => world.server.conns.size === 1 && [...world.server.conns][0].subs.size === 30,
      'every channel resubscribed');
    world.server.publish('ch:29', { text: 'after' });
    await until(() => a.got('ch:29').includes('after'), 'a message after the restart');
    assert.equal(world.server.rejected, 0);
  });

  it('sends a subscribe refused for now again, as the Python client does', async () => {
    newWorld();
    Object.assign(world.server, { limit: { burst: 4, refillMs: 20 }, limitAll: true }); // no announcement
    const a = tab('a', { share: false });
    const names = Array.from({ length: 10 }, (_, i) => `ch:${i}`);
    await Promise.all(names.map((n) => a.join(n)));
    assert.ok(world.server.rejected > 0, 'the limiter refused some');
    assert.equal([...world.server.conns][0].subs.size, 10);
  });

  it('refills a live gap by resubscribing: every tab gets every offset once, in order', async () => {
    newWorld();
    const [a, b] = [tab('a'), tab('b')];
    await Promise.all([a.join('room'), b.join('room')]);
    const warnings = [];
    a.on('warning', (w) => warnings.push(w));
    world.server.publish('room', { text: 'm1' });
    world.server.publish('room', { text: 'm2' }, undefined, { live: false }); // lost on its way
    world.server.publish('room', { text: 'm3' });
    await until(() => a.got('room').length === 3 && b.got('room').length === 3, 'three messages');
    await wait(10);
    assert.deepEqual(a.got('room'), ['m1', 'm2', 'm3']);
    assert.deepEqual(b.got('room'), ['m1', 'm2', 'm3']);
    assert.ok(warnings.some((w) => /offsets skipped/.test(w)));
  });

  it('replays a publish whose ack was lost with the same key: it lands once', async () => {
    newWorld();
    const a = tab('a', { share: false });
    await a.join('room');
    const server = world.server;
    const conn = [...server.conns][0];
    const original = conn.handle.bind(conn);
    conn.handle = (m) => { // the server publishes, then the link dies before the ack
      if (m.type === 'pub') {
        server.publish(m.channel, m.data, m.key);
        conn.kill(1006);
        return;
      }
      original(m);
    };
    const ack = await a.publish('room', { text: 'once' });
    assert.equal(ack.duplicate, true);
    assert.deepEqual(server.texts('room'), ['once']);
    assert.equal(pubs().length, 2);
    assert.equal(pubs()[0].key, pubs()[1].key);
    await until(() => a.got('room').length === 1, 'the message');
    await wait(10);
    assert.deepEqual(a.got('room'), ['once']);
  });

  it('adopts publishes left in the store by a tab that is gone (a reload)', async () => {
    newWorld();
    const data = (text) => JSON.stringify({ text });
    for (const [i, text] of ['r1', 'r2', 'r3'].entries()) {
      await world.store.add({ key: `old-${i}`, seq: i + 1, channel: 'room', data: data(text), size: 10,
        owner: 'gone-tab', target: 'ws://127.0.0.1:1/ws', createdAt: 1000 + i });
    }
    await world.store.add({ key: 'elsewhere', seq: 9, channel: 'room', data: data('x'), size: 3,
      owner: 'gone-tab', target: 'ws://other/ws', createdAt: 1 });
    const a = tab('a');
    await a.join('room');
    await until(() => world.server.texts('room').length === 3, 'the adopted publishes');
    assert.deepEqual(world.server.texts('room'), ['r1', 'r2', 'r3']);
    await until(() => a.status.adopted === 3, 'adopted = 3');
    assert.deepEqual((await world.store.all()).map((r) => r.key), ['elsewhere']);
    await wait(30);
    assert.deepEqual(world.server.texts('room'), ['r1', 'r2', 'r3']);
  });

  it('reports a failed removal of an adopted publish, never sends it again, and retries it', async () => {
    newWorld();
    const storage = new MapStorage();
    const data = JSON.stringify({ text: 'left' });
    await world.store.add({ key: 'old', seq: 1, channel: 'room', data, size: 15, owner: 'gone-tab',
      target: 'ws://127.0.0.1:1/ws', createdAt: 1000 });
    const realRemove = world.store.remove.bind(world.store);
    let refusals = 1;
    world.store.remove = async (key) => {
      if (refusals > 0) {
        refusals -= 1;
        throw new Error('disk refused the delete');
      }
      return realRemove(key);
    };
    const a = tab('a', { store: new WriteAheadStore(world.store, { storage }) });
    const warnings = [];
    a.on('warning', (text) => warnings.push(text));
    await a.join('room');
    await until(() => a.status.removeFailures === 1, 'the failure counted in the status');
    assert.ok(warnings.some((w) => /removing acknowledged publish old failed .*retrying/.test(w)), warnings.join('; '));
    assert.deepEqual(world.server.texts('room'), ['left']);
    assert.deepEqual([...storage.keys()], ['staywire:acked:old']); // marked: never sent again
    await until(() => storage.size === 0 && world.store.records.size === 0, 'the retried removal', 4000);
    assert.deepEqual(world.server.texts('room'), ['left']);
  });

  it('loses nothing to a reload right after a burst of publishes: each lands once, in order', async () => {
    // Each tab's store: the shared "IndexedDB" (world.store) behind a write-ahead in a shared
    // "localStorage". The first page dies with its IndexedDB transactions never committed.
    newWorld();
    const storage = new MapStorage();
    const dying = { add: () => new Promise(() => {}), addMany: () => new Promise(() => {}),
      remove: (k) => world.store.remove(k), all: () => world.store.all() };
    const a = tab('a', { store: new WriteAheadStore(dying, { storage }) });
    await a.join('room');
    await a.publish('room', { text: 'before' });
    const texts = Array.from({ length: 10 }, (_, i) => `m${i}`);
    for (const t of texts.slice(0, 5)) a.publish('room', { text: t }).catch(() => {});
    await until(() => pubs().length === 6, 'five publishes on the wire'); // some acked, some not
    for (const t of texts.slice(5)) a.publish('room', { text: t }).catch(() => {});
    crash(a); // the reload: in the same task, not one more microtask for the old page's hub
    assert.equal(pubs().length, 6);
    assert.equal((await world.store.all()).length, 0); // nothing reached "IndexedDB"
    assert.ok(storage.size >= 5);

    const b = tab('b', { store: new WriteAheadStore(world.store, { storage }) });
    await b.join('room');
    await until(() => world.server.texts('room').length === 11, 'every publish');
    await until(() => storage.size === 0, 'an empty write-ahead');
    await wait(30);
    assert.deepEqual(world.server.texts('room'), ['before', ...texts]);
    assert.deepEqual(await world.store.all(), []);
    assert.ok(b.status.adopted >= 5, `${b.status.adopted}`);
  });

  it('ends a channel the server revoked in every tab on it, and only that channel', async () => {
    newWorld();
    const [a, b] = [tab('a'), tab('b')];
    await Promise.all([a.join('room'), b.join('room'), b.join('other')]);
    const errors = [];
    for (const t of [a, b]) t.subscription('room').on('error', (e) => errors.push([t.tabId, e.code]));
    world.server.revoke('room');
    await until(() => errors.length === 2, 'both tabs told');
    assert.deepEqual(errors.sort(), [['a', 'forbidden'], ['b', 'forbidden']]);
    assert.equal(a.subscription('room'), undefined);
    world.server.publish('other', { text: 'still' });
    await until(() => b.got('other').length === 1, 'the other channel carries on');
  });

  it('hands the connection over when the leader closes', async () => {
    newWorld();
    const [a, b] = [tab('a'), tab('b')];
    await Promise.all([a.join('room'), b.join('room')]);
    await a.close();
    await until(() => b.isLeader && b.state === State.OPEN, 'b leads');
    world.server.publish('room', { text: 'after' });
    await until(() => b.got('room').length === 1, 'a message after the handover');
  });
});

describe('Client, alone', { timeout: 30000 }, () => {
  it('gives up after maxRetries: connect() rejects, an error event, pending publishes reject', async () => {
    newWorld();
    world.server.down = true;
    const a = tab('a', { share: false, maxRetries: 2 });
    const errors = [];
    a.on('error', (e) => errors.push(e));
    const pending = a.publish('room', { text: 'never' });
    await assert.rejects(a.connect(), ReconnectFailed);
    await assert.rejects(pending, ReconnectFailed);
    assert.equal(errors.length, 1);
    assert.equal(a.state, State.CLOSED);
    assert.equal(a.outbox.size, 0);
    await assert.rejects(a.publish('room', 1), ReconnectFailed);
  });

  it('works without Web Locks or BroadcastChannel: one connection per tab', async () => {
    newWorld();
    const a = tab('a', { locks: null, BroadcastChannel: null });
    assert.equal(a.shared, false);
    await a.join('room');
    await a.publish('room', { text: 'solo' });
    await until(() => a.got('room').length === 1, 'solo');
  });
});
