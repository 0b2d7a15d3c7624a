/**
 * FillRegistry.source: where a fill's bytes come from is known before the source answers, so the blob handler can
 * authorize the clients of a fill streamed from another replica while that stream opens (bench/results/wan-workers.md,
 * row a1). Two registries on one filesystem store, each with a real FillCoordinator and replica endpoint on loopback:
 * the one whose upstream GET has not answered yet already says `upstream`, the other already says `replica`, while
 * both fills are still waiting for their first byte; then the other replica gets the exact bytes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { parseAddr } from '../../../lib/cache/addr';
import { FillRegistry, type FillOpen, type FillStart } from '../../../lib/cache/blob-fill';
import { BusyKeys } from '../../../lib/cache/busy';
import { FillCoordinator } from '../../../lib/cache/fill-coordinator';
import { silentLogger } from '../../../lib/cache/log';
import { blobKey, parseDigest, type Digest } from '../../../lib/cache/reference';
import { startReplicaEndpoint, type ReplicaEndpoint } from '../../../lib/cache/replica-endpoint';
import { FilesystemDriver } from '../../../lib/cache/storage/filesystem';
import { until } from '../../../harness/tools';

const SECRET = 'fill-source-test';

/** An upstream answer that never comes: rejects once the fill is aborted (after each test). */
const aborted = (signal: AbortSignal) =>
  new Promise<FillOpen>((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))));

/** Settles to 'pending' if `promise` has not settled within a few event-loop turns. */
async function state<T>(promise: Promise<T>): Promise<T | 'pending'> {
  return Promise.race([promise, new Promise<'pending'>((resolve) => setTimeout(() => resolve('pending'), 50))]);
}

describe('FillRegistry.source with fill sharing', () => {
  let root: string;
  const endpoints: ReplicaEndpoint[] = [];
  const registries: FillRegistry[] = [];

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'dtr-cache-fill-source-'));
  });

  afterEach(async () => {
    for (const r of registries.splice(0)) {
      r.abortAll();
      await r.settled();
    }
    await Promise.all(endpoints.splice(0).map((e) => e.close()));
    rmSync(root, { recursive: true, force: true });
  });

  /** A replica: its registry, coordinated through the shared store, served by its own endpoint. */
  async function replica(name: string): Promise<FillRegistry> {
    const storage = new FilesystemDriver({ rootdirectory: join(root, 'store') });
    let fills: FillRegistry | undefined;
    const endpoint = await startReplicaEndpoint({
      secret: SECRET,
      addr: '127.0.0.1:0',
      fills: () => fills,
      storage,
      log: silentLogger,
      parseAddr,
    });
    endpoints.push(endpoint);
    const coordinator = new FillCoordinator({ storage, address: endpoint.address, secret: SECRET, log: silentLogger });
    fills = new FillRegistry({
      storage,
      spoolDir: join(root, `spool-${name}`),
      timeoutMs: 30_000,
      busy: new BusyKeys(),
      log: silentLogger,
      coordinator,
    });
    registries.push(fills);
    return fills;
  }

  it('says upstream or replica before the source answers; the other replica then gets the exact bytes', async () => {
    const data = randomBytes(256 * 1024);
    const parsed = parseDigest(`sha256:${createHash('sha256').update(data).digest('hex')}`);
    if (!parsed.ok) throw new Error('unreachable');
    const digest: Digest = parsed.value;
    const [a, b] = [await replica('a'), await replica('b')];

    // A's upstream GET answers only when the test says so.
    let answer!: (open: FillOpen) => void;
    let asked = false;
    const upstreamAnswer = new Promise<FillOpen>((resolve) => (answer = resolve));
    const startA = a.begin(digest, blobKey(digest), (signal) => {
      asked = true;
      return Promise.race([upstreamAnswer, aborted(signal)]);
    });
    await until(() => asked, 5_000);
    expect(await a.source(digest)).toBe('upstream');

    const startB = b.begin(digest, blobKey(digest), () => {
      throw new Error('the other replica must not fetch from the upstream');
    });
    expect(await state(b.source(digest) as Promise<string>)).toBe('replica');
    // Neither fill has a source yet: A's upstream has not answered, so A's endpoint has not answered B either.
    expect(await state(startA)).toBe('pending');
    expect(await state(startB)).toBe('pending');

    const body = new PassThrough();
    answer({ ok: true, body, size: data.length });
    body.end(data);
    const [sa, sb] = (await Promise.all([startA, startB])) as [FillStart, FillStart];
    expect(sa).toMatchObject({ ok: true, fetched: true });
    expect(sb).toMatchObject({ ok: true, fetched: false });
    if (!sb.ok) throw new Error('unreachable');
    const reader = sb.fill.reader();
    if (!reader) throw new Error('the fill ended before a reader could join');
    const chunks: Buffer[] = [];
    for await (const chunk of reader) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
  });

  it('without a coordinator, a fill says upstream at once', async () => {
    const storage = new FilesystemDriver({ rootdirectory: join(root, 'solo') });
    const fills = new FillRegistry({ storage, spoolDir: join(root, 'spool'), timeoutMs: 30_000, busy: new BusyKeys(), log: silentLogger });
    registries.push(fills);
    const parsed = parseDigest(`sha256:${'c'.repeat(64)}`);
    if (!parsed.ok) throw new Error('unreachable');
    // An upstream that never answers (until the fill is aborted after the test).
    void fills.begin(parsed.value, blobKey(parsed.value), aborted);
    expect(await state(fills.source(parsed.value) as Promise<string>)).toBe('upstream');
  });
});
