/*
 * Bench-only prototype (issue 20): `node -r bench/sendfile/preload.js dist/bin/dtr-cache.js serve ...` sends a whole
 * stored blob over plain HTTP with sendfile(2) (bench/sendfile/sendfile.c, the addon at $DTR_BENCH_SENDFILE_ADDON)
 * instead of piping the file stream through Node. It replaces BlobHandler's private send() of that CLI's build:
 * only a plain file stream (a hit needing no digest check) to a plain TCP socket takes the new path; TLS, ranges
 * being verified, fills and everything else keep the original. cluster workers inherit the -r flag.
 */
'use strict';
const { ReadStream } = require('node:fs');
const { dirname, join } = require('node:path');

const addon = require(process.env.DTR_BENCH_SENDFILE_ADDON);
const { BlobHandler } = require(join(dirname(process.argv[1]), '../lib/cache/blobs'));
const original = BlobHandler.prototype.send;

BlobHandler.prototype.send = function send(stream, res, source, done) {
  const socket = res.socket;
  const out = socket && !socket.encrypted && socket._handle ? socket._handle.fd : -1;
  const length = Number(res.getHeader('content-length'));
  if (!(stream instanceof ReadStream) || typeof stream.fd !== 'number' || !(out >= 0) || !Number.isSafeInteger(length))
    return original.call(this, stream, res, source, done);
  res.flushHeaders();
  const start = () =>
    addon.sendFile(out, stream.fd, stream.start ?? 0, length, (err, sent) => {
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
