// Types of the Staywire browser client (staywire.js). Hand-written beside the module, which
// carries the same types as JSDoc; see docs/client-browser.md.

/** The connection's states (the same four as the Python client). */
export declare const State: Readonly<{
  CONNECTING: 'CONNECTING';
  OPEN: 'OPEN';
  RECONNECTING: 'RECONNECTING';
  CLOSED: 'CLOSED';
}>;
export type ConnectionState = 'CONNECTING' | 'OPEN' | 'RECONNECTING' | 'CLOSED';

export declare const SubscriptionState: Readonly<{ JOINING: 'joining'; LIVE: 'live'; CLOSED: 'closed' }>;

/** Close codes and error codes, generated from the server's enum (codes.js). */
export declare const CloseCode: Readonly<{
  NORMAL: 1000; GOING_AWAY: 1001; PROTOCOL_ERROR: 1002; ABNORMAL: 1006; INVALID_TEXT: 1007;
  POLICY_VIOLATION: 1008; MESSAGE_TOO_BIG: 1009; INTERNAL_ERROR: 1011; SERVICE_RESTART: 1012;
  TRY_AGAIN_LATER: 1013; HEARTBEAT_TIMEOUT: 4000; SLOW_CONSUMER: 4008; FORCE_RECONNECT: 4010;
  RATE_LIMITED: 4029; TOKEN_EXPIRED: 4401; PROTOCOL_VIOLATION: 4500; UNAUTHORIZED: 4501;
  FORBIDDEN: 4503; AUTH_TIMEOUT: 4508; FORCE_DISCONNECT: 4510;
}>;
export declare const ErrorCode: Readonly<Record<
  'BAD_REQUEST' | 'UNKNOWN_TYPE' | 'BINARY_UNSUPPORTED' | 'RATE_LIMITED' | 'FORBIDDEN' |
  'NOT_SUBSCRIBED' | 'ALREADY_SUBSCRIBED' | 'TOO_MANY_SUBSCRIPTIONS' | 'UNKNOWN_METHOD' |
  'CHANNEL_FULL' | 'INVALID_PARAMS' | 'UNAUTHORIZED' | 'UNAVAILABLE' | 'PRESENCE_DISABLED' |
  'INTERNAL' | 'TRANSFER_ORDER' | 'TRANSFER_UNKNOWN' | 'TRANSFER_TOO_LARGE' |
  'TRANSFER_CORRUPT' | 'TRANSFER_TIMEOUT',
  string>>;
/** What a client does after a close with `code`. */
export declare function reconnectPolicy(code: number): 'never' | 'backoff' | 'new_token';
/** The WebSocket subprotocol of protocol v1. */
export declare const SUBPROTOCOL: string;
/** What the client offers, best first: `staywire.v2` (binary frames), then `staywire.v1`. */
export declare const SUBPROTOCOLS: readonly string[];
/** What a channel name must match; subscribe() and publish() reject others with a RangeError. */
export declare const CHANNEL_PATTERN: RegExp;
/** The largest id or offset: exact in a JavaScript number. */
export declare const MAX_ID: number;

export declare const VERSION: string;

/** A position in a channel's stream: the last publication delivered. */
export interface Position {
  epoch: string;
  offset: number;
}

export interface Publication<T = unknown> {
  channel: string;
  epoch: string;
  offset: number;
  /** An ArrayBuffer when `binary` is true. */
  data: T;
  /** Published as bytes (a binary frame, or base64 on a v1 connection). */
  binary?: boolean;
}

/** What the connection allows for binary data (welcome.binary); transfer_timeout in seconds. */
export interface BinaryLimits {
  max_data_size: number;
  max_transfer_size: number;
  transfer_timeout: number;
  /** Chunks a publisher keeps unacknowledged at most. */
  transfer_window?: number;
}

export interface TransferProgress {
  bytes: number;
  /** The whole payload's length, when the publisher said it. */
  total: number | null;
}

export interface TransferOptions {
  /** Any JSON (at most 1 KiB), given to every receiver: say `{name, type}`. */
  meta?: unknown;
  onProgress?: (progress: TransferProgress) => void;
  /** The transfer's id (1-64 of A-Z a-z 0-9 _ -, unique per channel); default: random. */
  id?: string;
  /** Chunks unacknowledged at most (default and bound: the server's transfer_window, 8). */
  window?: number;
  /** The length of a ReadableStream source, when known (a Blob's is). */
  size?: number;
}

