// The outbox's store in IndexedDB: unacknowledged publishes survive a reload or a crash.
//
// One object store, shared by every tab of the origin, holds each entry with its `owner` (the
// tab that made it). A tab that reloads gets a new id, so its old entries become orphans;
// the tab holding the connection adopts orphans (owners whose tab lock is no longer held,
// see tab-leader.js) and sends them with their original keys. The server's dedupe turns
// any second copy into an ack of the first.
//
// IndexedDB is asynchronous: a write commits some milliseconds after it is asked for, and a
// reload in between aborts it. The client therefore puts a synchronous write-ahead in front
// of this store (write-ahead.js); here, writes come in batches (`addMany`, one transaction),
// and transactions are created in the order of the calls, even while the database opens, so
// a `remove` asked for after an `add` always runs after it.

/** @typedef {import('./outbox.js').OutboxRecord} OutboxRecord */

const STORE = 'outbox';

/** @param {IDBRequest|IDBTransaction} req */
function done(req) {
  return new Promise((resolve, reject) => {
    if ('oncomplete' in req) {
      req.oncomplete = () => resolve(undefined);
      req.onabort = req.onerror = () => reject(req.error ?? new Error('IndexedDB transaction aborted'));
    } else {
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    }
  });
}

export class IdbStore {
  /** @param {string} [name] the database name */
  constructor(name = 'staywire') {
    this.name = name;
    /** The open database, once it is. @type {IDBDatabase|null} */
    this._conn = null;
    /** Work waiting for the database to open, in call order. @type {Array<(db: IDBDatabase|null, err?: any) => void>} */
    this._waiting = [];
    this._opening = false;
  }

  /** Whether IndexedDB exists here (it does not in Node, nor in some private modes). */
  static available() {
    return typeof indexedDB !== 'undefined' && indexedDB !== null;
  }

  _open() {
    if (this._opening) return;
    this._opening = true;
    const settle = (/** @type {IDBDatabase|null} */ db, /** @type {any} */ err = undefined) => {
      this._opening = false;
      this._conn = db;
      const waiting = this._waiting;
      this._waiting = [];
      for (const run of waiting) run(db, err);
    };
    let req;
    try {
      req = indexedDB.open(this.name, 1);
    } catch (err) {
      settle(null, err);
      return;
    }
    req.onupgradeneeded = () => {
      if (!req.result.objectStoreNames.contains(STORE)) {
        req.result.createObjectStore(STORE, { keyPath: 'key' });
      }
    };
    req.onsuccess = () => {
      const db = req.result;
      // Closed by the browser (storage cleared, ...) or by a newer version: open again next time.
      db.onclose = () => {
        if (this._conn === db) this._conn = null;
      };
      db.onversionchange = () => {
        db.close();
        if (this._conn === db) this._conn = null;
      };
      settle(db);
    };
    req.onerror = () => settle(null, req.error);
    req.onblocked = () => settle(null, new Error('IndexedDB open blocked'));
  }

  /**
   * Runs `fn` with the open database: at once when it is open, else once it is, in call order.
   * @template T @param {(db: IDBDatabase) => Promise<T>} fn @returns {Promise<T>}
   */
  _with(fn) {
    return new Promise((resolve, reject) => {
      const run = (/** @type {IDBDatabase|null} */ db, /** @type {any} */ err = undefined) => {
        if (!db) {
          reject(err ?? new Error('IndexedDB unavailable'));
          return;
        }
        try {
          resolve(fn(db));
        } catch (e) { // InvalidStateError: the connection is closing
          if (this._conn === db) this._conn = null;
          reject(e);
        }
      };
      if (this._conn) {
        run(this._conn);
      } else {
        this._waiting.push(run);
        this._open();
      }
    });
  }

  /** Resolves once the database is open. */
  ready() {
    return this._with(async () => undefined);
  }

  /** @param {OutboxRecord} record */
  add(record) {
    return this.addMany([record]);
  }

  /**
   * Writes every record in one transaction; resolves once it has committed (to disk: strict).
   * @param {OutboxRecord[]} records
   */
  addMany(records) {
    return this._with((db) => {
      const tx = db.transaction(STORE, 'readwrite', { durability: 'strict' });
      const store = tx.objectStore(STORE);
      for (const record of records) store.put(record);
      return done(tx);
    });
  }

  /** @param {string} key */
  remove(key) {
    return this._with((db) => {
      const tx = db.transaction(STORE, 'readwrite');
      tx.objectStore(STORE).delete(key);
      return done(tx);
    });
  }

  /** @returns {Promise<OutboxRecord[]>} every entry of every tab */
  all() {
    return this._with((db) => {
      const tx = db.transaction(STORE, 'readonly');
      return /** @type {Promise<OutboxRecord[]>} */ (done(tx.objectStore(STORE).getAll()));
    });
  }

  close() {
    this._conn?.close();
    this._conn = null;
  }
}
