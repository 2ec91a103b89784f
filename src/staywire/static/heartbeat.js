// Application-level heartbeat: browsers expose no WebSocket ping frames.
//
// The rule is the server's (`ServerHeartbeat` in staywire/protocol/heartbeat.py): a `ping`
// every `interval` whether or not the server talks; after a ping, *anything* arriving within
// `timeout` proves the link alive; nothing means the link is dead and the transport is
// dropped without waiting for TCP. (The Python client uses a silence deadline instead,
// `ClientHeartbeat` in staywire/client/heartbeat.py; a per-ping verdict is what lets this
// one tell a late timer from a silent link, below.)
//
// Background tabs: browsers throttle timers of hidden pages (aligned to 1 s, or to 1 min
// after a few minutes) and freeze them entirely on sleep. Network events are still
// delivered, but a frozen page processes nothing, so when it wakes up its timer fires long
// after it was due and "nothing arrived since the ping" proves nothing: the page could not
// have heard the answer. So every deadline measures wall time: when the timer fired more
// than `lateSlack` ms after it was due, the link gets a fresh chance (a new ping and a new
// `timeout`) instead of a dead verdict, at most `maxLateChances` times in a row; anything
// that arrives resets that count.

export class Heartbeat {
  /**
   * @param {{
   *   interval?: number, timeout?: number, lateSlack?: number, maxLateChances?: number,
   *   now?: () => number,
   *   setTimeout?: (fn: () => void, ms: number) => any, clearTimeout?: (id: any) => void,
   *   ping: (t: number) => void,
   *   dead: (info: {silentMs: number, lateMs: number}) => void,
   *   rtt?: (ms: number) => void,
   *   late?: (info: {lateMs: number, chance: number}) => void,
   * }} options times in milliseconds
   */
  constructor(options) {
    this.interval = options.interval ?? 30000;
    this.timeout = options.timeout ?? 10000;
    this.lateSlack = options.lateSlack ?? 1000;
    this.maxLateChances = options.maxLateChances ?? 2;
    this._now = options.now ?? (() => Date.now());
    this._setTimeout = options.setTimeout ?? ((fn, ms) => setTimeout(fn, ms));
    this._clearTimeout = options.clearTimeout ?? ((id) => clearTimeout(id));
    this._onPing = options.ping;
    this._onDead = options.dead;
    this._onRtt = options.rtt;
    this._onLate = options.late;
    this._timer = null;
    this._due = 0;
    this.lastSeen = 0;
    this.pingSentAt = 0;
    this.running = false;
    /** The last round-trip time measured from a `pong`, in ms, or null. @type {number|null} */
    this.rtt = null;
    /** How many times a late timer gave the link a fresh chance (for the panel and tests). */
    this.lateFires = 0;
    this._chances = 0;
  }

  /** Starts the schedule at the connection's start. */
  start() {
    const now = this._now();
    this.running = true;
    this.lastSeen = now;
    this.pingSentAt = now;
    this._chances = 0;
    this._arm();
  }

  stop() {
    this.running = false;
    if (this._timer !== null) this._clearTimeout(this._timer);
    this._timer = null;
  }

  /** Inbound traffic of any kind arrived: the peer is alive. */
  seen() {
    this.lastSeen = this._now();
    this._chances = 0;
  }

  /**
   * A `pong` arrived: the peer is alive, and `t` (our ping's timestamp) gives the RTT.
   * @param {unknown} t
   */
  pong(t) {
    this.seen();
    if (typeof t === 'number' && Number.isFinite(t)) {
      const rtt = Math.max(0, this.lastSeen - t);
      this.rtt = rtt;
      this._onRtt?.(rtt);
    }
  }

  /** Sends a ping now (say, right after the welcome, to measure the RTT at once). */
  pingNow() {
    if (!this.running) return;
    this._ping(this._now());
    this._arm();
  }

  /** A ping is out and nothing has arrived since it was sent. */
  get awaiting() {
    return this.lastSeen < this.pingSentAt;
  }

  /** @param {number} now */
  _ping(now) {
    this.pingSentAt = now;
    // lastSeen < pingSentAt must hold right after a ping even when the clock did not move.
    if (this.lastSeen >= now) this.lastSeen = now - 1e-3;
    this._onPing(now);
  }

  _arm() {
    if (!this.running) return;
    if (this._timer !== null) this._clearTimeout(this._timer);
    this._due = this.awaiting ? this.pingSentAt + this.timeout : this.pingSentAt + this.interval;
    this._timer = this._setTimeout(() => this._tick(), Math.max(0, this._due - this._now()));
  }

  _tick() {
    this._timer = null;
    if (!this.running) return;
    const now = this._now();
    const lateMs = now - this._due;
    if (this.awaiting) {
      if (now - this.pingSentAt >= this.timeout) {
        if (lateMs > this.lateSlack && this._chances < this.maxLateChances) {
          // The timer itself was late: this page may not have been running to hear the answer.
          this._chances += 1;
          this.lateFires += 1;
          this._onLate?.({ lateMs, chance: this._chances });
          this._ping(now);
          this._arm();
          return;
        }
        this.stop();
        this._onDead({ silentMs: now - this.lastSeen, lateMs });
        return;
      }
    } else if (now - this.pingSentAt >= this.interval) {
      this._ping(now);
    }
    this._arm();
  }
}
