/**
 * A full disk (issue 21): the cache's store is a real 8 MiB tmpfs mounted for this test (root only; unmounted at the
 * end), in front of a real distribution 2.8 upstream. A blob larger than the free space (and than the whole disk)
 * is still pulled, complete and right, served from the upstream uncached; the log and `/metrics` say so. A blob that
 * would fit once older content is gone makes the cache evict the least recently used blobs, and its next pull is
 * cached. A full disk fails `/readyz`, and its write probe leaves no file behind.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blobKey, parseDigest } from '../../lib/cache/reference';
import { startCache, type TestCache } from '../support/cache-server';
import { pushBlob } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { requireTool, waitFor } from '../../harness/tools';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A real curl GET (async: the cache runs in this process): exit code (0: complete) and body. */
function curl(url: string): Promise<{ code: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    execFile(requireTool('curl'), ['-s', '--max-time', '60', url], { encoding: 'buffer', maxBuffer: 64 * MiB }, (err, stdout) =>
      err && typeof err.code !== 'number' ? reject(err) : resolve({ code: err ? (err.code as number) : 0, body: stdout }),
    );
  });
}

describe('a full disk: pulls go on uncached, space is freed by eviction', () => {
  let upstream: TestRegistry;
  let mountpoint: string | undefined;
  let mounted = false;
  let cache: TestCache | undefined;
  const blobs = { small1: randomBytes(3 * MiB), small2: randomBytes(3 * MiB), big: randomBytes(12 * MiB), medium: randomBytes(4 * MiB) };
  const digests: Record<string, string> = {};
  const stored = (name: keyof typeof blobs) => {
    const digest = parseDigest(digests[name]);
    return digest.ok && existsSync(join(mountpoint as string, blobKey(digest.value)));
  };
  const get = (name: keyof typeof blobs) => curl(`${cache!.url}/v2/team/app/blobs/${digests[name]}`);
  const metric = async (line: string) => {
    const found = (await (await fetch(`${cache!.url}/metrics`)).text()).split('\n').find((l) => l.startsWith(`${line} `));
    return found ? Number(found.split(' ')[1]) : 0;
  };

  beforeAll(async () => {
    requireTool('curl');
    if (process.getuid?.() !== 0) throw new Error('this test mounts a tmpfs: run it as root (CI runs as root)');
    upstream = await TestRegistry.start();
    for (const name of Object.keys(blobs) as (keyof typeof blobs)[]) digests[name] = await pushBlob(upstream.url, 'team/app', blobs[name]);
    mountpoint = mkdtempSync(join(tmpdir(), 'dtr-cache-full-'));
    execFileSync(requireTool('mount'), ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mountpoint]);
    mounted = true;
    cache = await startCache([upstream.url], { scrubrate: '0' }, mountpoint);
  });
  afterAll(async () => {
    if (process.env.DEBUG_LOGS)
      console.log(
        JSON.stringify(
          cache?.logs.filter((l) => l.level !== 'info' && l.level !== 'debug'),
          null,
          1,
        ),
      );
    await cache?.server.close();
    if (mounted) execFileSync(requireTool('umount'), [mountpoint as string]);
    if (mountpoint) rmSync(mountpoint, { recursive: true, force: true });
    await upstream?.stop();
  });

  it('serves a blob larger than the whole disk, complete and right, uncached; evicts nothing for it', async () => {
    for (const name of ['small1', 'small2'] as const) {
      expect(sha((await get(name)).body)).toBe(digests[name]);
      await waitFor(`${name} to be stored`, async () => stored(name)); // committed just after the response ends
    }
    const big = await get('big');
    expect(big.code).toBe(0);
    expect(sha(big.body)).toBe(digests.big);
    expect(stored('big')).toBe(false);
    expect(await metric('dtr_cache_uncached_fills_total{reason="storage-full"}')).toBe(1);
    expect(cache!.logs.find((l) => l.msg === 'serving the blob from the upstream uncached')).toMatchObject({
      digest: digests.big,
      reason: 'storage full',
    });
    await waitFor('the reclaim to decide', async () =>
      cache!.logs.some((l) => l.msg === 'storage full: the blob is larger than all cached content; nothing evicted for it'),
    );
    expect(stored('small1') && stored('small2')).toBe(true);
  });

  it('a blob larger than the free space is served, room is made by evicting the oldest, and the next pull caches it', async () => {
    const first = await get('medium');
    expect(first.code).toBe(0);
    expect(sha(first.body)).toBe(digests.medium);
    await waitFor('the eviction', async () => cache!.logs.some((l) => l.msg === 'storage full: evicted least recently used content'));
    expect(await metric('dtr_cache_uncached_fills_total{reason="storage-full"}')).toBe(2);
    expect(await metric('dtr_cache_evictions_total{reason="size"}')).toBeGreaterThanOrEqual(1);
    expect(stored('small1')).toBe(false); // the least recently used went first

    const second = await get('medium');
    expect(second.code).toBe(0);
    expect(sha(second.body)).toBe(digests.medium);
    await waitFor('the medium blob to be stored', async () => stored('medium'));
    expect(await metric('dtr_cache_uncached_fills_total{reason="storage-full"}')).toBe(2);
  });

  it('a full disk fails /readyz, and its write probe leaves no file behind', async () => {
    const filler = join(mountpoint as string, 'filler');
    const dd = spawnSync(requireTool('dd'), ['if=/dev/zero', `of=${filler}`, 'bs=64k'], { encoding: 'utf8' });
    expect(dd.stderr).toMatch(/No space left on device/);
    try {
      const ready = await fetch(`${cache!.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(((await ready.json()) as { reason: string }).reason).toMatch(/^storage: .*ENOSPC/);
      expect(readdirSync(join(mountpoint as string, '_uploads')).filter((f) => f.startsWith('probe-'))).toEqual([]);
    } finally {
      rmSync(filler);
    }
  });
});
