// Sending a transfer (docs/protocol.md, *Transfers*): a Blob, a File or a ReadableStream,
// published as a run of binary chunks on one channel.
//
// * Chunks are `welcome.binary.max_data_size` bytes (the last one may be shorter), read
//   from the source one ahead of sending, so the last one is known when it goes out with
//   `last: true` and the SHA-256 of the whole payload (hashed as it passes: sha256.js).
// * At most `window` chunks are unacknowledged (the server's `transfer_window` from
//   welcome.binary, 8 by default; an application may ask for fewer); only those are kept in
//   memory, so a payload of any size costs a window of chunks.
// * Resuming: when the connection drops (or the tab holding it changes), a rate limit
//   refuses a chunk, or an ack does not come, the sender waits (for the next connection, or
//   a jittered pause) and sends the first unacknowledged chunk again, alone: a node that
//   never saw the transfer (a reconnect to another node) recognises it by the previous
//   chunk's key. Once that one is acked, the rest of the window follows. The server knows
//   a chunk it already has by its transfer and seq (the idempotency key it derives) and
//   acks it `duplicate: true`, so no subscriber sees a byte twice or misses one (the
//   Python client's Chunker, protocol/transfer.py, does the same).
// * Any other refusal (forbidden, transfer_too_large, transfer_unknown after the server
//   forgot it, ...) ends the transfer with that RequestError.

import { ConnectionClosed, ReconnectFailed, RequestError, RequestTimeout, TransferError } from './errors.js';
import { bytesOf } from './binary.js';
import { jittered } from './backoff.js';
import { Sha256 } from './sha256.js';

export const DEFAULT_WINDOW = 8;
const MAX_REFUSALS = 8; // failures in a row without an ack: as for a refused publish
const TRANSIENT = new Set(['rate_limited', 'unavailable']);

/**
 * @typedef {{max_data_size: number, max_transfer_size?: number, transfer_timeout?: number,
 *            transfer_window?: number}} BinaryLimits
 * @typedef {{
 *   open: () => boolean,
 *   limits: () => BinaryLimits|null,
 *   opened: () => Promise<void>,
 *   chunk: (channel: string, header: Record<string, any>, data: Uint8Array) => Promise<{epoch: string, offset: number, duplicate: boolean}>,
 * }} TransferLink
 *   the client: whether a connection is open, what it allows (null: not open, or no
 *   binary), a promise of the next open connection (rejects when the client gives up), and
 *   sending one chunk
 * @typedef {{meta?: any, onProgress?: (p: {bytes: number, total: number|null}) => void,
 *            id?: string, window?: number, size?: number}} TransferOptions
 *   `size`: the payload's length, for a ReadableStream whose length you know
 * @typedef {{transfer: string, channel: string, size: number, sha256: string, chunks: number,
 *            epoch: string, offset: number}} TransferResult
 *   `epoch`, `offset`: where the last chunk is in the channel
 */

/**
 * A reader of `source` in pieces of exactly `size` bytes (the last may be shorter): null
 * once it is all read. `cancel` lets a stream's source go when the transfer fails.
 * @param {Blob|ReadableStream<any>} source @param {number} size
 * @returns {(() => Promise<Uint8Array|null>) & {cancel?: (reason: any) => void}}
 */
export function pieces(source, size) {
  if (typeof Blob === 'function' && source instanceof Blob) {
    let at = 0;
    return async () => {
      if (at >= source.size) return null;
      const piece = new Uint8Array(await source.slice(at, at + size).arrayBuffer());
      at += piece.length;
      return piece;
    };
  }
  if (source && typeof (/** @type {any} */ (source).getReader) === 'function') {
    const reader = /** @type {ReadableStream<any>} */ (source).getReader();
    /** @type {Uint8Array[]} */
    let held = [];
    let heldBytes = 0;
    let ended = false;
    const read = async () => {
      while (!ended && heldBytes < size) {
        const { done, value } = await reader.read();
        if (done) {
          ended = true;
          break;
        }
        if (typeof value === 'string') throw new TypeError('a transfer stream must give bytes, not strings');
        const bytes = bytesOf(value);
        if (bytes.length === 0) continue;
        held.push(bytes);
        heldBytes += bytes.length;
      }
      if (heldBytes === 0) return null;
      const piece = new Uint8Array(Math.min(size, heldBytes));
      let filled = 0;
      while (filled < piece.length) {
        const head = /** @type {Uint8Array} */ (held[0]);
        const take = Math.min(head.length, piece.length - filled);
        piece.set(head.subarray(0, take), filled);
        filled += take;
        if (take === head.length) held.shift();
        else held[0] = head.subarray(take);
      }
      heldBytes -= piece.length;
      if (heldBytes === 0) held = [];
      return piece;
    };
    return Object.assign(read, { cancel: (/** @type {any} */ reason) => { reader.cancel(reason).catch(() => {}); } });
  }
  throw new TypeError('a transfer source must be a Blob, a File or a ReadableStream');
}

/**
 * The link of a Client (staywire.js), through its public side: `status.binary`, and its
 * `open` and `state` events; `chunk` is its way to send one through the connection.
 * @param {{status: {binary: BinaryLimits|null, connId: string|null}, error: Error|null, state: string,
 *          on: (event: string, fn: (...args: any[]) => void) => () => void}} client
 * @param {TransferLink['chunk']} chunk @returns {TransferLink}
 */
