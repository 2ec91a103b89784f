// The hub: the one connection of a group of tabs, multiplexed.
//
// The tab that holds the leader lock (tab-leader.js) runs the hub; every tab (itself
// included) talks to it with small messages (`join`, `leave`, `pub`, `rpc`, ...) and gets
// `msg`, `joined`, `puback`, `status` ... back. With sharing off, every tab runs its own hub
// with itself as its only tab: one code path.
//
// This file holds the connection and routes between it and the tabs: their messages, the
// requests in flight and their answers, `rpc`, the status every tab sees, and the sweep for
// tabs that are gone. The two halves of the bookkeeping have a file each:
//   channel-mux.js  channels and joins: one server subscription per channel, rewinds
//   pub-queue.js    publishes: each key once in flight, paced; adopting those of gone tabs

import { Socket, State } from './socket.js';
import { ChannelMux } from './channel-mux.js';
import { PubQueue } from './pub-queue.js';
import { Push } from './push.js';
import { ConnectionClosed, RequestError, serializeError } from './errors.js';
import { compareRecords } from './outbox.js';
import { MAX_ID } from './codes.js';
import { Removals, removalWarning } from './removals.js';
import { bytesOf } from './binary.js';

/** @typedef {import('./cursor.js').Position} Position */
/** @typedef {import('./channel-mux.js').ChannelState} ChannelState */
/** @typedef {import('./pub-queue.js').QueuedPub} QueuedPub */

/** @param {Position|null|undefined} p */
function validPosition(p) {
  return p && typeof p.epoch === 'string' && Number.isInteger(p.offset) && p.offset >= 0 && p.offset <= MAX_ID
    ? { epoch: p.epoch, offset: p.offset } : null;
}

export class Hub {
  /**
   * @param {{
   *   url: string, tabId: string,
   *   socket?: import('./socket.js').SocketOptions,
   *   emit: (msg: any) => void,
   *   store?: {all(): Promise<import('./outbox.js').OutboxRecord[]>, remove(key: string): Promise<void>,
   *            acknowledged?(): Promise<string[]>}|null,
   *   liveTabs?: () => Promise<Set<string>|null>,
   *   timeout?: number, sweepInterval?: number, maxPubsInFlight?: number, pacing?: boolean,
   *   clock?: {setTimeout?: (fn: () => void, ms: number) => any, clearTimeout?: (id: any) => void, now?: () => number},
   * }} options
   *   `emit` delivers a message to the tabs: to one tab when it has `to`, else to all.
   */
  constructor(options) {
    this.tabId = options.tabId;
    this.url = options.url;
    this._emit = options.emit;
    this._store = options.store ?? null;
    this._liveTabs = options.liveTabs ?? (async () => null);
    this.timeout = options.timeout ?? 10000;
    this.sweepInterval = options.sweepInterval ?? 2000;
    const clock = options.clock ?? {};
    this._setTimeout = clock.setTimeout ?? ((fn, ms) => setTimeout(fn, ms));
    this._clearTimeout = clock.clearTimeout ?? ((id) => clearTimeout(id));
    this.socket = new Socket(options.url, {
      ...options.socket,
      clock: options.clock ?? options.socket?.clock,
      connPrefix: `${this.tabId}:`,
    });
    /** @type {Map<number, {push: Push, kind: string, channel?: string, seq?: number, ch?: ChannelState, tab?: string, rid?: number, key?: string, adopted?: boolean, pub?: QueuedPub}>} */
    this._pushes = new Map();
    /** @type {import('./channel-mux.js').ServerSub[]} this connection's server-side subscriptions */
    this._serverSubs = [];
    /** the welcome `_serverSubs` started from (the state event may come before its own) */
    this._serverSubsOf = null;
    this._now = clock.now ?? (() => Date.now());
    const emit = (/** @type {any} */ msg) => this._emit(msg);
    /** @type {import('./channel-mux.js').SendRequest} */
    const request = (type, payload, meta, onTimeout, raw) => this._request(type, payload, meta, onTimeout, raw);
    this._mux = new ChannelMux({ socket: this.socket, emit, request, setTimeout: this._setTimeout });
    // Removing adopted publishes once acknowledged, and those a page marked acknowledged but
    // could not delete: a failure is a warning to every tab, counted in the status, retried.
    this._removals = new Removals(this._store, {
      onError: (err, key, attempt, final) => {
        this._emit({ t: 'warning', message: removalWarning(err, key, attempt, final) });
        this._status();
      },
      setTimeout: this._setTimeout, clearTimeout: this._clearTimeout,
    });
    this._pubs = new PubQueue({
      socket: this.socket, emit, request, status: () => this._status(), removals: this._removals,
      maxInFlight: options.maxPubsInFlight ?? 64, pacing: options.pacing,
      now: this._now, setTimeout: this._setTimeout, clearTimeout: this._clearTimeout,
    });
    this._nextId = 0;
    this._sweepTimer = null;
    this._stopped = false;
    this._handover = false;
    /** When this hub started: a later leader has a greater term, so tabs can ignore a late
     * message of a leader that is gone. */
    this.term = (clock.now ?? (() => Date.now()))();
    this._adopting = false;
    this._wire();
  }

