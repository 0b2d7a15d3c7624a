/**
 * Hardening (issue 10): eviction through the running server, with a short `blobttl` and a fast sweep.
 * - It counts from the last access, not from the fill: a blob pulled every second outlives the TTL many times over,
 *   while one filled at the same moment and never pulled again is evicted.
 * - It never deletes a blob a response is reading: a real `curl --limit-rate` reading a stored blob for longer
 *   than the TTL finds it in storage until its last byte, and gets the exact bytes.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blobKey, parseDigest } from '../../lib/cache/reference';
import { startCache, type TestCache } from '../support/cache-server';
import { pushBlob } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { requireTool, sleep, waitFor } from '../../harness/tools';

const MiB = 1024 * 1024;
const TTL_MS = 3000;
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function keyOf(digest: string): string {
  const parsed = parseDigest(digest);
  if (!parsed.ok) throw new Error(`bad digest ${digest}`);
  return blobKey(parsed.value);
}

describe('hardening: eviction from last access, never under a reader', () => {
  let upstream: TestRegistry;
  let cache: TestCache;
  let work: string;
  const hot = randomBytes(100_000);
  const cold = randomBytes(100_000);
  const large = randomBytes(32 * MiB);
  const digests: Record<string, string> = {};

  beforeAll(async () => {
    requireTool('curl');
    upstream = await TestRegistry.start();
    digests.hot = await pushBlob(upstream.url, 'team/app', hot);
    digests.cold = await pushBlob(upstream.url, 'team/app', cold);
    digests.large = await pushBlob(upstream.url, 'team/app', large);
    cache = await startCache([upstream.url], { blobttl: `${TTL_MS}ms`, sweepinterval: '300ms' });
    work = mkdtempSync(join(tmpdir(), 'dtr-cache-eviction-'));
  });
  afterAll(async () => {
    await cache?.stop();
    await upstream?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const path = (name: string) => join(cache.root, keyOf(digests[name]));
  const evictions = () => cache.logs.filter((l) => l.msg === 'evicted').map((l) => l.key as string);
  const get = async (name: string) => {
    const res = await fetch(`${cache.url}/v2/team/app/blobs/${digests[name]}`);
    const answer = { status: res.status, digest: sha(Buffer.from(await res.arrayBuffer())) };
    // A client gets its last byte once the digest is verified; the commit to storage follows a moment later.
    await waitFor('the fill to commit', async () => cache.server.fillsInFlight() === 0, 30_000);
    return answer;
  };

  it('keeps a blob pulled every second past several TTLs, and evicts the one not pulled since its fill', async () => {
    expect(await get('hot')).toEqual({ status: 200, digest: digests.hot });
    expect(await get('cold')).toEqual({ status: 200, digest: digests.cold });
    const filled = Date.now();
    expect(existsSync(path('hot')) && existsSync(path('cold'))).toBe(true);
    // Bounded: 8 pulls, one a second (about 2.5 TTLs).
    for (let i = 0; i < 8; i++) {
      await sleep(1000);
      expect(await get('hot')).toEqual({ status: 200, digest: digests.hot });
    }
    expect(Date.now() - filled).toBeGreaterThan(2 * TTL_MS);
    expect(existsSync(path('cold'))).toBe(false);
    expect(evictions()).toContain(keyOf(digests.cold));
    expect(existsSync(path('hot'))).toBe(true);
    expect(evictions()).not.toContain(keyOf(digests.hot));
    upstream.clearLog();
    expect(await get('hot')).toEqual({ status: 200, digest: digests.hot });
    await sleep(500);
    expect(upstream.blobGets()).toEqual([]); // the hot blob was served from storage all along
  });

  it('never evicts a stored blob while a slow client reads it for longer than the TTL', async () => {
    expect(await get('large')).toEqual({ status: 200, digest: digests.large });
    const file = join(work, 'large');
    // 32 MiB at 3 MiB/s: about 10 s of reading. Loopback socket buffers absorb several MiB, so the server's read (what
    // holds the blob busy) ends a few seconds before curl does; it still lasts well over the TTL.
    const child = spawn(requireTool('curl'), ['-s', '-o', file, '--limit-rate', '3M', `${cache.url}/v2/team/app/blobs/${digests.large}`], {
      stdio: 'ignore',
    });
    const started = Date.now();
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    // Bounded: sample while the read runs (at most 60 s): whenever the server is reading it, it is in storage.
    const key = keyOf(digests.large);
    let missingWhileRead = 0;
    let busySince = 0;
    let busyUntil = 0;
    while (child.exitCode === null && Date.now() - started < 60_000) {
      if (cache.server.isBusy(key)) {
        busySince ||= Date.now();
        busyUntil = Date.now();
        if (!existsSync(path('large'))) missingWhileRead++;
      }
      await sleep(100);
    }
    expect(await exited).toBe(0);
    const readMs = Date.now() - started;
    expect(sha(readFileSync(file))).toBe(digests.large);
    expect(busyUntil - busySince).toBeGreaterThan(TTL_MS + 600); // expired while read, with sweeps every 300 ms
    expect(missingWhileRead).toBe(0);
    // (Not "never evicted during curl": the server's read ends, and frees the blob, while curl still drains the
    // loopback socket buffers; from then on the expired blob may rightly go.)
    process.stdout.write(`slow reader: curl ${readMs} ms, server read busy ${busyUntil - busySince} ms, blob present throughout\n`);
    // Once nobody reads it and the TTL has passed since that read, it goes (bounded wait).
    const deadline = Date.now() + 4 * TTL_MS;
    while (existsSync(path('large')) && Date.now() < deadline) await sleep(200);
    expect(existsSync(path('large'))).toBe(false);
  });
});
