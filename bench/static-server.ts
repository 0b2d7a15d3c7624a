/**
 * The raw file-serving baseline: a minimal Node http server streaming files of one directory with fs streams.
 * Same runtime as our cache, no cache logic: the practical limit a Node server reaches for warm blobs here.
 * Usage: static-server <dir> — prints the port it listens on (127.0.0.1) as its first line.
 */
import { createReadStream, stat } from 'node:fs';
import { createServer } from 'node:http';
import { basename, join } from 'node:path';

// 1 MiB reads rather than the 64 KiB default: fewer event-loop turns per blob, measurably faster here for one client.
const CHUNK = 1 << 20;
const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: static-server <dir>\n');
  process.exit(2);
}

const server = createServer((req, res) => {
  const path = join(dir, basename(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)));
  stat(path, (err, st) => {
    if (err || !st.isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': st.size });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    // No 1 MiB buffer for a 1 KiB file (the manifest baseline of row 4): reads are the file's size, up to CHUNK.
    createReadStream(path, { highWaterMark: Math.max(1, Math.min(CHUNK, st.size)) })
      .on('error', () => res.destroy())
      .pipe(res);
  });
});

server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`${typeof address === 'object' && address ? address.port : 0}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