export interface TransferResult {
  transfer: string;
  channel: string;
  size: number;
  /** Hex SHA-256 of the whole payload. */
  sha256: string;
  chunks: number;
  /** Where the last chunk is in the channel. */
  epoch: string;
  offset: number;
}

export interface TransferEvents {
  progress: (progress: TransferProgress) => void;
  complete: (transfer: Transfer) => void;
  error: (err: TransferError) => void;
}

/** A transfer being received on a subscription ('transfer' event). */
export declare class Transfer extends Emitter<TransferEvents> {
  /** Made by a Subscription at a transfer's first chunk, not by applications. */
  constructor(channel: string, first: { transfer: string; seq: number; at: number; size?: number; meta?: any },
    position: Position);
  readonly channel: string;
  readonly id: string;
  readonly meta: any;
  readonly size: number | null;
  readonly position: Position;
  readonly bytes: number;
  readonly state: 'receiving' | 'complete' | 'failed';
  /** Set once complete and checked. */
  readonly sha256: string | null;
  readonly error: TransferError | null;
  /** The payload as it arrives; errors (never closes) when it cannot complete. */
  readonly stream: ReadableStream<Uint8Array>;
  /** Resolves once complete with the digest checked. */
  readonly done: Promise<Transfer>;
  /** The whole payload once complete (reads `stream`: use one or the other). */
  blob(): Promise<Blob>;
}

export interface PublishAck {
  epoch: string;
  offset: number;
  /** The key was seen before: this is the ack of the first publish, nothing was published again. */
  duplicate: boolean;
}

export interface RecoveryEvent {
  channel: string;
  /** Always false: the event only fires when publications may be missing. */
  recovered: false;
  /** The stream was recreated (a server restart): the new one is delivered from its start. */
  epochChanged: boolean;
  previous: Position | null;
  position: Position | null;
}

export type TokenProvider = () => string | null | undefined | Promise<string | null | undefined>;

export interface ClientOptions {
  /** A token, or a function called on every (re)connect and before `exp` to refresh. */
  token?: string | null | TokenProvider;
  /** 'message' (default): `{type: "auth"}` as the first frame; 'query': `?token=` (proxies may log it). */
  tokenIn?: 'message' | 'query';
  /** Extra query parameters of the handshake (say, `client` for sticky routing). */
  params?: Record<string, string>;
  /** One connection for all tabs of the origin (default true, where Web Locks and BroadcastChannel exist). */
  share?: boolean;
  /** Keep unacknowledged publishes in IndexedDB, written ahead to localStorage (default true). */
  persist?: boolean;
  /** Where the outbox is kept (default: a WriteAheadStore over an IdbStore, or memory without IndexedDB). */
  store?: OutboxStore;
  /** Failed reconnects in a row before giving up (default 10; Infinity: never). */
  maxRetries?: number;
  /** The reconnect policy (default: 1 s doubling to 30 s, times 0.5 + random()). */
  backoff?: Backoff;
  /** Heartbeat ping interval, ms (default 30000). */
  pingInterval?: number;
  /** Nothing back within this long after a ping: the link is dead, ms (default 10000). */
  pongTimeout?: number;
  /** A heartbeat timer firing later than this is "very late": the link gets a fresh chance, ms (default 1000). */
  lateSlack?: number;
  /** Refresh the token this long before `expires_at`, ms (default 30000). */
  refreshMargin?: number;
  /** How long to wait for `welcome` after the upgrade, ms (default 15000). */
  welcomeTimeout?: number;
  /** Send-side backpressure on WebSocket.bufferedAmount, bytes (default 1 MiB and 256 KiB). */
  highWaterMark?: number;
  lowWaterMark?: number;
  /** Pace publishes under the rate limit the server's `welcome` announces, so they wait
   * instead of being refused and land in order (default true). */
  pacing?: boolean;
  /** Timeout of sub/unsub/rpc requests, ms (default 10000). */
  timeout?: number;
  /** Outbox bound: messages (default 10000) and bytes (default 16 MiB), as the Python client. */
  maxQueue?: number;
  maxQueueBytes?: number;
  /** This tab's id (default: random). */
  tabId?: string;
  /** Replacements for the browser's WebSocket, navigator.locks and BroadcastChannel (tests). */
  WebSocket?: unknown;
  locks?: unknown;
  BroadcastChannel?: unknown;
}

