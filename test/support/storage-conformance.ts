/**
 * The one conformance suite every storage driver passes against a real server (driver.ts states the contract).
 * Each test/integration/storage-<backend>.test.ts calls `describeConformance` with a setup that starts its
 * server and builds its driver; the backend hooks let the suite look at what only the server can show
 * (leftover uploads, how many parts an object was uploaded in).
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { PendingWrite, StorageDriver } from '../../lib/cache/storage';
import { sleep, waitFor } from '../../harness/tools';

export interface ConformanceBackend {
  readonly driver: StorageDriver;
  /** Bytes per part/block/chunk of the driver as configured (the large write must use several). */
  readonly partSize?: number;
  /**
   * Uploads begun and never completed that the server still holds (temp files, multipart uploads, temp objects).
   * A store that expires them itself and offers no way to remove them sooner (Azure's uncommitted blocks) gives
   * instead `leftoversExpire`, the reason; the suite then checks they stay invisible.
   */
  leftovers?(): Promise<number>;
  readonly leftoversExpire?: string;
  /**
   * Where the server's create-if-absent does not exclude concurrent creators, the reason; the suite then checks that
   * at least one of them wins and the sequential semantics (an existing key is never replaced).
   */
  readonly createRace?: string;
  /** How many parts/blocks the committed object `key` was uploaded in; undefined where the notion does not apply. */
  partsOf?(key: string): Promise<number>;
  teardown(): Promise<void>;
}

const LARGE = 64 * 1024 * 1024;

/**
 * Bytes the process holds alive (JS heap + Buffers), after a full collection. RSS would also count garbage not
 * yet collected and pages the allocator keeps, which made the bound below depend on GC timing, not on the driver.
 * Buffers are counted by `arrayBuffers` (Node's allocator). V8 frees dead ArrayBuffers in a sweep that runs
 * concurrently after a full collection and that the next collection, even a minor one, finishes first: 16 dead 4 MiB
 * Buffers count 56 to 64 MiB after one full collection and 0 after a minor one more, which costs well under 1 ms.
 */
