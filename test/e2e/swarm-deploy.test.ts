/**
 * End to end on the shared dockerd's one-node swarm: build the cache image from the Dockerfile (on a base made
 * from the host's node, no Docker Hub), push it to a local registry on 127.0.0.1:5000, start a token-protected
 * TLS upstream standing in for DTR, synthesize a site with DtrCacheSite given the image's tag, deploy it with the real
 * `terraform` binary (init, apply; the docker provider is the test stand-in of kreuzwerker/docker 3.6.2, which reads
 * the tag's digest from that registry at plan time), check that the service runs the pushed digest and that a second
 * plan has no changes, then pull through the deployed cache with docker and skopeo, check that a client without a token is
 * refused, rotate the certificate and watch a pulling client during the rolling update, plan again, and destroy.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Agent, fetch as undiciFetch } from 'undici';
import { TokenIssuer } from '../fixtures/token-issuer';
import { makeImage, pushImage, TestImage } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { planLines, terraformDeploy, TerraformDeploy } from '../support/terraform';
import { freePort, requireTool, sleep, waitFor } from '../../harness/tools';
import { Engine, serviceTasks, TEST_DOCKER_SOCK } from '../terraform-provider-docker/engine';
import { createTestCa, TestCa } from './support/pki';
import { synthSite } from './support/site';

jest.setTimeout(420_000);

const ROOT = resolve(__dirname, '../..');
// Not the shared 127.0.0.1:5000/dtr-cache:e2e that other deploy tests run unpinned: while this test's registry serves
// its push, the provider would pin any service created meanwhile under that name to the digest (QueryRegistry on
// create) and their next plan would show the pin removed.
const IMAGE = '127.0.0.1:5000/dtr-cache-pushed:e2e';
const BASE = '127.0.0.1:5000/dtr-cache-base:local';
const BUILD_BASE = '127.0.0.1:5000/dtr-cache-build-base:local';
const REPO = 'team/app';
const TAG = 'v1';
const USER = 'alice';
const PASSWORD = 'alice-password';
const DOCKER_ENV = { ...process.env, DOCKER_HOST: `unix://${TEST_DOCKER_SOCK}` };
const started = Date.now();
const timings: Record<string, number> = {};

const work = mkdtempSync(join(tmpdir(), 'dtr-cache-e2e-'));
const engine = new Engine();
let imageRegistry: TestRegistry | undefined;
let upstream: TestRegistry | undefined;
let issuer: TokenIssuer | undefined;
let tf: TerraformDeploy | undefined;
let destroyed = false;
/** The digest the push gave IMAGE; the site pins the tag to it (on create the provider would pin an unpinned tag). */
let pushedDigest = '';
const figures: Record<string, unknown> = {};
let certsDir: string | undefined;
let ca: TestCa;
let clientCerts: string;
let cachePort: number;
let upstreamUrl: string;
let image: TestImage;
let nodeId: string;
const originalFetch = globalThis.fetch;

function docker(args: string[], env: NodeJS.ProcessEnv = DOCKER_ENV, input?: string, stdinFile?: string): string {
  const stdin = stdinFile ? openSync(stdinFile, 'r') : 'pipe';
  const run = spawnSync(requireTool('docker'), args, { env, encoding: 'utf8', input, stdio: [stdin, 'pipe', 'pipe'], timeout: 840_000 });
  if (typeof stdin === 'number') closeSync(stdin);
  if (run.status !== 0) throw new Error(`docker ${args.join(' ')} failed (${run.status}): ${run.stderr}${run.stdout}`);
  return run.stdout.trim();
}

