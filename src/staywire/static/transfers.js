// Receiving transfers (docs/protocol.md, *Transfers*): the chunks of a channel, put back
// together into one payload per transfer.
//
// Each chunk is an ordinary publication, so a tab's Subscription (channel.js) has already
// dropped replays and put them in offset order when a chunk reaches the receiver here. What
// is left is the transfer's own bookkeeping:
//
//   seq 0 ──> 'transfer' event ──chunk, chunk ...──> last: digest matches ──> stream closes
//                                        │
//                                        └── abort / gap / timeout / digest ──> stream errors
//
// * A `Transfer` hands its bytes on as they arrive, as a ReadableStream of Uint8Array, or as
//   one Blob once complete (`blob()`): one or the other, the stream is read once.
// * Every failure ends the stream with a TransferError, never with a close: a reader sees
//   either the whole payload, checked against the SHA-256 of its last chunk, or an error.
//   The digest is computed as the chunks pass (sha256.js), so nothing is kept for it.
// * A chunk of a transfer whose start this tab did not see (it subscribed in the middle) is
//   ignored: there is nothing to hand over that could be whole.

import { Emitter } from './emitter.js';
import { TransferError } from './errors.js';
import { Sha256 } from './sha256.js';

/**
 * @typedef {{transfer: string, seq: number, at: number, size?: number, meta?: any,
 *            last?: boolean, sha256?: string, abort?: string}} ChunkHeader
 * @typedef {{bytes: number, total: number|null}} TransferProgress
 */

export class Transfer extends Emitter {
  /**
   * @param {string} channel @param {ChunkHeader} first
   * @param {{epoch: string, offset: number}} position where its first chunk is in the channel
   */
  constructor(channel, first, position) {
    super();
    this.channel = channel;
    /** The publisher's id of the transfer. */
    this.id = first.transfer;
    /** The application's JSON from the first chunk (a file name, a type), or null. */
    this.meta = first.meta ?? null;
    /** The whole payload's length when the publisher said it, else null. @type {number|null} */
    this.size = Number.isInteger(first.size) ? /** @type {number} */ (first.size) : null;
    /** Where the first chunk is in the channel. */
    this.position = { epoch: position.epoch, offset: position.offset };
    /** Bytes received so far. */
    this.bytes = 0;
    /** @type {'receiving'|'complete'|'failed'} */
    this.state = 'receiving';
    /** The payload's digest, once complete and checked. @type {string|null} */
    this.sha256 = null;
    /** @type {TransferError|null} */
    this.error = null;
    this._next = 0;
    this._hash = new Sha256();
    /** @type {ReadableStreamDefaultController<Uint8Array>|null} */
    this._controller = null;
    /** The payload, chunk by chunk; errors when the transfer cannot complete. @type {ReadableStream<Uint8Array>} */
    this.stream = new ReadableStream({ start: (c) => { this._controller = c; } });
    /** Resolves when complete (with the digest checked), rejects with its TransferError. @type {Promise<Transfer>} */
    this.done = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    this.done.catch(() => {});
  }

