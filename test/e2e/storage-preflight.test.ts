/**
 * StoragePreflight applied by the real `terraform` binary (terraform_data and local-exec need no provider) on a swarm
 * of three namespace engines (a manager and two workers, as in multi-node.test.ts), through the manager's socket.
 *
 * No NFS client or server runs here (this kernel has neither), so the volume is a local one bound to a host
 * directory (type=none, o=bind): the engines share the host's filesystem, so it is shared storage for the three nodes,
 * mounted by the same --mount path a site's NFS volume takes. A node is broken by giving its engine a volume of the
 * same name first (Docker keeps an existing volume's options, which is why the site's volume name carries a hash):
 * bound to a missing directory, its mount fails; bound to another directory, it writes where no other node reads.
 * Destroy removes the volume from the three nodes.
 */
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StoragePreflight, SwarmConnection } from '../../lib/constructs';
import { requireTool, waitFor } from '../../harness/tools';
import { HostBridge, NetnsEngine, run, saveSharedImage } from './support/netns-engine';
import { terraform, writeStack } from './support/terraform';

jest.setTimeout(300_000);

const IMAGE = process.env.DTR_E2E_IMAGE ?? '127.0.0.1:5000/dtr-cache:e2e';
const NET = `10.95.${process.pid % 250}`;
const ROLES = ['manager', 'worker1', 'worker2'] as const;
const VOLUME = 'dtr-cache-pf-vol';
const work = mkdtempSync(join(tmpdir(), 'dtr-cache-preflight-e2e-'));
const shared = join(work, 'shared');
const stackDir = join(work, 'stack');
const bridge = new HostBridge(`dtrpf${process.pid}`, `${NET}.1`, 24);
const engines = ROLES.map(
  (role, i) =>
    new NetnsEngine({
      netns: `dtrpf${process.pid}-${role}`,
      veth: `dpf${process.pid}${i}`,
      hostname: `dtr-pf-${role}`,
      address: `${NET}.${i + 2}`,
      prefixLength: 24,
      host: { bridge },
      root: join(work, `dtr-pf-${role}`),
    }),
);
const [manager, , worker2] = engines;
const hostnames = engines.map((e) => e.options.hostname);
let docker = '';

/** Binds the volume on `engine` to `device`, as a node whose volume was made with other options. */
function bindVolume(engine: NetnsEngine, device: string): void {
  removeVolume(engine);
  run(
    docker,
    ['volume', 'create', '--driver', 'local', '--opt', 'type=none', '--opt', 'o=bind', '--opt', `device=${device}`, VOLUME],
    engine.env,
  );
}

