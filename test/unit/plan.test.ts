/**
 * `dtr-cache plan` on synthesized example apps: the per-datacenter summary, the diff against a base synth, and the
 * synth-from-an-app-file path that `npm start` uses.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { parse } from 'yaml';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { command } from '../../bin/commands/plan';
import { COMMANDS } from '../../bin/commands/index';
import { runCommand } from '../../bin/commands/dispatch';
import { UsageError } from '../../lib/cli/errors';
import { buildThreeDatacenters } from '../../examples/three-datacenters/main';
import { buildSingleReplica } from '../../examples/single-replica/main';
import { fixture, fixtureTls, NOW } from './constructs/helpers';

const REPO = join(__dirname, '..', '..');
const certExpiry = new Date(new X509Certificate(readFileSync(fixture('cache.cert.pem'))).validTo).toISOString().slice(0, 10);

/** Runs the command, returning its exit code and what it wrote to stdout and stderr. */
async function plan(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const o = jest.spyOn(process.stdout, 'write').mockImplementation((chunk) => (out.push(String(chunk)), true));
  const e = jest.spyOn(process.stderr, 'write').mockImplementation((chunk) => (err.push(String(chunk)), true));
  try {
    const code = await command.run(args);
    return { code, stdout: out.join(''), stderr: err.join('') };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

describe('dtr-cache plan', () => {
  let work = '';
  beforeAll(() => {
    mkdirSync(join(REPO, '.test-run'), { recursive: true });
    work = mkdtempSync(join(REPO, '.test-run', 'plan-'));
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('summarizes each datacenter stack of a synth output directory', async () => {
    const dir = join(work, 'three');
    buildThreeDatacenters({ outdir: dir, tls: () => fixtureTls(), now: NOW }).synth();
    const { code, stdout } = await plan(['--app', dir]);
    expect(code).toBe(0);
    expect(stdout).toContain('## Stack `dtr-cache-asia`');
    expect(stdout).toContain('## Stack `dtr-cache-europe`');
    const asia = stdout.slice(stdout.indexOf('### asia'), stdout.indexOf('## Stack `dtr-cache-europe`'));
    expect(asia.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| |'))).toEqual([
      '| Cache URL | https://cache.asia.example.com:8443 |',
      '| Upstreams | https://dtr.us.example.com |',
      '| Replicas | 2 |',
      '| Nodes | cache-asia-1, cache-asia-2 |',
      '| Storage | nfs |',
      '| NFS export | `/dtr-cache *(rw,root_squash,no_wdelay)` |',
      '| Port | 8443/tcp (routing mesh) |',
      '| Image | `registry.example.com/replace-me/dtr-cache:0.1.0` |',
      '| Swarm | client bundle bundles/asia → tcp://ucp.asia.example.com:443 |',
      `| Certificate | O=dtr-cache unit-test fixture, CN=cache.example.com, expires ${certExpiry} (self-signed) |`,
    ]);
    expect(asia).toContain(
      '**Warnings**\n- StorageBackend.nfs: clients: "*" exports /dtr-cache to any host that reaches nfs.asia.example.com; list the cache nodes\' addresses or CIDRs in clients\n',
    );
    expect(stdout).toContain('| Storage | filesystem (container-local) |');
    expect(stdout.match(/\| NFS export \|/g)).toHaveLength(1);
  });

  it('lists validation warnings of a stack (certificate expiring soon)', async () => {
    const dir = join(work, 'expiring');
    const soon = new Date(new Date(`${certExpiry}T00:00:00Z`).getTime() - 5 * 86_400_000);
    buildSingleReplica({ outdir: dir, tls: () => fixtureTls(), now: soon }).synth();
    const { stdout } = await plan(['--app', dir]);
    expect(stdout).toMatch(/\*\*Warnings\*\*\n(- .*\n)*- CacheTls: certificate: expires on \S+, in [56] days; renew it soon\n/);
  });

  it('with --base, prints what changed between two synth outputs', async () => {
    const base = join(work, 'base');
    const head = join(work, 'head');
    buildSingleReplica({ outdir: base, tls: () => fixtureTls(), now: NOW }).synth();
    buildSingleReplica({ outdir: head, tls: () => fixtureTls(), now: NOW, image: '127.0.0.1:5000/dtr-cache:0.2.0' }).synth();
    const { code, stdout } = await plan(['--app', head, '--base', base]);
    expect(code).toBe(0);
    const diff = stdout.slice(stdout.indexOf('# Changes against base'));
    expect(diff.split('\n').filter((l) => l.startsWith('- '))).toEqual([
      '- single: Image: `127.0.0.1:5000/dtr-cache:0.1.0` → `127.0.0.1:5000/dtr-cache:0.2.0`',
      expect.stringMatching(/^- `docker_service\.site_Service_\w+` changed$/),
    ]);
    const same = await plan(['--app', base, '--base', base]);
    expect(same.stdout).toContain('# Changes against base\n\nNo changes.');
  });

  it('synthesizes an app file (TEST ONLY certificates when none are given) into --out, as npm start does', async () => {
    const out = join(work, 'from-file');
    const { code, stdout, stderr } = await plan(['--app', join(REPO, 'examples', 'single-replica', 'main.ts'), '--out', out]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toContain('### single (TEST ONLY certificates)');
    expect(stdout).toContain('O=dtr-cache TEST ONLY, CN=cache.example.com');
    expect(stdout).toContain('**TEST ONLY, self-signed**');
    expect(readFileSync(join(out, 'stacks', 'dtr-cache-single', 'cdk.tf.json'), 'utf8')).toContain('docker_service');
    // What it wrote and what to do next.
    expect(stdout).toContain(`## Next\n\nWrote ${join(out, 'stacks', 'dtr-cache-single', 'cdk.tf.json')}.\n`);
    expect(stdout).toContain('`cdktf deploy dtr-cache-single`');
  });

  it('dtr-cache --version prints the package version', async () => {
    const out: string[] = [];
    const o = jest.spyOn(process.stdout, 'write').mockImplementation((chunk) => (out.push(String(chunk)), true));
    try {
      expect(await runCommand(['--version'], COMMANDS)).toBe(0);
    } finally {
      o.mockRestore();
    }
    expect(out.join('')).toBe(`${JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).version}\n`);
  });

  it('reports a failing synth with its validation messages and no stack frames, exit 1', async () => {
    const app = join(work, 'bad.ts');
    writeFileSync(
      app,
      `import { App, TerraformStack } from 'cdktf';
import { DtrCacheSite, SecretSource } from ${JSON.stringify(join(REPO, 'lib', 'constructs'))};
const app = new App();
new DtrCacheSite(new TerraformStack(app, 'bad'), 'bad', {
  datacenter: 'bad', upstreams: ['http://dtr.example.com'], host: 'cache.example.com', nodes: ['n1'], replicas: 2,
  tls: { certificate: SecretSource.fromFile(${JSON.stringify(fixture('cache.cert.pem'))}), key: SecretSource.fromFile(${JSON.stringify(fixture('cache.key.pem'))}) },
  image: { reference: '127.0.0.1:5000/dtr-cache:0.1.0' },
});
app.synth();
`,
    );
    const { code, stderr } = await plan(['--app', app, '--out', join(work, 'bad-out')]);
    expect(code).toBe(1);
    expect(stderr).toContain('[bad/bad] DtrCacheSite: upstreams.0: must be an https:// URL');
    expect(stderr).toContain('[bad/bad] DtrCacheSite: replicas: 2 replicas need shared storage');
    expect(stderr).not.toMatch(/^\s+at /m);
  });

  it('usage errors: a missing --app, and a --base that is not a synth output', async () => {
    await expect(plan(['--app', join(work, 'nope')])).rejects.toThrow(UsageError);
    await expect(plan(['--app', join(work, 'three'), '--base', work])).rejects.toThrow(
      `--base ${work} is not a cdktf synth output directory (no manifest.json)`,
    );
  });

  it('the example CI workflow runs this plan command on an app that exists, against the base synth', () => {
    const workflow = parse(readFileSync(join(REPO, 'examples', 'ci', 'plan-preview.yml'), 'utf8')) as {
      on: Record<string, unknown>;
      env: { APP: string };
      jobs: { plan: { steps: { run?: string; uses?: string }[] } };
    };
    expect(Object.keys(workflow.on)).toEqual(['pull_request']);
    expect(existsSync(join(REPO, workflow.env.APP))).toBe(true);
    const runs = workflow.jobs.plan.steps.map((s) => s.run ?? '').join('\n');
    expect(runs).toContain('node dist/bin/dtr-cache.js plan --app "$APP" --out ../head.out $base_flag > ../plan.md');
    expect(runs).toContain('base_flag="--base ../base.out"');
    expect(workflow.jobs.plan.steps.some((s) => s.uses?.startsWith('actions/github-script'))).toBe(true);
  });
});