  /** At most this many publishes wait for their ack at once (a rate limit then rejects few). */
  get maxPubsInFlight() {
    return this._pubs.maxInFlight;
  }

  set maxPubsInFlight(n) {
    this._pubs.maxInFlight = n;
  }

  /** Publications adopted from tabs that are gone, and acknowledged. */
  get adopted() {
    return this._pubs.adopted;
  }

  set adopted(n) {
    this._pubs.adopted = n;
  }

  _wire() {
    const s = this.socket;
    s.on('state', () => this._status());
    s.on('rtt', () => this._status());
    s.on('reconnect', () => this._status());
    s.on('backpressure', () => this._status());
    s.on('late', () => this._status());
    s.on('welcome', (/** @type {any} */ welcome) => {
      this._pubs.pace(welcome?.rate_limit);
      this._mux.serverSubscribed(this._currentServerSubs());
      this._onOpen();
    });
    s.on('close', (/** @type {{code: number, reason: string}} */ info) => this._onClosed(info));
    s.on('message', (/** @type {any} */ msg) => this._onServerMessage(msg));
    s.on('error', () => this._status());
    s.on('warning', (/** @type {Error} */ err) => this._emit({ t: 'warning', message: String(err?.message ?? err) }));
  }

  /** Starts: announces itself to every tab and connects. */
  start() {
    this._emit({ t: 'leader', leader: this.tabId, term: this.term });
    this._status();
    this.socket.connect();
    this._scheduleSweep();
  }

  /**
   * Stops. `handover`: other tabs will elect a new leader, so they are told to wait for it
   * rather than that the connection is closed for good.
   * @param {{handover?: boolean, code?: number, reason?: string}} [options]
   */
  stop({ handover = false, code = 1000, reason = 'client closed' } = {}) {
    if (this._stopped) return;
    this._stopped = true;
    this._handover = handover;
    if (this._sweepTimer !== null) this._clearTimeout(this._sweepTimer);
    this._pubs.stop();
    this._removals.close();
    this._sweepTimer = null;
    if (handover) this._emit({ t: 'resign', leader: this.tabId });
    this.socket.close(code, reason);
    for (const { push } of this._pushes.values()) push.cancelTimeout();
    this._pushes.clear();
    if (!handover) this._status();
  }

  /** The connection's state, as every tab sees it. */
  statusMessage() {
    const s = this.socket;
    return {
      t: 'status',
      leader: this.tabId,
      term: this.term,
      state: s.state,
      connId: s.state === State.OPEN ? s.connId : null,
      clientId: s.state === State.OPEN ? s.welcome?.client ?? null : null,
      rtt: s.rtt,
      attempts: s.attempts,
      retryAt: s.retryAt,
      retryDelay: s.lastRetry?.delay ?? null,
      paused: s.paused,
      bufferedAmount: s.bufferedAmount,
      lateFires: s.lateFires,
      lastClose: s.lastClose,
      session: s.session,
      // What the connection allows for binary data and transfers (welcome.binary), or null.
      binary: s.binary,
      // The tabs make a Subscription of each (staywire.js, serverSubscriptions).
      // The welcome's, as the server API changed them since (subscribed / unsubscribed).
      serverSubs: s.state === State.OPEN ? this._currentServerSubs() : [],
      channels: this._mux.channels.size,
      adopted: this.adopted,
      removeFailures: this._removals.failures,
      error: s.error ? serializeError(s.error) : null,
    };
  }

