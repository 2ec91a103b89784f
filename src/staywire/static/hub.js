// The hub: the one connection of a group of tabs, multiplexed.
//
// The tab that holds the leader lock (tab-leader.js) runs the hub; every tab (itself
// included) talks to it with small messages (`join`, `leave`, `pub`, `rpc`, ...) and gets
// `msg`, `joined`, `puback`, `status` ... back. With sharing off, every tab runs its own hub
// with itself as its only tab: one code path.
//
// * Channels: one server subscription per channel, whatever the number of tabs on it. Its
//   ChannelCursor (cursor.js) judges every `msg` exactly as the Python client does; what it
//   delivers goes to every tab, and each tab keeps only the channels it joined and drops
//   offsets it has delivered (channel.js).
// * Joins: a tab joins with the position it has delivered (`since`). When the connection's
//   position is ahead of it (say, the tab that held the connection crashed and the new one
//   started from another tab's position) the hub rewinds: `unsub`, then `sub` with the older
//   `since`, and the replay reaches every tab. A tab's join is answered (`joined`) only once
//   a `sub` sent after the join covers its position, so it never misses an offset.
// * Publishes: each tab keeps its own outbox and sends every unacknowledged publish again on
//   each new connection (a new `connId` in `status`); the hub forwards them with their keys.
//   Entries left by tabs that are gone (a reload, a crash), in IndexedDB or still in the
//   localStorage write-ahead whose IndexedDB write the reload cut short (write-ahead.js:
//   `store.all()` merges both), are adopted and sent by the hub, so each lands exactly once.

import { Socket, State } from './socket.js';
import { ChannelCursor, CursorState, Verdict, delivers } from './cursor.js';
import { Push } from './push.js';
import { ConnectionClosed, RequestError, RequestTimeout, serializeError } from './errors.js';
import { compareRecords } from './outbox.js';
import { jittered } from './backoff.js';

/** @typedef {import('./cursor.js').Position} Position */
/** @typedef {{tab: string, rid: number, since: Position|null, covered: number|null, unrecovered: boolean}} Waiter */
/** @typedef {{name: string, tabs: Set<string>, cursor: ChannelCursor, waiting: Waiter[], seq: number}} ChannelState */

/** @param {Position|null|undefined} p */
function validPosition(p) {
  return p && typeof p.epoch === 'string' && Number.isInteger(p.offset) && p.offset >= 0
    ? { epoch: p.epoch, offset: p.offset } : null;
}

