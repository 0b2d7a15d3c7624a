/**
 * Hardening (issue 10): the fill is detached from every client. distribution's proxy writes client and cache through
 * one writer, so a slow client throttles the fill; here a real `curl --limit-rate 1M` and a fast client share one
 * cold 64 MiB blob, the fast one finishes at full speed and the upstream sees one GET. Clients that all leave early
 * cancel nothing (the blob is committed and then served from storage), and `filltimeout` bounds a fill nobody reads.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blobKey, parseDigest } from '../../lib/cache/reference';
import { startCache, type TestCache } from '../support/cache-server';
import { pushBlob } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { startThrottleProxy, type ThrottleProxy } from '../support/throttle-proxy';
import { requireTool, sleep, waitFor } from '../../harness/tools';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const settleLog = () => sleep(500); // access log lines are written when a request ends

/** A real curl downloading `url` into `file`; `args` adds e.g. --limit-rate or --max-time. */
function curl(url: string, file: string, args: string[]): { child: ChildProcess; exited: Promise<number | string> } {
  const child = spawn(requireTool('curl'), ['-s', '-o', file, ...args, url], { stdio: 'ignore' });
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  return { child, exited };
}

const size = (file: string) => (existsSync(file) ? statSync(file).size : 0);
const uploads = (root: string) => (existsSync(join(root, '_uploads')) ? readdirSync(join(root, '_uploads')) : []);

describe('hardening: the blob fill is detached from its clients', () => {
  let upstream: TestRegistry;
  let link: ThrottleProxy;
  let work: string;
  const caches: TestCache[] = [];
  const children: ChildProcess[] = [];
  const big = randomBytes(64 * MiB);
  const slow = randomBytes(32 * MiB);
  const bounded = randomBytes(8 * MiB);
  const digests: Record<string, string> = {};

  beforeAll(async () => {
    requireTool('curl');
    upstream = await TestRegistry.start();
    digests.big = await pushBlob(upstream.url, 'team/big', big);
    digests.slow = await pushBlob(upstream.url, 'team/big', slow);
    digests.bounded = await pushBlob(upstream.url, 'team/big', bounded);
    link = await startThrottleProxy(upstream.port, 16 * MiB);
    work = mkdtempSync(join(tmpdir(), 'dtr-cache-hardening-fill-'));
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const c of caches) await c.stop();
    await link?.stop();
    await upstream?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('a throttled curl (1 MiB/s) does not slow a fast client on the same cold blob; the upstream sees one GET', async () => {
    const cache = await startCache([upstream.url]);
    caches.push(cache);
    const url = `${cache.url}/v2/team/big/blobs/${digests.big}`;
    const slowFile = join(work, 'throttled');
    const throttled = curl(url, slowFile, ['--limit-rate', '1M']);
    children.push(throttled.child);
    // Bounded: the throttled client has started the fill and received its first bytes.
    await waitFor('the throttled client to receive bytes', async () => size(slowFile) > 0, 30_000);

    const started = Date.now();
    const res = await fetch(url);
    const body = Buffer.from(await res.arrayBuffer());
    const fastMs = Date.now() - started;
    const slowBytes = size(slowFile);
    throttled.child.kill('SIGTERM');
    await throttled.exited;

    expect(res.status).toBe(200);
    expect(sha(body)).toBe(digests.big);
    // At 1 MiB/s the throttled client needs 64 s for the blob; the fast client took a small fraction of that,
    // and by then the throttled one had only a small part (it was never what paced the fill).
    const throttledMs = (big.length / MiB) * 1000;
    expect(fastMs).toBeLessThan(throttledMs / 2);
    expect(slowBytes).toBeLessThan(big.length / 2);
    process.stdout.write(
      `fast client: 64 MiB in ${fastMs} ms (${((64 * 1000) / fastMs).toFixed(0)} MiB/s); throttled client had ${(slowBytes / MiB).toFixed(1)} MiB\n`,
    );

    await settleLog();
    expect(upstream.blobGets().filter((e) => e.path.endsWith(digests.big))).toHaveLength(1);
  });

  it('every client leaves early, the fill still completes and commits; then storage serves it with no upstream GET', async () => {
    const cache = await startCache([link.url]); // 32 MiB at 16 MiB/s: about 2 s of fill
    caches.push(cache);
    const url = `${cache.url}/v2/team/big/blobs/${digests.slow}`;
    const clients = [
      curl(url, join(work, 'leaver-1'), ['--max-time', '0.7']),
      curl(url, join(work, 'leaver-2'), ['--max-time', '0.7', '--limit-rate', '1M']),
    ];
    children.push(...clients.map((c) => c.child));
    const codes = await Promise.all(clients.map((c) => c.exited));
    expect(codes).toEqual([28, 28]); // curl: operation timed out, i.e. the client cut the transfer
    expect(size(join(work, 'leaver-1'))).toBeLessThan(slow.length);
    expect(cache.server.fillsInFlight()).toBe(1); // nobody reads, the fill goes on

    await waitFor('the orphaned fill to finish', async () => cache.server.fillsInFlight() === 0, 60_000);
    const digest = parseDigest(digests.slow);
    if (!digest.ok) throw new Error('bad digest');
    expect((await cache.server.storage.stat(blobKey(digest.value)))?.size).toBe(slow.length);

    await settleLog();
    const before = upstream.blobGets().filter((e) => e.path.endsWith(digests.slow)).length;
    const res = await fetch(url);
    expect(sha(Buffer.from(await res.arrayBuffer()))).toBe(digests.slow);
    await settleLog();
    expect(before).toBe(1);
    expect(upstream.blobGets().filter((e) => e.path.endsWith(digests.slow))).toHaveLength(1);
    expect(uploads(cache.root)).toEqual([]);
  });

  it('a fill nobody reads is stopped at filltimeout: nothing committed, no temp file left', async () => {
    link.rate = 1 * MiB; // 8 MiB takes ~8 s, longer than the 2 s filltimeout
    const cache = await startCache([link.url], { filltimeout: '2s' });
    caches.push(cache);
    const ended = new Promise<{ ok: boolean; reason?: string; at: number }>((resolve) =>
      cache.server.events.on('fillEnded', (e) => resolve({ ok: e.ok, reason: e.reason, at: Date.now() })),
    );
    const started = Date.now();
    const client = curl(`${cache.url}/v2/team/big/blobs/${digests.bounded}`, join(work, 'bounded'), ['--max-time', '0.5']);
    children.push(client.child);
    expect(await client.exited).toBe(28);
    const end = await ended;
    expect(end.ok).toBe(false);
    expect(end.reason).toMatch(/fill stopped|abort|timeout/i);
    expect(end.at - started).toBeGreaterThanOrEqual(1900);
    expect(end.at - started).toBeLessThan(15_000);
    await cache.server.idle();
    const digest = parseDigest(digests.bounded);
    if (!digest.ok) throw new Error('bad digest');
    expect(await cache.server.storage.stat(blobKey(digest.value))).toBeUndefined();
    expect(uploads(cache.root)).toEqual([]);
    link.rate = 16 * MiB;
  });
});
