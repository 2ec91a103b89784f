// The hub's channels (hub.js): one server subscription per channel, shared by every tab.
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

import { State } from './socket.js';
import { ChannelCursor, CursorState, Verdict, delivers } from './cursor.js';
import { RequestError, RequestTimeout, serializeError } from './errors.js';
import { jittered } from './backoff.js';

// `sub` refusals that say "not now": sent again (5 times at most, as the Python client).
const TRANSIENT = new Set(['rate_limited', 'unavailable', 'internal']);
const MAX_SUB_RETRIES = 5;

/** @typedef {import('./cursor.js').Position} Position */
/** @typedef {{tab: string, rid: number, since: Position|null, covered: number|null, unrecovered: boolean}} Waiter */
/** @typedef {{name: string, tabs: Set<string>, cursor: ChannelCursor, waiting: Waiter[], seq: number, retries: number, serverSide?: boolean}} ChannelState */
/** @typedef {{channel: string, epoch: string, offset: number}} ServerSub */
/**
 * The hub's way to send a request (Hub._request).
 * @typedef {(type: string, payload: Record<string, any>, meta: Record<string, any>,
 *   onTimeout?: ((push: import('./push.js').Push) => void)|null, raw?: string|Uint8Array) => import('./push.js').Push} SendRequest
 */

export class ChannelMux {
  /**
   * @param {{socket: import('./socket.js').Socket, emit: (msg: any) => void, request: SendRequest,
   *   setTimeout?: (fn: () => void, ms: number) => any}} hub
   *   the hub's socket, its way to the tabs, its way to send a request, and its timer
   */
  constructor({ socket, emit, request, setTimeout: later }) {
    this._socket = socket;
    this._emit = emit;
    this._request = request;
    this._later = later ?? ((/** @type {() => void} */ fn, /** @type {number} */ ms) => setTimeout(fn, ms));
    /** @type {Map<string, ChannelState>} */
    this.channels = new Map();
  }

  get _open() {
    return this._socket.state === State.OPEN;
  }

  /** @param {string} name @returns {ChannelState} */
  _channel(name) {
    let ch = this.channels.get(name);
    if (!ch) {
      ch = { name, tabs: new Set(), cursor: new ChannelCursor(name), waiting: [], seq: 0, retries: 0 };
      this.channels.set(name, ch);
    }
    return ch;
  }

