/**
 * BlobFill against the real FilesystemDriver in a temp dir, fed by a stream the test controls byte by byte:
 * readers never get the last byte before verification, late joiners get everything, a mismatch cuts every reader
 * and commits nothing, and the fill outlives its readers.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable, type Readable } from 'node:stream';
import { FillRegistry, type FillStart } from '../../../lib/cache/blob-fill';
import { BusyKeys } from '../../../lib/cache/busy';
import { CacheEvents } from '../../../lib/cache/events';
import { silentLogger } from '../../../lib/cache/log';
import { blobKey, parseDigest, type Digest } from '../../../lib/cache/reference';
import type { StorageDriver } from '../../../lib/cache/storage';
import { FilesystemDriver } from '../../../lib/cache/storage/filesystem';
import { sleep, until } from '../../../harness/tools';

function digestOf(data: Buffer): Digest {
  const parsed = parseDigest(`sha256:${createHash('sha256').update(data).digest('hex')}`);
  if (!parsed.ok) throw new Error('unreachable');
  return parsed.value;
}

/** Collects a reader; resolves with what it got and whether it ended cleanly. */
function collect(stream: Readable): { chunks: Buffer[]; done: Promise<{ ok: boolean; data: Buffer }> } {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise<{ ok: boolean; data: Buffer }>((resolve) => {
    stream.on('end', () => resolve({ ok: true, data: Buffer.concat(chunks) }));
    stream.on('error', () => resolve({ ok: false, data: Buffer.concat(chunks) }));
  });
  return { chunks, done };
}

const size = (chunks: Buffer[]) => chunks.reduce((n, c) => n + c.length, 0);

