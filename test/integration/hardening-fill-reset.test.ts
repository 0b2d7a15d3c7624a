/**
 * Hardening (issue 21): a failed fill of a blob the upstream sends without `Content-Length` is a failed transfer for
 * every client. The upstream is a real distribution 2.8 behind a loopback proxy that drops `Content-Length` from blob
 * answers (as some proxies in front of DTR do) and either flips one byte or cuts the body. The cache then answers
 * without a length too; a plain close would end an HTTP/1.0 response (no chunked encoding, nginx's default
 * `proxy_http_version`) exactly like a complete one, so the cache resets the connection: real curls, HTTP/1.0 and
 * HTTP/1.1, both fail, and nothing is committed.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { blobKey, parseDigest } from '../../lib/cache/reference';
import { startCache, type TestCache } from '../support/cache-server';
import { pushBlob } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { requireTool, waitFor } from '../../harness/tools';

const MiB = 1024 * 1024;

type Fault = 'flip' | 'cut';

/** Proxies to `target`; blob GETs lose their Content-Length, and `fault()` says what happens to their body. */
async function startLengthlessProxy(target: number, fault: () => Fault): Promise<{ url: string; stop(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const up = request(
      { host: '127.0.0.1', port: target, method: req.method, path: req.url, headers: req.headers },
      (answer: IncomingMessage) => {
        const blob = req.method === 'GET' && /\/blobs\/sha256:/.test(req.url ?? '') && answer.statusCode === 200;
        if (!blob) {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
          return;
        }
        const headers = { ...answer.headers };
        delete headers['content-length'];
        res.writeHead(200, headers);
        const mode = fault();
        let sent = 0;
        answer.on('data', (chunk: Buffer) => {
          if (mode === 'cut' && sent + chunk.length > MiB) {
            res.write(chunk.subarray(0, MiB - sent));
            answer.destroy();
            res.socket?.destroy(); // the upstream connection breaks mid-body
            return;
          }
          if (mode === 'flip' && sent <= 1000 && sent + chunk.length > 1000) {
            chunk = Buffer.from(chunk);
            chunk[1000 - sent] ^= 0xff;
          }
          sent += chunk.length;
          res.write(chunk);
        });
        answer.on('end', () => res.end());
      },
    );
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stop: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** A real curl GET (async: the cache runs in this process): its exit code, 0 for a complete transfer. */
function curl(url: string, args: string[]): Promise<{ code: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    execFile(requireTool('curl'), ['-s', '--max-time', '30', ...args, url], { encoding: 'buffer', maxBuffer: 64 * MiB }, (err, stdout) =>
      err && typeof err.code !== 'number' ? reject(err) : resolve({ code: err ? (err.code as number) : 0, bytes: stdout.length }),
    );
  });
}

describe('hardening: a failed fill without Content-Length resets the connection', () => {
  let upstream: TestRegistry;
  let proxy: Awaited<ReturnType<typeof startLengthlessProxy>>;
  let cache: TestCache;
  let mode: Fault = 'flip';
  const blobs: Buffer[] = [];
  const digests: string[] = [];

  beforeAll(async () => {
    requireTool('curl');
    upstream = await TestRegistry.start();
    for (let i = 0; i < 4; i++) {
      blobs.push(randomBytes(4 * MiB));
      digests.push(await pushBlob(upstream.url, 'team/app', blobs[i]));
    }
    proxy = await startLengthlessProxy(upstream.port, () => mode);
    cache = await startCache([proxy.url]);
  });
  afterAll(async () => {
    await cache?.stop();
    await proxy?.stop();
    await upstream?.stop();
  });

  const cases: [Fault, string, number][] = [
    ['flip', '--http1.0', 0],
    ['flip', '--http1.1', 1],
    ['cut', '--http1.0', 2],
    ['cut', '--http1.1', 3],
  ];
  it.each(cases)('%s upstream body, curl %s: the transfer fails and nothing is stored', async (fault, version, i) => {
    mode = fault;
    const res = await curl(`${cache.url}/v2/team/app/blobs/${digests[i]}`, [version]);
    expect(res.code).not.toBe(0); // curl 56 (connection reset) or 18 (partial): never a complete transfer
    expect(res.bytes).toBeLessThan(blobs[i].length);
    const digest = parseDigest(digests[i]);
    expect(digest.ok && existsSync(join(cache.root, blobKey(digest.value)))).toBe(false);
    await waitFor('the failed fill to be logged', async () =>
      cache.logs.some((l) => l.msg === 'blob fill failed; nothing committed' && l.digest === digests[i]),
    );
  });
});
