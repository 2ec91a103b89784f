// Presence in the browser client (docs/protocol.md, *Presence*): Subscription.presence()
// and presenceStats() are answered over the one connection, whichever tab asks; `join` and
// `leave` from the server are 'join'/'leave' events of every tab's subscription; a refusal
// is a RequestError with its code. support/fake-server.mjs, answering presence too.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Bus, LockManager } from './support/tabs.mjs';
import { FakeServer, client, closeClients, until, wait } from './support/fake-server.mjs';

class PresenceServer extends FakeServer {
  constructor() {
    super();
    this.members = [{ client: 'c1', user: 'alice' }, { client: 'c2', user: 'alice' },
      { client: 'c3', user: 'bob', info: { name: 'Bob' } }];
  }
  event(type, channel, member) {
    for (const conn of this.conns) if (conn.subs.has(channel)) conn.push({ type, channel, member });
  }
  handle(conn, m) {
    if (m.type !== 'presence' && m.type !== 'presence_stats') return false;
    if (!m.channel.startsWith('room:')) {
      conn.push({ type: 'error', id: m.id, code: 'presence_disabled', reason: 'off' });
      return true;
    }
    const stats = { clients: this.members.length, users: 2 };
    conn.push({ type: 'result', id: m.id,
      data: m.type === 'presence' ? { ...stats, members: this.members } : stats });
    return true;
  }
}

afterEach(closeClients);

describe('presence', { timeout: 20000 }, () => {
  it('presence() and presenceStats() ask the server; join and leave are events', async () => {
    const server = new PresenceServer();
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
    const server = new PresenceServer();
    const c = client(server);
    const sub = await c.subscribe('plain');
    await assert.rejects(sub.presence(), (err) => err.code === 'presence_disabled');
    assert.equal(c.state, 'OPEN'); // the connection lives on
  });

  it('tabs sharing one connection: each asks through the leader and hears every event', async () => {
    const server = new PresenceServer();
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