  /** @param {string} tab @param {string} name @param {Position|null} since @param {number} rid */
  join(tab, name, since, rid) {
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
    if (this._open && cursor.state === CursorState.IDLE) this.subscribe(ch);
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
  subscribe(ch) {
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
      this._socket.drop(`no answer to sub ${ch.name} within ${push.timeout} ms`, 4000);
    });
  }

  /** @param {ChannelState} ch @param {boolean} resync */
  _sendUnsub(ch, resync) {
    if (!this._open) return;
    this._request('unsub', { channel: ch.name },
      { channel: resync ? ch.name : undefined, kind: resync ? 'resync' : 'unsub', ch },
      resync ? (push) => this._socket.drop(`no answer to unsub ${ch.name} within ${push.timeout} ms`, 4000) : null);
  }

  /** @param {string} tab @param {string} name */
  leave(tab, name) {
    const ch = this.channels.get(name);
    if (!ch) return;
    ch.tabs.delete(tab);
    ch.waiting = ch.waiting.filter((w) => w.tab !== tab);
    if (ch.tabs.size > 0) return;
    this.channels.delete(name);
    if (ch.cursor.state !== CursorState.IDLE) this._sendUnsub(ch, false);
  }

  /** @param {string} tab */
  forgetTab(tab) {
    for (const name of [...this.channels.keys()]) this.leave(tab, name);
  }

  // ------------------------------------------------------------------ the connection

  /** A new connection: subscribes every channel a tab is on. */
  connected() {
    for (const ch of this.channels.values()) {
      if (ch.tabs.size > 0 && ch.cursor.state === CursorState.IDLE) this.subscribe(ch);
    }
  }

  /**
   * The welcome's `server_subs`: channels the server subscribed this connection to itself
   * (docs/protocol.md, *Server-side subscriptions*). Each is live at once when the connection
   * before had delivered up to the same position; else it is restarted from the position
   * delivered (`unsub`, then `sub` with `since`), as a gap is. One the server no longer
   * names is dropped: its tabs end their Subscription of it (staywire.js), and no `sub` is
   * sent for it. Call before `connected()`.
   * @param {ServerSub[]} subs
   */
  serverSubscribed(subs) {
    const named = new Set(subs.map((p) => p.channel));
    for (const [name, ch] of [...this.channels]) {
      if (ch.serverSide && !named.has(name)) this.channels.delete(name);
    }
    for (const p of subs) {
      const ch = this._channel(p.channel);
      ch.serverSide = true;
      if (ch.cursor.joined(p.epoch, p.offset) !== null) {
        this._sendUnsub(ch, true);
        continue;
      }
      for (const w of [...ch.waiting]) this._answerIfCovered(ch, w);
      if (ch.waiting.length > 0) this._rewind(ch);
    }
  }

  /**
   * `subscribed`: the server joined this open connection to a channel (the server API). A
   * channel it had no subscription of is live from that position (its `msg`s follow); one a
   * tab subscribed already goes on as it is, on the same server subscription.
   * @param {ServerSub} p
   */
  serverJoined(p) {
    const ch = this._channel(p.channel);
    ch.serverSide = true;
    if (ch.cursor.state !== CursorState.IDLE) return;
    if (ch.cursor.joined(p.epoch, p.offset) !== null) {
      this._sendUnsub(ch, true);
      return;
    }
    for (const w of [...ch.waiting]) this._answerIfCovered(ch, w);
    if (ch.waiting.length > 0) this._rewind(ch);
  }

  /**
   * `unsubscribed`: the server took the connection out of the channel (the server API): every
   * tab's Subscription of it ends (`subend`), with no error.
   * @param {string} name
   */
  serverLeft(name) {
    const ch = this.channels.get(name);
    if (!ch) return;
    this.channels.delete(name);
    for (const tab of ch.tabs) this._emit({ t: 'subend', to: tab, channel: name });
  }

  /** The connection is gone, and every subscription with it: each join waits for a `sub` on the next. */
  connectionLost() {
    for (const ch of this.channels.values()) {
      ch.cursor.connectionLost();
      for (const w of ch.waiting) w.covered = null;
    }
  }

  /** A `msg` from the server. @param {any} msg */
  onMessage(msg) {
    const ch = this.channels.get(msg.channel);
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
    // Bytes are an ArrayBuffer, cloned to every other tab by BroadcastChannel.
    this._emit(msg.binary
      ? { t: 'msg', channel: msg.channel, epoch: msg.epoch, offset: msg.offset, data: msg.data, binary: true,
        ...(msg.chunk ? { chunk: msg.chunk } : {}) }
      : { t: 'msg', channel: msg.channel, epoch: msg.epoch, offset: msg.offset, data: msg.data });
  }

  /**
   * The answer to a `sub`. @param {{channel?: string, seq?: number, ch?: ChannelState}} sent what sent it
   * @param {any} ack @param {Error|null} err
   */
  subAnswered(sent, ack, err) {
    // Only for the channel record that sent it: one left and joined again is another.
    if (this.channels.get(/** @type {string} */ (sent.channel)) !== sent.ch) return;
    this._onSubReply(/** @type {string} */ (sent.channel), /** @type {number} */ (sent.seq), ack, err);
  }

  /** The answer to a resync's `unsub`. @param {{channel?: string, ch?: ChannelState}} sent what sent it */
  resyncAnswered(sent) {
    const ch = this.channels.get(/** @type {string} */ (sent.channel));
    if (!ch || ch !== sent.ch) return;
    if (ch.cursor.state === CursorState.RESYNCING) this.subscribe(ch);
  }

  /**
   * The server ended the channel's subscription: every tab on it learns why.
   * @param {string} name @param {Error} err
   */
  revoked(name, err) {
    const ch = this.channels.get(name);
    if (!ch) {
      // Say, a server-side subscription the server could not make (channel_full).
      this._emit({ t: 'warning', message: `the server did not subscribe ${name}: ${err.message}` });
      return;
    }
    this.channels.delete(name);
    for (const tab of ch.tabs) {
      this._emit({ t: 'subfail', to: tab, channel: name, error: serializeError(err) });
    }
  }

  /** @param {string} name @param {number} seq @param {any} ack @param {Error|null} err */
  _onSubReply(name, seq, ack, err) {
    const ch = this.channels.get(name);
    if (!ch || ch.cursor.state !== CursorState.SUBSCRIBING) return;
    if (err) {
      if (err instanceof RequestError && err.code === 'already_subscribed') {
        ch.cursor.beginResync(); // say, a resumed session kept it: restart from our position
        this._sendUnsub(ch, true);
        return;
      }
      if (err instanceof RequestTimeout) return;
      if (err instanceof RequestError && TRANSIENT.has(err.code) && ch.retries < MAX_SUB_RETRIES) {
        ch.retries += 1; // not now: again after a jittered pause, from the same position
        ch.cursor.connectionLost();
        for (const w of ch.waiting) w.covered = null;
        this._later(() => {
          if (this.channels.get(name) === ch && ch.cursor.state === CursorState.IDLE) this.subscribe(ch);
        }, jittered(500 * ch.retries));
        return;
      }
      this.revoked(name, err); // forbidden, too_many_subscriptions, ...: every tab learns it
      return;
    }
    ch.retries = 0;
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
}
