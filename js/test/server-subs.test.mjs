// Server-side subscriptions in the browser client (docs/protocol.md, *Server-side
// subscriptions*): the welcome's `server_subs` become `client.serverSubscriptions` and
// 'publication' events, in every tab sharing the connection, and after a reconnect each is
// recovered from the position delivered (unsub, then sub with since), never twice, in order.
// A small fake server that subscribes each connection itself, as the real one does.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Client, Backoff, MemoryStore } from '../../src/staywire/static/staywire.js';
import { ChannelCursor, CursorState } from '../../src/staywire/static/cursor.js';
import { Bus, LockManager } from './support/tabs.mjs';

class FakeServer {
  constructor(serverSubs) {
    this.serverSubs = serverSubs; // channels every connection is subscribed to at its welcome
    this.streams = new Map();
    this.conns = new Set();
    this.frames = [];
    this.opened = 0;
  }
  stream(channel) {
    let s = this.streams.get(channel);
    if (!s) this.streams.set(channel, (s = { epoch: 'E1', offset: 0, history: [] }));
    return s;
  }
  publish(channel, data) {
    const s = this.stream(channel);
    s.offset += 1;
    const msg = { type: 'msg', channel, epoch: s.epoch, offset: s.offset, data };
    s.history.push(msg);
    for (const conn of this.conns) if (conn.subs.has(channel)) conn.push(msg);
  }
  get WebSocket() {
    const server = this;
    return class ServerConn {
      constructor() {
        this.readyState = 0;
        this.bufferedAmount = 0;
        this.subs = new Set();
        setImmediate(() => {
          server.conns.add(this);
          server.opened += 1;
          this.readyState = 1;
          this.onopen?.({});
          const joined = server.serverSubs.map((channel) => {
            this.subs.add(channel); // joined before the welcome: its position is exact
            const s = server.stream(channel);
            return { channel, epoch: s.epoch, offset: s.offset };
          });
          this.push({ type: 'welcome', client: 'c', session: 's', ping_interval: 25,
            pong_timeout: 10, expires_at: null, resumed: false, subs: [], server_subs: joined });
        });
      }
      push(msg) {
        const text = JSON.stringify(msg);
        setImmediate(() => { if (this.readyState === 1) this.onmessage?.({ data: text }); });
      }
      send(text) {
        if (this.readyState !== 1) return;
        const m = JSON.parse(text);
        server.frames.push(m);
        setImmediate(() => this.handle(m));
      }
      handle(m) {
        if (this.readyState !== 1) return;
        if (m.type === 'ping') this.push({ type: 'pong', t: m.t });
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

const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(predicate, what, ms = 3000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (predicate()) return;
    await wait(2);
  }
  assert.fail(`timed out waiting for ${what}`);
}

const clients = [];

function client(server, tabs = null, tabId = undefined) {
  const c = new Client('ws://127.0.0.1:1/ws', {
    ...(tabs ? { tabId, locks: tabs.locks.view(tabId), BroadcastChannel: tabs.bus.for(tabId) }
      : { share: false }),
    WebSocket: server.WebSocket,
    store: new MemoryStore(),
    backoff: new Backoff({ base: 20, cap: 80, random: () => 0.5, maxRetries: 50 }),
  });
  c.got = [];
  c.on('publication', (data, msg) => c.got.push([msg.channel, msg.offset, data]));
  c.connect().catch(() => {});
  clients.push(c);
  return c;
}

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  await wait(5);
});

describe('server-side subscriptions', { timeout: 20000 }, () => {
  it('a channel the welcome names is a Subscription whose publications are client events', async () => {
    const server = new FakeServer(['user:1']);
    server.publish('user:1', 'before'); // published before the connection: not for it
    const c = client(server);
    const subscribed = [];
    c.on('serverSubscription', (sub) => subscribed.push(sub.channel));
    await until(() => c.serverSubscriptions.get('user:1')?.state === 'live', 'the server-side subscription');
    const sub = c.serverSubscriptions.get('user:1');
    assert.equal(sub.serverSide, true);
    assert.deepEqual(subscribed, ['user:1']);
    const own = [];
    sub.on('message', (data) => own.push(data));
    server.publish('user:1', 'a');
    server.publish('user:1', 'b');
    await until(() => c.got.length === 2, 'two publications');
    assert.deepEqual(c.got, [['user:1', 2, 'a'], ['user:1', 3, 'b']]);
    assert.deepEqual(own, ['a', 'b']); // the subscription's own event, as for subscribe()
    // Nothing was sent for it: the server subscribed it.
    assert.deepEqual(server.frames.filter((f) => f.type === 'sub' || f.type === 'unsub'), []);
  });

  it('after a reconnect, what was published meanwhile is recovered once, in order', async () => {
    const server = new FakeServer(['user:1']);
    const c = client(server);
    await until(() => c.serverSubscriptions.get('user:1')?.state === 'live', 'the server-side subscription');
    server.publish('user:1', 'one');
    await until(() => c.got.length === 1, 'the first publication');
    for (const conn of [...server.conns]) conn.kill(1006);
    server.publish('user:1', 'two'); // while the client is away
    server.publish('user:1', 'three');
    await until(() => server.opened === 2 && c.got.length === 3, 'the missed publications');
    server.publish('user:1', 'four');
    await until(() => c.got.length === 4, 'a live one after the recovery');
    assert.deepEqual(c.got.map(([, offset, data]) => [offset, data]),
      [[1, 'one'], [2, 'two'], [3, 'three'], [4, 'four']]);
    // Recovered the way a gap is: unsub, then sub from the position delivered.
    const after = server.frames.filter((f) => f.type === 'sub' || f.type === 'unsub');
    assert.deepEqual(after.map((f) => [f.type, f.channel, f.since ?? null]),
      [['unsub', 'user:1', null], ['sub', 'user:1', { epoch: 'E1', offset: 1 }]]);
  });

  it('a reconnect at the position delivered sends nothing; a channel no longer named ends', async () => {
    const server = new FakeServer(['a', 'b']);
    const c = client(server);
    await until(() => c.serverSubscriptions.size === 2
      && [...c.serverSubscriptions.values()].every((s) => s.state === 'live'), 'two subscriptions');
    const b = c.serverSubscriptions.get('b');
    server.serverSubs = ['a'];
    for (const conn of [...server.conns]) conn.kill(1006);
    await until(() => server.opened === 2 && c.serverSubscriptions.size === 1, 'the second welcome');
    assert.equal(b.state, 'closed');
    assert.deepEqual([...c.serverSubscriptions.keys()], ['a']);
    server.publish('a', 'x');
    server.publish('b', 'not for us'); // the server no longer subscribes it
    await until(() => c.got.length === 1, 'a publication of a');
    assert.deepEqual(c.got, [['a', 1, 'x']]);
    assert.deepEqual(server.frames.filter((f) => f.type === 'sub'), []);
  });
});

describe('server-side subscriptions, tabs sharing one connection', { timeout: 20000 }, () => {
  it('every tab has them; a new leader recovers what the old one had not delivered', async () => {
    const server = new FakeServer(['user:1']);
    const tabs = { locks: new LockManager(), bus: new Bus() };
    const a = client(server, tabs, 'a');
    const b = client(server, tabs, 'b');
    const live = (t) => t.serverSubscriptions.get('user:1')?.state === 'live';
    await until(() => live(a) && live(b), 'both tabs subscribed');
    assert.equal(server.opened, 1); // one connection for both
    server.publish('user:1', 'one');
    await until(() => a.got.length === 1 && b.got.length === 1, 'one publication in each tab');
    // The leader tab dies; while nobody holds the connection, more is published.
    tabs.bus.crash('a');
    a._closed = true;
    a._hub?.stop();
    tabs.locks.crash('a');
    server.publish('user:1', 'two');
    await until(() => b.isLeader && b.got.length === 2, 'b leads and recovers');
    server.publish('user:1', 'three');
    await until(() => b.got.length === 3, 'a live one');
    assert.deepEqual(b.got.map(([, offset, data]) => [offset, data]),
      [[1, 'one'], [2, 'two'], [3, 'three']]);
  });
});

describe('ChannelCursor.joined', () => {
  it('is live when nothing was missed, and resyncs from the delivered position otherwise', () => {
    const c = new ChannelCursor('user:1');
    assert.equal(c.joined('E1', 5), null);
    assert.equal(c.state, CursorState.LIVE);
    assert.deepEqual(c.position, { epoch: 'E1', offset: 5 });
    c.connectionLost();
    assert.equal(c.joined('E1', 5), null);
    c.connectionLost();
    assert.deepEqual(c.joined('E1', 9), { epoch: 'E1', offset: 5 });
    assert.equal(c.state, CursorState.RESYNCING);
    c.onUnsubscribed();
    assert.equal(c.state, CursorState.SUBSCRIBING);
    assert.deepEqual(c.asked, { epoch: 'E1', offset: 5 });
  });
});
