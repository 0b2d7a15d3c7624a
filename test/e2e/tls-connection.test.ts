/**
 * End to end through a client bundle, the way a UCP swarm is reached: a second dockerd (own network namespace, data
 * and exec roots, pidfile, unix socket) listens on tcp://10.98.N.2:2376 with --tlsverify; a bundle directory holds
 * ca.pem, cert.pem, key.pem and env.sh as UCP writes them. A site synthesized with SwarmConnection.clientBundle is
 * deployed with the real `terraform` binary through the engine its provider block describes (host and file()
 * materials, evaluated by Terraform, over TLS, not the unix socket; the provider is the test stand-in of
 * kreuzwerker/docker 3.6.2); its node-label local-execs run the docker CLI with the bundle's DOCKER_HOST/
 * DOCKER_TLS_VERIFY/DOCKER_CERT_PATH. Then: the service runs there (and not on the shared engine), the node carries
 * the label, the cache answers over TLS, a plan has no changes, and destroy removes both. Everything started here is
 * stopped in afterAll.
 *
 * The cache image is taken from the shared test engine (127.0.0.1:5000/dtr-cache:e2e, built by scripts/test-services.sh start)
 * with docker save/load, so this test needs no registry inside the namespace.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { App, TerraformStack } from 'cdktf';
import { DtrCacheSite, LoadBalancer, SecretSource, SwarmConnection } from '../../lib/constructs';
import { planLines, terraformDeploy, TerraformDeploy } from '../support/terraform';
import { requireTool, waitFor } from '../../harness/tools';
import { Engine, serviceTasks } from '../terraform-provider-docker/engine';
import { httpsGet } from './support/https-probe';
import { NetnsEngine, run, saveSharedImage } from './support/netns-engine';
import { createTestCa } from './support/pki';

jest.setTimeout(300_000);

const IMAGE = process.env.DTR_E2E_IMAGE ?? '127.0.0.1:5000/dtr-cache:e2e';
const SERVICE = 'dtr-cache-tls';
const CACHE_HOST = 'cache.tls.test';
const CACHE_PORT = 8443;
// One /30 per test process, so parallel runs on one machine do not collide.
const NET = `10.98.${process.pid % 250}`;
const HOST_IP = `${NET}.1`;
const NODE_IP = `${NET}.2`;
const NETNS = `dtrtls${process.pid}`;
const VETH = `dtl${process.pid}h`;
const DOCKER_HOST = `tcp://${NODE_IP}:2376`;

const work = mkdtempSync(join(tmpdir(), 'dtr-cache-tls-e2e-'));
const bundle = join(work, 'bundle');
let node: NetnsEngine | undefined;
let engine: Engine | undefined;
let tf: TerraformDeploy | undefined;
let destroyed = false;
let stackFile = '';
let nodeId = '';
let cacheCert = { certificate: '', key: '' };
const shared = new Engine();

/** The environment env.sh of the bundle gives a shell: what an operator would `eval`. */
function bundleEnv(): NodeJS.ProcessEnv {
  return { ...process.env, DOCKER_HOST, DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: bundle };
}

/** A client certificate (clientAuth, as UCP issues them) signed by the test CA. */
function issueClientCertificate(caDir: string, caCert: string, out: string): void {
  const openssl = requireTool('openssl');
  const ext = join(out, 'client-ext.cnf');
  writeFileSync(ext, 'extendedKeyUsage=clientAuth\n');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  execFileSync(openssl, ['req', ...ec, '-keyout', join(out, 'key.pem'), '-out', join(out, 'client.csr'), '-subj', '/CN=ucp-user'], {
    stdio: 'pipe',
  });
  execFileSync(
    openssl,
    ['x509', '-req', '-in', join(out, 'client.csr'), '-CA', caCert, '-CAkey', join(caDir, 'ca.key'), '-CAcreateserial'].concat([
      '-out',
      join(out, 'cert.pem'),
      '-days',
      '2',
      '-extfile',
      ext,
    ]),
    { stdio: 'pipe' },
  );
  rmSync(join(out, 'client.csr'));
  rmSync(ext);
}

beforeAll(async () => {
  const docker = requireTool('docker');
  requireTool('terraform');
  const tar = saveSharedImage(IMAGE, work);

  // PKI: the engine's server certificate (for its namespace address) and the bundle's client certificate.
  const ca = createTestCa(join(work, 'pki'));
  const server = ca.issue('dockerd', [NODE_IP, 'localhost']);
  const cache = ca.issue('cache', [CACHE_HOST]);
  mkdirSync(bundle, { mode: 0o700 });
  copyFileSync(ca.caCert, join(bundle, 'ca.pem'));
  issueClientCertificate(ca.dir, ca.caCert, bundle);
  writeFileSync(
    join(bundle, 'env.sh'),
    `export DOCKER_TLS_VERIFY=1\nexport COMPOSE_TLS_VERSION=TLSv1_2\nexport DOCKER_CERT_PATH="$(pwd)"\nexport DOCKER_HOST=${DOCKER_HOST}\n`,
  );
  cacheCert = cache;

  // The engine's own network namespace: its bridges, iptables rules and swarm ports never meet the shared engine's.
  node = new NetnsEngine({
    netns: NETNS,
    veth: VETH,
    hostname: 'dtr-tls-node',
    address: NODE_IP,
    prefixLength: 30,
    host: { address: HOST_IP },
    root: join(work, 'engine'),
    dockerdArgs: [
      `-H=${DOCKER_HOST}`,
      '--tlsverify',
      `--tlscacert=${ca.caCert}`,
      `--tlscert=${server.certificate}`,
      `--tlskey=${server.key}`,
    ],
  });
  await node.start();
  run(docker, ['swarm', 'init', '--advertise-addr', NODE_IP], bundleEnv());
  nodeId = run(docker, ['info', '--format', '{{.Swarm.NodeID}}'], bundleEnv());
  // The image, over the TLS connection too.
  run(docker, ['load', '-i', tar], bundleEnv());
  rmSync(tar);
}, 240_000);

