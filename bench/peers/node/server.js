// simple-hl7 (npm) MLLP server as users would write it: parse each message, answer with the
// library's HL7 ACK (MSA-1 AA). Usage: node server.js PORT
'use strict';
const hl7 = require('simple-hl7');

const port = parseInt(process.argv[2] || '7777', 10);
const app = hl7.tcp();
app.use(function (req, res, next) {
  res.end();
});
app.use(function (err, req, res, next) {
  if (err) console.error(String(err));
});
const server = app.start(port);
server.server.on('listening', () => {
  console.log('listening on 127.0.0.1:' + server.server.address().port);
});
