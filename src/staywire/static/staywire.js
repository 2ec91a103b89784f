// Staywire browser client: an ES module, no build step.
//
//   import { Client } from '/staywire.js';
//   const client = new Client('/ws', { token: () => fetchToken() });
//   client.connect();
//   const room = await client.subscribe('room:1', (data) => render(data));
//   await client.publish('room:1', { text: 'hi' });
//
// One concept per file, as in Phoenix JS: the table of files and what each holds is in
// docs/client-browser.md (*Files*). This one is the public API, one Client per tab.

import { Asks } from './asks.js';
import { Emitter } from './emitter.js';
import { Hub } from './hub.js';
import { State, websocketUrl } from './socket.js';
import { Subscription, SubscriptionState, invalidChannel } from './channel.js';
import { MemoryStore, Outbox, newKey } from './outbox.js';
import { Publisher } from './publisher.js';
import { removalWarning } from './removals.js';
import { IdbStore } from './idb-store.js';
import { WriteAheadStore } from './write-ahead.js';
import { clientLink, sendTransfer } from './transfer-sender.js';
import { TabGroup, locksSupported, newTabId, sharingSupported } from './tab-leader.js';
import {
  ClientError, ConnectionClosed, QueueFull, ReconnectFailed, RequestError, RequestTimeout,
  StaywireError, TransferError, Unauthorized, reviveError,
} from './errors.js';

export {
  CHANNEL_PATTERN, CloseCode, ErrorCode, MAX_ID, SUBPROTOCOL, SUBPROTOCOLS, reconnectPolicy,
} from './codes.js';
export { Transfer } from './transfers.js';
export { Backoff, jittered } from './backoff.js';
export { MemoryStore, Outbox } from './outbox.js';
export { IdbStore } from './idb-store.js';
export { WriteAheadStore } from './write-ahead.js';
export { sharingSupported } from './tab-leader.js';
export {
  ClientError, ConnectionClosed, QueueFull, ReconnectFailed, RequestError, RequestTimeout,
  StaywireError, TransferError, Unauthorized, State, Subscription, SubscriptionState,
};

export const VERSION = '0.1.0';

/**
 * @typedef {import('./socket.js').TokenOption} TokenOption
 * @typedef {import('./cursor.js').Position} Position
 * @typedef {'CONNECTING'|'OPEN'|'RECONNECTING'|'CLOSED'} ConnectionState
 * @typedef {import('./publisher.js').PublishAck} PublishAck
 * @typedef {{
 *   token?: TokenOption, tokenIn?: 'message'|'query', params?: Record<string, string>,
 *   share?: boolean, persist?: boolean, store?: import('./outbox.js').OutboxStore,
 *   maxRetries?: number, backoff?: import('./backoff.js').Backoff,
 *   pingInterval?: number, pongTimeout?: number, lateSlack?: number, welcomeTimeout?: number,
 *   refreshMargin?: number, highWaterMark?: number, lowWaterMark?: number, timeout?: number,
 *   maxQueue?: number, maxQueueBytes?: number, tabId?: string, pacing?: boolean,
 *   WebSocket?: any, locks?: any, BroadcastChannel?: any,
 * }} ClientOptions
 *   `WebSocket`, `locks`, `BroadcastChannel`: replacements for the browser's (tests)
 */