export interface ClientStatus {
  state: ConnectionState;
  tabId: string;
  /** The tab holding the connection. */
  leader: string | null;
  isLeader: boolean;
  shared: boolean;
  /** Unique per connection; changes on every reconnect. */
  connId: string | null;
  /** The server's id of the connection (welcome `client`): a presence member's `client`. */
  clientId: string | null;
  /** Round-trip time of the last heartbeat, ms. */
  rtt: number | null;
  /** Failed reconnects in a row. */
  attempts: number;
  /** When the next reconnect runs (ms since the epoch), or null. */
  retryAt: number | null;
  retryDelay: number | null;
  /** Publishes of this tab not yet acknowledged. */
  queued: number;
  /** The send buffer is over its high-water mark. */
  paused: boolean;
  bufferedAmount: number;
  /** Times a late heartbeat timer gave the link a fresh chance. */
  lateFires: number;
  /** Publishes of closed tabs (or earlier page loads) sent by this connection. */
  adopted: number;
  /** Removals of acknowledged publishes from the outbox's store that failed (each retried). */
  removeFailures: number;
  lastClose: { code: number; reason: string } | null;
  session: string | null;
  /** What the open connection allows for binary data and transfers; null under v1. */
  binary: BinaryLimits | null;
  error: Error | null;
}

export interface ClientEvents {
  state: (state: ConnectionState, previous: ConnectionState) => void;
  status: (status: ClientStatus) => void;
  open: (connId: string) => void;
  leader: (info: { leader: string; isLeader: boolean }) => void;
  rtt: (ms: number | null) => void;
  recovery: (info: RecoveryEvent) => void;
  outbox: (size: number) => void;
  /** A publication of a channel the server subscribed this client to (`serverSubscriptions`). */
  publication: (data: any, msg: Publication) => void;
  /** The server subscribed this client to a channel (the connect proxy's answer, or the
   * server API's `subscribe` while connected). */
  serverSubscription: (sub: Subscription) => void;
  /** Terminal: ConnectionClosed, Unauthorized or ReconnectFailed. */
  error: (err: Error) => void;
  warning: (message: string) => void;
}

declare class Emitter<Events extends { [K in keyof Events]: (...args: any[]) => void }> {
  on<K extends keyof Events>(event: K, listener: Events[K]): () => void;
  once<K extends keyof Events>(event: K, listener: Events[K]): () => void;
  off<K extends keyof Events>(event: K, listener: Events[K]): void;
}

/** One client of one user on a presence channel (docs/protocol.md, *Presence*). */
export interface Member {
  client: string;
  /** "" for anonymous connections. */
  user: string;
  /** The connection's data from the application's backend (connect proxy), when small. */
  info?: unknown;
}

/** A `join` or `leave` event: a user's first client joined, or its last one left. */
export interface PresenceEvent extends Member {
  channel: string;
}

export interface PresenceInfo {
  clients: number;
  users: number;
  members: Member[];
  /** The channel is over its `presence_max_members`: counts only, `members` is empty. */
  stats_only?: boolean;
}

export interface SubscriptionEvents {
  message: (data: any, msg: Publication) => void;
  /** Channels with `join_leave`: a user's first client joined. */
  join: (member: PresenceEvent) => void;
  /** Channels with `join_leave`: a user's last client left (after the server's grace period). */
  leave: (member: PresenceEvent) => void;
  recovery: (info: RecoveryEvent) => void;
  joined: (info: { channel: string; recovered: boolean; first: boolean }) => void;
  error: (err: Error) => void;
  /** The server ended it (the server API's `unsubscribe`): no error, nothing more follows. */
  end: (info: { channel: string }) => void;
  /** A transfer started on the channel (its first chunk). */
  transfer: (transfer: Transfer) => void;
}

