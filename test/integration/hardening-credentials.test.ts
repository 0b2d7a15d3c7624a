/**
 * Hardening (issue 10): credentials go only where they belong. The upstream is distribution 2.8 with token auth
 * and its `redirect` storage middleware, so blob GETs are answered with a redirect to another loopback server (as
 * DTR on object storage answers with a signed URL), and its WWW-Authenticate realm is a third server. Both record
 * every request they get. The cache forwards the client's token to the upstream (the pull succeeds only if it
 * arrived there), follows the redirect without Authorization, and never calls the realm: it relays challenges.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { TokenIssuer } from '../fixtures/token-issuer';
import { startCache, type TestCache } from '../support/cache-server';
import { makeImage, pushImage } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { sleep } from '../../harness/tools';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface Recorder {
  readonly url: string;
  readonly seen: { path: string; headers: IncomingHttpHeaders }[];
  stop(): Promise<void>;
}

/** A node:http server on loopback that records each request; `serve` answers it (default 404). */
async function startRecorder(serve?: (path: string, res: import('node:http').ServerResponse) => void): Promise<Recorder> {
  const seen: Recorder['seen'] = [];
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    seen.push({ path, headers: req.headers });
    if (serve) return serve(path, res);
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('hardening: credentials go only to the upstream', () => {
  let issuer: TokenIssuer;
  let upstream: TestRegistry;
  let objectStore: Recorder;
  let realm: Recorder;
  let cache: TestCache;
  const image = makeImage({ layerSizes: [4096, 300_000] });

  beforeAll(async () => {
    issuer = await TokenIssuer.start({ users: { alice: 'pw' }, acl: [{ who: 'alice', repo: 'team/*', actions: ['pull'] }] });
    realm = await startRecorder();
    let dataDir = '';
    // Plays the object store behind the redirect: serves the registry's own blob files by their storage path.
    objectStore = await startRecorder((path, res) => {
      const file = join(dataDir, path);
      if (!path.includes('..') && existsSync(file)) {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        createReadStream(file).pipe(res);
      } else res.writeHead(404).end();
    });
    upstream = await TestRegistry.start({
      extra: {
        auth: {
          token: { realm: `${realm.url}/token`, service: issuer.service, issuer: issuer.issuer, rootcertbundle: issuer.rootCertBundle },
        },
        middleware: { storage: [{ name: 'redirect', options: { baseurl: objectStore.url } }] },
      },
    });
    dataDir = join(upstream.dir, 'data');
    await pushImage(upstream.url, 'team/app', 'v1', image, {
      authorization: `Bearer ${issuer.mint('pusher', [{ type: 'repository', name: 'team/app', actions: ['pull', 'push'] }])}`,
    });
    cache = await startCache([upstream.url]);
    objectStore.seen.length = 0;
    realm.seen.length = 0;
  });
  afterAll(async () => {
    await cache?.stop();
    await upstream?.stop();
    await objectStore?.stop();
    await realm?.stop();
    await issuer?.stop();
  });

  it('the upstream really redirects blob GETs to the other server', async () => {
    const res = await fetch(`${upstream.url}/v2/team/app/blobs/${image.blobs[1].digest}`, {
      headers: { authorization: `Bearer ${issuer.tokenFor('alice', ['repository:team/app:pull'])}` },
      redirect: 'manual',
    });
    expect(res.status).toBe(307);
    expect(res.headers.get('location')).toMatch(new RegExp(`^${objectStore.url}/docker/registry/v2/blobs/`));
  });

  it('pulls through the redirect with the token: the blob request reaches the redirect target WITHOUT Authorization', async () => {
    objectStore.seen.length = 0;
    const authorization = `Bearer ${issuer.tokenFor('alice', ['repository:team/app:pull'])}`;
    const manifest = await fetch(`${cache.url}/v2/team/app/manifests/v1`, { headers: { authorization, accept: image.mediaType } });
    expect(manifest.status).toBe(200);
    for (const blob of image.blobs) {
      const res = await fetch(`${cache.url}/v2/team/app/blobs/${blob.digest}`, { headers: { authorization } });
      expect(res.status).toBe(200);
      expect(sha(Buffer.from(await res.arrayBuffer()))).toBe(blob.digest);
    }
    // Every blob came from the redirect target (once each), and none of those requests carried the token.
    expect(objectStore.seen.length).toBe(image.blobs.length);
    for (const request of objectStore.seen) {
      expect(request.path).toMatch(/^\/docker\/registry\/v2\/blobs\/sha256\//);
      expect(request.headers.authorization).toBeUndefined();
      expect(JSON.stringify(request.headers)).not.toContain(authorization.slice('Bearer '.length));
    }
  });

  it('relays the challenge of a realm on another host and never calls it, whatever credential the client sends', async () => {
    const credentials = [
      undefined,
      `Basic ${Buffer.from('alice:pw').toString('base64')}`,
      `Bearer ${issuer.forge('alice', [{ type: 'repository', name: 'team/app', actions: ['pull'] }])}`,
    ];
    const fresh = makeImage({ layerSizes: [1024] }); // not cached: every request must go upstream
    await pushImage(upstream.url, 'team/other', 'v1', fresh, {
      authorization: `Bearer ${issuer.mint('pusher', [{ type: 'repository', name: 'team/other', actions: ['pull', 'push'] }])}`,
    });
    for (const authorization of credentials) {
      const headers = { accept: fresh.mediaType, ...(authorization ? { authorization } : {}) };
      for (const path of ['/v2/', '/v2/team/other/manifests/v1', `/v2/team/other/blobs/${fresh.blobs[0].digest}`]) {
        const res = await fetch(`${cache.url}${path}`, { headers });
        expect([path, res.status]).toEqual([path, 401]);
        expect(res.headers.get('www-authenticate')).toContain(`realm="${realm.url}/token"`);
      }
    }
    await sleep(300);
    expect(realm.seen).toEqual([]);
    expect(objectStore.seen.filter((r) => r.path.includes(fresh.blobs[0].digest.slice(7)))).toEqual([]);
  });
});
