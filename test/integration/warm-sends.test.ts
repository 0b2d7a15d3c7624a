/**
 * Warm blobs sent from storage (lib/cache/storage/file-reader.ts: reads on the event loop into buffers reused once
 * the socket has them), in front of a real distribution 2.8 upstream, with real clients (curl, skopeo):
 * - whole blobs and ranges of a filesystem hit arrive with the right bytes, over plain HTTP and TLS, counted in
 *   dtr_cache_served_bytes_total{source="storage"};
 * - a keep-alive connection goes on after such a response (curl reuses it for the next GET);
 * - stalled clients hold no thread (more than libuv's 4, and other GETs are still served); a client that resets or
 *   closes mid-transfer leaves no descriptor of the blob open, its bytes are counted, and the server keeps serving;
 * - a drain (SIGTERM's path) waits for a send in flight, which completes, and cuts one still stalled at its deadline.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { drain } from '../../lib/cache/drain';
import { blobKey, parseDigest } from '../../lib/cache/reference';
import { startCache, type TestCache } from '../support/cache-server';
import { curl, metric } from '../support/curl';
import { makeImage, pushBlob, pushImage } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { requireTool, sleep, waitFor } from '../../harness/tools';

const run = promisify(execFile);
const MiB = 2 ** 20;
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

const storageBytes = (cache: TestCache) => metric(cache.url, 'dtr_cache_served_bytes_total{source="storage"}');

function storedFile(root: string, digest: string): string {
  const parsed = parseDigest(digest);
  if (!parsed.ok) throw new Error(`bad digest ${digest}`);
  return join(root, blobKey(parsed.value));
}

/** Descriptors this process (the cache runs in it) holds on `path`. */
function descriptorsOf(path: string): number {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === path;
    } catch {
      return false;
    }
  }).length;
}

/** A raw HTTP/1.1 GET that reads `readFirst` bytes of the response and then stops reading (the socket stays open). */
async function stalledGet(url: string, readFirst: number): Promise<{ socket: Socket; received: () => Buffer }> {
  const { hostname, port, pathname } = new URL(url);
  const socket = connect(Number(port), hostname);
  socket.on('error', () => undefined);
  const chunks: Buffer[] = [];
  let length = 0;
  const onData = (chunk: Buffer) => {
    chunks.push(chunk);
    length += chunk.length;
    if (length < readFirst) return;
    socket.pause();
    socket.off('data', onData);
    socket.on('data', (more: Buffer) => void chunks.push(more)); // read once resumed
  };
  socket.on('data', onData);
  socket.write(`GET ${pathname} HTTP/1.1\r\nHost: ${hostname}:${port}\r\n\r\n`);
  await waitFor(`${readFirst} bytes of ${pathname}`, async () => length >= readFirst, 15_000);
  return { socket, received: () => Buffer.concat(chunks) };
}

/** The body of a raw HTTP response (after the blank line). */
const bodyOf = (response: Buffer) => response.subarray(response.indexOf('\r\n\r\n') + 4);

