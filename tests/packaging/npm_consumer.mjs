// A bundler's view of the npm package: run from a temporary project that installed the packed
// tarball, so `staywire` resolves through node_modules/staywire and its `exports`, never the
// source tree. The browser's WebSocket is a fake installed on globalThis (as a page has it),
// driven by hand the way js/test/socket.test.mjs drives its FakeWS.
// Prints one JSON line that the pytest side checks; any failed assertion exits non-zero.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { Client, State, VERSION, CloseCode, Unauthorized } from 'staywire';

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
  frame(type) { return this.sent.find((m) => m.type === type); }
}
globalThis.WebSocket = FakeWS;

const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(predicate, what, ms = 5000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) { // bounded: fails with a name instead of hanging
    const value = predicate();
    if (value) return value;
    await wait(2);
  }
  assert.fail(`timed out waiting for ${what}`);
}

const require = createRequire(import.meta.url);
const entry = import.meta.resolve('staywire');
const manifest = require.resolve('staywire/package.json');
const pkg = JSON.parse(readFileSync(manifest, 'utf8'));
assert.equal(VERSION, pkg.version, 'staywire.js VERSION and package.json version differ');
assert.equal(typeof Unauthorized, 'function');
assert.equal(typeof CloseCode, 'object');

// share: false and persist: false keep the test to the connection itself: Node has neither
// Web Locks nor IndexedDB, and the Client falls back the same way without them.
const client = new Client('ws://127.0.0.1:9/ws', { token: 'secret-token', share: false, persist: false });
const states = [];
client.on('state', (state) => states.push(state));
client.connect();

const ws = await until(() => FakeWS.all[0], 'the client to open a WebSocket');
assert.deepEqual(ws.protocols, ['staywire.v2', 'staywire.v1']);
assert.equal(new URL(ws.url).searchParams.get('token'), null, 'the token must not be in the URL');
ws.open();
assert.deepEqual(ws.sent[0], { type: 'auth', token: 'secret-token' }, 'auth is the first frame');
ws.receive({ type: 'welcome', client: 'c1', session: 'abc123', ping_interval: 25, pong_timeout: 10,
  expires_at: null, resumed: false, subs: [] });
await until(() => client.state === State.OPEN, 'OPEN after the welcome');

const received = [];
const subscribed = client.subscribe('room:1', (data, msg) => received.push({ data, offset: msg.offset }));
const sub = await until(() => ws.frame('sub'), 'the sub frame');
assert.equal(sub.channel, 'room:1');
assert.equal(typeof sub.id, 'number');
ws.receive({ type: 'ack', id: sub.id, epoch: 'E1', offset: 0, recovered: false });
await subscribed;

ws.receive({ type: 'msg', channel: 'room:1', epoch: 'E1', offset: 1, data: { text: 'hello' } });
await until(() => received.length === 1, 'the publication at the subscriber');
assert.deepEqual(received, [{ data: { text: 'hello' }, offset: 1 }]);

const published = client.publish('room:1', { text: 'back' });
const pub = await until(() => ws.frame('pub'), 'the pub frame');
assert.deepEqual(pub.data, { text: 'back' });
assert.equal(typeof pub.key, 'string');
ws.receive({ type: 'ack', id: pub.id, epoch: 'E1', offset: 2 });
const ack = await published;
assert.equal(ack.offset, 2);

client.close();
console.log(JSON.stringify({
  entry, manifest, version: VERSION, states, protocols: ws.protocols,
  frames: ws.sent.map((m) => m.type), received, ack,
}));
