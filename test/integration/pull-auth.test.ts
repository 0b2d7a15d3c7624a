/**
 * The cache in front of a token-protected upstream (distribution 2.8 + the test token issuer, as DTR does it):
 * the upstream's 401 challenge reaches the client, skopeo logs in with the upstream's token service through the
 * cache, and content already cached is still refused to clients the upstream would refuse.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startCache, type TestCache } from '../support/cache-server';
import { makeImage, sha256 } from '../../harness/images';
import { startTokenRegistry, type TokenRegistry, TEAM_ACCESS } from '../support/token-registry';
import { requireTool, sleep } from '../../harness/tools';

const run = promisify(execFile);
const settleLog = () => sleep(400);

function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    httpRequest(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
}

describe('pull through the cache from a token-protected upstream', () => {
  let up: TokenRegistry;
  let cache: TestCache;
  let work: string;
  const skopeo = requireTool('skopeo');
  const image = makeImage({ layerSizes: [4096, 100_000] });
  const layer = image.blobs[2];

  beforeAll(async () => {
    up = await startTokenRegistry(TEAM_ACCESS);
    await up.push('team/app', 'v1', image);
    cache = await startCache([up.registry.url]);
    work = mkdtempSync(join(tmpdir(), 'dtr-cache-auth-'));
  });

  afterAll(async () => {
    await cache?.stop();
    await up?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  async function skopeoCopy(creds?: string): Promise<string> {
    const dir = mkdtempSync(join(work, 'dir-'));
    await run(
      skopeo,
      [
        'copy',
        '--src-tls-verify=false',
        ...(creds ? ['--src-creds', creds] : ['--src-no-creds']),
        `docker://${cache.host}/team/app:v1`,
        `dir:${dir}`,
      ],
      { timeout: 60_000 },
    );
    return sha256(readFileSync(join(dir, 'manifest.json')));
  }

  it("GET /v2/ relays the upstream's 401 challenge unchanged", async () => {
    const answer = await get(`${cache.url}/v2/`);
    expect(answer.status).toBe(401);
    expect(String(answer.headers['www-authenticate'])).toContain(`realm="${up.issuer.realm}"`);
  });

  it('skopeo with the right credentials pulls through the cache (token from the upstream token service)', async () => {
    expect(await skopeoCopy('alice:alice-pw')).toBe(image.digest);
  });

  it('cached content is refused to no token, a wrong token, and a token for another repository; the right token gets it from storage', async () => {
    const url = `${cache.url}/v2/team/app/blobs/${layer.digest}`;
    const anonymous = await get(url);
    expect(anonymous.status).toBe(401);
    expect(String(anonymous.headers['www-authenticate'])).toContain('Bearer');
    expect(anonymous.body.includes(layer.data.subarray(0, 64))).toBe(false);

    const forged = await get(url, {
      authorization: `Bearer ${up.issuer.forge('alice', [{ type: 'repository', name: 'team/app', actions: ['pull'] }])}`,
    });
    expect(forged.status).toBe(401);

    const otherRepo = await get(url, { authorization: up.bearer('bob', 'other/thing') });
    expect([401, 403, 404]).toContain(otherRepo.status);

    const bobHere = await get(url, { authorization: up.bearer('bob', 'team/app') });
    expect([401, 403, 404]).toContain(bobHere.status);

    const manifest = await get(`${cache.url}/v2/team/app/manifests/v1`, {
      authorization: up.bearer('bob', 'team/app'),
      accept: image.mediaType,
    });
    expect([401, 403, 404]).toContain(manifest.status);
    expect(manifest.body.includes(image.manifest)).toBe(false);

    await settleLog();
    up.registry.clearLog();
    const alice = await get(url, { authorization: up.bearer('alice', 'team/app') });
    expect(alice.status).toBe(200);
    expect(sha256(alice.body)).toBe(layer.digest);
    await settleLog();
    expect(up.registry.blobGets()).toEqual([]);
  });

  it('skopeo without credentials, or as a user without access, fails', async () => {
    await expect(skopeoCopy()).rejects.toThrow(/unauthorized|authentication required|denied|401/i);
    await expect(skopeoCopy('bob:bob-pw')).rejects.toThrow(/unauthorized|authentication required|denied|401|403/i);
  });

  it('no credential value ever appears in the logs', async () => {
    const text = JSON.stringify(cache.logs);
    expect(text).not.toMatch(/Bearer |Basic |alice-pw/);
  });
});
