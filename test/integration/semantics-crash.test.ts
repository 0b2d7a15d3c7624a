/**
 * kill -9 of the cache process (`dtr-cache serve`) while 20 blob fills are in flight over a slow upstream link,
 * then a restart on the same storage: no client ever received a complete-looking response of wrong bytes, no
 * partial or corrupt blob is in storage or served, and every fill completes on the next request.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import type { CacheConfigInput } from '../../lib/config';
import { startCacheProcess, type CacheProcess } from '../support/cache-process';
import { pushBlob } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { startThrottleProxy, type ThrottleProxy } from '../support/throttle-proxy';
import { sleep } from '../../harness/tools';

const hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const FILLS = 20;
const BLOB_BYTES = 1024 * 1024;

/** Every file under `dir`, relative. */
function files(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else out.push(relative(dir, join(d, e.name)));
    }
  };
  walk(dir);
  return out;
}

/** Every committed blob must hash to its key: a partial or corrupt one would not. */
function expectStoredBlobsIntact(root: string): number {
  const blobs = files(root).filter((f) => f.startsWith('blobs/'));
  for (const f of blobs) expect(`sha256:${hex(readFileSync(join(root, f)))}`).toBe(`sha256:${f.split('/')[3]}`);
  return blobs.length;
}

describe('kill -9 during 20 concurrent fills, then restart', () => {
  let upstream: TestRegistry;
  let link: ThrottleProxy;
  let root: string;
  let cache: CacheProcess | undefined;
  const blobs = Array.from({ length: FILLS }, (_, i) => Buffer.concat([Buffer.from(`blob ${i} `), Buffer.alloc(BLOB_BYTES, i)]));
  const digests: string[] = [];

  const config = (): CacheConfigInput => ({
    version: '0.1',
    log: { level: 'info' },
    storage: { filesystem: { rootdirectory: join(root, 'store') }, delete: { enabled: true } },
    http: { addr: '127.0.0.1:0' },
    middleware: { registry: [{ name: 'downstream', options: { upstreams: [link.url] } }] },
  });

  beforeAll(async () => {
    upstream = await TestRegistry.start();
    for (const b of blobs) digests.push(await pushBlob(upstream.url, 'team/big', b));
    link = await startThrottleProxy(upstream.port, 128 * 1024); // ~8 s per blob: the kill lands mid-fill
    root = mkdtempSync(join(tmpdir(), 'dtr-cache-crash-'));
  });
  afterAll(async () => {
    await cache?.kill();
    await link?.stop();
    await upstream?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const step = (what: string) => process.stderr.write(`[crash test] ${new Date().toISOString()} ${what}\n`);

  it('never serves a partial blob, and completes every fill after the restart', async () => {
    cache = await startCacheProcess(config());
    const first = cache;
    step('first cache started');
    // 20 clients, one per blob: each either fails (cut) or, had it finished, must hold the exact bytes.
    const clients = digests.map(async (digest) => {
      try {
        const res = await fetch(`${first.url}/v2/team/big/blobs/${digest}`);
        const body = Buffer.from(await res.arrayBuffer());
        return { digest, status: res.status, complete: true, ok: `sha256:${hex(body)}` === digest, bytes: body.length };
      } catch {
        return { digest, status: 0, complete: false, ok: false, bytes: 0 };
      }
    });
    // Wait (bounded) until all 20 fills are under way and have some bytes, then kill -9.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const text = await (await fetch(`${first.url}/metrics`)).text();
      const inFlight = Number(/^dtr_cache_fills_in_flight\{kind="blob"\} (\d+)$/m.exec(text)?.[1] ?? 0);
      if (inFlight === FILLS) break;
      if (Date.now() > deadline) throw new Error(`only ${inFlight} fills started:\n${first.output().slice(-2000)}`);
      await sleep(100);
    }
    step('20 fills in flight');
    await sleep(1500);
    const spooled = files(join(root, 'store')).filter((f) => f.startsWith('_uploads/'));
    expect(spooled.length).toBe(FILLS); // 20 storage writes really in progress
    expect(spooled.some((f) => statSync(join(root, 'store', f)).size > 0)).toBe(true);
    first.child.kill('SIGKILL');
    expect(await first.exited).toBe('SIGKILL');

    const results = await Promise.all(clients);
    step('killed; clients settled');
    expect(results.filter((r) => r.complete && r.status === 200 && !r.ok)).toEqual([]);
    expect(results.filter((r) => !r.complete).length).toBeGreaterThan(0); // the kill really cut transfers
    expect(expectStoredBlobsIntact(join(root, 'store'))).toBe(0); // nothing was committed mid-transfer

    // Restart on the same storage, with a fast link.
    link.rate = 64 * 1024 * 1024;
    cache = await startCacheProcess(config());
    const second = cache;
    step('restarted');
    upstream.clearLog();
    const after = await Promise.all(
      digests.map(async (digest) => {
        const res = await fetch(`${second.url}/v2/team/big/blobs/${digest}`);
        return { status: res.status, digest: `sha256:${hex(Buffer.from(await res.arrayBuffer()))}` };
      }),
    );
    expect(after).toEqual(digests.map((digest) => ({ status: 200, digest })));
    await sleep(500);
    expect(expectStoredBlobsIntact(join(root, 'store'))).toBe(FILLS);
    // Served from storage now: no upstream GET on a second round.
    upstream.clearLog();
    for (const digest of digests) expect((await fetch(`${second.url}/v2/team/big/blobs/${digest}`, { method: 'HEAD' })).status).toBe(200);
    const again = await fetch(`${second.url}/v2/team/big/blobs/${digests[0]}`);
    expect(`sha256:${hex(Buffer.from(await again.arrayBuffer()))}`).toBe(digests[0]);
    await sleep(500);
    expect(upstream.blobGets()).toEqual([]);
    // The killed process's temp files are fresh, so a restart leaves them (another replica might own them);
    // the sweeper removes them once older than filltimeout. They are never visible as blobs.
    step('done');
    process.stdout.write(
      `temp files left by the killed process: ${files(join(root, 'store')).filter((f) => f.startsWith('_uploads/')).length}\n`,
    );
  }, 300_000);
});
