/**
 * The `docker_registry_image` data source of the docker provider stand-in, under the real `terraform` binary, against
 * real registries (Debian's docker-registry, distribution 2.8): anonymous over http (named `http://` in the provider's
 * registry_auth, as kreuzwerker/docker 3.6.2 needs), htpasswd basic auth, token auth through the realm the registry
 * names, and TLS with a certificate Terraform's machine does not trust (insecure_skip_verify). Each digest is the
 * one the push gave; the failures carry the provider's own messages. No Docker engine is involved: the provider
 * skips its daemon check, and the data source talks to registries only.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, fetch as undiciFetch } from 'undici';
import { makeImage, makeIndex, pushImage, TestImage } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { requireTool } from '../../harness/tools';
import { createTestCa } from '../e2e/support/pki';
import { startTokenRegistry, TokenRegistry } from '../support/token-registry';
import { terraformDeploy } from '../support/terraform';

jest.setTimeout(180_000);

const work = mkdtempSync(join(tmpdir(), 'registry-image-data-'));
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
let plain: TestRegistry;
let htpasswd: TestRegistry;
let tls: TestRegistry;
let token: TokenRegistry;
const images: Record<string, TestImage> = {};

beforeAll(async () => {
  requireTool('terraform');
  const passwords = join(work, 'htpasswd');
  execFileSync(requireTool('htpasswd'), ['-c', '-bB', passwords, 'carol', 'carol-pw']);
  const cert = createTestCa(join(work, 'pki')).issue('registry', ['127.0.0.1']);
  [plain, htpasswd, tls, token] = await Promise.all([
    TestRegistry.start(),
    TestRegistry.start({ extra: { auth: { htpasswd: { realm: 'basic-realm', path: passwords } } } }),
    TestRegistry.start({ tls: { certificate: cert.certificate, key: cert.key } }),
    startTokenRegistry({ users: { alice: 'alice-pw' }, acl: [{ who: 'alice', repo: 'team/*', actions: ['pull'] }] }),
  ]);
  images.schema2 = makeImage({ layerSizes: [1024] });
  images.index = makeIndex(['amd64', 'arm64']);
  images.basic = makeImage({ layerSizes: [1024] });
  images.token = makeImage({ layerSizes: [1024] });
  images.tls = makeImage({ layerSizes: [1024], format: 'oci' });
  await pushImage(plain.url, 'team/app', 'v1', images.schema2);
  await pushImage(plain.url, 'team/multi', 'v1', images.index);
  await pushImage(htpasswd.url, 'team/basic', 'v1', images.basic, { authorization: basic('carol', 'carol-pw') });
  await token.push('team/token', 'v1', images.token);
  // The test CA is trusted for this push only; the provider stand-in never trusts it.
  const agent = new Agent({ connect: { ca: readFileSync(join(work, 'pki', 'ca.crt')) } });
  const original = globalThis.fetch;
  globalThis.fetch = ((input: Parameters<typeof undiciFetch>[0], init?: Parameters<typeof undiciFetch>[1]) =>
    undiciFetch(input, { ...init, dispatcher: agent })) as unknown as typeof fetch;
  try {
    await pushImage(tls.url, 'team/tls', 'v1', images.tls);
  } finally {
    globalThis.fetch = original;
    await agent.close();
  }
});

afterAll(async () => {
  await Promise.all([plain?.stop(), htpasswd?.stop(), tls?.stop(), token?.stop()]);
  rmSync(work, { recursive: true, force: true });
});

interface Provider {
  readonly alias: string;
  readonly registry_auth?: Record<string, unknown>[];
}

/** A stack of docker_registry_image data sources, each through its own aliased provider, with their digests as outputs. */
function stack(
  name: string,
  providers: Provider[],
  reads: { name: string; provider: string; image: string; insecure?: boolean }[],
): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  const host = `unix://${join(work, 'no-engine.sock')}`;
  writeFileSync(
    join(dir, 'main.tf.json'),
    JSON.stringify({
      terraform: { required_providers: { docker: { source: 'kreuzwerker/docker', version: '3.6.2' } } },
      provider: { docker: providers.map((p) => ({ host, disable_docker_daemon_check: true, ...p })) },
      data: {
        docker_registry_image: Object.fromEntries(
          reads.map((r) => [
            r.name,
            { provider: `docker.${r.provider}`, name: r.image, ...(r.insecure !== undefined ? { insecure_skip_verify: r.insecure } : {}) },
          ]),
        ),
      },
      output: Object.fromEntries(reads.map((r) => [r.name, { value: `\${data.docker_registry_image.${r.name}.sha256_digest}` }])),
    }),
  );
  return dir;
}

