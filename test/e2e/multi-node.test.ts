/**
 * End to end on a three-node swarm: one replica per labelled node, none on an unlabelled one.
 *
 * The shared test engine's swarm advertises 127.0.0.1, so no other node can join it; this test builds its own. Three
 * dockerds, each in its own network namespace on a host bridge (10.97.N.0/24): a manager (swarm init) and two workers
 * (swarm join). The host reaches each engine through its unix socket. The cache image is copied from the shared
 * engine with docker save/load (no registry is reachable from the namespaces). Content is shared through azurite on
 * the bridge address, since more than one replica needs shared storage (no NFS here).
 *
 * A site synthesized with DtrCacheSite for the manager and the first worker is deployed with the real `terraform`
 * binary (the docker provider is the test stand-in of kreuzwerker/docker 3.6.2) through the manager's socket
 * (host-mode publishing: no IPVS here). Then: one running task on each labelled node and none ever on the second
 * worker, both replicas answer over TLS on their node's address and reach the shared storage, the labels are on the
 * two nodes only. Adding the second worker to the site's nodes and applying again lands a third replica there;
 * removing the first worker from the nodes removes its label and its replica, and the other replicas keep their
 * tasks. After every apply a plan has no changes. Destroy removes the service and the labels. Everything started
 * here is stopped in afterAll, also after a failure.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { App, TerraformStack } from 'cdktf';
import { DtrCacheSite, LoadBalancer, SecretSource, StorageBackend, SwarmConnection } from '../../lib/constructs';
import { AzuriteServer, startAzurite } from '../support/storage-servers';
import { requireTool, waitFor } from '../../harness/tools';
import { planLines, terraformDeploy, TerraformDeploy } from '../support/terraform';
import { Engine, serviceTasks, TaskSummary } from '../terraform-provider-docker/engine';
import { httpsGet, ProbeTarget } from './support/https-probe';
import { HostBridge, NetnsEngine, run, saveSharedImage } from './support/netns-engine';
import { createTestCa } from './support/pki';

jest.setTimeout(300_000);

const IMAGE = process.env.DTR_E2E_IMAGE ?? '127.0.0.1:5000/dtr-cache:e2e';
const DATACENTER = 'multi';
const SERVICE = `dtr-cache-${DATACENTER}`;
const LABEL = 'dtr.cache';
const CACHE_HOST = 'cache.multi.test';
const CACHE_PORT = 8443;
const CONTAINER = 'dtr-cache';
// One /24 and one set of interface names per test process, so parallel runs on one machine do not collide.
const NET = `10.97.${process.pid % 250}`;
const ROLES = ['manager', 'worker1', 'worker2'] as const;
type Role = (typeof ROLES)[number];

interface SwarmNode {
  readonly role: Role;
  readonly engine: NetnsEngine;
  /** API client on the node's own socket: what runs on that node. */
  readonly api: Engine;
  id: string;
}

const work = mkdtempSync(join(tmpdir(), 'dtr-cache-multi-e2e-'));
const bridge = new HostBridge(`dtrmn${process.pid}`, `${NET}.1`, 24);
const nodes = new Map<Role, SwarmNode>(
  ROLES.map((role, i) => {
    const engine = new NetnsEngine({
      netns: `dtrmn${process.pid}-${role}`,
      veth: `dmn${process.pid}${i}`,
      hostname: `dtr-mn-${role}`,
      address: `${NET}.${i + 2}`,
      prefixLength: 24,
      host: { bridge },
      root: join(work, role),
    });
    return [role, { role, engine, api: new Engine(engine.socket), id: '' }];
  }),
);
const node = (role: Role): SwarmNode => nodes.get(role) as SwarmNode;
/** The swarm's API, through the manager: what the provider and the label local-execs use. */
const manager = (): Engine => node('manager').api;

let azurite: AzuriteServer | undefined;
let tf: TerraformDeploy | undefined;
let destroyed = false;
/** The running tasks after the first apply, and after the second (by node). */
let firstTasks: string[] = [];
let tasksByNode: Record<string, string> = {};
let caPem = '';
let cacheCert = { certificate: '', key: '' };
const synthDir = join(work, 'synth');

