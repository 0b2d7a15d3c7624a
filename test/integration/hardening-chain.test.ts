/**
 * Hardening (issue 10): cache chaining as DTR allows it (two levels). Cache B's upstream is cache A, A's upstream is
 * the token-protected registry (distribution 2.8 + token issuer). The client's token travels through both caches
 * to the real registry: skopeo does the whole challenge → token → pull flow through B, a wrong or forged token is
 * refused at both levels, and a second pull through B transfers no blob from the real registry.
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
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const settleLog = () => sleep(500);

describe('hardening: a two-level cache chain in front of a token-protected upstream', () => {
  let up: TokenRegistry;
  let cacheA: TestCache;
  let cacheB: TestCache;
  let work: string;
  const image = makeImage({ layerSizes: [2048, 400_000] });
  const skopeo = requireTool('skopeo');

  beforeAll(async () => {
    up = await startTokenRegistry(TEAM_ACCESS);
    await up.push('team/app', 'v1', image);
    cacheA = await startCache([up.registry.url]);
    cacheB = await startCache([cacheA.url]);
    work = mkdtempSync(join(tmpdir(), 'dtr-cache-chain-'));
  });
  afterAll(async () => {
    await cacheB?.stop();
    await cacheA?.stop();
    await up?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  async function pullHttp(authorization: string | undefined) {
    const headers = { accept: image.mediaType, ...(authorization ? { authorization } : {}) };
    const out = [];
    for (const path of ['manifests/v1', ...image.blobs.map((b) => `blobs/${b.digest}`)]) {
      const res = await fetch(`${cacheB.url}/v2/team/app/${path}`, { headers });
      out.push({
        path,
        status: res.status,
        digest: sha(Buffer.from(await res.arrayBuffer())),
        challenge: res.headers.get('www-authenticate'),
      });
    }
    return out;
  }

  it('relays the real registry challenge through both caches', async () => {
    const [manifest] = await pullHttp(undefined);
    expect(manifest.status).toBe(401);
    expect(manifest.challenge).toContain(`realm="${up.issuer.realm}"`);
    expect(manifest.challenge).toContain('scope="repository:team/app:pull"');
  });

  it('skopeo pulls through the chain with the right credentials (token flow end to end), exact digests', async () => {
    up.registry.clearLog();
    const dest = join(work, 'pulled');
    await run(
      skopeo,
      ['copy', '--src-tls-verify=false', '--src-creds', 'alice:alice-pw', `docker://${cacheB.host}/team/app:v1`, `dir:${dest}`],
      { timeout: 60_000 },
    );
    expect(sha(readFileSync(join(dest, 'manifest.json')))).toBe(image.digest);
    for (const blob of image.blobs) expect(sha(readFileSync(join(dest, blob.digest.slice('sha256:'.length))))).toBe(blob.digest);
    await settleLog();
    // The real registry served each blob once, to cache A.
    expect(
      up.registry
        .blobGets()
        .map((e) => e.path.split('/blobs/')[1])
        .sort(),
    ).toEqual(image.blobs.map((b) => b.digest).sort());
  });

  it('refuses a wrong, a forged and another repository token at both levels, with the content cached in both', async () => {
    const wrong = [
      up.bearer('bob', 'team/app'), // valid token, no rights on team/app
      up.bearer('bob', 'other/thing'), // valid token for another repository
      `Bearer ${up.issuer.forge('alice', [{ type: 'repository', name: 'team/app', actions: ['pull'] }])}`,
    ];
    for (const authorization of wrong) {
      for (const answer of await pullHttp(authorization)) expect([answer.path, answer.status]).toEqual([answer.path, 401]);
      const direct = await fetch(`${cacheA.url}/v2/team/app/blobs/${image.blobs[1].digest}`, { headers: { authorization } });
      expect(direct.status).toBe(401);
    }
  });

  it('a second pull through B with a new token makes no blob GET at the real registry', async () => {
    up.registry.clearLog();
    const answers = await pullHttp(up.bearer('alice', 'team/app'));
    expect(answers.map((a) => [a.path, a.status])).toEqual(answers.map((a) => [a.path, 200]));
    expect(answers.map((a) => a.digest)).toEqual([image.digest, ...image.blobs.map((b) => b.digest)]);
    await settleLog();
    expect(up.registry.blobGets()).toEqual([]);
    // The new token was still checked by the real registry (HEADs), never trusted on the caches' word.
    expect(up.registry.requests({ method: 'HEAD' }).length).toBeGreaterThan(0);
  });
});
