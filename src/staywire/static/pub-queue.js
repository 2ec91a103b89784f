// The hub's publishes (hub.js): each key once in flight, in order, paced under the rate
// limit the server announces (pacer.js), and sent again in their place when refused.
//
// Each tab keeps its own outbox and sends every unacknowledged publish again on each new
// connection (a new `connId` in `status`); the hub forwards them with their keys. Entries
// left by tabs that are gone (a reload, a crash), in IndexedDB or still in the localStorage
// write-ahead whose IndexedDB write the reload cut short (write-ahead.js: `store.all()`
// merges both), are adopted and sent by the hub, so each lands exactly once.

import { State } from './socket.js';
import { RequestError, serializeError } from './errors.js';
import { jittered } from './backoff.js';
import { Pacer, utf8Length } from './pacer.js';
import { frameLength, fromBase64 } from './binary.js';

/**
 * @typedef {{seq: number, key: string, channel: string, data: string, adopted: boolean,
 *            binary: boolean}} QueuedPub
 *   `data`: the JSON text of the data, or with `binary` the base64 of its bytes (outbox.js)
 */

export class PubQueue {
  /**
   * @param {{
   *   socket: import('./socket.js').Socket, emit: (msg: any) => void,
   *   request: import('./channel-mux.js').SendRequest, status: () => void,
   *   removals: import('./removals.js').Removals, maxInFlight: number, pacing?: boolean,
   *   now: () => number, monotonic?: () => number, setTimeout: (fn: () => void, ms: number) => any, clearTimeout: (id: any) => void,
   * }} hub
   *   the hub's socket, its way to the tabs and to send a request, its status to every tab
   *   (sent when an adopted publish lands), the removal of what lands from the outbox store,
   *   and the hub's clock
   */
  constructor(hub) {
    this._socket = hub.socket;
    this._emit = hub.emit;
    this._request = hub.request;
    this._status = hub.status;
    this._removals = hub.removals;
    this._now = hub.now;
    this._setTimeout = hub.setTimeout;
    this._clearTimeout = hub.clearTimeout;
    /** pub keys in flight on this connection -> the tabs waiting for their ack */
    /** @type {Map<string, Set<string>>} */
    this._keys = new Map();
    /** Publishes waiting to be written, oldest first. @type {QueuedPub[]} */
    this._queue = [];
    this._seq = 0;
    this._inFlight = 0;
    this._pausedUntil = 0;
    /** @type {any} */
    this._timer = null;
    /** At most this many publishes wait for their ack at once (a rate limit then rejects few). */
    this.maxInFlight = hub.maxInFlight;
    this._window = this.maxInFlight;
    this._batchRefused = false;
    this._singles = 0;
    /** Publications adopted from tabs that are gone, and acknowledged. */
    this.adopted = 0;
    this._pacing = hub.pacing !== false;
    /** @type {Pacer|null} */
    this._pacer = null;
    // The pacer's clock: monotonic, as the server's buckets (a wall clock may jump).
    this._mono = hub.monotonic ?? (globalThis.performance ? () => globalThis.performance.now() : this._now);
    /** How often a publish waited for the pacer. */
    this.paced = 0;
    /** Other requests waiting for the pacer, in order. @type {{frame: string|Uint8Array, send: () => void}[]} */
    this._waiting = [];
    /** @type {any} */
    this._waitTimer = null;
  }

  /**
   * Sends a request other than a publish when the pacer allows and nothing waits before it,
   * else queues it, in order. @param {string|Uint8Array} frame @param {() => void} send
   */
  sendPaced(frame, send) {
    if (this._waiting.length === 0 && this._turn(frameLength(frame)) === 0) {
      send();
      return;
    }
    this._waiting.push({ frame, send });
    this._releaseWaiting();
  }

  /** Seconds until a frame of `size` bytes may go (0: now, or no pacing). @param {number} size */
  _turn(size) {
    return this._pacer ? this._pacer.delay(this._mono() / 1000, size) : 0;
  }

  _releaseWaiting() {
    if (this._waitTimer !== null) return;
    while (this._open && this._waiting.length > 0) {
      const w = this._waiting[0];
      const turn = this._turn(frameLength(w.frame));
      if (turn > 0) {
        this._waitTimer = this._setTimeout(() => {
          this._waitTimer = null;
          this._releaseWaiting();
        }, turn * 1000);
        return;
      }
      this._waiting.shift();
      w.send();
    }
  }

  /** A new connection's `welcome`: pace under the limits it announces (if any). @param {any} rateLimit */
  pace(rateLimit) {
    this._pacer = this._pacing ? Pacer.from(rateLimit, this._mono() / 1000) : null;
  }

  /** The hub sent `frame` (any request): it pays into the pacer. @param {string|Uint8Array} frame */
  charge(frame) {
    this._pacer?.charge(this._mono() / 1000, frameLength(frame));
  }

  get _open() {
    return this._socket.state === State.OPEN;
  }

