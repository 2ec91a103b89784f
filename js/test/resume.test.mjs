// A resume the server could not load is said in the welcome (`resume_failed`); the client
// warns when the broker was unavailable, and stays quiet for a routine expired session.
import { describe, it, mock, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Socket } from '../../src/staywire/static/socket.js';
import { Backoff } from '../../src/staywire/static/backoff.js';

class FakeWS {
  static all = [];
  constructor(url, protocols) { this.url = url; this.protocols = protocols; this.sent = []; this.readyState = 0; this.bufferedAmount = 0; FakeWS.all.push(this); }
  send(data) { this.sent.push(JSON.parse(data)); }
  close(code, reason) { this.closedWith = { code, reason }; this.readyState = 3; }
  open() { this.readyState = 1; this.onopen?.({}); }
  welcome(extra) {
    this.onmessage?.({ data: JSON.stringify({ type: 'welcome', client: 'c', ping_interval: 25, pong_timeout: 10,
      expires_at: null, resumed: false, subs: [], ...extra }) });
  }
  drop() { this.readyState = 3; this.onclose?.({ code: 1006, reason: '' }); }
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

async function reconnectWith(extra) {
  const warnings = [];
  const socket = new Socket('ws://127.0.0.1:9/ws', {
    WebSocket: FakeWS, backoff: new Backoff({ random: () => 0.5 }), random: () => 0.5,
  });
  socket.on('warning', (err) => warnings.push(err.message));
  socket.connect();
  await flush();
  FakeWS.all.at(-1).open();
  FakeWS.all.at(-1).welcome({ session: 's1' });
  FakeWS.all.at(-1).drop();
  mock.timers.tick(2000);
  await flush();
  const ws = FakeWS.all.at(-1);
  assert.match(ws.url, /session=s1/);
  ws.open();
  ws.welcome({ session: 's2', ...extra });
  assert.equal(socket.session, 's2');
  socket.close();
  return warnings;
}

describe('resume_failed', () => {
  beforeEach(() => { FakeWS.all = []; mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 }); });
  afterEach(() => mock.timers.reset());

  it('warns when the broker could not be asked', async () => {
    const warnings = await reconnectWith({ resume_failed: 'unavailable' });
    assert.deepEqual(warnings, ["session not resumed: the server's broker is unavailable"]);
  });

  it('is quiet for an expired session', async () => {
    assert.deepEqual(await reconnectWith({ resume_failed: 'unknown' }), []);
  });
});
