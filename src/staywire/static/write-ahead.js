// The outbox's write-ahead: a publish is durable the moment publish() accepts it.
//
// IndexedDB is asynchronous: the transaction that keeps a publish commits some milliseconds
// after publish() returned, and a reload (a navigation, closing the tab, a renderer crash)
// in between aborts it; the publish was then neither sent nor kept. localStorage is
// synchronous: once setItem() returns, any page of the origin loaded afterwards reads the
// value. So each record is written to localStorage first, synchronously, inside publish();
// copied to the backing store (IndexedDB) in one transaction per batch (a microtask later,
// or at once on pagehide and when the tab is hidden); and removed from localStorage once
// that transaction has committed, or once the publish is acknowledged, whichever is first:
//
//   write(r) ──> localStorage ──flush()──> IndexedDB, committed ──> gone from localStorage
//                     └────────── remove(key): acked or rejected ──> gone from both
//
// At every moment a record that is not acknowledged is in localStorage, in IndexedDB or in
// both. `all()` reads localStorage first, then IndexedDB, and merges them by key (same key,
// same entry: listed once), so the tab that adopts the entries of a tab that is gone (see
// hub.js) also finds those whose IndexedDB write a reload cut short; it sends them with
// their keys and `remove(key)` deletes both copies.
//
// An acknowledged record must never be sent again, and the IndexedDB delete can fail (a full
// or broken disk) or be cut short by a reload. So `remove(key)` first marks the key
// acknowledged in localStorage (`<name>:acked:<key>`, synchronously), then deletes the
// record, and clears the mark only once the delete has committed. `all()` skips every marked
// key, and `acknowledged()` lists the marked keys still in IndexedDB, whose delete the hub's
// sweep tries again (removals.js).
//
// Items are `<name>:wal:<key>` and `<name>:acked:<key>` (localStorage is per origin; the record names its owner tab
// and its server, as in IndexedDB). The write-ahead is bounded per tab (`maxMessages`,
// `maxBytes` of UTF-16 code units, key and value): over it, or over the origin's
// localStorage quota, write() throws QueueFull and keeps nothing. Where localStorage is
// missing or refuses every write (storage disabled, some private modes), write() returns
// false and the outbox falls back to waiting for IndexedDB.

import { QueueFull } from './errors.js';
import { compareRecords } from './outbox.js';

/** @typedef {import('./outbox.js').OutboxRecord} OutboxRecord */
/**
 * @typedef {{getItem(k: string): string|null, setItem(k: string, v: string): void,
 *            removeItem(k: string): void, key(i: number): string|null, readonly length: number}} SyncStorage
 * @typedef {{add(r: OutboxRecord): Promise<void>, addMany?(rs: OutboxRecord[]): Promise<void>,
 *            remove(key: string): Promise<void>, all(): Promise<OutboxRecord[]>, ready?(): Promise<void>}} BackingStore
 */

/** The page's localStorage, or null where it is missing or refuses writes. */
export function defaultStorage() {
  try {
    const s = /** @type {any} */ (globalThis).localStorage;
    if (!s) return null;
    const probe = 'staywire:probe';
    s.setItem(probe, '1');
    s.removeItem(probe);
    return /** @type {SyncStorage} */ (s);
  } catch {
    return null; // SecurityError (sandboxed frame, storage blocked), QuotaExceededError (quota 0)
  }
}

/** @param {any} r @returns {r is OutboxRecord} */
function validRecord(r) {
  return r !== null && typeof r === 'object' && typeof r.key === 'string' && typeof r.channel === 'string'
    && typeof r.data === 'string' && typeof r.owner === 'string';
}

export class WriteAheadStore {
  /**
   * @param {BackingStore} backing where records end up (an IdbStore)
   * @param {{storage?: SyncStorage|null, name?: string, maxMessages?: number, maxBytes?: number,
   *          retryDelay?: number, schedule?: (fn: () => void) => void,
   *          setTimeout?: (fn: () => void, ms: number) => any, clearTimeout?: (id: any) => void}} [options]
   *   `storage`: localStorage (default) or a replacement; null: no write-ahead.
   *   `schedule`: when a write is copied to the backing store (default: a microtask).
   */
  constructor(backing, options = {}) {
    this.backing = backing;
    this.storage = options.storage === undefined ? defaultStorage() : options.storage;
    const name = options.name ?? /** @type {any} */ (backing).name ?? 'staywire';
    this.prefix = `${name}:wal:`;
    /** Keys acknowledged whose delete from the backing store has not committed yet. */
    this.ackPrefix = `${name}:acked:`;
    this.maxMessages = options.maxMessages ?? 10000;
    this.maxBytes = options.maxBytes ?? 1 << 20;
    this.retryDelay = options.retryDelay ?? 1000;
    this._schedule = options.schedule ?? ((fn) => queueMicrotask(fn));
    this._setTimeout = options.setTimeout ?? ((fn, ms) => setTimeout(fn, ms));
    this._clearTimeout = options.clearTimeout ?? ((id) => clearTimeout(id));
    /** This tab's items in localStorage: key -> their size (for the bound). @type {Map<string, number>} */
    this._own = new Map();
    this._bytes = 0;
    /** Written, not yet handed to the backing store. @type {Map<string, OutboxRecord>} */
    this._pending = new Map();
    /** Taken by the flush under way, not yet in a transaction. @type {Map<string, OutboxRecord>|null} */
    this._taken = null;
    /** @type {Promise<void>|null} */
    this._flushing = null;
    this._scheduled = false;
    /** @type {any} */
    this._retryTimer = null;
    this._failures = 0;
  }

