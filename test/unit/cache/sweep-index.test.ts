/**
 * Shard indexes (sweep-index.ts) and the Sweeper's use of them, against the real FilesystemDriver in a temp dir:
 * encoding and changes; a steady-state pass reads indexes and lists nothing; a blob no report named is found by the
 * periodic listing; a hit known only from `touch` (its report lost) keeps a blob the index calls expired; fills and
 * hits reported by another replica reach the index, written by the one holder only.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, unlinkSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { CacheEvents } from '../../../lib/cache/events';
import { FilesystemDriver } from '../../../lib/cache/storage/filesystem';
import {
  applyChanges,
  ChangeLog,
  decodeChanges,
  decodeIndex,
  encodeChanges,
  encodeIndex,
  readIndex,
  type ShardIndex,
} from '../../../lib/cache/sweep-index';
import { SHARDS, Sweeper } from '../../../lib/cache/sweeper';

const MINUTE = 60_000;
const DAY = 86_400_000;
let root: string;
let storage: FilesystemDriver;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'dtr-cache-sweep-index-'));
  storage = new FilesystemDriver({ rootdirectory: root });
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe('index and change encoding', () => {
  it('round-trips an index, compactly', async () => {
    const index: ShardIndex = new Map();
    for (let i = 0; i < 1000; i++)
      index.set(`blobs/sha256/ab/ab${randomBytes(31).toString('hex')}/data`, { size: i * 4096, lastAccess: 1_764_000_000_000 + i });
    const data = await encodeIndex(index);
    await expect(decodeIndex(data)).resolves.toEqual(index);
    expect(data.length / index.size).toBeLessThan(60); // bytes per entry: a key of 87 characters, size and time
    await expect(decodeIndex(Buffer.from('not gzip'))).rejects.toThrow();
    await expect(decodeIndex(gzipSync('blobs/sha256/ab/x/data twelve 3\n'))).rejects.toThrow('malformed index line');
  });

  it('applies changes, the latest winning: fills add, hits raise, removals drop unless accessed after', () => {
    const index: ShardIndex = new Map([
      ['a', { size: 1, lastAccess: 100 }],
      ['b', { size: 2, lastAccess: 100 }],
      ['c', { size: 3, lastAccess: 300 }],
    ]);
    const unknown = applyChanges(index, [
      ['a', { at: 200 }],
      ['b', { at: 150, gone: true }],
      ['c', { at: 200, gone: true }], // accessed (300) after the removal: a refill, kept
      ['d', { at: 250, size: 4 }],
      ['e', { at: 260 }], // a hit on a key the index does not hold: the caller stats it
    ]);
    expect([...index]).toEqual([
      ['a', { size: 1, lastAccess: 200 }],
      ['c', { size: 3, lastAccess: 300 }],
      ['d', { size: 4, lastAccess: 250 }],
    ]);
    expect(unknown).toEqual(['e']);
  });

  it('keeps the latest change per key, bounded in keys, and round-trips reports', () => {
    const log = new ChangeLog(2);
    log.add('a', { at: 1, size: 10 });
    log.add('a', { at: 5 });
    log.add('a', { at: 3 }); // older: ignored
    log.add('b', { at: 2 });
    log.add('c', { at: 4 }); // a third key: dropped and counted
    expect(log.dropped).toBe(1);
    const changes = log.take();
    expect(changes).toEqual([
      ['a', { at: 5, size: 10 }],
      ['b', { at: 2 }],
    ]);
    expect(log.size).toBe(0);
    expect(decodeChanges(encodeChanges(changes))).toEqual(changes);
    expect(decodeChanges(Buffer.from('[[1,2,3]]'))).toEqual([]); // a fill report of older code
  });
});

describe('Sweeper with shard indexes', () => {
  const TTL = 40 * MINUTE; // against a 10-minute interval: every pass processes every shard

  /** A driver that counts its calls by method and kind of key (`list blobs`, `read _sweeper/index`…). */
  function counting(): { driver: FilesystemDriver; calls: Map<string, number> } {
    const driver = new FilesystemDriver({ rootdirectory: root });
    const calls = new Map<string, number>();
    const kind = (key: string) => (key.startsWith('_sweeper/') ? key.split('/', 2).join('/') : key.split('/', 1)[0]);
    for (const method of ['list', 'read', 'stat', 'write', 'delete'] as const) {
      const original = (driver[method] as (key: string) => unknown).bind(driver);
      (driver as unknown as Record<string, unknown>)[method] = (key: string, ...rest: unknown[]) => {
        calls.set(`${method} ${kind(key)}`, (calls.get(`${method} ${kind(key)}`) ?? 0) + 1);
        return (original as (...a: unknown[]) => unknown)(key, ...rest);
      };
    }
    return { driver, calls };
  }
  /** A simulated clock starting at the real time (file times are real). */
  function clock() {
    let t = Date.now();
    return { now: () => t, advance: (ms: number) => void (t += ms) };
  }
  async function blob(shard: number, size: number, ageMs: number): Promise<string> {
    const hex = shard.toString(16).padStart(2, '0') + randomBytes(31).toString('hex');
    const key = `blobs/sha256/${hex.slice(0, 2)}/${hex}/data`;
    const w = await storage.write(key);
    w.stream.end(randomBytes(size));
    await w.commit();
    setAge(key, ageMs);
    return key;
  }
  function setAge(key: string, ageMs: number): void {
    const t = new Date(Date.now() - ageMs);
    utimesSync(join(root, key), t, t);
  }
  async function exists(key: string): Promise<boolean> {
    return (await storage.stat(key)) !== undefined;
  }
  const shardOf = (key: string) => parseInt(key.split('/')[2], 16);

  it('a steady-state pass reads each shard index and lists no content; an expired entry costs one stat, then goes', async () => {
    const c = clock();
    const { driver, calls } = counting();
    const sweeper = new Sweeper(driver, 10 * MINUTE, { blobTtlMs: TTL, isBusy: () => false, now: c.now, lease: false });
    expect(sweeper.passesPerCycle).toBe(1);
    const expiring = await blob(0x10, 100, TTL - 15 * MINUTE); // kept by the first pass, expired at the second
    const fresh = await blob(0x10, 100, 0);
    const other = await blob(0xc3, 100, 0);

    c.advance(10 * MINUTE);
    await sweeper.tick(); // a store without indexes: every shard listed, its index written
    expect(calls.get('list blobs')).toBe(SHARDS * 2); // sha256 and sha512 prefixes
    expect(calls.get('write _sweeper/index')).toBe(SHARDS);
    expect((await readIndex(storage, 0x10))!.has(expiring)).toBe(true);

    calls.clear();
    c.advance(10 * MINUTE);
    const result = await sweeper.tick();
    expect(result!.evicted.map((e) => [e.key, e.reason])).toEqual([[expiring, 'ttl']]);
    expect(calls.get('list blobs')).toBeUndefined();
    expect(calls.get('list manifests')).toBeUndefined();
    expect(calls.get('read _sweeper/index')).toBe(SHARDS);
    expect(calls.get('stat blobs')).toBe(1); // the expired entry, right before its deletion; not the fresh ones
    expect(calls.get('write _sweeper/index')).toBe(1); // only the index that changed
    expect([await exists(expiring), await exists(fresh), await exists(other)]).toEqual([false, true, true]);
    expect((await readIndex(storage, 0x10))!.has(expiring)).toBe(false);
  });

  it('a blob committed without a report is found by the periodic listing, which also drops entries of removed objects', async () => {
    const c = clock();
    const { driver, calls } = counting();
    const sweeper = new Sweeper(driver, 10 * MINUTE, { blobTtlMs: TTL, isBusy: () => false, now: c.now, lease: false });
    const removedByHand = await blob(0x20, 100, 0);
    await sweeper.tick(); // indexes written
    const unreported = await blob(0x20, 100, 2 * TTL); // another tool's write, or a crash before the report
    unlinkSync(join(root, removedByHand));

    c.advance(10 * MINUTE);
    await sweeper.tick();
    expect(await exists(unreported)).toBe(true); // in no index: not seen by a pass that reads indexes
    expect((await readIndex(storage, 0x20))!.has(removedByHand)).toBe(true);

    calls.clear();
    c.advance(7 * DAY); // each shard is listed again once a week
    const result = await sweeper.tick();
    expect(calls.get('list blobs')).toBe(SHARDS * 2);
    expect(result!.evicted.map((e) => e.key)).toEqual([unreported]);
    expect([...(await readIndex(storage, 0x20))!.keys()]).toEqual([]);
  });

  it('a hit known only from touch (its report lost) keeps a blob the index calls expired, and the index learns it', async () => {
    const c = clock();
    const sweeper = new Sweeper(storage, 10 * MINUTE, { blobTtlMs: TTL, isBusy: () => false, now: c.now, lease: false });
    const used = await blob(0x30, 100, TTL - 15 * MINUTE);
    c.advance(10 * MINUTE);
    await sweeper.tick();
    const indexed = (await readIndex(storage, 0x30))!.get(used)!.lastAccess;
    await storage.touch(used); // a hit on another replica whose report never arrives

    c.advance(10 * MINUTE);
    const result = await sweeper.tick();
    expect(result!.evicted).toEqual([]);
    expect(await exists(used)).toBe(true);
    expect((await readIndex(storage, 0x30))!.get(used)!.lastAccess).toBeGreaterThan(indexed + TTL / 2);
  });

  it('two replicas: fills and hits of the one without the lease reach the index through its report; one holder writes indexes', async () => {
    const c = clock();
    const replicas = [counting(), counting()].map(({ driver, calls }) => {
      const events = new CacheEvents();
      const sweeper = new Sweeper(driver, 10 * MINUTE, { blobTtlMs: TTL, isBusy: () => false, now: c.now, leaseRenewMs: MINUTE, events });
      return { sweeper, events, calls };
    });
    const hitBlob = await blob(0x40, 100, TTL - 15 * MINUTE);
    for (const r of replicas) await r.sweeper.tick(); // the first takes the lease and lists the store
    expect(replicas.map((r) => r.sweeper.isLeader)).toEqual([true, false]);
    const [holder, other] = replicas;

    // The other replica fills a blob (unknown to any index) and serves `hitBlob` (its file's time is kept old, so
    // only the report tells the holder); it reports both at its next tick.
    other.sweeper.start();
    const filled = await blob(0x41, 250, 0);
    other.events.emit('fillEnded', { digest: `sha256:${filled.split('/')[3]}`, ok: true, bytes: 250 });
    other.events.emit('accessed', { key: hitBlob });
    await other.sweeper.tick();
    expect(other.calls.get('write _sweeper/fills')).toBe(1);

    let holderPasses = 0;
    for (let i = 0; i < 10; i++) {
      c.advance(MINUTE);
      for (const r of replicas) if (await r.sweeper.tick()) holderPasses += r === holder ? 1 : 100;
    }
    expect(holderPasses).toBe(1); // one pass in 10 minutes, on the holder only
    expect(other.calls.get('write _sweeper/index')).toBeUndefined();
    expect((await readIndex(storage, shardOf(filled)))!.get(filled)).toMatchObject({ size: 250 });
    expect((await readIndex(storage, shardOf(hitBlob)))!.get(hitBlob)!.lastAccess).toBeGreaterThan(c.now() - 20 * MINUTE);
    expect(await exists(hitBlob)).toBe(true);
    await other.sweeper.stop();
    await holder.sweeper.stop();
  });

  it('a replica stopping reports the hits it has not reported yet, for the next holder', async () => {
    const events = new CacheEvents();
    const { driver, calls } = counting();
    const sweeper = new Sweeper(driver, 10 * MINUTE, { blobTtlMs: TTL, isBusy: () => false, events, leaseRenewMs: MINUTE });
    sweeper.start();
    await sweeper.stop(); // the start-up tick (lease taken, a first pass) done; nothing to report yet
    expect(calls.get('write _sweeper/fills')).toBeUndefined();
    sweeper.start();
    events.emit('accessed', { key: 'blobs/sha256/50/50aa/data' });
    await sweeper.stop();
    expect(calls.get('write _sweeper/fills')).toBe(1);
  });
});
