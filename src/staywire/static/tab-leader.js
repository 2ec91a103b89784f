// One connection for all tabs of an origin: leader election with the Web Locks API and a
// BroadcastChannel between the tabs.
//
// * Every tab holds a lock of its own (`staywire:tab:<id>`) for its whole life: the browser
//   releases it when the tab closes or crashes, so `liveTabs()` (navigator.locks.query) tells
//   which tabs are still there, and whose outbox entries are orphans.
// * Every tab asks for the leader lock (`staywire:leader:<url>`); the browser grants it to one
//   tab, and to the next one in the queue the moment that tab closes, crashes or resigns.
//   The leader runs the hub (hub.js) and holds the WebSocket; the others talk to it over
//   the BroadcastChannel.
// * Where navigator.locks or BroadcastChannel is missing (old browsers, insecure contexts:
//   navigator.locks exists only on https and localhost), `sharingSupported()` is false and
//   the client falls back to one connection per tab.

const PREFIX = 'staywire';

/** @param {{locks?: any}} [env] */
function lockManager(env = {}) {
  return env.locks ?? (typeof navigator !== 'undefined' ? navigator.locks : undefined);
}

/**
 * Whether this page can share a connection with its other tabs.
 * @param {{locks?: any, BroadcastChannel?: any}} [env] replacements (tests)
 */
export function sharingSupported(env = {}) {
  const locks = lockManager(env);
  return Boolean(locks) && typeof locks.request === 'function'
    && typeof (env.BroadcastChannel ?? globalThis.BroadcastChannel) === 'function';
}

/**
 * Whether this page can tell which tabs are alive (for orphaned outbox entries).
 * @param {{locks?: any}} [env]
 */
export function locksSupported(env = {}) {
  const locks = lockManager(env);
  return Boolean(locks) && typeof locks.request === 'function' && typeof locks.query === 'function';
}

/** A short random id for a tab. */
export function newTabId() {
  const c = globalThis.crypto;
  if (c?.getRandomValues) {
    return Array.from(c.getRandomValues(new Uint8Array(5)), (b) => b.toString(16).padStart(2, '0')).join('');
  }
  return Math.random().toString(16).slice(2, 12);
}

const TAB_LOCK = `${PREFIX}:tab:`;

export class TabGroup {
  /**
   * @param {string} key what the tabs share (the server's URL)
   * @param {string} tabId
   * @param {{locks?: any, BroadcastChannel?: any, share?: boolean}} [options]
   *   `share: false`: only the tab lock (liveness), no election and no channel
   */
  constructor(key, tabId, options = {}) {
    this.key = key;
    this.tabId = tabId;
    this._locks = lockManager(options);
    this._BC = options.BroadcastChannel ?? globalThis.BroadcastChannel;
    this.share = options.share ?? true;
    /** @type {any} */
    this._bus = null;
    /** @type {Array<(msg: any) => void>} */
    this._handlers = [];
    /** @type {(() => void)|null} */
    this._releaseTab = null;
    /** @type {(() => void)|null} */
    this._resign = null;
    this._abort = typeof AbortController === 'function' ? new AbortController() : null;
    this.leading = false;
    this._left = false;
  }

  get leaderLock() {
    return `${PREFIX}:leader:${this.key}`;
  }

  /** Takes this tab's own lock; resolves once it is held. */
  holdTabLock() {
    if (!this._locks) return Promise.resolve();
    return new Promise((granted) => {
      this._locks.request(`${TAB_LOCK}${this.tabId}`, () => new Promise((release) => {
        this._releaseTab = () => release(undefined);
        granted(undefined);
      })).catch(() => granted(undefined));
    });
  }

  /** Opens the channel between the tabs. */
  open() {
    if (!this.share || this._bus) return;
    this._bus = new this._BC(`${PREFIX}:bus:${this.key}`);
    this._bus.onmessage = (/** @type {MessageEvent} */ ev) => {
      for (const handler of this._handlers) handler(ev.data);
    };
  }

  /** @param {(msg: any) => void} handler */
  onMessage(handler) {
    this._handlers.push(handler);
  }

  /** Sends `msg` to every other tab of the group. @param {any} msg */
  post(msg) {
    if (this._bus && !this._left) this._bus.postMessage(msg);
  }

  /**
   * Queues for the leader lock. `lead` runs when it is granted, and the lock is held until
   * `resign()` (or until the tab goes away).
   * @param {() => void} lead
   */
  elect(lead) {
    if (!this._locks) return;
    const options = this._abort ? { signal: this._abort.signal } : {};
    this._locks.request(this.leaderLock, options, () => {
      if (this._left) return undefined;
      this.leading = true;
      return new Promise((release) => {
        this._resign = () => {
          this.leading = false;
          release(undefined);
        };
        lead();
      });
    }).catch(() => {}); // aborted: the tab left before its turn
  }

  /** Ids of the tabs that are alive (their tab lock is held), or null when unknown. */
  async liveTabs() {
    if (!this._locks?.query) return null;
    const state = await this._locks.query();
    const live = new Set();
    for (const lock of state.held ?? []) {
      if (typeof lock.name === 'string' && lock.name.startsWith(TAB_LOCK)) live.add(lock.name.slice(TAB_LOCK.length));
    }
    return live;
  }

  /** Gives up the leader lock (the next tab in the queue gets it). */
  resign() {
    const resign = this._resign;
    this._resign = null;
    resign?.();
  }

  /**
   * Leaves the group: resigns, stops queueing, closes the channel and releases the tab lock,
   * once `until` has settled when given, or after `ms` (so that this tab's entries are not
   * orphans, and not adopted, before it is done writing them).
   * @param {Promise<any>|null} [until] @param {number} [ms]
   */
  leave(until = null, ms = 1000) {
    if (this._left) return;
    this._left = true;
    this.resign();
    this._abort?.abort();
    this._bus?.close();
    this._bus = null;
    const release = this._releaseTab;
    this._releaseTab = null;
    if (!release) return;
    if (!until) {
      release();
      return;
    }
    const timer = setTimeout(release, ms);
    until.finally(() => clearTimeout(timer)).then(release, release);
  }
}
