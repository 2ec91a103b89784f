// Node socket.io peer for `staywire bench` (WebSocket transport only).
//
// Events: "echo" (emitted back to the sender), "sub" (join the room; acked),
// "pub" (emitted as "msg" to the room).
// Usage: node socketio_server.js PORT
'use strict';
const http = require('http');
const { Server } = require('socket.io');

const port = Number(process.argv[2]);
const httpServer = http.createServer();
const io = new Server(httpServer, {
  transports: ['websocket'], serveClient: false, perMessageDeflate: false,
});

io.on('connection', (socket) => {
  socket.on('echo', (data) => socket.emit('echo', data));
  socket.on('sub', (ack) => {
    socket.join('room');
    if (typeof ack === 'function') ack();
  });
  socket.on('pub', (data) => io.to('room').emit('msg', data));
});

httpServer.listen(port, '127.0.0.1', 4096, () => process.stdout.write(`listening ${port}\n`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