  /** Records of this tab in localStorage (not yet committed to the backing store, nor acked). */
  get size() {
    return this._own.size;
  }

  /** Their size, UTF-16 code units of key and value (the bound applies to this). */
  get bytes() {
    return this._bytes;
  }

  /**
   * Makes `record` durable before returning (true), or returns false when this page has no
   * usable localStorage (the caller then waits for `add`). Throws QueueFull, keeping
   * nothing, over the bound or the origin's quota. The record then goes to the backing store
   * by itself.
   * @param {OutboxRecord} record @returns {boolean}
   */
  write(record) {
    const storage = this.storage;
    if (!storage) return false;
    const item = this.prefix + record.key;
    const text = JSON.stringify(record);
    const size = item.length + text.length;
    const previous = this._own.get(record.key) ?? 0;
    if (this._own.size + (previous ? 0 : 1) > this.maxMessages) {
      throw new QueueFull(`${this._own.size} publishes wait for their IndexedDB write (max ${this.maxMessages})`);
    }
    if (this._bytes - previous + size > this.maxBytes) {
      throw new QueueFull(`publishes waiting for their IndexedDB write hold ${this._bytes} bytes; `
        + `${size} more exceeds max ${this.maxBytes}`);
    }
    try {
      storage.setItem(item, text);
    } catch (err) {
      const full = new QueueFull(`localStorage refused the write-ahead: ${/** @type {any} */ (err)?.name ?? err}`);
      /** @type {any} */ (full).cause = err;
      throw full;
    }
    this._own.set(record.key, size);
    this._bytes += size - previous;
    this._pending.set(record.key, { ...record });
    this._scheduleFlush();
    return true;
  }

  /**
   * Resolves once `record` is durable: written ahead (at once), or without localStorage, once
   * the backing store has committed it. @param {OutboxRecord} record
   */
  async add(record) {
    if (!this.write(record)) await this.backing.add(record);
  }

  /**
   * Deletes `key` everywhere: localStorage (whichever tab wrote it), what waits to be
   * copied, and the backing store. @param {string} key
   */
  async remove(key) {
    // Synchronously, before anything can fail: from now on no page sends it again.
    const marked = this._mark(key);
    this._pending.delete(key);
    this._taken?.delete(key);
    this._forget(key);
    try {
      this.storage?.removeItem(this.prefix + key);
    } catch {
      // storage gone: nothing to remove
    }
    await this.backing.remove(key); // on failure the mark stays: retried, never resent
    if (marked) this._unmark(key);
  }

  /**
   * Keys acknowledged whose record is still in the backing store (its delete failed, or a
   * reload cut it short): to be removed again. Marks whose record is gone are cleared.
   * @returns {Promise<string[]>}
   */
  async acknowledged() {
    const marks = this._marks();
    if (marks.size === 0) return [];
    const stored = new Set((await this.backing.all()).map((r) => r.key));
    const left = [];
    for (const key of marks) {
      if (stored.has(key)) left.push(key);
      else if (!this._readAheadHas(key)) this._unmark(key);
    }
    return left;
  }

  /** @param {string} key @returns {boolean} whether the mark is in localStorage */
  _mark(key) {
    try {
      if (!this.storage) return false;
      this.storage.setItem(this.ackPrefix + key, '1');
      return true;
    } catch {
      return false; // storage full or gone: the removal is still retried while this page lives
    }
  }

  /** @param {string} key */
  _unmark(key) {
    try {
      this.storage?.removeItem(this.ackPrefix + key);
    } catch {
      // storage gone
    }
  }

  /** @param {string} key */
  _readAheadHas(key) {
    try {
      return this.storage?.getItem(this.prefix + key) != null;
    } catch {
      return false;
    }
  }