afterAll(async () => {
  const problems: string[] = [];
  if (tf && !destroyed) await tf.destroy().catch((err: Error) => problems.push(err.message));
  await engine?.close();
  await shared.close();
  await node?.stop();
  rmSync(work, { recursive: true, force: true });
  if (problems.length) throw new Error(problems.join('\n'));
}, 120_000);

test('a site deployed through a client bundle to a --tlsverify TCP engine: service and node label there, gone after destroy', async () => {
  const outdir = join(work, 'synth');
  const app = new App({ outdir, skipValidation: false });
  const stack = new TerraformStack(app, 'tls');
  const connection = SwarmConnection.clientBundle({ directory: bundle }); // host read from env.sh
  expect(connection.host).toBe(DOCKER_HOST);
  new DtrCacheSite(stack, 'Site', {
    datacenter: 'tls',
    upstreams: ['https://dtr.tls.test'],
    host: CACHE_HOST,
    nodes: [nodeId],
    tls: {
      certificate: SecretSource.fromFile(cacheCert.certificate),
      key: SecretSource.fromFile(cacheCert.key),
      dtrCa: SecretSource.fromFile(join(bundle, 'ca.pem')),
    },
    // The image is loaded into the engines, never pushed: no registry serves its digest (the tag runs as is).
    image: { reference: IMAGE, resolveDigest: false },
    connection,
    port: CACHE_PORT,
    // No IPVS on these machines: host-mode publishing, the external load balancer mode.
    loadBalancer: LoadBalancer.external({ kind: 'haproxy', nodeAddresses: [NODE_IP] }),
    workersOnly: false,
  });
  app.synth();
  stackFile = join(outdir, 'stacks', 'tls', 'cdk.tf.json');
  const synthesized = readFileSync(stackFile, 'utf8');
  expect(synthesized).not.toContain('PRIVATE KEY');
  for (const line of readFileSync(join(bundle, 'key.pem'), 'utf8')
    .split('\n')
    .filter((l) => l.length > 20 && !l.startsWith('-----'))) {
    expect(synthesized).not.toContain(line);
  }

  // The provider block: the bundle's host, and its materials read by Terraform's file() at deploy time.
  const provider = (JSON.parse(synthesized) as { provider: { docker: Record<string, string>[] } }).provider.docker[0];
  expect(provider.host).toBe(DOCKER_HOST);
  for (const [attribute, file] of [
    ['ca_material', 'ca.pem'],
    ['cert_material', 'cert.pem'],
    ['key_material', 'key.pem'],
  ]) {
    expect(provider[attribute]).toContain('file(');
    expect(provider[attribute]).toContain(file);
  }
  // The test's own client for what it checks: the bundle's files.
  engine = new Engine(undefined, {
    host: DOCKER_HOST,
    ca: readFileSync(join(bundle, 'ca.pem'), 'utf8'),
    cert: readFileSync(join(bundle, 'cert.pem'), 'utf8'),
    key: readFileSync(join(bundle, 'key.pem'), 'utf8'),
  });
  const info = await engine.request<{ Swarm: { NodeID: string } }>('GET', '/info');
  expect(info.Swarm.NodeID).toBe(nodeId);

  // No env override: the label local-execs run with the environment the connection synthesized (the bundle's).
  tf = terraformDeploy(dirname(stackFile), { statePath: join(work, 'terraform.tfstate') });
  const result = await tf.apply();
  console.log(
    `tls connection: terraform apply through ${DOCKER_HOST} in ${result.ms} ms: ${planLines(result)
      .filter((l) => l.startsWith('Apply'))
      .join('')}`,
  );

  const service = await engine.request<{ Spec: { Name: string; EndpointSpec: { Ports: { PublishMode: string }[] } } }>(
    'GET',
    `/services/${SERVICE}`,
  );
  expect(service.Spec.Name).toBe(SERVICE);
  expect(service.Spec.EndpointSpec.Ports[0].PublishMode).toBe('host');
  expect((await serviceTasks(engine, SERVICE)).filter((t) => t.Status.State === 'running')).toHaveLength(1);
  const node = await engine.request<{ Spec: { Labels: Record<string, string> } }>('GET', `/nodes/${nodeId}`);
  expect(node.Spec.Labels['dtr.cache']).toBe('true');
  // Deployed there, not on the shared engine behind the unix socket.
  expect(await shared.find(`/services/${SERVICE}`)).toBeUndefined();
  // The cache answers on the node's address over TLS, verified with the bundle's CA.
  const target = { address: NODE_IP, port: CACHE_PORT, servername: CACHE_HOST, ca: readFileSync(join(bundle, 'ca.pem')) };
  await waitFor('the cache /healthz over TLS', async () => (await httpsGet(target, '/healthz')).status === 200, 30_000);

  const plan = await tf.plan();
  console.log(`tls connection: plan after apply (exit ${plan.status}): ${planLines(plan).join(' | ')}`);
  expect(planLines(plan)).toEqual(['No changes. Your infrastructure matches the configuration.']);
  expect(plan.status).toBe(0);

  await tf.destroy();
  destroyed = true;
  expect(await engine.find(`/services/${SERVICE}`)).toBeUndefined();
  const after = await engine.request<{ Spec: { Labels: Record<string, string> } }>('GET', `/nodes/${nodeId}`);
  expect(after.Spec.Labels['dtr.cache']).toBeUndefined();
  expect(existsSync(stackFile)).toBe(true);
});
