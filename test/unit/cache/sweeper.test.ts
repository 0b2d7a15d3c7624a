/** The sweeper against the real FilesystemDriver in a temp dir: TTL from last access, LRU size bound, busy keys, replicas. */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCacheMetrics } from '../../../lib/cache/metrics';
import { FilesystemDriver } from '../../../lib/cache/storage/filesystem';
import { manifestKeyOfTag, sweep, Sweeper } from '../../../lib/cache/sweeper';

const DAY = 86_400_000;
let root: string;
let storage: FilesystemDriver;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'dtr-cache-sweeper-'));
  storage = new FilesystemDriver({ rootdirectory: root });
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
async function put(key: string, data: Buffer | string): Promise<void> {
  const w = await storage.write(key);
  w.stream.end(data);
  await w.commit();
}
/** Stores a random blob of `size` bytes last accessed `ageMs` ago; returns its key. */
async function blob(size: number, ageMs: number): Promise<string> {
  const data = randomBytes(size);
  const h = hex(data);
  const key = `blobs/sha256/${h.slice(0, 2)}/${h}/data`;
  await put(key, data);
  setAge(key, ageMs);
  return key;
}
function setAge(key: string, ageMs: number): void {
  const t = new Date(Date.now() - ageMs);
  utimesSync(join(root, key), t, t);
}
async function keys(prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for await (const info of storage.list(prefix)) out.push(info.key);
  return out.sort();
}
const idle = () => false;

