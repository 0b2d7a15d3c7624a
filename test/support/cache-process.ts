/**
 * The cache as a separate process, started the way the image starts it (`dtr-cache serve --config …`), for
 * tests that send it signals or kill it. Always from the TypeScript sources through ts-node (transpile only):
 * a `dist/` left by an earlier build could be older than the code under test.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import type { CacheConfigInput } from '../../lib/config';
import { freePort, sleep } from '../../harness/tools';

const REPO = resolve(__dirname, '../..');

export interface CacheProcess {
  readonly url: string;
  readonly port: number;
  readonly child: ChildProcess;
  /** stdout (JSON log lines) and stderr so far. */
  output(): string;
  /** Resolves with the exit code (or the signal name) when the process ends. */
  readonly exited: Promise<number | string>;
  /** SIGKILL if still running, and wait. */
  kill(): Promise<void>;
}

/**
 * Starts `dtr-cache serve` with `config` (http.addr is set to a free loopback port unless `port` is given).
 * One process (`--workers 1`) unless `workers` says otherwise: most tests look at one process's behaviour.
 */
export async function startCacheProcess(config: CacheConfigInput, port?: number, workers = 1): Promise<CacheProcess> {
  const listen = port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'dtr-cache-proc-'));
  const file = join(dir, 'config.yml');
  writeFileSync(file, stringify({ ...config, http: { ...config.http, addr: `127.0.0.1:${listen}` } }));
  const args = [
    '-r',
    'ts-node/register/transpile-only',
    join(REPO, 'bin/dtr-cache.ts'),
    'serve',
    '--config',
    file,
    '--workers',
    String(workers),
  ];
  const child = spawn(process.execPath, args, {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TS_NODE_PROJECT: join(REPO, 'tsconfig.json') },
  });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | string>((res) => child.once('exit', (code, signal) => res(code ?? signal ?? -1)));
  void exited.then(() => rmSync(dir, { recursive: true, force: true }));
  const url = `http://127.0.0.1:${listen}`;
  // Bounded: 60 s (ts-node compiles on a loaded CI box), polling every 100 ms.
  const deadline = Date.now() + 60_000;
  while (!out.includes('dtr-cache: serving ')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`dtr-cache serve did not start (exit ${child.exitCode}):\n${out.slice(-2000)}`);
    }
    await sleep(100);
  }
  return {
    url,
    port: listen,
    child,
    output: () => out,
    exited,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
