/**
 * Operations wired into a running cache: /metrics on the main and debug listeners (http.debug.addr), /healthz,
 * /readyz, and the eviction sweeper run by the server itself (blobttl from last access, counted in metrics).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../lib/cache/log';
import { createCacheServer, type CacheServer } from '../../lib/cache/server';
import { validateConfig } from '../../lib/config';
import { makeImage, pushImage, sha256 } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { sleep } from '../../harness/tools';

describe('operations of a running cache', () => {
  let upstream: TestRegistry;
  let server: CacheServer;
  let root: string;
  let upstreamStopped = false; // TestRegistry.stop() must not be called twice (a signalled child never exits again)
  const image = makeImage({ layerSizes: [3000] });

  beforeAll(async () => {
    upstream = await TestRegistry.start();
    await pushImage(upstream.url, 'team/app', 'v1', image);
    root = mkdtempSync(join(tmpdir(), 'dtr-cache-ops-'));
    const result = validateConfig({
      version: '0.1',
      storage: { filesystem: { rootdirectory: root }, delete: { enabled: true } },
      http: { addr: '127.0.0.1:0', debug: { addr: '127.0.0.1:0', prometheus: { enabled: true, path: '/debug/metrics' } } },
      middleware: { registry: [{ name: 'downstream', options: { upstreams: [upstream.url], blobttl: '5s', sweepinterval: '300ms' } }] },
    });
    if (!result.ok) throw new Error(result.errors.join('\n'));
    server = await createCacheServer(result.config, { logger: createLogger('error', () => undefined) });
  });
  afterAll(async () => {
    const t = Date.now();
    await server?.close();
    process.stderr.write(`[ops test] server closed in ${Date.now() - t} ms\n`);
    if (!upstreamStopped) await upstream?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const metric = (text: string, series: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };

  it('serves /healthz and /readyz on both listeners, and /metrics with the exposition content type', async () => {
    const debug = server.operations.debugUrl as string;
    expect(debug).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    for (const base of [server.url, debug]) {
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const ready = await fetch(`${base}/readyz`);
      expect(ready.status).toBe(200);
      expect(((await ready.json()) as { checks: { name: string; ok: boolean }[] }).checks).toEqual([
        { name: 'storage', ok: true },
        { name: 'upstream', ok: true },
      ]);
    }
    const main = await fetch(`${server.url}/metrics`);
    expect(main.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect((await fetch(`${debug}/debug/metrics`)).status).toBe(200);
    expect((await fetch(`${debug}/v2/`)).status).toBe(404); // the debug listener serves no registry API
    expect((await fetch(`${server.url}/metrics`, { method: 'POST' })).status).toBe(405);
  });

  it('counts requests, lookups, bytes by source and upstream latency', async () => {
    const layer = image.blobs[1];
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${server.url}/v2/team/app/blobs/${layer.digest}`);
      expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(layer.digest);
      await server.idle(); // committed: the second GET is a hit, not a joiner of a fill still committing
    }
    expect((await fetch(`${server.url}/v2/team/app/manifests/nope`)).status).toBe(404);
    const text = await (await fetch(`${server.operations.debugUrl}/debug/metrics`)).text();
    expect(metric(text, 'dtr_cache_http_requests_total{route="blob",method="GET",status="200"}')).toBe(2);
    expect(metric(text, 'dtr_cache_http_requests_total{route="manifest",method="GET",status="404"}')).toBe(1);
    expect(metric(text, 'dtr_cache_lookups_total{kind="blob",result="miss"}')).toBe(1);
    expect(metric(text, 'dtr_cache_lookups_total{kind="blob",result="hit"}')).toBe(1);
    expect(metric(text, 'dtr_cache_served_bytes_total{source="storage"}')).toBe(layer.data.length);
    expect(metric(text, 'dtr_cache_served_bytes_total{source="upstream"}')).toBe(layer.data.length);
    expect(metric(text, 'dtr_cache_upstream_request_duration_seconds_count{method="GET",outcome="2xx"}')).toBeGreaterThanOrEqual(1);
    expect(metric(text, 'dtr_cache_fills_in_flight{kind="blob"}')).toBe(0);
  });

  it('evicts content not accessed within blobttl, on its own, and counts it', async () => {
    const layer = image.blobs[1];
    const file = join(root, 'blobs/sha256', layer.digest.slice(7, 9), layer.digest.slice(7), 'data');
    await (await fetch(`${server.url}/v2/team/app/blobs/${layer.digest}`)).arrayBuffer();
    await server.idle();
    const before = metric(await (await fetch(`${server.url}/metrics`)).text(), 'dtr_cache_evictions_total{reason="ttl"}') ?? 0;
    expect(existsSync(file)).toBe(true);
    const deadline = Date.now() + 30_000;
    while (existsSync(file) && Date.now() < deadline) await sleep(200);
    expect(existsSync(file)).toBe(false);
    const text = await (await fetch(`${server.url}/metrics`)).text();
    expect(metric(text, 'dtr_cache_evictions_total{reason="ttl"}')).toBeGreaterThan(before);
    // Evicted content is fetched again on the next pull, with its exact digest.
    const res = await fetch(`${server.url}/v2/team/app/blobs/${layer.digest}`);
    expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(layer.digest);
  });

  it('fails readiness with a JSON reason once the upstream is gone, while staying alive', async () => {
    upstreamStopped = true;
    await upstream.stop();
    await sleep(1100); // past the readiness result reuse
    const ready = await fetch(`${server.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ status: 'not ready', reason: expect.stringMatching(/^upstream: .+/) });
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });
});
