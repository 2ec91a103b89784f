// Binary frames of protocol v2 (docs/protocol.md, *Binary frames*): the browser's codec.
//
//   byte 0      format, 0x01
//   bytes 1-2   N, the header's length, unsigned 16-bit big-endian (1..BINARY_MAX_HEADER)
//   N bytes     the header: one JSON object (UTF-8) with a string `type`
//   the rest    the payload: the application's bytes, unchanged (may be empty)
//
// A frame is never guessed from its content: JSON data goes in text frames, bytes in these.
// The client encodes `pub` and `rpc` and decodes the server's `msg` and `result`; the byte
// vectors in tests/vectors/binary.json hold both this file and protocol/binary.py to one
// layout. A binary payload is handed to the application as an ArrayBuffer of its own (one
// copy out of the frame, so that a message kept or posted to another tab does not pin the
// whole frame). No I/O here.

import { BINARY_FORMAT, BINARY_MAX_HEADER } from './codes.js';
import { utf8Length } from './pacer.js';

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** A frame the codec refuses, with the error code the server would give. */
export class BinaryFrameError extends Error {
  /** @param {'bad_request'|'unknown_type'} code @param {string} reason */
  constructor(code, reason) {
    super(reason);
    this.name = 'BinaryFrameError';
    this.code = code;
  }
}

/**
 * Whether `data` is sent as bytes: an ArrayBuffer, a typed array or DataView, or a Blob.
 * @param {unknown} data @returns {data is ArrayBuffer|ArrayBufferView|Blob}
 */
export function isBinary(data) {
  return data instanceof ArrayBuffer || ArrayBuffer.isView(data)
    || (typeof Blob === 'function' && data instanceof Blob);
}

/**
 * The bytes of an ArrayBuffer, a typed array or a DataView, as a Uint8Array (no copy).
 * @param {ArrayBuffer|ArrayBufferView} data @returns {Uint8Array}
 */
export function bytesOf(data) {
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw new TypeError('expected an ArrayBuffer, a typed array or a DataView');
}

/**
 * A binary frame of `header` (a JSON object with `type`) and `payload`. The header is
 * JSON.stringify'd in its keys' order, as the vectors list them.
 * @param {Record<string, any>} header @param {ArrayBuffer|ArrayBufferView} [payload]
 * @returns {Uint8Array}
 */
export function encodeFrame(header, payload = new Uint8Array(0)) {
  const head = utf8.encode(JSON.stringify(header));
  if (head.length < 1 || head.length > BINARY_MAX_HEADER) {
    throw new RangeError(`binary header of ${head.length} bytes is not in 1..${BINARY_MAX_HEADER}`);
  }
  const body = bytesOf(payload);
  const frame = new Uint8Array(3 + head.length + body.length);
  frame[0] = BINARY_FORMAT;
  frame[1] = head.length >> 8;
  frame[2] = head.length & 0xff;
  frame.set(head, 3);
  frame.set(body, 3 + head.length);
  return frame;
}

/**
 * A frame's header and a view of its payload. `types`: the header types accepted (the
 * server's `msg` and `result` by default); anything else is `unknown_type`. Throws a
 * BinaryFrameError for broken framing: a short frame, another format byte, a header length
 * of 0, over the bound or past the end, a header that is not a JSON object with a string
 * `type`. The fields of each type are the caller's to check, as for a text message.
 * @param {ArrayBuffer|ArrayBufferView} frame @param {string[]} [types]
 * @returns {{header: Record<string, any>, payload: Uint8Array}}
 */
