// One tab's subscription to a channel: its delivered position, dedupe and ordering.
//
// The connection (hub.js) may be held by another tab and replays publications for whichever
// tab needs them, so every tab keeps its own position: the (epoch, offset) of the last
// publication it delivered. That position is its dedupe filter (an offset at or below it was
// delivered already: drop it) and what it asks for when it (re)joins, so a replay never
// shows a message twice and a leader change never loses one.
//
// While JOINING (first subscribe, or after the tab holding the connection changed) every
// `msg` is held; the hub's `joined` answer names the position to deliver after, and the
// held messages past it are delivered once, in offset order.
//
// A publication with `chunk` is a piece of a transfer: it goes to the subscription's
// TransferReceiver (transfers.js), which emits 'transfer', instead of 'message'.

import { Emitter } from './emitter.js';
import { TransferReceiver } from './transfers.js';
import { CHANNEL_PATTERN } from './codes.js';

/** @typedef {{epoch: string, offset: number}} Position */
/** @typedef {{channel: string, epoch: string, offset: number, data: any, chunk?: any, binary?: boolean}} Publication */
/** @typedef {{client: string, user: string, info?: any}} Member */
/** @typedef {{clients: number, users: number, members: Member[], stats_only?: boolean}} PresenceInfo */

/**
 * A RangeError when `channel` is not a name the server accepts (codes.js has its pattern),
 * else null: refused before anything is queued or sent. @param {any} channel
 */
export function invalidChannel(channel) {
  return typeof channel === 'string' && CHANNEL_PATTERN.test(channel)
    ? null : new RangeError(`invalid channel name: ${JSON.stringify(channel)}`);
}

export const SubscriptionState = Object.freeze({
  JOINING: 'joining',
  LIVE: 'live',
  CLOSED: 'closed',
});

export class Subscription extends Emitter {
  /**
   * @param {string} channel
   * @param {{since?: Position|null, unsubscribe?: (sub: Subscription) => Promise<void>,
   *   presence?: (channel: string, stats: boolean) => Promise<any>,
   *   transferTimeout?: () => number}} [options]
   *   `transferTimeout`: the server's `transfer_timeout` in ms (welcome.binary)
   */
  constructor(channel, options = {}) {
    super();
    this.channel = channel;
    /** The position of the last publication delivered. @type {Position|null} */
    this.position = options.since ? { epoch: options.since.epoch, offset: options.since.offset } : null;
    /** @type {'joining'|'live'|'closed'} */
    this.state = SubscriptionState.JOINING;
    /** The id of the current join (answers to older joins are ignored). */
    this._jid = 0;
    /** @type {Publication[]} */
    this._held = [];
    /** Publications delivered (for the panel and tests). */
    this.delivered = 0;
    this._unsubscribe = options.unsubscribe;
    this._askPresence = options.presence;
    /** @type {Promise<Subscription>} resolves at the first `joined` */
    this.ready = new Promise((resolve, reject) => {
      this._resolveReady = resolve;
      this._rejectReady = reject;
    });
    this.ready.catch(() => {});
    this._everJoined = false;
    /** Subscribed by the server (the connect proxy), not by subscribe(): Client.serverSubscriptions. */
    this.serverSide = false;
    this._transferTimeout = options.transferTimeout ?? (() => 30000);
    /** @type {TransferReceiver|null} made at the first chunk */
    this._receiver = null;
  }

  /** The transfers under way on this channel, by id. @returns {Map<string, import('./transfers.js').Transfer>} */
  get transfers() {
    return new Map([...(this._receiver?.active ?? new Map())].map(([id, e]) => [id, e.transfer]));
  }

  /** The `since` to (re)join with; starts holding messages until the answer. */
  _beginJoin() {
    if (this.state === SubscriptionState.CLOSED) return null;
    this.state = SubscriptionState.JOINING;
    this._held = [];
    return this.position ? { ...this.position } : null;
  }

  /**
   * One publication for this channel, from the connection.
   * @param {Publication} msg
   * @returns {boolean} whether it was delivered now
   */
  _message(msg) {
    if (this.state === SubscriptionState.CLOSED) return false;
    if (this.state === SubscriptionState.JOINING) {
      this._held.push(msg);
      return false;
    }
    return this._deliver(msg);
  }

