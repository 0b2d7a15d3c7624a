/**
 * The sweeper against the real FilesystemDriver in a temp dir: TTL from last access, LRU size bound, busy keys,
 * replicas; the Sweeper's sharded passes, its lease (one sweeper per store) and its size bookkeeping; the tags of
 * an evicted manifest found through their back-references.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCacheMetrics } from '../../../lib/cache/metrics';
import { FilesystemDriver } from '../../../lib/cache/storage/filesystem';
import { CacheEvents } from '../../../lib/cache/events';
import { manifestKeyOfTag, SHARDS, sweep, Sweeper } from '../../../lib/cache/sweeper';
import { ManifestStore, type StoredManifest } from '../../../lib/cache/manifest-store';
import { parseDigest, tagKey, tagRefsPrefix } from '../../../lib/cache/reference';
import { sleep } from '../../../harness/tools';

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
    expect((await metrics.evictions.get()).values.find((v) => v.labels.reason === 'ttl')?.value).toBe(1);
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
    await sleep(50);
    const [deadFile] = readdirSync(join(root, '_uploads'));
    const t = new Date(Date.now() - 2 * 3_600_000);
    utimesSync(join(root, '_uploads', deadFile), t, t);
    const live = await storage.write('blobs/sha256/bb/live/data');
    live.stream.write(randomBytes(1000));
    await sleep(50);

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
  const MINUTE = 60_000;
  /** A clock the test moves; file times stay real, so "now" starts at the real time. */
  function clock() {
    let t = Date.now();
    return { now: () => t, advance: (ms: number) => void (t += ms) };
  }
  /** A blob in shard `shard` (0-255) of `size` bytes, last accessed `ageMs` ago. */
  async function blobInShard(shard: number, size: number, ageMs: number, name = randomBytes(31).toString('hex')): Promise<string> {
    const h = shard.toString(16).padStart(2, '0') + name.slice(0, 62);
    const key = `blobs/sha256/${h.slice(0, 2)}/${h}/data`;
    await put(key, randomBytes(size));
    setAge(key, ageMs);
    return key;
  }

  it('lists a few shards per pass, every shard within a quarter of blobttl: an expired blob goes within 1.25 x blobttl', async () => {
    const c = clock();
    const ttl = 7 * DAY;
    const sweeper = new Sweeper(storage, 10 * MINUTE, { blobTtlMs: ttl, isBusy: idle, now: c.now });
    // 7 days: a quarter is 42 h, minus a takeover (2.5 min) and a pass: 250 passes of 10 min list the 256 shards.
    expect(sweeper.passesPerCycle).toBe(250);
    const expired = await blobInShard(0xfe, 10, ttl + MINUTE);
    const fresh = await blobInShard(0xfe, 10, ttl / 2);
    let passes = 0;
    let listed = 0;
    const counting = new FilesystemDriver({ rootdirectory: root });
    const list = counting.list.bind(counting);
    counting.list = (prefix: string) => {
      if (prefix.startsWith('blobs/')) listed++;
      return list(prefix);
    };
    const counted = new Sweeper(counting, 10 * MINUTE, { blobTtlMs: ttl, isBusy: idle, now: c.now });
    while ((await keys('blobs/')).includes(expired)) {
      const result = await counted.tick();
      if (result) passes++;
      c.advance(10 * MINUTE);
      expect(passes).toBeLessThanOrEqual(sweeper.passesPerCycle);
    }
    expect(passes).toBe(249); // shard 0xfe = 254 of 256, in pass 254 x 250 / 256 (0-based) of the cycle
    expect(listed).toBe(255 * 2); // shards 0 to 254 listed once each, sha256 and sha512 blob prefixes
    expect(await keys('blobs/')).toEqual([fresh]);
    // Worst case: a full cycle after expiry plus a pass, within a quarter of the TTL.
    expect((sweeper.passesPerCycle + 1) * 10 * MINUTE).toBeLessThanOrEqual(ttl / 4);
  });

  it('keeps passes on a grid of the interval, so ticks that come late do not stretch the cycle', async () => {
    const c = clock();
    const sweeper = new Sweeper(storage, 10 * MINUTE, { blobTtlMs: 7 * DAY, isBusy: idle, now: c.now, lease: false });
    let passes = 0;
    for (let tick = 0; tick < 70; tick++) {
      if (await sweeper.tick()) passes++;
      c.advance(7 * MINUTE); // a pass is due every 10 min, ticks come every 7: each pass starts up to 4 min late
    }
    expect(passes).toBeGreaterThanOrEqual(48); // 490 min: 49 passes on the grid (35 if each late start added up)
  });

  it('sweeps everything each pass when the interval is long against blobttl, as before', async () => {
    const sweeper = new Sweeper(storage, 100, { blobTtlMs: 1000, isBusy: idle, leaseRenewMs: 50 });
    expect(sweeper.passesPerCycle).toBe(1);
    const old = await Promise.all([blobInShard(0, 10, 5000), blobInShard(0x80, 10, 5000), blobInShard(0xff, 10, 5000)]);
    const result = await sweeper.tick();
    expect(result!.evicted.map((e) => e.key).sort()).toEqual(old.sort());
    await sweeper.stop();
  });

  it('keeps the store under maxsize least recently used first across shards, acting on fills other replicas report at the next tick', async () => {
    const c = clock();
    const events = new CacheEvents();
    const options = { maxSizeBytes: 1000, isBusy: idle, now: c.now, leaseRenewMs: MINUTE, events };
    const holder = new Sweeper(storage, 10 * MINUTE, options);
    const otherEvents = new CacheEvents();
    const other = new Sweeper(new FilesystemDriver({ rootdirectory: root }), 10 * MINUTE, { ...options, events: otherEvents });
    // Ten blobs of 100 bytes in ten shards, the oldest in the last shard: 1000 bytes, at the bound.
    const stored = [];
    for (let i = 0; i < 10; i++) stored.push(await blobInShard(25 * i, 100, (i + 1) * MINUTE));
    // The first passes learn every shard's size: 2 shards a pass plus 32 never listed, so 8 passes.
    let first = await holder.tick();
    expect(first!.storedBytes).toBeLessThan(1000);
    for (let pass = 1; pass < 8; pass++) {
      c.advance(10 * MINUTE);
      first = await holder.tick();
      expect(first!.evicted).toEqual([]);
    }
    expect(first!.storedBytes).toBe(1000);
    expect(await other.tick()).toBeUndefined(); // not the holder

    // The other replica fills 250 bytes (the file, and its fillEnded event) and reports them at its next tick.
    other.start();
    const filled = await blobInShard(7, 250, 0);
    otherEvents.emit('fillEnded', { digest: `sha256:07${'0'.repeat(62)}`, ok: true, bytes: 250 });
    expect(await other.tick()).toBeUndefined();
    await other.stop();
    expect((await keys('_sweeper/fills/')).length).toBe(1);

    c.advance(MINUTE); // the holder's next tick, not a pass: the reported fill is added and acted on at once
    const second = await holder.tick();
    // 1250 bytes: the three least recently used go (the last three shards' blobs), not the new one.
    expect(second!.evicted.map((e) => [e.key, e.reason])).toEqual([
      [stored[9], 'size'],
      [stored[8], 'size'],
      [stored[7], 'size'],
    ]);
    expect(second!.storedBytes).toBe(950);
    expect(await keys('_sweeper/fills/')).toEqual([]);
    expect(await keys('blobs/')).toContain(filled);
    await holder.stop();
  });

  it('freeBytes evicts least recently used content now, on any replica, and spares busy keys', async () => {
    const a = await blobInShard(0x10, 100, 5 * MINUTE);
    const b = await blobInShard(0xa0, 100, 4 * MINUTE);
    const c = await blobInShard(0x30, 100, 3 * MINUTE);
    const d = await blobInShard(0x05, 100, 2 * MINUTE);
    const sweeper = new Sweeper(storage, 10 * MINUTE, { blobTtlMs: DAY, isBusy: (k) => k === b });
    const result = await sweeper.freeBytes(150);
    expect(result.evicted.map((e) => e.key)).toEqual([a, c]);
    expect(result.spared).toEqual([b]);
    expect(await keys('blobs/')).toEqual([b, d].sort());
  });

  it('one sweeper per store: the lease goes to one replica, passes to another on stop, and is taken over after its holder dies', async () => {
    const c = clock();
    const make = () =>
      new Sweeper(new FilesystemDriver({ rootdirectory: root }), 10 * MINUTE, {
        blobTtlMs: DAY,
        isBusy: idle,
        now: c.now,
        leaseRenewMs: MINUTE,
      });
    const replicas = [make(), make(), make()];
    await Promise.all(replicas.map((r) => r.tick()));
    expect(replicas.filter((r) => r.isLeader)).toHaveLength(1);
    const first = replicas.findIndex((r) => r.isLeader);

    // A clean stop releases the lease: another replica takes it at its next tick.
    await replicas[first].stop();
    const rest = replicas.filter((_, i) => i !== first);
    await Promise.all(rest.map((r) => r.tick()));
    expect(rest.filter((r) => r.isLeader)).toHaveLength(1);
    const second = rest.find((r) => r.isLeader)!;
    const waiting = rest.find((r) => !r.isLeader)!;

    // The holder dies (no more renewals, no release): the lease is taken over once 4 renewals were missed.
    c.advance(3 * MINUTE);
    await waiting.tick();
    expect(waiting.isLeader).toBe(false);
    const lease = (await keys('_sweeper/lease/'))[0];
    const past = new Date(Date.now() - 5 * MINUTE);
    utimesSync(join(root, lease), past, past); // last renewed 5 minutes ago by the store's clock
    await waiting.tick();
    expect(waiting.isLeader).toBe(true);
    await second.tick(); // the old holder, back from a pause, finds a newer generation and stands down
    expect(second.isLeader).toBe(false);
    expect(await keys('_sweeper/lease/')).toHaveLength(1);
    await Promise.all(rest.map((r) => r.stop()));
    expect(await keys('_sweeper/lease/')).toEqual([]);
  });

  it('ticks at start and then every renewal period, and stops cleanly', async () => {
    const sweeper = new Sweeper(storage, 100, { blobTtlMs: 1000, isBusy: idle });
    sweeper.start();
    await blobInShard(0x42, 10, 5000);
    const deadline = Date.now() + 5000;
    while ((await keys('blobs/')).length > 0 && Date.now() < deadline) await sleep(20);
    expect(await keys('blobs/')).toEqual([]);
    await sweeper.stop();
    await blobInShard(0x43, 10, 5000);
    await sleep(300);
    expect(await keys('blobs/')).toHaveLength(1); // stopped: nothing more is removed
  });
});

