/**
 * Hardening (issue 10): memory stays bounded with many slow clients. The cache runs as its own process
 * (`dtr-cache serve`), a 1 GiB blob is filled from a loopback distribution 2.8 while 32 real `curl --limit-rate 1M`
 * clients read it, and the process's VmRSS (/proc/<pid>/status) is sampled throughout: backpressure end to end and
 * no per-client buffering of the fill means it grows by a few MiB, not by what the clients are behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CacheConfigInput } from '../../lib/config';
import { startCacheProcess, type CacheProcess } from '../support/cache-process';
import { TestRegistry } from '../../harness/registry';
import { requireTool, sleep } from '../../harness/tools';

const MiB = 1024 * 1024;
const BLOB_MIB = 1024;
const CLIENTS = 32;
const READ_MS = 30_000;

const rssMiB = (pid: number) => Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
/** A sample's value from Prometheus text (0 when absent). */
const metric = (text: string, series: string) =>
  Number(
    text
      .split('\n')
      .find((line) => line.startsWith(`${series} `))
      ?.slice(series.length + 1) ?? 0,
  );
/** Bytes the fill has written so far: the storage driver's temp file, then the committed blob. */
function filled(root: string, digest: string): number {
  const committed = statSafe(root, digest);
  if (committed !== undefined) return committed;
  try {
    return readdirSync(join(root, '_uploads')).reduce((max, f) => Math.max(max, statSync(join(root, '_uploads', f)).size), 0);
  } catch {
    return 0;
  }
}

/**
 * Seeds a 1 GiB blob straight into the registry's filesystem layout (a push would hold it in this process's
 * memory): blobs/sha256/<ab>/<hex>/data plus the repository's layer link. Returns its digest.
 */
function seedBlob(registry: TestRegistry, repo: string): string {
  const root = join(registry.dir, 'data/docker/registry/v2');
  const temp = join(registry.dir, 'seed.tmp');
  const hash = createHash('sha256');
  const chunk = randomBytes(MiB);
  const fd = openSync(temp, 'w');
  for (let i = 0; i < BLOB_MIB; i++) {
    chunk.writeUInt32BE(i, 0); // every MiB differs
    hash.update(chunk);
    writeSync(fd, chunk);
  }
  closeSync(fd);
  const hex = hash.digest('hex');
  const blobDir = join(root, 'blobs/sha256', hex.slice(0, 2), hex);
  mkdirSync(blobDir, { recursive: true });
  renameSync(temp, join(blobDir, 'data'));
  const link = join(root, 'repositories', repo, '_layers/sha256', hex);
  mkdirSync(link, { recursive: true });
  writeFileSync(join(link, 'link'), `sha256:${hex}`);
  return `sha256:${hex}`;
}

describe('hardening: bounded memory with 32 slow clients during a 1 GiB fill', () => {
  let upstream: TestRegistry;
  let cache: CacheProcess | undefined;
  let work: string;
  const clients: ChildProcess[] = [];

  beforeAll(async () => {
    requireTool('curl');
    upstream = await TestRegistry.start();
    work = mkdtempSync(join(tmpdir(), 'dtr-cache-memory-'));
  });
  afterAll(async () => {
    for (const c of clients) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await cache?.kill();
    await upstream?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('keeps the cache process RSS bounded while 32 clients read at 1 MiB/s, and commits the blob with one upstream GET', async () => {
    const digest = seedBlob(upstream, 'team/huge');
    const config: CacheConfigInput = {
      version: '0.1',
      log: { level: 'warn' },
      storage: { filesystem: { rootdirectory: join(work, 'store') }, delete: { enabled: true } },
      http: { addr: '127.0.0.1:0' },
      middleware: { registry: [{ name: 'downstream', options: { upstreams: [upstream.url] } }] },
    };
    cache = await startCacheProcess(config);
    const pid = cache.child.pid as number;
    await sleep(1000);
    const idle = rssMiB(pid);

    const url = `${cache.url}/v2/team/huge/blobs/${digest}`;
    const curl = requireTool('curl');
    for (let i = 0; i < CLIENTS; i++) {
      clients.push(spawn(curl, ['-s', '-o', '/dev/null', '--limit-rate', '1M', url], { stdio: 'ignore' }));
    }
    // Bounded: sample every 250 ms for READ_MS, then stop the clients.
    const samples: number[] = [];
    const trace: string[] = [];
    const started = Date.now();
    while (Date.now() - started < READ_MS) {
      samples.push(rssMiB(pid));
      if (samples.length % 20 === 0) {
        trace.push(
          `${((Date.now() - started) / 1000).toFixed(0)}s: RSS ${samples[samples.length - 1].toFixed(0)} MiB, fill ${(filled(join(work, 'store'), digest) / MiB).toFixed(0)} MiB`,
        );
      }
      await sleep(250);
    }
    const metrics = await (await fetch(`${cache.url}/metrics`)).text();
    for (const c of clients) c.kill('SIGTERM');
    expect(clients.every((c) => c.exitCode === null)).toBe(true); // every client was still reading: really slow

    const peak = Math.max(...samples);
    const served =
      metric(metrics, 'dtr_cache_served_bytes_total{source="upstream"}') +
      metric(metrics, 'dtr_cache_served_bytes_total{source="storage"}');
    process.stdout.write(
      `RSS idle ${idle.toFixed(0)} MiB, peak ${peak.toFixed(0)} MiB over ${samples.length} samples (${CLIENTS} clients at 1 MiB/s, ` +
        `${(served / MiB).toFixed(0)} MiB sent in ${READ_MS / 1000} s)\n${trace.join('\n')}\n`,
    );
    // The clients really read: about 1 MiB/s each (at least a third of that on a loaded box).
    expect(served).toBeGreaterThan((CLIENTS * READ_MS * MiB) / 1000 / 3);
    // Bounded growth: without backpressure the fill (running ahead at loopback speed) would pile up hundreds of MiB.
    // Measured here: +90 to +127 MiB (32 readers' chunks in flight plus garbage V8 has not collected yet), flat; the
    // idle process is ~157 MiB under ts-node, ~73 MiB from the built dist/.
    expect(peak - idle).toBeLessThan(160);
    // And flat: while the fill runs further and further ahead of the clients, RSS does not follow it.
    const third = Math.floor(samples.length / 3);
    expect(Math.max(...samples.slice(-third))).toBeLessThan(Math.max(...samples.slice(0, third)) + 32);

    // The fill ran at upstream speed, not at the clients' 1 MiB/s: committed long before they could have read it.
    const deadline = Date.now() + 60_000;
    while (statSafe(join(work, 'store'), digest) !== BLOB_MIB * MiB && Date.now() < deadline) await sleep(250);
    expect(statSafe(join(work, 'store'), digest)).toBe(BLOB_MIB * MiB);
    await sleep(500);
    expect(upstream.blobGets().filter((e) => e.path.endsWith(digest))).toHaveLength(1);
  }, 180_000);
});

function statSafe(root: string, digest: string): number | undefined {
  const hex = digest.slice('sha256:'.length);
  try {
    return statSync(join(root, 'blobs/sha256', hex.slice(0, 2), hex, 'data')).size;
  } catch {
    return undefined;
  }
}
