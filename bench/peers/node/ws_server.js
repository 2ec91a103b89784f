// Node `ws` peer for `staywire bench`: echo plus a single broadcast room.
//
// Wire protocol (JSON text frames, shared by every peer without a protocol of its own):
//   {"type":"echo",...}          -> the same frame back
//   {"type":"sub"}               -> join the room, answer {"type":"ack"}
//   {"type":"pub","data":X}      -> {"type":"msg","data":X} to every room member
//   a binary frame               -> the same binary frame to every room member
// Usage: node ws_server.js PORT
'use strict';
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2]);
const room = new Set();
const ACK = Buffer.from('{"type":"ack"}');

const wss = new WebSocketServer({
  host: '127.0.0.1', port, backlog: 4096, perMessageDeflate: false, clientTracking: false,
});

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      // binfanout: a binary frame is broadcast to the room as it came, one buffer for all.
      for (const member of room) member.send(data, { binary: true });
      return;
    }
    let m;
    try { m = JSON.parse(data); } catch { return; }
    if (m === null || typeof m !== 'object') return;
    switch (m.type) {
      case 'echo':
        ws.send(data, { binary: isBinary });
        break;
      case 'sub':
        room.add(ws);
        ws.send(ACK, { binary: false });
        break;
      case 'pub': {
        // Encoded once, sent to every member (as ws's broadcast example does).
        const out = Buffer.from(JSON.stringify({ type: 'msg', data: m.data }));
        for (const member of room) member.send(out, { binary: false });
        break;
      }
      default:
        break;
    }
  });
  ws.on('close', () => room.delete(ws));
  ws.on('error', () => room.delete(ws));
});

wss.on('listening', () => process.stdout.write(`listening ${port}\n`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