describe('tags of an evicted manifest, through back-references', () => {
  const MINUTE = 60_000;
  const TTL = 40 * MINUTE; // against a 10-minute interval: every pass lists every shard
  const tagTtl = 30_000;
  function manifest(text: string): StoredManifest & { key: string } {
    const bytes = Buffer.from(text);
    const digest = parseDigest(`sha256:${hex(bytes)}`);
    if (!digest.ok) throw new Error('unreachable');
    return {
      digest: digest.value,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      bytes,
      key: `manifests/sha256/${hex(bytes).slice(0, 2)}/${hex(bytes)}/data`,
    };
  }
  const record = (m: StoredManifest) => ({ digest: m.digest.text, mediaType: m.mediaType, checkedAt: Date.now() });
  /**
   * Last accessed so that the first pass (10 simulated minutes from now) keeps `key` and the second expires it. Set
   * before the first pass: the index it writes holds the access (file times only ever move forward in use).
   */
  const expiresAtSecondPass = (key: string) => setAge(key, TTL - 15 * MINUTE);

  /** A sweeper (no lease, one pass lists everything) on a driver that records which tags it reads. */
  function sweeper(isBusy: (key: string) => boolean = idle) {
    let t = Date.now();
    const driver = new FilesystemDriver({ rootdirectory: root });
    const tagReads: string[] = [];
    const read = driver.read.bind(driver);
    driver.read = (key, range) => {
      if (key.startsWith('tags/')) tagReads.push(key);
      return read(key, range);
    };
    const s = new Sweeper(driver, 10 * MINUTE, { blobTtlMs: TTL, isBusy, now: () => t, lease: false });
    return { s, tagReads, pass: (after = 10 * MINUTE) => ((t += after), s.tick()) };
  }

  let store: ManifestStore;
  let old: ReturnType<typeof manifest>;
  let current: ReturnType<typeof manifest>;
  beforeEach(async () => {
    store = new ManifestStore(storage, tagTtl);
    old = manifest('{"schemaVersion":2,"old":true}');
    current = manifest('{"schemaVersion":2,"current":true}');
    await store.writeManifest(old);
    await store.writeManifest(current);
    await store.writeTag('team/app', 'v1', record(old));
    await store.writeTag('team/app', 'v1-alias', record(old));
    await store.writeTag('team/app', 'v2', record(current));
    // Named `old` first, then re-pointed to `current`: its back-reference under `old` stays until `old` goes.
    await store.writeTag('team/moved', 'latest', record(old));
    await store.writeTag('team/moved', 'latest', record(current));
  });

  it('evicting a manifest removes exactly the tags naming it, reading only the tags that ever named it', async () => {
    const { s, tagReads, pass } = sweeper();
    expect(s.passesPerCycle).toBe(1);
    expiresAtSecondPass(old.key);
    await pass(); // the first cycle's end reads every tag once (a new store); nothing is orphaned yet
    expect(await keys('tags/')).toHaveLength(4);
    tagReads.length = 0;

    const result = await pass();

    expect(result!.evicted.map((e) => [e.key, e.reason])).toEqual([
      [old.key, 'ttl'],
      [tagKey('team/app', 'v1'), 'orphan-tag'],
      [tagKey('team/app', 'v1-alias'), 'orphan-tag'],
    ]);
    expect(result!.errors).toBe(0);
    // The re-pointed tag and the other manifest's tag stay; every back-reference of the evicted manifest is gone.
    expect(await keys('tags/')).toEqual([tagKey('team/app', 'v2'), tagKey('team/moved', 'latest')]);
    expect(await keys(tagRefsPrefix(old.key))).toEqual([]);
    expect(await keys(tagRefsPrefix(current.key))).toHaveLength(2);
    // Not every tag was read: only the three that named the evicted manifest at some point.
    expect(tagReads.sort()).toEqual([tagKey('team/app', 'v1'), tagKey('team/app', 'v1-alias'), tagKey('team/moved', 'latest')]);
    expect(await store.readTag('team/moved', 'latest')).toMatchObject({ digest: current.digest.text });
  });

  it('a tag re-pointed to a new manifest is not removed with the old one, nor written back to it', async () => {
    const { pass } = sweeper();
    expiresAtSecondPass(old.key);
    expiresAtSecondPass(current.key);
    await pass();
    await store.writeManifest(current); // pulled again: written anew, fresh (and not reported: the stat finds it)
    const result = await pass();
    expect(result!.evicted.map((e) => e.key)).toEqual([old.key, tagKey('team/app', 'v1'), tagKey('team/app', 'v1-alias')]);
    expect(await keys('tags/team/moved/')).toEqual([tagKey('team/moved', 'latest')]);
  });

  it('a hit on the manifest during the sweep keeps it and its tags', async () => {
    let hit = false;
    const { pass } = sweeper((key) => {
      // Asked right before the fresh stat of the candidate: another replica serves the manifest at that moment.
      if (key === old.key && !hit) {
        hit = true;
        utimesSync(join(root, old.key), new Date(), new Date());
      }
      return false;
    });
    setAge(old.key, TTL + MINUTE);
    const result = await pass();
    expect(hit).toBe(true);
    expect(result!.evicted).toEqual([]);
    expect(await keys('tags/')).toHaveLength(4);
    expect(await keys(tagRefsPrefix(old.key))).toHaveLength(3);
  });

  it('a tag without a back-reference (written before them) goes at the weekly check of every tag', async () => {
    const { tagReads, pass } = sweeper();
    expiresAtSecondPass(old.key);
    await pass(); // tags checked now
    await put(tagKey('legacy/app', 'v0'), JSON.stringify(record(old))); // no back-reference
    await pass();
    expect(await keys('tags/legacy/')).toEqual([tagKey('legacy/app', 'v0')]); // not found through references
    await pass(7 * DAY - 20 * MINUTE); // a week after the last check, less a pass: not yet
    expect(await keys('tags/legacy/')).toHaveLength(1);
    tagReads.length = 0;
    await pass();
    expect(await keys('tags/legacy/')).toEqual([]);
    expect(tagReads).toEqual([tagKey('legacy/app', 'v0')]); // read by the check of every tag: it has no reference
  });
});