/** Runs skopeo without blocking the event loop: the token issuer it talks to lives in this process. */
function skopeo(args: string[]): Promise<{ status: number | null; out: string }> {
  return new Promise((done) => {
    const child = spawn(requireTool('skopeo'), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('close', (status) => {
      clearTimeout(timer);
      done({ status, out });
    });
  });
}

/** docker CLI, asynchronously (login and pull fetch tokens from the in-process issuer). */
function dockerAsync(args: string[], env: NodeJS.ProcessEnv, input?: string): Promise<string> {
  return new Promise((done, fail) => {
    const child = spawn(requireTool('docker'), args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdin.end(input ?? '');
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
    child.on('close', (status) => {
      clearTimeout(timer);
      if (status === 0) done(out.trim());
      else fail(new Error(`docker ${args.join(' ')} failed (${status}): ${err}${out}`));
    });
  });
}

async function timed<T>(name: string, step: () => Promise<T> | T): Promise<T> {
  const t0 = Date.now();
  try {
    return await step();
  } finally {
    timings[name] = Date.now() - t0;
  }
}

function portTaken(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = netConnect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      done(true);
    });
    socket.on('error', () => done(false));
  });
}

/** The leaf certificate the cache serves right now (fingerprint), or the connection error. */
function servedCertificate(port: number): Promise<string> {
  return new Promise((done, fail) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: readFileSync(ca.caCert) }, () => {
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      socket.end();
      done(fingerprint);
    });
    socket.on('error', fail);
  });
}

/** One manifest GET on a new connection, verifying TLS with the site CA; status, or the error code. */
function pullManifest(port: number, authorization?: string): Promise<{ status: number | string; digest?: string; challenge?: string }> {
  return new Promise((done) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        servername: 'localhost',
        path: `/v2/${REPO}/manifests/${TAG}`,
        ca: readFileSync(ca.caCert),
        agent: false,
        timeout: 5000,
        headers: { accept: image.mediaType, ...(authorization ? { authorization } : {}) },
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          done({
            status: res.statusCode ?? 0,
            digest: res.headers['docker-content-digest'] as string | undefined,
            challenge: res.headers['www-authenticate'] as string | undefined,
          }),
        );
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err: NodeJS.ErrnoException) => done({ status: err.code ?? err.message }));
    req.end();
  });
}

function bearer(): string {
  return `Bearer ${(issuer as TokenIssuer).tokenFor(USER, [`repository:${REPO}:pull`])}`;
}

function site(certificate: { certificate: string; key: string }, outdir: string): string {
  return synthSite({
    datacenter: 'e2e',
    upstream: upstreamUrl,
    host: 'localhost',
    port: cachePort,
    image: IMAGE,
    // The image registry serves plain http: registry_auth names it so (the provider reads digests over https otherwise).
    registryAuth: [{ address: `http://${IMAGE.split('/')[0]}`, authDisabled: true }],
    nodes: [nodeId],
    certificateFile: certificate.certificate,
    keyFile: certificate.key,
    dtrCaFile: ca.caCert,
    outdir,
  });
}

