/**
 * The rendered HAProxy configuration, run by Debian's haproxy, in front of two `dtr-cache serve` replicas speaking
 * TLS (passthrough: the client verifies the caches' certificate through HAProxy) on one shared filesystem store.
 * A bounded loop of pulls goes through HAProxy; replica A is killed in the middle; every pull still succeeds, and
 * HAProxy's HTTPS check of /readyz marks A down. Everything listens on 127.0.0.1.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import type { CacheConfigInput } from '../../lib/config';
import { renderHaproxyConfig } from '../../lib/constructs';
import { startCacheProcess, type CacheProcess } from '../support/cache-process';
import { makeImage, pushImage, sha256, type TestImage } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { freePort, requireTool, sleep } from '../../harness/tools';
import { createTestCa } from '../e2e/support/pki';

jest.setTimeout(240_000);

const HOST = 'cache.test';
const REPO = 'team/app';
const PULLS = 30;

describe('HAProxy from the rendered config balancing two TLS cache replicas', () => {
  const work = mkdtempSync(join(tmpdir(), 'dtr-cache-haproxy-'));
  let upstream: TestRegistry;
  let a: CacheProcess;
  let b: CacheProcess;
  let haproxy: ChildProcess | undefined;
  let haproxyLog = '';
  let lbPort = 0;
  let ca: Buffer;
  let image: TestImage;

  beforeAll(async () => {
    const haproxyBin = requireTool('haproxy');
    const pki = createTestCa(join(work, 'pki'));
    const cert = pki.issue('cache', [HOST, '127.0.0.1']);
    ca = readFileSync(pki.caCert);
    upstream = await TestRegistry.start();
    image = makeImage({ layerSizes: [512 * 1024, 4096] });
    await pushImage(upstream.url, REPO, 'v1', image);
    const config: CacheConfigInput = {
      version: '0.1',
      log: { level: 'info' },
      storage: { filesystem: { rootdirectory: join(work, 'store') } },
      http: { addr: '127.0.0.1:0', tls: { certificate: cert.certificate, key: cert.key } },
      middleware: { registry: [{ name: 'downstream', options: { upstreams: [upstream.url] } }] },
    };
    [a, b] = await Promise.all([startCacheProcess(config), startCacheProcess(config)]);

    lbPort = await freePort();
    const file = join(work, 'haproxy.cfg');
    writeFileSync(
      file,
      renderHaproxyConfig({
        name: 'dtr-cache-test',
        host: HOST,
        listen: `127.0.0.1:${lbPort}`,
        backends: [
          { address: '127.0.0.1', port: a.port },
          { address: '127.0.0.1', port: b.port },
        ],
      }),
    );
    // -db: foreground, server state changes (UP/DOWN from the health check) on stderr.
    haproxy = spawn(haproxyBin, ['-db', '-f', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    haproxy.stdout?.on('data', (c: Buffer) => (haproxyLog += c.toString()));
    haproxy.stderr?.on('data', (c: Buffer) => (haproxyLog += c.toString()));
    // Both replicas serve a pull through HAProxy before the test starts (bounded: 30 s).
    const deadline = Date.now() + 30_000;
    for (;;) {
      const ok = await pull().then(
        () => true,
        () => false,
      );
      if (ok) break;
      if (Date.now() > deadline || haproxy.exitCode !== null) throw new Error(`HAProxy did not pass a pull in 30 s:\n${haproxyLog}`);
      await sleep(200);
    }
  }, 180_000);

  afterAll(async () => {
    if (haproxy && haproxy.exitCode === null) {
      const exited = new Promise((r) => haproxy?.once('exit', r));
      haproxy.kill('SIGTERM');
      await exited;
    }
    await Promise.all([a?.kill(), b?.kill()]);
    await upstream?.stop();
    rmSync(work, { recursive: true, force: true });
  }, 60_000);

  /** One pull through HAProxy on a new TLS connection: manifest and blobs, digests checked, certificate verified. */
  async function pull(): Promise<void> {
    const agent = new Agent({ connect: { ca, servername: HOST }, headersTimeout: 10_000, bodyTimeout: 10_000 });
    try {
      const base = `https://127.0.0.1:${lbPort}/v2/${REPO}`;
      const m = await request(`${base}/manifests/v1`, { dispatcher: agent, headers: { accept: image.mediaType } });
      const body = Buffer.from(await m.body.arrayBuffer());
      if (m.statusCode !== 200 || sha256(body) !== image.digest) throw new Error(`manifest: ${m.statusCode}`);
      for (const blob of image.blobs) {
        const res = await request(`${base}/blobs/${blob.digest}`, { dispatcher: agent });
        const hash = createHash('sha256');
        for await (const chunk of res.body) hash.update(chunk as Buffer);
        if (res.statusCode !== 200 || `sha256:${hash.digest('hex')}` !== blob.digest)
          throw new Error(`blob ${blob.digest}: ${res.statusCode}`);
      }
    } finally {
      await agent.close();
    }
  }

  /** Manifest requests a replica answered, from its own /metrics. */
  async function manifestRequests(replica: CacheProcess): Promise<number> {
    const agent = new Agent({ connect: { ca, servername: HOST } });
    try {
      const res = await request(`https://127.0.0.1:${replica.port}/metrics`, { dispatcher: agent });
      const text = await res.body.text();
      return [...text.matchAll(/^dtr_cache_http_requests_total\{[^}]*route="manifest"[^}]*\} (\d+)/gm)].reduce(
        (n, m) => n + Number(m[1]),
        0,
      );
    } finally {
      await agent.close();
    }
  }

  test('pulls keep succeeding while replica A is killed mid-loop; HAProxy marks A down', async () => {
    const results: { i: number; ok: boolean; error?: string; ms: number }[] = [];
    const started = Date.now();
    for (let i = 0; i < PULLS && Date.now() - started < 120_000; i++) {
      if (i === PULLS / 3) await a.kill(); // SIGKILL: no drain, the replica just disappears
      const t0 = Date.now();
      try {
        await pull();
        results.push({ i, ok: true, ms: Date.now() - t0 });
      } catch (err) {
        results.push({ i, ok: false, error: (err as Error).message, ms: Date.now() - t0 });
      }
      if (i === PULLS / 3 - 1) {
        // Before the kill, HAProxy spread the pulls over both replicas.
        expect(await manifestRequests(a)).toBeGreaterThan(0);
        expect(await manifestRequests(b)).toBeGreaterThan(0);
      }
      await sleep(200);
    }
    const failures = results.filter((r) => !r.ok);
    console.log(
      `haproxy failover: ${results.length} pulls, ${failures.length} failed, ` +
        `slowest ${Math.max(...results.map((r) => r.ms))} ms, after the kill ${results.filter((r) => r.i >= PULLS / 3).length} pulls`,
    );
    expect(results).toHaveLength(PULLS);
    expect(failures).toEqual([]);
    // The HTTPS check of /readyz took A out (fall 2, inter 2 s: within ~4 s of the kill; the loop lasts longer).
    expect(haproxyLog).toMatch(new RegExp(`Server dtr-cache-test-replicas/replica-1-127\\.0\\.0\\.1 is DOWN`));
    expect(haproxyLog).not.toMatch(/replica-2-127\.0\.0\.1 is DOWN/);
    expect(await manifestRequests(b)).toBeGreaterThanOrEqual((PULLS * 2) / 3);
  });
});
