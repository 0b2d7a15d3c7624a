/**
 * Real storage servers for the driver tests, each started by the test on free loopback ports in a temp dir and
 * stopped (processes killed, dirs removed) by `stop()`:
 * - azurite (npm devDependency) for Azure Blob;
 * - an OpenStack Swift all-in-one from Debian's packages (account, container, object and proxy servers with
 *   tempauth, slo, copy and s3api, memcached), for the Swift driver and, through s3api, for the S3/OSS drivers.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import type { AzureOptions } from '../../lib/config';
import { freePort, requireTool, waitFor } from '../../harness/tools';

export interface StorageServer {
  stop(): Promise<void>;
}

/** Every server child still running: killed if the test process exits without stopping them (a hook timeout). */
const running = new Set<ChildProcess>();
process.once('exit', () => running.forEach((c) => c.kill('SIGKILL')));

class Processes {
  private readonly children: ChildProcess[] = [];
  private readonly output: string[] = [];

  spawn(name: string, command: string, args: string[]): ChildProcess {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (chunk: Buffer) => {
      this.output.push(`[${name}] ${chunk.toString()}`);
      if (this.output.length > 200) this.output.shift();
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.children.push(child);
    running.add(child);
    child.once('exit', () => running.delete(child));
    return child;
  }

  /** The last lines the servers printed, for a failure message. */
  tail(): string {
    return this.output.join('').split('\n').slice(-40).join('\n');
  }

  exited(): string | undefined {
    const dead = this.children.find((c) => c.exitCode !== null || c.signalCode !== null);
    return dead ? `${dead.spawnfile} exited (${dead.exitCode ?? dead.signalCode})\n${this.tail()}` : undefined;
  }

  async stopAll(): Promise<void> {
    await Promise.all(
      this.children.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }),
    );
  }
}

const AZURITE_ACCOUNT = 'devstoreaccount1';
/** azurite's well-known development key (public, documented by Microsoft; not a secret). */
const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface AzuriteServer extends StorageServer {
  readonly serviceurl: string;
  readonly accountname: string;
  readonly accountkey: string;
  /** Creates the container `name` and returns the storage options of a store in it (under `rootdirectory` if given). */
  container(name: string, rootdirectory?: string): Promise<AzureOptions>;
}

/** azurite on `host` (loopback by default; a host bridge address when containers in test namespaces use it). */
export async function startAzurite(options: { host?: string } = {}): Promise<AzuriteServer> {
  const host = options.host ?? '127.0.0.1';
  const bin = join(__dirname, '..', '..', 'node_modules', '.bin', 'azurite-blob');
  try {
    execFileSync('test', ['-x', bin]);
  } catch {
    throw new Error('azurite is not installed: run npm ci (azurite is a devDependency)');
  }
  const dir = mkdtempSync(join(tmpdir(), 'dtr-cache-azurite-'));
  const port = await freePort();
  const procs = new Processes();
  procs.spawn('azurite', bin, [
    '--blobHost',
    host,
    '--blobPort',
    String(port),
    '--location',
    dir,
    '--disableTelemetry',
    '--skipApiVersionCheck',
    '--silent',
  ]);
  const serviceurl = `http://${host}:${port}/${AZURITE_ACCOUNT}`;
  const stop = async () => {
    await procs.stopAll();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(`azurite on ${serviceurl}`, async () => {
      const dead = procs.exited();
      if (dead) throw new Error(dead);
      const res = await fetch(`${serviceurl}?comp=list`, { signal: AbortSignal.timeout(5000) });
      await res.arrayBuffer();
      return res.status > 0;
    });
  } catch (err) {
    await stop();
    throw err;
  }
  const container = async (name: string, rootdirectory?: string): Promise<AzureOptions> => {
    const credential = new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY);
    await new BlobServiceClient(serviceurl, credential).getContainerClient(name).create();
    return { accountname: AZURITE_ACCOUNT, accountkey: AZURITE_KEY, container: name, realm: 'core.windows.net', serviceurl, rootdirectory };
  };
  return { serviceurl, accountname: AZURITE_ACCOUNT, accountkey: AZURITE_KEY, container, stop };
}

export interface SwiftServer extends StorageServer {
  /** tempauth v1 URL. */
  readonly authurl: string;
  /** Proxy base URL (the s3api endpoint too). */
  readonly url: string;
  readonly account: string;
  readonly user: string;
  readonly password: string;
  /** S3 credentials for s3api: access key `account:user`, secret the password; SigV4 region `s3Region`. */
  readonly s3: { accesskey: string; secretkey: string };
}

/**
 * A Swift all-in-one: one device per server in a temp dir (xattrs of the temp filesystem hold object
 * metadata), rings built with swift-ring-builder, memcached for tempauth tokens, everything on loopback.
 */