/** Synthesizes the site for `roles` (the labelled nodes) and returns its cdk.tf.json. */
function synth(roles: Role[]): string {
  if (!azurite) throw new Error('azurite is not running');
  const app = new App({ outdir: synthDir, skipValidation: false });
  const stack = new TerraformStack(app, DATACENTER);
  new DtrCacheSite(stack, 'Site', {
    datacenter: DATACENTER,
    upstreams: ['https://dtr.multi.test'],
    host: CACHE_HOST,
    nodes: roles.map((r) => node(r).engine.options.hostname),
    tls: {
      certificate: SecretSource.fromFile(cacheCert.certificate),
      key: SecretSource.fromFile(cacheCert.key),
      dtrCa: SecretSource.fromFile(join(work, 'pki', 'ca.crt')),
    },
    // The image is loaded into the engines, never pushed: no registry serves its digest (the tag runs as is).
    image: { reference: IMAGE, resolveDigest: false },
    storage: StorageBackend.azure({
      accountName: azurite.accountname,
      accountKey: SecretSource.fromFile(join(work, 'azure-account-key')),
      container: CONTAINER,
      serviceUrl: azurite.serviceurl,
    }),
    connection: SwarmConnection.localSocket(node('manager').engine.socket),
    port: CACHE_PORT,
    // No IPVS on these machines: host-mode publishing, the external load balancer mode.
    loadBalancer: LoadBalancer.external({ kind: 'haproxy', nodeAddresses: roles.map((r) => node(r).engine.address) }),
    // The manager is one of the cache nodes.
    workersOnly: false,
  });
  app.synth();
  return join(synthDir, 'stacks', DATACENTER, 'cdk.tf.json');
}

function probeTarget(role: Role): ProbeTarget {
  return { address: node(role).engine.address, port: CACHE_PORT, servername: CACHE_HOST, ca: caPem };
}

function roleOf(nodeId: string | undefined): string {
  return [...nodes.values()].find((n) => n.id === nodeId)?.role ?? `unknown node ${nodeId}`;
}

async function labelOf(role: Role): Promise<string | undefined> {
  const n = await manager().request<{ Spec: { Labels?: Record<string, string> } }>('GET', `/nodes/${node(role).id}`);
  return n.Spec.Labels?.[LABEL];
}

/** The service's containers on one node, asked of that node's own engine (all states). */
async function containersOn(role: Role): Promise<{ Id: string; State: string }[]> {
  const filters = encodeURIComponent(JSON.stringify({ label: [`com.docker.swarm.service.name=${SERVICE}`] }));
  return node(role).api.request('GET', `/containers/json?all=1&filters=${filters}`);
}

function describeTasks(tasks: TaskSummary[]): string {
  return tasks.map((t) => `${t.ID.slice(0, 12)} on ${roleOf(t.NodeID)} (${t.Status.State})`).join(', ');
}

/**
 * Both the one-replica-per-labelled-node placement and that the replicas serve: asserted after each apply. Returns the
 * running tasks' IDs.
 */
async function expectReplicasOn(labelled: Role[], unlabelled: Role[]): Promise<string[]> {
  const tasks = await serviceTasks(manager(), SERVICE);
  console.log(`multi-node: tasks of ${SERVICE}: ${describeTasks(tasks)}`);
  const running = tasks.filter((t) => t.Status.State === 'running');
  expect(running).toHaveLength(labelled.length);
  expect(running.map((t) => roleOf(t.NodeID)).sort()).toEqual([...labelled].sort());
  for (const role of unlabelled) {
    // Never scheduled there, in any state, as the manager and as the node itself see it.
    expect(tasks.filter((t) => t.NodeID === node(role).id)).toEqual([]);
    expect(await containersOn(role)).toEqual([]);
    expect(await labelOf(role)).toBeUndefined();
    expect((await httpsGet(probeTarget(role), '/healthz')).status).toBe('ECONNREFUSED');
  }
  for (const role of labelled) {
    expect(await labelOf(role)).toBe('true');
    expect((await containersOn(role)).filter((c) => c.State === 'running')).toHaveLength(1);
    // Healthy over TLS on the node's own address, for the name clients use, verified with the test CA.
    await waitFor(`/healthz of the replica on ${role}`, async () => (await httpsGet(probeTarget(role), '/healthz')).status === 200, 30_000);
    // Readiness: the shared storage (azurite on the host bridge) takes a write-read-delete from this node; the
    // upstream is a name nothing resolves, so the cache is not ready, and says why.
    const ready = await httpsGet(probeTarget(role), '/readyz', 15_000);
    expect(ready.status).toBe(503);
    const checks = (JSON.parse(ready.body) as { checks: { name: string; ok: boolean }[] }).checks;
    expect(checks).toEqual(
      expect.arrayContaining([{ name: 'storage', ok: true }, expect.objectContaining({ name: 'upstream', ok: false })]),
    );
  }
  return running.map((t) => t.ID);
}

/** `url`'s HTTP status (or the connection error's code), asked from inside a running container with its node. */
const PROBE =
  "require('http').get(process.argv[1],(r)=>{console.log(r.statusCode);process.exit(0)}).on('error',(e)=>{console.log(e.code);process.exit(0)})";

/**
 * The replicas share the site's overlay network: each reaches the other's replica endpoint (where a cold blob is
 * streamed from the replica fetching it) at the task name it advertises; without the HMAC of http.secret: 401.
 */
