/**
 * Graceful drain of `dtr-cache serve` (what swarm sends on update or reschedule): SIGTERM stops new connections,
 * lets an in-flight download and its fill finish within http.draintimeout, then exits 0; past the deadline the
 * process exits 0 anyway and nothing partial is committed.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CacheConfigInput } from '../../lib/config';
import { startCacheProcess, type CacheProcess } from '../support/cache-process';
import { pushBlob } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { startThrottleProxy, type ThrottleProxy } from '../support/throttle-proxy';
import { sleep } from '../../harness/tools';

const hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('SIGTERM drain', () => {
  let upstream: TestRegistry;
  let link: ThrottleProxy;
  let root: string;
  const procs: CacheProcess[] = [];

  const config = (draintimeout: string): CacheConfigInput => ({
    version: '0.1',
    log: { level: 'info' },
    storage: { filesystem: { rootdirectory: join(root, draintimeout) }, delete: { enabled: true } },
    http: { addr: '127.0.0.1:0', draintimeout },
    middleware: { registry: [{ name: 'downstream', options: { upstreams: [link.url] } }] },
  });

  beforeAll(async () => {
    upstream = await TestRegistry.start();
    link = await startThrottleProxy(upstream.port, 1024 * 1024);
    root = mkdtempSync(join(tmpdir(), 'dtr-cache-drain-'));
  });
  afterAll(async () => {
    for (const p of procs) await p.kill();
    await link?.stop();
    await upstream?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  async function start(draintimeout: string): Promise<CacheProcess> {
    const p = await startCacheProcess(config(draintimeout));
    procs.push(p);
    return p;
  }

  it('exits 0 at once when idle', async () => {
    const cache = await start('30s');
    const t = Date.now();
    cache.child.kill('SIGTERM');
    expect(await cache.exited).toBe(0);
    expect(Date.now() - t).toBeLessThan(5000);
    expect(cache.output()).toContain('"msg":"drained; exiting"');
  });

  it('finishes an in-flight download and its fill, refuses new connections, then exits 0', async () => {
    const data = Buffer.concat([Buffer.from('drain ok '), Buffer.alloc(2 * 1024 * 1024, 7)]); // ~2 s over the 1 MiB/s link
    const digest = await pushBlob(upstream.url, 'team/drain', data);
    const cache = await start('20s');
    const res = await fetch(`${cache.url}/v2/team/drain/blobs/${digest}`);
    expect(res.status).toBe(200);
    const body = res.arrayBuffer();
    const t = Date.now();
    cache.child.kill('SIGTERM');
    await sleep(500);
    await expect(fetch(`${cache.url}/healthz`)).rejects.toThrow(); // the listener is closed
    expect(`sha256:${hex(Buffer.from(await body))}`).toBe(digest);
    expect(await cache.exited).toBe(0);
    expect(Date.now() - t).toBeLessThan(20_000);
    const key = join(root, '20s', 'blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data');
    expect(existsSync(key)).toBe(true); // the fill was committed before exit
    expect(cache.output()).toMatch(/"msg":"drained; exiting".*"clean":true/);
  });

  it('past http.draintimeout: exits 0 on time, cuts the transfer, commits nothing partial', async () => {
    const data = Buffer.concat([Buffer.from('drain late '), Buffer.alloc(6 * 1024 * 1024, 9)]); // ~6 s over the link
    const digest = await pushBlob(upstream.url, 'team/drain', data);
    const cache = await start('1s');
    const res = await fetch(`${cache.url}/v2/team/drain/blobs/${digest}`);
    expect(res.status).toBe(200);
    const body = res.arrayBuffer().then(
      () => 'complete',
      () => 'cut',
    );
    const t = Date.now();
    cache.child.kill('SIGTERM');
    expect(await cache.exited).toBe(0);
    const took = Date.now() - t;
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(5000);
    expect(await body).toBe('cut');
    const key = join(root, '1s', 'blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data');
    expect(existsSync(key)).toBe(false);
    expect(cache.output()).toMatch(/"msg":"drained; exiting".*"clean":false/);
  });
});
