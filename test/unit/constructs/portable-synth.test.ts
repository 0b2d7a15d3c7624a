/**
 * A stack synthesized in one checkout (CI) applies from another: cdk.tf.json holds no absolute path of the
 * synthesizing machine. Files Terraform reads at apply (certificates, keys, a client bundle) and the local state are
 * addressed relative to the directory Terraform runs in; `terraform console` run in the other checkout reads them there.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { App, TerraformStack } from 'cdktf';
import { DtrCacheSite, SecretSource, SwarmConnection } from '../../../lib/constructs';
import { requireTool } from '../../../harness/tools';
import { asiaSiteProps, fixture, TfJson } from './helpers';

const root = mkdtempSync(join(tmpdir(), 'dtr-cache-portable-'));
const ci = join(root, 'ci-checkout');
const ops = join(root, 'ops-checkout');
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Synthesizes the asia site, with certificates and a client bundle of the checkout, as `cdktf synth` run there does. */
function synthIn(checkout: string): TfJson {
  mkdirSync(join(checkout, 'certs'), { recursive: true });
  mkdirSync(join(checkout, 'bundle'), { recursive: true });
  for (const f of ['cache.cert.pem', 'cache.key.pem']) copyFileSync(fixture(f), join(checkout, 'certs', f));
  for (const f of ['ca.pem', 'cert.pem', 'key.pem']) writeFileSync(join(checkout, 'bundle', f), `${f} of the bundle\n`);
  const cwd = process.cwd();
  process.chdir(checkout);
  try {
    const app = new App({ outdir: 'cdktf.out' });
    const stack = new TerraformStack(app, 'dtr-cache-asia');
    new DtrCacheSite(stack, 'asia', {
      ...asiaSiteProps(),
      tls: { certificate: SecretSource.fromFile('certs/cache.cert.pem'), key: SecretSource.fromFile('certs/cache.key.pem') },
      connection: SwarmConnection.clientBundle({ directory: 'bundle', host: 'tcp://ucp.asia.example.com:443' }),
    });
    app.synth();
  } finally {
    process.chdir(cwd);
  }
  return JSON.parse(readFileSync(join(checkout, 'cdktf.out', 'stacks', 'dtr-cache-asia', 'cdk.tf.json'), 'utf8'));
}

/** Every path.module-relative path in the JSON. */
const relativePaths = (json: TfJson): string[] => [
  ...new Set([...JSON.stringify(json).matchAll(/path\.module, \\"([^"\\]+)\\"/g)].map((m) => m[1])),
];

describe('portable synth', () => {
  let json: TfJson = {};
  beforeAll(() => {
    json = synthIn(ci);
    // The checkout moves (or CI hands the synthesized directory to another machine): same layout, another root.
    cpSync(ci, ops, { recursive: true });
    rmSync(ci, { recursive: true, force: true });
  });

  it('holds no absolute path of the synthesizing machine', () => {
    const text = JSON.stringify(json);
    expect(text).not.toContain(ci);
    expect(text).not.toContain(root);
    expect(text).not.toContain(process.cwd());
    expect(json.terraform.backend).toEqual({ local: { path: '../../../terraform.dtr-cache-asia.tfstate' } });
    expect(relativePaths(json).sort()).toEqual([
      '../../../bundle',
      '../../../bundle/ca.pem',
      '../../../bundle/cert.pem',
      '../../../bundle/key.pem',
      '../../../certs/cache.cert.pem',
      '../../../certs/cache.key.pem',
    ]);
  });

  it('names each secret from the bytes Terraform reads at apply, the same file its data is read from', () => {
    for (const secret of Object.values(json.resource.docker_secret as Record<string, TfJson>)) {
      const data = /^\$\{filebase64\((.+)\)\}$/.exec(secret.data)?.[1];
      expect(data).toBeDefined();
      expect(secret.name).toContain(`\${substr(filesha256(${data}), 0, 12)}`);
    }
  });

  it('terraform, run where the other checkout keeps the stack, reads the files there', () => {
    requireTool('terraform');
    // A directory beside the stack's: path.module resolves the same, and no provider is needed for console.
    const probe = join(ops, 'cdktf.out', 'stacks', 'probe');
    mkdirSync(probe);
    writeFileSync(join(probe, 'main.tf.json'), '{}');
    for (const rel of relativePaths(json)) expect(existsSync(resolve(probe, rel))).toBe(true);
    const cert = Object.values(json.resource.docker_secret as Record<string, TfJson>).find((s) => /cache\.cert/.test(s.name)) as TfJson;
    const hash = /filesha256\((.+)\), 0, 12\)/.exec(cert.name)?.[1];
    const out = execFileSync('terraform', [`-chdir=${probe}`, 'console'], {
      input: `filesha256(${hash})`,
      encoding: 'utf8',
      env: { ...process.env, CHECKPOINT_DISABLE: '1' },
      timeout: 30_000,
    }).trim();
    expect(JSON.parse(out)).toBe(
      createHash('sha256')
        .update(readFileSync(join(ops, 'certs', 'cache.cert.pem')))
        .digest('hex'),
    );
  });
});