export declare class Subscription extends Emitter<SubscriptionEvents> {
  /** Made by `Client.subscribe`, not by applications. */
  constructor(channel: string, options?: {
    since?: Position | null; unsubscribe?: (sub: Subscription) => Promise<void>;
    presence?: (channel: string, stats: boolean) => Promise<any>;
    transferTimeout?: () => number;
  });
  readonly channel: string;
  /** The last publication delivered in this tab. */
  readonly position: Position | null;
  readonly state: 'joining' | 'live' | 'closed';
  readonly delivered: number;
  /** Subscribed by the server (`Client.serverSubscriptions`), not by `subscribe()`. */
  readonly serverSide: boolean;
  /** The transfers under way on the channel, by id. */
  readonly transfers: Map<string, Transfer>;
  /** Resolves at the first ack. */
  readonly ready: Promise<Subscription>;
  /** Who is subscribed (channels with `presence`); rejects with `presence_disabled` elsewhere. */
  presence(): Promise<PresenceInfo>;
  presenceStats(): Promise<{ clients: number; users: number }>;
  unsubscribe(): Promise<void>;
}

export declare class Client extends Emitter<ClientEvents> {
  constructor(url: string, options?: ClientOptions);
  readonly url: string;
  readonly tabId: string;
  readonly shared: boolean;
  readonly state: ConnectionState;
  readonly leader: string | null;
  readonly isLeader: boolean;
  readonly status: ClientStatus;
  readonly error: Error | null;
  /**
   * The channels the server subscribed this client to (welcome.server_subs, and the server
   * API's `subscribed`/`unsubscribed` while connected), recovered after every reconnect like
   * the client's own subscriptions.
   */
  readonly serverSubscriptions: Map<string, Subscription>;
  /** Resolves when first OPEN; rejects on a terminal close or when the retry budget is spent. */
  connect(): Promise<void>;
  subscribe<T = any>(
    channel: string,
    handler?: (data: T, msg: Publication<T>) => void,
    options?: { since?: Position | null },
  ): Promise<Subscription>;
  subscription(channel: string): Subscription | undefined;
  /**
   * Exactly once: kept with an idempotency key until acknowledged. Accepted before it returns:
   * written to localStorage synchronously (then IndexedDB), so a reload cannot lose it;
   * rejects with QueueFull, keeping nothing, over the outbox's or the write-ahead's bound.
   * An ArrayBuffer, typed array, DataView or Blob is published as bytes (a Blob once read).
   */
  publish(channel: string, data: unknown, options?: { key?: string }): Promise<PublishAck>;
  /** A Blob, File or ReadableStream of any size as one transfer, in chunks; resumed after reconnects. */
  sendTransfer(channel: string, source: Blob | ReadableStream<ArrayBuffer | ArrayBufferView>,
    options?: TransferOptions): Promise<TransferResult>;
  /** Resolves when the send buffer is under its low-water mark. */
  writable(): Promise<void>;
  rpc<T = any>(method: string, data: unknown, options?: { timeout?: number }): Promise<T>;
  /** Drops the connection as a network failure would; it reconnects with backoff. */
  cut(): void;
  close(): Promise<void>;
}

/** Creates a client and starts connecting. */
export declare function connect(url: string, options?: ClientOptions): Client;

export declare class Backoff {
  constructor(options?: {
    base?: number; factor?: number; cap?: number; maxRetries?: number; jitter?: boolean;
    random?: () => number;
  });
  readonly base: number;
  readonly factor: number;
  readonly cap: number;
  readonly maxRetries: number;
  readonly jitter: boolean;
  readonly random: () => number;
  nominal(attempt: number): number;
  /** The delay before the 1-based attempt, or null when the budget is spent. */
  delay(attempt: number): number | null;
}
export declare function jittered(ms: number, random?: () => number): number;