export class Client extends Emitter {
  /** @param {string} url the WebSocket endpoint (`/ws`, `wss://host/ws`) @param {ClientOptions} [options] */
  constructor(url, options = {}) {
    super();
    this.url = websocketUrl(url);
    this.options = options;
    this.tabId = options.tabId ?? newTabId();
    /** Whether this tab shares one connection with the other tabs of its origin. */
    this._env = { locks: options.locks, BroadcastChannel: options.BroadcastChannel };
    this.shared = options.share !== false && sharingSupported(this._env);
    let store = options.store ?? null;
    if (!store && options.persist !== false) {
      // IndexedDB, with a synchronous write-ahead in localStorage in front of it: a publish is
      // durable before publish() returns, whatever the page does next.
      store = IdbStore.available() ? new WriteAheadStore(new IdbStore()) : new MemoryStore();
    }
    /** @type {import('./outbox.js').OutboxStore|null} */
    this._store = store;
    this.outbox = new Outbox({
      maxMessages: options.maxQueue ?? 10000, // the Python client's defaults
      maxBytes: options.maxQueueBytes ?? 16 << 20,
      store,
      owner: this.tabId,
      target: this.url,
      // An acknowledged publish left in the store would be sent again after a reload: a
      // failed removal is a warning (and counted in status.removeFailures), then retried.
      onStoreError: (err, key, attempt, final) => {
        this.emit('warning', removalWarning(err, key, attempt, final));
        this._changed();
      },
    });
    /** @type {ConnectionState} */
    this.state = State.CONNECTING;
    /** @type {Map<string, Subscription>} */
    this._subs = new Map();
    /**
     * The channels the server subscribed this client to (the connect proxy's answer), each a
     * Subscription like those of subscribe(), recovered after every reconnect; their
     * publications are also the client's 'publication' events. @type {Map<string, Subscription>}
     */
    this.serverSubscriptions = new Map();
    /** The tab holding the connection. @type {string|null} */
    this.leader = null;
    /** @type {Hub|null} set while this tab holds the connection */
    this._hub = null;
    /** @type {TabGroup|null} */
    this._group = null;
    /** The last status of the connection. @type {any} */
    this._remote = null;
    /** The id of the open connection, or null. @type {string|null} */
    this._connId = null;
    this._jid = 0;
    /** The term of the newest leader seen. */
    this._term = 0;
    /** rpc and presence requests waiting for their reply. */
    this._asks = new Asks();
    /** This tab's publishes waiting for their ack. */
    this._publisher = new Publisher({
      outbox: this.outbox,
      send: (msg) => this._up(msg),
      connId: () => this._connId,
      socket: () => this._hub?.socket ?? null,
      paused: () => Boolean(this._remote?.paused) && this.state === State.OPEN,
      changed: () => {
        this.emit('outbox', this.outbox.size);
        this._changed();
      },
      warn: (message) => this.emit('warning', message),
    });
    this._closed = false;
    /** @type {Error|null} */
    this.error = null;
    /** @type {Promise<void>|null} */
    this._ready = null;
    this._onPageHide = () => {
      this._store?.flush?.().catch(() => {});
      if (!this._hub) this._up({ t: 'bye' });
    };
    // A hidden tab may be frozen or discarded next: hand what is written ahead to IndexedDB now.
    this._onVisibility = () => {
      if (document.visibilityState === 'hidden') this._store?.flush?.().catch(() => {});
    };
  }

  get isLeader() {
    return this._hub !== null;
  }

  /** Everything the connection panel shows. */
  get status() {
    const r = this._remote ?? {};
    return {
      state: this.state,
      tabId: this.tabId,
      leader: this.leader,
      isLeader: this.isLeader,
      shared: this.shared,
      connId: this._connId,
      clientId: this._connId ? r.clientId ?? null : null,
      rtt: r.rtt ?? null,
      attempts: r.attempts ?? 0,
      retryAt: r.retryAt ?? null,
      retryDelay: r.retryDelay ?? null,
      queued: this.outbox.size,
      paused: Boolean(r.paused),
      bufferedAmount: r.bufferedAmount ?? 0,
      lateFires: r.lateFires ?? 0,
      adopted: r.adopted ?? 0,
      // This tab's removals, and the connection's (publishes it adopted).
      removeFailures: this.outbox.removeFailures + (r.removeFailures ?? 0),
      lastClose: r.lastClose ?? null,
      session: r.session ?? null,
      // welcome.binary: {max_data_size, max_transfer_size, transfer_timeout}, or null (v1)
      binary: this._connId ? r.binary ?? null : null,
      error: this.error,
    };
  }

