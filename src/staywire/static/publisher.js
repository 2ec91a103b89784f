// A tab's publishes (Client.publish): each is held in the tab's outbox (outbox.js) with its
// idempotency key, written to the connection once its send buffer is under the low-water
// mark, sent again on every new connection, and settled by the hub's `puback` for its key.
// The connection may be in another tab: this one waits for the `paused` the status of the
// tab holding it reports, or for its own socket when it holds the connection itself.
import { reviveError } from './errors.js';
import { newKey } from './outbox.js';

/**
 * @typedef {{epoch: string, offset: number, duplicate: boolean}} PublishAck
 * @typedef {{
 *   outbox: import('./outbox.js').Outbox,
 *   send: (msg: Record<string, any>) => void,
 *   connId: () => string|null,
 *   socket: () => {writable: () => Promise<void>}|null,
 *   paused: () => boolean,
 *   changed: () => void,
 *   warn: (message: string) => void,
 * }} PublisherOptions
 *   `send`: a message to the hub; `connId`: the open connection's id, or null; `socket`:
 *   this tab's socket when it holds the connection; `paused`: whether the open connection,
 *   held by another tab, is over its high-water mark; `changed`: the outbox's size changed.
 */

export class Publisher {
  /** @param {PublisherOptions} options */
  constructor(options) {
    this._o = options;
    this.outbox = options.outbox;
    /** @type {Map<string, {resolve: (v: PublishAck) => void, reject: (e: Error) => void}>} */
    this._waiting = new Map();
    /** @type {Array<() => void>} */
    this._writableWaiters = [];
  }

  /**
   * Holds the publish in the outbox at once (synchronously), then sends it when writable;
   * resolves with its ack. Client.publish checks the channel name and the client first.
   * @param {string} channel @param {any} data @param {string} [key]
   * @returns {Promise<PublishAck>}
   */
  publish(channel, data, key) {
    const outbox = this.outbox;
    const k = key ?? newKey();
    if (this._waiting.has(k)) return Promise.reject(new Error(`idempotency key already in the outbox: ${k}`));
    // Synchronous: when this returns, the entry is held and (with a write-ahead) durable.
    const added = outbox.add(channel, data, k);
    if (!outbox.has(k)) return /** @type {Promise<any>} */ (added); // refused: nothing kept
    /** @type {Promise<PublishAck>} */
    const done = new Promise((resolve, reject) => this._waiting.set(k, { resolve, reject }));
    added.then((entry) => {
      this._o.changed();
      return this.writable().then(() => {
        const connId = this._o.connId();
        if (connId && outbox.get(k) === entry && entry.sent !== connId) this._send(entry, connId);
      });
    }, (err) => { // the store failed: nothing kept
      const waiter = this._waiting.get(k);
      this._waiting.delete(k);
      waiter?.reject(err);
      this._o.changed();
    }).catch((err) => this._o.warn(`publish ${k}: ${err?.message ?? err}`));
    return done;
  }

  /**
   * Resolves when the connection's send buffer is under its low-water mark.
   * @returns {Promise<void>}
   */
  writable() {
    const socket = this._o.socket();
    if (socket) return socket.writable();
    if (!this._o.paused()) return Promise.resolve();
    return new Promise((resolve) => this._writableWaiters.push(() => resolve(undefined)));
  }

  /** The connection is no longer paused (or no longer open): every writable() resolves. */
  releaseWriters() {
    const waiters = this._writableWaiters;
    this._writableWaiters = [];
    waiters.forEach((w) => w());
  }

  /** A new connection is open: every publish not yet sent on it is sent. */
  flush() {
    const connId = this._o.connId();
    if (!connId) return;
    for (const entry of this.outbox.unsent(connId)) this._send(entry, connId);
  }

  /** The hub's `puback`. @param {any} msg */
  acked(msg) {
    const waiter = this._waiting.get(msg.key);
    if (!this.outbox.has(msg.key) && !waiter) return;
    this._waiting.delete(msg.key);
    if (msg.ok) {
      this.outbox.ack(msg.key);
      waiter?.resolve(msg.ack);
    } else {
      this.outbox.reject(msg.key);
      waiter?.reject(reviveError(msg.error));
    }
    this._o.changed();
  }

  /**
   * Every publish still waiting rejects with `err`; with `discard`, its entry leaves the
   * outbox too (a terminal failure: it will never be sent from here).
   * @param {Error} err @param {boolean} discard
   */
  failAll(err, discard) {
    for (const [key, waiter] of this._waiting) {
      if (discard) this.outbox.discard(key);
      waiter.reject(err);
    }
    this._waiting.clear();
  }

  /** @param {import('./outbox.js').OutboxEntry} entry @param {string} connId */
  _send(entry, connId) {
    this.outbox.markSent(entry.key, connId);
    this._o.send({ t: 'pub', key: entry.key, channel: entry.channel, data: entry.data, binary: entry.binary === true });
  }
}
