/**
 * Authorization parity against a token-protected upstream (distribution 2.8 + our RS256 token issuer, the flow
 * DTR uses): content already in the cache is refused to a client without a token, with a wrong or forged token,
 * or with a token for another repository; the right token gets it, and a second authorized pull transfers no
 * blob from the upstream. Real clients (skopeo) go through the whole challenge → token → pull flow via the cache.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startCache, type TestCache } from '../support/cache-server';
import { makeImage } from '../../harness/images';
import { startTokenRegistry, type TokenRegistry, TEAM_ACCESS } from '../support/token-registry';
import { requireTool, sleep } from '../../harness/tools';

const run = promisify(execFile);
const settleLog = () => sleep(400);
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('authorization parity with a token-protected upstream', () => {
  let up: TokenRegistry;
  let cache: TestCache;
  let work: string;
  const image = makeImage({ layerSizes: [2048, 200_000] });
  const other = makeImage({ layerSizes: [1024] });
  const skopeo = requireTool('skopeo');

  beforeAll(async () => {
    up = await startTokenRegistry(TEAM_ACCESS);
    await up.push('team/app', 'v1', image);
    await up.push('other/thing', 'v1', other);
    await up.push('public/base', 'v1', other);
    cache = await startCache([up.registry.url], { authttl: '2s' });
    work = mkdtempSync(join(tmpdir(), 'dtr-cache-auth-'));
  });
  afterAll(async () => {
    await cache?.stop();
    await up?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const get = (path: string, authorization?: string) =>
    fetch(`${cache.url}${path}`, { headers: { accept: image.mediaType, ...(authorization ? { authorization } : {}) } });
  const paths = () => [
    `/v2/team/app/manifests/v1`,
    `/v2/team/app/manifests/${image.digest}`,
    ...image.blobs.map((b) => `/v2/team/app/blobs/${b.digest}`),
  ];

  /** Pulls the image through the cache with `authorization`; returns the digests of what arrived. */
  async function pull(authorization: string): Promise<string[]> {
    const out: string[] = [];
    for (const path of paths()) {
      const res = await get(path, authorization);
      expect(res.status).toBe(200);
      out.push(sha(Buffer.from(await res.arrayBuffer())));
    }
    return out;
  }
  const expected = () => [image.digest, image.digest, ...image.blobs.map((b) => b.digest)];

  it('fills the cache for the right token, with exact digests', async () => {
    expect(await pull(up.bearer('alice', 'team/app'))).toEqual(expected());
    await settleLog();
    expect(new Set(up.registry.blobGets().map((e) => e.path)).size).toBe(image.blobs.length);
  });

  it('refuses cached content to no token, a garbage token, a forged token and tokens for another repository', async () => {
    await settleLog();
    up.registry.clearLog();
    const forged = `Bearer ${up.issuer.forge('alice', [{ type: 'repository', name: 'team/app', actions: ['pull'] }])}`;
    const clients: Record<string, string | undefined> = {
      'no token': undefined,
      'garbage token': 'Bearer not-a-jwt',
      'wrong basic password': `Basic ${Buffer.from('alice:wrong').toString('base64')}`,
      'forged token': forged,
      "bob's token for other/thing": up.bearer('bob', 'other/thing'),
      "bob's token for team/app (no actions granted)": up.bearer('bob', 'team/app'),
      'anonymous token': up.bearer(undefined, 'team/app'),
      "alice's token for another repository": up.bearer('alice', 'public/base'),
    };
    for (const [who, authorization] of Object.entries(clients)) {
      for (const path of paths()) {
        const res = await get(path, authorization);
        const body = await res.text();
        expect({ who, path, status: res.status }).toEqual({ who, path, status: expect.any(Number) });
        expect([401, 403, 404]).toContain(res.status);
        expect(body).not.toContain(image.manifest.toString().slice(0, 40)); // no content leaked in an error body
        if (res.status === 401 && !path.includes('/blobs/')) expect(res.headers.get('www-authenticate')).toContain(up.issuer.realm);
        expect(JSON.parse(body).errors[0].code).toMatch(/UNAUTHORIZED|DENIED|UNKNOWN/);
      }
    }
    await settleLog();
    // No refusal cost a blob transfer (distribution does not access-log the 401s of its HEADs).
    expect(up.registry.blobGets()).toEqual([]);
  });

  it('serves the right token from storage: a second authorized pull transfers no blob upstream', async () => {
    up.registry.clearLog();
    expect(await pull(up.bearer('alice', 'team/app'))).toEqual(expected());
    await settleLog();
    expect(up.registry.blobGets()).toEqual([]);
    // Within authttl the same credential is not even re-checked.
    const token = up.bearer('alice', 'team/app');
    await pull(token);
    await settleLog();
    up.registry.clearLog();
    await pull(token);
    await settleLog();
    expect(up.registry.requests()).toEqual([]);
  });

  it('lets skopeo do the challenge → token → pull flow through the cache, and refuses wrong credentials', async () => {
    const copy = (creds: string | undefined, ref: string) =>
      run(
        skopeo,
        [
          'copy',
          '--src-tls-verify=false',
          ...(creds ? ['--src-creds', creds] : []),
          `docker://${cache.host}/${ref}`,
          `oci:${mkdtempSync(join(work, 'oci-'))}:v1`,
        ],
        { timeout: 60_000 },
      );
    // skopeo converts to OCI on the way into the layout: compare with the same copy made directly from the upstream.
    const layoutDigest = async (host: string) => {
      const dir = mkdtempSync(join(work, 'ok-'));
      await run(
        skopeo,
        ['copy', '--src-tls-verify=false', '--src-creds', 'alice:alice-pw', `docker://${host}/team/app:v1`, `oci:${dir}:v1`],
        {
          timeout: 60_000,
        },
      );
      return (JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string }[] }).manifests[0].digest;
    };
    expect(await layoutDigest(cache.host)).toBe(await layoutDigest(`127.0.0.1:${up.registry.port}`));
    const { stdout } = await run(
      skopeo,
      ['inspect', '--raw', '--tls-verify=false', '--creds', 'alice:alice-pw', `docker://${cache.host}/team/app:v1`],
      { timeout: 30_000 },
    );
    expect(sha(Buffer.from(stdout.trim()))).toBe(image.digest);
    await expect(copy('alice:wrong', 'team/app:v1')).rejects.toThrow();
    await expect(copy('bob:bob-pw', 'team/app:v1')).rejects.toThrow();
    await expect(copy(undefined, 'team/app:v1')).rejects.toThrow();
    // Anonymous access works exactly as far as the upstream allows.
    await expect(copy(undefined, 'public/base:v1')).resolves.toBeDefined();
  });
});