describe('BlobFill', () => {
  let root: string;
  let storage: FilesystemDriver;
  let fills: FillRegistry;
  let busy: BusyKeys;

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'dtr-cache-fill-'));
    storage = new FilesystemDriver({ rootdirectory: join(root, 'store') });
    busy = new BusyKeys();
    fills = new FillRegistry({ storage, spoolDir: join(root, 'spool'), timeoutMs: 30_000, busy, log: silentLogger });
  });

  afterEach(async () => {
    fills.abortAll();
    await fills.settled();
    rmSync(root, { recursive: true, force: true });
  });

  async function start(data: Buffer, digest = digestOf(data)): Promise<{ body: PassThrough; started: FillStart; digest: Digest }> {
    const body = new PassThrough();
    const started = await fills.begin(digest, blobKey(digest), async () => ({ ok: true, body, size: data.length }));
    return { body, started, digest };
  }

  it('holds back the last byte until the digest is verified, then commits; a late joiner gets all of it', async () => {
    const data = randomBytes(100_000);
    const { body, started, digest } = await start(data);
    if (!started.ok) throw new Error('fill did not start');
    expect(busy.has(blobKey(digest))).toBe(true);
    const early = collect(started.fill.reader()!);
    body.write(data.subarray(0, 60_000));
    await sleep(50);
    const late = collect(started.fill.reader()!);
    body.write(data.subarray(60_000));
    await until(() => size(early.chunks) >= data.length - 1 && size(late.chunks) >= data.length - 1);
    await sleep(50); // and a moment more: the last byte must not follow
    // Every byte is upstream-delivered and spooled, but not verified: readers miss exactly the last byte.
    expect(Buffer.concat(early.chunks).length).toBe(data.length - 1);
    expect(Buffer.concat(late.chunks).length).toBe(data.length - 1);
    expect(existsSync(join(root, 'store', blobKey(digest)))).toBe(false);
    body.end();
    // Buffer.equals, not toEqual: jest compares buffers byte by byte, which takes seconds at this size.
    for (const reader of [early, late]) {
      const result = await reader.done;
      expect(result.ok).toBe(true);
      expect(result.data.equals(data)).toBe(true);
    }
    await started.fill.settled;
    expect(readFileSync(join(root, 'store', blobKey(digest))).equals(data)).toBe(true);
    expect(busy.has(blobKey(digest))).toBe(false);
    expect(fills.get(digest)).toBeUndefined();
  });

  it('a range reader also waits for verification before its last byte', async () => {
    const data = randomBytes(10_000);
    const { body, started } = await start(data);
    if (!started.ok) throw new Error('fill did not start');
    const head = collect(started.fill.reader({ start: 0, end: 99 })!);
    body.write(data);
    await until(() => size(head.chunks) >= 99);
    await sleep(50);
    expect(Buffer.concat(head.chunks).equals(data.subarray(0, 99))).toBe(true);
    body.end();
    const result = await head.done;
    expect(result.ok).toBe(true);
    expect(result.data.equals(data.subarray(0, 100))).toBe(true);
  });

  /** Feeds all of `data` to a fill of `claimed`: its reader must fail short of the end, and nothing be committed or left. */
  async function expectFailedFill(data: Buffer, claimed = digestOf(data)): Promise<void> {
    const { body, started } = await start(data, claimed);
    if (!started.ok) throw new Error('fill did not start');
    const reader = collect(started.fill.reader()!);
    body.end(data);
    const result = await reader.done;
    expect(result.ok).toBe(false);
    expect(result.data.length).toBeLessThan(data.length);
    await started.fill.settled;
    expect(existsSync(join(root, 'store', blobKey(claimed)))).toBe(false);
    expect(readdirSync(join(root, 'store', '_uploads'))).toEqual([]);
  }

  it('on a digest mismatch every reader fails short of the end and nothing is committed', async () => {
    await expectFailedFill(randomBytes(50_000), digestOf(randomBytes(10)));
  });

  it('a short upstream body fails the fill', async () => {
    const data = randomBytes(20_000);
    const { body, started, digest } = await start(data);
    if (!started.ok) throw new Error('fill did not start');
    const reader = collect(started.fill.reader()!);
    body.end(data.subarray(0, 19_999));
    expect((await reader.done).ok).toBe(false);
    await started.fill.settled;
    expect(existsSync(join(root, 'store', blobKey(digest)))).toBe(false);
  });

  it('the fill completes after every reader left; concurrent begins share one upstream open', async () => {
    const data = randomBytes(30_000);
    const digest = digestOf(data);
    const body = new PassThrough();
    let opens = 0;
    const open = async () => {
      opens++;
      return { ok: true as const, body, size: data.length };
    };
    const [a, b] = await Promise.all([fills.begin(digest, blobKey(digest), open), fills.begin(digest, blobKey(digest), open)]);
    expect(opens).toBe(1);
    if (!a.ok || !b.ok) throw new Error('fill did not start');
    expect(a.fill).toBe(b.fill);
    a.fill.reader()!.destroy();
    b.fill.reader()!.destroy();
    body.end(data);
    await a.fill.settled;
    expect(readFileSync(join(root, 'store', blobKey(digest))).equals(data)).toBe(true);
  });

  describe('readers behind the in-memory window', () => {
    const MiB = 1024 * 1024;
    // More than the window and the disk lag together (4 + 8 MiB): the first bytes are only on disk by the end.
    const data = randomBytes(40 * MiB);

    /** The same filesystem store, its writes readable back or not (as with the object stores), failing if asked. */
    function wrapped(options: { readBack: boolean; failAfterBytes?: number }): StorageDriver {
      return Object.assign(Object.create(storage) as StorageDriver, {
        write: async (key: string) => {
          const pending = await storage.write(key);
          let seen = 0;
          const stream = new Writable({
            write(chunk: Buffer, _encoding, callback) {
              seen += chunk.length;
              if (seen > (options.failAfterBytes ?? Infinity)) return callback(new Error('disk full (test)'));
              pending.stream.write(chunk, callback);
            },
            final(callback) {
              pending.stream.end(callback);
            },
          });
          return { stream, commit: pending.commit, abort: pending.abort, readBack: options.readBack ? pending.readBack : undefined };
        },
      });
    }

    const fillsOn = (driver: StorageDriver, events?: CacheEvents) =>
      new FillRegistry({ storage: driver, spoolDir: join(root, 'spool'), timeoutMs: 30_000, busy, log: silentLogger, events });

    /** A fill of `data` that a reader joins once 32 MiB are in: it must get every byte. Resolves once the fill settled. */
    async function lateReaderGetsAll(): Promise<Digest> {
      const { body, started, digest } = await start(data);
      if (!started.ok) throw new Error('fill did not start');
      body.write(data.subarray(0, 32 * MiB));
      await until(() => started.fill.bytesWritten === 32 * MiB, 20_000);
      const late = collect(started.fill.reader()!);
      body.end(data.subarray(32 * MiB));
      const result = await late.done;
      expect(result.ok).toBe(true);
      expect(result.data.equals(data)).toBe(true);
      await started.fill.settled;
      return digest;
    }

    it('read back the storage temp file when the driver can (filesystem): no spool file at all', async () => {
      const digest = await lateReaderGetsAll();
      expect(readFileSync(join(root, 'store', blobKey(digest))).equals(data)).toBe(true);
      expect(existsSync(join(root, 'spool'))).toBe(false);
    });

    it('read a spool when the driver cannot read its write back', async () => {
      fills = fillsOn(wrapped({ readBack: false }));
      const digest = await lateReaderGetsAll();
      expect(readFileSync(join(root, 'store', blobKey(digest))).equals(data)).toBe(true);
      expect(existsSync(join(root, 'spool'))).toBe(true);
      expect(readdirSync(join(root, 'spool'))).toEqual([]); // unlinked as soon as opened
    });

    it('with a spool, a storage failure only stops caching: readers still get every byte', async () => {
      const events = new CacheEvents();
      const errors: string[] = [];
      events.on('storageError', (e) => errors.push(e.operation));
      fills = fillsOn(wrapped({ readBack: false, failAfterBytes: 4 * MiB }), events);
      const digest = await lateReaderGetsAll();
      expect(errors).toEqual(['write']);
      expect(existsSync(join(root, 'store', blobKey(digest)))).toBe(false);
      expect(readdirSync(join(root, 'store', '_uploads'))).toEqual([]);
    });

    it('reading back, a storage failure only stops caching: readers get every byte (the write read back, then a spool)', async () => {
      const events = new CacheEvents();
      const uncached: string[] = [];
      events.on('uncached', (e) => uncached.push(e.reason));
      fills = fillsOn(wrapped({ readBack: true, failAfterBytes: 4 * MiB }), events);
      const digest = await lateReaderGetsAll();
      expect(uncached).toEqual(['storage-error']);
      expect(existsSync(join(root, 'store', blobKey(digest)))).toBe(false);
      expect(readdirSync(join(root, 'store', '_uploads'))).toEqual([]);
      expect(readdirSync(join(root, 'spool'))).toEqual([]); // the fallback spool is unlinked as soon as opened
    });
  });
});
