// The transport: one WebSocket at a time, its heartbeat, its reconnects and its send buffer.
//
// States (the same four as the Python client):
//
//   CONNECTING ──welcome──> OPEN ──drop / close──> RECONNECTING ──welcome──> OPEN ...
//        │                                              │
//        └──────── terminal close code, retry budget spent, close() ──> CLOSED
//
// * What follows a close is reconnect.js's decision, by the close-code policy of codes.js
//   (generated from the server's enum): 1000 and 4500-4999 are terminal; 4401 fetches a new
//   token (the token provider is called on every connect anyway) and reconnects; everything
//   else reconnects with backoff and jitter (backoff.js). A `drain` from the server replaces
//   the next delay by its `reconnect_in_ms`, jittered.
// * Heartbeat (heartbeat.js): a `ping` every `pingInterval`; nothing back within
//   `pongTimeout` drops the transport at once (code 4000) instead of waiting for TCP.
// * Backpressure: when WebSocket.bufferedAmount is over `highWaterMark`, frames wait in a
//   queue (and `writable()` waits) until it falls under `lowWaterMark`.

import { Emitter } from './emitter.js';
import { Backoff, RetryTimer } from './backoff.js';
import { ReconnectSchedule } from './reconnect.js';
import { Heartbeat } from './heartbeat.js';
import { CloseCode, SUBPROTOCOL } from './codes.js';

export const State = Object.freeze({
  CONNECTING: 'CONNECTING',
  OPEN: 'OPEN',
  RECONNECTING: 'RECONNECTING',
  CLOSED: 'CLOSED',
});

export { SUBPROTOCOL } from './codes.js';

/** Local close code for a transport this client dropped itself (no close frame awaited). */
const ABNORMAL = CloseCode.ABNORMAL;

/**
 * `ws://` or `wss://` URL for `url`, which may be relative to the page (`/ws`) or http(s).
 * @param {string} url
 */
export function websocketUrl(url) {
  const base = typeof location !== 'undefined' ? location.href : 'http://localhost/';
  const u = new URL(url, base);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  return u.toString();
}

/**
 * @typedef {string|null|undefined|(() => (string|null|undefined|Promise<string|null|undefined>))} TokenOption
 * @typedef {{
 *   token?: TokenOption, tokenIn?: 'message'|'query', params?: Record<string, string>,
 *   WebSocket?: any, backoff?: Backoff, maxRetries?: number,
 *   pingInterval?: number, pongTimeout?: number, lateSlack?: number,
 *   welcomeTimeout?: number, refreshMargin?: number,
 *   highWaterMark?: number, lowWaterMark?: number, drainPoll?: number,
 *   connPrefix?: string,
 *   clock?: {setTimeout?: (fn: () => void, ms: number) => any, clearTimeout?: (id: any) => void, now?: () => number},
 *   random?: () => number,
 * }} SocketOptions
 */

export class Socket extends Emitter {
  /** @param {string} url @param {SocketOptions} [options] */
  constructor(url, options = {}) {
    super();
    this.url = websocketUrl(url);
    this.options = options;
    const clock = options.clock ?? {};
    this._setTimeout = clock.setTimeout ?? ((fn, ms) => setTimeout(fn, ms));
    this._clearTimeout = clock.clearTimeout ?? ((id) => clearTimeout(id));
    this._now = clock.now ?? (() => Date.now());
    this._random = options.random ?? Math.random;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    const backoff = options.backoff ?? new Backoff({
      maxRetries: options.maxRetries ?? 10, random: this._random,
    });
    // After 4401 a reconnect can succeed with a token provider, and with no token at all:
    // then the credentials are the browser's cookies, sent afresh with every upgrade, and
    // the application's backend (connect proxy) decides again. Only a fixed token cannot.
    this._schedule = new ReconnectSchedule(backoff, {
      canRefresh: typeof options.token === 'function' || options.token == null,
      random: this._random,
    });
    this._retry = new RetryTimer(() => this._attempt(),
      { setTimeout: this._setTimeout, clearTimeout: this._clearTimeout, now: this._now });
    this.highWaterMark = options.highWaterMark ?? 1 << 20;
    this.lowWaterMark = Math.min(options.lowWaterMark ?? 1 << 18, this.highWaterMark);
    this._heartbeat = new Heartbeat({
      interval: options.pingInterval ?? 30000,
      timeout: options.pongTimeout ?? 10000,
      lateSlack: options.lateSlack ?? 1000,
      now: this._now,
      setTimeout: this._setTimeout,
      clearTimeout: this._clearTimeout,
      ping: (t) => this._sendNow(JSON.stringify({ type: 'ping', t })),
      dead: (info) => {
        this.emit('dead', info);
        this.drop('heartbeat timeout', CloseCode.HEARTBEAT_TIMEOUT);
      },
      rtt: (ms) => this.emit('rtt', ms),
      late: (info) => this.emit('late', info),
    });
    /** @type {string} */
    this.state = State.CONNECTING;
    /** @type {any} */
    this._ws = null;
    this._started = false;
    this._closing = false;
    this._everOpen = false;
    this._gen = 0;
    this._conns = 0;
    this._connPrefix = options.connPrefix ?? '';
    /** The id of the current (welcomed) connection, unique per Socket. @type {string|null} */
    this.connId = null;
    /** @type {string|null} */
    this.session = null;
    /** @type {any} the last `welcome` */
    this.welcome = null;
    /** @type {{code: number, reason: string}|null} */
    this.lastClose = null;
    /** @type {Error|null} why the socket is CLOSED, when it was not close() */
    this.error = null;
    this._drainTimer = null;
    /** @type {string[]} */
    this._queue = [];
    this._pollTimer = null;
    /** @type {Array<() => void>} */
    this._writableWaiters = [];
    this.paused = false;
    this._welcomeTimer = null;
    this._refreshTimer = null;
    /** The last reconnect scheduled. @type {{attempt: number, delay: number, at: number}|null} */
    this.lastRetry = null;
    this._onVisible = () => {
      if (typeof document !== 'undefined' && document.visibilityState === 'visible') {
        this._heartbeat.pingNow();
      }
    };
    this._onOnline = () => {
      if (this.state === State.RECONNECTING && this._retry.pending) {
        this._retry.cancel();
        this._attempt();
      }
    };
  }

