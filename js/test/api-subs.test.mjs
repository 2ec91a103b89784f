// The server API's subscribe/unsubscribe in the browser client (docs/protocol.md,
// *Server-side subscriptions*): `subscribed {channel, epoch, offset}` on an open connection
// adds a Subscription to `client.serverSubscriptions` in every tab sharing it, live from that
// position; `unsubscribed {channel}` ends it (an 'end' event, no error). A server that keeps
// it (the session record) names it in the next welcome's `server_subs`, recovered from the
// position delivered. support/fake-server.mjs, with the API's two calls.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Bus, LockManager } from './support/tabs.mjs';
import { FakeServer, client, closeClients, until, wait } from './support/fake-server.mjs';

class ApiServer extends FakeServer {
  // The server API: every open connection joins `channel` at the stream's top, and every
  // later welcome names it (the session record keeps it).
  apiSubscribe(channel) {
    if (!this.serverSubs.includes(channel)) this.serverSubs.push(channel);
    const s = this.stream(channel);
    for (const conn of this.conns) {
      conn.subs.add(channel);
      conn.push({ type: 'subscribed', channel, epoch: s.epoch, offset: s.offset });
    }
  }
  apiUnsubscribe(channel) {
    this.serverSubs = this.serverSubs.filter((c) => c !== channel);
    for (const conn of this.conns) {
      if (conn.subs.delete(channel)) conn.push({ type: 'unsubscribed', channel });
    }
  }
}

afterEach(closeClients);

describe('the server API subscribes a live connection', { timeout: 20000 }, () => {
  it('subscribed makes a live Subscription; unsubscribed ends it without an error', async () => {
    const server = new ApiServer([]);
    server.publish('news:1', 'before'); // published before the join: not for it
    const c = client(server);
    await until(() => c.state === 'OPEN', 'open');
    const made = [];
    c.on('serverSubscription', (sub) => made.push(sub.channel));
    server.apiSubscribe('news:1');
    await until(() => c.serverSubscriptions.get('news:1')?.state === 'live', 'the API subscription');
    const sub = c.serverSubscriptions.get('news:1');
    assert.equal(sub.serverSide, true);
    assert.deepEqual(made, ['news:1']);
    server.publish('news:1', 'a');
    await until(() => c.got.length === 1, 'a publication');
    assert.deepEqual(c.got, [['news:1', 2, 'a']]);
    const ended = [];
    const errors = [];
    sub.on('end', (info) => ended.push(info.channel));
    sub.on('error', (err) => errors.push(err));
    server.apiUnsubscribe('news:1');
    await until(() => sub.state === 'closed', 'the end');
    assert.deepEqual(ended, ['news:1']);
    assert.deepEqual(errors, []);
    assert.equal(c.serverSubscriptions.has('news:1'), false);
    server.publish('news:1', 'after');
    await wait(20);
    assert.equal(c.got.length, 1);
    // The server made and ended it: the client sent no sub or unsub of its own.
    assert.deepEqual(server.frames.filter((f) => f.type === 'sub' || f.type === 'unsub'), []);
  });

  it('it survives a reconnect with what was published meanwhile recovered once, in order', async () => {
    const server = new ApiServer([]);
    const c = client(server);
    await until(() => c.state === 'OPEN', 'open');
    server.apiSubscribe('news:2');
    await until(() => c.serverSubscriptions.get('news:2')?.state === 'live', 'the API subscription');
    const sub = c.serverSubscriptions.get('news:2');
    server.publish('news:2', 'one');
    await until(() => c.got.length === 1, 'the first publication');
    for (const conn of [...server.conns]) conn.kill(1006);
    server.publish('news:2', 'two'); // while away
    await until(() => server.opened === 2 && c.got.length === 2, 'the missed publication');
    server.publish('news:2', 'three');
    await until(() => c.got.length === 3, 'a live one');
    assert.deepEqual(c.got.map(([, offset, data]) => [offset, data]), [[1, 'one'], [2, 'two'], [3, 'three']]);
    assert.equal(c.serverSubscriptions.get('news:2'), sub); // the same Subscription goes on
  });

  it('every tab sharing the connection gets it and loses it', async () => {
    const server = new ApiServer([]);
    const tabs = { locks: new LockManager(), bus: new Bus() };
    const a = client(server, tabs, 'a');
    const b = client(server, tabs, 'b');
    await until(() => a.state === 'OPEN' && b.state === 'OPEN', 'both tabs open');
    assert.equal(server.opened, 1);
    server.apiSubscribe('news:3');
    const live = (t) => t.serverSubscriptions.get('news:3')?.state === 'live';
    await until(() => live(a) && live(b), 'both tabs subscribed');
    server.publish('news:3', 'x');
    await until(() => a.got.length === 1 && b.got.length === 1, 'one publication in each tab');
    const subs = [a, b].map((t) => t.serverSubscriptions.get('news:3'));
    server.apiUnsubscribe('news:3');
    await until(() => subs.every((s) => s.state === 'closed'), 'ended in both tabs');
    assert.equal(a.serverSubscriptions.size + b.serverSubscriptions.size, 0);
  });
});
