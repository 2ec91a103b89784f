// Binary publications, binary RPC and transfers through the whole client (staywire.js, the
// hub, the socket) against a fake server that speaks protocol v2 (docs/protocol.md, *Binary
// frames* and *Transfers*): ordering with JSON publishes, a replay after a cut landing once,
// tabs sharing one connection, a transfer's window, its resume after a cut (the first
// unacknowledged chunk alone), and every way a received transfer fails.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { decodeFrame, encodeFrame } from '../../src/staywire/static/binary.js';
import {
  Backoff, Client, MemoryStore, Outbox, TransferError,
} from '../../src/staywire/static/staywire.js';
import { Bus, LockManager } from './support/tabs.mjs';
import { FakeServer, client, closeClients, until, wait } from './support/fake-server.mjs';

const sha = (bytes) => createHash('sha256').update(bytes).digest('hex');
const bytesOf = (buf) => Buffer.from(new Uint8Array(buf));

class V2Server extends FakeServer {
  constructor({ maxData = 1024, ackDelay = 0 } = {}) {
    super();
    this.binary = { max_data_size: maxData, max_transfer_size: 1 << 26, transfer_timeout: 30 };
    this.ackDelay = ackDelay;
    this.keys = new Map(); // key -> ack
    this.transfers = new Map(); // transfer -> next seq
    this.log = []; // what happened, in order: ['chunk', seq] / ['ack', seq]
    this.unacked = 0;
    this.maxUnacked = 0;
    /** Called with each chunk before it is answered; returns true to drop the connection instead. */
    this.onChunk = () => false;
  }

  publishBinary(channel, payload, chunk) {
    const s = this.stream(channel);
    s.offset += 1;
    const frame = encodeFrame({ type: 'msg', channel, epoch: s.epoch, offset: s.offset, ...(chunk ? { chunk } : {}) }, payload);
    frame.offset = s.offset; // the base's history replay reads it
    s.history.push(frame);
    for (const conn of this.conns) if (conn.subs.has(channel)) conn.push(frame);
    return { epoch: s.epoch, offset: s.offset };
  }

  answer(conn, ack, seq) {
    this.unacked += 1;
    this.maxUnacked = Math.max(this.maxUnacked, this.unacked);
    const send = () => {
      this.unacked -= 1;
      if (seq !== undefined) this.log.push(['ack', seq]);
      conn.push(ack);
    };
    if (this.ackDelay) setTimeout(send, this.ackDelay);
    else send();
  }

  handle(conn, m) {
    if (m.type !== 'pub') return false;
    const seen = this.keys.get(m.key);
    if (seen) this.answer(conn, { type: 'ack', id: m.id, ...seen, duplicate: true });
    else {
      this.publish(m.channel, m.data);
      const s = this.stream(m.channel);
      this.keys.set(m.key, { epoch: s.epoch, offset: s.offset });
      this.answer(conn, { type: 'ack', id: m.id, epoch: s.epoch, offset: s.offset });
    }
    return true;
  }

  handleBinary(conn, frame) {
    const { header: h, payload } = decodeFrame(frame, ['pub', 'rpc']);
    if (h.type === 'rpc') {
      conn.push(encodeFrame({ type: 'result', id: h.id }, payload.slice().reverse()));
      return;
    }
    const c = h.chunk;
    const key = c ? `xfer:${c.transfer}:${c.seq}` : h.key;
    if (c) this.log.push(['chunk', c.seq]);
    const seen = this.keys.get(key);
    if (seen) {
      this.answer(conn, { type: 'ack', id: h.id, ...seen, duplicate: true }, c?.seq);
      return;
    }
    if (c && c.seq !== (this.transfers.get(c.transfer) ?? 0)) {
      conn.push({ type: 'error', id: h.id, code: 'transfer_order', reason: `seq ${c.seq}` });
      return;
    }
    if (c && this.onChunk(c, conn)) {
      // Published, but the connection dies before the ack: the client must resume.
      this.transfers.set(c.transfer, c.seq + 1);
      this.keys.set(key, this.publishBinary(h.channel, payload, c));
      conn.kill(1006);
      return;
    }
    if (c) this.transfers.set(c.transfer, c.seq + 1);
    const at = this.publishBinary(h.channel, payload, c);
    if (key) this.keys.set(key, at);
    this.answer(conn, { type: 'ack', id: h.id, ...at }, c?.seq);
  }
}