async function expectReplicasReachEachOther(roles: Role[]): Promise<void> {
  const docker = requireTool('docker');
  const replicas = await Promise.all(
    roles.map(async (role) => {
      const id = (await containersOn(role)).find((c) => c.State === 'running')?.Id ?? '';
      let advertised = '';
      await waitFor(
        `the replica endpoint of ${role} in its log`,
        async () => {
          const line = run(docker, ['logs', id], node(role).engine.env)
            .split('\n')
            .find((l) => l.includes('"replica endpoint listening"'));
          advertised = line ? (JSON.parse(line) as { advertised: string }).advertised : '';
          return advertised !== '';
        },
        30_000,
      );
      return { role, id, advertised };
    }),
  );
  console.log(`multi-node: replica endpoints ${replicas.map((r) => `${r.role}=${r.advertised}`).join(', ')}`);
  for (const from of replicas)
    for (const to of replicas.filter((r) => r !== from)) {
      expect(to.advertised).toMatch(new RegExp(`^${SERVICE}\\.\\d+\\.\\w+:\\d+$`));
      const url = `http://${to.advertised}/fills/sha256:${'0'.repeat(64)}?from=0`;
      expect(run(docker, ['exec', from.id, 'node', '-e', PROBE, url], node(from.role).engine.env)).toBe('401');
    }
}

/** `terraform plan -detailed-exitcode` exits 0: what was applied is what the provider reads back. */
async function expectNoChanges(when: string): Promise<void> {
  const plan = await tf!.plan();
  console.log(`multi-node: plan ${when} (exit ${plan.status}): ${planLines(plan).join(' | ')}`);
  expect(planLines(plan)).toEqual(['No changes. Your infrastructure matches the configuration.']);
  expect(plan.status).toBe(0);
}

async function labelsByRole(): Promise<Record<string, string | undefined>> {
  return Object.fromEntries(await Promise.all(ROLES.map(async (role) => [role, await labelOf(role)])));
}

/** The running task on each node, by role. */
async function runningTasksByRole(): Promise<Record<string, string>> {
  const tasks = (await serviceTasks(manager(), SERVICE)).filter((t) => t.Status.State === 'running' && t.DesiredState === 'running');
  return Object.fromEntries(tasks.map((t) => [roleOf(t.NodeID), t.ID]));
}

beforeAll(async () => {
  const docker = requireTool('docker');
  requireTool('terraform');
  const tar = saveSharedImage(IMAGE, work);

  bridge.create();
  let t0 = Date.now();
  await Promise.all([...nodes.values()].map((n) => n.engine.start()));
  console.log(`multi-node: 3 dockerds (own network namespaces, bridge ${bridge.name} ${NET}.0/24) answering in ${Date.now() - t0} ms`);

  t0 = Date.now();
  const mgr = node('manager');
  run(docker, ['swarm', 'init', '--advertise-addr', mgr.engine.address], mgr.engine.env);
  const token = run(docker, ['swarm', 'join-token', '-q', 'worker'], mgr.engine.env);
  for (const role of ['worker1', 'worker2'] as const) {
    run(docker, ['swarm', 'join', '--token', token, `${mgr.engine.address}:2377`], node(role).engine.env);
  }
  for (const n of nodes.values()) n.id = run(docker, ['info', '--format', '{{.Swarm.NodeID}}'], n.engine.env);
  await waitFor(
    'all three nodes ready in the swarm',
    async () => {
      const list = await manager().request<{ Status: { State: string } }[]>('GET', '/nodes');
      return list.length === 3 && list.every((n) => n.Status.State === 'ready');
    },
    60_000,
  );
  console.log(`multi-node: swarm of 3 (manager + 2 workers) formed in ${Date.now() - t0} ms`);

  t0 = Date.now();
  await Promise.all([...nodes.values()].map((n) => n.engine.loadImage(tar)));
  rmSync(tar);
  console.log(`multi-node: ${IMAGE} loaded into the 3 engines in ${Date.now() - t0} ms`);

  azurite = await startAzurite({ host: bridge.address });
  writeFileSync(join(work, 'azure-account-key'), `${azurite.accountkey}\n`, { mode: 0o600 });
  await azurite.container(CONTAINER);
  const ca = createTestCa(join(work, 'pki'));
  caPem = readFileSync(ca.caCert, 'utf8');
  cacheCert = ca.issue('cache', [CACHE_HOST]);
}, 240_000);

afterAll(async () => {
  const problems: string[] = [];
  if (tf && !destroyed) await tf.destroy().catch((err: Error) => problems.push(err.message));
  await Promise.all([...nodes.values()].map((n) => n.api.close()));
  await Promise.all([...nodes.values()].map((n) => n.engine.stop()));
  bridge.remove();
  await azurite?.stop();
  rmSync(work, { recursive: true, force: true });
  if (problems.length) throw new Error(problems.join('\n'));
}, 120_000);

