// Pacing publishes under the server's per-connection rate limits, which `welcome.rate_limit`
// announces: a publish waits for its turn instead of being refused. A refused publish costs
// a round trip and a retry, and can land after later ones; a client that stays under the
// limit keeps its publishes in order. Every request the hub sends is charged (subscribes
// and RPCs never wait: they may take the buckets below zero); publishes wait until `delay`
// says their turn has come, and at most `inFlight` (half the message burst) await their
// ack, so a stalled link cannot pile up more than that for one burst at the server. The
// same rules as the Python client's `staywire/protocol/ratelimit.py`; time is passed in,
// in seconds, from a monotonic clock.

/** The share of each rate and of each burst the publishes take; the rest is left for the
 * client's other messages (subscribes, pings, RPCs) and for arrivals the network bunches. */
export const RATE_SHARE = 0.8;
export const BURST_SHARE = 0.5;

// Refills are floating point: waiting exactly delay() may leave a bucket an ulp short.
const EPSILON = 1e-9;

/** `rate` tokens per second, holding at most `burst`; starts full. */
export class TokenBucket {
  /** @param {number} rate @param {number} burst @param {number} now seconds */
  constructor(rate, burst, now) {
    if (!(rate > 0) || !(burst > 0)) throw new RangeError('rate and burst must be > 0');
    this.rate = rate;
    this.burst = burst;
    this.tokens = burst;
    this.stamp = now;
  }

  /** @param {number} now */
  _refill(now) {
    const elapsed = now - this.stamp;
    if (elapsed > 0) this.tokens = Math.min(this.burst, this.tokens + elapsed * this.rate);
    this.stamp = now;
  }

  /** Seconds until `cost` tokens are there (0: now); takes nothing. @param {number} now @param {number} [cost] */
  delay(now, cost = 1) {
    this._refill(now);
    const short = cost - this.tokens;
    return short > EPSILON ? short / this.rate : 0;
  }
}

/** @typedef {{messages: number, burst: number, bytes: number, bytes_burst: number}} RateLimit */

export class Pacer {
  /** @param {RateLimit} limit as `welcome.rate_limit` says @param {number} now seconds */
  constructor(limit, now) {
    this._msgs = new TokenBucket(limit.messages * RATE_SHARE, Math.max(1, limit.burst * BURST_SHARE), now);
    this._bytes = new TokenBucket(limit.bytes * RATE_SHARE, Math.max(1, limit.bytes_burst * BURST_SHARE), now);
    this.inFlight = Math.max(1, Math.floor(limit.burst * BURST_SHARE));
  }

  /** A pacer for `limit` when it is a well-formed announcement, else null (no pacing). @param {any} limit @param {number} now */
  static from(limit, now) {
    const ok = limit && ['messages', 'burst', 'bytes', 'bytes_burst'].every((k) => Number(limit[k]) > 0);
    return ok ? new Pacer(limit, now) : null;
  }

  /**
   * Seconds until a message of `size` bytes may go (0: now); takes nothing. A message
   * larger than the byte burst may go once the bucket is full.
   * @param {number} now seconds @param {number} size
   */
  delay(now, size) {
    return Math.max(this._msgs.delay(now), this._bytes.delay(now, Math.min(size, this._bytes.burst)));
  }

  /** A message of `size` bytes went out: pay for it, below zero if need be. @param {number} now @param {number} size */
  charge(now, size) {
    this._msgs.delay(now); // refill up to now
    this._bytes.delay(now);
    this._msgs.tokens -= 1;
    this._bytes.tokens -= size;
  }
}

/** Bytes of `text` in UTF-8 (what the server's byte bucket counts). @param {string} text */
export function utf8Length(text) {
  let n = 0;
  for (let i = 0; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c < 0xdc00 && i + 1 < text.length) { n += 4; i += 1; } // a pair
    else n += 3;
  }
  return n;
}
