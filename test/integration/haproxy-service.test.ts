/**
 * LoadBalancer.service on the shared test swarm: a site whose load balancer is an HAProxy service it deploys itself
 * (image made here from Debian's haproxy binary, FROM scratch, no Docker Hub), on an overlay network shared with the
 * cache replica, which publishes nothing. Deployed with the real `terraform` binary (the docker provider is the test
 * stand-in of kreuzwerker/docker 3.6.2); a pull through the load balancer's port
 * (host mode: no IPVS on these machines) reaches the cache over TLS end to end (the client verifies the cache's
 * certificate), the replica found through swarm DNS. A plan then has no changes. Then destroy.
 *
 * The cache image is taken from the shared engine (127.0.0.1:5000/dtr-cache:e2e, built by scripts/test-services.sh start).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { App, TerraformStack } from 'cdktf';
import { Agent, fetch as undiciFetch, request } from 'undici';
import { DtrCacheSite, LoadBalancer, PublishMode, SecretSource, SwarmConnection } from '../../lib/constructs';
import { makeImage, pushImage, sha256, type TestImage } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { planLines, terraformDeploy, TerraformDeploy } from '../support/terraform';
import { freePort, requireTool, waitFor } from '../../harness/tools';
import { Engine, serviceTasks, TEST_DOCKER_SOCK } from '../terraform-provider-docker/engine';
import { createTestCa } from '../e2e/support/pki';

jest.setTimeout(300_000);

const CACHE_IMAGE = process.env.DTR_E2E_IMAGE ?? '127.0.0.1:5000/dtr-cache:e2e';
const LB_IMAGE = '127.0.0.1:5000/dtr-cache-test-haproxy:local';
const REPO = 'team/app';
const DOCKER_ENV = { ...process.env, DOCKER_HOST: `unix://${TEST_DOCKER_SOCK}` };

const work = mkdtempSync(join(tmpdir(), 'dtr-cache-lb-service-'));
const engine = new Engine();
const previousFetch = globalThis.fetch;
let upstream: TestRegistry | undefined;
let tf: TerraformDeploy | undefined;
let destroyed = false;
let stackFile = '';
let caPem: Buffer;
let image: TestImage;
let lbPort = 0;

function docker(args: string[]): string {
  return execFileSync(requireTool('docker'), args, { env: DOCKER_ENV, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/** An image holding only /usr/sbin/haproxy and the libraries it links, imported as a single layer. */
