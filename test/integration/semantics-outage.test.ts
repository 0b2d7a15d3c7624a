/**
 * Upstream outage: with the token-protected upstream stopped, every cached image still pulls by tag (with a
 * Warning header) and by digest for clients authorized before the outage, within `maxstale` and `authstale`; past
 * them, and for anyone never authorized, the cache answers a clean OCI 503. Readiness follows the upstream; liveness does not;
 * the logs say what happened and never carry a token.
 */
import { createHash } from 'node:crypto';
import { startCache, type TestCache } from '../support/cache-server';
import { makeImage, type TestImage } from '../../harness/images';
import { startTokenRegistry, type TokenRegistry } from '../support/token-registry';
import { sleep } from '../../harness/tools';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const MAX_STALE_MS = 8000;

describe('serving through an upstream outage', () => {
  let up: TokenRegistry;
  let cache: TestCache;
  const images: Record<string, TestImage> = { 'team/a': makeImage(), 'team/b': makeImage({ format: 'oci', layerSizes: [5000] }) };
  const tokens: Record<string, string> = {};
  let warmedAt = 0;
  let upstreamStopped = false; // TestRegistry.stop() must not be called twice (a signalled child never exits again)

  beforeAll(async () => {
    up = await startTokenRegistry({
      users: { alice: 'pw', bob: 'pw' },
      acl: [
        { who: 'alice', repo: 'team/*', actions: ['pull'] },
        { who: 'bob', repo: 'team/*', actions: ['pull'] },
      ],
    });
    for (const [repo, image] of Object.entries(images)) await up.push(repo, 'v1', image);
    cache = await startCache([up.registry.url], {
      maxstale: `${MAX_STALE_MS / 1000}s`,
      authstale: `${MAX_STALE_MS / 1000}s`,
      tagttl: '1s',
      authttl: '1s',
    });
  });
  afterAll(async () => {
    await cache?.stop();
    if (upstreamStopped) await up.issuer.stop();
    else await up?.stop();
  });

  async function pullAll(repo: string, authorization: string | undefined) {
    const image = images[repo];
    const headers = { accept: image.mediaType, ...(authorization ? { authorization } : {}) };
    const answers = [];
    for (const path of [`manifests/v1`, `manifests/${image.digest}`, ...image.blobs.map((b) => `blobs/${b.digest}`)]) {
      const res = await fetch(`${cache.url}/v2/${repo}/${path}`, { headers });
      const body = Buffer.from(await res.arrayBuffer());
      answers.push({ path, status: res.status, warning: res.headers.get('warning'), digest: sha(body), body: body.toString('utf8') });
    }
    return answers;
  }

  it('warms the cache and is ready while the upstream is up', async () => {
    for (const repo of Object.keys(images)) {
      tokens[repo] = up.bearer('alice', repo);
      const answers = await pullAll(repo, tokens[repo]);
      expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
    }
    warmedAt = Date.now();
    const ready = await fetch(`${cache.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready' });
  });

  it('within maxstale: serves every cached image by tag (with Warning) and by digest to clients authorized before', async () => {
    upstreamStopped = true;
    await up.registry.stop();
    await sleep(1200); // past tagttl and authttl: only the stale path can answer now
    for (const [repo, image] of Object.entries(images)) {
      const answers = await pullAll(repo, tokens[repo]);
      expect(answers.map((a) => [a.path, a.status])).toEqual(answers.map((a) => [a.path, 200]));
      expect(answers.map((a) => a.digest)).toEqual([image.digest, image.digest, ...image.blobs.map((b) => b.digest)]);
      expect(answers[0].warning).toContain('110');
    }
    expect(Date.now() - warmedAt).toBeLessThan(MAX_STALE_MS); // the checks above really ran inside the window
  });

  it('refuses a client never authorized before the outage with a clean 503, not the cached content', async () => {
    const answers = await pullAll('team/a', up.bearer('bob', 'team/a'));
    for (const a of answers) {
      expect(a.status).toBe(503);
      expect(JSON.parse(a.body).errors[0].code).toBe('UNAVAILABLE');
    }
  });

  it('reports not ready (503 with a reason) but alive', async () => {
    const ready = await fetch(`${cache.url}/readyz`);
    expect(ready.status).toBe(503);
    const body = (await ready.json()) as { status: string; reason: string };
    expect(body.status).toBe('not ready');
    expect(body.reason).toMatch(/^upstream: /);
    expect((await fetch(`${cache.url}/healthz`)).status).toBe(200);
  });

  it('past maxstale: fails cleanly with OCI 503 by tag, by digest and for blobs', async () => {
    const wait = warmedAt + MAX_STALE_MS + 300 - Date.now();
    if (wait > 0) await sleep(wait);
    for (const repo of Object.keys(images)) {
      for (const a of await pullAll(repo, tokens[repo])) {
        expect([a.path, a.status]).toEqual([a.path, 503]);
        expect(JSON.parse(a.body).errors[0]).toMatchObject({ code: 'UNAVAILABLE' });
      }
    }
  });

  it('logged the stale answers, and no log line carries a token', async () => {
    expect(cache.logs.some((l) => l.msg === 'upstream unreachable; serving the last known tag')).toBe(true);
    const text = JSON.stringify(cache.logs);
    for (const token of Object.values(tokens)) expect(text).not.toContain(token.slice('Bearer '.length));
    expect(text).not.toMatch(/Bearer /);
  });
});