  /**
   * Starts connecting (or joins the tab that holds the shared connection). Resolves when the
   * connection is first OPEN; rejects on a terminal close or when the retry budget is spent.
   * @returns {Promise<void>}
   */
  connect() {
    if (!this._ready) {
      this._ready = new Promise((resolve, reject) => {
        this._resolveReady = resolve;
        this._rejectReady = reject;
      });
      this._ready.catch(() => {});
      this._start().catch((err) => this._fail(err));
    }
    return this._ready;
  }

  async _start() {
    if (this.shared || locksSupported(this._env)) {
      this._group = new TabGroup(this.url, this.tabId, { share: this.shared, ...this._env });
      await this._group.holdTabLock();
    }
    if (this._closed) return;
    if (typeof addEventListener === 'function') addEventListener('pagehide', this._onPageHide);
    if (typeof document !== 'undefined') document.addEventListener('visibilitychange', this._onVisibility);
    const group = this._group;
    if (this.shared && group) {
      group.open();
      group.onMessage((msg) => {
        if (msg?.dir === 'up') this._hub?.handle(msg);
        else this._down(msg);
      });
      this._up({ t: 'hello' });
      group.elect(() => this._lead());
    } else {
      this._lead();
    }
  }

  /** This tab won the leader lock (or does not share): run the connection. */
  _lead() {
    if (this._closed) return;
    const o = this.options;
    const group = this._group;
    const hub = new Hub({
      url: this.url,
      tabId: this.tabId,
      timeout: o.timeout,
      pacing: o.pacing,
      store: this._store,
      liveTabs: async () => (group ? group.liveTabs() : null),
      socket: {
        token: o.token, tokenIn: o.tokenIn, params: o.params, WebSocket: o.WebSocket,
        backoff: o.backoff, maxRetries: o.maxRetries, pingInterval: o.pingInterval,
        pongTimeout: o.pongTimeout, lateSlack: o.lateSlack, welcomeTimeout: o.welcomeTimeout,
        refreshMargin: o.refreshMargin,
        highWaterMark: o.highWaterMark, lowWaterMark: o.lowWaterMark,
      },
      emit: (msg) => {
        const local = msg.to === undefined || msg.to === this.tabId;
        if (local) queueMicrotask(() => this._down(msg));
        if (!local || msg.to === undefined) group?.post({ ...msg, dir: 'down' });
      },
    });
    this._hub = hub;
    this._setLeader(this.tabId);
    hub.start();
  }

  /** A message to the hub, wherever it runs. @param {any} msg */
  _up(msg) {
    const m = { ...msg, from: this.tabId };
    const hub = this._hub;
    if (hub) queueMicrotask(() => hub.handle(m));
    else if (this.shared) this._group?.post({ ...m, dir: 'up' });
  }

  /** A message from the hub. @param {any} msg */
  _down(msg) {
    if (!msg || this._closed) return;
    if (msg.to !== undefined && msg.to !== this.tabId) return;
    switch (msg.t) {
      case 'leader':
        if (this._current(msg)) this._setLeader(msg.leader);
        return;
      case 'resign':
        if (msg.leader === this.leader) {
          this.leader = null;
          this._connId = null;
          this._setState(State.RECONNECTING);
          this._changed();
        }
        return;
      case 'status':
        if (!this._current(msg)) return;
        if (msg.leader !== this.leader) this._setLeader(msg.leader);
        this._onStatus(msg);
        return;
      case 'msg':
        this._subs.get(msg.channel)?._message(msg);
        return;
      case 'joined': {
        const sub = this._subs.get(msg.channel);
        if (sub && sub._jid === msg.rid && sub.state === SubscriptionState.JOINING) sub._joined(msg);
        return;
      }
      case 'recovery':
        this._subs.get(msg.channel)?._recovery(msg);
        return;
      case 'presence':
        this._subs.get(msg.channel)?._presenceEvent(msg.kind, msg.member);
        return;
      case 'serversubs':
        // The server API changed this connection's server-side subscriptions.
        if (msg.connId === this._connId && Array.isArray(msg.serverSubs)) {
          this._serverSubscribed(msg.serverSubs);
        }
        return;
      case 'subend': {
        const sub = this._subs.get(msg.channel);
        if (sub) {
          this._subs.delete(msg.channel);
          if (this.serverSubscriptions.get(msg.channel) === sub) this.serverSubscriptions.delete(msg.channel);
          sub.serverSide = false;
          sub._end();
        }
        return;
      }
      case 'subfail': {
        const sub = this._subs.get(msg.channel);
        if (sub) {
          this._subs.delete(msg.channel);
          sub._fail(reviveError(msg.error));
        }
        return;
      }
      case 'puback':
        this._publisher.acked(msg);
        return;
      case 'reply':
        this._asks.answered(msg);
        return;
      case 'warning':
        this.emit('warning', msg.message);
        return;
      default:
    }
  }

