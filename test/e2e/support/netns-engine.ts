/**
 * Docker engines of their own, for e2e tests that need a swarm other than the shared test engine. Each dockerd runs
 * in its own network namespace (a veth to the host: a point-to-point /30, or a port of a host bridge that several
 * engines share) and UTS namespace (its hostname is the swarm node's hostname), with its own data and exec roots,
 * pidfile and unix socket. The host reaches every engine through that socket, a file path.
 *
 * `stop()` undoes whatever `start()` got to, so a test calls it in afterAll even when start failed half way.
 */
import { ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { readFileSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { requireTool, waitFor } from '../../../harness/tools';
import { TEST_DOCKER_SOCK } from '../../terraform-provider-docker/engine';

const execFileAsync = promisify(execFile);

/** Runs a command to completion (at most 3 minutes) and returns its stdout, or throws with its output. */
export function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): string {
  const r = spawnSync(cmd, args, { env, encoding: 'utf8', timeout: 180_000, maxBuffer: 16 * 1024 * 1024 });
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.error?.message ?? ''}${r.stderr}${r.stdout}`);
  return r.stdout.trim();
}

/**
 * Saves `image` from the shared test engine into `dir`/image.tar, for `docker load` in a namespace engine (no registry
 * is reachable from there). Fails with how to get the image when the shared engine lacks it.
 */
export function saveSharedImage(image: string, dir: string): string {
  const docker = requireTool('docker');
  const env = { ...process.env, DOCKER_HOST: `unix://${TEST_DOCKER_SOCK}` };
  if (spawnSync(docker, ['image', 'inspect', '--format', '{{.Id}}', image], { env, timeout: 30_000 }).status !== 0) {
    throw new Error(
      `${image} is not in the shared test engine (unix://${TEST_DOCKER_SOCK}): run bash scripts/test-services.sh start (it builds it), or set DTR_E2E_IMAGE`,
    );
  }
  const tar = join(dir, 'image.tar');
  run(docker, ['save', '-o', tar, image], env);
  return tar;
}

/**
 * A Linux bridge on the host that namespace engines attach to, so they reach each other (swarm ports 2377, 7946)
 * and the host reaches them. The host filters bridged traffic with iptables (bridge-nf-call-iptables) and the shared
 * engine set the FORWARD policy to DROP, so traffic between the bridge's ports is accepted by a rule of its own.
 */
export class HostBridge {
  constructor(
    readonly name: string,
    /** The host's address on the bridge, e.g. 10.97.3.1. */
    readonly address: string,
    readonly prefixLength: number,
  ) {}

  create(): void {
    for (const tool of ['ip', 'iptables']) requireTool(tool);
    run('ip', ['link', 'add', this.name, 'type', 'bridge']);
    run('ip', ['addr', 'add', `${this.address}/${this.prefixLength}`, 'dev', this.name]);
    run('ip', ['link', 'set', this.name, 'up']);
    run('iptables', ['-I', 'FORWARD', ...this.forwardRule()]);
  }

  /** Removes the bridge and its rule, whatever create got to. */
  remove(): void {
    spawnSync('iptables', ['-D', 'FORWARD', ...this.forwardRule()]);
    spawnSync('ip', ['link', 'delete', this.name]);
  }

  private forwardRule(): string[] {
    return ['-i', this.name, '-o', this.name, '-j', 'ACCEPT'];
  }
}

export interface NetnsEngineOptions {
  /** Network namespace name, created by start. */
  readonly netns: string;
  /** Host end of the veth (at most 15 characters). */
  readonly veth: string;
  /** The engine's hostname, which is its swarm node's hostname. */
  readonly hostname: string;
  /** The engine's address in its namespace, e.g. 10.98.3.2. */
  readonly address: string;
  readonly prefixLength: number;
  /** The host end: its own address (a point-to-point link), or a bridge it joins. */
  readonly host: { readonly address: string } | { readonly bridge: HostBridge };
  /** Directory of the engine's data and exec roots, pidfile and socket; created by start. */
  readonly root: string;
  /** More dockerd flags, e.g. a TCP listener with --tlsverify. */
  readonly dockerdArgs?: readonly string[];
}

