/**
 * Snapshots of every example's synthesized stacks, with fixed test certificates and a fixed clock so the content is
 * deterministic; the repository's path is replaced by <repo> so the snapshots hold on any checkout.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { App, TerraformStack, Testing } from 'cdktf';
import { buildThreeDatacenters } from '../../../examples/three-datacenters/main';
import { buildHaNfs } from '../../../examples/ha-nfs/main';
import { buildHaS3 } from '../../../examples/ha-s3/main';
import { buildSingleReplica } from '../../../examples/single-replica/main';
import { ExampleOptions } from '../../../examples/support';
import { loadConfig } from '../../../lib/config';
import { DtrCacheSite } from '../../../lib/constructs';
import { fixtureTls, NOW, validationErrors } from '../constructs/helpers';

const REPO = join(__dirname, '..', '..', '..');
const options: ExampleOptions = { outdir: join(REPO, '.test-run', 'examples-snapshot'), tls: () => fixtureTls(), now: NOW };

// App creates its outdir (not its parents); nothing is synthesized to disk here, so remove it afterwards.
mkdirSync(join(REPO, '.test-run'), { recursive: true });
afterAll(() => rmSync(options.outdir ?? '', { recursive: true, force: true }));

const stacksOf = (app: App): TerraformStack[] => app.node.children.filter((c): c is TerraformStack => c instanceof TerraformStack);
const normalized = (stack: TerraformStack): unknown => JSON.parse(Testing.synth(stack).split(REPO).join('<repo>'));

describe.each([
  ['three-datacenters', buildThreeDatacenters, ['dtr-cache-asia', 'dtr-cache-europe']],
  ['ha-nfs', buildHaNfs, ['dtr-cache-ha-nfs']],
  ['ha-s3', buildHaS3, ['dtr-cache-ha-s3']],
  ['single-replica', buildSingleReplica, ['dtr-cache-single']],
] as const)('example %s', (_name, build, stackNames) => {
  const app = build(options);

  it('has one stack per datacenter and passes validation', () => {
    expect(stacksOf(app).map((s) => s.node.id)).toEqual([...stackNames]);
    expect(validationErrors(app)).toEqual([]);
  });

  it('synthesizes the same stacks as before (snapshot)', () => {
    for (const stack of stacksOf(app)) expect(normalized(stack)).toMatchSnapshot(stack.node.id);
  });

  it('synthesizes a config.yml the server accepts (placeholders of secret values filled, as Terraform splices them)', () => {
    const sites = app.node.findAll().filter((c): c is DtrCacheSite => c instanceof DtrCacheSite);
    expect(sites).toHaveLength(stackNames.length);
    for (const site of sites) {
      const text = site.config.text.replace(/DTR_CACHE_SECRET_\w+/g, JSON.stringify('spliced-secret'));
      const result = loadConfig(text);
      expect(result.ok ? [] : result.errors).toEqual([]);
      if (site.config.mount.kind === 'config') {
        const synthesized = JSON.parse(Testing.synth(TerraformStack.of(site))).resource.docker_config as Record<string, { data: string }>;
        expect(Object.values(synthesized).map((c) => Buffer.from(c.data, 'base64').toString())).toEqual([site.config.text]);
      }
    }
  });
});

it('the seed scenario: Asia and Europe fetch from the US DTR', () => {
  const app = buildThreeDatacenters(options);
  for (const stack of stacksOf(app)) {
    const summary = JSON.parse(
      (JSON.parse(Testing.synth(stack)).output as Record<string, { value: string }>)[`${stack.node.id.replace('dtr-cache-', '')}_summary`]
        .value,
    );
    expect(summary.upstreams).toEqual(['https://dtr.us.example.com']);
  }
});
