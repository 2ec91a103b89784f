// The transport: close-code policy, backoff and the retry budget, the token provider,
// the heartbeat's verdict, drain, and send-side backpressure. A fake WebSocket, fake timers.
import { describe, it, mock, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Socket, State } from '../../src/staywire/static/socket.js';
import { Backoff } from '../../src/staywire/static/backoff.js';
import { ConnectionClosed, ReconnectFailed, Unauthorized } from '../../src/staywire/static/errors.js';

class FakeWS {
  static all = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.sent = [];
    this.readyState = 0;
    this.bufferedAmount = 0;
    FakeWS.all.push(this);
  }
  send(data) { this.sent.push(JSON.parse(data)); }
  close(code, reason) { this.closedWith = { code, reason }; this.readyState = 3; }
  // What the server and the network do:
  open() { this.readyState = 1; this.onopen?.({}); }
  receive(msg) { this.onmessage?.({ data: JSON.stringify(msg) }); }
  welcome(extra = {}) {
    this.receive({ type: 'welcome', client: 'c', session: 'abc123', ping_interval: 25, pong_timeout: 10,
      expires_at: null, resumed: false, subs: [], ...extra });
  }
  drop(code = 1006, reason = '') { this.readyState = 3; this.onclose?.({ code, reason }); }
  static last() { return FakeWS.all[FakeWS.all.length - 1]; }
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

function make(options = {}) {
  const events = [];
  const socket = new Socket('ws://127.0.0.1:9/ws', {
    WebSocket: FakeWS,
    backoff: new Backoff({ random: () => 0.5, maxRetries: options.maxRetries ?? 10 }),
    random: () => 0.5,
    pingInterval: 30000,
    pongTimeout: 10000,
    ...options,
  });
  for (const name of ['state', 'welcome', 'close', 'reconnect', 'error', 'message', 'drain', 'backpressure']) {
    socket.on(name, (...args) => events.push([name, ...args]));
  }
  return { socket, events };
}

async function connectOpen(socket) {
  socket.connect();
  await flush();
  const ws = FakeWS.last();
  ws.open();
  ws.welcome();
  return ws;
}

