// A channel's delivered position on one connection, and the small state machine around a
// (re)subscribe. A port of the Python client's ChannelCursor (staywire/protocol/positions.py),
// so both clients judge every `msg` and every `sub` ack the same way:
//
//     IDLE ──subscribe()──> SUBSCRIBING ──ack──> LIVE
//      ^                        │  ^               │
//      │                  new epoch  unsub ack     │ rewind()
//      │                        v  │               v
//      │                     RESYNCING <───────────┘
//      └────────────── connectionLost() ──────────┘
//
// RESYNCING: when the server restarted (memory broker), the stream has a new epoch and the
// server replays nothing for a `since` of the old epoch; other clients may have published
// into the new stream already, so the cursor restarts from the start of the new epoch
// (since = {epoch: new, offset: 0}) and drops every `msg` until the `unsub` is acked.
// Everything it drops is in history and is replayed, in order, by the second `sub`.
//
// `rewind()` is the browser client's addition: when another tab joins the shared connection
// with an older position, the connection's cursor goes back to it (unsub, then sub with the
// older `since`) and the replay is handed to every tab, each dropping what it has delivered.

/** @typedef {{epoch: string, offset: number}} Position */

export const CursorState = Object.freeze({
  IDLE: 'idle',
  SUBSCRIBING: 'subscribing',
  RESYNCING: 'resyncing',
  LIVE: 'live',
});

/** What to do with one inbound `msg`. */
export const Verdict = Object.freeze({
  DELIVER: 'deliver', // the next publication
  GAP: 'gap', // deliver it, but offsets between the last one and it never arrived
  RESYNC: 'resync', // a live subscription skipped offsets: drop it, resubscribe with since
  NEW_EPOCH: 'new_epoch', // deliver it: the stream was recreated while we were live
  DUPLICATE: 'duplicate', // at or below the delivered position: drop
  STALE: 'stale', // not for the current subscription (resyncing, not subscribed): drop
});

/** @param {string} verdict */
export function delivers(verdict) {
  return verdict === Verdict.DELIVER || verdict === Verdict.GAP || verdict === Verdict.NEW_EPOCH;
}

// A server that changes the epoch on every resubscribe would otherwise make the cursor
// resync forever; after this many in a row it settles for the ack.
export const MAX_RESYNCS = 3;

export class ChannelCursor {
  /** @param {string} channel @param {Position|null} [position] */
  constructor(channel, position = null) {
    this.channel = channel;
    /** @type {Position|null} */
    this.position = position;
    /** @type {string} */
    this.state = CursorState.IDLE;
    /** @type {Position|null} the `since` of the pending `sub` */
    this.asked = null;
    this._resyncs = 0;
    this._reported = false;
  }

  /** A `sub` is about to be sent; returns its `since` (null: from now on). */
  subscribe() {
    this.state = CursorState.SUBSCRIBING;
    this.asked = this.position;
    return this.asked;
  }

  /** The connection ended: the position stays, the subscription must be made again. */
  connectionLost() {
    this.state = CursorState.IDLE;
    this.asked = null;
  }

  /**
   * Judges one `msg`; a delivered one advances the position.
   * @param {string} epoch @param {number} offset
   */
  onMessage(epoch, offset) {
    if (this.state === CursorState.IDLE || this.state === CursorState.RESYNCING) {
      return Verdict.STALE;
    }
    const asked = this.asked;
    if (this.state === CursorState.SUBSCRIBING && asked !== null && epoch !== asked.epoch) {
      // A publication of a stream we did not ask about, before the ack: the ack names the
      // new epoch and the resync replays this publication in order.
      return Verdict.STALE;
    }
    const current = this.position;
    if (current === null) {
      this.position = { epoch, offset };
      return Verdict.DELIVER;
    }
    if (epoch !== current.epoch) {
      this.position = { epoch, offset };
      return Verdict.NEW_EPOCH;
    }
    if (offset <= current.offset) return Verdict.DUPLICATE;
    if (offset > current.offset + 1 && this.state === CursorState.LIVE) {
      // Offsets were skipped on a live subscription (a node that lost publications it could
      // not refill). Delivering this one would break the order; asking again from the
      // delivered position either replays the missing ones or says recovered: false.
      this.state = CursorState.RESYNCING;
      return Verdict.RESYNC;
    }
    this.position = { epoch, offset };
    return offset === current.offset + 1 ? Verdict.DELIVER : Verdict.GAP;
  }

