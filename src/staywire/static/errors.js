// The browser client's errors: the same tree as the Python client's (staywire/exceptions.py).
//
//   StaywireError
//   └── ClientError
//       ├── ConnectionClosed      the connection ended; carries code and reason
//       │   ├── Unauthorized      closed with 4501 (or 4503): needs new credentials
//       │   └── ReconnectFailed   maxRetries reconnects failed in a row
//       ├── RequestError          an `error` reply; carries its error code
//       ├── RequestTimeout        no reply within the request's timeout
//       ├── QueueFull             the outbox is at its bound
//       └── TransferError         a transfer that cannot complete; carries its code

export class StaywireError extends Error {
  /** @param {string} [message] */
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

export class ClientError extends StaywireError {}

export class ConnectionClosed extends ClientError {
  /** @param {number} code @param {string} [reason] */
  constructor(code, reason = '') {
    super(`connection closed: ${code} ${reason}`.trim());
    /** @type {number} */
    this.code = code;
    /** @type {string} */
    this.reason = reason;
  }
}

export class Unauthorized extends ConnectionClosed {}

export class ReconnectFailed extends ConnectionClosed {
  /** @param {number} code @param {string} reason @param {number} attempts */
  constructor(code, reason, attempts) {
    super(code, reason);
    /** @type {number} */
    this.attempts = attempts;
    this.message = `gave up after ${attempts} reconnect attempts; last close: ${code} ${reason}`.trim();
  }
}

export class RequestError extends ClientError {
  /** @param {string} code @param {string} [reason] */
  constructor(code, reason = '') {
    super(reason ? `${code}: ${reason}` : code);
    /** @type {string} */
    this.code = code;
    /** @type {string} */
    this.reason = reason;
  }
}

export class RequestTimeout extends ClientError {}

export class QueueFull extends ClientError {}

/**
 * A transfer that cannot complete (docs/protocol.md, *Transfers*), with the error code the
 * Python client gives: `transfer_order` (a chunk is missing, say history no longer holds
 * it), `transfer_timeout` (no chunk within `transfer_timeout`), `transfer_corrupt` (the
 * digest does not match, or the server aborted it), `transfer_too_large`, or
 * `binary_unsupported` (the connection has no binary frames).
 */
export class TransferError extends ClientError {
  /** @param {string} code @param {string} [reason] */
  constructor(code, reason = '') {
    super(reason ? `${code}: ${reason}` : code);
    /** @type {string} */
    this.code = code;
    /** @type {string} */
    this.reason = reason;
  }
}

/**
 * Rebuilds an error sent between tabs (structured clone drops the class).
 * @param {{name?: string, message?: string, code?: any, reason?: string, attempts?: number}} e
 * @returns {Error}
 */
export function reviveError(e) {
  switch (e?.name) {
    case 'Unauthorized':
      return new Unauthorized(e.code, e.reason);
    case 'ReconnectFailed':
      return new ReconnectFailed(e.code, e.reason ?? '', e.attempts ?? 0);
    case 'ConnectionClosed':
      return new ConnectionClosed(e.code, e.reason);
    case 'RequestError':
      return new RequestError(e.code, e.reason);
    case 'RequestTimeout':
      return new RequestTimeout(e.message);
    case 'QueueFull':
      return new QueueFull(e.message);
    case 'TransferError':
      return new TransferError(e.code, e.reason);
    default:
      return new ClientError(e?.message ?? String(e));
  }
}

/**
 * The cloneable form of an error, for BroadcastChannel.
 * @param {any} err
 */
export function serializeError(err) {
  return {
    name: err?.name ?? 'ClientError',
    message: err?.message ?? String(err),
    code: err?.code,
    reason: err?.reason,
    attempts: err?.attempts,
  };
}
