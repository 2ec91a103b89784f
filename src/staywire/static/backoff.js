// Reconnect delays: exponential backoff with jitter and a bounded retry budget, and the timer
// that runs the next attempt (Phoenix's `Timer`); reconnect.js decides which delay applies.
//
// The same policy as the Python client (staywire/protocol/backoff.py): the delay before the
// n-th attempt (1-based) is min(cap, base * factor^(n-1)), then multiplied by 0.5 + random(),
// so 1 s, 2 s, 4 s ... up to 30 s, each spread over [0.5, 1.5) times that. The cap applies
// before the jitter so clients at the cap stay spread out. After `maxRetries` failed attempts
// in a row the client gives up and says so (ReconnectFailed); `maxRetries: Infinity` retries
// forever (an explicit choice).

const MAX_EXPONENT = 64;

/**
 * `ms` multiplied by `0.5 + random()`: uniform over [0.5, 1.5) times it.
 * @param {number} ms
 * @param {() => number} [random]
 */
export function jittered(ms, random = Math.random) {
  return ms * (0.5 + random());
}

export class Backoff {
  /**
   * @param {{base?: number, factor?: number, cap?: number, maxRetries?: number,
   *          jitter?: boolean, random?: () => number}} [options] times in milliseconds
   */
  constructor({ base = 1000, factor = 2, cap = 30000, maxRetries = 10, jitter = true,
    random = Math.random } = {}) {
    if (base < 0 || cap < 0) throw new RangeError('backoff base and cap must be >= 0');
    if (factor < 1) throw new RangeError('backoff factor must be >= 1');
    if (!(maxRetries >= 0)) throw new RangeError('maxRetries must be >= 0 or Infinity');
    this.base = base;
    this.factor = factor;
    this.cap = cap;
    this.maxRetries = maxRetries;
    this.jitter = jitter;
    this.random = random;
  }

  /** The delay before jitter for the 1-based `attempt`. @param {number} attempt */
  nominal(attempt) {
    if (attempt < 1) throw new RangeError('attempts are numbered from 1');
    const exponent = Math.min(attempt - 1, MAX_EXPONENT);
    return Math.min(this.cap, this.base * this.factor ** exponent);
  }

  /**
   * The delay in ms before the 1-based `attempt`, or `null` when the budget is spent.
   * @param {number} attempt
   * @returns {number|null}
   */
  delay(attempt) {
    if (attempt > this.maxRetries) return null;
    const nominal = this.nominal(attempt);
    return this.jitter ? jittered(nominal, this.random) : nominal;
  }
}

/**
 * Runs `callback` once after a delay, and says when (Phoenix's `Timer`). How long to wait is
 * reconnect.js's decision; this only keeps the one pending attempt.
 */
export class RetryTimer {
  /**
   * @param {() => void} callback
   * @param {{setTimeout?: (fn: () => void, ms: number) => any, clearTimeout?: (id: any) => void,
   *          now?: () => number}} [clock]
   */
  constructor(callback, clock = {}) {
    this.callback = callback;
    this._setTimeout = clock.setTimeout ?? ((fn, ms) => setTimeout(fn, ms));
    this._clearTimeout = clock.clearTimeout ?? ((id) => clearTimeout(id));
    this._now = clock.now ?? (() => Date.now());
    /** @type {any} */
    this._timer = null;
    /** When the scheduled attempt runs (ms since the epoch), or null. @type {number|null} */
    this.at = null;
  }

  /** Runs the callback in `delay` ms, replacing a pending one; returns when. @param {number} delay */
  schedule(delay) {
    this.cancel();
    this.at = this._now() + Math.max(0, delay);
    this._timer = this._setTimeout(() => {
      this._timer = null;
      this.at = null;
      this.callback();
    }, Math.max(0, delay));
    return this.at;
  }

  get pending() {
    return this._timer !== null;
  }

  cancel() {
    if (this._timer !== null) this._clearTimeout(this._timer);
    this._timer = null;
    this.at = null;
  }
}