  /** A tab's `pub`. @param {string} tab @param {any} msg */
  publish(tab, msg) {
    const key = String(msg.key);
    if (!this._open) return; // the tab sends it again on the next connection
    const waiting = this._keys.get(key);
    if (waiting) {
      waiting.add(tab); // already queued or in flight on this connection
      return;
    }
    this._keys.set(key, new Set([tab]));
    this._enqueue(key, String(msg.channel), String(msg.data), false, msg.binary === true);
  }

  /**
   * Sends a publish that a tab that is gone left in the outbox, unless it is already queued
   * or in flight on this connection.
   * @param {import('./outbox.js').OutboxRecord} r
   */
  adopt(r) {
    if (this._keys.has(r.key)) return;
    this._keys.set(r.key, new Set());
    this._enqueue(r.key, r.channel, r.data, true, r.binary === true);
  }

  /**
   * @param {string} key @param {string} channel @param {string} data @param {boolean} adopted
   * @param {boolean} binary
   */
  _enqueue(key, channel, data, adopted, binary) {
    this._seq += 1;
    this._queue.push({ seq: this._seq, key, channel, data, adopted, binary });
    this._pump();
  }

  /**
   * Writes queued publishes, in order, in batches: the next batch goes when every publish
   * of the last one has its answer, so one that a rate limit refused is sent again before
   * any publish queued after it. After a refusal, a pause of about a second, then one
   * publish at a time until 32 in a row went through (so a server's rate limit sees about
   * one refusal a second, far from its close at 100 in 10 s), then doubling batches again.
   */
  _pump() {
    if (this._timer !== null || this._inFlight > 0) return;
    const wait = this._pausedUntil - this._now();
    if (wait > 0) {
      this._timer = this._setTimeout(() => {
        this._timer = null;
        this._pump();
      }, wait);
      return;
    }
    const cap = this._pacer ? Math.min(this._window, this._pacer.inFlight) : this._window;
    while (this._open && this._queue.length > 0 && this._inFlight < cap) {
      const p = this._queue[0];
      // The pub frame, about; the hub charges the pacer with the real one when it sends.
      const size = (p.binary ? Math.ceil(p.data.length * 3 / 4) : utf8Length(p.data))
        + p.channel.length + utf8Length(p.key) + 64;
      const turn = this._turn(size);
      if (turn > 0) {
        this.paced += 1;
        this._timer = this._setTimeout(() => {
          this._timer = null;
          this._pump();
        }, turn * 1000);
        return;
      }
      this._queue.shift();
      this._inFlight += 1;
      this._request('pub', { channel: p.channel, key: p.key }, { key: p.key, adopted: p.adopted, pub: p },
        null, p.binary ? fromBase64(p.data) : p.data);
    }
  }

  /** The answer to a `pub`. @param {QueuedPub} pub @param {any} ack @param {Error|null} err */
  onReply(pub, ack, err) {
    this._inFlight -= 1;
    const { key, adopted } = pub;
    const retry = err instanceof RequestError && (err.code === 'rate_limited' || err.code === 'unavailable');
    if (retry) {
      // Not published, and worth trying again: over the rate limit, or the broker is
      // unreachable. Back in the queue, in its place.
      const i = this._queue.findIndex((q) => q.seq > pub.seq);
      this._queue.splice(i < 0 ? this._queue.length : i, 0, pub);
      this._batchRefused = true;
    }
    if (this._inFlight === 0) {
      if (this._batchRefused) {
        this._window = 1;
        this._singles = 0;
        this._pausedUntil = this._now() + jittered(1000);
      } else if (this._window > 1 || (this._singles += 1) >= 32) {
        this._window = Math.min(this.maxInFlight, this._window * 2);
      }
      this._batchRefused = false;
      this._pump();
    }
    if (retry) return;
    const tabs = this._keys.get(key) ?? new Set();
    this._keys.delete(key);
    if (adopted) {
      if (!err) this.adopted += 1;
      this._removals.remove(key); // counted, reported and retried when it fails
      if (!err) this._status();
    }
    for (const tab of tabs) {
      this._emit(err
        ? { t: 'puback', to: tab, key, ok: false, error: serializeError(err) }
        : { t: 'puback', to: tab, key, ok: true,
          ack: { epoch: ack.epoch, offset: ack.offset, duplicate: Boolean(ack.duplicate) } });
    }
  }

  /** The connection is gone, and with it every publish in flight: the tabs send theirs again. */
  connectionLost() {
    this._keys.clear();
    this._queue = [];
    this._inFlight = 0;
    this._pausedUntil = 0;
    this._window = this.maxInFlight;
    this._batchRefused = false;
    this._singles = 0;
    this.stop();
  }

  /** Cancels the timers: a paused pump's, and the waiting requests' (which are dropped). */
  stop() {
    if (this._timer !== null) this._clearTimeout(this._timer);
    this._timer = null;
    if (this._waitTimer !== null) this._clearTimeout(this._waitTimer);
    this._waitTimer = null;
    this._waiting = [];
  }
}