describe('Socket', { timeout: 30000 }, () => {
  beforeEach(() => {
    FakeWS.all = [];
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  });
  afterEach(() => mock.timers.reset());

  it('connects with the staywire.v1 subprotocol and is OPEN at the welcome', async () => {
    const { socket, events } = make();
    const ws = await connectOpen(socket);
    assert.deepEqual(ws.protocols, ['staywire.v1']);
    assert.equal(socket.state, State.OPEN);
    assert.equal(socket.session, 'abc123');
    assert.equal(socket.connId, '1');
    assert.deepEqual(events.filter((e) => e[0] === 'state').map((e) => e[1]), ['OPEN']);
    assert.equal(ws.sent[0].type, 'ping'); // an RTT at once
  });

  it('reconnects with backoff 1 s, 2 s, 4 s (times 0.5 + random) and resumes the session', async () => {
    const { socket, events } = make();
    const ws = await connectOpen(socket);
    ws.drop(1006);
    assert.equal(socket.state, State.RECONNECTING);
    const delays = [];
    for (let i = 0; i < 3; i += 1) {
      const rec = events.filter((e) => e[0] === 'reconnect').at(-1)[1];
      delays.push(rec.delay);
      mock.timers.tick(rec.delay);
      await flush();
      assert.match(FakeWS.last().url, /session=abc123/);
      FakeWS.last().drop(1006); // refused again
    }
    assert.deepEqual(delays, [1000, 2000, 4000]);
    mock.timers.tick(8000);
    await flush();
    FakeWS.last().open();
    FakeWS.last().welcome();
    assert.equal(socket.state, State.OPEN);
    assert.equal(socket.attempts, 0); // the budget is about failures in a row
    FakeWS.last().drop(1006);
    assert.equal(events.filter((e) => e[0] === 'reconnect').at(-1)[1].delay, 1000);
  });

  it('gives up after maxRetries failures in a row: an error event and CLOSED', async () => {
    const { socket, events } = make({ maxRetries: 3 });
    socket.connect();
    await flush();
    FakeWS.last().drop(1006);
    for (let i = 0; i < 3; i += 1) {
      mock.timers.tick(60000);
      await flush();
      FakeWS.last().drop(1006, 'refused');
    }
    assert.equal(socket.state, State.CLOSED);
    const errors = events.filter((e) => e[0] === 'error');
    assert.equal(errors.length, 1);
    assert.ok(errors[0][1] instanceof ReconnectFailed);
    assert.equal(errors[0][1].attempts, 3);
    assert.equal(FakeWS.all.length, 4);
    mock.timers.tick(600000);
    await flush();
    assert.equal(FakeWS.all.length, 4);
  });

  for (const [code, cls] of [[4501, Unauthorized], [4503, Unauthorized], [4500, ConnectionClosed], [4508, ConnectionClosed]]) {
    it(`treats ${code} as terminal (${cls.name})`, async () => {
      const { socket, events } = make();
      const ws = await connectOpen(socket);
      ws.drop(code, 'nope');
      assert.equal(socket.state, State.CLOSED);
      const err = events.find((e) => e[0] === 'error')[1];
      assert.ok(err instanceof cls);
      assert.equal(err.code, code);
      mock.timers.tick(600000);
      await flush();
      assert.equal(FakeWS.all.length, 1);
    });
  }

  it('does not reconnect after a 1000 close, without an error', async () => {
    const { socket, events } = make();
    const ws = await connectOpen(socket);
    ws.drop(1000);
    assert.equal(socket.state, State.CLOSED);
    assert.ok(events.find((e) => e[0] === 'error')[1] instanceof ConnectionClosed);
  });

  for (const code of [1001, 1011, 1013, 4000, 4008, 4029]) {
    it(`reconnects with backoff after ${code}`, async () => {
      const { socket } = make();
      const ws = await connectOpen(socket);
      ws.drop(code);
      assert.equal(socket.state, State.RECONNECTING);
      mock.timers.tick(1000);
      await flush();
      assert.equal(FakeWS.all.length, 2);
    });
  }

  it('calls the token provider on every connect and sends it as the first message', async () => {
    let n = 0;
    const { socket } = make({ token: async () => `token-${(n += 1)}` });
    const ws = await connectOpen(socket);
    assert.deepEqual(ws.sent[0], { type: 'auth', token: 'token-1' });
    ws.drop(4401, 'token expired'); // a new token, at once
    mock.timers.tick(0);
    await flush();
    const second = FakeWS.last();
    assert.notEqual(second, ws);
    second.open();
    assert.deepEqual(second.sent[0], { type: 'auth', token: 'token-2' });
    assert.equal(n, 2);
  });

  it('gives up on 4401 when the token is fixed: it cannot be renewed', async () => {
    const { socket, events } = make({ token: 'fixed' });
    const ws = await connectOpen(socket);
    ws.drop(4401, 'token expired');
    assert.equal(socket.state, State.CLOSED);
    const err = events.find((e) => e[0] === 'error')[1];
    assert.ok(err instanceof ConnectionClosed && !(err instanceof Unauthorized));
    assert.equal(err.code, 4401);
  });

  it('reconnects at once on 4401 with no token: the cookies are its credentials', async () => {
    // A connect proxy (docs/proxy.md) identified it from the upgrade's cookies: a new
    // upgrade carries the cookies as they are now, and the backend decides again.
    const { socket } = make();
    const ws = await connectOpen(socket);
    ws.drop(4401, 'session ended by the application');
    assert.equal(socket.state, State.RECONNECTING);
    mock.timers.tick(0);
    await flush();
    assert.notEqual(FakeWS.last(), ws);
  });

  it('can put the token in the query instead', async () => {
    const { socket } = make({ token: 'tok', tokenIn: 'query' });
    const ws = await connectOpen(socket);
    assert.match(ws.url, /token=tok/);
    assert.doesNotMatch(ws.url, /auth=message/);
    assert.equal(ws.sent.some((m) => m.type === 'auth'), false);
  });

  it('says in the URL that the token comes as the first message, never the token', async () => {
    // Else a server that allows anonymous connections welcomes it as anonymous first.
    const { socket } = make({ token: 'tok' });
    const ws = await connectOpen(socket);
    assert.match(ws.url, /auth=message/);
    assert.doesNotMatch(ws.url, /tok(?!en)/);
    assert.equal(ws.sent[0].type, 'auth');
  });

  it('waits about reconnect_in_ms after a drain', async () => {
    const { socket, events } = make();
    const ws = await connectOpen(socket);
    ws.receive({ type: 'drain', reconnect_in_ms: 3000 });
    ws.drop(1012, 'service restart');
    const rec = events.filter((e) => e[0] === 'reconnect').at(-1)[1];
    assert.equal(rec.delay, 3000); // 3000 * (0.5 + 0.5)
  });

  it('leaves by itself at about reconnect_in_ms after a drain, and comes back at once', async () => {
    const { socket, events } = make();
    const ws = await connectOpen(socket);
    ws.receive({ type: 'drain', reconnect_in_ms: 2000 });
    mock.timers.tick(1999);
    assert.equal(socket.state, State.OPEN);
    mock.timers.tick(1);
    assert.deepEqual(ws.closedWith, { code: 1001, reason: 'reconnecting: server draining' });
    assert.equal(events.filter((e) => e[0] === 'reconnect').at(-1)[1].delay, 0);
    mock.timers.tick(0);
    await flush();
    assert.equal(FakeWS.all.length, 2);
  });

  it('answers server pings and passes other messages up', async () => {
    const { socket, events } = make();
    const ws = await connectOpen(socket);
    ws.receive({ type: 'ping', t: 42 });
    assert.deepEqual(ws.sent.at(-1), { type: 'pong', t: 42 });
    ws.receive({ type: 'msg', channel: 'c', epoch: 'e', offset: 1, data: 1 });
    assert.equal(events.filter((e) => e[0] === 'message').length, 1);
  });

  it('drops a link that stays silent after a ping, and reconnects', async () => {
    const { socket, events } = make();
    const ws = await connectOpen(socket);
    ws.receive({ type: 'pong', t: ws.sent[0].t });
    mock.timers.tick(30000); // ping
    mock.timers.tick(10000); // nothing back
    assert.deepEqual(ws.closedWith, { code: 4000, reason: 'heartbeat timeout' });
    assert.equal(socket.state, State.RECONNECTING);
    assert.equal(events.find((e) => e[0] === 'close')[1].code, 1006);
  });

  it('drops a connection that never gets its welcome', async () => {
    const { socket } = make({ welcomeTimeout: 5000 });
    socket.connect();
    await flush();
    FakeWS.last().open();
    mock.timers.tick(5000);
    assert.equal(socket.state, State.RECONNECTING);
  });

  it('holds frames over the high-water mark until under the low-water mark', async () => {
    const { socket, events } = make({ highWaterMark: 1000, lowWaterMark: 100, drainPoll: 10 });
    const ws = await connectOpen(socket);
    ws.sent = [];
    ws.bufferedAmount = 5000;
    assert.equal(socket.send('{"n":1}'), true);
    assert.equal(socket.send('{"n":2}'), true);
    assert.deepEqual(ws.sent, []);
    assert.equal(socket.paused, true);
    let writable = false;
    socket.writable().then(() => { writable = true; });
    ws.bufferedAmount = 500; // under the high mark, not under the low one
    mock.timers.tick(10);
    await flush();
    assert.deepEqual(ws.sent, []);
    assert.equal(writable, false);
    ws.bufferedAmount = 50;
    mock.timers.tick(10);
    await flush();
    assert.deepEqual(ws.sent, [{ n: 1 }, { n: 2 }]);
    assert.equal(writable, true);
    assert.deepEqual(events.filter((e) => e[0] === 'backpressure').map((e) => e[1]), [true, false]);
  });

  it('refuses to send when not OPEN', () => {
    const { socket } = make();
    assert.equal(socket.send('{}'), false);
  });

  it('close() is final', async () => {
    const { socket } = make();
    const ws = await connectOpen(socket);
    socket.close();
    assert.equal(ws.closedWith.code, 1000);
    assert.equal(socket.state, State.CLOSED);
    mock.timers.tick(600000);
    await flush();
    assert.equal(FakeWS.all.length, 1);
  });
});