export function decodeFrame(frame, types = ['msg', 'result']) {
  const bytes = bytesOf(frame);
  if (bytes.length < 3) throw new BinaryFrameError('bad_request', 'binary frame shorter than its 3-byte prefix');
  if (bytes[0] !== BINARY_FORMAT) {
    throw new BinaryFrameError('bad_request', `unknown binary header format 0x${bytes[0].toString(16).padStart(2, '0')}`);
  }
  const length = (bytes[1] << 8) | bytes[2];
  if (length === 0 || length > BINARY_MAX_HEADER) {
    throw new BinaryFrameError('bad_request', `binary header length ${length} is not in 1..${BINARY_MAX_HEADER}`);
  }
  if (3 + length > bytes.length) {
    throw new BinaryFrameError('bad_request', `binary header length ${length} runs past the frame (${bytes.length} bytes)`);
  }
  let header;
  try {
    header = JSON.parse(utf8Strict.decode(bytes.subarray(3, 3 + length)));
  } catch {
    throw new BinaryFrameError('bad_request', 'binary header is not a JSON object');
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw new BinaryFrameError('bad_request', 'binary header is not a JSON object');
  }
  if (typeof header.type !== 'string') {
    throw new BinaryFrameError('bad_request', `binary header ${'type' in header ? "field 'type' must be a string" : "is missing field 'type'"}`);
  }
  if (!types.includes(header.type)) {
    throw new BinaryFrameError('unknown_type', `unknown binary type ${JSON.stringify(header.type.slice(0, 32))}`);
  }
  return { header, payload: bytes.subarray(3 + length) };
}

/** A copy of `bytes` in an ArrayBuffer of its own. @param {Uint8Array} bytes @returns {ArrayBuffer} */
export function ownBuffer(bytes) {
  return bytes.slice().buffer;
}

/**
 * A server frame as the message the client handles: a `msg` (with `data` an ArrayBuffer
 * and, for a transfer's chunk, `chunk`) or a `result`. Throws BinaryFrameError.
 * @param {ArrayBuffer|ArrayBufferView} frame @returns {Record<string, any>}
 */
export function serverMessage(frame) {
  const { header, payload } = decodeFrame(frame);
  if (header.type === 'msg' && (typeof header.channel !== 'string' || typeof header.epoch !== 'string'
    || !Number.isInteger(header.offset))) {
    throw new BinaryFrameError('bad_request', 'binary msg without channel, epoch and offset');
  }
  if (header.type === 'result' && !Number.isInteger(header.id)) {
    throw new BinaryFrameError('bad_request', 'binary result without an id');
  }
  return { ...header, data: ownBuffer(payload), binary: true };
}

// Base64, for bytes that must live in JSON: an outbox entry in localStorage, and the
// `"encoding": "base64"` text `msg` a v1 connection gets for a binary publication.

/** @param {Uint8Array} bytes @returns {string} */
export function toBase64(bytes) {
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, /** @type {any} */ (bytes.subarray(i, i + 0x8000)));
  }
  return btoa(text);
}

/** @param {string} text @returns {Uint8Array} */
export function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

/**
 * A v1 connection's text `msg` of a binary publication (`"encoding": "base64"`) as the
 * message a binary frame gives: `data` an ArrayBuffer, `binary: true`. Null when `data` is
 * not base64. @param {Record<string, any>} msg @returns {Record<string, any>|null}
 */
export function base64Message(msg) {
  if (typeof msg.data !== 'string') return null;
  let bytes;
  try {
    bytes = fromBase64(msg.data);
  } catch {
    return null;
  }
  const { encoding, ...rest } = msg; // eslint-disable-line no-unused-vars
  return { ...rest, data: bytes.buffer, binary: true };
}

/**
 * A frame from the server as a message: a binary frame decoded (serverMessage), a text
 * frame's JSON, with a v1 base64 `msg` made bytes (base64Message). Throws an Error saying
 * why a frame is dropped. @param {any} raw @returns {any}
 */
export function parseServerFrame(raw) {
  if (raw instanceof ArrayBuffer || ArrayBuffer.isView(raw)) return serverMessage(raw);
  let msg;
  try {
    msg = JSON.parse(typeof raw === 'string' ? raw : String(raw));
  } catch {
    throw new Error('frame is not JSON');
  }
  if (msg?.type !== 'msg' || msg.encoding !== 'base64') return msg;
  const bytes = base64Message(msg);
  if (!bytes) throw new Error('a base64 msg whose data is not base64');
  return bytes;
}

/** The length of a frame as the server counts it: UTF-8 bytes of text, or the bytes. @param {string|Uint8Array} frame */
export function frameLength(frame) {
  return typeof frame === 'string' ? utf8Length(frame) : frame.byteLength;
}
