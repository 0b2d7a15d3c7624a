/*
 * Bench-only prototype (issue 20): `node -r bench/sendfile/preload.js dist/bin/dtr-cache.js serve ...` sends a whole
 * stored blob over plain HTTP with sendfile(2) (bench/sendfile/sendfile.c, the addon at $DTR_BENCH_SENDFILE_ADDON)
 * instead of reading it through Node. It replaces BlobHandler's private send() of that CLI's build:
 * only a stored file reader (a hit needing no digest check) to a plain TCP socket takes the new path; TLS, ranges
 * being verified, fills and everything else keep the original. cluster workers inherit the -r flag.
 */
'use strict';
const { dirname, join } = require('node:path');

const addon = require(process.env.DTR_BENCH_SENDFILE_ADDON);
const lib = join(dirname(process.argv[1]), '../lib/cache');
const { BlobHandler } = require(join(lib, 'blobs'));
const { FileReader } = require(join(lib, 'storage/file-reader'));
const original = BlobHandler.prototype.send;

BlobHandler.prototype.send = function send(stream, res, source, done) {
  const socket = res.socket;
  const out = socket && !socket.encrypted && socket._handle ? socket._handle.fd : -1;
  const length = Number(res.getHeader('content-length'));
  // The reader's descriptor and position are private to the build; a prototype may reach for them.
  if (!(stream instanceof FileReader) || !(out >= 0) || !Number.isSafeInteger(length))
    return original.call(this, stream, res, source, done);
  const fd = stream.handle.fd;
  res.flushHeaders();
  const start = () =>
    addon.sendFile(out, fd, stream.position, length, (err, sent) => {
      this.ctx.events.emit('served', { source, bytes: sent });
      stream.destroy(); // closes the file
      done();
      if (err) res.destroy();
      else res.end();
    });
  // The headers first: the thread writes to the socket only once Node's own queue is empty.
  if (socket.writableLength > 0) socket.once('drain', start);
  else start();
};
