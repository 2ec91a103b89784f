// A small fake Staywire server for the browser client's unit tests, and the helpers
// around it: each connection is a `WebSocket` class the client is given, answering as the
// real server does (docs/protocol.md) for what these tests use: welcome (with the
// channels it subscribed the connection to itself, `server_subs`), ping, sub with
// recovery from a stream's history, unsub. A test extends it (`handle`, and `handleBinary`
// for binary frames, which `push` sends when given a Uint8Array) for more.
import assert from 'node:assert/strict';
import { Client, Backoff, MemoryStore } from '../../../src/staywire/static/staywire.js';

export class FakeServer {
  /** @param {string[]} serverSubs channels every connection is subscribed to at its welcome */
  constructor(serverSubs = []) {
    this.serverSubs = serverSubs;
    this.streams = new Map();
    this.conns = new Set();
    this.frames = [];
    this.opened = 0;
    /** welcome.binary when set: what a v2 connection allows. */
    this.binary = null;
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

  /** A request the base does not answer: true when the subclass did. */
  handle(conn, m) { // eslint-disable-line no-unused-vars
    return false;
  }

  /** A binary frame (a Uint8Array) from a client. */
  handleBinary(conn, frame) { // eslint-disable-line no-unused-vars
    conn.push({ type: 'error', code: 'binary_unsupported', reason: '' });
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
          this.push({ type: 'welcome', client: `conn${server.opened}`, session: 's',
            ping_interval: 25, pong_timeout: 10, expires_at: null, resumed: false, subs: [],
            server_subs: joined, ...(server.binary ? { binary: server.binary } : {}) });
        });
      }
      push(msg) {
        const data = msg instanceof Uint8Array ? msg.slice().buffer : JSON.stringify(msg);
        setImmediate(() => { if (this.readyState === 1) this.onmessage?.({ data }); });
      }
      send(text) {
        if (this.readyState !== 1) return;
        if (typeof text !== 'string') {
          const frame = new Uint8Array(text).slice(); // the client may reuse its buffer
          server.frames.push(frame);
          setImmediate(() => { if (this.readyState === 1) server.handleBinary(this, frame); });
          return;
        }
        const m = JSON.parse(text);
        server.frames.push(m);
        setImmediate(() => this.handle(m));
      }
      handle(m) {
        if (this.readyState !== 1) return;
        if (server.handle(this, m)) return;
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

export const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export async function until(predicate, what, ms = 3000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (predicate()) return;
    await wait(2);
  }
  assert.fail(`timed out waiting for ${what}`);
}

const clients = [];

/**
 * A client on `server`: alone (`share: false`), or a tab of `tabs` (support/tabs.mjs).
 * `c.got` collects its 'publication' events as [channel, offset, data].
 */
export function client(server, tabs = null, tabId = undefined) {
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

/** For afterEach: close every client made since, and let their closes run. */
export async function closeClients() {
  for (const c of clients.splice(0)) await c.close();
  await wait(5);
}
