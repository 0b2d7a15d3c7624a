/**
 * Revocation (issue 21): a user the upstream refuses once is never served again from an earlier authorization, not
 * even while the upstream is down. The upstream is a real distribution 2.8 with htpasswd auth (bcrypt entries from
 * apache2-utils' htpasswd). alice and bob pull an image through the cache; alice is removed from the htpasswd file
 * (the registry restarts on the same port to read it); past `authttl` the upstream refuses her. Then the upstream
 * stops: alice gets 503, bob (never refused) keeps pulling from the cache with his earlier authorization, for
 * `authstale` and no longer.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCache, type TestCache } from '../support/cache-server';
import { makeImage, pushImage } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { requireTool, sleep } from '../../harness/tools';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const basic = (user: string) => `Basic ${Buffer.from(`${user}:${user}-pw`).toString('base64')}`;
const AUTH_STALE_MS = 5000;

describe('a revoked credential stays refused while the upstream is down', () => {
  let dir: string;
  let registry: TestRegistry | undefined;
  let cache: TestCache;
  const image = makeImage({ layerSizes: [200_000] });

  /** A bcrypt htpasswd file with `users` (each password is `<user>-pw`), written by the real htpasswd tool. */
  function htpasswd(users: string[]): string {
    const file = join(dir, `htpasswd-${users.join('-')}`);
    users.forEach((user, i) => execFileSync(requireTool('htpasswd'), [...(i === 0 ? ['-c'] : []), '-bB', file, user, `${user}-pw`]));
    return file;
  }

  async function startUpstream(users: string[], port?: number): Promise<TestRegistry> {
    const started = await TestRegistry.start({ port, extra: { auth: { htpasswd: { realm: 'dtr', path: htpasswd(users) } } } });
    await pushImage(started.url, 'team/app', 'v1', image, { authorization: basic(users[0]) });
    return started;
  }

  async function pull(user: string): Promise<{ path: string; status: number; digest: string }[]> {
    const out = [];
    for (const path of ['manifests/v1', `manifests/${image.digest}`, ...image.blobs.map((b) => `blobs/${b.digest}`)]) {
      const res = await fetch(`${cache.url}/v2/team/app/${path}`, { headers: { authorization: basic(user), accept: image.mediaType } });
      out.push({ path, status: res.status, digest: sha(Buffer.from(await res.arrayBuffer())) });
    }
    return out;
  }
  const statuses = (answers: { status: number }[]) => answers.map((a) => a.status);
  /** `status` for every path of the image (manifest by tag, by digest, each blob). */
  const all = (status: number) => [status, status, ...image.blobs.map(() => status)];

  beforeAll(async () => {
    requireTool('htpasswd');
    dir = mkdtempSync(join(tmpdir(), 'dtr-cache-revocation-'));
    registry = await startUpstream(['alice', 'bob']);
    cache = await startCache([registry.url], { authttl: '1s', authstale: `${AUTH_STALE_MS / 1000}s`, tagttl: '1s', scrubrate: '0' });
  });
  afterAll(async () => {
    await cache?.stop();
    await registry?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('refuses alice during the outage once the upstream refused her; bob is served for authstale', async () => {
    for (const user of ['alice', 'bob']) {
      const answers = await pull(user);
      expect(statuses(answers)).toEqual(answers.map(() => 200));
      expect(answers.map((a) => a.digest)).toEqual([image.digest, image.digest, ...image.blobs.map((b) => b.digest)]);
    }

    // alice leaves the htpasswd file; distribution reads it at start, so the upstream restarts on its port.
    const port = registry!.port;
    await registry!.stop();
    registry = await startUpstream(['bob'], port);
    await sleep(1100); // past authttl: the next pulls are checked with the upstream
    expect(statuses(await pull('alice'))).toEqual(all(401));
    expect(statuses(await pull('bob'))).toEqual(all(200));
    const bobAuthorized = Date.now();

    await registry!.stop();
    registry = undefined;
    await sleep(1100); // past authttl and tagttl: only earlier decisions can answer now
    const alice = await pull('alice');
    expect(statuses(alice)).toEqual(all(503));
    expect(statuses(await pull('bob'))).toEqual(all(200));
    expect(Date.now() - bobAuthorized).toBeLessThan(AUTH_STALE_MS); // bob's answers above came inside authstale

    await sleep(bobAuthorized + AUTH_STALE_MS + 200 - Date.now());
    expect(statuses(await pull('bob'))).toEqual(all(503));
  });
});
