// Plays Periskope's real-time API for `forward`'s tests: a socket.io 4 server (the npm
// `socket.io` package, pinned by package-lock.json) on path /socket.io/.
//
//   PERISKOPE_API_KEY=... PERISKOPE_PHONE=919...,918... node periskope-socket.js PORT FILE... [--then FILE...]
//
// A handshake without `Authorization: Bearer <key>` and an `x-phone` of PERISKOPE_PHONE is
// refused by a middleware error, which the client receives as `connect_error`. Each connection
// that is let in receives every FILE's `data` under its `event` (or `event_type`), as
// Periskope's SDK receives events (the bare object, no envelope), then one event of a name no
// client knows, then the FILEs after `--then` (a client that handles events in order has
// handled the unknown one once it handles those). PORT 0 takes a free port. Prints
// `listening on http://127.0.0.1:PORT`, then `refused`, `connected PHONE` and `emitted N` as it
// goes.
'use strict';
const fs = require('fs');
const http = require('http');
const { Server } = require('socket.io');

const [port, ...args] = process.argv.slice(2);
const then = args.indexOf('--then');
const files = then === -1 ? args : args.slice(0, then);
const filesAfter = then === -1 ? [] : args.slice(then + 1);
const key = process.env.PERISKOPE_API_KEY;
const phones = (process.env.PERISKOPE_PHONE || '').split(',').filter(Boolean);
if (port === undefined || !key || phones.length === 0) {
  console.error('usage: PERISKOPE_API_KEY=... PERISKOPE_PHONE=... node periskope-socket.js PORT FILE... [--then FILE...]');
  process.exit(2);
}

const toEvent = (file) => {
  const delivery = JSON.parse(fs.readFileSync(file, 'utf8'));
  return [delivery.event || delivery.event_type, delivery.data];
};
const events = files.map(toEvent);
events.push(['contact.merged', {
  contact_id: '919289665999@c.us',
  merged_into: '919004389372@c.us',
  org_id: '2997dd64-89bf-48d3-9a22-b314fca017e5',
}]);
events.push(...filesAfter.map(toEvent));

const server = http.createServer();
const io = new Server(server);
io.use((socket, next) => {
  const headers = socket.handshake.headers;
  if (headers.authorization === `Bearer ${key}` && phones.includes(headers['x-phone'])) {
    next();
  } else {
    console.log('refused');
    next(new Error('invalid api key or phone'));
  }
});
io.on('connection', (socket) => {
  console.log(`connected ${socket.handshake.headers['x-phone']}`);
  for (const [name, data] of events) {
    socket.emit(name, data);
  }
  console.log(`emitted ${events.length}`);
});
server.listen(Number(port), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
