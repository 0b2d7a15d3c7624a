/**
 * One upstream fetch per blob per site: two cache processes (`dtr-cache serve`) on one shared store (a filesystem
 * directory; azurite, whose conditional create excludes concurrent creators), with the same http.secret, coordinate their fills through a lease per digest in the store. The upstream is a real
 * distribution registry behind a throttling proxy (so fills overlap); its access log counts the blob GETs it served.
 *
 * - 20 concurrent cold GETs of each blob to each replica: exactly one upstream GET per blob, every client gets the
 *   exact digest.
 * - The replica endpoint answers 401, and no byte, to a request without a fresh HMAC of http.secret.
 * - The lease holder killed (SIGKILL) mid-fill: the other replica's clients, already streaming from it, still get the
 *   exact bytes; one replica takes the fill over with a range request where its bytes end (its log says so once); no
 *   lease object is left in the store.
 * - A holder killed mid-fill with nobody streaming from it (so nobody takes its lease over): its lease object is gone
 *   once it expired and a replica (here the killed one, restarted) finished a fill.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { FILL_LEASE_PREFIX } from '../../lib/cache/fill-coordinator';
import { replicaHeaders } from '../../lib/cache/replica-endpoint';
import { createStorage, type StorageDriver } from '../../lib/cache/storage';
import type { CacheConfigInput } from '../../lib/config';
import { startCacheProcess, type CacheProcess } from '../support/cache-process';
import { makeImage, pushBlob, pushImage } from '../../harness/images';
import { pullConcurrently, pulledBlobDigest, upstreamGetsPerBlob } from '../support/pull';
import { TestRegistry } from '../../harness/registry';
import { startAzurite, type AzuriteServer } from '../support/storage-servers';
import { startThrottleProxy, type ThrottleProxy } from '../support/throttle-proxy';
import { waitFor } from '../../harness/tools';

const FAST = 1_000_000_000;
const CLIENTS = 20;
const SECRET = 'site-secret-for-this-test';

const blobDigest = (cache: CacheProcess, repo: string, digest: string, onBytes?: (n: number) => void) =>
  pulledBlobDigest(cache.url, repo, digest, onBytes);

describe.each(['filesystem', 'azure'] as const)('two replicas on one %s store fetch each blob once', (kind) => {
  let upstream: TestRegistry;
  let proxy: ThrottleProxy;
  let root: string | undefined;
  let azurite: AzuriteServer | undefined;
  let a: CacheProcess;
  let b: CacheProcess;
  let config: CacheConfigInput;
  /** The store as the replicas see it, to look at their lease objects. */
  let store: StorageDriver;

  /** Keys of the fill lease objects in the store. */
  async function fillLeases(): Promise<string[]> {
    const keys: string[] = [];
    for await (const info of store.list(FILL_LEASE_PREFIX)) keys.push(info.key);
    return keys;
  }

  beforeAll(async () => {
    upstream = await TestRegistry.start();
    proxy = await startThrottleProxy(upstream.port, FAST);
    let storage: CacheConfigInput['storage'];
    if (kind === 'azure') {
      azurite = await startAzurite();
      const azure = await azurite.container('site', '/cache');
      storage = { azure };
      store = await createStorage({ kind: 'azure', options: azure });
    } else {
      root = mkdtempSync(join(tmpdir(), 'dtr-cache-site-fetch-'));
      storage = { filesystem: { rootdirectory: root } };
      store = await createStorage({ kind: 'filesystem', options: { rootdirectory: root } });
    }
    config = {
      version: '0.1',
      log: { level: 'info' },
      storage,
      http: { addr: '127.0.0.1:0', secret: SECRET, internal: { addr: '127.0.0.1:0' } },
      middleware: { registry: [{ name: 'downstream', options: { upstreams: [proxy.url] } }] },
    };
    [a, b] = await Promise.all([startCacheProcess(config), startCacheProcess(config)]);
  }, 120_000);

  afterAll(async () => {
    await Promise.all([a?.kill(), b?.kill()]);
    await store?.close?.();
    await proxy?.stop();
    await upstream?.stop();
    await azurite?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  }, 60_000);

  test(`${CLIENTS} concurrent cold GETs of each blob to each replica: 1 upstream GET per blob`, async () => {
    const image = makeImage({ layerSizes: [6 * 1024 * 1024, 2 * 1024 * 1024, 4096] });
    await pushImage(upstream.url, 'team/app', 'v1', image);
    upstream.clearLog();
    proxy.rate = 4 * 1024 * 1024; // 1.5 s for the big layer: the GETs of both replicas overlap the fills
    const digests = image.blobs.map((b) => b.digest);
    const { ms, received } = await pullConcurrently([a.url, b.url], 'team/app', digests, CLIENTS);
    for (const { want, got } of received) expect(got).toBe(want);
    const perBlob = await upstreamGetsPerBlob(upstream, digests);
    process.stdout.write(
      `${kind}: 2 replicas x ${CLIENTS} clients x ${digests.length} blobs: upstream GETs per blob ${JSON.stringify(perBlob)}, ${ms} ms\n`,
    );
    const fallbacks = [a, b].flatMap((c) =>
      c
        .output()
        .split('\n')
        .filter((l) => l.includes('cannot be reached')),
    );
    if (fallbacks.length) process.stdout.write(`${kind}: fallbacks to the upstream: ${fallbacks.join(' | ')}\n`);
    expect(perBlob).toEqual(digests.map(() => 1));
  }, 120_000);

  test('the replica endpoint serves no byte without an HMAC of the shared http.secret', async () => {
    const data = randomBytes(64 * 1024);
    const digest = await pushBlob(upstream.url, 'team/small', data);
    expect(await blobDigest(a, 'team/small', digest)).toBe(digest); // cached now: the endpoint would serve it
    const listening = a
      .output()
      .split('\n')
      .find((l) => l.includes('"replica endpoint listening"'));
    const address = (JSON.parse(listening as string) as { advertised: string }).advertised;
    const url = `http://${address}/fills/${digest}?from=0`;
    const statusOf = async (headers: Record<string, string>) => {
      const res = await request(url, { headers });
      const body = Buffer.from(await res.body.arrayBuffer());
      return { status: res.statusCode, bytes: body.length };
    };
    expect(await statusOf({})).toEqual({ status: 401, bytes: 0 });
    expect(await statusOf(replicaHeaders('another-secret', digest, 0))).toEqual({ status: 401, bytes: 0 });
    expect(await statusOf(replicaHeaders(SECRET, digest, 0, Date.now() - 120_000))).toEqual({ status: 401, bytes: 0 }); // replayed later
    expect(await statusOf(replicaHeaders(SECRET, digest, 1))).toEqual({ status: 401, bytes: 0 }); // signed for another offset
    expect(await statusOf(replicaHeaders(SECRET, digest, 0))).toEqual({ status: 200, bytes: data.length });
  });

  test('the lease holder killed mid-fill: the other replica resumes, its clients get the exact bytes', async () => {
    const data = randomBytes(8 * 1024 * 1024);
    const digest = await pushBlob(upstream.url, 'team/big', data);
    upstream.clearLog();
    proxy.rate = 1024 * 1024; // ~8 s for the whole blob: the holder dies in the middle
    let holderBytes = 0;
    const holderClient = blobDigest(a, 'team/big', digest, (n) => (holderBytes += n)).catch((err: Error) => `cut: ${err.message}`);
    await waitFor('the holder streaming', async () => holderBytes > 0, 30_000);
    let followerBytes = 0;
    const followers = Array.from({ length: 5 }, () => blobDigest(b, 'team/big', digest, (n) => (followerBytes += n)));
    await waitFor("the other replica's clients streaming from the holder", async () => followerBytes >= 5 * 1024 * 1024, 30_000);
    const started = Date.now();
    await a.kill();
    expect(await holderClient).toMatch(/^cut: /); // the holder's own client was cut, never given a complete body
    const got = await Promise.all(followers);
    const ms = Date.now() - started;
    for (const d of got) expect(d).toBe(digest);
    await new Promise((r) => setTimeout(r, 500));
    const takeovers = b
      .output()
      .split('\n')
      .filter((l) => l.includes('took over a fill from a replica that stopped'));
    const gets = upstream.blobGets().filter((e) => e.path.endsWith(digest));
    process.stdout.write(
      `${kind}: kill -9 of the holder: 5 clients of the other replica complete ${ms} ms after the kill; upstream GETs ${gets.length} ` +
        `(${gets.map((g) => g.status).join(', ')}); takeovers: ${takeovers.join(' | ')}\n`,
    );
    expect(takeovers).toHaveLength(1);
    expect(JSON.parse(takeovers[0].slice(takeovers[0].indexOf('{'))) as { ranged: boolean }).toMatchObject({ ranged: true });
    // The holder's GET (cut by the kill) and the takeover's range GET: nothing fetched the blob a third time.
    expect(gets.length).toBeLessThanOrEqual(2);
    expect(gets.filter((g) => g.status === 206)).toHaveLength(1);
    // The takeover removed the dead holder's lease, and released its own once committed.
    await waitFor('no fill lease left in the store', async () => (await fillLeases()).length === 0, 10_000);
  }, 120_000);

  test('a holder killed mid-fill with nobody streaming from it: its lease object goes once expired', async () => {
    const data = randomBytes(8 * 1024 * 1024);
    const digest = await pushBlob(upstream.url, 'team/orphan', data);
    proxy.rate = 1024 * 1024;
    let bytes = 0;
    const client = blobDigest(b, 'team/orphan', digest, (n) => (bytes += n)).catch((err: Error) => `cut: ${err.message}`);
    await waitFor('the holder streaming', async () => bytes > 0, 30_000);
    await b.kill();
    expect(await client).toMatch(/^cut: /);
    const dead = await fillLeases();
    expect(dead).toEqual([expect.stringContaining(digest.replace(':', '-'))]); // nobody took it over
    // The replica restarted (as swarm does); once the lease expired (10 s), its next fill removes it.
    b = await startCacheProcess(config);
    proxy.rate = FAST;
    await new Promise((r) => setTimeout(r, 11_000));
    const next = await pushBlob(upstream.url, 'team/next', randomBytes(64 * 1024));
    expect(await blobDigest(b, 'team/next', next)).toBe(next);
    await waitFor("the dead holder's lease removed", async () => (await fillLeases()).length === 0, 10_000);
    expect(b.output()).toContain('removed the fill leases of replicas that stopped mid-fill');
  }, 120_000);
});

