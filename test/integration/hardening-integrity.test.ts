/**
 * Hardening (issue 21): blobs damaged at rest are never served as a complete response. In front of a real
 * distribution 2.8 upstream, a blob is cached, then its stored file is damaged (a flipped byte, or cut in half)
 * while the cache is stopped, or while it runs:
 * - after a restart, the first GET is digest-checked while it streams and cut before its end (curl fails), the blob
 *   is evicted, and the second GET has the right bytes from the upstream;
 * - a range of an unchecked damaged blob is checked first: the first GET already has the right bytes;
 * - a file cut while the cache runs differs from the size its fill verified: the same GET refetches it;
 * - the background scrub finds a damaged blob nobody pulls, at its configured rate, and evicts it.
 * `/metrics` counts each check.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blobKey, parseDigest } from '../../lib/cache/reference';
import { startCache, type TestCache } from '../support/cache-server';
import { curl, metric } from '../support/curl';
import { pushBlob } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { requireTool, sleep, waitFor } from '../../harness/tools';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const settleLog = () => sleep(500); // access log lines are written when a request ends

function storedFile(root: string, digest: string): string {
  const parsed = parseDigest(digest);
  if (!parsed.ok) throw new Error(`bad digest ${digest}`);
  return join(root, blobKey(parsed.value));
}

function flipByte(file: string, at: number): void {
  const bytes = readFileSync(file);
  bytes[at] ^= 0xff;
  writeFileSync(file, bytes);
}

describe('hardening: integrity of stored blobs', () => {
  let upstream: TestRegistry;
  let root: string;
  const caches: TestCache[] = [];
  const blobs = { a: randomBytes(3 * MiB), b: randomBytes(2 * MiB + 17), c: randomBytes(2 * MiB), d: randomBytes(2 * MiB) };
  const digests: Record<keyof typeof blobs, string> = { a: '', b: '', c: '', d: '' };

  /** A cache on the shared store; `close` keeps the store (a restart), `stop` would delete it. */
  const start = async (options: Record<string, string> = {}) => {
    const cache = await startCache([upstream.url], { scrubrate: '0', ...options }, root);
    caches.push(cache);
    return cache;
  };

  beforeAll(async () => {
    requireTool('curl');
    upstream = await TestRegistry.start();
    for (const name of Object.keys(blobs) as (keyof typeof blobs)[]) digests[name] = await pushBlob(upstream.url, 'team/app', blobs[name]);
    root = mkdtempSync(join(tmpdir(), 'dtr-cache-integrity-'));
    const first = await start();
    for (const name of Object.keys(blobs) as (keyof typeof blobs)[]) {
      expect(sha((await curl(`${first.url}/v2/team/app/blobs/${digests[name]}`)).body)).toBe(digests[name]);
    }
    await first.server.close();
  });
  afterAll(async () => {
    for (const c of caches) await c.server.close();
    await upstream?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('after a restart, a flipped byte and a cut file are cut mid-body, evicted, and right on the next GET', async () => {
    flipByte(storedFile(root, digests.a), 1_000_000);
    truncateSync(storedFile(root, digests.b), Math.floor(blobs.b.length / 2));
    const cache = await start();
    upstream.clearLog();

    for (const name of ['a', 'b'] as const) {
      const url = `${cache.url}/v2/team/app/blobs/${digests[name]}`;
      const first = await curl(url, name === 'b' ? ['--http1.0'] : [], 30);
      expect(first.code).not.toBe(0); // a failed transfer, never a complete one
      expect(sha(first.body)).not.toBe(digests[name]);
      const second = await curl(url);
      expect(second.code).toBe(0);
      expect(sha(second.body)).toBe(digests[name]);
    }
    await settleLog();
    expect(upstream.blobGets().map((e) => e.path)).toEqual([`/v2/team/app/blobs/${digests.a}`, `/v2/team/app/blobs/${digests.b}`]);
    expect(await metric(cache.url, 'dtr_cache_integrity_checks_total{check="digest",result="damaged"}')).toBe(2);
    expect(await metric(cache.url, 'dtr_cache_evictions_total{reason="damaged"}')).toBe(2);
    expect(cache.logs.filter((l) => l.msg === 'stored blob is damaged; evicting it').map((l) => l.digest)).toEqual([digests.a, digests.b]);
    // Refetched and verified: a third GET is a hit with the size check only.
    expect(sha((await curl(`${cache.url}/v2/team/app/blobs/${digests.a}`)).body)).toBe(digests.a);
    expect(await metric(cache.url, 'dtr_cache_integrity_checks_total{check="size",result="ok"}')).toBeGreaterThanOrEqual(1);
    await cache.server.close();
  });

  it('a range of a damaged blob not checked yet is checked first: the first GET has the right bytes', async () => {
    flipByte(storedFile(root, digests.c), 10);
    const cache = await start();
    const res = await curl(`${cache.url}/v2/team/app/blobs/${digests.c}`, ['-f', '-r', '0-99']);
    expect(res.code).toBe(0);
    expect(res.body.equals(blobs.c.subarray(0, 100))).toBe(true);
    expect(await metric(cache.url, 'dtr_cache_evictions_total{reason="damaged"}')).toBe(1);
    await cache.server.close();
  });

  it('a file cut while the cache runs fails the size check: the same GET fetches the blob again', async () => {
    const cache = await start();
    const url = `${cache.url}/v2/team/app/blobs/${digests.a}`;
    expect(sha((await curl(url)).body)).toBe(digests.a); // digest-checked (first read since start): its size is recorded
    truncateSync(storedFile(root, digests.a), 1000);
    upstream.clearLog();
    const res = await curl(url, ['-f']);
    expect(res.code).toBe(0);
    expect(sha(res.body)).toBe(digests.a);
    await settleLog();
    expect(upstream.blobGets()).toHaveLength(1);
    expect(await metric(cache.url, 'dtr_cache_integrity_checks_total{check="size",result="damaged"}')).toBe(1);
    await cache.server.close();
  });

  it('the scrub verifies stored blobs at its rate and evicts a damaged one nobody pulls', async () => {
    flipByte(storedFile(root, digests.d), 5);
    const stored = [digests.a, digests.b, digests.c, digests.d].filter((d) => existsSync(storedFile(root, d)));
    const bytes = stored.reduce((sum, d) => sum + readFileSync(storedFile(root, d)).length, 0);
    const rate = 2 * MiB;
    const started = Date.now();
    const cache = await start({ scrubrate: `${rate}` });
    await waitFor(
      'the scrub to check every stored blob',
      async () =>
        (await metric(cache.url, 'dtr_cache_integrity_checks_total{check="scrub",result="ok"}')) +
          (await metric(cache.url, 'dtr_cache_integrity_checks_total{check="scrub",result="damaged"}')) ===
        stored.length,
      30_000,
    );
    const seconds = (Date.now() - started) / 1000;
    expect(await metric(cache.url, 'dtr_cache_integrity_checks_total{check="scrub",result="damaged"}')).toBe(1);
    expect(existsSync(storedFile(root, digests.d))).toBe(false);
    expect(await metric(cache.url, 'dtr_cache_scrub_bytes_total')).toBe(bytes);
    // Bounded: the last chunk may end the pass before its pause, so allow one read (1 MiB) of slack.
    expect(seconds).toBeGreaterThanOrEqual((bytes - MiB) / rate);
    // Verified by the scrub: the first GET since start is served with the size check only.
    const before = await metric(cache.url, 'dtr_cache_integrity_checks_total{check="digest",result="ok"}');
    expect(sha((await curl(`${cache.url}/v2/team/app/blobs/${stored[0]}`)).body)).toBe(stored[0]);
    expect(await metric(cache.url, 'dtr_cache_integrity_checks_total{check="digest",result="ok"}')).toBe(before);
    await cache.server.close();
  });
});