const gc: (options?: { type: 'minor' }) => void = (setFlagsFromString('--expose-gc'), runInNewContext('gc'));
function liveBytes(): number {
  gc();
  gc({ type: 'minor' });
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

export async function readAll(stream: Readable | undefined): Promise<Buffer | undefined> {
  if (!stream) return undefined;
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function writeAll(driver: StorageDriver, key: string, data: Buffer): Promise<PendingWrite> {
  const w = await driver.write(key, data.length);
  await pipeline(Readable.from(chunks(data, 64 * 1024)), w.stream);
  return w;
}

function* chunks(data: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

/** `total` bytes of varying content, generated as they are read: never held whole. */
function generated(total: number, seed: Buffer, atHalf?: () => void): Readable {
  let sent = 0;
  let counter = 0;
  return new Readable({
    read() {
      if (sent >= total) return void this.push(null);
      const block = createHash('sha512').update(seed).update(String(counter++)).digest();
      const chunk = Buffer.alloc(Math.min(256 * 1024, total - sent));
      for (let i = 0; i < chunk.length; i += block.length) block.copy(chunk, i);
      if (sent < total / 2 && sent + chunk.length >= total / 2) atHalf?.();
      sent += chunk.length;
      this.push(chunk);
    },
  });
}

async function digestOf(stream: Readable | undefined): Promise<string | undefined> {
  if (!stream) return undefined;
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

export function describeConformance(name: string, setup: () => Promise<ConformanceBackend>): void {
  describe(`${name} storage driver conformance`, () => {
    let backend: ConformanceBackend;
    let driver: StorageDriver;
    const run = randomUUID().slice(0, 8);
    const key = (k: string) => `conformance-${run}/${k}`;

    beforeAll(async () => {
      backend = await setup();
      driver = backend.driver;
    }, 300_000);
    afterAll(async () => {
      await driver?.close?.();
      await backend?.teardown();
    }, 30_000);

    test('probe succeeds', async () => {
      await expect(driver.probe()).resolves.toBeUndefined();
    });

    test('write + commit, then stat, read and range read', async () => {
      const data = randomBytes(100_000);
      const w = await writeAll(driver, key('basic/blob'), data);
      expect(await driver.stat(key('basic/blob'))).toBeUndefined(); // not visible before commit
      await w.commit();
      const info = await driver.stat(key('basic/blob'));
      expect(info).toMatchObject({ key: key('basic/blob'), size: data.length });
      expect(info!.lastAccess.getTime()).toBeGreaterThan(Date.now() - 120_000);
      expect((await readAll(await driver.read(key('basic/blob'))))!.equals(data)).toBe(true);
      const part = await readAll(await driver.read(key('basic/blob'), { start: 1000, end: 1999 }));
      expect(part!.equals(data.subarray(1000, 2000))).toBe(true);
      expect(await driver.read(key('basic/missing'))).toBeUndefined();
      expect(await driver.stat(key('basic/missing'))).toBeUndefined();
    });

    test('createIfAbsent: of 6 concurrent creates of one key one wins (exactly one where the store excludes them), whole; an existing key is never replaced', async () => {
      const bodies = Array.from({ length: 6 }, (_, i) => Buffer.from(`lease ${i} ${randomUUID()}`));
      const won = await Promise.all(bodies.map((body) => driver.createIfAbsent(key('lease/one'), body)));
      const stored = await readAll(await driver.read(key('lease/one')));
      if (backend.createRace) {
        console.log(`${name}: ${won.filter(Boolean).length} of 6 concurrent creates won; ${backend.createRace}`);
        expect(won.filter(Boolean).length).toBeGreaterThanOrEqual(1);
        expect(bodies.some((body, i) => won[i] && body.equals(stored!))).toBe(true); // one winner's body, whole
      } else {
        expect(won.filter(Boolean)).toHaveLength(1);
        expect(stored!.equals(bodies[won.indexOf(true)])).toBe(true);
      }
      expect(await driver.createIfAbsent(key('lease/one'), Buffer.from('late'))).toBe(false);
      expect((await readAll(await driver.read(key('lease/one'))))!.equals(stored!)).toBe(true);
      await driver.delete(key('lease/one'));
      expect(await driver.createIfAbsent(key('lease/one'), Buffer.from('again'))).toBe(true); // absent again: creatable
      await driver.delete(key('lease/one'));
    });

    test('an empty object commits and reads back empty', async () => {
      const w = await writeAll(driver, key('empty/blob'), Buffer.alloc(0));
      await w.commit();
      expect(await driver.stat(key('empty/blob'))).toMatchObject({ size: 0 });
      expect((await readAll(await driver.read(key('empty/blob'))))!.length).toBe(0);
    });

    test('abort leaves nothing visible, before or after the stream ended', async () => {
      const ended = await writeAll(driver, key('abort/ended'), randomBytes(3 * (backend.partSize ?? 65536) + 17));
      await ended.abort();
      await ended.abort(); // idempotent
      const midway = await driver.write(key('abort/midway'));
      midway.stream.write(randomBytes(200_000));
      await midway.abort();
      expect(await driver.stat(key('abort/ended'))).toBeUndefined();
      expect(await driver.stat(key('abort/midway'))).toBeUndefined();
      expect(await driver.read(key('abort/ended'))).toBeUndefined();
      const listed = [];
      for await (const o of driver.list(key('abort/'))) listed.push(o.key);
      expect(listed).toEqual([]);
      await expect(ended.commit()).rejects.toThrow(/already settled/);
    });

    test('a 64 MiB streamed write keeps the memory it holds well under the object size and uses several parts', async () => {
      const seed = randomBytes(32);
      const expected = await digestOf(generated(LARGE, seed));
      const before = liveBytes();
      let peak = before;
      const sample = () => (peak = Math.max(peak, liveBytes()));
      // A full collection in a worker that loaded many suites takes 100 ms or more: the next sample waits four times
      // as long as the last took, so sampling never holds the event loop more than a fifth of the write. One sample
      // more is taken when half the bytes are written, so a write faster than the first period is measured too.
      let sampler: NodeJS.Timeout;
      const paced = () => {
        const start = Date.now();
        sample();
        sampler = setTimeout(paced, Math.max(250, 4 * (Date.now() - start)));
      };
      sampler = setTimeout(paced, 250);
      const started = Date.now();
      try {
        const w = await driver.write(key('large/blob'), LARGE);
        await pipeline(generated(LARGE, seed, sample), w.stream);
        await w.commit();
      } finally {
        clearTimeout(sampler);
      }
      const growth = peak - before;
      console.log(`${name}: 64 MiB write in ${Date.now() - started} ms, live memory growth ${(growth / 2 ** 20).toFixed(1)} MiB`);
      expect(growth).toBeLessThan(LARGE / 2);
      expect(await driver.stat(key('large/blob'))).toMatchObject({ size: LARGE });
      expect(await digestOf(await driver.read(key('large/blob')))).toBe(expected);
      if (backend.partsOf) expect(await backend.partsOf(key('large/blob'))).toBeGreaterThan(1);
    });

    test('two concurrent writers of one key: the object is one whole payload, never a mixture', async () => {
      const size = 2 * (backend.partSize ?? 1024 * 1024) + 12345;
      const a = randomBytes(size);
      const b = randomBytes(size);
      const [wa, wb] = await Promise.all([driver.write(key('race/blob'), size), driver.write(key('race/blob'), size)]);
      // Interleave the two streams chunk by chunk, so their parts really are in flight together.
      const ca = [...chunks(a, 512 * 1024)];
      const cb = [...chunks(b, 512 * 1024)];
      for (let i = 0; i < ca.length; i++) {
        await Promise.all([write(wa, ca[i]), write(wb, cb[i])]);
      }
      wa.stream.end();
      wb.stream.end();
      const results = await Promise.allSettled([wa.commit(), wb.commit()]);
      expect(results.some((r) => r.status === 'fulfilled')).toBe(true);
      const got = sha256((await readAll(await driver.read(key('race/blob'))))!);
      expect([sha256(a), sha256(b)]).toContain(got);
      expect(await driver.stat(key('race/blob'))).toMatchObject({ size });
    });

    test('touch moves an object ahead in lastAccess order', async () => {
      await (await writeAll(driver, key('touch/old'), Buffer.from('old'))).commit();
      await sleep(1100); // object stores keep Last-Modified to the second
      await (await writeAll(driver, key('touch/new'), Buffer.from('new'))).commit();
      const order = async () => {
        const seen: Record<string, number> = {};
        for await (const o of driver.list(key('touch/'))) seen[o.key] = o.lastAccess.getTime();
        return seen;
      };
      const first = await order();
      expect(first[key('touch/old')]).toBeLessThan(first[key('touch/new')]);
      await sleep(1100);
      await driver.touch(key('touch/old'));
      const second = await order();
      expect(second[key('touch/old')]).toBeGreaterThan(second[key('touch/new')]);
      // stat and list agree, within the one-second resolution some stores give HEAD responses.
      const viaStat = (await driver.stat(key('touch/old')))!.lastAccess.getTime();
      expect(Math.abs(viaStat - second[key('touch/old')])).toBeLessThan(1000);
      expect(viaStat).toBeGreaterThan(second[key('touch/new')]);
      await expect(driver.touch(key('touch/missing'))).resolves.toBeUndefined();
    });

    test('list returns exactly the committed objects under a prefix, with sizes', async () => {
      for (const [k, n] of [
        ['list/a/1', 1],
        ['list/a/2', 2],
        ['list/ab/3', 3],
        ['list/b/4', 4],
      ] as const)
        await (await writeAll(driver, key(k), randomBytes(n))).commit();
      const listed = async (prefix: string) => {
        const out: string[] = [];
        for await (const o of driver.list(key(prefix))) out.push(`${o.key.slice(key('').length)}:${o.size}`);
        return out.sort();
      };
      expect(await listed('list/a/')).toEqual(['list/a/1:1', 'list/a/2:2']);
      expect(await listed('list/a')).toEqual(['list/a/1:1', 'list/a/2:2', 'list/ab/3:3']);
      expect(await listed('list/')).toEqual(['list/a/1:1', 'list/a/2:2', 'list/ab/3:3', 'list/b/4:4']);
      expect(await listed('list/none/')).toEqual([]);
    });

    test('delete removes the object and is idempotent', async () => {
      await (await writeAll(driver, key('delete/blob'), Buffer.from('x'))).commit();
      await driver.touch(key('delete/blob'));
      await driver.delete(key('delete/blob'));
      await driver.delete(key('delete/blob'));
      await driver.delete(key('delete/never'));
      expect(await driver.stat(key('delete/blob'))).toBeUndefined();
      expect(await driver.read(key('delete/blob'))).toBeUndefined();
      const listed = [];
      for await (const o of driver.list(key('delete/'))) listed.push(o);
      expect(listed).toEqual([]);
    });

    test('removeStaleWrites removes what an unfinished write left, and only old leftovers', async () => {
      const leftovers = backend.leftovers;
      const base = leftovers ? await leftovers() : 0;
      // A writer that dies midway: several parts sent, never committed nor aborted.
      const dead = await driver.write(key('stale/blob'));
      const size = 2 * (backend.partSize ?? 65536) + 1000;
      await pipeline(Readable.from(chunks(randomBytes(size), 64 * 1024)), dead.stream);
      // The server may still be receiving the last bytes when the stream has ended (Swift's streamed PUT).
      if (leftovers) await waitFor('the unfinished write to show on the server', async () => (await leftovers()) > base, 10_000);
      expect(await driver.removeStaleWrites(3_600_000)).toBe(0); // too young
      await sleep(2100); // servers round upload start times to the second, sometimes up
      const removed = await driver.removeStaleWrites(1000);
      if (leftovers) {
        expect(removed).toBeGreaterThanOrEqual(1);
        expect(await leftovers()).toBe(0);
      } else {
        expect(backend.leftoversExpire).toBeTruthy();
        console.log(`${name}: removeStaleWrites removed ${removed}; ${backend.leftoversExpire}`);
      }
      expect(await driver.stat(key('stale/blob'))).toBeUndefined();
      const listed = [];
      for await (const o of driver.list(key('stale/'))) listed.push(o);
      expect(listed).toEqual([]);
      await dead.abort(); // the owner coming back late must not fail
    });
  });
}

function write(w: PendingWrite, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => w.stream.write(chunk, (err) => (err ? reject(err) : resolve())));
}