beforeAll(async () => {
  for (const tool of ['docker', 'docker-registry', 'skopeo', 'openssl', 'terraform']) requireTool(tool);
  const info = await engine.request<{ Swarm: { LocalNodeState: string; NodeID: string } }>('GET', '/info').catch((err: Error) => {
    throw new Error(`no test dockerd on ${TEST_DOCKER_SOCK} (${err.message}): run bash scripts/test-services.sh start`);
  });
  if (info.Swarm.LocalNodeState !== 'active')
    throw new Error('the test dockerd is not a swarm manager: run bash scripts/test-services.sh start');
  nodeId = info.Swarm.NodeID;

  if (await portTaken(5000)) {
    throw new Error(
      '127.0.0.1:5000 is taken (a leftover registry?): the e2e test runs its image registry there; stop whatever listens on it',
    );
  }
  imageRegistry = await TestRegistry.start({ port: 5000 });

  await timed('image build and push', () => {
    execFileSync('bash', [join(ROOT, 'scripts/build-base-image.sh')], { env: DOCKER_ENV, stdio: 'pipe' });
    const buildArgs = ['build', '-q', '-t', IMAGE, '--build-arg', `BASE_IMAGE=${BASE}`, '--build-arg', `BUILD_IMAGE=${BUILD_BASE}`];
    const buildEnv = { ...DOCKER_ENV, DOCKER_BUILDKIT: '0' };
    if (process.env.DTR_E2E_BUILD_FROM === 'HEAD') {
      // The committed tree only (git archive), e.g. while others edit the shared checkout.
      const context = join(work, 'context.tar');
      execFileSync('git', ['-C', ROOT, 'archive', '--format=tar', '-o', context, 'HEAD']);
      docker([...buildArgs, '-'], buildEnv, undefined, context);
    } else {
      docker([...buildArgs, ROOT], buildEnv);
    }
    docker(['push', IMAGE]);
    const digests = JSON.parse(docker(['image', 'inspect', '-f', '{{json .RepoDigests}}', IMAGE])) as string[];
    const digest = digests.find((d) => d.startsWith(`${IMAGE.replace(/:[^:/]+$/, '')}@`))?.split('@')[1];
    if (!digest) throw new Error(`no digest of ${IMAGE} after the push: ${digests.join(', ')}`);
    pushedDigest = digest;
  });

  // The upstream listens on the docker bridge's gateway: the host's own address that task containers can reach.
  const bridge = await engine.request<{ IPAM: { Config: { Gateway?: string; Subnet?: string }[] } }>('GET', '/networks/bridge');
  // dockerd gives the bridge the subnet's first address when IPAM names no gateway (docker0: 172.17.0.1).
  const firstAddress = (subnet?: string) => subnet?.replace(/^(\d+\.\d+\.\d+\.)\d+\/\d+$/, (_, prefix: string) => `${prefix}1`);
  const ipv4 = bridge.IPAM.Config.find((c) => c.Subnet?.includes('.'));
  const gateway = ipv4?.Gateway ?? firstAddress(ipv4?.Subnet);
  if (!gateway || !/^[\d.]+$/.test(gateway))
    throw new Error(`the docker bridge network has no IPv4 gateway address (${JSON.stringify(bridge.IPAM)})`);
  ca = createTestCa(join(work, 'pki'));
  const upstreamCert = ca.issue('upstream', [gateway]);
  issuer = await TokenIssuer.start({ users: { [USER]: PASSWORD }, acl: [{ who: USER, repo: 'team/*', actions: ['pull'] }] });
  const upstreamPort = await freePort();
  const tls = { certificate: upstreamCert.certificate, key: upstreamCert.key };
  upstream = await TestRegistry.start({
    port: upstreamPort,
    tls,
    extra: {
      http: { addr: `${gateway}:${upstreamPort}`, tls },
      auth: { token: { realm: issuer.realm, service: issuer.service, issuer: issuer.issuer, rootcertbundle: issuer.rootCertBundle } },
    },
  });
  upstreamUrl = `https://${gateway}:${upstreamPort}`;
  // The shared push helper uses the global fetch: point it at an undici Agent that trusts the test CA, for this file only.
  const agent = new Agent({ connect: { ca: readFileSync(ca.caCert) } });
  globalThis.fetch = ((input: Parameters<typeof undiciFetch>[0], init?: Parameters<typeof undiciFetch>[1]) =>
    undiciFetch(input, { ...init, dispatcher: agent })) as unknown as typeof fetch;
  await waitFor('the TLS upstream', async () => (await fetch(`${upstreamUrl}/v2/`)).status === 401);
  // skopeo reads every *.crt of a --cert-dir as a CA (and wants a .cert for any .key): a directory with ca.crt only.
  clientCerts = join(work, 'client-certs');
  mkdirSync(clientCerts, { recursive: true });
  copyFileSync(ca.caCert, join(clientCerts, 'ca.crt'));
  image = makeImage({ layerSizes: [4096, 1_500_000] });
  const pushToken = issuer.mint('pusher', [{ type: 'repository', name: REPO, actions: ['pull', 'push'] }]);
  await pushImage(upstreamUrl, REPO, TAG, image, { authorization: `Bearer ${pushToken}` });

  cachePort = await freePort();
  certsDir = `/etc/docker/certs.d/localhost:${cachePort}`;
  mkdirSync(certsDir, { recursive: true });
  copyFileSync(ca.caCert, join(certsDir, 'ca.crt'));
}, 900_000); // a cold image build downloads the production dependencies