export class Hub {
  /**
   * @param {{
   *   url: string, tabId: string,
   *   socket?: import('./socket.js').SocketOptions,
   *   emit: (msg: any) => void,
   *   store?: {all(): Promise<import('./outbox.js').OutboxRecord[]>, remove(key: string): Promise<void>}|null,
   *   liveTabs?: () => Promise<Set<string>|null>,
   *   timeout?: number, sweepInterval?: number, maxPubsInFlight?: number,
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
    /** @type {Map<string, ChannelState>} */
    this._channels = new Map();
    /** @type {Map<number, {push: Push, kind: string, channel?: string, seq?: number, ch?: ChannelState, tab?: string, rid?: number, key?: string, adopted?: boolean}>} */
    this._pushes = new Map();
    /** pub keys in flight on this connection -> the tabs waiting for their ack */
    /** @type {Map<string, Set<string>>} */
    this._pubKeys = new Map();
    /** Publishes waiting to be written, oldest first. @type {Array<{seq: number, key: string, channel: string, data: string, adopted: boolean}>} */
    this._pubQueue = [];
    this._pubSeq = 0;
    this._pubInFlight = 0;
    this._pubPausedUntil = 0;
    /** @type {any} */
    this._pubTimer = null;
    /** At most this many publishes wait for their ack at once (a rate limit then rejects few). */
    this.maxPubsInFlight = options.maxPubsInFlight ?? 64;
    this._pubWindow = this.maxPubsInFlight;
    this._pubBatchRefused = false;
    this._pubSingles = 0;
    this._now = clock.now ?? (() => Date.now());
    this._nextId = 0;
    this._sweepTimer = null;
    this._stopped = false;
    this._handover = false;
    /** When this hub started: a later leader has a greater term, so tabs can ignore a late
     * message of a leader that is gone. */
    this.term = (clock.now ?? (() => Date.now()))();
    this._adopting = false;
    /** Publications adopted from tabs that are gone, and acknowledged. */
    this.adopted = 0;
    this._wire();
  }

  _wire() {
    const s = this.socket;
    s.on('state', () => this._status());
    s.on('rtt', () => this._status());
    s.on('reconnect', () => this._status());
    s.on('backpressure', () => this._status());
    s.on('late', () => this._status());
    s.on('welcome', () => this._onOpen());
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
    if (this._pubTimer !== null) this._clearTimeout(this._pubTimer);
    this._sweepTimer = this._pubTimer = null;
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
      rtt: s.rtt,
      attempts: s.attempts,
      retryAt: s.retryAt,
      retryDelay: s.lastRetry?.delay ?? null,
      paused: s.paused,
      bufferedAmount: s.bufferedAmount,
      lateFires: s.lateFires,
      lastClose: s.lastClose,
      session: s.session,
      channels: this._channels.size,
      adopted: this.adopted,
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
        this._join(tab, String(msg.channel), validPosition(msg.since), Number(msg.rid));
        return;
      case 'leave':
        this._leave(tab, String(msg.channel));
        return;
      case 'pub':
        this._publish(tab, msg);
        return;
      case 'rpc':
        this._rpc(tab, msg);
        return;
      case 'cut':
        this.socket.drop(`connection cut (tab ${tab})`);
        return;
      case 'bye':
        this._forgetTab(tab);
        return;
      case 'status':
        this._status(tab);
        return;
      default:
    }
  }

  /** @param {string} name @returns {ChannelState} */
  _channel(name) {
    let ch = this._channels.get(name);
    if (!ch) {
      ch = { name, tabs: new Set(), cursor: new ChannelCursor(name), waiting: [], seq: 0 };
      this._channels.set(name, ch);
    }
    return ch;
  }

  get _open() {
    return this.socket.state === State.OPEN;
  }

  /** @param {string} tab @param {string} name @param {Position|null} since @param {number} rid */
  _join(tab, name, since, rid) {
    const ch = this._channel(name);
    ch.tabs.add(tab);
    ch.waiting = ch.waiting.filter((w) => w.tab !== tab);
    /** @type {Waiter} */
    const w = { tab, rid, since, covered: null, unrecovered: false };
    const cursor = ch.cursor;
    if (this._open && cursor.state === CursorState.LIVE) {
      if (this._answerIfCovered(ch, w)) return;
      ch.waiting.push(w);
      this._rewind(ch);
      return;
    }
    ch.waiting.push(w);
    if (cursor.state === CursorState.IDLE || cursor.state === CursorState.RESYNCING) {
      this._lowerFor(ch, w);
    }
    if (this._open && cursor.state === CursorState.IDLE) this._subscribe(ch);
    // SUBSCRIBING: evaluated at the ack. RESYNCING: the follow-up `sub` asks from the lowered position.
  }

  /**
   * Answers `w` at once when the live subscription covers it. @param {ChannelState} ch @param {Waiter} w
   * @returns {boolean}
   */
  _answerIfCovered(ch, w) {
    const pos = ch.cursor.position;
    if (w.since === null) {
      this._answer(ch, w, { from: pos, recovered: false, unrecovered: false });
      return true;
    }
    if (pos === null) return false;
    if (w.since.epoch !== pos.epoch) {
      // The tab's stream is gone (a server restart): like the Python client, deliver the new
      // stream from its start, and report recovered: false.
      w.unrecovered = true;
      w.since = { epoch: pos.epoch, offset: 0 };
    }
    if (w.since.offset >= pos.offset) {
      this._answer(ch, w, { from: w.since, recovered: !w.unrecovered, unrecovered: w.unrecovered,
        epochChanged: w.unrecovered });
      return true;
    }
    return false;
  }

  /**
   * @param {ChannelState} ch @param {Waiter} w
   * @param {{from: Position|null, recovered: boolean, unrecovered: boolean, epochChanged?: boolean}} answer
   */
  _answer(ch, w, answer) {
    ch.waiting = ch.waiting.filter((x) => x !== w);
    this._emit({ t: 'joined', to: w.tab, channel: ch.name, rid: w.rid, ...answer });
  }

  /** Lowers a not-yet-sent `sub`'s position so that it covers `w`. @param {ChannelState} ch @param {Waiter} w */
  _lowerFor(ch, w) {
    const pos = ch.cursor.position;
    if (w.since === null) return;
    if (pos === null || (pos.epoch === w.since.epoch && w.since.offset < pos.offset)) {
      ch.cursor.rewind(w.since);
    }
  }

  /** The live subscription is ahead of a waiting tab: restart it from the oldest position. @param {ChannelState} ch */
  _rewind(ch) {
    const pos = ch.cursor.position;
    let target = null;
    for (const w of ch.waiting) {
      if (w.since && pos && w.since.epoch === pos.epoch && (!target || w.since.offset < target.offset)) {
        target = w.since;
      }
    }
    if (target && ch.cursor.rewind(target)) this._sendUnsub(ch, true);
  }

  /** Sends `sub` for `ch` from its cursor's position. @param {ChannelState} ch */
  _subscribe(ch) {
    if (!this._open) return;
    const cursor = ch.cursor;
    for (const w of ch.waiting) if (w.covered === null) this._lowerFor(ch, w);
    let since;
    if (cursor.state === CursorState.RESYNCING) {
      cursor.onUnsubscribed(); // the resync's unsub was acked: ask from the (lowered) position
      since = cursor.asked;
    } else {
      since = cursor.subscribe();
    }
    ch.seq += 1;
    const seq = ch.seq;
    for (const w of ch.waiting) {
      if (w.covered !== null) continue;
      if (w.since === null) w.covered = seq;
      else if (since && w.since.epoch === since.epoch && w.since.offset >= since.offset) w.covered = seq;
      else if (since && since.offset === 0 && w.since.epoch !== since.epoch) {
        w.covered = seq; // the start of a new stream covers a position of a stream that is gone
        w.unrecovered = true;
      }
    }
    const payload = since ? { channel: ch.name, since } : { channel: ch.name };
    this._request('sub', payload, { channel: ch.name, seq, ch }, (push) => {
      // A `sub` with no answer: the link is not what it seems; reconnect and resubscribe.
      this.socket.drop(`no answer to sub ${ch.name} within ${push.timeout} ms`, 4000);
    });
  }

  /** @param {ChannelState} ch @param {boolean} resync */
  _sendUnsub(ch, resync) {
    if (!this._open) return;
    this._request('unsub', { channel: ch.name },
      { channel: resync ? ch.name : undefined, kind: resync ? 'resync' : 'unsub', ch },
      resync ? (push) => this.socket.drop(`no answer to unsub ${ch.name} within ${push.timeout} ms`, 4000) : null);
  }

  /** @param {string} tab @param {string} name */
  _leave(tab, name) {
    const ch = this._channels.get(name);
    if (!ch) return;
    ch.tabs.delete(tab);
    ch.waiting = ch.waiting.filter((w) => w.tab !== tab);
    if (ch.tabs.size > 0) return;
    this._channels.delete(name);
    if (ch.cursor.state !== CursorState.IDLE) this._sendUnsub(ch, false);
  }

  /** @param {string} tab */
  _forgetTab(tab) {
    for (const name of [...this._channels.keys()]) this._leave(tab, name);
  }

  /** @param {string} tab @param {any} msg */
  _publish(tab, msg) {
    const key = String(msg.key);
    if (!this._open) return; // the tab sends it again on the next connection
    const waiting = this._pubKeys.get(key);
    if (waiting) {
      waiting.add(tab); // already queued or in flight on this connection
      return;
    }
    this._pubKeys.set(key, new Set([tab]));
    this._enqueuePub(key, String(msg.channel), String(msg.data), false);
  }

  /** @param {string} key @param {string} channel @param {string} data @param {boolean} adopted */
  _enqueuePub(key, channel, data, adopted) {
    this._pubSeq += 1;
    this._pubQueue.push({ seq: this._pubSeq, key, channel, data, adopted });
    this._pumpPubs();
  }

  /**
   * Writes queued publishes, in order, in batches: the next batch goes when every publish
   * of the last one has its answer, so one that a rate limit refused is sent again before
   * any publish queued after it. After a refusal, a pause of about a second, then one
   * publish at a time until 32 in a row went through (so a server's rate limit sees about
   * one refusal a second, far from its close at 100 in 10 s), then doubling batches again.
   */
  _pumpPubs() {
    if (this._pubTimer !== null || this._pubInFlight > 0) return;
    const wait = this._pubPausedUntil - this._now();
    if (wait > 0) {
      this._pubTimer = this._setTimeout(() => {
        this._pubTimer = null;
        this._pumpPubs();
      }, wait);
      return;
    }
    while (this._open && this._pubQueue.length > 0 && this._pubInFlight < this._pubWindow) {
      const p = this._pubQueue[0];
      this._pubQueue.shift();
      this._pubInFlight += 1;
      this._request('pub', { channel: p.channel, key: p.key }, { key: p.key, adopted: p.adopted, pub: p },
        null, p.data);
    }
  }

  /** @param {string} tab @param {any} msg */
  _rpc(tab, msg) {
    const rid = Number(msg.rid);
    if (!this._open) {
      this._emit({ t: 'reply', to: tab, rid, ok: false,
        error: serializeError(new ConnectionClosed(1006, 'not connected')) });
      return;
    }
    const timeout = typeof msg.timeout === 'number' ? msg.timeout : this.timeout;
    this._request('rpc', { method: String(msg.method), data: msg.data ?? null }, { tab, rid }, null, undefined, timeout);
  }

  /**
   * Sends one request with a fresh id.
   * @param {string} type @param {Record<string, any>} payload @param {Record<string, any>} meta
   * @param {((push: Push) => void)|null} [onTimeout] @param {string} [raw] @param {number} [timeout]
   */
  _request(type, payload, meta, onTimeout = null, raw = undefined, timeout = undefined) {
    this._nextId += 1;
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
    this.socket.send(push.encode(id));
    push._startTimeout();
    return push;
  }

  // ------------------------------------------------------------------ the connection

  _onOpen() {
    const connId = this.socket.connId;
    for (const ch of this._channels.values()) {
      if (ch.tabs.size > 0 && ch.cursor.state === CursorState.IDLE) this._subscribe(ch);
    }
    this._status(); // tabs see the new connId and send their unacknowledged publishes
    this._sweep(connId);
  }

  /** @param {{code: number, reason: string}} info */
  _onClosed(info) {
    for (const ch of this._channels.values()) {
      ch.cursor.connectionLost();
      for (const w of ch.waiting) w.covered = null;
    }
    const pushes = [...this._pushes.values()];
    this._pushes.clear();
    this._pubKeys.clear();
    this._pubQueue = [];
    this._pubInFlight = 0;
    this._pubPausedUntil = 0;
    this._pubWindow = this.maxPubsInFlight;
    this._pubBatchRefused = false;
    this._pubSingles = 0;
    if (this._pubTimer !== null) this._clearTimeout(this._pubTimer);
    this._pubTimer = null;
    for (const p of pushes) {
      p.push.cancelTimeout();
      if (p.kind === 'rpc') {
        this._emit({ t: 'reply', to: p.tab, rid: p.rid, ok: false,
          error: serializeError(new ConnectionClosed(info.code, info.reason)) });
      }
    }
  }

  /** @param {any} msg */
  _onServerMessage(msg) {
    if (msg.type === 'msg') {
      const ch = this._channels.get(msg.channel);
      if (!ch || typeof msg.epoch !== 'string' || !Number.isInteger(msg.offset)) return;
      const previous = ch.cursor.position;
      const verdict = ch.cursor.onMessage(msg.epoch, msg.offset);
      if (verdict === Verdict.RESYNC) {
        this._emit({ t: 'warning', message: `offsets skipped before ${msg.offset} on ${msg.channel}: resubscribing from ${previous?.offset ?? 0}` });
        this._sendUnsub(ch, true);
        return;
      }
      if (!delivers(verdict)) return;
      if (verdict === Verdict.GAP) {
        this._emit({ t: 'warning', message: `gap in ${msg.channel} before offset ${msg.offset}` });
      }
      if (verdict === Verdict.NEW_EPOCH) {
        // The stream was recreated under a live subscription: tell, then deliver.
        for (const tab of ch.tabs) {
          this._emit({ t: 'recovery', to: tab, channel: ch.name, epochChanged: true });
        }
      }
      this._emit({ t: 'msg', channel: msg.channel, epoch: msg.epoch, offset: msg.offset, data: msg.data });
      return;
    }
    if ((msg.type === 'ack' || msg.type === 'result' || msg.type === 'error') && msg.id !== undefined) {
      const entry = this._pushes.get(msg.id);
      if (entry) entry.push.reply(msg);
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
        // Only for the channel record that sent it: one left and joined again is another.
        if (this._channels.get(/** @type {string} */ (entry.channel)) !== entry.ch) return;
        this._onSubReply(/** @type {string} */ (entry.channel), /** @type {number} */ (entry.seq), reply, err);
        return;
      case 'resync': {
        const ch = this._channels.get(/** @type {string} */ (entry.channel));
        if (!ch || ch !== entry.ch) return;
        if (ch.cursor.state === CursorState.RESYNCING) this._subscribe(ch);
        return;
      }
      case 'pub':
        this._onPubReply(/** @type {any} */ (entry).pub, reply, err);
        return;
      case 'rpc':
        this._emit(err
          ? { t: 'reply', to: entry.tab, rid: entry.rid, ok: false, error: serializeError(err) }
          : { t: 'reply', to: entry.tab, rid: entry.rid, ok: true, value: reply.data });
        return;
      default: // a leave's unsub: nothing waits for it
    }
  }

  /** @param {string} name @param {number} seq @param {any} ack @param {Error|null} err */
  _onSubReply(name, seq, ack, err) {
    const ch = this._channels.get(name);
    if (!ch || ch.cursor.state !== CursorState.SUBSCRIBING) return;
    if (err) {
      if (err instanceof RequestError && err.code === 'already_subscribed') {
        ch.cursor.beginResync(); // say, a resumed session kept it: restart from our position
        this._sendUnsub(ch, true);
        return;
      }
      if (err instanceof RequestTimeout) return;
      // forbidden, too_many_subscriptions, ...: every tab on the channel learns it.
      this._channels.delete(name);
      for (const tab of ch.tabs) {
        this._emit({ t: 'subfail', to: tab, channel: name, error: serializeError(err) });
      }
      return;
    }
    const out = ch.cursor.onSubscribed(String(ack.epoch), Number(ack.offset), Boolean(ack.recovered));
    const waitingTabs = new Set(ch.waiting.map((w) => w.tab));
    if (out.unrecovered) {
      for (const tab of ch.tabs) {
        if (!waitingTabs.has(tab)) {
          this._emit({ t: 'recovery', to: tab, channel: name, epochChanged: out.epochChanged });
        }
      }
    }
    if (out.resyncFrom) {
      // A new epoch: restart from its start (unsub, then sub since {epoch, 0}).
      for (const w of ch.waiting) {
        if (w.covered !== null && w.covered <= seq && w.since !== null) w.unrecovered = true;
        w.covered = null;
      }
      this._sendUnsub(ch, true);
      return;
    }
    if (!out.live) return;
    const pos = /** @type {Position} */ (ch.cursor.position);
    for (const w of [...ch.waiting]) {
      if (w.covered === null || w.covered > seq) continue;
      if (w.since === null) {
        this._answer(ch, w, { from: pos, recovered: false, unrecovered: false });
      } else if (w.since.epoch === pos.epoch) {
        const unrecovered = w.unrecovered || !ack.recovered;
        this._answer(ch, w, { from: w.since, recovered: !unrecovered, unrecovered,
          epochChanged: w.unrecovered });
      } else {
        const from = out.asked && out.asked.epoch === pos.epoch ? out.asked : pos;
        this._answer(ch, w, { from, recovered: false, unrecovered: true, epochChanged: true });
      }
    }
    for (const w of [...ch.waiting]) this._answerIfCovered(ch, w);
    if (ch.waiting.length > 0) this._rewind(ch);
  }

  /**
   * @param {{seq: number, key: string, channel: string, data: string, adopted: boolean}} pub
   * @param {any} ack @param {Error|null} err
   */
  _onPubReply(pub, ack, err) {
    this._pubInFlight -= 1;
    const { key, adopted } = pub;
    const retry = err instanceof RequestError && (err.code === 'rate_limited' || err.code === 'unavailable');
    if (retry) {
      // Not published, and worth trying again: over the rate limit, or the broker is
      // unreachable. Back in the queue, in its place.
      const i = this._pubQueue.findIndex((q) => q.seq > pub.seq);
      this._pubQueue.splice(i < 0 ? this._pubQueue.length : i, 0, pub);
      this._pubBatchRefused = true;
    }
    if (this._pubInFlight === 0) {
      if (this._pubBatchRefused) {
        this._pubWindow = 1;
        this._pubSingles = 0;
        this._pubPausedUntil = this._now() + jittered(1000);
      } else if (this._pubWindow > 1 || (this._pubSingles += 1) >= 32) {
        this._pubWindow = Math.min(this.maxPubsInFlight, this._pubWindow * 2);
      }
      this._pubBatchRefused = false;
      this._pumpPubs();
    }
    if (retry) return;
    const tabs = this._pubKeys.get(key) ?? new Set();
    this._pubKeys.delete(key);
    if (adopted) {
      if (!err) this.adopted += 1;
      this._store?.remove(key).catch(() => {});
      if (!err) this._status();
    }
    for (const tab of tabs) {
      this._emit(err
        ? { t: 'puback', to: tab, key, ok: false, error: serializeError(err) }
        : { t: 'puback', to: tab, key, ok: true,
          ack: { epoch: ack.epoch, offset: ack.offset, duplicate: Boolean(ack.duplicate) } });
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
        for (const ch of [...this._channels.values()]) {
          for (const tab of [...ch.tabs]) if (!live.has(tab)) this._leave(tab, ch.name);
        }
      }
      if (!this._store || !this._open || this.socket.connId !== connId) return;
      const records = (await this._store.all()).filter((r) => !r.target || r.target === this.url);
      records.sort(compareRecords);
      for (const r of records) {
        if (!this._open || this.socket.connId !== connId) return;
        const orphan = live ? !live.has(r.owner) : r.owner !== this.tabId;
        if (!orphan || this._pubKeys.has(r.key)) continue;
        this._pubKeys.set(r.key, new Set());
        this._enqueuePub(r.key, r.channel, r.data, true);
      }
    } catch (err) {
      this._emit({ t: 'warning', message: `outbox sweep failed: ${/** @type {any} */ (err)?.message ?? err}` });
    } finally {
      this._adopting = false;
    }
  }
}
