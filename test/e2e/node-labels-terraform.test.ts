/**
 * CacheNodes' label steps applied by the real `terraform` binary (terraform_data and local-exec need no provider) to a
 * swarm of two namespace engines (a manager and a worker): after every apply exactly the listed nodes carry the label,
 * and a second plan has no changes. Covers a node removed from the list, a node added back, a changed label key (the
 * old key leaves the nodes), and destroy. Everything started here is stopped in afterAll, also after a failure.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalBackend, TerraformStack, Testing } from 'cdktf';
import { CacheNodes, SwarmConnection } from '../../lib/constructs';
import { requireTool, waitFor } from '../../harness/tools';
import { terraformDeploy } from '../support/terraform';
import { HostBridge, NetnsEngine, run } from './support/netns-engine';

const NET = `10.96.${process.pid % 250}`;
const work = mkdtempSync(join(tmpdir(), 'dtr-cache-labels-tf-'));
const stackDir = join(work, 'stack');
const bridge = new HostBridge(`dtrlb${process.pid}`, `${NET}.1`, 24);
const engines = (['manager', 'worker'] as const).map(
  (role, i) =>
    new NetnsEngine({
      netns: `dtrlb${process.pid}-${role}`,
      veth: `dlb${process.pid}${i}`,
      hostname: `dtr-lb-${role}`,
      address: `${NET}.${i + 2}`,
      prefixLength: 24,
      host: { bridge },
      root: join(work, role),
    }),
);
const [manager] = engines;
// The local-execs reach the manager through their own DOCKER_HOST, never this machine's engine.
const terraform = terraformDeploy(stackDir, { env: { DOCKER_HOST: '' }, timeoutMs: 180_000 });
let ids: Record<'manager' | 'worker', string> = { manager: '', worker: '' };

/** Synthesizes a stack holding only the site's label steps into the terraform working directory. */
function synthLabels(nodes: string[], labelKey: string): void {
  const stack = new TerraformStack(Testing.app(), 'labels');
  new LocalBackend(stack, { path: terraform.statePath });
  new CacheNodes(stack, 'Nodes', { nodes, labelKey, connection: SwarmConnection.localSocket(manager.socket) });
  mkdirSync(stackDir, { recursive: true });
  writeFileSync(join(stackDir, 'main.tf.json'), Testing.synth(stack));
}

/** Every node's labels, by role. */
function labels(): Record<'manager' | 'worker', Record<string, string>> {
  const of = (id: string) => JSON.parse(run('docker', ['node', 'inspect', '--format', '{{json .Spec.Labels}}', id], manager.env)) ?? {};
  return { manager: of(ids.manager), worker: of(ids.worker) };
}

/** Which roles carry `key`=true. */
const carrying = (key: string): string[] =>
  Object.entries(labels())
    .filter(([, l]) => l[key] === 'true')
    .map(([role]) => role)
    .sort();

/** The exit code of `terraform plan -detailed-exitcode`: 0 is no changes. */
const secondPlan = async (): Promise<number | null> => (await terraform.plan()).status;

beforeAll(async () => {
  requireTool('terraform');
  const docker = requireTool('docker');
  bridge.create();
  await Promise.all(engines.map((e) => e.start()));
  run(docker, ['swarm', 'init', '--advertise-addr', manager.address], manager.env);
  const token = run(docker, ['swarm', 'join-token', '-q', 'worker'], manager.env);
  run(docker, ['swarm', 'join', '--token', token, `${manager.address}:2377`], engines[1].env);
  ids = {
    manager: run(docker, ['info', '--format', '{{.Swarm.NodeID}}'], manager.env),
    worker: run(docker, ['info', '--format', '{{.Swarm.NodeID}}'], engines[1].env),
  };
  await waitFor(
    'both nodes ready in the swarm',
    async () =>
      run(docker, ['node', 'ls', '--format', '{{.Status}}'], manager.env)
        .split('\n')
        .filter((s) => s === 'Ready').length === 2,
    60_000,
  );
  synthLabels([ids.manager], 'dtr.cache');
  await terraform.init();
}, 180_000);

afterAll(async () => {
  await Promise.all(engines.map((e) => e.stop()));
  bridge.remove();
  rmSync(work, { recursive: true, force: true });
}, 120_000);

it('labels exactly the listed nodes after every apply, and the next plan has no changes', async () => {
  // The worker is listed by hostname, the manager by ID: both are resolved to node IDs.
  synthLabels(['dtr-lb-worker', ids.manager], 'dtr.cache');
  await terraform.apply();
  expect(carrying('dtr.cache')).toEqual(['manager', 'worker']);
  expect(await secondPlan()).toBe(0);

  // A node removed from the list loses its label (and its owner mark); the other keeps it.
  synthLabels([ids.manager], 'dtr.cache');
  await terraform.apply();
  expect(carrying('dtr.cache')).toEqual(['manager']);
  expect(labels().worker).toEqual({});
  expect(await secondPlan()).toBe(0);

  // A label someone set by hand on an unlisted node is removed by the next change of the site's nodes.
  run('docker', ['node', 'update', '--label-add', 'dtr.cache=true', ids.worker], manager.env);
  synthLabels(['dtr-lb-manager'], 'dtr.cache');
  await terraform.apply();
  expect(carrying('dtr.cache')).toEqual(['manager']);
  expect(await secondPlan()).toBe(0);

  // A new key: the old key leaves every node (the replaced owner's destroy step runs with its old values).
  synthLabels(['dtr-lb-manager', 'dtr-lb-worker'], 'dtr.cache.eu');
  const { stdout: out } = await terraform.apply();
  expect(carrying('dtr.cache')).toEqual([]);
  expect(carrying('dtr.cache.eu')).toEqual(['manager', 'worker']);
  expect(Object.keys(labels().manager).sort()).toEqual(['dtr.cache.eu', 'dtr.cache.eu.owner']);
  expect(out).toMatch(/Resources: 2 added, 0 changed, 2 destroyed/);
  expect(await secondPlan()).toBe(0);

  // Destroy removes the site's labels from every node.
  await terraform.destroy();
  expect(labels()).toEqual({ manager: {}, worker: {} });
}, 300_000);

it('fails the apply for a listed node that is not in the swarm, naming it', async () => {
  synthLabels(['no-such-node'], 'dtr.cache');
  await expect(terraform.apply()).rejects.toThrow('no-such-node');
  await terraform.destroy();
}, 120_000);
