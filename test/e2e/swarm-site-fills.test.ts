/**
 * End to end on the shared test swarm: a service of two cache replicas (the cache image) on one shared store (a host
 * directory bind-mounted into both tasks), with the same http.secret, in front of a real distribution registry
 * behind a throttling proxy on the host's docker0 address. 20 concurrent pulls of each blob through each replica
 * (from the host, on each task's own address): the upstream's access log shows exactly one GET per blob, and every
 * client gets the exact digest.
 *
 * The shared swarm has one node (it advertises 127.0.0.1), so both tasks run on it, on its bridge network, and reach
 * each other's replica endpoint at their own IPv4 addresses (http.internal's default). multi-node-fills.test.ts does
 * the same across two nodes, on an overlay network.
 *
 * Uses the Docker engine: run under `flock /tmp/dtr-docker.lock`.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { makeImage, pushImage } from '../../harness/images';
import { pullConcurrently, upstreamGetsPerBlob } from '../support/pull';
import { TestRegistry } from '../../harness/registry';
import { startThrottleProxy, type ThrottleProxy } from '../support/throttle-proxy';
import { requireTool, waitFor } from '../../harness/tools';
import { TEST_DOCKER_SOCK } from '../terraform-provider-docker/engine';

jest.setTimeout(300_000);

const IMAGE = process.env.DTR_E2E_IMAGE ?? '127.0.0.1:5000/dtr-cache:e2e';
const SERVICE = `dtr-cache-fills-${process.pid}`;
const CLIENTS = 20;
const env = { ...process.env, DOCKER_HOST: `unix://${TEST_DOCKER_SOCK}` };

function docker(args: string[]): string {
  return execFileSync(requireTool('docker'), args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/** The task containers' addresses on their network (one per running task). */
function taskAddresses(): string[] {
  const ids = docker(['ps', '-q', '--filter', `label=com.docker.swarm.service.name=${SERVICE}`, '--filter', 'status=running'])
    .split('\n')
    .filter(Boolean);
  return ids.map((id) => docker(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}', id]).split(' ')[0]);
}

let upstream: TestRegistry | undefined;
let proxy: ThrottleProxy | undefined;
let dir: string;
let replicas: string[] = [];

beforeAll(async () => {
  requireTool('docker');
  // The host's address on the engine's default bridge: where the tasks reach the upstream.
  const gateway = docker(['network', 'inspect', 'bridge', '-f', '{{(index .IPAM.Config 0).Gateway}}']);
  upstream = await TestRegistry.start({ host: gateway });
  proxy = await startThrottleProxy(upstream.port, 4 * 1024 * 1024, gateway);
  dir = mkdtempSync(join(tmpdir(), 'dtr-cache-swarm-fills-'));
  const store = join(dir, 'store');
  execFileSync('mkdir', ['-p', store]);
  chmodSync(store, 0o777); // the image runs as uid 10001
  writeFileSync(
    join(dir, 'config.yml'),
    stringify({
      version: '0.1',
      log: { level: 'info' },
      storage: { filesystem: { rootdirectory: '/var/lib/registry' } },
      http: { addr: '0.0.0.0:5000', secret: 'swarm-fills-test-secret' },
      middleware: { registry: [{ name: 'downstream', options: { upstreams: [proxy.url] } }] },
    }),
  );
  chmodSync(join(dir, 'config.yml'), 0o644);
  docker([
    'service',
    'create',
    '--detach',
    '--no-resolve-image',
    '--name',
    SERVICE,
    '--replicas',
    '2',
    '--mount',
    `type=bind,src=${store},dst=/var/lib/registry`,
    '--mount',
    `type=bind,src=${join(dir, 'config.yml')},dst=/config.yml,readonly`,
    IMAGE,
  ]);
  await waitFor('two running tasks', async () => taskAddresses().length === 2, 120_000);
  replicas = taskAddresses().map((ip) => `http://${ip}:5000`);
  for (const base of replicas) {
    await waitFor(`/healthz of ${base}`, async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.status === 200, 60_000);
  }
}, 300_000);

afterAll(async () => {
  try {
    docker(['service', 'rm', SERVICE]);
  } catch {
    // not created
  }
  await waitFor(
    `the containers of ${SERVICE} to be removed`,
    async () => docker(['ps', '-aq', '--filter', `label=com.docker.swarm.service.name=${SERVICE}`]) === '',
    60_000,
  ).catch(() => undefined);
  await proxy?.stop();
  await upstream?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 120_000);

test(`two replicas of a swarm service on one store, ${CLIENTS} concurrent pulls of each blob through each: 1 upstream GET per blob`, async () => {
  expect(replicas).toHaveLength(2);
  const image = makeImage({ layerSizes: [8 * 1024 * 1024, 2 * 1024 * 1024, 4096] });
  await pushImage(upstream!.url, 'team/app', 'v1', image);
  upstream!.clearLog();
  const digests = image.blobs.map((b) => b.digest);
  const { ms, received } = await pullConcurrently(replicas, 'team/app', digests, CLIENTS);
  for (const { want, got } of received) expect(got).toBe(want);
  const perBlob = await upstreamGetsPerBlob(upstream!, digests);
  // Each task container's own log (stdout, one JSON object per line): `docker service logs` can lag behind it.
  const lines = docker(['ps', '-q', '--filter', `label=com.docker.swarm.service.name=${SERVICE}`])
    .split('\n')
    .filter(Boolean)
    .flatMap((id) => docker(['logs', id]).split('\n'));
  const count = (msg: string) => lines.filter((l) => l.includes(`"msg":"${msg}"`)).length;
  const endpoints = count('replica endpoint listening');
  const fetched = count('blob miss; fetching from upstream');
  const streamed = count('blob miss; streaming from the replica fetching it');
  console.log(
    `swarm: 2 replicas x ${CLIENTS} clients x ${image.blobs.length} blobs (${image.blobs.map((b) => b.data.length).join(', ')} bytes) in ${ms} ms; ` +
      `upstream GETs per blob ${JSON.stringify(perBlob)}; replica endpoints ${endpoints}, fills fetched ${fetched}, ` +
      `fills streamed from the other replica ${streamed}`,
  );
  expect(perBlob).toEqual(image.blobs.map(() => 1));
  // One endpoint per worker process of each replica (the image runs --workers auto).
  expect(endpoints).toBeGreaterThanOrEqual(2);
  expect(fetched).toBe(image.blobs.length);
  // The big layer's fill takes 2 s at the link's 4 MiB/s: the other replica's clients arrive during it.
  expect(streamed).toBeGreaterThanOrEqual(1);
});
