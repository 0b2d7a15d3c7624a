/**
 * `terraform init`, `validate` and `plan` (the real binary, with the kreuzwerker/docker 3.6.2 stand-in) on stacks the
 * constructs used to get wrong: two sites in one stack on two swarm connections (a second default docker provider
 * before), and a site whose host, upstream, nodes and image are Terraform variables (rejected before). Both plan
 * against the shared test engine (the second connection is a symlink to its socket), which plan only reads.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { App, TerraformStack, TerraformVariable } from 'cdktf';
import { DtrCacheSite, DtrCacheSiteProps, StorageBackend, SwarmConnection } from '../../lib/constructs';
import { fixtureTls, NOW } from '../unit/constructs/helpers';
import { planLines, terraformDeploy } from '../support/terraform';
import { TEST_DOCKER_SOCK } from '../terraform-provider-docker/engine';

const REPO = join(__dirname, '..', '..');
mkdirSync(join(REPO, '.test-run'), { recursive: true });
const work = mkdtempSync(join(REPO, '.test-run', 'plan-two-sites-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const base = (datacenter: string): DtrCacheSiteProps => ({
  datacenter,
  upstreams: ['https://dtr.us.example.com'],
  host: `cache.${datacenter}.example.com`,
  nodes: [`cache-${datacenter}-1`, `cache-${datacenter}-2`],
  storage: StorageBackend.nfs({ server: `nfs.${datacenter}.example.com` }),
  tls: fixtureTls(),
  // Plans only, with no registry: the tag is not resolved to a digest.
  image: { reference: '127.0.0.1:5000/dtr-cache:e2e', resolveDigest: false },
  now: NOW,
});

/** Synthesizes both stacks; returns their directories. */
function synthesize(): { twoSites: string; variables: string } {
  // Another path to the same engine: a second connection, so the second site gets its own (aliased) provider.
  const otherSocket = join(work, 'europe.sock');
  symlinkSync(TEST_DOCKER_SOCK, otherSocket);
  const app = new App({ outdir: join(work, 'cdktf.out') });
  const two = new TerraformStack(app, 'two-sites');
  new DtrCacheSite(two, 'asia', { ...base('asia'), connection: SwarmConnection.localSocket(TEST_DOCKER_SOCK) });
  new DtrCacheSite(two, 'europe', { ...base('europe'), connection: SwarmConnection.localSocket(otherSocket) });

  const vars = new TerraformStack(app, 'variables');
  const v = (name: string, type = 'string') => new TerraformVariable(vars, name, { type });
  new DtrCacheSite(vars, 'asia', {
    ...base('asia'),
    host: v('cache_host').stringValue,
    upstreams: [v('dtr_url').stringValue],
    nodes: v('cache_nodes', 'list(string)').listValue,
    replicas: 2,
    image: { reference: v('cache_image').stringValue, resolveDigest: false },
    connection: SwarmConnection.localSocket(TEST_DOCKER_SOCK),
  });
  app.synth();
  return { twoSites: join(work, 'cdktf.out', 'stacks', 'two-sites'), variables: join(work, 'cdktf.out', 'stacks', 'variables') };
}

describe('terraform validate and plan', () => {
  let dirs = { twoSites: '', variables: '' };
  beforeAll(() => {
    dirs = synthesize();
  });

  it('two sites in one stack: one default and one aliased provider; validates and plans', async () => {
    const tf = terraformDeploy(dirs.twoSites, { statePath: join(work, 'two-sites.tfstate') });
    await tf.init();
    const validate = await tf.must(['validate', '-no-color']);
    expect(validate.stdout).toContain('Success! The configuration is valid.');
    const plan = await tf.plan();
    expect(plan.status).toBe(2);
    const lines = planLines(plan);
    // Per site: config, 2 secrets, service, label owner and label step, storage preflight and volume removal, and the
    // replicas' overlay network.
    expect(lines).toContain('Plan: 18 to add, 0 to change, 0 to destroy.');
    expect(lines.filter((l) => /# docker_service\./.test(l))).toHaveLength(2);
    // The europe site's resources use its aliased provider, which terraform validate accepted.
    const json = JSON.parse(readFileSync(join(dirs.twoSites, 'cdk.tf.json'), 'utf8'));
    expect(json.provider.docker.map((p: { alias?: string }) => p.alias)).toEqual([undefined, 'europe']);
    expect(Object.values(json.resource.docker_service).map((r) => (r as { provider?: string }).provider)).toEqual([
      undefined,
      'docker.europe',
    ]);
    process.stdout.write(
      `two-sites: validate ${validate.ms} ms, plan ${plan.ms} ms\n${lines.filter((l) => /^\s*#|^Plan:/.test(l)).join('\n')}\n`,
    );
  }, 300_000);

  it('variables for host, upstream, nodes and image: validates and plans with -var values', async () => {
    const tf = terraformDeploy(dirs.variables, { statePath: join(work, 'variables.tfstate') });
    await tf.init();
    expect((await tf.must(['validate', '-no-color'])).stdout).toContain('Success! The configuration is valid.');
    const plan = await tf.run([
      'plan',
      '-input=false',
      '-no-color',
      '-detailed-exitcode',
      '-var=cache_host=cache.asia.example.com',
      '-var=dtr_url=https://dtr.us.example.com',
      '-var=cache_nodes=["cache-asia-1","cache-asia-2"]',
      '-var=cache_image=127.0.0.1:5000/dtr-cache:e2e',
    ]);
    if (plan.status !== 2) throw new Error(`plan exited ${plan.status}:\n${plan.stderr}${plan.stdout}`);
    expect(plan.stdout).toMatch(/\+ name\s+= "dtr-cache-asia"/);
    expect(plan.stdout).toMatch(/image\s+= "127\.0\.0\.1:5000\/dtr-cache:e2e"/);
    expect(plan.stdout).toContain('"cache-asia-1 cache-asia-2"');
    const lines = planLines(plan);
    process.stdout.write(`variables: plan ${plan.ms} ms\n${lines.filter((l) => /^\s*#|^Plan:/.test(l)).join('\n')}\n`);
  }, 300_000);
});
