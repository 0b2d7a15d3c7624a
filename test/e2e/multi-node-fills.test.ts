/**
 * End to end on a two-node swarm: one cache replica per node, on one shared store, fetch each cold blob once.
 *
 * Two dockerds, each in its own network namespace on a host bridge (as in multi-node.test.ts): a manager and a
 * worker. The cache image is copied from the shared engine (docker save/load). The service (2 replicas, at most one
 * per node, host-mode port 5000 on each node) joins an overlay network, on which each replica's endpoint is reached
 * at the address it advertises by default (its first non-loopback IPv4: the overlay's). The store is azurite and the
 * upstream a distribution 2.8 registry behind a 4 MiB/s link, both on the host's bridge address.
 *
 * 20 concurrent pulls of each blob through each node: the upstream's access log shows exactly one GET per blob, and
 * every client gets the exact digest. Everything started here is stopped in afterAll, also after a failure.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { makeImage, pushImage } from '../../harness/images';
import { pullConcurrently, upstreamGetsPerBlob } from '../support/pull';
import { TestRegistry } from '../../harness/registry';
import { AzuriteServer, startAzurite } from '../support/storage-servers';
import { startThrottleProxy, type ThrottleProxy } from '../support/throttle-proxy';
import { requireTool, waitFor } from '../../harness/tools';
import { HostBridge, NetnsEngine, run, saveSharedImage } from './support/netns-engine';

jest.setTimeout(300_000);

const IMAGE = process.env.DTR_E2E_IMAGE ?? '127.0.0.1:5000/dtr-cache:e2e';
const SERVICE = 'dtr-cache-fills';
const CLIENTS = 20;
const NET = `10.96.${process.pid % 250}`;
const ROLES = ['manager', 'worker'] as const;

const work = mkdtempSync(join(tmpdir(), 'dtr-cache-multi-fills-'));
const bridge = new HostBridge(`dtrmf${process.pid}`, `${NET}.1`, 24);
const engines = ROLES.map(
  (role, i) =>
    new NetnsEngine({
      netns: `dtrmf${process.pid}-${role}`,
      veth: `dmf${process.pid}${i}`,
      hostname: `dtr-mf-${role}`,
      address: `${NET}.${i + 2}`,
      prefixLength: 24,
      host: { bridge },
      root: join(work, role),
    }),
);
const manager = engines[0];

let azurite: AzuriteServer | undefined;
let upstream: TestRegistry | undefined;
let proxy: ThrottleProxy | undefined;
let bridgeUp = false;

beforeAll(async () => {
  const docker = requireTool('docker');
  const tar = saveSharedImage(IMAGE, work);
  bridge.create();
  bridgeUp = true;
  await Promise.all(engines.map((e) => e.start()));
  run(docker, ['swarm', 'init', '--advertise-addr', manager.options.address], manager.env);
  const token = run(docker, ['swarm', 'join-token', '-q', 'worker'], manager.env);
  run(docker, ['swarm', 'join', '--token', token, `${manager.options.address}:2377`], engines[1].env);
  await Promise.all(engines.map((e) => e.loadImage(tar)));
  rmSync(tar);

  azurite = await startAzurite({ host: bridge.address });
  const azure = await azurite.container('site', '/cache');
  upstream = await TestRegistry.start({ host: bridge.address });
  proxy = await startThrottleProxy(upstream.port, 4 * 1024 * 1024, bridge.address);
  const config = join(work, 'config.yml');
  writeFileSync(
    config,
    stringify({
      version: '0.1',
      log: { level: 'info' },
      storage: {
        azure,
      },
      http: { addr: '0.0.0.0:5000', secret: 'multi-node-fills-secret' },
      middleware: { registry: [{ name: 'downstream', options: { upstreams: [proxy.url] } }] },
    }),
    { mode: 0o644 },
  );
  run(docker, ['network', 'create', '--driver', 'overlay', `${SERVICE}-net`], manager.env);
  run(
    docker,
    [
      'service',
      'create',
      '--detach',
      '--no-resolve-image',
      '--name',
      SERVICE,
      '--replicas',
      '2',
      '--replicas-max-per-node',
      '1',
      '--network',
      `${SERVICE}-net`,
      '--publish',
      'mode=host,target=5000,published=5000',
      '--mount',
      `type=bind,src=${config},dst=/config.yml,readonly`,
      IMAGE,
    ],
    manager.env,
  );
  for (const engine of engines) {
    const base = `http://${engine.options.address}:5000`;
    await waitFor(
      `/healthz of the replica on ${engine.options.hostname}`,
      async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.status === 200,
      120_000,
    );
  }
}, 300_000);

afterAll(async () => {
  const docker = requireTool('docker');
  try {
    run(docker, ['service', 'rm', SERVICE], manager.env);
  } catch {
    // not created
  }
  await Promise.all(engines.map((e) => e.stop()));
  if (bridgeUp) bridge.remove();
  await proxy?.stop();
  await upstream?.stop();
  await azurite?.stop();
  rmSync(work, { recursive: true, force: true });
}, 180_000);

test(`one replica on each of two nodes, ${CLIENTS} concurrent pulls of each blob through each: 1 upstream GET per blob`, async () => {
  const image = makeImage({ layerSizes: [8 * 1024 * 1024, 2 * 1024 * 1024, 4096] });
  await pushImage(upstream!.url, 'team/app', 'v1', image);
  upstream!.clearLog();
  const bases = engines.map((e) => `http://${e.options.address}:5000`);
  const digests = image.blobs.map((b) => b.digest);
  const { ms, received } = await pullConcurrently(bases, 'team/app', digests, CLIENTS);
  for (const { want, got } of received) expect(got).toBe(want);
  const perBlob = await upstreamGetsPerBlob(upstream!, digests);
  // Each node's own replica log (stdout, one JSON object per line).
  const docker = requireTool('docker');
  const logs = engines.flatMap((e) =>
    run(docker, ['ps', '-q', '--filter', `label=com.docker.swarm.service.name=${SERVICE}`], e.env)
      .split('\n')
      .filter(Boolean)
      .flatMap((id) => run(docker, ['logs', id], e.env).split('\n')),
  );
  const count = (msg: string) => logs.filter((l) => l.includes(`"msg":"${msg}"`)).length;
  const endpoints = logs.filter((l) => l.includes('"msg":"replica endpoint listening"')).map((l) => JSON.parse(l).advertised as string);
  console.log(
    `multi-node fills: 2 nodes x ${CLIENTS} clients x ${image.blobs.length} blobs in ${ms} ms; upstream GETs per blob ${JSON.stringify(perBlob)}; ` +
      `replica endpoints ${endpoints.join(', ')}; fills fetched ${count('blob miss; fetching from upstream')}, ` +
      `streamed from the other node ${count('blob miss; streaming from the replica fetching it')}, ` +
      `fallbacks ${count('the replica holding the fill lease cannot be reached; fetching from the upstream too')}`,
  );
  expect(perBlob).toEqual(image.blobs.map(() => 1));
  expect(count('blob miss; streaming from the replica fetching it')).toBeGreaterThanOrEqual(1);
});
