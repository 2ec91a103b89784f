// The outbox: every publish, in order, until the server acknowledges it.
//
// A publish written to a socket that then dies may or may not have reached the server. The
// only way to lose nothing is to keep each publish until its `ack` arrives and send it again
// on the next connection; the idempotency `key` it carries makes the server's dedupe turn the
// second copy into an ack of the first, so each lands exactly once. Same design as the
// Python client's Outbox (staywire/protocol/outbox.py):
//
//     add() ──> unsent ──markSent(conn)──> in flight ──ack(key)──> gone
//                  ^                           │
//                  └──── connectionLost() ─────┘     (replayed in seq order)
//
// The bound (`maxMessages`, `maxBytes`) counts every entry held, sent or not; over it `add`
// rejects with QueueFull and keeps nothing. Entries are written to the store before they are
// sent, so a reload finds them and sends them again with the same keys. A store with a
// synchronous `write` (write-ahead.js: localStorage in front of IndexedDB) makes the entry
// durable inside `add` itself, before it returns: nothing a reload can interrupt is left.
// `data` is kept as its JSON text so a replay sends the same bytes; binary data (an
// ArrayBuffer, a typed array, a DataView) as its base64, with `binary: true`, so that the
// record stays JSON for localStorage and every store as it is (its `size` counts the
// bytes themselves, as the server's limits do). Removing an entry from
// the store once it is acknowledged goes through removals.js: a failure is counted,
// reported (`onStoreError`) and retried, never dropped.

import { QueueFull } from './errors.js';
import { bytesOf, isBinary, toBase64 } from './binary.js';
import { Removals } from './removals.js';

/**
 * @typedef {{key: string, seq: number, channel: string, data: string, size: number,
 *            owner: string, target: string, createdAt: number, binary?: boolean}} OutboxRecord
 *   `owner`: the tab that made it; `target`: the server URL it is for; `binary`: `data` is
 *   the base64 of bytes, published in a binary frame
 * @typedef {OutboxRecord & {sent: string|null, stored: boolean}} OutboxEntry
 *   `sent`: the connection it was written to; `stored`: it is in the store (only then is it sent)
 * @typedef {{add(r: OutboxRecord): Promise<void>, remove(key: string): Promise<void>,
 *            all(): Promise<OutboxRecord[]>, write?(r: OutboxRecord): boolean,
 *            flush?(): Promise<void>}} OutboxStore
 *   `write`: optional, synchronous: true once the record is durable (the store then keeps
 *   it by itself), false when it cannot do that here (`add` is used); throws to refuse it.
 */

const encoder = typeof TextEncoder === 'function' ? new TextEncoder() : null;

/** UTF-8 length of a string. @param {string} text */
export function byteLength(text) {
  return encoder ? encoder.encode(text).length : text.length;
}

