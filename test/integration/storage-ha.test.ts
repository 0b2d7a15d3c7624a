/**
 * Two cache processes (`dtr-cache serve`) on one shared store, the client alternating between them: a pull
 * through A fills the store, so the same pull through B makes zero upstream blob GETs; and A killed (SIGKILL)
 * in the middle of a fill leaves nothing half-written, so the client's retry through B gets the whole blob.
 * Run on a shared filesystem store and on S3 (Swift's s3api). The upstream sits behind a throttling proxy so
 * the kill really lands during a fill.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { request } from 'undici';
import type { CacheConfigInput, S3Options } from '../../lib/config';
import { s3ClientConfig } from '../../lib/cache/storage/s3';
import { startCacheProcess, type CacheProcess } from '../support/cache-process';
import { makeImage, pushBlob, pushImage, sha256, type TestImage } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { pulledBlobDigest } from '../support/pull';
import { startSwift, type SwiftServer } from '../support/storage-servers';
import { startThrottleProxy, type ThrottleProxy } from '../support/throttle-proxy';
import { waitFor } from '../../harness/tools';

const FAST = 1_000_000_000;

async function pull(cache: CacheProcess, repo: string, image: TestImage): Promise<void> {
  const manifest = await request(`${cache.url}/v2/${repo}/manifests/v1`, { headers: { accept: image.mediaType } });
  const body = Buffer.from(await manifest.body.arrayBuffer());
  expect(manifest.statusCode).toBe(200);
  expect(sha256(body)).toBe(image.digest);
  for (const blob of image.blobs) expect(await blobDigest(cache, repo, blob.digest)).toBe(blob.digest);
}

const blobDigest = (cache: CacheProcess, repo: string, digest: string) => pulledBlobDigest(cache.url, repo, digest);

describe.each(['filesystem', 's3'] as const)('two caches on one %s store', (kind) => {
  let upstream: TestRegistry;
  let proxy: ThrottleProxy;
  let swift: SwiftServer | undefined;
  let root: string | undefined;
  let a: CacheProcess;
  let b: CacheProcess;

  beforeAll(async () => {
    upstream = await TestRegistry.start();
    proxy = await startThrottleProxy(upstream.port, FAST);
    let storage: CacheConfigInput['storage'];
    if (kind === 's3') {
      swift = await startSwift();
      const s3: S3Options = {
        region: 'us-east-1',
        bucket: 'dtr-cache-ha',
        accesskey: swift.s3.accesskey,
        secretkey: swift.s3.secretkey,
        regionendpoint: swift.url,
        rootdirectory: '/ha',
      };
      const client = new S3Client(s3ClientConfig(s3));
      await client.send(new CreateBucketCommand({ Bucket: s3.bucket }));
      client.destroy();
      storage = { s3: { ...s3, chunksize: 5 * 1024 * 1024 } } as CacheConfigInput['storage'];
    } else {
      root = mkdtempSync(join(tmpdir(), 'dtr-cache-ha-'));
      storage = { filesystem: { rootdirectory: root } };
    }
    const config: CacheConfigInput = {
      version: '0.1',
      log: { level: 'info' },
      storage,
      http: { addr: '127.0.0.1:0' },
      middleware: { registry: [{ name: 'downstream', options: { upstreams: [proxy.url] } }] },
    };
    [a, b] = await Promise.all([startCacheProcess(config), startCacheProcess(config)]);
  }, 300_000);

  afterAll(async () => {
    await Promise.all([a?.kill(), b?.kill()]);
    await proxy?.stop();
    await upstream?.stop();
    await swift?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  }, 60_000);

  test('a pull through A, then through B: zero upstream blob GETs the second time', async () => {
    const image = makeImage({ layerSizes: [3 * 1024 * 1024, 4096] });
    await pushImage(upstream.url, 'team/app', 'v1', image);
    upstream.clearLog();
    await pull(a, 'team/app', image);
    expect(upstream.blobGets().length).toBe(image.blobs.length);
    upstream.clearLog();
    await pull(b, 'team/app', image);
    expect(upstream.blobGets()).toEqual([]);
  });

  test('A killed during a fill: the retry through B gets the whole blob', async () => {
    const data = randomBytes(4 * 1024 * 1024);
    const digest = await pushBlob(upstream.url, 'team/big', data);
    proxy.rate = 512 * 1024; // ~8 s for the whole blob: A dies in the middle
    const res = await request(`${a.url}/v2/team/big/blobs/${digest}`);
    expect(res.statusCode).toBe(200);
    let received = 0;
    const killed = (async () => {
      try {
        for await (const chunk of res.body) {
          received += (chunk as Buffer).length;
          if (received >= 256 * 1024) break;
        }
      } finally {
        await a.kill();
      }
    })();
    await killed;
    expect(received).toBeLessThan(data.length);
    proxy.rate = FAST;
    // The upstream logs a GET when it ends, so A's cut GET can be logged after B's started (CI counted 2): wait for
    // it before counting B's.
    await waitFor("the upstream's log line of A's cut GET", async () => upstream.blobGets().some((e) => e.path.endsWith(digest)));
    upstream.clearLog();
    expect(await blobDigest(b, 'team/big', digest)).toBe(digest);
    expect(upstream.blobGets().length).toBe(1); // B fetched it itself: A's partial fill was never visible
  }, 120_000);
});
