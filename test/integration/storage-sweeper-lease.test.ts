/**
 * One sweeper per site (issue 23): two cache processes (`dtr-cache serve`) on one filesystem store, the upstream a
 * real registry (distribution 2.8). Exactly one holds the sweeper's lease in the store and evicts; the other never
 * sweeps while the holder lives. The holder killed (SIGKILL, no release), the other takes the lease over once it
 * expires (4 renewal periods) and evicts from then on. The tag a pull stored goes with its manifest.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import type { CacheConfigInput } from '../../lib/config';
import { startCacheProcess, type CacheProcess } from '../support/cache-process';
import { makeImage, pushImage, type TestImage } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { sleep, waitFor } from '../../harness/tools';

const TTL_S = 4;

/** JSON log lines of `cache` whose msg is `msg`. */
function logged(cache: CacheProcess, msg: string): Record<string, unknown>[] {
  return cache
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((entry) => entry.msg === msg);
}

describe('two caches on one store: one sweeper at a time', () => {
  let upstream: TestRegistry;
  let root: string;
  let caches: CacheProcess[] = [];
  const image: TestImage = makeImage({ layerSizes: [64 * 1024, 4096] });

  /** The pid the lease object in the store names; undefined when there is none. Fails if there are several. */
  function leaseHolderPid(): number | undefined {
    let names: string[];
    try {
      names = readdirSync(join(root, '_sweeper/lease'));
    } catch {
      return undefined;
    }
    expect(names.length).toBeLessThanOrEqual(1);
    if (names.length === 0) return undefined;
    try {
      return (JSON.parse(readFileSync(join(root, '_sweeper/lease', names[0]), 'utf8')) as { pid: number }).pid;
    } catch {
      return undefined; // removed between readdir and read (a takeover)
    }
  }

  async function pull(cache: CacheProcess): Promise<void> {
    const manifest = await request(`${cache.url}/v2/team/app/manifests/v1`, { headers: { accept: image.mediaType } });
    expect(manifest.statusCode).toBe(200);
    await manifest.body.dump();
    for (const blob of image.blobs) {
      const res = await request(`${cache.url}/v2/team/app/blobs/${blob.digest}`);
      expect(res.statusCode).toBe(200);
      await res.body.dump();
    }
  }

  const storedBlobs = () => {
    try {
      return readdirSync(join(root, 'blobs/sha256'), { recursive: true }).filter((p) => String(p).endsWith('data')).length;
    } catch {
      return 0;
    }
  };

  beforeAll(async () => {
    upstream = await TestRegistry.start();
    await pushImage(upstream.url, 'team/app', 'v1', image);
    root = mkdtempSync(join(tmpdir(), 'dtr-cache-lease-'));
    const config: CacheConfigInput = {
      version: '0.1',
      log: { level: 'info' },
      storage: { filesystem: { rootdirectory: root }, delete: { enabled: true } },
      http: { addr: '127.0.0.1:0' },
      // sweepinterval 1s: the lease is renewed every second and expires after 4.
      middleware: { registry: [{ name: 'downstream', options: { upstreams: [upstream.url], blobttl: `${TTL_S}s`, sweepinterval: '1s' } }] },
    };
    caches = await Promise.all([startCacheProcess(config), startCacheProcess(config)]);
  }, 300_000);

  afterAll(async () => {
    await Promise.all(caches.map((c) => c.kill()));
    await upstream?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  }, 60_000);

  test('one replica holds the lease and evicts; after it is killed the other takes over', async () => {
    const leaders = () => caches.filter((c) => logged(c, 'sweeper: this replica sweeps for the site').length > 0);
    await waitFor('a replica taking the sweeper lease', async () => leaders().length > 0, 30_000);
    const [holder] = leaders();
    const other = caches.find((c) => c !== holder)!;

    // For 6 s (6 renewals), sampled every 200 ms: one lease, always the holder's; the other never takes it.
    for (let i = 0; i < 30; i++) {
      const pid = leaseHolderPid();
      if (pid !== undefined) expect(pid).toBe(holder.child.pid);
      await sleep(200);
    }
    expect(leaders()).toEqual([holder]);

    // Content filled through the replica without the lease (which reports it to the holder's index) is evicted by
    // the holder alone, within 1.25 x blobttl of the last access (plus the 1 s the test polls, a pass, and a second
    // for a loaded machine: each pass here reads the indexes of all 256 shards).
    await pull(other);
    await waitFor('the fills committed', async () => storedBlobs() === image.blobs.length);
    const filledAt = Date.now();
    await waitFor('the holder evicting the expired blobs', async () => storedBlobs() === 0, 30_000);
    expect(Date.now() - filledAt).toBeLessThan(TTL_S * 1250 + 4000);
    // Each eviction is logged after its delete: the lines may still be on their way.
    await waitFor('the holder logging the evictions', async () => logged(holder, 'evicted').length >= image.blobs.length, 5_000);
    expect(logged(other, 'evicted')).toEqual([]);
    // The tag record the pull stored goes with its manifest, found through the manifest's back-reference: the check
    // of every tag ran at the holder's first pass, before the pull, and runs again only a week later.
    // The tag's eviction is logged and its back-reference dropped after the delete: wait for all three.
    const tag = 'tags/team/app/_tags/v1';
    const tagRefs = () => readdirSync(join(root, 'tagrefs'), { recursive: true }).filter((p) => String(p).endsWith('v1'));
    const tagEvictions = () => logged(holder, 'evicted').filter((e) => e.key === tag);
    await waitFor(
      'the tag going with its manifest',
      async () => !existsSync(join(root, tag)) && tagEvictions().length > 0 && tagRefs().length === 0,
      30_000,
    );
    expect(tagEvictions()).toEqual([expect.objectContaining({ reason: 'orphan-tag' })]);
    expect(logged(other, 'evicted')).toEqual([]);

    // The holder dies without releasing the lease: the other takes it over once it expired (4 s), not before.
    const killedAt = Date.now();
    await holder.kill();
    await waitFor('the surviving replica taking the lease over', async () => leaders().includes(other), 30_000);
    const takeoverMs = Date.now() - killedAt;
    expect(takeoverMs).toBeLessThan(4000 + 1000 + 3000); // expiry, one renewal period, slack for a loaded machine
    expect(leaseHolderPid()).toBe(other.child.pid);
    console.log(`lease taken over ${takeoverMs} ms after the holder was killed`);

    // ...and sweeps from then on.
    await pull(other);
    await waitFor('the fills committed', async () => storedBlobs() === image.blobs.length);
    await waitFor('the new holder evicting the expired blobs', async () => storedBlobs() === 0, 30_000);
    await waitFor('the new holder logging the evictions', async () => logged(other, 'evicted').length >= image.blobs.length, 5_000);
  }, 120_000);
});
