// Removing acknowledged publishes from the outbox's store, with failures seen and retried.
//
// An acknowledged publish left in the store is found by the next page and sent again; past
// the server's dedupe window it would land twice. So a failed removal is never dropped: it
// counts in `failures`, is reported through `onError` (the client's 'warning'), and is tried
// again after a growing delay, a bounded number of times. The write-ahead (write-ahead.js)
// marks the entry acknowledged before it asks the backing store to delete it, so while the
// delete keeps failing a reload still skips the entry, and the next page retries the delete.

/** @typedef {{remove(key: string): Promise<void>}} RemovableStore */

export class Removals {
  /**
   * @param {RemovableStore|null} store
   * @param {{onError?: (err: any, key: string, attempt: number, final: boolean) => void,
   *          attempts?: number, delay?: number, maxDelay?: number,
   *          setTimeout?: (fn: () => void, ms: number) => any,
   *          clearTimeout?: (id: any) => void}} [options]
   *   `attempts`: tries per key, the first included; `delay`: before the second, doubling
   *   to `maxDelay`.
   */
  constructor(store, options = {}) {
    this.store = store;
    this._onError = options.onError ?? (() => {});
    this.attempts = options.attempts ?? 6;
    this.delay = options.delay ?? 1000;
    this.maxDelay = options.maxDelay ?? 30000;
    this._setTimeout = options.setTimeout ?? ((fn, ms) => setTimeout(fn, ms));
    this._clearTimeout = options.clearTimeout ?? ((id) => clearTimeout(id));
    /** Failed removals so far (every attempt that failed counts). */
    this.failures = 0;
    /** Keys whose removal waits for its next try. @type {Map<string, {timer: any, resolve: (ok: boolean) => void}>} */
    this._retrying = new Map();
  }

  /** Whether the removal of `key` failed and waits for its next try. @param {string} key */
  retrying(key) {
    return this._retrying.has(key);
  }

  /** Keys whose removal failed and is to be tried again. */
  get pending() {
    return this._retrying.size;
  }

  /**
   * Removes `key` from the store; resolves true once it is gone, false when every attempt
   * failed (or `close()` stopped it). Never rejects.
   * @param {string} key @returns {Promise<boolean>}
   */
  remove(key) {
    if (!this.store) return Promise.resolve(true);
    const previous = this._retrying.get(key);
    if (previous !== undefined) {
      this._clearTimeout(previous.timer);
      this._retrying.delete(key);
      previous.resolve(false);
    }
    return this._try(key, 1);
  }

  /** @param {string} key @param {number} attempt @returns {Promise<boolean>} */
  async _try(key, attempt) {
    const store = /** @type {RemovableStore} */ (this.store);
    try {
      await store.remove(key);
      return true;
    } catch (err) {
      this.failures += 1;
      const final = attempt >= this.attempts;
      try {
        this._onError(err, key, attempt, final);
      } catch {
        // a listener's error is not the store's
      }
      if (final) return false;
      const wait = Math.min(this.maxDelay, this.delay * 2 ** (attempt - 1));
      return new Promise((resolve) => {
        const timer = this._setTimeout(() => {
          this._retrying.delete(key);
          this._try(key, attempt + 1).then(resolve);
        }, wait);
        this._retrying.set(key, { timer, resolve });
      });
    }
  }

  /** Stops the retries (a closed client); the write-ahead's marks keep a reload safe. */
  close() {
    const retrying = [...this._retrying.values()];
    this._retrying.clear();
    for (const { timer, resolve } of retrying) {
      this._clearTimeout(timer);
      resolve(false);
    }
  }
}

/** One line for a failed removal: what failed and what happens next. */
export function removalWarning(/** @type {any} */ err, /** @type {string} */ key,
  /** @type {number} */ attempt, /** @type {boolean} */ final) {
  const why = err?.message ?? String(err);
  return final
    ? `outbox: removing acknowledged publish ${key} failed ${attempt} times (${why}); `
      + 'it stays marked acknowledged and the next page retries'
    : `outbox: removing acknowledged publish ${key} failed (${why}); retrying`;
}
