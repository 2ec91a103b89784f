// A tab's requests to the tab holding the connection (rpc, presence): each waits for the
// hub's `reply` with its id, for at most its timeout plus a second (the holder may vanish
// with the request), and every one still waiting ends together when the connection does.
import { RequestTimeout, reviveError } from './errors.js';

export class Asks {
  constructor() {
    /** @type {Map<number, {resolve: (v: any) => void, reject: (e: Error) => void, timer: any}>} */
    this._waiting = new Map();
    this._rid = 0;
  }

  /**
   * Sends `msg` with a new `rid` through `send`; resolves with the reply's value.
   * @param {(msg: Record<string, any>) => void} send
   * @param {Record<string, any>} msg @param {number} timeout @param {string} what
   * @returns {Promise<any>}
   */
  ask(send, msg, timeout, what) {
    this._rid += 1;
    const rid = this._rid;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._waiting.delete(rid);
        reject(new RequestTimeout(`no reply to ${what} within ${timeout} ms`));
      }, timeout + 1000);
      this._waiting.set(rid, { resolve, reject, timer });
      send({ ...msg, rid });
    });
  }

  /** The hub's `reply`. @param {{rid: number, ok: boolean, value?: any, error?: any}} msg */
  answered(msg) {
    const waiter = this._waiting.get(msg.rid);
    if (!waiter) return;
    this._waiting.delete(msg.rid);
    clearTimeout(waiter.timer);
    if (msg.ok) waiter.resolve(msg.value);
    else waiter.reject(reviveError(msg.error));
  }

  /** Every request still waiting fails with `err`. @param {Error} err */
  failAll(err) {
    for (const waiter of this._waiting.values()) {
      clearTimeout(waiter.timer);
      waiter.reject(err);
    }
    this._waiting.clear();
  }
}
