import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdirSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { App, TerraformStack } from 'cdktf';
import { DtrCacheSite, DtrCacheSiteProps, StorageBackend } from '../../../lib/constructs';
import { stackDirectory } from '../../../lib/constructs/base/deploy-path';
import { FakeDtrApi } from '../../fixtures/dtr-api';
import { fixtureTls, newStack, NOW, resourcesOf, synth, TfJson } from './helpers';

const REPO = join(__dirname, '..', '..', '..');
// The deploy machine's CLI; here the repository's own, run from source.
const CLI = `${process.execPath} -r ts-node/register/transpile-only ${join(REPO, 'bin', 'dtr-cache.ts')}`;

function siteProps(dtr: string, caFile?: string): DtrCacheSiteProps {
  return {
    datacenter: 'asia',
    upstreams: [dtr],
    host: 'cache.asia.example.com',
    nodes: ['n1'],
    storage: StorageBackend.localFilesystem(),
    tls: fixtureTls(),
    image: { reference: '127.0.0.1:5000/dtr-cache:0.1.0' },
    now: NOW,
    registration: { name: 'region-asia', caFile, cli: CLI },
  };
}

function siteWithRegistration(dtr: string, caFile?: string): TfJson {
  const stack = newStack('dtr-cache-asia', false);
  new DtrCacheSite(stack, 'asia', siteProps(dtr, caFile));
  return synth(stack);
}

describe('DtrRegistration (DtrCacheSite.registration)', () => {
  it('registers after the service is up and removes on destroy, with no credential in the JSON', () => {
    const json = siteWithRegistration('https://dtr.us.example.com');
    const registration = resourcesOf(json, 'terraform_data').find((r) => r.input?.name === 'region-asia');
    expect(registration?.input).toEqual({ dtr: 'https://dtr.us.example.com', name: 'region-asia', host: 'https://cache.asia.example.com' });
    expect(registration?.depends_on).toEqual([expect.stringMatching(/^docker_service\./)]);
    const [create, destroy] = registration?.provisioner.map((p: TfJson) => p['local-exec']);
    expect(create.command).toBe(
      `${CLI} register --dtr https://dtr.us.example.com --name region-asia --host https://cache.asia.example.com`,
    );
    expect(destroy).toMatchObject({
      when: 'destroy',
      command: `${CLI} register --dtr https://dtr.us.example.com --name region-asia --remove`,
    });
    expect(JSON.stringify(json)).not.toMatch(/password|DTR_PASSWORD=/i);
  });

  describe('the synthesized commands against the DTR API fixture', () => {
    let dtr: FakeDtrApi;
    beforeAll(async () => {
      dtr = await FakeDtrApi.start({ admin: { password: 'admin-secret', admin: true } }, { tls: true });
    });
    afterAll(() => dtr.stop());

    // As Terraform runs a local-exec: /bin/sh -c with the deploy environment, where the credentials live. Async, so
    // the fixture in this process keeps answering.
    const run = async (command: string, cwd = REPO): Promise<void> => {
      await promisify(execFile)('/bin/sh', ['-c', command], {
        cwd,
        env: { ...process.env, DTR_USERNAME: 'admin', DTR_PASSWORD: 'admin-secret' },
        timeout: 60_000,
      });
    };

    it("by default runs this package's own CLI by its path from the stack directory, never a package fetched by name", async () => {
      // Synthesized where cdktf puts stacks inside the project, so the stack directory is where Terraform runs it.
      const outdir = join(REPO, '.test-run', 'registration-cli');
      mkdirSync(outdir, { recursive: true });
      const stack = new TerraformStack(new App({ outdir }), 'dtr-cache-asia');
      new DtrCacheSite(stack, 'asia', { ...siteProps(dtr.url, dtr.caFile), registration: { name: 'region-asia', caFile: dtr.caFile } });
      const registration = resourcesOf(synth(stack), 'terraform_data').find((r) => r.input?.name === 'region-asia');
      const [create, destroy] = registration?.provisioner.map((p: TfJson) => p['local-exec'].command as string);
      const entry = relative(stackDirectory(stack), join(REPO, 'bin', 'dtr-cache.ts'));
      expect(create).toMatch(
        new RegExp(`^node -r ts-node/register/transpile-only '\\$\\{join\\("/", \\[path\\.module, "${entry}"\\]\\)\\}' register `),
      );
      expect(create + destroy).not.toContain('npx');
      // As Terraform runs it: the expression evaluated (path.module is "."), in the stack directory.
      const cwd = stackDirectory(stack);
      mkdirSync(cwd, { recursive: true });
      const asTerraform = (command: string) => command.replace(/\$\{join\("\/", \[path\.module, "([^"]+)"\]\)\}/g, './$1');
      try {
        await run(asTerraform(create), cwd);
        expect(dtr.caches.map((c) => c.name)).toEqual(['region-asia']);
        await run(asTerraform(destroy), cwd);
        expect(dtr.caches).toEqual([]);
      } finally {
        rmSync(outdir, { recursive: true, force: true });
      }
    });

    it('registers once even when run twice, and the destroy step removes it', async () => {
      const json = siteWithRegistration(dtr.url, dtr.caFile);
      const registration = resourcesOf(json, 'terraform_data').find((r) => r.input?.name === 'region-asia');
      const [create, destroy] = registration?.provisioner.map((p: TfJson) => p['local-exec']);
      await run(create.command);
      await run(create.command);
      expect(dtr.caches.map((c) => [c.name, c.host])).toEqual([['region-asia', 'https://cache.asia.example.com']]);
      await run(destroy.command);
      expect(dtr.caches).toEqual([]);
    });
  });
});