  /** Every key marked acknowledged, by any tab. @returns {Set<string>} */
  _marks() {
    /** @type {Set<string>} */
    const keys = new Set();
    const storage = this.storage;
    if (!storage) return keys;
    try {
      for (let i = 0; i < storage.length; i += 1) {
        const k = storage.key(i);
        if (k !== null && k.startsWith(this.ackPrefix)) keys.add(k.slice(this.ackPrefix.length));
      }
    } catch {
      // storage gone meanwhile
    }
    return keys;
  }

  /**
   * Every record of every tab that is not acknowledged: localStorage merged with the backing
   * store (localStorage is read first: a record moves there → backing store, never back).
   * Oldest first.
   * @returns {Promise<OutboxRecord[]>}
   */
  async all() {
    /** @type {Map<string, OutboxRecord>} */
    const merged = new Map();
    for (const r of this._readAhead()) merged.set(r.key, r);
    for (const r of await this.backing.all()) merged.set(r.key, r);
    // Read after both: a key acknowledged meanwhile is skipped too.
    for (const key of this._marks()) merged.delete(key);
    return [...merged.values()].sort(compareRecords);
  }

  /** The records in localStorage, of every tab. @returns {OutboxRecord[]} */
  _readAhead() {
    const storage = this.storage;
    if (!storage) return [];
    const out = [];
    try {
      /** @type {string[]} */
      const items = [];
      for (let i = 0; i < storage.length; i += 1) {
        const k = storage.key(i);
        if (k !== null && k.startsWith(this.prefix)) items.push(k);
      }
      for (const k of items) {
        let r;
        try {
          r = JSON.parse(storage.getItem(k) ?? 'null');
        } catch {
          continue; // not ours
        }
        if (validRecord(r) && this.prefix + r.key === k) out.push(r);
      }
    } catch {
      // storage gone meanwhile: what the backing store holds is all there is
    }
    return out;
  }

  /**
   * Copies every record written so far to the backing store; resolves once that has
   * committed and their localStorage copies are gone (or failed: they stay, retried later).
   * @returns {Promise<void>}
   */
  flush() {
    // The flush under way took its batch already: another one after it.
    if (this._flushing) return this._flushing.then(() => this.flush());
    if (this._pending.size === 0) return Promise.resolve();
    this._flushing = this._flushOnce().finally(() => {
      this._flushing = null;
    });
    return this._flushing;
  }

  async _flushOnce() {
    const batch = this._pending;
    this._pending = new Map();
    this._taken = batch;
    /** @type {OutboxRecord[]} */
    let records = [];
    try {
      await this.backing.ready?.();
      // Removed meanwhile (acked here, or adopted and acked by another tab): not copied back.
      records = [...batch.values()].filter((r) => this._stillAhead(r.key));
      this._taken = null;
      if (records.length === 0) return;
      if (this.backing.addMany) await this.backing.addMany(records);
      else await Promise.all(records.map((r) => this.backing.add(r)));
    } catch (err) {
      this._taken = null;
      // Kept in localStorage, so still durable: copied again later.
      for (const r of records.length ? records : batch.values()) {
        if (this._own.has(r.key) && !this._pending.has(r.key)) this._pending.set(r.key, r);
      }
      this._retryLater();
      return;
    }
    this._failures = 0;
    for (const r of records) {
      if (this._pending.has(r.key)) continue; // written again since: that copy is not committed yet
      this._forget(r.key);
      try {
        this.storage?.removeItem(this.prefix + r.key);
      } catch {
        // storage gone
      }
    }
  }

  /** @param {string} key */
  _stillAhead(key) {
    if (!this._own.has(key)) return false;
    try {
      return !this.storage || this.storage.getItem(this.prefix + key) !== null;
    } catch {
      return true;
    }
  }

  /** @param {string} key */
  _forget(key) {
    const size = this._own.get(key);
    if (size === undefined) return;
    this._own.delete(key);
    this._bytes -= size;
  }

  _scheduleFlush() {
    if (this._scheduled) return;
    this._scheduled = true;
    this._schedule(() => {
      this._scheduled = false;
      this.flush().catch(() => {});
    });
  }

  /** After a failed copy: again in `retryDelay`, doubling while it keeps failing (to 30 s). */
  _retryLater() {
    this._failures += 1;
    if (this._retryTimer !== null) return;
    const delay = Math.min(30000, this.retryDelay * 2 ** Math.min(this._failures - 1, 15));
    this._retryTimer = this._setTimeout(() => {
      this._retryTimer = null;
      this.flush().catch(() => {});
    }, delay);
  }

  /** Stops retrying (the records stay in localStorage for the next page). */
  close() {
    if (this._retryTimer !== null) this._clearTimeout(this._retryTimer);
    this._retryTimer = null;
  }
}