  /**
   * The whole payload as one Blob (of `meta.type` when that is a string), once complete:
   * rejects with the TransferError when it cannot be. Reads `stream`: use one or the other.
   * @returns {Promise<Blob>}
   */
  async blob() {
    /** @type {BlobPart[]} */
    const parts = [];
    const reader = this.stream.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(/** @type {Uint8Array<ArrayBuffer>} */ (value));
    }
    const type = typeof this.meta?.type === 'string' ? this.meta.type : '';
    return new Blob(parts, { type });
  }

  /** @param {ChunkHeader} chunk @param {ArrayBuffer} data @returns {boolean} still receiving */
  _chunk(chunk, data) {
    if (this.state !== 'receiving') return false;
    if (chunk.abort) return this._fail('transfer_corrupt', `the server aborted it: ${chunk.abort}`);
    if (chunk.seq !== this._next || chunk.at !== this.bytes) {
      return this._fail('transfer_order', `expected chunk ${this._next} at byte ${this.bytes}, got ${chunk.seq} at ${chunk.at}`);
    }
    const bytes = new Uint8Array(data);
    this._next += 1;
    this.bytes += bytes.length;
    this._hash.update(bytes);
    if (bytes.length > 0) this._controller?.enqueue(bytes);
    /** @type {TransferProgress} */
    const progress = { bytes: this.bytes, total: this.size };
    this.emit('progress', progress);
    if (!chunk.last) return true;
    const digest = this._hash.hex();
    if (digest !== chunk.sha256) {
      return this._fail('transfer_corrupt', `SHA-256 ${digest} of the bytes received, ${chunk.sha256} announced`);
    }
    if (this.size !== null && this.size !== this.bytes) {
      return this._fail('transfer_corrupt', `${this.bytes} bytes received, ${this.size} announced`);
    }
    this.state = 'complete';
    this.sha256 = digest;
    this._controller?.close();
    this.emit('complete', this);
    this._resolve(this);
    return false;
  }

  /** @param {string} code @param {string} reason @returns {false} */
  _fail(code, reason) {
    if (this.state !== 'receiving') return false;
    const err = new TransferError(code, `transfer ${this.id} on ${this.channel}: ${reason}`);
    this.state = 'failed';
    this.error = err;
    this._controller?.error(err);
    this.emit('error', err);
    this._reject(err);
    return false;
  }
}

export class TransferReceiver {
  /**
   * @param {{channel: string, emit: (t: Transfer) => void, timeout: () => number,
   *   setTimeout?: (fn: () => void, ms: number) => any, clearTimeout?: (id: any) => void}} options
   *   `emit`: a new transfer (the subscription's 'transfer' event); `timeout`: the server's
   *   `transfer_timeout` in ms: a transfer with no chunk for that long fails
   */
  constructor(options) {
    this.channel = options.channel;
    this._emit = options.emit;
    this._timeout = options.timeout;
    this._setTimeout = options.setTimeout ?? ((fn, ms) => setTimeout(fn, ms));
    this._clearTimeout = options.clearTimeout ?? ((id) => clearTimeout(id));
    /** Transfers under way, by id. @type {Map<string, {transfer: Transfer, timer: any}>} */
    this.active = new Map();
  }

  /**
   * One chunk, in offset order, never twice (the subscription's filter).
   * @param {{epoch: string, offset: number, data: any, chunk: ChunkHeader}} msg
   */
  chunk(msg) {
    const chunk = msg.chunk;
    if (!chunk || typeof chunk.transfer !== 'string' || !(msg.data instanceof ArrayBuffer)) return;
    let entry = this.active.get(chunk.transfer);
    if (!entry) {
      if (chunk.seq !== 0 || chunk.abort) return; // its start is not ours to see
      entry = { transfer: new Transfer(this.channel, chunk, msg), timer: null };
      this.active.set(chunk.transfer, entry);
      this._emit(entry.transfer);
    }
    const { transfer } = entry;
    if (entry.timer !== null) this._clearTimeout(entry.timer);
    entry.timer = null;
    if (transfer._chunk(chunk, msg.data)) {
      const ms = this._timeout();
      entry.timer = this._setTimeout(() => {
        this.active.delete(transfer.id);
        transfer._fail('transfer_timeout', `no chunk for ${ms} ms`);
      }, ms);
    } else {
      this.active.delete(transfer.id);
    }
  }

  /**
   * Publications may be missing (history did not hold them, or the stream restarted):
   * every transfer under way may have lost a chunk, and fails.
   * @param {string} [reason]
   */
  lost(reason = 'publications of the channel were lost') {
    this._failAll('transfer_order', reason);
  }

  /** The subscription ended: so do its transfers. @param {string} [reason] */
  close(reason = 'the subscription ended') {
    this._failAll('transfer_order', reason);
  }

  /** @param {string} code @param {string} reason */
  _failAll(code, reason) {
    for (const { transfer, timer } of this.active.values()) {
      if (timer !== null) this._clearTimeout(timer);
      transfer._fail(code, reason);
    }
    this.active.clear();
  }
}