describe('a live lease holder the other replica cannot reach (a wrong http.internal.advertise)', () => {
  let upstream: TestRegistry;
  let proxy: ThrottleProxy;
  let root: string;
  let a: CacheProcess;
  let b: CacheProcess;

  beforeAll(async () => {
    upstream = await TestRegistry.start();
    proxy = await startThrottleProxy(upstream.port, FAST);
    root = mkdtempSync(join(tmpdir(), 'dtr-cache-site-unreachable-'));
    const config = (advertise?: string): CacheConfigInput => ({
      version: '0.1',
      log: { level: 'info' },
      storage: { filesystem: { rootdirectory: root } },
      http: { addr: '127.0.0.1:0', secret: SECRET, internal: { addr: '127.0.0.1:0', advertise } },
      middleware: { registry: [{ name: 'downstream', options: { upstreams: [proxy.url] } }] },
    });
    // Port 9 (discard) on loopback: nothing listens there, so connections are refused.
    [a, b] = await Promise.all([startCacheProcess(config('127.0.0.1:9')), startCacheProcess(config())]);
  }, 120_000);

  afterAll(async () => {
    await Promise.all([a?.kill(), b?.kill()]);
    await proxy?.stop();
    await upstream?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  }, 60_000);

  test("the other replica fetches from the upstream itself once the holder renews its lease, before the holder's fill ends", async () => {
    const data = randomBytes(1024 * 1024);
    const digest = await pushBlob(upstream.url, 'team/far', data);
    upstream.clearLog();
    proxy.rate = 64 * 1024; // 16 s for each fetch of the blob
    let holderBytes = 0;
    const holderClient = blobDigest(a, 'team/far', digest, (n) => (holderBytes += n));
    await waitFor('the holder streaming', async () => holderBytes > 0, 30_000);
    const started = Date.now();
    expect(await blobDigest(b, 'team/far', digest)).toBe(digest);
    const ms = Date.now() - started;
    expect(await holderClient).toBe(digest);
    const errors = b
      .output()
      .split('\n')
      .filter((l) => l.includes('the replica holding the fill lease cannot be reached'));
    await new Promise((r) => setTimeout(r, 500));
    const gets = upstream.blobGets().filter((e) => e.path.endsWith(digest));
    process.stdout.write(
      `unreachable holder: the other replica served its client in ${ms} ms; upstream GETs ${gets.length}; ${errors.length} error logged\n`,
    );
    // It did not wait for the holder's whole fill (it would then have found the blob stored: one GET), but for a
    // renewal of the holder's lease after it failed to reach it (2 to 4 s), then fetched (16 s).
    expect(errors).toHaveLength(1);
    expect(gets).toHaveLength(2);
    expect(ms).toBeLessThan(30_000);
  }, 120_000);
});