/** A random idempotency key (128 bits), or a counter-based one without crypto. */
export function newKey() {
  const c = globalThis.crypto;
  if (c?.randomUUID) return c.randomUUID();
  if (c?.getRandomValues) {
    return Array.from(c.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
  }
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}-${Math.random().toString(36).slice(2)}`;
}

/** An in-memory store: the outbox of a client without IndexedDB (or in Node). */
export class MemoryStore {
  constructor() {
    /** @type {Map<string, OutboxRecord>} */
    this.records = new Map();
  }

  /** @param {OutboxRecord} record */
  async add(record) {
    this.records.set(record.key, { ...record });
  }

  /** @param {string} key */
  async remove(key) {
    this.records.delete(key);
  }

  async all() {
    return [...this.records.values()].sort(compareRecords);
  }
}

/** Oldest first: by creation time, then sequence. @param {OutboxRecord} a @param {OutboxRecord} b */
export function compareRecords(a, b) {
  return a.createdAt - b.createdAt || a.seq - b.seq || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}

export class Outbox {
  /**
   * @param {{maxMessages?: number, maxBytes?: number, store?: OutboxStore|null, owner?: string,
   *          target?: string, now?: () => number,
   *          onStoreError?: (err: any, key: string, attempt: number, final: boolean) => void,
   *          removals?: import('./removals.js').Removals}} [options]
   *   `onStoreError`: a removal from the store failed (it is retried unless `final`);
   *   `removals`: a replacement for the default retry policy (tests)
   */
  constructor({ maxMessages = 1000, maxBytes = 1 << 20, store = null, owner = '', target = '',
    now = () => Date.now(), onStoreError, removals } = {}) {
    if (!(maxMessages >= 1)) throw new RangeError('maxMessages must be >= 1');
    if (!(maxBytes >= 1)) throw new RangeError('maxBytes must be >= 1');
    this.maxMessages = maxMessages;
    this.maxBytes = maxBytes;
    this.store = store;
    this.owner = owner;
    this.target = target;
    this._now = now;
    this._removals = removals ?? new Removals(store, { onError: onStoreError });
    /** @type {Map<string, OutboxEntry>} key -> entry, in seq order */
    this._entries = new Map();
    this._bytes = 0;
    this._seq = 0;
  }

  get size() {
    return this._entries.size;
  }

  /** Removals from the store that failed so far (each is retried). */
  get removeFailures() {
    return this._removals.failures;
  }

  /** Bytes of every entry held (the bound applies to this). */
  get bytes() {
    return this._bytes;
  }

  /** @param {string} key */
  has(key) {
    return this._entries.has(key);
  }

  /** @param {string} key */
  get(key) {
    return this._entries.get(key);
  }

  /** Every entry, oldest first. */
  entries() {
    return [...this._entries.values()];
  }

  /**
   * Entries not written to connection `conn`, oldest first: the next to send. An entry is
   * not sent before it is in the store, so whatever reached the server survives a reload.
   * @param {string} [conn]
   */
  unsent(conn) {
    return this.entries().filter((e) => e.stored && (e.sent === null || (conn !== undefined && e.sent !== conn)));
  }

  /**
   * Queues a publish. Synchronously, before it returns: checks the bound (QueueFull), holds
   * the entry, and with a store that has `write`, makes it durable. The promise resolves
   * once the entry is in the store (at once after a `write`), or rejects keeping nothing:
   * QueueFull, a duplicate key, or the store's error.
   * @param {string} channel @param {any} data @param {string} key
   * @returns {Promise<OutboxEntry>}
   */
  add(channel, data, key) {
    /** @type {OutboxEntry} */
    let entry;
    try {
      entry = this._hold(channel, data, key);
    } catch (err) {
      return Promise.reject(err);
    }
    const store = this.store;
    const { sent, stored, ...record } = entry;
    if (store?.write) {
      try {
        if (store.write(record)) {
          entry.stored = true;
          return Promise.resolve(entry);
        }
      } catch (err) {
        this._drop(entry);
        return Promise.reject(err);
      }
    }
    if (!store) {
      entry.stored = true;
      return Promise.resolve(entry);
    }
    return store.add(record).then(() => {
      entry.stored = true;
      return entry;
    }, (err) => {
      this._drop(entry);
      throw err;
    });
  }

  /** @param {string} channel @param {any} data @param {string} key @returns {OutboxEntry} */
  _hold(channel, data, key) {
    if (this._entries.has(key)) throw new Error(`idempotency key already in the outbox: ${key}`);
    if (typeof Blob === 'function' && data instanceof Blob) throw new TypeError('read a Blob before adding it');
    const binary = isBinary(data);
    const bytes = binary ? bytesOf(/** @type {ArrayBuffer|ArrayBufferView} */ (data)) : null;
    const text = bytes ? toBase64(bytes) : JSON.stringify(data === undefined ? null : data);
    const size = bytes ? bytes.length : byteLength(text);
    if (this._entries.size + 1 > this.maxMessages) {
      throw new QueueFull(`outbox holds ${this._entries.size} messages (max ${this.maxMessages})`);
    }
    if (this._bytes + size > this.maxBytes) {
      throw new QueueFull(`outbox holds ${this._bytes} bytes; ${size} more exceeds max ${this.maxBytes}`);
    }
    this._seq += 1;
    /** @type {OutboxEntry} */
    const entry = { key, seq: this._seq, channel, data: text, size, owner: this.owner,
      target: this.target, createdAt: this._now(), sent: null, stored: false };
    if (binary) entry.binary = true;
    // Held at once so concurrent adds respect the bound; released if the store fails.
    this._entries.set(key, entry);
    this._bytes += size;
    return entry;
  }

  /** Record that `key` was written to connection `conn`. @param {string} key @param {string} conn */
  markSent(key, conn) {
    const entry = this._entries.get(key);
    if (entry) entry.sent = conn;
  }

  /** The server acknowledged `key`: forget it and return it. @param {string} key */
  ack(key) {
    return this.discard(key);
  }

  /** The server answered `error`: the publish will never land; forget it. @param {string} key */
  reject(key) {
    return this.discard(key);
  }

  /** Drop an entry whatever its state. @param {string} key */
  discard(key) {
    const entry = this._entries.get(key);
    if (!entry) return null;
    this._drop(entry);
    this._removals.remove(key);
    return entry;
  }

  /** Every in-flight entry becomes unsent again: replayed, in seq order, next time. */
  connectionLost() {
    for (const entry of this._entries.values()) entry.sent = null;
  }

  /** Stops retrying failed removals (the client is closed). */
  close() {
    this._removals.close();
  }

  /** @param {OutboxEntry} entry */
  _drop(entry) {
    if (this._entries.get(entry.key) === entry) {
      this._entries.delete(entry.key);
      this._bytes -= entry.size;
    }
  }
}
