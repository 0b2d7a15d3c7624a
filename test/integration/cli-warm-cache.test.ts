/**
 * `dtr-cache warm` through our real cache server (`dtr-cache serve`) in front of distribution 2.8: the
 * upstream's blob GETs before and after warming, a real client's pull afterwards served without any upstream
 * blob request (from the cache), and warming a token-protected upstream through the cache, the DTR way.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runCli } from '../fixtures/cli';
import { startCacheProcess } from '../support/cache-process';
import { makeImage, makeIndex, pushImage, TestImage } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { startTokenRegistry, TokenRegistry } from '../support/token-registry';
import { requireTool } from '../../harness/tools';

const exec = promisify(execFile);

const distinct = (...images: TestImage[]) => new Set(images.flatMap((i) => i.blobs.map((b) => b.digest)));
const fetchedBlobs = (registry: TestRegistry) =>
  registry
    .blobGets()
    .filter((e) => e.status === 200)
    .map((e) => e.path.replace(/.*\/blobs\//, ''));

interface RunningCache {
  readonly port: number;
  readonly dir: string;
  stop(): Promise<void>;
}

/** `dtr-cache serve` as its own process (as in the image), on a free loopback port, in front of `upstream`. */
async function startCache(upstream: string): Promise<RunningCache> {
  const dir = mkdtempSync(join(tmpdir(), 'cli-warm-cache-'));
  const cache = await startCacheProcess({
    version: '0.1',
    log: { level: 'info' },
    storage: { delete: { enabled: true }, filesystem: { rootdirectory: join(dir, 'data') } },
    middleware: { registry: [{ name: 'downstream', options: { upstreams: [upstream] } }] },
  }).catch((err: unknown) => {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  });
  const stop = async () => {
    await cache.kill();
    rmSync(dir, { recursive: true, force: true });
  };
  return { port: cache.port, dir, stop };
}

describe('dtr-cache warm through the cache server', () => {
  let upstream: TestRegistry;
  let cache: RunningCache;
  const app = makeImage({ layerSizes: [512 * 1024, 2 * 1024 * 1024] });
  const multi = makeIndex(['amd64', 'arm64']);

  beforeAll(async () => {
    requireTool('skopeo');
    upstream = await TestRegistry.start();
    await pushImage(upstream.url, 'team/app', 'v1', app);
    await pushImage(upstream.url, 'team/multi', 'v1', multi);
    cache = await startCache(upstream.url);
  });
  afterAll(async () => {
    await cache?.stop();
    await upstream?.stop();
  });

  it('fills the cache once, and a following skopeo pull makes no upstream blob request', async () => {
    upstream.clearLog();
    const cacheUrl = `http://127.0.0.1:${cache.port}`;
    const res = await runCli(['warm', '--cache', cacheUrl, 'team/app:v1', 'team/multi:v1']);
    expect(res.stderr).toMatch(/warmed {2}team\/app:v1: 3 blobs/);
    expect(res.code).toBe(0);
    // Before warming the upstream had served no blob; after, every distinct blob exactly once (7 here).
    const fetched = fetchedBlobs(upstream);
    expect(new Set(fetched)).toEqual(distinct(app, multi));
    expect(fetched).toHaveLength(distinct(app, multi).size);

    upstream.clearLog();
    await exec(
      requireTool('skopeo'),
      ['copy', '--src-tls-verify=false', `docker://127.0.0.1:${cache.port}/team/app:v1`, `oci:${join(cache.dir, 'pulled')}:v1`],
      { timeout: 60_000 },
    );
    expect(upstream.requests().filter((e) => e.path.includes('/blobs/'))).toEqual([]); // a hit for every blob
  });
});

describe('dtr-cache warm through the cache in front of a token-protected upstream (the DTR setup)', () => {
  let up: TokenRegistry;
  let cache: RunningCache;
  const image = makeImage({ layerSizes: [256 * 1024] });
  const alice = { DTR_USERNAME: 'alice', DTR_PASSWORD: 'alice-pw' };

  beforeAll(async () => {
    up = await startTokenRegistry({ users: { alice: 'alice-pw' }, acl: [{ who: 'alice', repo: 'team/*', actions: ['pull'] }] });
    await up.push('team/secure', 'v1', image);
    cache = await startCache(up.registry.url);
  });
  afterAll(async () => {
    await cache?.stop();
    await up?.stop();
  });

  it('sends credentials to the relayed realm only when it is --dtr, then fills the cache', async () => {
    // The cache answers as localhost, DTR's token realm is on 127.0.0.1: another host, as in a real site.
    const cacheUrl = `http://localhost:${cache.port}`;
    const before = up.issuer.requests.length;
    const refused = await runCli(['warm', '--cache', cacheUrl, 'team/secure:v1'], alice);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toContain(
      `token realm ${up.issuer.realm}, which is at neither the cache's nor --dtr's origin (scheme, host and port): refusing`,
    );
    expect(up.issuer.requests.slice(before).filter((r) => r.user === 'alice')).toEqual([]);

    up.registry.clearLog();
    const warmed = await runCli(['warm', '--cache', cacheUrl, '--dtr', up.issuer.url, 'team/secure:v1'], alice);
    expect(warmed.stderr).toMatch(/warmed {2}team\/secure:v1: 2 blobs/);
    expect(warmed.code).toBe(0);
    expect(up.issuer.requests.slice(before).some((r) => r.user === 'alice' && r.status === 200)).toBe(true);
    expect(new Set(fetchedBlobs(up.registry))).toEqual(distinct(image));
  });
});