export class NetnsEngine {
  /** The engine's unix socket (a path). */
  readonly socket: string;
  /** Environment of a docker CLI talking to this engine. */
  readonly env: NodeJS.ProcessEnv;
  private dockerd: ChildProcess | undefined;
  private log = '';

  constructor(readonly options: NetnsEngineOptions) {
    this.socket = join(options.root, 'docker.sock');
    this.env = { ...process.env, DOCKER_HOST: `unix://${this.socket}` };
  }

  get address(): string {
    return this.options.address;
  }

  /** The end of dockerd's output, for failure messages. */
  logTail(chars = 2000): string {
    return this.log.slice(-chars);
  }

  /** Creates the namespace and its link, starts dockerd, and waits (at most `timeoutMs`) until it answers. */
  async start(timeoutMs = 60_000): Promise<void> {
    for (const tool of ['dockerd', 'docker', 'ip', 'nsenter', 'unshare']) requireTool(tool);
    const { netns, veth, address, prefixLength, host, root } = this.options;
    run('ip', ['netns', 'add', netns]);
    run('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
    if ('bridge' in host) run('ip', ['link', 'set', veth, 'master', host.bridge.name]);
    else run('ip', ['addr', 'add', `${host.address}/${prefixLength}`, 'dev', veth]);
    run('ip', ['link', 'set', veth, 'up']);
    run('ip', ['-n', netns, 'addr', 'add', `${address}/${prefixLength}`, 'dev', 'eth0']);
    run('ip', ['-n', netns, 'link', 'set', 'eth0', 'up']);
    run('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);

    mkdirSync(root, { recursive: true });
    const args = [
      '--storage-driver=overlay2',
      `--data-root=${join(root, 'data')}`,
      `--exec-root=${join(root, 'exec')}`,
      `--pidfile=${join(root, 'dockerd.pid')}`,
      `-H=unix://${this.socket}`,
      ...(this.options.dockerdArgs ?? []),
    ];
    // nsenter + unshare --uts, not `ip netns exec` (which breaks dockerd's cgroup setup); exec keeps the pid dockerd's.
    const dockerd = spawn(
      'nsenter',
      [`--net=/run/netns/${netns}`, 'unshare', '--uts', 'sh', '-c', `hostname ${this.options.hostname} && exec dockerd ${args.join(' ')}`],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.dockerd = dockerd;
    const keep = (c: Buffer) => (this.log = (this.log + c.toString()).slice(-20_000));
    dockerd.stdout?.on('data', keep);
    dockerd.stderr?.on('data', keep);
    const docker = requireTool('docker');
    await waitFor(
      `dockerd ${this.options.hostname} on ${this.socket}`,
      async () => {
        if (dockerd.exitCode !== null) throw new Error(`dockerd exited ${dockerd.exitCode}: ${this.logTail()}`);
        return spawnSync(docker, ['version', '--format', '{{.Server.Version}}'], { env: this.env, timeout: 10_000 }).status === 0;
      },
      timeoutMs,
    );
  }

  /** `docker load` of a saved image; asynchronous, so several engines load at once. */
  async loadImage(tar: string): Promise<void> {
    await execFileAsync(requireTool('docker'), ['load', '-q', '-i', tar], { env: this.env, timeout: 180_000 });
  }

  /** Stops dockerd (SIGKILL after 30 s), deletes the namespace and the veth, and unmounts what dockerd left under root. */
  async stop(): Promise<void> {
    const dockerd = this.dockerd;
    if (dockerd && dockerd.exitCode === null && dockerd.signalCode === null) {
      const exited = new Promise((r) => dockerd.once('exit', r));
      dockerd.kill('SIGTERM');
      const timer = setTimeout(() => dockerd.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    }
    spawnSync('ip', ['netns', 'delete', this.options.netns]);
    spawnSync('ip', ['link', 'delete', this.options.veth]);
    // dockerd unmounts its layers on a clean stop; anything left mounted under root would make removing it fail.
    const mounts = readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[1])
      .filter((m) => m !== undefined && (m === this.options.root || m.startsWith(`${this.options.root}/`)))
      .sort((a, b) => b.length - a.length);
    for (const m of mounts) spawnSync('umount', ['-l', m]);
    rmSync(this.options.root, { recursive: true, force: true });
  }
}