const open = (c) => until(() => c.state === 'OPEN' && c.status.connId, 'client open');

describe('binary publications', { timeout: 20000 }, () => {
  afterEach(closeClients);

  it('an ArrayBuffer, a typed array view and a Blob arrive byte for byte, ordered with JSON', async () => {
    // A Blob is read first (asynchronously), so it is queued after publishes made meanwhile.
    const server = new V2Server();
    const pub = client(server);
    const sub = client(server);
    const got = [];
    await sub.subscribe('room', (data, msg) => got.push([msg.offset, msg.binary === true, data]));
    await open(pub);
    const raw = new Uint8Array(randomBytes(300));
    const view = new DataView(raw.buffer, 10, 50);
    await Promise.all([
      pub.publish('room', { n: 1 }),
      pub.publish('room', raw.buffer),
      pub.publish('room', view),
      pub.publish('room', new Blob([raw.subarray(0, 7)])),
      pub.publish('room', { n: 2 }),
    ]);
    await until(() => got.length === 5, 'five publications');
    assert.deepEqual(got.map(([o]) => o), [1, 2, 3, 4, 5]);
    assert.deepEqual(got.map(([, b]) => b), [false, true, true, false, true]);
    assert.ok(got[1][2] instanceof ArrayBuffer);
    assert.deepEqual(bytesOf(got[1][2]), Buffer.from(raw));
    assert.deepEqual(bytesOf(got[2][2]), Buffer.from(raw.subarray(10, 60)));
    assert.deepEqual(bytesOf(got[4][2]), Buffer.from(raw.subarray(0, 7)));
    assert.deepEqual([got[0][2], got[3][2]], [{ n: 1 }, { n: 2 }]);
    // Frames of bytes, never JSON: the second request was a binary pub with its key.
    const frames = server.frames.filter((f) => f instanceof Uint8Array);
    assert.equal(frames.length, 3);
    assert.equal(decodeFrame(frames[0], ['pub']).header.channel, 'room');
    assert.ok(decodeFrame(frames[0], ['pub']).header.key);
  });

  it('a binary publish cut before its ack is sent again after the reconnect and lands once', async () => {
    const server = new V2Server();
    let cut = false;
    const base = server.handleBinary.bind(server);
    server.handleBinary = (conn, frame) => {
      base(conn, frame);
      if (!cut) { // published, then the link dies before the ack is read
        cut = true;
        conn.kill(1006);
      }
    };
    const sub = client(server);
    const got = [];
    await sub.subscribe('room', (data) => got.push(bytesOf(data)));
    const pub = client(server);
    await open(pub);
    const ack = await pub.publish('room', new Uint8Array([0, 255, 16]));
    assert.equal(ack.duplicate, true); // the second copy was the first's ack
    await wait(20);
    assert.deepEqual(got, [Buffer.from([0, 255, 16])]);
    assert.equal(server.frames.filter((f) => f instanceof Uint8Array).length, 2);
  });

  it('a binary publish left by a reloaded page is adopted and sent as bytes, once', async () => {
    const server = new V2Server();
    const sub = client(server);
    const got = [];
    await sub.subscribe('room', (data, msg) => got.push([bytesOf(data), msg.binary]));
    // The page that made it is gone: its record, as the write-ahead keeps it (JSON).
    const store = new MemoryStore();
    const old = new Outbox({ owner: 'gone-tab', target: 'ws://127.0.0.1:1/ws' });
    const entry = await old.add('room', new Uint8Array([9, 8, 7, 0, 255]), 'k-old');
    const { sent, stored, ...record } = entry; // eslint-disable-line no-unused-vars
    assert.equal(record.binary, true);
    assert.equal(record.size, 5);
    await store.add(JSON.parse(JSON.stringify(record)));
    const next = new Client('ws://127.0.0.1:1/ws', { share: false, store, WebSocket: server.WebSocket,
      backoff: new Backoff({ base: 20, cap: 80, random: () => 0.5, maxRetries: 50 }) });
    next.connect().catch(() => {});
    try {
      await until(() => next.status.adopted === 1, 'the adopted publish acknowledged');
      await until(() => got.length === 1, 'the subscriber got it');
      assert.deepEqual(got, [[Buffer.from([9, 8, 7, 0, 255]), true]]);
      assert.deepEqual(await store.all(), []);
    } finally {
      await next.close();
    }
  });

  it('tabs sharing one connection publish and receive bytes through the leader', async () => {
    const server = new V2Server();
    const tabs = { locks: new LockManager(), bus: new Bus() };
    const a = client(server, tabs, 'a');
    const b = client(server, tabs, 'b');
    const c = client(server, tabs, 'c');
    await until(() => [a, b, c].every((t) => t.status.connId), 'every tab sees the connection');
    const got = { a: [], c: [] };
    await a.subscribe('room', (data) => got.a.push(data));
    await c.subscribe('room', (data) => got.c.push(data));
    assert.equal(server.opened, 1);
    const follower = [a, b, c].find((t) => !t.isLeader);
    const payload = new Uint8Array(randomBytes(2000));
    await follower.publish('room', payload);
    await until(() => got.a.length === 1 && got.c.length === 1, 'both tabs received it');
    for (const data of [got.a[0], got.c[0]]) {
      assert.ok(data instanceof ArrayBuffer);
      assert.deepEqual(bytesOf(data), Buffer.from(payload));
    }
    // A binary rpc from a tab that does not hold the connection: bytes in, bytes out.
    const result = await follower.rpc('reverse', new Uint8Array([1, 2, 3]));
    assert.deepEqual(bytesOf(result), Buffer.from([3, 2, 1]));
  });

  it('on a v1 connection bytes are refused with binary_unsupported, never left waiting', async () => {
    const server = new FakeServer(); // no welcome.binary: the server selected v1
    const pub = client(server);
    await open(pub);
    await assert.rejects(pub.publish('room', new Uint8Array([1])), { name: 'RequestError', code: 'binary_unsupported' });
    await assert.rejects(pub.rpc('echo', new Uint8Array([1])), { name: 'RequestError', code: 'binary_unsupported' });
    assert.equal(pub.outbox.size, 0);
    assert.equal(server.frames.filter((f) => f instanceof Uint8Array).length, 0);
  });

  it('a v1 connection\'s base64 msg is delivered as an ArrayBuffer', async () => {
    const server = new FakeServer();
    const sub = client(server);
    const got = [];
    await sub.subscribe('room', (data, msg) => got.push([data, msg.binary]));
    for (const conn of server.conns) {
      conn.push({ type: 'msg', channel: 'room', epoch: 'E1', offset: 1, data: 'AP8Q', encoding: 'base64' });
    }
    await until(() => got.length === 1, 'the msg');
    assert.deepEqual(bytesOf(got[0][0]), Buffer.from([0, 255, 16]));
    assert.equal(got[0][1], true);
  });
});

