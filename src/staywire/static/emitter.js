// A tiny event emitter: `on` returns a function that removes the listener.

/** @template {Record<string, any[]>} [Events=Record<string, any[]>] */
export class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
  }

  /**
   * @param {string} event
   * @param {(...args: any[]) => void} listener
   * @returns {() => void} removes the listener
   */
  on(event, listener) {
    let set = this._listeners.get(event);
    if (!set) this._listeners.set(event, (set = new Set()));
    set.add(listener);
    return () => this.off(event, listener);
  }

  /** @param {string} event @param {(...args: any[]) => void} listener */
  once(event, listener) {
    const off = this.on(event, (...args) => {
      off();
      listener(...args);
    });
    return off;
  }

  /** @param {string} event @param {Function} listener */
  off(event, listener) {
    this._listeners.get(event)?.delete(listener);
  }

  /**
   * Calls every listener of `event`; a listener that throws does not stop the others
   * (the error is reported asynchronously, as an uncaught error would be).
   * @param {string} event
   * @param {...any} args
   */
  emit(event, ...args) {
    const set = this._listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(...args);
      } catch (err) {
        setTimeout(() => {
          throw err;
        }, 0);
      }
    }
  }
}