export function clientLink(client, chunk) {
  const ended = () => client.error ?? new ConnectionClosed(1000, 'client closed');
  return {
    open: () => client.status.connId !== null,
    limits: () => client.status.binary,
    opened: () => {
      /** @type {Array<() => void>} */
      const offs = [];
      return new Promise((resolve, reject) => {
        if (client.state === 'CLOSED') reject(ended());
        offs.push(client.on('open', () => resolve(undefined)), client.on('state', (state) => {
          if (state === 'CLOSED') reject(ended());
        }));
      }).finally(() => offs.forEach((off) => off()));
    },
    chunk,
  };
}

/** Whether sending again can succeed. @param {unknown} err */
function transient(err) {
  if (err instanceof ReconnectFailed) return false;
  if (err instanceof ConnectionClosed) return err.code !== 1000;
  if (err instanceof RequestTimeout) return true;
  return err instanceof RequestError && TRANSIENT.has(err.code);
}

/**
 * Publishes `source` on `channel` as one transfer; resolves once every chunk is
 * acknowledged. Rejects with a RequestError the server gave, a TransferError
 * (`binary_unsupported`: the connection has no binary frames; `transfer_too_large`), or
 * the client's terminal error.
 * @param {TransferLink} link @param {string} channel @param {Blob|ReadableStream<any>} source
 * @param {TransferOptions & {newId: () => string}} options
 * @returns {Promise<TransferResult>}
 */
export async function sendTransfer(link, channel, source, options) {
  const id = options.id ?? options.newId();
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) throw new RangeError(`invalid transfer id: ${JSON.stringify(id)}`);
  if (!link.open()) await link.opened();
  const limits = link.limits();
  if (!limits) throw new TransferError('binary_unsupported', 'the server offers no binary frames on this connection');
  const window = Math.max(1, Math.min(options.window ?? Infinity, limits.transfer_window ?? DEFAULT_WINDOW));
  const known = typeof Blob === 'function' && source instanceof Blob ? source.size : options.size ?? null;
  if (known !== null && limits.max_transfer_size && known > limits.max_transfer_size) {
    throw new TransferError('transfer_too_large', `${known} bytes, the server takes at most ${limits.max_transfer_size}`);
  }
  const read = pieces(source, limits.max_data_size);
  try {
    return await run(link, channel, read, { ...options, id, window, known });
  } catch (err) {
    read.cancel?.(err);
    throw err;
  }
}

/**
 * The chunks of one transfer, until every one is acknowledged.
 * @param {TransferLink} link @param {string} channel @param {() => Promise<Uint8Array|null>} read
 * @param {TransferOptions & {id: string, window: number, known: number|null}} options
 * @returns {Promise<TransferResult>}
 */
async function run(link, channel, read, options) {
  const { id, window, known } = options;
  const hash = new Sha256();
  /** @type {Uint8Array|null} */
  let next = (await read()) ?? new Uint8Array(0); // an empty payload is one empty chunk
  /** Unacknowledged chunks, oldest first; `reply` null: to send. @type {{header: Record<string, any>, bytes: Uint8Array, reply: Promise<any>|null}[]} */
  const pending = [];
  let seq = 0;
  let at = 0;
  let acked = 0;
  let refusals = 0;
  let probing = false; // after a failure: the first unacknowledged chunk goes alone
  /** @type {any} */
  let lastAck = null;
  const send = (/** @type {{header: Record<string, any>, bytes: Uint8Array, reply: Promise<any>|null}} */ p) => {
    p.reply = link.chunk(channel, p.header, p.bytes);
    p.reply.catch(() => {});
    return p.reply;
  };
  for (;;) {
    while (pending.length < window && next !== null) {
      const bytes = /** @type {Uint8Array} */ (next);
      next = await read();
      hash.update(bytes);
      /** @type {Record<string, any>} */
      const header = { transfer: id, seq, at };
      if (seq === 0 && known !== null) header.size = known;
      if (seq === 0 && options.meta !== undefined) header.meta = options.meta;
      if (next === null) {
        header.last = true;
        header.sha256 = hash.hex();
      }
      const p = { header, bytes, reply: null };
      pending.push(p);
      if (!probing) send(p);
      seq += 1;
      at += bytes.length;
    }
    const first = pending[0];
    if (!first) break;
    try {
      lastAck = await (first.reply ?? send(first));
      pending.shift();
      acked += first.bytes.length;
      refusals = 0;
      options.onProgress?.({ bytes: acked, total: known });
      if (probing) {
        probing = false;
        for (const p of pending) if (!p.reply) send(p);
      }
    } catch (err) {
      if (!transient(err)) throw err;
      // The chunks after it were refused too (out of order) or may have landed: wait for
      // every answer, then send again from the first, alone.
      await Promise.allSettled(pending.map((p) => p.reply));
      for (const p of pending) p.reply = null;
      probing = true;
      // Bounded: 8 failures in a row without an ack end it (the client's own reconnect
      // budget bounds the waits for a connection).
      refusals += 1;
      if (refusals > MAX_REFUSALS) throw err;
      if (!link.open()) await link.opened();
      else if (!(err instanceof ConnectionClosed)) {
        await new Promise((resolve) => setTimeout(resolve, jittered(Math.min(5000, 100 * 2 ** (refusals - 1)))));
      }
    }
  }
  return { transfer: id, channel, size: at, sha256: hash.hex(), chunks: seq,
    epoch: lastAck?.epoch, offset: lastAck?.offset };
}