export async function startSwift(options: { s3Region?: string } = {}): Promise<SwiftServer> {
  const tools = ['swift-ring-builder', 'swift-account-server', 'swift-container-server', 'swift-object-server', 'swift-proxy-server'];
  const bins = Object.fromEntries(tools.map((t) => [t, requireTool(t)]));
  const memcached = requireTool('memcached');
  const dir = mkdtempSync(join(tmpdir(), 'dtr-cache-swift-'));
  const devices = join(dir, 'srv');
  mkdirSync(join(devices, 'd1'), { recursive: true });
  const [proxyPort, accountPort, containerPort, objectPort, memcachePort] = await uniquePorts(5);
  const procs = new Processes();
  const stop = async () => {
    await procs.stopAll();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const [ring, port] of [
      ['account', accountPort],
      ['container', containerPort],
      ['object', objectPort],
    ] as const) {
      const builder = join(dir, `${ring}.builder`);
      execFileSync(bins['swift-ring-builder'], [builder, 'create', '2', '1', '1'], { stdio: 'pipe' });
      execFileSync(bins['swift-ring-builder'], [builder, 'add', `r1z1-127.0.0.1:${port}/d1`, '1'], { stdio: 'pipe' });
      execFileSync(bins['swift-ring-builder'], [builder, 'rebalance'], { stdio: 'pipe' });
    }
    const common = (port: number) =>
      `[DEFAULT]\nbind_ip = 127.0.0.1\nbind_port = ${port}\nworkers = 0\nuser = ${process.env.USER ?? 'root'}\n` +
      `swift_dir = ${dir}\ndevices = ${devices}\nmount_check = false\nlog_level = WARNING\n`;
    const server = (kind: string) => `[pipeline:main]\npipeline = ${kind}-server\n\n[app:${kind}-server]\nuse = egg:swift#${kind}\n`;
    writeFileSync(join(dir, 'account.conf'), common(accountPort) + server('account'));
    writeFileSync(join(dir, 'container.conf'), common(containerPort) + server('container'));
    writeFileSync(join(dir, 'object.conf'), common(objectPort) + server('object'));
    writeFileSync(
      join(dir, 'proxy.conf'),
      `${common(proxyPort)}\n[pipeline:main]\n` +
        'pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk s3api tempauth copy slo dlo proxy-logging proxy-server\n\n' +
        '[app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n\n' +
        '[filter:tempauth]\nuse = egg:swift#tempauth\nuser_test_tester = testing .admin\n\n' +
        `[filter:cache]\nuse = egg:swift#memcache\nmemcache_servers = 127.0.0.1:${memcachePort}\n\n` +
        `[filter:s3api]\nuse = egg:swift#s3api\nlocation = ${options.s3Region ?? 'us-east-1'}\n\n` +
        ['catch_errors', 'gatekeeper', 'healthcheck', 'proxy-logging', 'listing_formats', 'bulk', 'copy', 'slo', 'dlo']
          .map((f) => `[filter:${f}]\nuse = egg:swift#${f.replace('-', '_')}\n`)
          .join('\n'),
    );
    procs.spawn('memcached', memcached, ['-l', '127.0.0.1', '-p', String(memcachePort), '-U', '0', '-u', 'root', '-m', '32']);
    for (const kind of ['account', 'container', 'object', 'proxy'])
      procs.spawn(kind, bins[`swift-${kind}-server`], [join(dir, `${kind}.conf`)]);
    const url = `http://127.0.0.1:${proxyPort}`;
    await waitFor(
      `swift all-in-one on ${url}`,
      async () => {
        const dead = procs.exited();
        if (dead) throw new Error(dead);
        const res = await fetch(`${url}/auth/v1.0`, {
          headers: { 'x-auth-user': 'test:tester', 'x-auth-key': 'testing' },
          signal: AbortSignal.timeout(10_000),
        });
        const token = res.headers.get('x-auth-token');
        const storage = res.headers.get('x-storage-url');
        if (res.status !== 200 || !token || !storage) return false;
        // The account answers only once the account server is up too.
        const account = await fetch(storage, { headers: { 'x-auth-token': token }, signal: AbortSignal.timeout(10_000) });
        await account.arrayBuffer();
        if (account.status !== 204 && account.status !== 200) return false;
        // And a container can be created only once the container server is up: until then the proxy answers 503
        // (a test's first probe failed so in CI, with the account already answering).
        const container = await fetch(`${storage}/readiness`, {
          method: 'PUT',
          headers: { 'x-auth-token': token },
          signal: AbortSignal.timeout(10_000),
        });
        await container.arrayBuffer();
        if (container.status !== 201 && container.status !== 202) return false;
        // And an object only once the object server is up: until then its PUT answers 503 too (seen in a full run).
        const object = await fetch(`${storage}/readiness/probe`, {
          method: 'PUT',
          headers: { 'x-auth-token': token },
          body: 'ready',
          signal: AbortSignal.timeout(10_000),
        });
        await object.arrayBuffer();
        return object.status === 201;
      },
      // Four Python servers importing at once: ~15 s on a quiet 2-core machine, minutes on a saturated one.
      240_000,
    );
    return {
      authurl: `${url}/auth/v1.0`,
      url,
      account: 'test',
      user: 'tester',
      password: 'testing',
      s3: { accesskey: 'test:tester', secretkey: 'testing' },
      stop,
    };
  } catch (err) {
    const tail = procs.tail();
    await stop();
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n${tail}`);
  }
}

async function uniquePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  for (let i = 0; ports.size < n && i < n * 10; i++) ports.add(await freePort());
  return [...ports];
}
