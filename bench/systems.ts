/**
 * The systems under test, each a separate process on 127.0.0.1 with its own fresh storage: the upstream and
 * distribution's proxy (harness/ TestRegistry), our cache (the CLI, so its RSS is its own), and the raw
 * static file server baseline.
 */
import { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { renderConfig } from '../lib/config';
import { TestRegistry } from '../harness/registry';
import { freePort, waitFor } from '../harness/tools';
import { atExit, spawnTracked, stopChild, track, untrack } from './processes';

export interface System {
  readonly name: string;
  readonly url: string;
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

const ROOT = resolve(__dirname, '..');

/** distribution 2.8 as a plain registry (the upstream) or, with proxyOf, as its pull-through cache (the reference). */
export async function startRegistry(
  name: string,
  proxyOf?: string,
  setup: { readonly root?: string; readonly tls?: TlsFiles } = {},
): Promise<System & { registry: TestRegistry }> {
  // The reference logs at warn without an access log, like our cache; the upstream keeps its access log to count GETs.
  const quiet = { log: { level: 'warn', formatter: 'json', accesslog: { disabled: true } } };
  // A shared root: several proxies on one store, as replicas of one site.
  const storage = setup.root ? { storage: { filesystem: { rootdirectory: setup.root }, delete: { enabled: true } } } : {};
  const registry = await TestRegistry.start({ ...(proxyOf ? { proxyOf, extra: { ...quiet, ...storage } } : {}), tls: setup.tls });
  track(registry.pid);
  atExit(() => rmSync(registry.dir, { recursive: true, force: true }));
  return {
    name,
    url: registry.url,
    pid: registry.pid,
    registry,
    stop: async () => {
      await registry.stop();
      untrack(registry.pid);
    },
  };
}

/** PEM files of a server certificate and its key. */
export interface TlsFiles {
  readonly certificate: string;
  readonly key: string;
}

/** What a benchmark may change of our cache's setup. */
export interface OurCacheSetup {
  /** Storage root to use (kept on stop); default a fresh directory, removed on stop. */
  readonly root?: string;
  /** Downstream options over the defaults, e.g. `{ scrubrate: '0' }`. */
  readonly options?: Readonly<Record<string, string>>;
  /** `serve --workers`; default 1, one event loop, as the rows that predate workers measured. */
  readonly workers?: number;
  /** Serve HTTPS with these files. */
  readonly tls?: TlsFiles;
  /** http.secret: replicas (and workers) with the same one share fills through the store's leases. */
  readonly secret?: string;
  /** Extra node flags (e.g. `-r <preload>`) and environment, for prototypes measured against the build. */
  readonly node?: { readonly args: readonly string[]; readonly env: Readonly<Record<string, string>> };
  /** log.level; default warn, as deployed for throughput. */
  readonly logLevel?: 'debug' | 'info' | 'warn' | 'error';
}

/** Our cache: also the last 64 KiB of what it printed (its JSON log lines). */
export interface OurSystem extends System {
  output(): string;
}

/**
 * Our cache through its CLI (`node dist/bin/dtr-cache.js serve --config`), on fresh filesystem storage.
 * `cli` points at another build of the CLI (before/after comparisons).
 */
export async function startOurCache(
  upstreamUrl: string,
  cpuProfDir?: string,
  cli = join(ROOT, 'dist/bin/dtr-cache.js'),
  setup: OurCacheSetup = {},
): Promise<OurSystem> {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build`);
  const dir = mkdtempSync(join(tmpdir(), 'dtr-cache-bench-ours-'));
  atExit(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const configPath = join(dir, 'config.yml');
  writeFileSync(
    configPath,
    renderConfig({
      version: '0.1',
      log: { level: setup.logLevel ?? 'warn' },
      storage: { filesystem: { rootdirectory: setup.root ?? join(dir, 'data') } },
      http: {
        addr: `127.0.0.1:${port}`,
        ...(setup.tls ? { tls: setup.tls } : {}),
        ...(setup.secret ? { secret: setup.secret, internal: { addr: '127.0.0.1:0' } } : {}),
      },
      middleware: { registry: [{ name: 'downstream', options: { upstreams: [upstreamUrl], ...setup.options } }] },
    }),
  );
  const nodeArgs = [...(cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', cpuProfDir] : []), ...(setup.node?.args ?? [])];
  const workers = String(setup.workers ?? 1);
  const child = spawnTracked(process.execPath, [...nodeArgs, cli, 'serve', '--config', configPath, '--workers', workers], {
    env: { ...process.env, ...setup.node?.env },
  });
  const output = collect(child);
  const url = `${setup.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const stop = async () => {
    // SIGINT first: node writes the --cpu-prof file only on a clean exit
    if (cpuProfDir && child.exitCode === null) child.kill('SIGINT');
    await stopChild(child, 10_000);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // Printed once every worker listens.
    await waitFor(
      `our cache on ${url}`,
      async () => {
        if (child.exitCode !== null) throw new Error(`dtr-cache serve exited with ${child.exitCode}: ${output().trim().slice(-800)}`);
        return output().includes('dtr-cache: serving ');
      },
      60_000,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { name: 'ours', url, pid: child.pid, stop, output };
}

/** The raw baseline: bench/static-server.ts serving `dir` (same runtime as our cache, no cache logic). */
export async function startStaticServer(dir: string): Promise<System> {
  const script = join(ROOT, 'bench/static-server.ts');
  const child = spawnTracked(process.execPath, ['-r', 'ts-node/register/transpile-only', script, dir], { cwd: ROOT });
  const output = collect(child);
  let port = 0;
  await waitFor('static file server', async () => {
    if (child.exitCode !== null) throw new Error(`static server exited with ${child.exitCode}: ${output()}`);
    port = Number(output().split('\n')[0]);
    return Number.isInteger(port) && port > 0 && output().includes('\n');
  });
  return { name: 'raw', url: `http://127.0.0.1:${port}`, pid: child.pid, stop: () => stopChild(child) };
}

/** Keeps the last 64 KiB of a child's stdout+stderr for error messages. */
function collect(child: ChildProcess): () => string {
  let text = '';
  const add = (d: Buffer) => {
    text = (text + d.toString()).slice(-65_536);
  };
  child.stdout?.on('data', add);
  child.stderr?.on('data', add);
  return () => text;
}