  /**
   * Whether a `leader` or `status` message comes from the current leader or a newer one (a
   * message of a tab that crashed may arrive after its successor's).
   * @param {{leader: string, term?: number}} msg
   */
  _current(msg) {
    const term = typeof msg.term === 'number' ? msg.term : 0;
    if (msg.leader === this.leader) {
      this._term = Math.max(this._term, term);
      return true;
    }
    if (term < this._term) return false;
    this._term = term;
    return true;
  }

  /** @param {string} leader */
  _setLeader(leader) {
    if (leader === this.leader) return;
    this.leader = leader;
    this._connId = null; // a new tab holds it: a new connection
    this._asks.failAll(new ConnectionClosed(1006, 'the tab holding the connection changed'));
    for (const sub of this._subs.values()) this._join(sub);
    this.emit('leader', { leader, isLeader: this.isLeader });
    this._changed();
  }

  /** @param {Subscription} sub */
  _join(sub) {
    const since = sub._beginJoin();
    if (sub.state === SubscriptionState.CLOSED) return;
    this._jid += 1;
    sub._jid = this._jid;
    this._up({ t: 'join', channel: sub.channel, since, rid: this._jid });
  }

  /** @param {any} s */
  _onStatus(s) {
    this._remote = s;
    if (s.state === State.OPEN && s.connId) {
      if (s.connId !== this._connId) {
        this._connId = s.connId;
        this._serverSubscribed(Array.isArray(s.serverSubs) ? s.serverSubs : []);
        this._publisher.flush();
        this.emit('open', s.connId);
      }
    } else {
      this._connId = null;
    }
    if (!s.paused || s.state !== State.OPEN) this._publisher.releaseWriters();
    this._setState(s.state);
    if (s.state === State.OPEN) this._resolveReady?.();
    if (s.state === State.CLOSED && s.error) this._fail(reviveError(s.error));
    this.emit('rtt', s.rtt);
    this._changed();
  }