afterAll(async () => {
  const errors: string[] = [];
  const attempt = async (what: string, step: () => unknown) => {
    try {
      await step();
    } catch (err) {
      errors.push(`${what}: ${(err as Error).message}`);
    }
  };
  if (tf && !destroyed) await attempt('terraform destroy', () => tf!.destroy());
  await attempt('upstream', () => upstream?.stop());
  await attempt('issuer', () => issuer?.stop());
  await attempt('image registry', () => imageRegistry?.stop());
  await attempt('pulled image', () => spawnSync('docker', ['rmi', '-f', `localhost:${cachePort}/${REPO}:${TAG}`], { env: DOCKER_ENV }));
  if (certsDir) rmSync(certsDir, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
  globalThis.fetch = originalFetch;
  await engine.close();
  process.stderr.write(`e2e timings (ms): ${JSON.stringify({ ...timings, total: Date.now() - started })}\n`);
  process.stderr.write(`e2e terraform figures: ${JSON.stringify(figures, null, 1)}\n`);
  if (errors.length) throw new Error(`cleanup failed:\n${errors.join('\n')}`);
});

describe('the synthesized site on a real swarm', () => {
  it('deploys with terraform: the service runs with a passing healthcheck on the labelled node, and a second plan has no changes', async () => {
    const certificate = ca.issue('cache-1', ['localhost', '127.0.0.1']);
    const stackFile = await timed('synth', () => site(certificate, join(work, 'synth-1')));
    figures['labels before apply'] = await nodeLabels();
    tf = terraformDeploy(dirname(stackFile), { statePath: join(work, 'terraform.tfstate') });
    await timed('terraform init', () => tf!.init());
    const applied = await timed('terraform apply', () => tf!.apply());
    expect(applied.stdout).toMatch(/Apply complete! Resources: \d+ added, 0 changed, 0 destroyed\./);
    figures['apply'] = planLines(applied).filter((l) => /^(Plan|Apply)/.test(l));
    figures['labels after apply'] = await nodeLabels();
    const node = await engine.request<{ Spec: { Labels: Record<string, string> } }>('GET', `/nodes/${nodeId}`);
    expect(node.Spec.Labels['dtr.cache']).toBe('true');
    const tasks = (await serviceTasks(engine, 'dtr-cache-e2e')).filter((t) => t.DesiredState === 'running');
    expect(tasks).toHaveLength(1);
    expect(tasks[0].Status.State).toBe('running');
    expect(tasks[0].NodeID).toBe(nodeId);
    const container = await engine.request<{ State: { Health: { Status: string } }; Config: { User: string } }>(
      'GET',
      `/containers/${tasks[0].Status.ContainerStatus?.ContainerID}/json`,
    );
    // converge_config: terraform apply returned once the task ran, and the engine runs a task with a healthcheck
    // only once it passed.
    expect(container.State.Health.Status).toBe('healthy');
    expect(container.Config.User).toBe('10001:10001');
    // The tag, pinned at plan time to the digest the registry serves: what the engine runs, and what state holds.
    const service = await engine.request<{ Spec: { TaskTemplate: { ContainerSpec: { Image: string } } } }>(
      'GET',
      '/services/dtr-cache-e2e',
    );
    figures['service image'] = service.Spec.TaskTemplate.ContainerSpec.Image;
    expect(service.Spec.TaskTemplate.ContainerSpec.Image).toBe(`${IMAGE}@${pushedDigest}`);
    expect((await tf.outputs()).Site_cache_url).toBe(`https://localhost:${cachePort}`);

    const plan = await timed('terraform plan after apply', () => tf!.plan());
    figures['plan after apply'] = planLines(plan);
    expect(planLines(plan)).toEqual(['No changes. Your infrastructure matches the configuration.']);
    expect(plan.status).toBe(0);
  });

  it('serves docker pull and skopeo copy over TLS with a token, with the upstream digests', async () => {
    const upstreamDigest = await skopeo([
      'inspect',
      '--format',
      '{{.Digest}}',
      '--cert-dir',
      clientCerts,
      '--creds',
      `${USER}:${PASSWORD}`,
      `docker://${upstreamUrl.replace('https://', '')}/${REPO}:${TAG}`,
    ]);
    expect(upstreamDigest).toEqual({ status: 0, out: `${image.digest}\n` });

    const layout = join(work, 'oci-layout');
    const copy = await timed('skopeo copy', () =>
      skopeo([
        'copy',
        '--src-cert-dir',
        clientCerts,
        '--src-creds',
        `${USER}:${PASSWORD}`,
        '--preserve-digests',
        `docker://localhost:${cachePort}/${REPO}:${TAG}`,
        `oci:${layout}:${TAG}`,
      ]),
    );
    expect(copy.status).toBe(0);
    const blobs = readdirSync(join(layout, 'blobs', 'sha256')).map((h) => `sha256:${h}`);
    for (const blob of image.blobs) expect(blobs).toContain(blob.digest);
    expect(blobs).toContain(image.digest);

    const dockerConfig = join(work, 'docker-config');
    mkdirSync(dockerConfig, { recursive: true });
    const clientEnv = { ...DOCKER_ENV, DOCKER_CONFIG: dockerConfig };
    await dockerAsync(['login', '-u', USER, '--password-stdin', `localhost:${cachePort}`], clientEnv, PASSWORD);
    await timed('docker pull', () => dockerAsync(['pull', '-q', `localhost:${cachePort}/${REPO}:${TAG}`], clientEnv));
    const repoDigests = JSON.parse(
      docker(['image', 'inspect', '-f', '{{json .RepoDigests}}', `localhost:${cachePort}/${REPO}:${TAG}`]),
    ) as string[];
    expect(repoDigests).toContain(`localhost:${cachePort}/${REPO}@${image.digest}`);
  });

  it('refuses a client without a token with 401 and the upstream challenge', async () => {
    const anonymous = await pullManifest(cachePort);
    expect(anonymous.status).toBe(401);
    expect(anonymous.challenge).toContain(issuer!.realm);
    const withToken = await pullManifest(cachePort, bearer());
    expect(withToken).toMatchObject({ status: 200, digest: image.digest });
    const noCreds = await skopeo(['inspect', '--cert-dir', clientCerts, '--no-creds', `docker://localhost:${cachePort}/${REPO}:${TAG}`]);
    expect(noCreds.status).not.toBe(0);
    expect(noCreds.out).toMatch(/unauthorized|401|authentication required/i);
  });

  it('rotates the certificate by re-applying, and measures what a pulling client sees', async () => {
    const before = await servedCertificate(cachePort);
    const rotated = ca.issue('cache-2', ['localhost', '127.0.0.1']);
    const stackFile = site(rotated, join(work, 'synth-2'));
    const samples: { at: number; status: number | string }[] = [];
    let applying = true;
    const client = (async () => {
      const deadline = Date.now() + 300_000;
      while (applying && Date.now() < deadline) {
        const r = await pullManifest(cachePort, bearer());
        samples.push({ at: Date.now(), status: r.status });
        await sleep(200);
      }
    })();
    await tf!.switchTo(dirname(stackFile));
    const result = await timed('rotate (terraform apply)', () =>
      tf!.apply().finally(() => {
        applying = false;
      }),
    );
    await client;
    const lines = planLines(result);
    figures['rotation apply'] = lines.filter((l) => /^\s*# (docker|terraform)_|^(Plan|Apply)/.test(l));
    // The certificate and key secrets are replaced (new content, new name; created before the old are destroyed),
    // the service is updated in place to mount the new ones.
    expect(
      lines
        .filter((l) => /# docker_secret\..* must be replaced/.test(l))
        .map((l) => /Tls_(Certificate|Key)/.exec(l)?.[1])
        .sort(),
    ).toEqual(['Certificate', 'Key']);
    expect(lines.filter((l) => /# docker_service\..* will be updated in-place/.test(l))).toHaveLength(1);
    expect(result.stdout).toMatch(/Apply complete! Resources: 2 added, 1 changed, 2 destroyed\./);
    const after = await servedCertificate(cachePort);
    expect(after).not.toBe(before);
    expect(await pullManifest(cachePort, bearer())).toMatchObject({ status: 200, digest: image.digest });

    // Downtime: the longest run of failed pulls. With host-mode publishing each node has one replica on a fixed host
    // port, so the update is stop-first: the new task cannot bind the port until the old one is gone.
    let longest = 0;
    let runStart: number | undefined;
    for (const s of samples) {
      if (s.status !== 200) runStart ??= s.at;
      else if (runStart !== undefined) {
        longest = Math.max(longest, s.at - runStart);
        runStart = undefined;
      }
    }
    const failed = samples.filter((s) => s.status !== 200);
    timings['rotation downtime (longest failing run)'] = longest;
    process.stderr.write(
      `rotation: ${samples.length} pulls during re-apply, ${failed.length} failed (${[...new Set(failed.map((f) => f.status))].join(', ')}), longest failing run ${longest} ms\n`,
    );
    expect(samples.length).toBeGreaterThan(10);

    const plan = await timed('terraform plan after rotation', () => tf!.plan());
    figures['plan after rotation'] = planLines(plan);
    expect(planLines(plan)).toEqual(['No changes. Your infrastructure matches the configuration.']);
    expect(plan.status).toBe(0);
  });

  it('destroys with terraform: no service, secret, config, network, volume or dtr.cache label is left', async () => {
    const run = await timed('terraform destroy', () => tf!.destroy());
    destroyed = true;
    figures['destroy'] = planLines(run).filter((l) => /^(Plan|Destroy)/.test(l));
    figures['labels after destroy'] = await nodeLabels();
    const named = (list: { Spec?: { Name: string }; Name?: string }[]) =>
      list.map((x) => x.Spec?.Name ?? x.Name ?? '').filter((name) => name.startsWith('dtr-cache-e2e'));
    expect(named(await engine.request('GET', '/services'))).toEqual([]);
    expect(named(await engine.request('GET', '/secrets'))).toEqual([]);
    expect(named(await engine.request('GET', '/configs'))).toEqual([]);
    expect(named(await engine.request('GET', '/networks'))).toEqual([]);
    expect(named((await engine.request<{ Volumes: { Name: string }[] | null }>('GET', '/volumes')).Volumes ?? [])).toEqual([]);
    const labels = await nodeLabels();
    // This site's key and its owner label (haproxy-service, which may run alongside, labels with its own key).
    expect(Object.values(labels).filter((l) => 'dtr.cache' in l || 'dtr.cache.owner' in l)).toEqual([]);
  });
});

/** Every node's labels, by node ID. */
async function nodeLabels(): Promise<Record<string, Record<string, string>>> {
  const nodes = await engine.request<{ ID: string; Spec: { Labels?: Record<string, string> } }[]>('GET', '/nodes');
  return Object.fromEntries(nodes.map((n) => [n.ID, n.Spec.Labels ?? {}]));
}
