/**
 * The cache's HTTP surface against a real distribution 2.8 upstream, at the protocol level: Range, grammar
 * errors, push methods, a corrupted upstream blob, concurrent cold requests, slow and vanishing clients.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { blobKey, parseDigest } from '../../lib/cache/reference';
import { startCache, type TestCache } from '../support/cache-server';
import { makeImage, pushBlob, pushImage, sha256 } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { sleep, waitFor } from '../../harness/tools';

interface Answer {
  status: number;
  headers: IncomingMessage['headers'];
  body: Buffer;
  /** The connection was cut before the body was complete. */
  cut: boolean;
}

/** A raw HTTP request; reports a cut body instead of throwing. */
function get(url: string, init: { method?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    // The raw path, as written: a URL object would resolve `..` segments before they reach the cache.
    const { hostname, port } = new URL(url);
    const path = url.slice(url.indexOf('/', url.indexOf('//') + 2));
    const req = httpRequest({ hostname, port, path, method: init.method ?? 'GET', headers: init.headers }, (res) => {
      const chunks: Buffer[] = [];
      let cut = false;
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('aborted', () => (cut = true));
      res.on('error', () => (cut = true));
      res.on('close', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), cut: cut || !res.complete }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

function errorCode(answer: Answer): string {
  return (JSON.parse(answer.body.toString()) as { errors: { code: string }[] }).errors[0].code;
}

const settleLog = () => sleep(400);

describe('cache HTTP surface', () => {
  let upstream: TestRegistry;
  let cache: TestCache;
  const image = makeImage({ layerSizes: [1024, 200_000] });
  const layer = image.blobs[2];

  beforeAll(async () => {
    upstream = await TestRegistry.start();
    await pushImage(upstream.url, 'team/app', 'v1', image);
    cache = await startCache([upstream.url]);
  });

  afterAll(async () => {
    await cache?.stop();
    await upstream?.stop();
  });

  describe('grammar errors are 400 with OCI error JSON, with no upstream or storage access', () => {
    it.each([
      ['/v2/Team/app/manifests/v1', 'NAME_INVALID'],
      ['/v2/team/-app/manifests/v1', 'NAME_INVALID'],
      ['/v2/team/../etc/manifests/v1', 'NAME_INVALID'],
      ['/v2/team%2fapp/manifests/v1', 'NAME_INVALID'],
      ['/v2/team/app/manifests/-v1', 'TAG_INVALID'],
      [`/v2/team/app/manifests/${'t'.repeat(129)}`, 'TAG_INVALID'],
      ['/v2/team/app/manifests/sha256:abc', 'DIGEST_INVALID'],
      ['/v2/team/app/blobs/sha256:' + 'A'.repeat(64), 'DIGEST_INVALID'],
      ['/v2/team/app/blobs/md5:' + '0'.repeat(32), 'DIGEST_INVALID'],
      ['/v2/team/app/manifests/../../../../etc/passwd', 'NOT_FOUND', 404],
      ['/v2/team/app/blobs/sha256:../../../etc/passwd', 'NOT_FOUND', 404],
      ['/v2/team/app/blobs/sha256:..%2f..%2fetc%2fpasswd', 'DIGEST_INVALID'],
      [`/v2/${'a'.repeat(256)}/manifests/v1`, 'NAME_INVALID'],
    ])('%s → %s', async (path, code, status = 400) => {
      await settleLog();
      upstream.clearLog();
      const before = listFiles(cache.root);
      const answer = await get(cache.url + path);
      expect(answer.status).toBe(status);
      expect(answer.headers['content-type']).toMatch(/application\/json/);
      expect(errorCode(answer)).toBe(code);
      await settleLog();
      expect(upstream.requests()).toEqual([]);
      expect(listFiles(cache.root)).toEqual(before);
    });

    it('an unknown path is a 404 with OCI error JSON', async () => {
      const answer = await get(`${cache.url}/v2/team/app/nothing/here`);
      expect(answer.status).toBe(404);
      expect(errorCode(answer)).toBe('NOT_FOUND');
    });
  });

  it.each([
    ['POST', '/v2/team/app/blobs/uploads/'],
    ['PUT', '/v2/team/app/manifests/v2'],
    ['PATCH', '/v2/team/app/blobs/uploads/123'],
    ['DELETE', `/v2/team/app/manifests/${image.digest}`],
    ['DELETE', `/v2/team/app/blobs/${layer.digest}`],
  ])('%s %s → 405 UNSUPPORTED', async (method, path) => {
    const answer = await get(cache.url + path, { method });
    expect(answer.status).toBe(405);
    expect(errorCode(answer)).toBe('UNSUPPORTED');
  });

  describe('Range', () => {
    const url = () => `${cache.url}/v2/team/app/blobs/${layer.digest}`;

    it('a cold request for a range gets the right bytes (served from the fill)', async () => {
      const answer = await get(url(), { headers: { range: 'bytes=100-1099' } });
      expect(answer.status).toBe(206);
      expect(answer.headers['content-range']).toBe(`bytes 100-1099/${layer.data.length}`);
      expect(answer.body.equals(layer.data.subarray(100, 1100))).toBe(true);
    });

    it.each([
      ['bytes=0-0', 0, 1],
      ['bytes=10-99', 10, 100],
      ['bytes=150000-', 150_000, undefined],
      ['bytes=-50', -50, undefined],
      ['bytes=100-999999999', 100, undefined],
    ])('a cached blob serves %s', async (range, start, end) => {
      await waitFor('the blob to be committed', async () => existsSync(join(cache.root, blobKey(digestOf(layer.digest)))));
      const answer = await get(url(), { headers: { range } });
      expect(answer.status).toBe(206);
      const expected = layer.data.subarray(start < 0 ? layer.data.length + start : start, end);
      expect(answer.body.equals(expected)).toBe(true);
      expect(Number(answer.headers['content-length'])).toBe(expected.length);
    });

    it('an unsatisfiable range is 416 with the size; a multi-range request gets the whole blob', async () => {
      const beyond = await get(url(), { headers: { range: `bytes=${layer.data.length}-` } });
      expect(beyond.status).toBe(416);
      expect(beyond.headers['content-range']).toBe(`bytes */${layer.data.length}`);
      const multi = await get(url(), { headers: { range: 'bytes=0-1,5-6' } });
      expect(multi.status).toBe(200);
      expect(multi.body.equals(layer.data)).toBe(true);
    });

    it('HEAD of a cached blob tells its size and digest, without a body', async () => {
      const answer = await get(url(), { method: 'HEAD' });
      expect(answer.status).toBe(200);
      expect(Number(answer.headers['content-length'])).toBe(layer.data.length);
      expect(answer.headers['docker-content-digest']).toBe(layer.digest);
      expect(answer.body.length).toBe(0);
    });
  });

  it('a corrupted upstream blob: the client sees a cut transfer and nothing is committed', async () => {
    const data = randomBytes(300_000);
    const digest = await pushBlob(upstream.url, 'team/app', data);
    const hex = digest.slice('sha256:'.length);
    // Same length, other bytes: distribution serves its data file as is, with the original Content-Length.
    writeFileSync(join(upstream.dir, 'data/docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data'), randomBytes(data.length));
    const answer = await get(`${cache.url}/v2/team/app/blobs/${digest}`);
    expect(answer.status).toBe(200);
    expect(Number(answer.headers['content-length'])).toBe(data.length);
    expect(answer.cut).toBe(true);
    expect(answer.body.length).toBeLessThan(data.length);
    await waitFor('the fill to give up', async () =>
      cache.logs.some((l) => l.msg === 'blob fill failed; nothing committed' && l.digest === digest),
    );
    expect(existsSync(join(cache.root, blobKey(digestOf(digest))))).toBe(false);
    expect(listFiles(join(cache.root, '_uploads'))).toEqual([]);
    // The next request tries again (and fails again the same way): nothing bad was remembered.
    const again = await get(`${cache.url}/v2/team/app/blobs/${digest}`);
    expect(again.cut).toBe(true);
  });

  it('concurrent cold GETs of one blob make exactly one upstream GET, and all get the right bytes', async () => {
    const data = randomBytes(3 * 1024 * 1024);
    const digest = await pushBlob(upstream.url, 'team/app', data);
    await settleLog();
    upstream.clearLog();
    const answers = await Promise.all(Array.from({ length: 10 }, () => get(`${cache.url}/v2/team/app/blobs/${digest}`)));
    for (const answer of answers) {
      expect(answer.status).toBe(200);
      expect(answer.cut).toBe(false);
      expect(sha256(answer.body)).toBe(digest);
    }
    await settleLog();
    expect(upstream.blobGets().filter((e) => e.path.endsWith(digest))).toHaveLength(1);
  });

  it('a stalled client does not hold back the fill or other clients, and a client that leaves cancels nothing', async () => {
    const data = randomBytes(8 * 1024 * 1024);
    const digest = await pushBlob(upstream.url, 'team/app', data);
    const url = `${cache.url}/v2/team/app/blobs/${digest}`;
    // Client 1 reads the head of the response and then stops reading (its socket buffers fill up).
    const stalled = await new Promise<IncomingMessage>((resolve) => httpRequest(url, (res) => resolve(res)).end());
    await new Promise((r) => stalled.once('data', r));
    stalled.pause();
    // Client 2 reads everything, at full speed, while client 1 stalls.
    const fast = await get(url);
    expect(fast.cut).toBe(false);
    expect(sha256(fast.body)).toBe(digest);
    // Client 1 leaves; the blob is in storage regardless.
    stalled.destroy();
    await waitFor('the blob to be committed', async () => existsSync(join(cache.root, blobKey(digestOf(digest)))));
    // A client that leaves right away does not stop a fill either.
    const other = randomBytes(2 * 1024 * 1024);
    const otherDigest = await pushBlob(upstream.url, 'team/app', other);
    const gone = httpRequest(`${cache.url}/v2/team/app/blobs/${otherDigest}`, (res) => res.destroy());
    gone.on('error', () => undefined);
    gone.end();
    await waitFor('the abandoned fill to be committed', async () => existsSync(join(cache.root, blobKey(digestOf(otherDigest)))));
    const stored = await get(`${cache.url}/v2/team/app/blobs/${otherDigest}`);
    expect(createHash('sha256').update(stored.body).digest('hex')).toBe(otherDigest.slice(7));
  });

  it('upstream 404s are remembered for notfoundttl: a storm of pulls of a missing tag or blob reaches the upstream once', async () => {
    await settleLog();
    upstream.clearLog();
    const missingBlob = `sha256:${'0'.repeat(64)}`;
    for (let i = 0; i < 5; i++) {
      const tag = await get(`${cache.url}/v2/team/app/manifests/missing-tag`, { headers: { accept: image.mediaType } });
      expect(tag.status).toBe(404);
      expect(errorCode(tag)).toBe('MANIFEST_UNKNOWN');
      const blob = await get(`${cache.url}/v2/team/app/blobs/${missingBlob}`);
      expect(blob.status).toBe(404);
      expect(errorCode(blob)).toBe('BLOB_UNKNOWN');
    }
    await settleLog();
    expect(upstream.requests({ pathIncludes: 'missing-tag' })).toHaveLength(1);
    expect(upstream.requests({ pathIncludes: missingBlob })).toHaveLength(1);
    // Another client (another credential) is asked about separately: one client's 404 never answers another.
    await get(`${cache.url}/v2/team/app/manifests/missing-tag`, {
      headers: { accept: image.mediaType, authorization: 'Basic b3RoZXI6eA==' },
    });
    await settleLog();
    expect(upstream.requests({ pathIncludes: 'missing-tag' })).toHaveLength(2);
  });

  it('manifests by tag and digest carry Docker-Content-Digest and the upstream Content-Type; HEAD has no body', async () => {
    const byTag = await get(`${cache.url}/v2/team/app/manifests/v1`, { headers: { accept: image.mediaType } });
    expect(byTag.status).toBe(200);
    expect(byTag.headers['docker-content-digest']).toBe(image.digest);
    expect(byTag.headers['content-type']).toBe(image.mediaType);
    expect(byTag.body.equals(image.manifest)).toBe(true);
    const head = await get(`${cache.url}/v2/team/app/manifests/${image.digest}`, { method: 'HEAD', headers: { accept: image.mediaType } });
    expect(head.status).toBe(200);
    expect(Number(head.headers['content-length'])).toBe(image.manifest.length);
    expect(head.body.length).toBe(0);
    const missing = await get(`${cache.url}/v2/team/app/manifests/nope`, { headers: { accept: image.mediaType } });
    expect(missing.status).toBe(404);
    expect(errorCode(missing)).toBe('MANIFEST_UNKNOWN');
  });
});

function digestOf(text: string) {
  const parsed = parseDigest(text);
  if (!parsed.ok) throw new Error(`bad digest ${text}`);
  return parsed.value;
}

/** Every file under `dir`, relative, sorted (empty when it does not exist). */
function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return (readdirSync(dir, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[])
    .filter((e) => e.isFile())
    .map((e) => join((e as unknown as { parentPath?: string; path: string }).parentPath ?? e.path, e.name).slice(dir.length))
    .sort();
}
