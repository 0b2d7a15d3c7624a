/**
 * Start-up time and manifest-hit latency of one `dtr-cache serve` on a generated store while its bookkeeping runs
 * (issue 23).
 *
 *   node -r ts-node/register/transpile-only bench/bookkeeping-hits.ts --root=<store> --tree=<dir with lib/ and bin/>
 *        [--sweep=on|off] [--ttl=168h] [--workers=n|auto] [--rate=200] [--seconds=20]
 *
 * The upstream is a real registry (Debian docker-registry, distribution 2.8) holding one tagged image. The cache runs
 * from `--tree` (a commit's lib/ and bin/: compiled, as the image runs it, when the tree holds dist/bin/dtr-cache.js,
 * else through ts-node) on the filesystem store `--root`, with `blobttl: <ttl>` (`--sweep=on`: the sweeper starts
 * with the server, and its first tick runs at once) or without (`off`: no sweeper, the baseline). The scrub is off
 * (`scrubrate: 0`): it is not bookkeeping, and it would judge the generated sparse blobs damaged and evict them.
 * `--workers` is passed to `serve` (default: its own, auto). Start-up = spawn to the "serving" log line (ts-node's
 * compilation included when run through it). The window's start and end (epoch ms) are printed, to place the pass in it.
 * Then one pull of the manifest by tag (the tag and manifest are cached), then bench/paced-client.ts at `rate` for
 * `seconds` against the tag, right away: the window is the start-up sweep of the old code (a whole-store listing)
 * or the first pass of the new one. CPU seconds of the cache process over the window are read from /proc.
 */

import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { request } from 'undici';
import { stringify } from 'yaml';
import { makeImage, pushImage } from '../harness/images';
import { TestRegistry } from '../harness/registry';
import { freePort, sleep } from '../harness/tools';
import { cpuTicks, runToCompletion, spawnTracked, stopChild } from './processes';
import { workerPids } from './warm';

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const root = resolve(args.root);
const tree = resolve(args.tree);
const sweepOn = (args.sweep ?? 'on') === 'on';
const ttl = args.ttl ?? '168h';
const workers = args.workers ?? 'auto';
const compiled = join(tree, 'dist/bin/dtr-cache.js');
const rate = Number(args.rate ?? 200);
const seconds = Number(args.seconds ?? 20);
const REPO = resolve(__dirname, '..');

/** CPU seconds of `pid` and its workers (`serve` forks them: the primary serves nothing). */
function cpuSeconds(pid: number): number {
  return [pid, ...workerPids(pid)].reduce((sum, p) => sum + (cpuTicks(p) ?? 0), 0) / 100; // ticks of 10 ms
}

async function main(): Promise<void> {
  const upstream = await TestRegistry.start();
  const dir = mkdtempSync(join(tmpdir(), 'bookkeeping-hits-'));
  try {
    const image = makeImage({ layerSizes: [4096] });
    await pushImage(upstream.url, 'team/app', 'v1', image);
    const port = await freePort();
    const options: Record<string, unknown> = { upstreams: [upstream.url], sweepinterval: '10m', scrubrate: 0 };
    if (sweepOn) options.blobttl = ttl;
    const config = {
      version: '0.1',
      log: { level: 'info' },
      storage: { filesystem: { rootdirectory: root }, delete: { enabled: true } },
      http: { addr: `127.0.0.1:${port}` },
      middleware: { registry: [{ name: 'downstream', options }] },
    };
    writeFileSync(join(dir, 'config.yml'), stringify(config));
    const serve = ['serve', '--config', join(dir, 'config.yml'), '--workers', workers];
    const loadAverage = loadavg().map((l) => Number(l.toFixed(2)));
    const started = Date.now();
    const child = spawnTracked(
      process.execPath,
      existsSync(compiled) ? [compiled, ...serve] : ['-r', 'ts-node/register/transpile-only', join(tree, 'bin/dtr-cache.ts'), ...serve],
      {
        cwd: tree,
        env: { ...process.env, TS_NODE_PROJECT: join(REPO, 'tsconfig.json') },
      },
    );
    let out = '';
    child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
    while (!out.includes('dtr-cache: serving ')) {
      if (child.exitCode !== null || Date.now() - started > 120_000) throw new Error(`serve did not start:\n${out.slice(-2000)}`);
      await sleep(20);
    }
    const startupMs = Date.now() - started;
    const url = `http://127.0.0.1:${port}/v2/team/app/manifests/v1`;
    const first = await request(url, { headers: { accept: image.mediaType } });
    await first.body.dump();
    if (first.statusCode !== 200) throw new Error(`first pull: ${first.statusCode}`);
    const cpuBefore = cpuSeconds(child.pid!);
    const windowStart = Date.now();
    const load = JSON.parse(
      await runToCompletion(
        process.execPath,
        [
          '-r',
          'ts-node/register/transpile-only',
          join(REPO, 'bench/paced-client.ts'),
          url,
          String(rate),
          String(seconds),
          image.digest,
          image.mediaType,
        ],
        (seconds + 60) * 1000,
      ),
    ) as Record<string, unknown>;
    const cpuWindow = cpuSeconds(child.pid!) - cpuBefore;
    const windowEnd = Date.now();
    await stopChild(child);
    process.stdout.write(
      `${JSON.stringify({ tree, compiled: existsSync(compiled), sweep: sweepOn, ttl: sweepOn ? ttl : undefined, workers, loadAverage, startupMs, window: [windowStart, windowEnd], rate, seconds, cacheCpuSecondsInWindow: cpuWindow, load, sweeperLog: out.split('\n').filter((l) => l.includes('sweep')).length })}\n`,
    );
  } finally {
    await upstream.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
