/**
 * `dtr-cache warm` through our real cache server (`dtr-cache serve`) in front of distribution 2.8: the
 * upstream's blob GETs before and after warming, and a real client's pull afterwards served without any
 * upstream blob GET, i.e. from the cache.
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { runCli } from '../fixtures/cli';
import { makeImage, makeIndex, pushImage, TestImage } from '../support/images';
import { TestRegistry } from '../support/registry';
import { freePort, requireTool, waitFor } from '../support/tools';

const exec = promisify(execFile);
const ROOT = join(__dirname, '..', '..');

describe('dtr-cache warm through the cache server', () => {
  let upstream: TestRegistry;
  let cache: ChildProcess;
  let cacheUrl: string;
  let dir: string;
  let cacheLog = '';
  const app = makeImage({ layerSizes: [512 * 1024, 2 * 1024 * 1024] });
  const multi = makeIndex(['amd64', 'arm64']);
  const distinct = (...images: TestImage[]) => new Set(images.flatMap((i) => i.blobs.map((b) => b.digest)));

  beforeAll(async () => {
    const skopeo = requireTool('skopeo');
    expect(skopeo).toBeTruthy();
    dir = mkdtempSync(join(tmpdir(), 'cli-warm-cache-'));
    upstream = await TestRegistry.start();
    await pushImage(upstream.url, 'team/app', 'v1', app);
    await pushImage(upstream.url, 'team/multi', 'v1', multi);
    const port = await freePort();
    cacheUrl = `http://127.0.0.1:${port}`;
    writeFileSync(
      join(dir, 'config.yml'),
      stringify({
        version: 0.1,
        log: { level: 'info' },
        storage: { delete: { enabled: true }, filesystem: { rootdirectory: join(dir, 'data') } },
        http: { addr: `127.0.0.1:${port}` },
        middleware: { registry: [{ name: 'downstream', options: { upstreams: [upstream.url] } }] },
      }),
    );
    cache = spawn(
      process.execPath,
      ['-r', 'ts-node/register/transpile-only', join(ROOT, 'bin/dtr-cache.ts'), 'serve', '--config', join(dir, 'config.yml')],
      {
        cwd: ROOT,
        env: { PATH: process.env.PATH, HOME: process.env.HOME, TS_NODE_PROJECT: join(ROOT, 'tsconfig.json') },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    cache.stdout?.on('data', (c: Buffer) => (cacheLog += c.toString()));
    cache.stderr?.on('data', (c: Buffer) => (cacheLog += c.toString()));
    await waitFor(
      `dtr-cache serve on ${cacheUrl}`,
      async () => {
        if (cache.exitCode !== null) throw new Error(`dtr-cache serve exited with ${cache.exitCode}: ${cacheLog.slice(-2000)}`);
        const res = await fetch(`${cacheUrl}/v2/`);
        await res.arrayBuffer(); // an unread body would keep the connection (and jest) alive
        return res.status === 200 || res.status === 401;
      },
      30_000,
    );
  });
  afterAll(async () => {
    if (cache && cache.exitCode === null) {
      const exited = new Promise((r) => cache.once('exit', r));
      cache.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 10_000)))]);
      clearTimeout(timer);
      if (cache.exitCode === null) cache.kill('SIGKILL');
    }
    await upstream?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('fills the cache once, and a following skopeo pull makes no upstream blob GET', async () => {
    upstream.clearLog();
    expect(upstream.blobGets()).toHaveLength(0); // before: the cache has never asked for a blob
    const res = await runCli(['warm', '--cache', cacheUrl, 'team/app:v1', 'team/multi:v1']);
    expect(res.stderr).toMatch(/warmed {2}team\/app:v1: 3 blobs/);
    expect(res.code).toBe(0);
    // After: every distinct blob was fetched from the upstream exactly once.
    const fetched = upstream
      .blobGets()
      .filter((e) => e.status === 200)
      .map((e) => e.path.replace(/.*\/blobs\//, ''));
    expect(new Set(fetched)).toEqual(distinct(app, multi));
    expect(fetched).toHaveLength(distinct(app, multi).size);

    upstream.clearLog();
    const host = cacheUrl.replace('http://', '');
    await exec(requireTool('skopeo'), ['copy', '--src-tls-verify=false', `docker://${host}/team/app:v1`, `oci:${join(dir, 'pulled')}:v1`], {
      timeout: 60_000,
    });
    expect(upstream.blobGets()).toEqual([]); // the real pull was a hit for every blob
    expect(upstream.requests().filter((e) => e.path.includes('/blobs/'))).toEqual([]); // not even a HEAD
  });
});
