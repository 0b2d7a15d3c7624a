/**
 * `dtr-cache serve --workers 2`, started as the image starts it, in front of a real distribution 2.8 upstream:
 * both workers answer pulls (real skopeo and plain HTTP connections), `/metrics` sums the counters of both, a
 * worker killed with SIGKILL is replaced, and SIGTERM drains both workers' in-flight downloads before exit 0.
 * With http.secret each worker is a fill-lease holder with its own replica endpoint, so concurrent cold GETs on
 * both workers cost the upstream one GET.
 */
import { execFile } from 'node:child_process';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { CacheConfigInput } from '../../lib/config';
import { startCacheProcess, type CacheProcess } from '../support/cache-process';
import { makeImage, pushBlob, pushImage, sha256 } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { startThrottleProxy, type ThrottleProxy } from '../support/throttle-proxy';
import { requireTool, waitFor } from '../../harness/tools';

const exec = promisify(execFile);

/** One GET on a connection of its own (so the cluster may hand it to either worker): status and sha256 of the body. */
function getOnce(url: string): Promise<{ status: number; digest: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, digest: sha256(body), bytes: body.length });
      });
      res.on('error', reject);
    }).on('error', reject);
  });
}

/** The worker processes of the primary `pid` (its children, from /proc). */
function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** JSON log lines of the cache so far. */
function logLines(cache: CacheProcess): Record<string, unknown>[] {
  return cache
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

function sampleValue(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : NaN;
}

describe('serve --workers 2', () => {
  let upstream: TestRegistry;
  let link: ThrottleProxy;
  let root: string;
  let cache: CacheProcess | undefined;
  const image = makeImage({ layerSizes: [2048, 150_000, 400_000] });

  beforeAll(async () => {
    upstream = await TestRegistry.start();
    await pushImage(upstream.url, 'team/app', 'v1', image);
    // Fast until the drain test slows it down.
    link = await startThrottleProxy(upstream.port, 1024 ** 3);
    root = mkdtempSync(join(tmpdir(), 'dtr-cache-workers-'));
    const config: CacheConfigInput = {
      version: '0.1',
      log: { level: 'info' },
      storage: { filesystem: { rootdirectory: join(root, 'data') }, delete: { enabled: true } },
      // The secret turns on fill sharing: each worker is a lease holder with an endpoint of its own.
      http: { addr: '127.0.0.1:0', draintimeout: '30s', secret: 'workers-test-secret', internal: { addr: '127.0.0.1:0' } },
      middleware: { registry: [{ name: 'downstream', options: { upstreams: [link.url] } }] },
    };
    cache = await startCacheProcess(config, undefined, 2);
  }, 120_000);

  afterAll(async () => {
    await cache?.kill();
    await link?.stop();
    await upstream?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('serves pulls from both workers and sums their counters in /metrics', async () => {
    expect(cache!.output()).toContain('with 2 workers');
    const skopeo = requireTool('skopeo');
    const host = new URL(cache!.url).host;
    await exec(skopeo, ['copy', '--src-tls-verify=false', `docker://${host}/team/app:v1`, `dir:${join(root, 'pulled')}`], {
      timeout: 60_000,
    });
    expect(sha256(readFileSync(join(root, 'pulled', 'manifest.json')))).toBe(image.digest);
    // Each GET on a new connection: the cluster deals connections to the workers in turn.
    const gets = 12;
    const blob = image.blobs[2];
    for (let i = 0; i < gets; i++) {
      const r = await getOnce(`${cache!.url}/v2/team/app/blobs/${blob.digest}`);
      expect(r).toEqual({ status: 200, digest: blob.digest, bytes: blob.data.length });
    }
    // A request is logged and counted when its response closes on the server, a moment after the client has it; a
    // client that closes before the server's last write completes is logged (and counted) with status 0.
    const blobLines = () => logLines(cache!).filter((l) => l.msg === 'request' && l.method === 'GET' && /\/blobs\//.test(String(l.path)));
    await waitFor('every blob request logged', async () => blobLines().length >= gets + image.blobs.length, 10_000);
    const byWorker = new Map<unknown, number>();
    for (const l of logLines(cache!))
      if (l.msg === 'request' && l.status === 200) byWorker.set(l.worker, (byWorker.get(l.worker) ?? 0) + 1);
    expect([...byWorker.keys()].sort()).toEqual([0, 1]);

    const metrics = await fetch(`${cache!.url}/metrics`).then((r) => r.text());
    // Blob GETs: skopeo's blobs plus ours, whichever worker answered each, all counted in the one /metrics.
    const blobRequests = blobLines().length;
    const counted = (status: string) =>
      sampleValue(metrics, `dtr_cache_http_requests_total{route="blob",method="GET",status="${status}"}`) || 0;
    expect(counted('200') + counted('0')).toBe(blobRequests);
    const served = image.blobs.reduce((sum, b) => sum + b.data.length, 0) + gets * blob.data.length;
    const bytes =
      sampleValue(metrics, 'dtr_cache_served_bytes_total{source="storage"}') +
      sampleValue(metrics, 'dtr_cache_served_bytes_total{source="upstream"}');
    expect(bytes).toBeGreaterThanOrEqual(served);
    expect(bytes).toBeLessThan(served + 16 * 1024); // manifests and configs: a few kilobytes
    // The process metrics are summed too: two workers' resident memory.
    expect(sampleValue(metrics, 'process_resident_memory_bytes')).toBeGreaterThan(0);
  }, 120_000);

  it('fetches a cold blob once for concurrent clients on both workers (the fill lease)', async () => {
    const data = Buffer.concat([Buffer.from('one fetch '), Buffer.alloc(1024 * 1024, 3)]);
    const digest = await pushBlob(upstream.url, 'team/once', data);
    upstream.clearLog();
    link.rate = 2 * 1024 * 1024; // ~0.5 s per fetch: the clients overlap it
    try {
      const results = await Promise.all(Array.from({ length: 8 }, () => getOnce(`${cache!.url}/v2/team/once/blobs/${digest}`)));
      for (const r of results) expect(r).toEqual({ status: 200, digest, bytes: data.length });
    } finally {
      link.rate = 1024 ** 3;
    }
    const lines = () => logLines(cache!).filter((l) => l.msg === 'request' && String(l.path).includes(digest));
    await waitFor('the 8 requests logged', async () => lines().length >= 8, 10_000);
    const served = new Set(lines().map((l) => l.worker));
    expect([...served].sort()).toEqual([0, 1]);
    await new Promise((r) => setTimeout(r, 500)); // the upstream logs a GET when it ends
    expect(upstream.blobGets().filter((e) => e.path.includes(digest))).toHaveLength(1);
  }, 60_000);

  it('replaces a worker killed with SIGKILL, and keeps serving', async () => {
    const before = childPids(cache!.child.pid!);
    expect(before).toHaveLength(2);
    process.kill(before[0], 'SIGKILL');
    await waitFor(
      'a replacement worker',
      async () => {
        const now = childPids(cache!.child.pid!);
        return now.length === 2 && !now.includes(before[0]) && cache!.output().split('"msg":"cache listening"').length - 1 >= 3;
      },
      60_000,
    );
    expect(cache!.output()).toMatch(/"msg":"worker exited; starting another".*"signal":"SIGKILL"/);
    // Both workers answer again: several new connections, every one served.
    for (let i = 0; i < 6; i++) expect((await getOnce(`${cache!.url}/v2/team/app/blobs/${image.blobs[1].digest}`)).status).toBe(200);
    const metrics = await fetch(`${cache!.url}/metrics`);
    expect(metrics.status).toBe(200);
  }, 90_000);

  it('on SIGTERM drains the downloads in flight on both workers, then exits 0', async () => {
    // Two cold blobs, ~2 s each over a 512 KiB/s link, each on its own connection (one per worker, dealt in turn).
    const blobs = await Promise.all(
      [1, 2].map(async (n) => {
        const data = Buffer.concat([Buffer.from(`drain ${n} `), Buffer.alloc(1024 * 1024, n)]);
        return { data, digest: await pushBlob(upstream.url, 'team/drain', data) };
      }),
    );
    link.rate = 512 * 1024;
    const pulls = blobs.map((b) => getOnce(`${cache!.url}/v2/team/drain/blobs/${b.digest}`));
    // Both requests reach their workers and their fills start well within this.
    await new Promise((r) => setTimeout(r, 700));
    cache!.child.kill('SIGTERM');
    const results = await Promise.all(pulls);
    results.forEach((r, i) => expect(r).toEqual({ status: 200, digest: blobs[i].digest, bytes: blobs[i].data.length }));
    expect(await cache!.exited).toBe(0);
    const drained = logLines(cache!).filter((l) => l.msg === 'drained; exiting');
    expect(drained.map((l) => l.worker).sort()).toEqual([0, 1]);
    expect(drained.every((l) => l.clean === true)).toBe(true);
    // Each worker had one of the downloads in flight when the drain began.
    const draining = logLines(cache!).filter((l) => l.msg === 'draining' && l.worker !== undefined);
    expect(draining.map((l) => l.requests)).toEqual([1, 1]);
  }, 90_000);
});
