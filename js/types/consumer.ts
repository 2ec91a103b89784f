// An application written against staywire.d.ts, as a bundler user would write it: it must
// type-check (strict), so the declarations cover what docs/client-browser.md shows.
import {
  CHANNEL_PATTERN, Client, CloseCode, ConnectionClosed, ErrorCode, MAX_ID, QueueFull,
  ReconnectFailed, RequestError, SUBPROTOCOL, SUBPROTOCOLS, TransferError, Unauthorized,
  WriteAheadStore, IdbStore, connect, reconnectPolicy,
} from '../../src/staywire/static/staywire.js';
import type {
  ClientStatus, Position, PublishAck, Transfer, TransferResult,
} from '../../src/staywire/static/staywire.js';

interface Chat { text: string; from: string }

export async function app(): Promise<void> {
  const client = new Client('/ws', {
    token: async () => 'a token',
    share: true, maxRetries: 10, pingInterval: 30000, pongTimeout: 10000, persist: true,
    store: new WriteAheadStore(new IdbStore()), pacing: true,
  });
  client.on('status', (s: ClientStatus) => {
    const shown: string = `${s.state} ${s.rtt ?? '-'} ${s.queued} ${s.adopted} ${s.removeFailures}`;
    void shown;
  });
  client.on('error', (err) => {
    if (err instanceof Unauthorized) return;
    if (err instanceof ReconnectFailed) return;
  });
  client.on('warning', (text: string) => void text);
  await client.connect();
  const since: Position | null = null;
  const sub = await client.subscribe<Chat>('room:lobby', (data, msg) => {
    const line: string = `${msg.epoch}:${msg.offset} ${data.from}: ${data.text}`;
    void line;
  }, { since });
  try {
    const ack: PublishAck = await client.publish('room:lobby', { text: 'hi', from: 'me' });
    const where: number = ack.offset;
    void where;
  } catch (err) {
    if (err instanceof QueueFull || err instanceof RequestError || err instanceof ConnectionClosed) return;
  }
  const total: number = await client.rpc<number>('add', { a: 1, b: 2 });
  void total;
  // Bytes and transfers (docs/client-browser.md, Binary data and Transfers).
  await client.publish('thumbs:1', new Uint8Array([1, 2, 3]));
  await client.publish('thumbs:1', new Blob(['png']));
  const files = await client.subscribe('files:1', (data, msg) => {
    if (msg.binary) void new Uint8Array(data as ArrayBuffer);
  });
  files.on('transfer', async (t: Transfer) => {
    t.on('progress', ({ bytes, total }) => void [bytes, total ?? 0]);
    try {
      const blob: Blob = await t.blob();
      void [blob.size, t.meta, t.sha256, t.state];
    } catch (err) {
      if (err instanceof TransferError) void err.code;
    }
  });
  const max: number = client.status.binary?.max_data_size ?? 0;
  const sent: TransferResult = await client.sendTransfer('files:1', new Blob(['x']), {
    meta: { name: 'x.txt' }, onProgress: ({ bytes }) => void [bytes, max],
  });
  void [sent.sha256, sent.chunks, files.transfers.size, SUBPROTOCOLS.length];
  await sub.unsubscribe();
  const policy: 'never' | 'backoff' | 'new_token' = reconnectPolicy(CloseCode.SLOW_CONSUMER);
  const ok: boolean = CHANNEL_PATTERN.test('room') && MAX_ID > 0 && SUBPROTOCOL.length > 0;
  void [policy, ok, ErrorCode.FORBIDDEN];
  await connect('/ws').close();
}
