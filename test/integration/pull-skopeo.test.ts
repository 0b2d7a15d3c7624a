/**
 * Pull path, end to end with a real client: skopeo pulls through the cache from a real distribution 2.8
 * upstream. Digests equal a direct pull; the second pull is served from the cache's storage with no upstream
 * blob GET; Docker schema2, OCI, and multi-arch indexes all work.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startCache, type TestCache } from '../support/cache-server';
import { makeImage, makeIndex, pushImage, type TestImage } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { requireTool, sleep } from '../../harness/tools';

const run = promisify(execFile);

describe('pull through the cache with skopeo', () => {
  let upstream: TestRegistry;
  let cache: TestCache;
  let work: string;
  const skopeo = requireTool('skopeo');
  const images: Record<string, TestImage> = {
    'team/app': makeImage({ layerSizes: [2048, 300_000] }),
    'team/oci': makeImage({ format: 'oci', layerSizes: [4096] }),
    'team/multi': makeIndex(['amd64', 'arm64'], 'oci'),
  };

  beforeAll(async () => {
    upstream = await TestRegistry.start();
    for (const [repo, image] of Object.entries(images)) await pushImage(upstream.url, repo, 'v1', image);
    cache = await startCache([upstream.url]);
    work = mkdtempSync(join(tmpdir(), 'dtr-cache-skopeo-'));
  });

  afterAll(async () => {
    await cache?.stop();
    await upstream?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** skopeo copy into an OCI layout; returns the manifest digest the layout records. */
  async function copy(host: string, ref: string, all = false): Promise<string> {
    const dir = mkdtempSync(join(work, 'oci-'));
    await run(skopeo, ['copy', ...(all ? ['--all'] : []), '--src-tls-verify=false', `docker://${host}/${ref}`, `oci:${dir}:v1`], {
      timeout: 60_000,
    });
    const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    return index.manifests[0].digest;
  }

  const upstreamHost = () => new URL(upstream.url).host;

  it.each([
    ['team/app', false],
    ['team/oci', false],
    ['team/multi', true],
  ])('%s: the digest through the cache equals a direct pull; the second pull makes no upstream blob GET', async (repo, all) => {
    const direct = await copy(upstreamHost(), `${repo}:v1`, all);
    await settleLog();
    upstream.clearLog();

    const first = await copy(cache.host, `${repo}:v1`, all);
    expect(first).toBe(direct);
    await settleLog();
    const coldGets = upstream.blobGets().map((e) => e.path.split('/blobs/')[1]);
    // Every blob skopeo needed came from the upstream exactly once.
    expect(new Set(coldGets).size).toBe(coldGets.length);
    expect(coldGets.length).toBeGreaterThan(0);

    upstream.clearLog();
    const second = await copy(cache.host, `${repo}:v1`, all);
    expect(second).toBe(direct);
    await settleLog();
    expect(upstream.blobGets()).toEqual([]);
  });

  it('the OCI image and the index arrive with their exact upstream digests (no conversion on the way)', async () => {
    for (const repo of ['team/oci', 'team/multi']) {
      const res = await fetch(`${cache.url}/v2/${repo}/manifests/v1`, { headers: { accept: images[repo].mediaType } });
      expect(res.status).toBe(200);
      expect(res.headers.get('docker-content-digest')).toBe(images[repo].digest);
      expect(res.headers.get('content-type')).toBe(images[repo].mediaType);
      expect(Buffer.from(await res.arrayBuffer()).equals(images[repo].manifest)).toBe(true);
    }
    expect(await copy(cache.host, 'team/oci:v1')).toBe(images['team/oci'].digest);
    expect(await copy(cache.host, 'team/multi:v1', true)).toBe(images['team/multi'].digest);
  });
});

/** distribution writes an access log line when a request ends: give the last ones a moment to arrive. */
function settleLog(): Promise<void> {
  return sleep(400);
}