/** Removes the volume from `engine` once no container holds it (a removed service's containers go asynchronously). */
function removeVolume(engine: NetnsEngine): void {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const list = run(docker, ['volume', 'ls', '-q', '--filter', `name=^${VOLUME}$`], engine.env);
    if (list === '') return;
    try {
      run(docker, ['volume', 'rm', VOLUME], engine.env);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    sleepSync(500);
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** terraform apply, replacing the check so that it runs again. */
function applyPreflight(): { status: number | null; out: string } {
  const json = JSON.parse(readFileSync(join(stackDir, 'main.tf.json'), 'utf8')) as { resource: { terraform_data: object } };
  return terraform(
    stackDir,
    'apply',
    '-auto-approve',
    `-replace=terraform_data.${Object.keys(json.resource.terraform_data).find((k) => k.startsWith('Preflight_Check_'))}`,
  );
}

/** Services left on the swarm (the preflight removes its own). */
const services = (): string => run(docker, ['service', 'ls', '-q'], manager.env);

beforeAll(async () => {
  requireTool('terraform');
  docker = requireTool('docker');
  const tar = saveSharedImage(IMAGE, work);
  bridge.create();
  await Promise.all(engines.map((e) => e.start()));
  run(docker, ['swarm', 'init', '--advertise-addr', manager.address], manager.env);
  const token = run(docker, ['swarm', 'join-token', '-q', 'worker'], manager.env);
  for (const e of engines.slice(1)) run(docker, ['swarm', 'join', '--token', token, `${manager.address}:2377`], e.env);
  await waitFor(
    'three ready nodes',
    async () =>
      run(docker, ['node', 'ls', '--format', '{{.Status}}'], manager.env)
        .split('\n')
        .filter((s) => s === 'Ready').length === 3,
    60_000,
  );
  await Promise.all(engines.map((e) => e.loadImage(tar)));
  rmSync(tar);
  // The cache image's user owns the share, as NfsExportApply makes it on the server.
  mkdirSync(shared);
  chownSync(shared, 10001, 10001);
  writeStack(stackDir, (stack) => {
    new StoragePreflight(stack, 'Preflight', {
      nodes: hostnames,
      image: IMAGE,
      namePrefix: 'dtr-cache-pf',
      connection: SwarmConnection.localSocket(manager.socket),
      timeoutSeconds: 60,
      // Each engine's socket is under its root, named for its hostname; the removal task mounts its own node's.
      nodeDockerSocket: join(work, '{{.Node.Hostname}}', 'docker.sock'),
      mount: {
        type: 'volume',
        source: VOLUME,
        target: '/var/lib/registry',
        volumeOptions: { driverName: 'local', driverOptions: { type: 'none', o: 'bind', device: shared } },
      },
    });
  });
  const init = terraform(stackDir, 'init');
  if (init.status !== 0) throw new Error(`terraform init failed: ${init.out}`);
}, 240_000);

afterAll(async () => {
  await Promise.all(engines.map((e) => e.stop()));
  bridge.remove();
  rmSync(work, { recursive: true, force: true });
}, 120_000);

test('passes when every node mounts the volume and reads the others’ probes', () => {
  const t0 = Date.now();
  const r = terraform(stackDir, 'apply', '-auto-approve');
  console.log(`storage preflight, 3 nodes, passing: ${Date.now() - t0} ms\n${r.out}`);
  expect(r.status).toBe(0);
  expect(r.out).toContain(`storage preflight passed on: ${hostnames.join(' ')} (mount, write, and each other node's probe read)`);
  // One run directory with a probe per node, committed by rename (no temp file left).
  const runs = readdirSync(join(shared, '_preflight'));
  expect(runs).toHaveLength(1);
  const dir = join(shared, '_preflight', runs[0]);
  expect(readdirSync(dir).sort()).toEqual([...hostnames].sort());
  expect(readFileSync(join(dir, 'dtr-pf-worker1'), 'utf8')).toBe(`dtr-cache preflight ${runs[0]} dtr-pf-worker1\n`);
  expect(services()).toBe('');
});

test('fails naming the node whose mount fails, and lists the others as passing', () => {
  bindVolume(worker2, join(work, 'missing'));
  expect(existsSync(join(work, 'missing'))).toBe(false);
  const t0 = Date.now();
  const r = applyPreflight();
  console.log(`storage preflight, worker2's mount failing: ${Date.now() - t0} ms\n${r.out}`);
  expect(r.status).not.toBe(0);
  expect(r.out).toMatch(/failed on:\s+dtr-pf-worker2: write: Rejected [^\n]*failed to mount local volume[^\n]*no such file or directory/);
  expect(r.out).toContain('passed on: dtr-pf-manager dtr-pf-worker1');
  expect(r.out).not.toMatch(/dtr-pf-(manager|worker1): (write|read)/);
  expect(r.out).not.toMatch(/no other node read the probe of: /);
  expect(services()).toBe('');
});

test('fails naming the node that writes where the others do not read (a different share)', () => {
  const elsewhere = join(work, 'elsewhere');
  mkdirSync(elsewhere);
  chownSync(elsewhere, 10001, 10001);
  bindVolume(worker2, elsewhere);
  const r = applyPreflight();
  console.log(`storage preflight, worker2 on another share:\n${r.out}`);
  expect(r.status).not.toBe(0);
  // worker2 reads neither of the others' probes; each of them misses worker2's.
  expect(r.out).toMatch(/dtr-pf-worker2: read: Failed [^\n]*cannot read the probe of dtr-pf-manager \(ENOENT\), dtr-pf-worker1 \(ENOENT\)/);
  expect(r.out).toMatch(/dtr-pf-manager: read: Failed [^\n]*cannot read the probe of dtr-pf-worker2 \(ENOENT\)/);
  expect(r.out).toMatch(/no other node read the probe of: dtr-pf-worker2 \(its volume is not the share the others mount\)/);
  expect(services()).toBe('');
});

test('passes again once the node mounts the shared volume', () => {
  bindVolume(worker2, shared);
  const r = applyPreflight();
  expect(r.status).toBe(0);
  expect(r.out).toContain(`storage preflight passed on: ${hostnames.join(' ')}`);
});

test('destroy removes the volume from every node, once no container holds it', () => {
  for (const e of engines) expect(run(docker, ['volume', 'ls', '-q'], e.env)).toBe(VOLUME);
  const t0 = Date.now();
  const r = terraform(stackDir, 'destroy', '-auto-approve');
  console.log(`storage volume removal on destroy: ${Date.now() - t0} ms\n${r.out}`);
  expect(r.status).toBe(0);
  expect(r.out).toContain(`removed volume ${VOLUME} on: ${hostnames.join(' ')}`);
  for (const e of engines) expect(run(docker, ['volume', 'ls', '-q'], e.env)).toBe('');
  expect(services()).toBe('');
  // The shared content itself stays: only the volume (a mount definition) is removed.
  expect(existsSync(join(shared, '_preflight'))).toBe(true);
});