  /** @param {string} [to] */
  _status(to) {
    if (this._handover || (this._stopped && this.socket.state !== State.CLOSED)) return;
    const msg = this.statusMessage();
    this._emit(to ? { ...msg, to } : msg);
  }

  // ------------------------------------------------------------------ messages from tabs

  /** One message from a tab. @param {any} msg */
  handle(msg) {
    if (this._stopped || !msg || typeof msg.from !== 'string') return;
    const tab = msg.from;
    switch (msg.t) {
      case 'hello':
        this._emit({ t: 'leader', leader: this.tabId, term: this.term, to: tab });
        this._status(tab);
        return;
      case 'join':
        this._mux.join(tab, String(msg.channel), validPosition(msg.since), Number(msg.rid));
        return;
      case 'leave':
        this._mux.leave(tab, String(msg.channel));
        return;
      case 'pub':
        this._pubs.publish(tab, msg);
        return;
      case 'rpc':
      case 'chunk':
        this._rpc(tab, msg);
        return;
      case 'presence':
        this._presence(tab, msg);
        return;
      case 'cut':
        this.socket.drop(`connection cut (tab ${tab})`);
        return;
      case 'bye':
        this._mux.forgetTab(tab);
        return;
      case 'status':
        this._status(tab);
        return;
      default:
    }
  }

  get _open() {
    return this.socket.state === State.OPEN;
  }

  /**
   * A tab's `rpc`, or a `chunk` of its transfer (a binary `pub` with the chunk's header,
   * transfer-sender.js): answered by a `reply` with the result's data or the pub's ack.
   * @param {string} tab @param {any} msg
   */
  _rpc(tab, msg) {
    const rid = Number(msg.rid);
    if (!this._open) {
      this._emit({ t: 'reply', to: tab, rid, ok: false,
        error: serializeError(new ConnectionClosed(1006, 'not connected')) });
      return;
    }
    const timeout = typeof msg.timeout === 'number' ? msg.timeout : this.timeout;
    const bytes = msg.data instanceof ArrayBuffer || ArrayBuffer.isView(msg.data) ? bytesOf(msg.data) : undefined;
    if (msg.t === 'chunk') {
      this._request('pub', { channel: String(msg.channel), chunk: msg.chunk }, { tab, rid, kind: 'chunk' },
        null, bytes ?? new Uint8Array(0), timeout);
      return;
    }
    this._request('rpc', { method: String(msg.method), ...(bytes ? {} : { data: msg.data ?? null }) }, { tab, rid },
      null, bytes, timeout);
  }

  /**
   * `presence` / `presence_stats` for a tab: answered as an rpc is (`reply` with the
   * result's data), so one connection asks for every tab.
   * @param {string} tab @param {any} msg
   */
  _presence(tab, msg) {
    const rid = Number(msg.rid);
    if (!this._open) {
      this._emit({ t: 'reply', to: tab, rid, ok: false,
        error: serializeError(new ConnectionClosed(1006, 'not connected')) });
      return;
    }
    const type = msg.stats ? 'presence_stats' : 'presence';
    this._request(type, { channel: String(msg.channel) }, { tab, rid, kind: 'rpc' });
  }

