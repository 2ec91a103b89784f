// Presence in the browser client (docs/protocol.md, *Presence*): Subscription.presence()
// and presenceStats() are answered over the one connection, whichever tab asks; `join` and
// `leave` from the server are 'join'/'leave' events of every tab's subscription; a refusal
// is a RequestError with its code. A small fake server answers as the real one does.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Client, Backoff, MemoryStore } from '../../src/staywire/static/staywire.js';
import { Bus, LockManager } from './support/tabs.mjs';

class FakeServer {
  constructor() {
    this.conns = new Set();
    this.frames = [];
    this.opened = 0;
    this.members = [{ client: 'c1', user: 'alice' }, { client: 'c2', user: 'alice' },
      { client: 'c3', user: 'bob', info: { name: 'Bob' } }];
  }
  event(type, channel, member) {
    for (const conn of this.conns) if (conn.subs.has(channel)) conn.push({ type, channel, member });
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
          this.push({ type: 'welcome', client: `conn${server.opened}`, session: 's', ping_interval: 25,
            pong_timeout: 10, expires_at: null, resumed: false, subs: [] });
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
        if (m.type === 'ping') this.push({ type: 'pong', t: m.t });
        if (m.type === 'sub') {
          this.subs.add(m.channel);
          this.push({ type: 'ack', id: m.id, epoch: 'E', offset: 0, recovered: false });
        }
        if (m.type === 'presence' || m.type === 'presence_stats') {
          if (!m.channel.startsWith('room:')) {
            this.push({ type: 'error', id: m.id, code: 'presence_disabled', reason: 'off' });
            return;
          }
          const stats = { clients: server.members.length, users: 2 };
          this.push({ type: 'result', id: m.id,
            data: m.type === 'presence' ? { ...stats, members: server.members } : stats });
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
  c.connect().catch(() => {});
  clients.push(c);
  return c;
}

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  await wait(5);
});

describe('presence', { timeout: 20000 }, () => {
  it('presence() and presenceStats() ask the server; join and leave are events', async () => {
    const server = new FakeServer();
    const c = client(server);
    const sub = await c.subscribe('room:1');
    const p = await sub.presence();
    assert.deepEqual(p, { clients: 3, users: 2, members: server.members });
    assert.deepEqual(await sub.presenceStats(), { clients: 3, users: 2 });
    assert.deepEqual(server.frames.filter((f) => f.type.startsWith('presence'))
      .map((f) => [f.type, f.channel]), [['presence', 'room:1'], ['presence_stats', 'room:1']]);
    const events = [];
    sub.on('join', (m) => events.push(['join', m]));
    sub.on('leave', (m) => events.push(['leave', m]));
    server.event('join', 'room:1', { client: 'c9', user: 'carol' });
    server.event('leave', 'room:1', { client: 'c3', user: 'bob', info: { name: 'Bob' } });
    server.event('join', 'room:1', { user: 'no client id' }); // malformed: ignored
    await until(() => events.length === 2, 'two events');
    await wait(10);
    assert.deepEqual(events, [
      ['join', { channel: 'room:1', client: 'c9', user: 'carol' }],
      ['leave', { channel: 'room:1', client: 'c3', user: 'bob', info: { name: 'Bob' } }],
    ]);
  });

  it('a channel without presence rejects with its error code', async () => {
    const server = new FakeServer();
    const c = client(server);
    const sub = await c.subscribe('plain');
    await assert.rejects(sub.presence(), (err) => err.code === 'presence_disabled');
    assert.equal(c.state, 'OPEN'); // the connection lives on
  });

  it('tabs sharing one connection: each asks through the leader and hears every event', async () => {
    const server = new FakeServer();
    const tabs = { locks: new LockManager(), bus: new Bus() };
    const a = client(server, tabs, 'a');
    const b = client(server, tabs, 'b');
    const [subA, subB] = await Promise.all([a.subscribe('room:1'), b.subscribe('room:1')]);
    assert.equal(server.opened, 1);
    const leaderIsA = a.isLeader;
    const follower = leaderIsA ? subB : subA;
    assert.equal((await follower.presence()).members.length, 3); // asked by the other tab
    const heard = { a: [], b: [] };
    subA.on('join', (m) => heard.a.push(m.user));
    subB.on('join', (m) => heard.b.push(m.user));
    server.event('join', 'room:1', { client: 'c9', user: 'carol' });
    await until(() => heard.a.length === 1 && heard.b.length === 1, 'the join in both tabs');
    assert.deepEqual(heard, { a: ['carol'], b: ['carol'] });
    assert.equal(server.frames.filter((f) => f.type === 'presence').length, 1);
  });
});