  get rtt() {
    return this._heartbeat.rtt;
  }

  get attempts() {
    return this._schedule.attempts;
  }

  /** When the next reconnect attempt runs (ms since the epoch), or null. */
  get retryAt() {
    return this._retry.at;
  }

  /** How many times a late heartbeat timer gave the link a fresh chance. */
  get lateFires() {
    return this._heartbeat.lateFires;
  }

  get bufferedAmount() {
    return (this._ws?.bufferedAmount ?? 0) + this._queue.reduce((n, f) => n + f.length, 0);
  }

  /** Starts connecting (once). */
  connect() {
    if (this._started) return;
    this._started = true;
    if (typeof document !== 'undefined') document.addEventListener('visibilitychange', this._onVisible);
    if (typeof addEventListener === 'function') addEventListener('online', this._onOnline);
    this._attempt();
  }

  /** @param {string} state */
  _setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this.emit('state', state, previous);
  }

  async _token() {
    const t = this.options.token;
    return typeof t === 'function' ? await t() : t;
  }

  async _attempt() {
    if (this._closing) return;
    const gen = ++this._gen;
    this._setState(this._everOpen || this._schedule.attempts > 0 ? State.RECONNECTING : State.CONNECTING);
    let token;
    try {
      token = await this._token(); // called on every (re)connect: tokens expire
    } catch (err) {
      if (gen !== this._gen || this._closing) return;
      this.emit('warning', err);
      this._afterClose(ABNORMAL, 'token provider failed');
      return;
    }
    if (gen !== this._gen || this._closing) return;
    const url = new URL(this.url);
    for (const [k, v] of Object.entries(this.options.params ?? {})) url.searchParams.set(k, v);
    if (this.session) url.searchParams.set('session', this.session);
    const inQuery = token != null && this.options.tokenIn === 'query';
    if (inQuery) url.searchParams.set('token', String(token));
    // The token comes as the first message: the server waits for it instead of welcoming
    // the connection as anonymous first (which would refuse the user's session).
    else if (token != null) url.searchParams.set('auth', 'message');
    let ws;
    try {
      ws = new this._WebSocket(url.toString(), [SUBPROTOCOL]);
    } catch (err) {
      this.emit('warning', err);
      this._afterClose(ABNORMAL, String(/** @type {any} */ (err)?.message ?? err));
      return;
    }
    this._ws = ws;
    ws.onopen = () => {
      if (ws !== this._ws) return;
      if (token != null && !inQuery) this._sendNow(JSON.stringify({ type: 'auth', token: String(token) }));
      this._heartbeat.start();
      this._welcomeTimer = this._setTimeout(() => {
        this._welcomeTimer = null;
        if (ws === this._ws && this.state !== State.OPEN) this.drop('no welcome', CloseCode.HEARTBEAT_TIMEOUT);
      }, this.options.welcomeTimeout ?? 15000);
    };
    ws.onmessage = (/** @type {{data: any}} */ ev) => {
      if (ws === this._ws) this._onFrame(ev.data);
    };
    ws.onclose = (/** @type {{code: number, reason: string}} */ ev) => {
      if (ws === this._ws) this._onTransportClosed(ev.code || ABNORMAL, ev.reason || '');
    };
    ws.onerror = () => {}; // a close event always follows
  }

  /** @param {any} raw */
  _onFrame(raw) {
    this._heartbeat.seen();
    let msg;
    try {
      msg = JSON.parse(typeof raw === 'string' ? raw : String(raw));
    } catch {
      this.emit('warning', new Error('frame is not JSON'));
      return;
    }
    if (msg === null || typeof msg !== 'object') return;
    switch (msg.type) {
      case 'welcome':
        this._onWelcome(msg);
        return;
      case 'ping':
        this._sendNow(JSON.stringify(msg.t === undefined ? { type: 'pong' } : { type: 'pong', t: msg.t }));
        return;
      case 'pong':
        this._heartbeat.pong(msg.t);
        return;
      case 'drain':
        this._onDrain(typeof msg.reconnect_in_ms === 'number' ? msg.reconnect_in_ms : 0);
        return;
      default:
        if (msg.type === 'error' && msg.id === undefined && msg.code === 'unauthorized') {
          this.emit('warning', new Error(`token refresh refused: ${msg.reason ?? ''}`));
        }
        this.emit('message', msg);
    }
  }

  /** @param {any} welcome */
  _onWelcome(welcome) {
    this.welcome = welcome;
    if (welcome.resume_failed === 'unavailable' && this.session) {
      // Nothing is lost (channels resubscribe from this client's own positions), but a
      // broker outage is worth knowing about; 'unknown' (expired) is routine and quiet.
      this.emit('warning', new Error(`session not resumed: the server's broker is unavailable`));
    }
    this.session = typeof welcome.session === 'string' ? welcome.session : this.session;
    this._scheduleRefresh(welcome.expires_at);
    if (this.state === State.OPEN) {
      this.emit('reauth', welcome); // a refresh, or the user's welcome after an anonymous one
      return;
    }
    if (this._welcomeTimer !== null) this._clearTimeout(this._welcomeTimer);
    this._welcomeTimer = null;
    this._conns += 1;
    this.connId = `${this._connPrefix}${this._conns}`;
    this._everOpen = true;
    this._retry.cancel();
    this._schedule.opened();
    this._setState(State.OPEN);
    this.emit('welcome', welcome, this.connId);
    this._heartbeat.pingNow(); // an RTT at once, and a first proof of life
  }

  /**
   * The server is going away: leave at about `reconnect_in_ms` (jittered) and come back
   * right then rather than after the backoff delay (as the Python client does). A server
   * that closes first (1012) gets the rest of that delay.
   * @param {number} ms
   */
  _onDrain(ms) {
    const delay = this._schedule.drain(ms, this._now());
    this.emit('drain', delay);
    const ws = this._ws;
    if (this._drainTimer !== null) this._clearTimeout(this._drainTimer);
    this._drainTimer = this._setTimeout(() => {
      this._drainTimer = null;
      if (ws === this._ws) this.drop('reconnecting: server draining', CloseCode.GOING_AWAY);
    }, delay);
  }

  /** @param {unknown} expiresAt Unix seconds, or null */
  _scheduleRefresh(expiresAt) {
    if (this._refreshTimer !== null) this._clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    if (typeof expiresAt !== 'number' || typeof this.options.token !== 'function') return;
    const margin = this.options.refreshMargin ?? 30000;
    const delay = Math.max(1000, expiresAt * 1000 - this._now() - margin);
    this._refreshTimer = this._setTimeout(async () => {
      this._refreshTimer = null;
      try {
        const token = await this._token();
        if (token != null && this.state === State.OPEN) {
          this._sendNow(JSON.stringify({ type: 'auth', token: String(token) }));
        }
      } catch (err) {
        this.emit('warning', err);
      }
    }, delay);
  }

  /**
   * Writes one frame. Over the high-water mark it waits in a queue, in order.
   * @param {string} frame
   * @returns {boolean} false when not OPEN (nothing was queued)
   */
  send(frame) {
    if (this.state !== State.OPEN || !this._ws) return false;
    if (this._queue.length > 0 || this._ws.bufferedAmount > this.highWaterMark) {
      this._queue.push(frame);
      this._setPaused(true);
      this._schedulePoll();
      return true;
    }
    this._ws.send(frame);
    if (this._ws.bufferedAmount > this.highWaterMark) {
      this._setPaused(true);
      this._schedulePoll();
    }
    return true;
  }

  /** @param {string} frame */
  _sendNow(frame) {
    try {
      if (this._ws && this._ws.readyState === 1) this._ws.send(frame);
    } catch {
      /* the close event follows */
    }
  }

  /** Resolves when the send buffer is under the low-water mark (at once if it is). */
  writable() {
    if (!this.paused) return Promise.resolve();
    return new Promise((resolve) => this._writableWaiters.push(() => resolve(undefined)));
  }

  /** @param {boolean} paused */
  _setPaused(paused) {
    if (paused === this.paused) return;
    this.paused = paused;
    this.emit('backpressure', paused);
    if (!paused) {
      const waiters = this._writableWaiters;
      this._writableWaiters = [];
      waiters.forEach((w) => w());
    }
  }

  _schedulePoll() {
    if (this._pollTimer !== null) return;
    this._pollTimer = this._setTimeout(() => {
      this._pollTimer = null;
      this._drainQueue();
    }, this.options.drainPoll ?? 20);
  }

  _drainQueue() {
    const ws = this._ws;
    if (!ws || this.state !== State.OPEN) return;
    if (ws.bufferedAmount > this.lowWaterMark) {
      this._schedulePoll();
      return;
    }
    while (this._queue.length > 0 && ws.bufferedAmount <= this.highWaterMark) {
      ws.send(/** @type {string} */ (this._queue.shift()));
    }
    if (this._queue.length === 0 && ws.bufferedAmount <= this.lowWaterMark) this._setPaused(false);
    else this._schedulePoll();
  }

  /**
   * Drops the transport now, as a network failure would, and reconnects with backoff (the
   * demo's "cut" button; a dead heartbeat). Frames not yet written are discarded: the layers
   * above replay what matters (subscriptions, the outbox).
   * @param {string} [reason] @param {number} [code] sent to the server, if it can still hear
   */
  drop(reason = 'connection cut', code = 3000) {
    const ws = this._ws;
    if (!ws) return;
    this._detach(ws, code, reason);
    this._onTransportClosed(ABNORMAL, reason);
  }

  /** @param {any} ws @param {number} code @param {string} reason */
  _detach(ws, code, reason) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(code, reason);
    } catch {
      /* already closing */
    }
  }

  /** @param {number} code @param {string} reason */
  _onTransportClosed(code, reason) {
    this._cleanupTransport();
    this.lastClose = { code, reason };
    this.emit('close', { code, reason });
    this._afterClose(code, reason);
  }

  _cleanupTransport() {
    this._ws = null;
    this._heartbeat.stop();
    if (this._welcomeTimer !== null) this._clearTimeout(this._welcomeTimer);
    if (this._refreshTimer !== null) this._clearTimeout(this._refreshTimer);
    if (this._pollTimer !== null) this._clearTimeout(this._pollTimer);
    if (this._drainTimer !== null) this._clearTimeout(this._drainTimer);
    this._welcomeTimer = this._refreshTimer = this._pollTimer = this._drainTimer = null;
    this._queue = [];
    this._setPaused(false);
    this.connId = null;
  }

  /** Decides what follows a close, by the close code's policy. @param {number} code @param {string} reason */
  _afterClose(code, reason) {
    if (this._closing) {
      this._setState(State.CLOSED);
      return;
    }
    const delay = this._schedule.after(code, reason, this._now());
    if (delay instanceof Error) {
      this._giveUp(delay);
      return;
    }
    const next = { attempt: this._schedule.attempts, delay, at: this._retry.schedule(delay) };
    this.lastRetry = next;
    this._setState(State.RECONNECTING);
    this.emit('reconnect', next);
  }

  /** @param {Error} err */
  _giveUp(err) {
    this.error = err;
    this._closing = true;
    this._removeListeners();
    this._setState(State.CLOSED);
    this.emit('error', err);
  }

  _removeListeners() {
    if (typeof document !== 'undefined') document.removeEventListener('visibilitychange', this._onVisible);
    if (typeof removeEventListener === 'function') removeEventListener('online', this._onOnline);
  }

  /**
   * Closes for good: no reconnect.
   * @param {number} [code] @param {string} [reason]
   */
  close(code = CloseCode.NORMAL, reason = 'client closed') {
    if (this._closing && this.state === State.CLOSED) return;
    this._closing = true;
    this._gen += 1;
    this._retry.cancel();
    this._removeListeners();
    const ws = this._ws;
    if (ws) {
      this._detach(ws, code, reason);
      this._cleanupTransport();
      this.lastClose = { code, reason };
      this.emit('close', { code, reason });
    }
    this._setState(State.CLOSED);
  }
}
