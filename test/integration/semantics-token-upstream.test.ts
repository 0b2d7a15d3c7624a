/**
 * The token-protected upstream the semantics tests run against: distribution 2.8 with `auth: token` and our
 * test token issuer. Proves the fixture is real: the registry refuses without a token, accepts the right one,
 * refuses a token for another repository or signed by an untrusted key, and real clients (skopeo) complete the flow.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { makeImage } from '../../harness/images';
import { startTokenRegistry, TokenRegistry, TEAM_ACCESS } from '../support/token-registry';
import { requireTool } from '../../harness/tools';

const run = promisify(execFile);

describe('token-protected upstream (distribution 2.8 + test token issuer)', () => {
  let up: TokenRegistry;
  const image = makeImage();
  const open = makeImage({ layerSizes: [1024] });

  beforeAll(async () => {
    up = await startTokenRegistry(TEAM_ACCESS);
    await up.push('team/app', 'v1', image);
    await up.push('public/base', 'latest', open);
  });
  afterAll(async () => {
    await up?.stop();
  });

  const manifestUrl = (repo: string, ref: string) => `${up.registry.url}/v2/${repo}/manifests/${ref}`;
  const get = (url: string, authorization?: string) =>
    fetch(url, { headers: { accept: image.mediaType, ...(authorization ? { authorization } : {}) } });

  it('refuses a request without a token and names the realm, service and scope', async () => {
    const res = await get(manifestUrl('team/app', 'v1'));
    expect(res.status).toBe(401);
    const challenge = res.headers.get('www-authenticate') ?? '';
    expect(challenge).toContain(`realm="${up.issuer.realm}"`);
    expect(challenge).toContain(`service="${up.issuer.service}"`);
    expect(challenge).toContain('scope="repository:team/app:pull"');
  });

  it('accepts a token obtained over HTTP with Basic auth, and serves the exact manifest', async () => {
    const tokenRes = await fetch(`${up.issuer.realm}?service=${up.issuer.service}&scope=repository:team/app:pull`, {
      headers: { authorization: `Basic ${Buffer.from('alice:alice-pw').toString('base64')}` },
    });
    expect(tokenRes.status).toBe(200);
    const { token } = (await tokenRes.json()) as { token: string };
    const res = await get(manifestUrl('team/app', 'v1'), `Bearer ${token}`);
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(image.manifest)).toBe(true);
    expect(res.headers.get('docker-content-digest')).toBe(image.digest);
  });

  it('answers 401 at the token endpoint for a wrong password', async () => {
    const res = await fetch(`${up.issuer.realm}?service=${up.issuer.service}&scope=repository:team/app:pull`, {
      headers: { authorization: `Basic ${Buffer.from('alice:wrong').toString('base64')}` },
    });
    expect(res.status).toBe(401);
  });

  it('refuses a valid token for another repository', async () => {
    const res = await get(manifestUrl('team/app', 'v1'), up.bearer('bob', 'other/thing'));
    expect(res.status).toBe(401);
    expect(((await res.json()) as { errors: { code: string }[] }).errors[0].code).toBe('UNAUTHORIZED');
  });

  it('refuses a token the ACL grants no actions on this repository', async () => {
    const res = await get(manifestUrl('team/app', 'v1'), up.bearer('bob', 'team/app'));
    expect(res.status).toBe(401);
  });

  it('refuses a token signed by an untrusted key even with the right claims', async () => {
    const forged = up.issuer.forge('alice', [{ type: 'repository', name: 'team/app', actions: ['pull'] }]);
    const res = await get(manifestUrl('team/app', 'v1'), `Bearer ${forged}`);
    expect(res.status).toBe(401);
  });

  it('serves an anonymous-readable repository to an anonymous token, and no other', async () => {
    expect((await get(manifestUrl('public/base', 'latest'), up.bearer(undefined, 'public/base'))).status).toBe(200);
    expect((await get(manifestUrl('team/app', 'v1'), up.bearer(undefined, 'team/app'))).status).toBe(401);
  });

  it('lets skopeo complete the token flow with the right credentials, and fails with wrong ones', async () => {
    const skopeo = requireTool('skopeo');
    const ref = `docker://127.0.0.1:${up.registry.port}/team/app:v1`;
    const { stdout } = await run(skopeo, ['inspect', '--raw', '--tls-verify=false', '--creds', 'alice:alice-pw', ref], { timeout: 30_000 });
    expect(stdout.trim()).toBe(image.manifest.toString());
    await expect(
      run(skopeo, ['inspect', '--raw', '--tls-verify=false', '--creds', 'alice:nope', ref], { timeout: 30_000 }),
    ).rejects.toThrow();
  });
});