  /** @param {ConnectionState} state */
  _setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this.emit('state', state, previous);
  }

  _changed() {
    this.emit('status', this.status);
  }

  // ------------------------------------------------------------------ channels

  /**
   * Subscribes to `channel`; resolves with the Subscription once the server acked it.
   * `since`: a position delivered earlier (say, saved before a reload): what was published
   * after it is delivered first, once, in order.
   * @param {string} channel
   * @param {(data: any, msg: {channel: string, epoch: string, offset: number, data: any}) => void} [handler]
   * @param {{since?: Position|null}} [options]
   * @returns {Promise<Subscription>}
   */
  subscribe(channel, handler, options = {}) {
    if (this._closed) return Promise.reject(new ConnectionClosed(1000, 'client closed'));
    const bad = invalidChannel(channel);
    if (bad) return Promise.reject(bad);
    const sub = this._subscription(channel, options.since ?? null);
    if (handler) sub.on('message', handler);
    return sub.ready;
  }

  /**
   * This tab's live subscription to `channel`, or a new one that joins from `since`.
   * @param {string} channel @param {Position|null} since
   */
  _subscription(channel, since) {
    let sub = this._subs.get(channel);
    if (sub && sub.state !== SubscriptionState.CLOSED) return sub;
    sub = new Subscription(channel, { since, unsubscribe: (s) => this._unsubscribe(s),
      presence: (name, stats) => this._presence(name, stats),
      transferTimeout: () => (this._remote?.binary?.transfer_timeout ?? 30) * 1000 });
    this._subs.set(channel, sub);
    sub.on('recovery', (/** @type {any} */ info) => this.emit('recovery', info));
    if (this.leader) this._join(sub);
    return sub;
  }

  /**
   * A new connection's server-side subscriptions (welcome.server_subs, through the hub): a
   * channel seen for the first time becomes a Subscription that joins from the position the
   * server joined at, so nothing published since is missed; one the server no longer names
   * is unsubscribed. Emits 'serverSubscription' with each new one.
   * @param {Array<{channel: string, epoch: string, offset: number}>} list
   */
  _serverSubscribed(list) {
    const named = new Map(list.map((p) => [p.channel, { epoch: p.epoch, offset: p.offset }]));
    for (const [name, sub] of [...this.serverSubscriptions]) {
      if (named.has(name)) continue;
      this.serverSubscriptions.delete(name);
      sub.serverSide = false;
      sub.unsubscribe().catch(() => {});
    }
    for (const [name, since] of named) {
      const have = this.serverSubscriptions.get(name);
      if (have && have.state !== SubscriptionState.CLOSED) continue; // kept: the hub recovers it
      const sub = this._subscription(name, since);
      sub.serverSide = true;
      sub.on('message', (/** @type {any} */ data, /** @type {any} */ msg) => {
        if (sub.serverSide) this.emit('publication', data, msg);
      });
      this.serverSubscriptions.set(name, sub);
      this.emit('serverSubscription', sub);
    }
  }

  /** The subscription to `channel` in this tab, if any. @param {string} channel */
  subscription(channel) {
    return this._subs.get(channel);
  }

  /** @param {Subscription} sub */
  async _unsubscribe(sub) {
    if (this._subs.get(sub.channel) !== sub) return;
    this._subs.delete(sub.channel);
    this._up({ t: 'leave', channel: sub.channel });
  }

  // ------------------------------------------------------------------ publishing

  /**
   * Publishes `data` on `channel`, exactly once. The publish is accepted before publish()
   * returns: given an idempotency key, counted against the bound, and (with the default
   * store) written to localStorage synchronously, then to IndexedDB, so a reload right after
   * cannot lose it. It is kept until the server acknowledges it, and sent again after every
   * reconnect, leader change or page reload. It is written to the socket once the send
   * buffer is under its low-water mark. Resolves with the ack; rejects with RequestError (the
   * server refused it), QueueFull (the outbox is at its bound: nothing kept), or
   * ConnectionClosed/ReconnectFailed.
   * `data` that is an ArrayBuffer, a typed array, a DataView or a Blob is published as bytes,
   * in a binary frame (protocol v2); a Blob is accepted once it is read.
   * @param {string} channel @param {any} data @param {{key?: string}} [options]
   * @returns {Promise<PublishAck>}
   */
  publish(channel, data, options = {}) {
    if (this._closed || this.error) {
      return Promise.reject(this.error ?? new ConnectionClosed(1000, 'client closed'));
    }
    const bad = invalidChannel(channel);
    if (bad) return Promise.reject(bad); // before the outbox: it would never be accepted
    if (typeof Blob === 'function' && data instanceof Blob) {
      return data.arrayBuffer().then((bytes) => this.publish(channel, bytes, options));
    }
    return this._publisher.publish(channel, data, options?.key);
  }

  /** Resolves when the connection's send buffer is under its low-water mark. */
  writable() {
    return this._publisher.writable();
  }

  /**
   * Publishes a Blob, a File or a ReadableStream of any size as one transfer, in chunks
   * (transfer-sender.js; docs/client-browser.md, *Transfers*). Resolves once all are acked.
   * @param {string} channel @param {Blob|ReadableStream<any>} source
   * @param {import('./transfer-sender.js').TransferOptions} [options]
   * @returns {Promise<import('./transfer-sender.js').TransferResult>}
   */
  sendTransfer(channel, source, options = {}) {
    if (this._closed || this.error) return Promise.reject(this.error ?? new ConnectionClosed(1000, 'client closed'));
    const bad = invalidChannel(channel);
    if (bad) return Promise.reject(bad);
    const timeout = this.options.timeout ?? 10000;
    const chunk = (/** @type {string} */ ch, /** @type {any} */ header, /** @type {Uint8Array} */ data) =>
      this._ask({ t: 'chunk', channel: ch, chunk: header, data, timeout }, timeout, `chunk of ${ch}`);
    return sendTransfer(clientLink(this, chunk), channel, source, { ...options, newId: newKey });
  }

  // ------------------------------------------------------------------ rpc and control

  /**
   * Calls an RPC method registered by the application on the server.
   * @param {string} method @param {any} data @param {{timeout?: number}} [options]
   */
  rpc(method, data, options = {}) {
    const timeout = options.timeout ?? this.options.timeout ?? 10000;
    return this._ask({ t: 'rpc', method, data, timeout }, timeout, `rpc ${method}`);
  }

  /**
   * `Subscription.presence()` / `presenceStats()`: asked by the tab holding the connection.
   * @param {string} channel @param {boolean} stats
   */
  _presence(channel, stats) {
    const timeout = this.options.timeout ?? 10000;
    return this._ask({ t: 'presence', channel, stats }, timeout, `presence of ${channel}`);
  }

  /**
   * One request to the hub, answered by its `reply` (rid).
   * @param {Record<string, any>} msg @param {number} timeout @param {string} what
   */
  _ask(msg, timeout, what) {
    if (this._closed) return Promise.reject(this.error ?? new ConnectionClosed(1000, 'client closed'));
    if (!this._connId) return Promise.reject(new ConnectionClosed(1006, 'not connected'));
    return this._asks.ask((m) => this._up(m), msg, timeout, what);
  }

  /** Drops the connection as a network failure would (it reconnects with backoff). */
  cut() {
    this._up({ t: 'cut' });
  }

  /** @param {Error} err */
  _fail(err) {
    if (this.error) return;
    this.error = err;
    this._rejectReady?.(err);
    for (const sub of this._subs.values()) sub._fail(err);
    this._subs.clear();
    this._publisher.failAll(err, true);
    this._asks.failAll(err);
    // Terminal: this tab is done until the application (or the user) starts again. It
    // leaves the group, so that a tab opened later elects a leader and tries afresh.
    this._closed = true;
    this._hub?.stop();
    this._hub = null;
    this._group?.leave();
    this._setState(State.CLOSED);
    this.emit('error', err);
    this._changed();
  }

  /**
   * Leaves: this tab's subscriptions end; when it held the shared connection another tab
   * takes it over. Publishes not yet acknowledged stay in IndexedDB and are sent by the
   * next client of this origin (their promises here reject with ConnectionClosed 1000).
   */
  async close() {
    if (this._closed) {
      this._setState(State.CLOSED);
      return;
    }
    // What is written ahead goes to IndexedDB before this tab's lock is released (and its
    // entries become orphans that the tab holding the connection adopts): at most a second.
    const flushed = this._store?.flush?.().catch(() => {});
    if (!this._hub) this._up({ t: 'bye' });
    this._closed = true;
    const err = new ConnectionClosed(1000, 'client closed');
    for (const sub of this._subs.values()) sub._fail(err);
    this._subs.clear();
    this._publisher.failAll(err, false);
    this._asks.failAll(err);
    this._rejectReady?.(err);
    this.outbox.close();
    if (this._hub) {
      this._hub.stop({ handover: this.shared });
      this._hub = null;
    }
    this._group?.leave(flushed ?? null, 1000);
    if (typeof removeEventListener === 'function') removeEventListener('pagehide', this._onPageHide);
    if (typeof document !== 'undefined') document.removeEventListener('visibilitychange', this._onVisibility);
    this._setState(State.CLOSED);
    this._changed();
  }
}

/**
 * Creates a client and starts connecting.
 * @param {string} url @param {ClientOptions} [options]
 */
export function connect(url, options) {
  const client = new Client(url, options);
  client.connect();
  return client;
}