const host = (registry: TestRegistry) => registry.url.replace(/^https?:\/\//, '');

describe('docker_registry_image data source (test stand-in of kreuzwerker/docker 3.6.2)', () => {
  it('reads the digest the registry serves: anonymous over http, basic auth, token auth, TLS with insecure_skip_verify', async () => {
    plain.clearLog();
    const tf = terraformDeploy(
      stack(
        'reads',
        [
          { alias: 'plain', registry_auth: [{ address: plain.url, auth_disabled: true }] },
          { alias: 'basic', registry_auth: [{ address: htpasswd.url, username: 'carol', password: 'carol-pw' }] },
          { alias: 'token', registry_auth: [{ address: token.registry.url, username: 'alice', password: 'alice-pw' }] },
          { alias: 'tls' },
        ],
        [
          { name: 'schema2', provider: 'plain', image: `${host(plain)}/team/app:v1` },
          { name: 'index', provider: 'plain', image: `${host(plain)}/team/multi:v1` },
          { name: 'pinned', provider: 'plain', image: `${host(plain)}/team/app:v1@${images.schema2.digest}` },
          { name: 'basic', provider: 'basic', image: `${host(htpasswd)}/team/basic:v1` },
          { name: 'token', provider: 'token', image: `${host(token.registry)}/team/token:v1` },
          { name: 'tls', provider: 'tls', image: `${host(tls)}/team/tls:v1`, insecure: true },
        ],
      ),
    );
    await tf.init();
    await tf.apply();
    expect(await tf.outputs()).toEqual({
      schema2: images.schema2.digest,
      index: images.index.digest,
      pinned: images.schema2.digest,
      basic: images.basic.digest,
      token: images.token.digest,
      tls: images.tls.digest,
    });
    // HEAD requests only (the digest header answers them), by tag and by the pinned digest.
    expect(plain.requests({ pathIncludes: '/manifests/' }).map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual(
      expect.arrayContaining([
        'HEAD /v2/team/app/manifests/v1 200',
        'HEAD /v2/team/multi/manifests/v1 200',
        `HEAD /v2/team/app/manifests/${images.schema2.digest} 200`,
      ]),
    );
    expect(plain.requests({ method: 'GET', pathIncludes: '/manifests/' })).toEqual([]);
    // The token came from the realm the registry named, for alice, with the challenge's scope.
    expect(token.issuer.requests).toEqual(expect.arrayContaining([{ user: 'alice', scopes: ['repository:team/token:pull'], status: 200 }]));
  });

  it("fails plan with the provider's messages: http without registry_auth, an untrusted certificate, bad credentials, an unknown tag", async () => {
    const tf = terraformDeploy(
      stack(
        'failures',
        [
          { alias: 'none' },
          { alias: 'basic', registry_auth: [{ address: htpasswd.url, username: 'carol', password: 'wrong' }] },
          { alias: 'plain', registry_auth: [{ address: plain.url, auth_disabled: true }] },
        ],
        [
          { name: 'http', provider: 'none', image: `${host(plain)}/team/app:v1` },
          { name: 'untrusted', provider: 'none', image: `${host(tls)}/team/tls:v1` },
          { name: 'credentials', provider: 'basic', image: `${host(htpasswd)}/team/basic:v1` },
          { name: 'missing', provider: 'plain', image: `${host(plain)}/team/app:v9` },
        ],
      ),
    );
    await tf.init();
    const run = await tf.run(['plan', '-input=false', '-no-color']);
    expect(run.status).toBe(1);
    const errors = run.stderr.replace(/\s*│\s*/g, ' ');
    // Without registry_auth the provider speaks https, which a plain-http registry does not answer.
    expect(errors).toMatch(
      /Got error when attempting to fetch image version team\/app:v1 from registry: Error during registry request: .+/,
    );
    expect(errors).toMatch(
      /Got error when attempting to fetch image version team\/tls:v1 from registry: Error during registry request: .*certificate/,
    );
    expect(errors).toContain(
      'Got error when attempting to fetch image version team/basic:v1 from registry: bad credentials: 401 Unauthorized',
    );
    expect(errors).toContain(
      'Got error when attempting to fetch image version team/app:v9 from registry: Got bad response from registry: 404 Not Found',
    );
  });
});
