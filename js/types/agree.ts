// staywire.d.ts (written by hand) against the declarations TypeScript derives from the
// JavaScript itself (tsc --declaration over its JSDoc, into js/.types/): every value the
// declarations promise exists in the JavaScript with a type that satisfies them, and the
// JavaScript exports nothing the declarations leave out. scripts/check-types.sh runs it.
import * as Declared from '../../src/staywire/static/staywire.js';
import * as Actual from '../.types/staywire.js';

// Each exported value of the JavaScript is assignable to its declaration: for a class, its
// constructor's parameters and every declared member, with their types.
export const values: { [K in keyof typeof Declared]: (typeof Declared)[K] } = {
  State: Actual.State,
  SubscriptionState: Actual.SubscriptionState,
  CloseCode: Actual.CloseCode,
  ErrorCode: Actual.ErrorCode,
  reconnectPolicy: Actual.reconnectPolicy,
  SUBPROTOCOL: Actual.SUBPROTOCOL,
  SUBPROTOCOLS: Actual.SUBPROTOCOLS,
  CHANNEL_PATTERN: Actual.CHANNEL_PATTERN,
  MAX_ID: Actual.MAX_ID,
  VERSION: Actual.VERSION,
  Subscription: Actual.Subscription,
  Client: Actual.Client,
  connect: Actual.connect,
  Backoff: Actual.Backoff,
  jittered: Actual.jittered,
  MemoryStore: Actual.MemoryStore,
  IdbStore: Actual.IdbStore,
  WriteAheadStore: Actual.WriteAheadStore,
  Outbox: Actual.Outbox,
  sharingSupported: Actual.sharingSupported,
  StaywireError: Actual.StaywireError,
  ClientError: Actual.ClientError,
  ConnectionClosed: Actual.ConnectionClosed,
  Unauthorized: Actual.Unauthorized,
  ReconnectFailed: Actual.ReconnectFailed,
  RequestError: Actual.RequestError,
  RequestTimeout: Actual.RequestTimeout,
  QueueFull: Actual.QueueFull,
  TransferError: Actual.TransferError,
  Transfer: Actual.Transfer,
};

// And nothing is exported without a declaration.
type Undeclared = Exclude<keyof typeof Actual, keyof typeof Declared>;
export const undeclared: [Undeclared] extends [never] ? true : { missing: Undeclared } = true;