test('a site for two of three nodes: one replica on each labelled node, none on the unlabelled worker', async () => {
  tf = terraformDeploy(dirname(synth(['manager', 'worker1'])), { statePath: join(work, 'terraform.tfstate') });
  const result = await tf.apply();
  console.log(
    `multi-node: terraform apply (2 labelled nodes) in ${result.ms} ms: ${planLines(result)
      .filter((l) => l.startsWith('Apply'))
      .join('')}`,
  );
  expect(await tf.outputs()).toMatchObject({ Site_replicas: 2 });
  await expectNoChanges('after the first apply');

  const service = await manager().request<{
    Spec: {
      Mode: { Replicated: { Replicas: number } };
      TaskTemplate: { Placement: { Constraints: string[]; MaxReplicas: number } };
      EndpointSpec: { Ports: { PublishMode: string; PublishedPort: number }[] };
    };
  }>('GET', `/services/${SERVICE}`);
  expect(service.Spec.Mode.Replicated.Replicas).toBe(2);
  expect(service.Spec.TaskTemplate.Placement.Constraints).toEqual([`node.labels.${LABEL} == true`]);
  expect(service.Spec.TaskTemplate.Placement.MaxReplicas).toBe(1);
  expect(service.Spec.EndpointSpec.Ports).toEqual([expect.objectContaining({ PublishMode: 'host', PublishedPort: CACHE_PORT })]);

  firstTasks = await expectReplicasOn(['manager', 'worker1'], ['worker2']);
  await expectReplicasReachEachOther(['manager', 'worker1']);
});

test('the unlabelled worker added to nodes: the next apply labels it and a third replica lands there', async () => {
  expect(firstTasks).toHaveLength(2); // the first test applied
  await tf!.switchTo(dirname(synth(['manager', 'worker1', 'worker2'])));
  const result = await tf!.apply();
  console.log(
    `multi-node: terraform apply (3 labelled nodes) in ${result.ms} ms: ${planLines(result)
      .filter((l) => /^\s*# (docker|terraform)_|^Apply/.test(l))
      .join(' | ')}`,
  );
  expect(await tf!.outputs()).toMatchObject({ Site_replicas: 3 });
  // One more replica; the two running ones are not restarted (only the replica count changed).
  expect(await expectReplicasOn(['manager', 'worker1', 'worker2'], [])).toEqual(expect.arrayContaining(firstTasks));
  tasksByNode = await runningTasksByRole();
  await expectNoChanges('after adding worker2');
});

test('a worker removed from nodes: the next apply removes its label and its replica, the others keep their tasks', async () => {
  expect(Object.keys(tasksByNode)).toHaveLength(3); // the second test applied
  const labelsBefore = await labelsByRole();
  await tf!.switchTo(dirname(synth(['manager', 'worker2'])));
  const result = await tf!.apply();
  console.log(
    `multi-node: terraform apply (worker1 removed) in ${result.ms} ms: ${planLines(result)
      .filter((l) => /^\s*# (docker|terraform)_|^Apply/.test(l))
      .join(' | ')}`,
  );
  expect(await tf!.outputs()).toMatchObject({ Site_replicas: 2 });
  await waitFor('the replica on worker1 to stop', async () => (await containersOn('worker1')).every((c) => c.State !== 'running'), 60_000);
  const labelsAfter = await labelsByRole();
  console.log(`multi-node: ${LABEL} labels before ${JSON.stringify(labelsBefore)}, after ${JSON.stringify(labelsAfter)}`);
  expect(labelsAfter).toEqual({ manager: 'true', worker1: undefined, worker2: 'true' });
  const after = await runningTasksByRole();
  console.log(`multi-node: running tasks before ${JSON.stringify(tasksByNode)}, after ${JSON.stringify(after)}`);
  expect(after).toEqual({ manager: tasksByNode.manager, worker2: tasksByNode.worker2 });
  await expectNoChanges('after removing worker1');
});

test('destroy removes the service, its containers on every node, and the labels', async () => {
  expect(tf).toBeDefined();
  const result = await tf!.destroy();
  destroyed = true;
  console.log(
    `multi-node: terraform destroy in ${result.ms} ms: ${planLines(result)
      .filter((l) => l.startsWith('Destroy'))
      .join('')}`,
  );
  expect(await manager().find(`/services/${SERVICE}`)).toBeUndefined();
  for (const role of ROLES) {
    expect(await labelOf(role)).toBeUndefined();
    await waitFor(`the service's containers on ${role} to be removed`, async () => (await containersOn(role)).length === 0, 30_000);
  }
});
