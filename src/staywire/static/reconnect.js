// When to connect again: from the close code, the retry budget and a drain notice. The same
// decision as the Python client's ReconnectSchedule (staywire/client/reconnect.py); the
// shared vectors in tests/vectors/reconnect.json hold both to it.
//
// Sans-I/O: times are passed in (ms since the epoch) and the caller runs the timer.

import { jittered } from './backoff.js';
import { CloseCode, reconnectPolicy } from './codes.js';
import { ConnectionClosed, ReconnectFailed, Unauthorized } from './errors.js';

/** @typedef {{delay(attempt: number): number|null}} ReconnectPolicy ms before the 1-based attempt; null: give up */

export class ReconnectSchedule {
  /**
   * @param {ReconnectPolicy} policy
   * @param {{canRefresh: boolean, random?: () => number}} options
   *   `canRefresh`: a token provider can renew an expired token
   */
  constructor(policy, { canRefresh, random = Math.random }) {
    this.policy = policy;
    this.canRefresh = canRefresh;
    this._random = random;
    /** Reconnect attempts since the last welcomed connection. */
    this.attempts = 0;
    /** @type {number|null} */
    this._drainAt = null;
  }

  /** A connection was welcomed: the next outage starts again from the base delay. */
  opened() {
    this.attempts = 0;
  }

  /**
   * The server is going away: leave at about `reconnectInMs` (jittered), and come back right
   * then rather than after the backoff delay. Returns the delay in ms.
   * @param {number} reconnectInMs @param {number} now
   */
  drain(reconnectInMs, now) {
    const delay = jittered(Math.max(0, reconnectInMs), this._random);
    this._drainAt = now + delay;
    return delay;
  }

  /**
   * After a close with `code`: the delay in ms before the next attempt, or the error to give
   * up with (ConnectionClosed, Unauthorized or ReconnectFailed).
   * @param {number} code @param {string} reason @param {number} now
   * @returns {number|ConnectionClosed}
   */
  after(code, reason, now) {
    const policy = reconnectPolicy(code);
    if (policy === 'never') {
      return code === CloseCode.UNAUTHORIZED || code === CloseCode.FORBIDDEN
        ? new Unauthorized(code, reason) : new ConnectionClosed(code, reason);
    }
    // A fixed token cannot be renewed: reconnecting would only meet 4401 again.
    if (policy === 'new_token' && !this.canRefresh) return new ConnectionClosed(code, reason);
    const firstAfterExpiry = policy === 'new_token' && this.attempts === 0;
    const nominal = this.policy.delay(this.attempts + 1);
    if (nominal === null) return new ReconnectFailed(code, reason, this.attempts);
    this.attempts += 1;
    let delay = Math.max(0, nominal);
    if (firstAfterExpiry) delay = 0; // the token expired, nothing is wrong: come back at once
    if (this._drainAt !== null) {
      delay = Math.max(0, this._drainAt - now);
      this._drainAt = null;
    }
    return delay;
  }
}
