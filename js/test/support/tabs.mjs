// Fake browser pieces for tabs sharing one connection: the Web Locks manager and
// BroadcastChannel, both in memory, with a way to crash a tab (its locks released, its
// channels dead), as a browser does when a tab is killed.

export class LockManager {
  constructor() {
    this.held = new Map();
    this.queues = new Map();
  }
  view(owner) {
    return {
      request: (name, options, cb) => this.request(owner, name, options, cb),
      query: async () => ({ held: [...this.held].map(([name, h]) => ({ name, clientId: h.owner })) }),
    };
  }
  request(owner, name, options, cb) {
    if (typeof options === 'function') [cb, options] = [options, {}];
    return new Promise((resolve, reject) => {
      const req = { owner, cb, resolve, reject };
      const queue = this.queues.get(name) ?? [];
      this.queues.set(name, queue);
      queue.push(req);
      options?.signal?.addEventListener('abort', () => {
        const i = queue.indexOf(req);
        if (i >= 0) {
          queue.splice(i, 1);
          reject(new Error('AbortError'));
        }
      });
      this.grant(name);
    });
  }
  grant(name) {
    if (this.held.has(name)) return;
    const req = this.queues.get(name)?.shift();
    if (!req) return;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      if (this.held.get(name)?.req === req) this.held.delete(name);
      this.grant(name);
    };
    this.held.set(name, { owner: req.owner, req, release });
    Promise.resolve().then(() => req.cb({ name })).then((v) => { release(); req.resolve(v); },
      (e) => { release(); req.reject(e); });
  }
  crash(owner) {
    for (const queue of this.queues.values()) {
      for (const req of [...queue]) if (req.owner === owner) queue.splice(queue.indexOf(req), 1);
    }
    for (const h of [...this.held.values()]) if (h.owner === owner) h.release();
  }
}

export class Bus {
  constructor() { this.channels = []; }
  for(owner) {
    const bus = this;
    return class FakeBroadcastChannel {
      constructor(name) {
        this.name = name;
        this.owner = owner;
        this.closed = false;
        bus.channels.push(this);
      }
      postMessage(msg) {
        if (this.closed) return;
        for (const other of bus.channels) {
          if (other === this || other.closed || other.name !== this.name) continue;
          const data = structuredClone(msg);
          setImmediate(() => { if (!other.closed) other.onmessage?.({ data }); });
        }
      }
      close() { this.closed = true; }
    };
  }
  crash(owner) {
    for (const c of this.channels) if (c.owner === owner) c.closed = true;
  }
}