  /**
   * Sends one request with a fresh id.
   * @param {string} type @param {Record<string, any>} payload @param {Record<string, any>} meta
   * @param {((push: Push) => void)|null} [onTimeout] @param {string|Uint8Array} [raw] @param {number} [timeout]
   */
  _request(type, payload, meta, onTimeout = null, raw = undefined, timeout = undefined) {
    // Ids the server accepts are 1..MAX_ID; past it (in theory) they start again at 1.
    this._nextId = this._nextId >= MAX_ID ? 1 : this._nextId + 1;
    const id = this._nextId;
    const push = new Push(type, payload, {
      timeout: type === 'pub' ? Infinity : timeout ?? this.timeout,
      raw,
      setTimeout: this._setTimeout,
      clearTimeout: this._clearTimeout,
      onTimeout: onTimeout ?? undefined,
    });
    this._pushes.set(id, { push, kind: meta.kind ?? type, ...meta });
    push.promise.then(
      (reply) => this._onReply(id, reply, null),
      (err) => this._onReply(id, null, err),
    );
    if (raw instanceof Uint8Array && !this.socket.binary) {
      // A v1 connection: the server would answer a binary frame without its id, and the
      // request would wait for ever. Refused here, as the server refuses it.
      push.fail(new RequestError('binary_unsupported', 'the server selected protocol v1: no binary frames'));
      return push;
    }
    const frame = push.encode(id);
    const send = () => {
      this._pubs.charge(frame); // every request pays into the pacer
      this.socket.send(frame);
      push._startTimeout();
    };
    // Publishes have their own turn (pub-queue.js); the rest (a resubscribe of many
    // channels after a reconnect, a transfer's chunks) waits for the pacer in order rather
    // than be refused.
    if (type === 'pub' && meta.kind !== 'chunk') send();
    else this._pubs.sendPaced(frame, send);
    return push;
  }

  // ------------------------------------------------------------------ the connection

  _onOpen() {
    const connId = this.socket.connId;
    this._mux.connected();
    this._status(); // tabs see the new connId and send their unacknowledged publishes
    this._sweep(connId);
  }

  /**
   * The server API joined (`subscribed`) or left (`unsubscribed`) a channel for this
   * connection: the mux follows, and every tab gets the new list (staywire.js makes or ends
   * its Subscription in `serverSubscriptions`).
   * @param {any} msg
   */
  _serverChanged(msg) {
    if (typeof msg.channel !== 'string') return;
    const rest = this._currentServerSubs().filter((p) => p.channel !== msg.channel);
    if (msg.type === 'subscribed') {
      const [p] = serverSubs({ server_subs: [msg] });
      if (!p) return;
      this._mux.serverJoined(p);
      this._serverSubs = [...rest, p];
    } else {
      this._mux.serverLeft(msg.channel);
      this._serverSubs = rest;
    }
    this._emit({ t: 'serversubs', connId: this.socket.connId, serverSubs: this._serverSubs });
  }

  /** The connection's server-side subscriptions: its welcome's, as the server API changed them. */
  _currentServerSubs() {
    const welcome = this.socket.welcome;
    if (welcome !== this._serverSubsOf) {
      this._serverSubsOf = welcome;
      this._serverSubs = serverSubs(welcome);
    }
    return this._serverSubs;
  }

  /** @param {{code: number, reason: string}} info */
  _onClosed(info) {
    this._mux.connectionLost();
    const pushes = [...this._pushes.values()];
    this._pushes.clear();
    this._pubs.connectionLost();
    for (const p of pushes) {
      p.push.cancelTimeout();
      if (p.kind === 'rpc' || p.kind === 'chunk') {
        this._emit({ t: 'reply', to: p.tab, rid: p.rid, ok: false,
          error: serializeError(new ConnectionClosed(info.code, info.reason)) });
      }
    }
  }

  /** @param {any} msg */
  _onServerMessage(msg) {
    if (msg.type === 'msg') {
      this._mux.onMessage(msg);
      return;
    }
    if ((msg.type === 'join' || msg.type === 'leave') && typeof msg.channel === 'string') {
      // A user's first client joined, or its last left (join_leave channels): every tab
      // of the channel hears it from this one connection.
      this._emit({ t: 'presence', kind: msg.type, channel: msg.channel, member: msg.member });
      return;
    }
    if ((msg.type === 'ack' || msg.type === 'result' || msg.type === 'error') && msg.id !== undefined) {
      const entry = this._pushes.get(msg.id);
      if (entry) entry.push.reply(msg);
      return;
    }
    if (msg.type === 'subscribed' || msg.type === 'unsubscribed') {
      this._serverChanged(msg);
      return;
    }
    if (msg.type === 'error' && typeof msg.channel === 'string') {
      // The server ended this subscription (a refreshed token no longer grants it).
      this._mux.revoked(msg.channel, new RequestError(msg.code, msg.reason ?? ''));
      return;
    }
    if (msg.type === 'error') {
      this._emit({ t: 'warning', message: `server error ${msg.code}: ${msg.reason ?? ''}` });
    }
  }

