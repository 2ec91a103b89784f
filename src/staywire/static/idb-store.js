// The outbox's store in IndexedDB: unacknowledged publishes survive a reload or a crash.
//
// One object store, shared by every tab of the origin, holds each entry with its `owner` (the
// tab that made it). A tab that reloads gets a new id, so its old entries become orphans;
// the tab holding the connection adopts orphans (owners whose tab lock is no longer held,
// see tab-leader.js) and sends them with their original keys. The server's dedupe turns
// any second copy into an ack of the first.

/** @typedef {import('./outbox.js').OutboxRecord} OutboxRecord */

const STORE = 'outbox';

/** @param {IDBRequest|IDBTransaction} req */
function done(req) {
  return new Promise((resolve, reject) => {
    if ('oncomplete' in req) {
      req.oncomplete = () => resolve(undefined);
      req.onabort = req.onerror = () => reject(req.error);
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
    /** @type {Promise<IDBDatabase>|null} */
    this._db = null;
  }

  /** Whether IndexedDB exists here (it does not in Node, nor in some private modes). */
  static available() {
    return typeof indexedDB !== 'undefined' && indexedDB !== null;
  }

  /** @returns {Promise<IDBDatabase>} */
  _open() {
    if (!this._db) {
      this._db = new Promise((resolve, reject) => {
        const req = indexedDB.open(this.name, 1);
        req.onupgradeneeded = () => {
          if (!req.result.objectStoreNames.contains(STORE)) {
            req.result.createObjectStore(STORE, { keyPath: 'key' });
          }
        };
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
        req.onblocked = () => reject(new Error('IndexedDB open blocked'));
      });
      this._db.catch(() => {
        this._db = null;
      });
    }
    return this._db;
  }

  /** @param {OutboxRecord} record */
  async add(record) {
    const db = await this._open();
    const tx = db.transaction(STORE, 'readwrite', { durability: 'strict' });
    tx.objectStore(STORE).put(record);
    await done(tx);
  }

  /** @param {string} key */
  async remove(key) {
    const db = await this._open();
    const tx = db.transaction(STORE, 'readwrite');
    tx.objectStore(STORE).delete(key);
    await done(tx);
  }

  /** @returns {Promise<OutboxRecord[]>} every entry of every tab */
  async all() {
    const db = await this._open();
    const tx = db.transaction(STORE, 'readonly');
    return /** @type {OutboxRecord[]} */ (await done(tx.objectStore(STORE).getAll()));
  }

  close() {
    this._db?.then((db) => db.close()).catch(() => {});
    this._db = null;
  }
}