export interface OutboxRecord {
  key: string;
  seq: number;
  channel: string;
  /** The JSON text of the data, or with `binary` the base64 of its bytes. */
  data: string;
  binary?: boolean;
  size: number;
  owner: string;
  target: string;
  createdAt: number;
}
export interface OutboxStore {
  add(record: OutboxRecord): Promise<void>;
  remove(key: string): Promise<void>;
  all(): Promise<OutboxRecord[]>;
  /**
   * Optional, synchronous: true once `record` is durable (the store then keeps it by itself),
   * false when it cannot be done here (`add` is used instead); throws to refuse it.
   */
  write?(record: OutboxRecord): boolean;
  /** Optional: hands whatever is buffered to durable storage now. */
  flush?(): Promise<void>;
  /**
   * Optional: keys acknowledged whose record the store still holds (a delete that failed);
   * the connection's sweep removes them again.
   */
  acknowledged?(): Promise<string[]>;
}
/** The part of localStorage the write-ahead uses. */
export interface SyncStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
  key(index: number): string | null;
  readonly length: number;
}
export declare class MemoryStore implements OutboxStore {
  add(record: OutboxRecord): Promise<void>;
  remove(key: string): Promise<void>;
  all(): Promise<OutboxRecord[]>;
}
export declare class IdbStore implements OutboxStore {
  constructor(name?: string);
  static available(): boolean;
  readonly name: string;
  /** Resolves once the database is open. */
  ready(): Promise<void>;
  add(record: OutboxRecord): Promise<void>;
  /** One transaction; resolves once it has committed. */
  addMany(records: OutboxRecord[]): Promise<void>;
  remove(key: string): Promise<void>;
  all(): Promise<OutboxRecord[]>;
  close(): void;
}
/**
 * localStorage in front of a slower store (IndexedDB): `write` makes a record durable
 * synchronously, a microtask later it is copied to `backing` in one transaction per batch and
 * removed from localStorage once that committed (or once `remove`d). `all` merges both.
 */
export declare class WriteAheadStore implements OutboxStore {
  constructor(backing: OutboxStore & { name?: string; addMany?(records: OutboxRecord[]): Promise<void>;
    ready?(): Promise<void> }, options?: {
    /** Default: the page's localStorage; null: no write-ahead. */
    storage?: SyncStorage | null;
    /** Items are `<name>:wal:<key>` and `<name>:acked:<key>` (default: the backing store's name, or "staywire"). */
    name?: string;
    /** Bound of this tab's records not yet committed: messages (default 10000), UTF-16 code units (default 1 MiB). */
    maxMessages?: number;
    maxBytes?: number;
    /** After a failed copy, try again this much later, ms (default 1000). */
    retryDelay?: number;
  });
  /** This tab's records in localStorage, and their size. */
  readonly size: number;
  readonly bytes: number;
  write(record: OutboxRecord): boolean;
  add(record: OutboxRecord): Promise<void>;
  /**
   * Marks `key` acknowledged in localStorage (so `all` skips it from then on, on every page),
   * then deletes it everywhere; the mark is cleared once the delete committed.
   */
  remove(key: string): Promise<void>;
  /** Every record not acknowledged, of every tab. */
  all(): Promise<OutboxRecord[]>;
  acknowledged(): Promise<string[]>;
  flush(): Promise<void>;
  close(): void;
}
export declare class Outbox {
  constructor(options?: {
    maxMessages?: number; maxBytes?: number; store?: OutboxStore | null; owner?: string;
    target?: string; now?: () => number;
    /** A removal from the store failed; it is tried again unless `final`. */
    onStoreError?: (err: unknown, key: string, attempt: number, final: boolean) => void;
  });
  readonly size: number;
  readonly bytes: number;
  /** Removals from the store that failed so far (each retried). */
  readonly removeFailures: number;
  /** Stops retrying failed removals. */
  close(): void;
}

/** Whether this page can share one connection with its other tabs. */
export declare function sharingSupported(env?: { locks?: unknown; BroadcastChannel?: unknown }): boolean;

export declare class StaywireError extends Error {}
export declare class ClientError extends StaywireError {}
export declare class ConnectionClosed extends ClientError {
  constructor(code: number, reason?: string);
  readonly code: number;
  readonly reason: string;
}
/** Closed with 4501 or 4503: do not retry without new credentials. */
export declare class Unauthorized extends ConnectionClosed {}
/** `maxRetries` reconnects failed in a row. */
export declare class ReconnectFailed extends ConnectionClosed {
  constructor(code: number, reason: string, attempts: number);
  readonly attempts: number;
}
/** The server answered `error`; the connection stays open. */
export declare class RequestError extends ClientError {
  constructor(code: string, reason?: string);
  readonly code: string;
  readonly reason: string;
}
export declare class RequestTimeout extends ClientError {}
/** The outbox is at its bound: nothing was queued. */
export declare class QueueFull extends ClientError {}
/** A transfer that cannot complete: transfer_order, transfer_timeout, transfer_corrupt, ... */
export declare class TransferError extends ClientError {
  constructor(code: string, reason?: string);
  readonly code: string;
  readonly reason: string;
}

// Only what is marked export above is exported (Emitter is not).
export {};