  /**
   * The hub's answer to our join.
   * @param {{from: Position|null, recovered: boolean, unrecovered: boolean,
   *          epochChanged?: boolean}} answer
   *   `from`: deliver what comes after this position; `unrecovered`: tell the application
   *   that publications may be missing (the `since` could not be recovered).
   */
  _joined(answer) {
    if (this.state === SubscriptionState.CLOSED) return;
    const previous = this.position;
    let from = answer.from;
    if (from && previous && previous.epoch === from.epoch && previous.offset > from.offset) {
      from = previous; // we are ahead of what the hub offers: keep our own filter
    }
    if (from) this.position = { epoch: from.epoch, offset: from.offset };
    this.state = SubscriptionState.LIVE;
    const held = this._held;
    this._held = [];
    const epoch = this.position?.epoch;
    held
      .filter((m) => epoch === undefined || m.epoch === epoch)
      .sort((a, b) => a.offset - b.offset)
      .forEach((m) => this._deliver(m));
    if (answer.unrecovered) {
      this._receiver?.lost('publications may be missing after the (re)subscribe');
      this.emit('recovery', {
        channel: this.channel,
        recovered: false,
        epochChanged: Boolean(answer.epochChanged),
        previous,
        position: this.position,
      });
    }
    const first = !this._everJoined;
    this._everJoined = true;
    this.emit('joined', { channel: this.channel, recovered: answer.recovered, first });
    if (first) this._resolveReady(this);
  }

  /**
   * The live subscription could not be recovered after a reconnect.
   * @param {{epochChanged?: boolean, previous?: Position|null}} info
   */
  _recovery(info) {
    if (this.state !== SubscriptionState.LIVE) return;
    this._receiver?.lost('publications may be missing after a reconnect');
    this.emit('recovery', {
      channel: this.channel,
      recovered: false,
      epochChanged: Boolean(info.epochChanged),
      previous: this.position,
      position: this.position,
    });
  }

  /** The subscribe failed (forbidden, ...) or the client gave up. @param {Error} err */
  _fail(err) {
    if (this.state === SubscriptionState.CLOSED) return;
    this.state = SubscriptionState.CLOSED;
    this._held = [];
    this._receiver?.close(`the subscription failed: ${err.message}`);
    this.emit('error', err);
    this._rejectReady(err);
  }

  /** The server ended the subscription (the server API's unsubscribe): no error. */
  _end() {
    if (this.state === SubscriptionState.CLOSED) return;
    this.state = SubscriptionState.CLOSED;
    this._held = [];
    this._rejectReady(new Error('unsubscribed by the server'));
    this._receiver?.close('unsubscribed by the server');
    this.emit('end', { channel: this.channel });
  }

  /** @param {Publication} msg */
  _deliver(msg) {
    const p = this.position;
    if (p && p.epoch === msg.epoch && msg.offset <= p.offset) return false; // delivered already
    this.position = { epoch: msg.epoch, offset: msg.offset };
    this.delivered += 1;
    if (msg.chunk) {
      // Nobody listens for transfers here: a stream that nobody reads would hold them whole.
      if (!this._listeners.get('transfer')?.size && !this._receiver?.active.size) return true;
      this._receiver ??= new TransferReceiver({ channel: this.channel, timeout: this._transferTimeout,
        emit: (t) => this.emit('transfer', t) });
      this._receiver.chunk(/** @type {any} */ (msg));
      return true;
    }
    this.emit('message', msg.data, msg);
    return true;
  }

  /**
   * Who is subscribed (a channel with `presence`): `{clients, users, members}`, with
   * `stats_only: true` and no members over the channel's `presence_max_members`.
   * Rejects with a RequestError `presence_disabled` on another channel.
   * @returns {Promise<PresenceInfo>}
   */
  presence() {
    if (!this._askPresence) return Promise.reject(new Error('presence is not available here'));
    return this._askPresence(this.channel, false);
  }

  /** `{clients, users}` subscribed, on every node. @returns {Promise<{clients: number, users: number}>} */
  presenceStats() {
    if (!this._askPresence) return Promise.reject(new Error('presence is not available here'));
    return this._askPresence(this.channel, true);
  }

  /**
   * A `join` or `leave` from the server (channels with `join_leave`): emitted as such.
   * @param {string} kind @param {Member} member
   */
  _presenceEvent(kind, member) {
    if (this.state === SubscriptionState.CLOSED || (kind !== 'join' && kind !== 'leave')) return;
    if (!member || typeof member.client !== 'string') return;
    this.emit(kind, { channel: this.channel, ...member });
  }

  /** Stops delivery and leaves the channel (the connection unsubscribes when no tab is left). */
  async unsubscribe() {
    if (this.state === SubscriptionState.CLOSED) return;
    this.state = SubscriptionState.CLOSED;
    this._held = [];
    this._rejectReady(new Error('unsubscribed'));
    this._receiver?.close('unsubscribed');
    await this._unsubscribe?.(this);
  }
}