describe('sweep', () => {
  it('removes content not accessed within the TTL, counted from last access, and spares busy keys', async () => {
    const old = await blob(10, 2 * DAY);
    const oldButBusy = await blob(10, 2 * DAY);
    const recent = await blob(10, DAY / 2);
    const oldButTouched = await blob(10, 2 * DAY);
    await storage.touch(oldButTouched); // a pull just now: last access, not fill time, counts
    const metrics = createCacheMetrics();

    const result = await sweep(storage, { blobTtlMs: DAY, isBusy: (k) => k === oldButBusy, metrics });

    expect(result.evicted.map((e) => e.key)).toEqual([old]);
    expect(result.spared).toEqual([oldButBusy]);
    expect(await keys('blobs/')).toEqual([oldButBusy, recent, oldButTouched].sort());
    expect(metrics.evictions.get({ reason: 'ttl' })).toBe(1);
    expect(result.storedBytes).toBe(30);
  });

  it('keeps the store under maxsize by evicting least recently used first, skipping busy keys', async () => {
    const a = await blob(100, 4000);
    const b = await blob(100, 3000);
    const c = await blob(100, 2000);
    const d = await blob(100, 1000);

    const first = await sweep(storage, { maxSizeBytes: 250, isBusy: idle });
    expect(first.evicted.map((e) => [e.key, e.reason])).toEqual([
      [a, 'size'],
      [b, 'size'],
    ]);
    expect(first.storedBytes).toBe(200);

    const e = await blob(100, 500);
    const second = await sweep(storage, { maxSizeBytes: 150, isBusy: (k) => k === c });
    expect(second.evicted.map((x) => x.key)).toEqual([d, e]);
    expect(second.spared).toContain(c);
    expect(await keys('blobs/')).toEqual([c]);
  });

  it('drops tags whose manifest was evicted and keeps the others', async () => {
    const gone = Buffer.from('{"schemaVersion":2,"gone":true}');
    const kept = Buffer.from('{"schemaVersion":2,"kept":true}');
    const goneKey = `manifests/sha256/${hex(gone).slice(0, 2)}/${hex(gone)}/data`;
    const keptKey = `manifests/sha256/${hex(kept).slice(0, 2)}/${hex(kept)}/data`;
    await put(goneKey, gone);
    await put(keptKey, kept);
    setAge(goneKey, 3 * DAY);
    await put('tags/team/app/old', `sha256:${hex(gone)}`);
    await put('tags/team/app/new', JSON.stringify({ digest: `sha256:${hex(kept)}`, fetchedAt: Date.now() }));
    await put('tags/team/app/odd', 'not a digest');

    const result = await sweep(storage, { blobTtlMs: DAY, isBusy: idle });

    expect(result.evicted.map((e) => [e.key, e.reason])).toEqual([
      [goneKey, 'ttl'],
      ['tags/team/app/old', 'orphan-tag'],
    ]);
    expect(await keys('tags/')).toEqual(['tags/team/app/new', 'tags/team/app/odd']);
    expect(manifestKeyOfTag(`sha256:${hex(kept)}`)).toBe(keptKey);
  });

  it('is safe on several replicas at once: every expired key goes, the fresh one stays, with no errors', async () => {
    const expired = await Promise.all(Array.from({ length: 40 }, () => blob(64, 2 * DAY)));
    const fresh = await blob(64, 1000);
    const replicas = [storage, new FilesystemDriver({ rootdirectory: root }), new FilesystemDriver({ rootdirectory: root })];

    const results = await Promise.all(replicas.map((s) => sweep(s, { blobTtlMs: DAY, isBusy: idle })));

    expect(results.map((r) => r.errors)).toEqual([0, 0, 0]);
    // Two replicas may both delete one key in a race (deleting a missing key is fine), so compare as sets.
    const evicted = new Set(results.flatMap((r) => r.evicted.map((e) => e.key)));
    expect([...evicted].sort()).toEqual([...expired].sort());
    expect(await keys('blobs/')).toEqual([fresh]);
  });

  it('does not evict a blob another replica touched after the listing', async () => {
    const key = await blob(10, 2 * DAY);
    let touched = false;
    // isBusy is asked just before the fresh stat: touch from "another replica" at that moment.
    const result = await sweep(storage, {
      blobTtlMs: DAY,
      isBusy: () => {
        if (!touched) {
          touched = true;
          utimesSync(join(root, key), new Date(), new Date());
        }
        return false;
      },
    });
    expect(result.evicted).toEqual([]);
    expect(await keys('blobs/')).toEqual([key]);
  });

  it('removes temp files of writes older than the longest fill, and not a write in progress', async () => {
    const dead = await storage.write('blobs/sha256/aa/dead/data');
    dead.stream.write(randomBytes(1000));
    await new Promise((r) => setTimeout(r, 50));
    const [deadFile] = readdirSync(join(root, '_uploads'));
    const t = new Date(Date.now() - 2 * 3_600_000);
    utimesSync(join(root, '_uploads', deadFile), t, t);
    const live = await storage.write('blobs/sha256/bb/live/data');
    live.stream.write(randomBytes(1000));
    await new Promise((r) => setTimeout(r, 50));

    const result = await sweep(storage, { isBusy: idle, staleWriteAgeMs: 3_600_000 });

    expect(result.staleWritesRemoved).toBe(1);
    expect(readdirSync(join(root, '_uploads'))).toHaveLength(1);
    live.stream.end();
    await live.commit();
    await dead.abort();
    expect(await keys('blobs/')).toEqual(['blobs/sha256/bb/live/data']);
  });
});

describe('Sweeper', () => {
  it('sweeps at start and then every interval, never overlapping, and stops cleanly', async () => {
    const first = await blob(10, 2 * DAY);
    let calls = 0;
    const sweeper = new Sweeper(storage, 100, {
      blobTtlMs: DAY,
      isBusy: () => {
        calls++;
        return false;
      },
    });
    sweeper.start();
    const deadline = Date.now() + 5000;
    while ((await keys('blobs/')).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(await keys('blobs/')).toEqual([]);

    const later = await blob(10, 2 * DAY);
    while ((await keys('blobs/')).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(await keys('blobs/')).toEqual([]);
    await sweeper.stop();
    expect(calls).toBeGreaterThanOrEqual(2);

    await blob(10, 2 * DAY);
    await new Promise((r) => setTimeout(r, 300));
    expect(await keys('blobs/')).toHaveLength(1); // stopped: nothing more is removed
    expect([first, later]).toHaveLength(2);
  });
});