  /**
   * The `sub` was acked with the stream's current position.
   * @param {string} epoch @param {number} offset @param {boolean} recovered
   * @returns {{live: boolean, unrecovered: boolean, epochChanged: boolean,
   *            previous: Position|null, resyncFrom: Position|null, missing: number,
   *            asked: Position|null}}
   */
  onSubscribed(epoch, offset, recovered) {
    const none = { live: false, unrecovered: false, epochChanged: false, previous: null,
      resyncFrom: null, missing: 0, asked: null };
    if (this.state !== CursorState.SUBSCRIBING) return none;
    const asked = this.asked;
    const previous = this.position;
    if (asked !== null && epoch !== asked.epoch && this._resyncs < MAX_RESYNCS) {
      this._resyncs += 1;
      this.position = { epoch, offset: 0 };
      this.state = CursorState.RESYNCING;
      const report = !this._reported;
      this._reported = true;
      return { ...none, unrecovered: report, epochChanged: true, previous,
        resyncFrom: this.position, asked };
    }
    let missing = 0;
    if (previous === null || previous.epoch !== epoch) {
      this.position = { epoch, offset };
    } else if (offset > previous.offset) {
      if (asked !== null && recovered) missing = offset - previous.offset;
      this.position = { epoch, offset };
    }
    const unrecovered = asked !== null && !recovered && !this._reported;
    const epochChanged = asked !== null && asked.epoch !== epoch;
    this.state = CursorState.LIVE;
    this.asked = null;
    this._resyncs = 0;
    this._reported = false;
    return { live: true, unrecovered, epochChanged, previous, resyncFrom: null, missing, asked };
  }

  /**
   * The server subscribed this channel itself, at `{epoch, offset}`: a welcome's
   * `server_subs`. Returns null when it is LIVE from there, nothing missed (a first welcome,
   * or a reconnect at the position delivered); otherwise the `since` to restart from (the
   * caller sends `unsub`, then `sub`), as for a gap: RESYNCING drops the live `msg`s until
   * the `unsub` is acked, and the `sub` replays them in order.
   * @param {string} epoch @param {number} offset @returns {Position|null}
   */
  joined(epoch, offset) {
    const current = this.position;
    if (current !== null && (current.epoch !== epoch || current.offset !== offset)) {
      this.state = CursorState.RESYNCING;
      return current;
    }
    if (current === null) this.position = { epoch, offset };
    this.state = CursorState.LIVE;
    this.asked = null;
    return null;
  }

  /**
   * Restarts the subscription from the current position (`unsub` then `sub`), say after
   * `already_subscribed`; returns the `since` of the follow-up `sub`.
   */
  beginResync() {
    this.state = CursorState.RESYNCING;
    return this.position;
  }

  /**
   * Moves the position back to `position` (same epoch, lower offset), so that the next `sub`
   * replays from there. Returns true when the live subscription must be restarted (`unsub`
   * then `sub`) to get the replay; false when the next `sub` asks from there anyway (IDLE,
   * RESYNCING) or nothing is missing. Not allowed while SUBSCRIBING: wait for the ack.
   * @param {Position} position
   */
  rewind(position) {
    if (this.state === CursorState.SUBSCRIBING) {
      throw new Error('rewind() while a sub is in flight: wait for its ack');
    }
    const current = this.position;
    if (current !== null && current.epoch === position.epoch && current.offset <= position.offset) {
      return false;
    }
    this.position = { epoch: position.epoch, offset: position.offset };
    if (this.state === CursorState.LIVE) {
      this.state = CursorState.RESYNCING;
      return true;
    }
    return false;
  }

  /** The resync's `unsub` was acked: what arrives now answers the follow-up `sub`. */
  onUnsubscribed() {
    if (this.state === CursorState.RESYNCING) {
      this.state = CursorState.SUBSCRIBING;
      this.asked = this.position;
    }
  }
}
