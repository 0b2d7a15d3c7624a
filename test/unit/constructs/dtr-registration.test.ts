import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { DtrCacheSite, StorageBackend } from '../../../lib/constructs';
import { FakeDtrApi } from '../../fixtures/dtr-api';
import { fixtureTls, newStack, NOW, resourcesOf, synth, TfJson } from './helpers';

const REPO = join(__dirname, '..', '..', '..');
// The deploy machine's CLI; here the repository's own, run from source.
const CLI = `${process.execPath} -r ts-node/register/transpile-only ${join(REPO, 'bin', 'dtr-cache.ts')}`;

function siteWithRegistration(dtr: string, caFile?: string): TfJson {
  const stack = newStack('dtr-cache-asia', false);
  new DtrCacheSite(stack, 'asia', {
    datacenter: 'asia',
    upstreams: [dtr],
    host: 'cache.asia.example.com',
    nodes: ['n1'],
    storage: StorageBackend.localFilesystem(),
    tls: fixtureTls(),
    image: { reference: '127.0.0.1:5000/dtr-cache:0.1.0' },
    now: NOW,
    registration: { name: 'region-asia', caFile, cli: CLI },
  });
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
    const run = async (command: string): Promise<void> => {
      await promisify(execFile)('/bin/sh', ['-c', command], {
        cwd: REPO,
        env: { ...process.env, DTR_USERNAME: 'admin', DTR_PASSWORD: 'admin-secret' },
        timeout: 60_000,
      });
    };

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
