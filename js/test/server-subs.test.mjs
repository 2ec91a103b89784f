// Server-side subscriptions in the browser client (docs/protocol.md, *Server-side
// subscriptions*): the welcome's `server_subs` become `client.serverSubscriptions` and
// 'publication' events, in every tab sharing the connection, and after a reconnect each is
// recovered from the position delivered (unsub, then sub with since), never twice, in order.
// support/fake-server.mjs subscribes each connection itself, as the real server does.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { ChannelCursor, CursorState } from '../../src/staywire/static/cursor.js';
import { Bus, LockManager } from './support/tabs.mjs';
import { FakeServer, client, closeClients, until } from './support/fake-server.mjs';

afterEach(closeClients);

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
