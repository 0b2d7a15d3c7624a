/**
 * A real distribution 2.8 registry (Debian's docker-registry) on loopback, as the upstream (or, with
 * `proxyOf`, as distribution's own pull-through cache, the reference the benchmarks compare against).
 * Its JSON access log is parsed so tests can count the requests the upstream really served.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { freePort, requireTool, waitFor } from './tools';

export interface RegistryOptions {
  /** Run as distribution's pull-through cache of this URL. */
  readonly proxyOf?: string;
  /** Extra top-level config keys (e.g. `auth`), merged over the defaults. */
  readonly extra?: Record<string, unknown>;
  /** Serve TLS with these PEM files. */
  readonly tls?: { certificate: string; key: string };
  readonly port?: number;
  /** Address to listen on (e.g. a bridge address containers reach); default 127.0.0.1. */
  readonly host?: string;
}

export interface AccessLogEntry {
  readonly method: string;
  readonly path: string;
  readonly status: number;
}

export class TestRegistry {
  private constructor(
    readonly url: string,
    readonly port: number,
    readonly dir: string,
    private readonly child: ChildProcess,
    private readonly log: AccessLogEntry[],
  ) {}

  /** Starts a registry and waits until GET /v2/ answers (200 or 401). */
  static async start(options: RegistryOptions = {}): Promise<TestRegistry> {
    const bin = requireTool('docker-registry');
    const port = options.port ?? (await freePort());
    const host = options.host ?? '127.0.0.1';
    const dir = mkdtempSync(join(tmpdir(), 'dtr-cache-registry-'));
    const config = {
      version: 0.1,
      log: { level: 'info', formatter: 'json', accesslog: { disabled: false } },
      storage: { filesystem: { rootdirectory: join(dir, 'data') }, delete: { enabled: true } },
      http: { addr: `${host}:${port}`, ...(options.tls ? { tls: options.tls } : {}) },
      ...(options.proxyOf ? { proxy: { remoteurl: options.proxyOf } } : {}),
      ...options.extra,
    };
    writeFileSync(join(dir, 'config.yml'), stringify(config));
    const child = spawn(bin, ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'pipe', 'pipe'] });
    const log: AccessLogEntry[] = [];
    let buffered = '';
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString();
      let newline = buffered.indexOf('\n');
      while (newline >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        const entry = parseAccessLine(line);
        if (entry) log.push(entry);
        newline = buffered.indexOf('\n');
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    const scheme = options.tls ? 'https' : 'http';
    const url = `${scheme}://${host}:${port}`;
    const registry = new TestRegistry(url, port, dir, child, log);
    await waitFor(`docker-registry on ${url}`, async () => {
      if (child.exitCode !== null) throw new Error(`docker-registry exited with ${child.exitCode}`);
      if (options.tls) return true; // TLS readiness is checked by the caller with its own CA
      const res = await fetch(`${url}/v2/`);
      return res.status === 200 || res.status === 401;
    });
    return registry;
  }

  /** Requests the registry has answered so far (access log lines are written when a request ends). */
  requests(filter?: { method?: string; pathIncludes?: string }): AccessLogEntry[] {
    return this.log.filter(
      (e) => (!filter?.method || e.method === filter.method) && (!filter?.pathIncludes || e.path.includes(filter.pathIncludes)),
    );
  }

  /** Blob GETs answered so far (what a cache must avoid repeating). */
  blobGets(): AccessLogEntry[] {
    return this.requests({ method: 'GET', pathIncludes: '/blobs/sha256:' });
  }

  clearLog(): void {
    this.log.length = 0;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((r) => this.child.once('exit', r));
      this.child.kill('SIGTERM');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** distribution's JSON access log: {"http.request.method":"GET","http.request.uri":"/v2/...","http.response.status":200,...} */
function parseAccessLine(line: string): AccessLogEntry | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const entry = JSON.parse(line) as Record<string, unknown>;
    const method = entry['http.request.method'];
    const uri = entry['http.request.uri'];
    const status = entry['http.response.status'];
    if (typeof method !== 'string' || typeof uri !== 'string' || typeof status !== 'number') return undefined;
    return { method, path: uri, status };
  } catch {
    return undefined;
  }
}
