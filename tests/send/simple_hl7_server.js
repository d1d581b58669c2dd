// An MLLP server made with simple-hl7 (npm; tests/setup.sh installs it into
// tests/send/node_modules) for the mllp-send tests: it acknowledges every message with the HL7
// ACK simple-hl7 builds itself (MSA-1 AA, MSA-2 = the message's MSH-10).
//
//   node simple_hl7_server.js
// prints "listening on PORT", then per message received "message <JSON string>": the bytes
// between the start and the end block as simple-hl7 saw them (UTF-8). Stops on SIGTERM or when
// its standard input closes.
'use strict';
const net = require('net');
const hl7 = require('simple-hl7');

// simple-hl7 listens with server.listen(port), on every interface; the tests stay on the
// loopback interface, so its listen call is pointed at 127.0.0.1.
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (port, ...rest) {
  if (typeof port === 'number') return listen.call(this, { port, host: '127.0.0.1' }, ...rest);
  return listen.call(this, port, ...rest);
};

const app = hl7.tcp();
app.use(function (req, res, next) {
  // req.raw is the frame as received, start block to end block
  const raw = req.raw.replace(/^\x0b/, '').replace(/\x1c\r$/, '');
  process.stdout.write('message ' + JSON.stringify(raw) + '\n');
  next();
});
app.use(function (req, res) {
  res.end(); // sends res.ack, the ACK simple-hl7 built
});
app.use(function (err, req, res, next) { // eslint-disable-line no-unused-vars
  process.stderr.write('simple-hl7 error: ' + (err && err.message) + '\n');
});

const server = app.start(0);
server.server.on('listening', function () {
  process.stdout.write('listening on ' + server.server.address().port + '\n');
});
process.on('SIGTERM', () => process.exit(0));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