/** The transfers started on `sub`, each with its bytes read as a Blob. */
function collect(sub) {
  const seen = [];
  sub.on('transfer', (t) => {
    const blob = t.blob();
    blob.catch(() => {}); // awaited (and its rejection checked) by the test
    seen.push({ t, blob });
  });
  return seen;
}

describe('transfers', { timeout: 30000 }, () => {
  afterEach(closeClients);

  it('a Blob in chunks of max_data_size, at most 8 unacknowledged, received whole with its digest', async () => {
    const server = new V2Server({ maxData: 1000, ackDelay: 5 });
    const rx = client(server);
    const seen = collect(await rx.subscribe('files'));
    const tx = client(server);
    await open(tx);
    const payload = new Uint8Array(randomBytes(25_500));
    const progress = [];
    const result = await tx.sendTransfer('files', new Blob([payload]), {
      meta: { name: 'a.bin' }, onProgress: (p) => progress.push(p),
    });
    assert.equal(result.sha256, sha(payload));
    assert.equal(result.chunks, 26);
    assert.equal(result.size, payload.length);
    assert.ok(server.maxUnacked <= 8 && server.maxUnacked >= 2, `at most 8 in flight, ${server.maxUnacked}`);
    assert.deepEqual(progress.at(-1), { bytes: payload.length, total: payload.length });
    await until(() => seen.length === 1 && seen[0].t.state === 'complete', 'the transfer received');
    const { t, blob } = seen[0];
    assert.deepEqual(t.meta, { name: 'a.bin' });
    assert.equal(t.size, payload.length);
    assert.equal(t.sha256, sha(payload));
    assert.deepEqual(Buffer.from(await (await blob).arrayBuffer()), Buffer.from(payload));
    for (const f of server.frames.filter((x) => x instanceof Uint8Array)) {
      assert.ok(decodeFrame(f, ['pub']).payload.length <= 1000);
    }
  });

  it('resumes after a cut from the first unacknowledged chunk, alone, without a byte twice', async () => {
    const server = new V2Server({ maxData: 512 });
    server.onChunk = (c) => c.seq === 5 && !server.cutDone && (server.cutDone = true);
    const rx = client(server);
    const seen = collect(await rx.subscribe('files'));
    const tx = client(server);
    await open(tx);
    const payload = new Uint8Array(randomBytes(512 * 12 + 100));
    const result = await tx.sendTransfer('files', new Blob([payload]));
    assert.equal(result.sha256, sha(payload));
    await until(() => seen[0]?.t.state === 'complete', 'the transfer received');
    assert.deepEqual(Buffer.from(await (await seen[0].blob).arrayBuffer()), Buffer.from(payload));
    // After the cut: the first chunk without an ack again, alone, acked (a duplicate: the
    // server had it) before the next goes out; every chunk published once.
    const after = server.log.slice(server.log.findIndex(([k, s]) => k === 'chunk' && s === 5) + 1);
    const [, first] = after[0];
    assert.ok(first <= 5, `resumed from ${first}`);
    assert.deepEqual(after.slice(0, 3), [['chunk', first], ['ack', first], ['chunk', first + 1]]);
    assert.equal(server.stream('files').offset, 13);
    assert.ok(server.opened >= 3, 'the publisher reconnected');
  });

  it('a ReadableStream of uneven pieces is cut into full chunks', async () => {
    const server = new V2Server({ maxData: 700 });
    const rx = client(server);
    const seen = collect(await rx.subscribe('files'));
    const tx = client(server);
    await open(tx);
    const payload = new Uint8Array(randomBytes(5000));
    const sizes = [1, 699, 3, 1500, 2000, 797];
    let at = 0;
    const stream = new ReadableStream({
      pull(controller) {
        const size = sizes.shift();
        if (size === undefined) controller.close();
        else controller.enqueue(payload.slice(at, (at += size)));
      },
    });
    const result = await tx.sendTransfer('files', stream);
    assert.equal(result.chunks, 8);
    await until(() => seen[0]?.t.state === 'complete', 'the transfer received');
    assert.equal(seen[0].t.size, null); // not announced
    assert.deepEqual(Buffer.from(await (await seen[0].blob).arrayBuffer()), Buffer.from(payload));
    // An empty payload is one empty last chunk.
    const empty = await tx.sendTransfer('files', new Blob([]));
    assert.deepEqual([empty.chunks, empty.size, empty.sha256], [1, 0, sha(new Uint8Array(0))]);
  });

  it('refuses before sending on a connection without binary, and over max_transfer_size', async () => {
    const v1 = client(new FakeServer());
    await open(v1);
    await assert.rejects(v1.sendTransfer('files', new Blob(['x'])), (e) => e instanceof TransferError && e.code === 'binary_unsupported');
    const server = new V2Server();
    server.binary.max_transfer_size = 10;
    const tx = client(server);
    await open(tx);
    await assert.rejects(tx.sendTransfer('files', new Blob(['x'.repeat(11)])), { code: 'transfer_too_large' });
    assert.equal(server.frames.filter((f) => f instanceof Uint8Array).length, 0);
  });

  it('chunks refused for now (rate_limited) are sent again after a pause, from the first alone', async () => {
    const server = new V2Server({ maxData: 100 });
    const base = server.handleBinary.bind(server);
    let refused = 0;
    server.handleBinary = (conn, frame) => {
      const { header } = decodeFrame(frame, ['pub']);
      if (header.chunk.seq === 2 && refused < 2) {
        refused += 1;
        server.log.push(['refused', 2]);
        conn.push({ type: 'error', id: header.id, code: 'rate_limited', reason: '' });
        return;
      }
      base(conn, frame);
    };
    const rx = client(server);
    const seen = collect(await rx.subscribe('files'));
    const tx = client(server);
    await open(tx);
    const payload = new Uint8Array(randomBytes(1000));
    const result = await tx.sendTransfer('files', new Blob([payload]));
    assert.equal(result.sha256, sha(payload));
    await until(() => seen[0]?.t.state === 'complete', 'the transfer received');
    assert.deepEqual(Buffer.from(await (await seen[0].blob).arrayBuffer()), Buffer.from(payload));
    // Refused in its window (3.. then refused as out of order), again when sent alone,
    // then accepted alone before 3 went out.
    const last = server.log.map(([k]) => k).lastIndexOf('refused');
    assert.deepEqual(server.log.slice(last + 1, last + 4), [['chunk', 2], ['ack', 2], ['chunk', 3]]);
    assert.equal(server.stream('files').offset, 10); // each chunk published once
  });

  it('a refusal ends the transfer with its RequestError, and lets a stream source go', async () => {
    const server = new V2Server({ maxData: 100 });
    server.handleBinary = (conn, frame) => {
      const { header } = decodeFrame(frame, ['pub']);
      conn.push({ type: 'error', id: header.id, code: 'forbidden', reason: 'not yours' });
    };
    const tx = client(server);
    await open(tx);
    let cancelled = null;
    const stream = new ReadableStream({
      pull(controller) { controller.enqueue(new Uint8Array(100)); }, // endless
      cancel(reason) { cancelled = reason; },
    });
    await assert.rejects(tx.sendTransfer('files', stream), { name: 'RequestError', code: 'forbidden' });
    await until(() => cancelled !== null, 'the source cancelled');
    assert.equal(cancelled.code, 'forbidden');
  });

  for (const [name, chunks, code] of [
    ['a digest that does not match', [['abc', { seq: 0, at: 0 }], ['def', { seq: 1, at: 3, last: true, sha256: '0'.repeat(64) }]], 'transfer_corrupt'],
    ['a missing chunk', [['abc', { seq: 0, at: 0 }], ['ghi', { seq: 2, at: 6, last: true, sha256: sha(Buffer.from('abcdefghi')) }]], 'transfer_order'],
    ['an abort from the server', [['abc', { seq: 0, at: 0 }], ['', { seq: 1, at: 3, abort: 'transfer_corrupt' }]], 'transfer_corrupt'],
    ['more bytes than announced', [['abc', { seq: 0, at: 0, size: 4 }], ['de', { seq: 1, at: 3, last: true, sha256: sha(Buffer.from('abcde')) }]], 'transfer_corrupt'],
    ['no chunk within transfer_timeout', [['abc', { seq: 0, at: 0 }]], 'transfer_timeout'],
  ]) {
    it(`a received transfer fails, never truncated: ${name}`, async () => {
      const server = new V2Server();
      server.binary.transfer_timeout = 0.05;
      const rx = client(server);
      const sub = await rx.subscribe('files');
      await until(() => rx.status.binary, 'the welcome\'s binary limits');
      const seen = collect(sub);
      for (const [data, chunk] of chunks) server.publishBinary('files', Buffer.from(data), { transfer: 't', ...chunk });
      await until(() => seen[0]?.t.state === 'failed', 'the transfer failed');
      await assert.rejects(seen[0].blob, (e) => e instanceof TransferError && e.code === code);
      await assert.rejects(seen[0].t.done, { code });
      assert.equal(sub.transfers.size, 0);
    });
  }

  it('a chunk of a transfer whose start it did not see is ignored, so are transfers nobody listens for, and replays deliver nothing twice', async () => {
    const server = new V2Server();
    const rx = client(server);
    const sub = await rx.subscribe('files');
    const deaf = await client(server).subscribe('files'); // no 'transfer' listener: nothing held
    const seen = collect(sub);
    server.publishBinary('files', Buffer.from('xyz'), { transfer: 'late', seq: 3, at: 9 });
    server.publishBinary('files', Buffer.from('ab'), { transfer: 't', seq: 0, at: 0 });
    for (const conn of server.conns) conn.kill(1006); // a reconnect replays from the position
    await until(() => rx.status.connId && server.opened >= 2, 'reconnected');
    server.publishBinary('files', Buffer.from('c'), { transfer: 't', seq: 1, at: 2, last: true, sha256: sha(Buffer.from('abc')) });
    await until(() => seen[0]?.t.state === 'complete', 'the transfer received');
    assert.equal(seen.length, 1);
    assert.deepEqual(Buffer.from(await (await seen[0].blob).arrayBuffer()), Buffer.from('abc'));
    assert.equal(deaf._receiver, null);
    assert.equal(deaf.delivered, 3);
  });
});