function buildHaproxyImage(): void {
  const haproxy = requireTool('haproxy');
  const root = join(work, 'haproxy-rootfs');
  const libs = execFileSync('ldd', [haproxy], { encoding: 'utf8' })
    .split('\n')
    .map((l) => /=>\s+(\/\S+)/.exec(l)?.[1] ?? /^\s*(\/\S+)\s+\(/.exec(l)?.[1])
    .filter((p): p is string => Boolean(p));
  for (const file of [haproxy, ...libs]) {
    mkdirSync(join(root, dirname(file)), { recursive: true });
    copyFileSync(file, join(root, file));
  }
  const run = spawnSync(
    'sh',
    [
      '-c',
      `tar -C "${root}" -c . | docker import --change 'ENTRYPOINT ["${haproxy}", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]' - ${LB_IMAGE}`,
    ],
    { env: DOCKER_ENV, encoding: 'utf8', timeout: 120_000 },
  );
  if (run.status !== 0) throw new Error(`haproxy image import failed: ${run.stderr}`);
}

beforeAll(async () => {
  for (const tool of ['docker', 'docker-registry', 'openssl', 'haproxy', 'terraform']) requireTool(tool);
  const info = await engine.request<{ Swarm: { LocalNodeState: string; NodeID: string } }>('GET', '/info').catch((err: Error) => {
    throw new Error(`no test dockerd on ${TEST_DOCKER_SOCK} (${err.message}): run bash scripts/test-services.sh start`);
  });
  if (info.Swarm.LocalNodeState !== 'active')
    throw new Error('the test dockerd is not a swarm manager: run bash scripts/test-services.sh start');
  try {
    docker(['image', 'inspect', '--format', '{{.Id}}', CACHE_IMAGE]);
  } catch {
    throw new Error(
      `${CACHE_IMAGE} is not in the shared test engine: run bash scripts/test-services.sh start (it builds it), or set DTR_E2E_IMAGE`,
    );
  }
  buildHaproxyImage();

  // The upstream listens on the docker bridge's gateway, the host address task containers reach (as swarm-deploy does).
  const bridge = await engine.request<{ IPAM: { Config: { Gateway?: string; Subnet?: string }[] } }>('GET', '/networks/bridge');
  const ipv4 = bridge.IPAM.Config.find((c) => c.Subnet?.includes('.'));
  const gateway = ipv4?.Gateway ?? ipv4?.Subnet?.replace(/^(\d+\.\d+\.\d+\.)\d+\/\d+$/, '$11');
  if (!gateway) throw new Error(`the docker bridge network has no IPv4 gateway (${JSON.stringify(bridge.IPAM)})`);
  const ca = createTestCa(join(work, 'pki'));
  caPem = readFileSync(ca.caCert);
  const upstreamCert = ca.issue('upstream', [gateway]);
  const cacheCert = ca.issue('cache', ['localhost']);
  const port = await freePort();
  const tls = { certificate: upstreamCert.certificate, key: upstreamCert.key };
  upstream = await TestRegistry.start({ port, tls, extra: { http: { addr: `${gateway}:${port}`, tls } } });
  const upstreamUrl = `https://${gateway}:${port}`;
  const agent = new Agent({ connect: { ca: caPem } });
  globalThis.fetch = ((input: Parameters<typeof undiciFetch>[0], init?: Parameters<typeof undiciFetch>[1]) =>
    undiciFetch(input, { ...init, dispatcher: agent })) as unknown as typeof fetch;
  // start() waits on its loopback URL; this one listens on the gateway address.
  await waitFor('the TLS upstream', async () => (await fetch(`${upstreamUrl}/v2/`).catch(() => undefined))?.status === 200, 30_000);
  image = makeImage({ layerSizes: [4096, 300_000] });
  await pushImage(upstreamUrl, REPO, 'v1', image);

  lbPort = await freePort();
  const outdir = join(work, 'synth');
  const app = new App({ outdir, skipValidation: false });
  const stack = new TerraformStack(app, 'lbsvc');
  new DtrCacheSite(stack, 'Site', {
    datacenter: 'lbsvc',
    upstreams: [upstreamUrl],
    host: 'localhost',
    nodes: [info.Swarm.NodeID],
    tls: {
      certificate: SecretSource.fromFile(cacheCert.certificate),
      key: SecretSource.fromFile(cacheCert.key),
      dtrCa: SecretSource.fromFile(ca.caCert),
    },
    // The shared engine's image, never pushed: no registry serves its digest (the tag runs as is).
    image: { reference: CACHE_IMAGE, resolveDigest: false },
    connection: SwarmConnection.localSocket(TEST_DOCKER_SOCK),
    port: lbPort,
    // Host mode: no IPVS here, so the routing mesh cannot carry the load balancer's port.
    loadBalancer: LoadBalancer.service({ image: LB_IMAGE, publishMode: PublishMode.HOST }),
    workersOnly: false,
    // Its own label: the e2e deploy test may run on the same node with dtr.cache, and destroy removes the label.
    nodeLabel: 'dtr.cache.lbsvc-test',
  });
  app.synth();
  stackFile = join(outdir, 'stacks', 'lbsvc', 'cdk.tf.json');
}, 240_000);

afterAll(async () => {
  const problems: string[] = [];
  if (tf && !destroyed) await tf.destroy().catch((err: Error) => problems.push(err.message));
  await removeLeftovers();
  await upstream?.stop();
  globalThis.fetch = previousFetch;
  // The load balancer's container may still be in its stop grace period: the image frees up within seconds.
  await waitFor(
    'the haproxy test image removed',
    async () => spawnSync(requireTool('docker'), ['image', 'rm', LB_IMAGE], { env: DOCKER_ENV }).status === 0,
    30_000,
  ).catch((err: Error) => problems.push(err.message));
  await engine.close();
  rmSync(work, { recursive: true, force: true });
  if (problems.length) throw new Error(problems.join('\n'));
}, 120_000);

/**
 * After a failed apply or destroy: remove what this site may have created, by its name prefix, so the shared engine is
 * left as found. Bounded: one pass per kind, 30 s for the network.
 */
async function removeLeftovers(): Promise<void> {
  const mine = (name: string) => name === 'dtr-cache-lbsvc' || name.startsWith('dtr-cache-lbsvc-');
  for (const s of await engine.request<{ ID: string; Spec: { Name: string } }[]>('GET', '/services')) {
    if (mine(s.Spec.Name)) await engine.request('DELETE', `/services/${s.ID}`).catch(() => undefined);
  }
  for (const kind of ['configs', 'secrets'] as const) {
    for (const o of await engine.request<{ ID: string; Spec: { Name: string } }[]>('GET', `/${kind}`)) {
      if (mine(o.Spec.Name)) {
        await waitFor(
          `${kind} ${o.Spec.Name} removed`,
          () =>
            engine.request('DELETE', `/${kind}/${o.ID}`).then(
              () => true,
              () => false,
            ),
          30_000,
        ).catch(() => undefined);
      }
    }
  }
  await waitFor(
    'the overlay network removed',
    () =>
      engine.request('DELETE', '/networks/dtr-cache-lbsvc-lb').then(
        () => true,
        (err: Error) => /404|not found/i.test(err.message),
      ),
    30_000,
  ).catch(() => undefined);
  spawnSync(requireTool('docker'), ['node', 'update', '--label-rm', 'dtr.cache.lbsvc-test', 'self'], { env: DOCKER_ENV });
}

/** A pull (manifest and blobs, digests checked) through the load balancer, verifying the cache's certificate. */
async function pull(): Promise<void> {
  const agent = new Agent({ connect: { ca: caPem, servername: 'localhost' }, headersTimeout: 10_000, bodyTimeout: 10_000 });
  try {
    const base = `https://127.0.0.1:${lbPort}/v2/${REPO}`;
    const m = await request(`${base}/manifests/v1`, { dispatcher: agent, headers: { accept: image.mediaType } });
    const body = Buffer.from(await m.body.arrayBuffer());
    if (m.statusCode !== 200 || sha256(body) !== image.digest)
      throw new Error(`manifest: ${m.statusCode} ${body.toString().slice(0, 200)}`);
    for (const blob of image.blobs) {
      const res = await request(`${base}/blobs/${blob.digest}`, { dispatcher: agent });
      const data = Buffer.from(await res.body.arrayBuffer());
      if (res.statusCode !== 200 || sha256(data) !== blob.digest) throw new Error(`blob ${blob.digest}: ${res.statusCode}`);
    }
  } finally {
    await agent.close();
  }
}

test('the site deploys its own HAProxy service; pulls pass through it to the unpublished replica', async () => {
  const t0 = Date.now();
  tf = terraformDeploy(dirname(stackFile), { statePath: join(work, 'terraform.tfstate') });
  const result = await tf.apply();
  const applied = Date.now() - t0;
  const cache = await engine.request<{ Endpoint: { Ports?: unknown[] }; Spec: { TaskTemplate: { Networks?: { Target: string }[] } } }>(
    'GET',
    '/services/dtr-cache-lbsvc',
  );
  expect(cache.Endpoint.Ports ?? []).toEqual([]); // the replica publishes nothing
  const lb = await engine.request<{ Spec: { TaskTemplate: { Networks?: { Target: string }[] } } }>('GET', '/services/dtr-cache-lbsvc-lb');
  expect(lb.Spec.TaskTemplate.Networks).toEqual(cache.Spec.TaskTemplate.Networks);
  expect((await serviceTasks(engine, 'dtr-cache-lbsvc-lb')).filter((t) => t.Status.State === 'running')).toHaveLength(1);

  // HAProxy finds the replica through swarm DNS and its /readyz check brings it up (bounded: 60 s).
  let lastError = '';
  await waitFor(
    'a pull through the load-balancer service',
    () =>
      pull().then(
        () => true,
        (err: Error) => ((lastError = err.message), false),
      ),
    60_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last: ${lastError}`);
  });
  const firstPull = Date.now() - t0 - applied;
  for (let i = 0; i < 5; i++) await pull();
  console.log(
    `haproxy service: ${planLines(result)
      .filter((l) => l.startsWith('Apply'))
      .join('')} (init and apply ${applied} ms), first pull through it after ${firstPull} ms more`,
  );
  const plan = await tf.plan();
  expect(planLines(plan)).toEqual(['No changes. Your infrastructure matches the configuration.']);
  expect(plan.status).toBe(0);

  await tf.destroy();
  destroyed = true;
  expect(await engine.find('/services/dtr-cache-lbsvc-lb')).toBeUndefined();
  // The swarm removes the network once the load balancer's container has stopped (its stop grace period).
  await waitFor('the overlay network to go', async () => (await engine.find('/networks/dtr-cache-lbsvc-lb')) === undefined, 30_000);
});