describe('warm blobs sent from storage', () => {
  let upstream: TestRegistry;
  let cache: TestCache;
  let work: string;
  const caches: TestCache[] = [];
  const blobs = { big: randomBytes(48 * MiB + 5), small: randomBytes(3 * MiB + 7) };
  const digests: Record<keyof typeof blobs, string> = { big: '', small: '' };
  const url = (c: TestCache, name: keyof typeof blobs) => `${c.url}/v2/team/app/blobs/${digests[name]}`;
  const start = async (root?: string, http = {}) => {
    const c = await startCache([upstream.url], { scrubrate: '0' }, root, http);
    caches.push(c);
    return c;
  };

  beforeAll(async () => {
    requireTool('curl');
    upstream = await TestRegistry.start();
    for (const name of Object.keys(blobs) as (keyof typeof blobs)[]) digests[name] = await pushBlob(upstream.url, 'team/app', blobs[name]);
    work = mkdtempSync(join(tmpdir(), 'dtr-cache-warm-sends-'));
    cache = await start();
    // Cold: filled from the upstream (streamed), verified, committed.
    for (const name of ['big', 'small'] as const) expect(sha((await curl(url(cache, name))).body)).toBe(digests[name]);
    await cache.server.idle();
  });
  afterAll(async () => {
    for (const c of caches) await c.stop().catch(() => undefined);
    await upstream?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('sends whole blobs and ranges with the right bytes, counted in /metrics', async () => {
    const before = await storageBytes(cache);
    let sent = 0;
    for (const name of ['big', 'small'] as const) {
      const got = await curl(url(cache, name));
      expect(got.code).toBe(0);
      expect(sha(got.body)).toBe(digests[name]);
      sent += blobs[name].length;
    }
    const big = blobs.big;
    const ranges: [string, Buffer][] = [
      ['0-0', big.subarray(0, 1)],
      ['1000-2000999', big.subarray(1000, 2001000)],
      [`${big.length - 12345}-`, big.subarray(big.length - 12345)],
      ['-777', big.subarray(big.length - 777)],
    ];
    for (const [range, expected] of ranges) {
      const got = await curl(url(cache, 'big'), ['-r', range]);
      expect(got.code).toBe(0);
      expect(got.body.length).toBe(expected.length);
      expect(sha(got.body)).toBe(sha(expected));
      sent += expected.length;
    }
    expect((await storageBytes(cache)) - before).toBe(sent);
  });

  it('keeps a keep-alive connection going after a blob from storage', async () => {
    const a = join(work, 'a');
    const b = join(work, 'b');
    const c = join(work, 'c');
    // One curl, three GETs on one connection: a whole blob, a range, another blob (num_connects 0 = reused).
    const { stdout } = await run(requireTool('curl'), [
      ...['-s', '--max-time', '60', '-w', '%{http_code} %{num_connects}\\n', '-o', a, url(cache, 'small')],
      ...['--next', '-s', '-w', '%{http_code} %{num_connects}\\n', '-r', '5-1048580', '-o', b, url(cache, 'big')],
      ...['--next', '-s', '-w', '%{http_code} %{num_connects}\\n', '-o', c, url(cache, 'big')],
    ]);
    expect(stdout.trim().split('\n')).toEqual(['200 1', '206 0', '200 0']);
    expect(sha(readFileSync(a))).toBe(digests.small);
    expect(sha(readFileSync(b))).toBe(sha(blobs.big.subarray(5, 1048581)));
    expect(sha(readFileSync(c))).toBe(digests.big);
  });

  it('holds no thread for stalled clients; one that leaves mid-transfer frees its file, is counted, and the server goes on', async () => {
    const file = storedFile(cache.root, digests.big);
    const before = await storageBytes(cache);
    // More stalled transfers than libuv's 4 threadpool threads: file operations (stat, open) must still run.
    const stalled = await Promise.all(Array.from({ length: 6 }, () => stalledGet(url(cache, 'big'), MiB)));
    await sleep(300);
    expect(descriptorsOf(file)).toBe(6);
    const small = await curl(url(cache, 'small'));
    expect(small.code).toBe(0);
    expect(sha(small.body)).toBe(digests.small);
    // Leaving: three reset, three close (unread bytes make the kernel reset those too).
    stalled.forEach(({ socket }, i) => (i % 2 ? socket.resetAndDestroy() : socket.destroy()));
    await waitFor('the stalled transfers to end', async () => descriptorsOf(file) === 0 && cache.server.requestsInFlight() === 0, 10_000);
    const counted = (await storageBytes(cache)) - before - blobs.small.length;
    expect(counted).toBeGreaterThanOrEqual(6 * MiB); // at least what the clients read
    expect(counted).toBeLessThan(6 * blobs.big.length);
    const again = await curl(url(cache, 'big'));
    expect(again.code).toBe(0);
    expect(sha(again.body)).toBe(digests.big);
  });

  it('drains: a send in flight completes before the server closes; one stalled past the deadline is cut', async () => {
    const root = mkdtempSync(join(work, 'drain-'));
    const c = await start(root);
    expect(sha((await curl(url(c, 'big'))).body)).toBe(digests.big); // fill (verified)
    await c.server.idle();
    let sent = 0; // /metrics is gone with the server: count the events it counts
    c.server.events.on('served', (p) => (sent += p.source === 'storage' ? p.bytes : 0));
    const reader = await stalledGet(url(c, 'big'), MiB);
    const staller = await stalledGet(url(c, 'big'), MiB);
    const drained = drain(c.server, 4000);
    await sleep(300);
    // One client reads on; the drain closes its connection once the response is complete.
    const ended = new Promise((resolve) => reader.socket.once('end', resolve));
    reader.socket.resume();
    const result = await drained;
    await ended;
    expect(result.clean).toBe(false);
    expect(result.abandoned).toEqual({ requests: 1, fills: 0 }); // the staller, cut at the deadline
    expect(sha(bodyOf(reader.received()))).toBe(digests.big);
    await waitFor('the cut transfer to end', async () => descriptorsOf(storedFile(root, digests.big)) === 0, 5000);
    expect(sent).toBeGreaterThan(blobs.big.length + MiB);
    expect(sent).toBeLessThan(2 * blobs.big.length);
    staller.socket.destroy();
  });

  it('sends whole blobs and ranges over TLS with the right bytes', async () => {
    const dir = mkdtempSync(join(work, 'tls-'));
    execFileSync(requireTool('openssl'), ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'key.pem', '-out', 'cert.pem',
      '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { cwd: dir, stdio: 'ignore' }); // prettier-ignore
    const tls = await start(undefined, { tls: { certificate: join(dir, 'cert.pem'), key: join(dir, 'key.pem') } });
    expect(sha((await curl(url(tls, 'big'), ['-k'])).body)).toBe(digests.big); // cold: the fill
    await tls.server.idle();
    const got = await curl(url(tls, 'big'), ['-k']);
    expect(got.code).toBe(0);
    expect(sha(got.body)).toBe(digests.big);
    const range = await curl(url(tls, 'big'), ['-k', '-r', '3-2097154']);
    expect(sha(range.body)).toBe(sha(blobs.big.subarray(3, 2097155)));
    const metrics = (await curl(`${tls.url}/metrics`, ['-k'])).body.toString();
    expect(metrics).toContain(`dtr_cache_served_bytes_total{source="storage"} ${blobs.big.length + 2097152}`);
  });

  it('serves a warm skopeo pull from storage with the digests of a direct pull', async () => {
    const skopeo = requireTool('skopeo');
    const image = makeImage({ layerSizes: [4096, 2 * MiB] });
    await pushImage(upstream.url, 'team/image', 'v1', image);
    const copy = async (host: string) => {
      const dir = mkdtempSync(join(work, 'oci-'));
      await run(skopeo, ['copy', '--src-tls-verify=false', `docker://${host}/team/image:v1`, `oci:${dir}:v1`], { timeout: 60_000 });
      return JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')).manifests[0].digest as string;
    };
    const direct = await copy(new URL(upstream.url).host);
    expect(await copy(cache.host)).toBe(direct); // cold
    await cache.server.idle();
    const before = await storageBytes(cache);
    expect(await copy(cache.host)).toBe(direct); // warm
    // The blobs (config and layers) and the manifest, all from storage.
    const blobBytes = image.blobs.reduce((sum, b) => sum + b.data.length, 0);
    expect((await storageBytes(cache)) - before).toBe(blobBytes + image.manifest.length);
  });
});
