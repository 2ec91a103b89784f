// A request to the server with a timeout (Phoenix's `Push`): sent with an `id`, settled by
// the `ack`/`result`/`error` that echoes the id, or by its timeout.

import { RequestError, RequestTimeout } from './errors.js';
import { encodeFrame } from './binary.js';

export class Push {
  /**
   * @param {string} type the request's `type` (sub, unsub, pub, rpc)
   * @param {Record<string, any>} payload the fields besides `type` and `id`
   * @param {{timeout?: number, setTimeout?: (fn: () => void, ms: number) => any,
   *          clearTimeout?: (id: any) => void, onTimeout?: (push: Push) => void,
   *          raw?: string|Uint8Array}} [options]
   *   `raw`: a pre-encoded JSON value for `data` (an outbox entry keeps its exact bytes), or
   *   the bytes of `data`: the request is then a binary frame (binary.js)
   */
  constructor(type, payload, options = {}) {
    this.type = type;
    this.payload = payload;
    this.timeout = options.timeout ?? 10000;
    this.raw = options.raw;
    this._setTimeout = options.setTimeout ?? ((fn, ms) => setTimeout(fn, ms));
    this._clearTimeout = options.clearTimeout ?? ((id) => clearTimeout(id));
    this._onTimeout = options.onTimeout;
    /** @type {number|null} */
    this.id = null;
    this._timer = null;
    this.settled = false;
    /** @type {Promise<any>} */
    this.promise = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    this.promise.catch(() => {}); // the owner may not await every push
  }

  /** The frame for request `id`. @param {number} id @returns {string|Uint8Array} */
  encode(id) {
    this.id = id;
    if (this.raw instanceof Uint8Array) return encodeFrame({ type: this.type, id, ...this.payload }, this.raw);
    const head = JSON.stringify({ type: this.type, id, ...this.payload });
    if (this.raw === undefined) return head;
    // Splice the stored bytes of `data` in, so a replay sends exactly what was queued.
    return `${head.slice(0, -1)},"data":${this.raw}}`;
  }

  /**
   * Writes the request with `send` and starts its timeout.
   * @param {number} id @param {(frame: string|Uint8Array) => void} send
   */
  send(id, send) {
    send(this.encode(id));
    this._startTimeout();
  }

  _startTimeout() {
    this.cancelTimeout();
    if (!Number.isFinite(this.timeout)) return;
    this._timer = this._setTimeout(() => {
      this._timer = null;
      if (this.settled) return;
      if (this._onTimeout) this._onTimeout(this);
      else this.fail(new RequestTimeout(`no reply to ${this.type} within ${this.timeout} ms`));
    }, this.timeout);
  }

  cancelTimeout() {
    if (this._timer !== null) this._clearTimeout(this._timer);
    this._timer = null;
  }

  /** Settles with the server's reply (`ack`, `result` or `error`). @param {any} msg */
  reply(msg) {
    if (msg?.type === 'error') this.fail(new RequestError(msg.code, msg.reason ?? ''));
    else this._settle(true, msg);
  }

  /** @param {Error} err */
  fail(err) {
    this._settle(false, err);
  }

  /** @param {boolean} ok @param {any} value */
  _settle(ok, value) {
    if (this.settled) return;
    this.settled = true;
    this.cancelTimeout();
    if (ok) this._resolve(value);
    else this._reject(value);
  }
}