  /** @param {number} id @param {any} reply @param {Error|null} err */
  _onReply(id, reply, err) {
    const entry = this._pushes.get(id);
    if (!entry) return;
    this._pushes.delete(id);
    switch (entry.kind) {
      case 'sub':
        this._mux.subAnswered(entry, reply, err);
        return;
      case 'resync':
        this._mux.resyncAnswered(entry);
        return;
      case 'pub':
        this._pubs.onReply(/** @type {QueuedPub} */ (entry.pub), reply, err);
        return;
      case 'rpc':
        this._emit(err
          ? { t: 'reply', to: entry.tab, rid: entry.rid, ok: false, error: serializeError(err) }
          : { t: 'reply', to: entry.tab, rid: entry.rid, ok: true, value: reply.data });
        return;
      case 'chunk':
        this._emit(err
          ? { t: 'reply', to: entry.tab, rid: entry.rid, ok: false, error: serializeError(err) }
          : { t: 'reply', to: entry.tab, rid: entry.rid, ok: true,
            value: { epoch: reply.epoch, offset: reply.offset, duplicate: Boolean(reply.duplicate) } });
        return;
      default: // a leave's unsub: nothing waits for it
    }
  }

  // ------------------------------------------------------------------ tabs that are gone

  _scheduleSweep() {
    if (this._stopped) return;
    this._sweepTimer = this._setTimeout(() => {
      this._sweepTimer = null;
      this._sweep(this.socket.connId).finally(() => this._scheduleSweep());
    }, this.sweepInterval);
  }

  /**
   * Forgets the channels of tabs that are gone, and sends the publishes they left behind.
   * @param {string|null} connId
   */
  async _sweep(connId) {
    if (this._stopped || this._adopting) return;
    this._adopting = true;
    try {
      const live = await this._liveTabs();
      if (live) {
        live.add(this.tabId);
        for (const ch of [...this._mux.channels.values()]) {
          for (const tab of [...ch.tabs]) if (!live.has(tab)) this._mux.leave(tab, ch.name);
        }
      }
      if (!this._store) return;
      // Acknowledged by a page whose delete failed: removed again, never sent.
      for (const key of await this._store.acknowledged?.() ?? []) {
        if (!this._removals.retrying(key)) this._removals.remove(key);
      }
      if (!this._open || this.socket.connId !== connId) return;
      const records = (await this._store.all()).filter((r) => !r.target || r.target === this.url);
      records.sort(compareRecords);
      for (const r of records) {
        if (!this._open || this.socket.connId !== connId) return;
        const orphan = live ? !live.has(r.owner) : r.owner !== this.tabId;
        if (orphan) this._pubs.adopt(r);
      }
    } catch (err) {
      this._emit({ t: 'warning', message: `outbox sweep failed: ${/** @type {any} */ (err)?.message ?? err}` });
    } finally {
      this._adopting = false;
    }
  }
}

/**
 * A welcome's `server_subs`, keeping only well-formed entries (a newer server may send more).
 * @param {any} welcome @returns {import('./channel-mux.js').ServerSub[]}
 */
export function serverSubs(welcome) {
  const list = Array.isArray(welcome?.server_subs) ? welcome.server_subs : [];
  return list
    .filter((/** @type {any} */ p) => p && typeof p.channel === 'string' && typeof p.epoch === 'string'
      && Number.isInteger(p.offset))
    .map((/** @type {any} */ p) => ({ channel: p.channel, epoch: p.epoch, offset: p.offset }));
}
