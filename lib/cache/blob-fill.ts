/**
 * One upstream transfer per blob, detached from the clients that asked for it.
 *
 * The upstream body is written, at upstream speed, to the storage driver's pending write while its digest is
 * computed. Every client (the first and any late joiner) gets its own reader of the growing blob: it sends the
 * bytes already there, then waits for more. Recent bytes come from a bounded in-memory window, older ones are read
 * back from disk: from the pending write itself when the driver can read it back (filesystem, NFS), else from a
 * spool file the fill writes beside it (object stores): one disk write per byte where possible, as a separate
 * spool doubles the disk work of a cold pull. Nothing is buffered per client, so a slow client never slows the
 * fill or the others, and a client that leaves cancels nothing: the fill runs to its end, bounded by `filltimeout`.
 *
 * Until the digest is verified, readers hold back the last byte of what they were asked for: a client can never
 * receive a complete-looking response of unverified content. On a digest mismatch, a short body or an upstream
 * abort, nothing is committed and every reader fails, which cuts the client's connection mid-body.
 *
 * A storage failure during a fill (a full disk: ENOSPC) leaves the clients served and the blob uncached: when the
 * pending write is what readers read back, the rest of the blob goes to a spool from then on, and readers read
 * what was written before from the aborted write's descriptor (it keeps the bytes after the file is removed). The
 * `uncached` event says so (the server then frees space by eviction when the disk was full).
 *
 * The spool file is unlinked as soon as it is opened: it lives as long as its descriptor, so a killed process
 * leaves nothing behind (the storage driver's own temp file is cleaned by `removeStaleWrites` at start).
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BusyKeys } from './busy';
import type { CacheEvents } from './events';
import type { Logger } from './log';
import type { OciError } from './oci-error';
import type { Digest } from './reference';
import type { PendingWrite, StorageDriver, WrittenBytes } from './storage';

/**
 * What opening the upstream transfer gave: a body to fill from (starting at byte `start`, 0 unless a range was
 * honoured; `size` is the whole blob's), or a refusal for the client that asked.
 */
export type FillOpen =
  | { readonly ok: true; readonly body: Readable; readonly size?: number; readonly start?: number }
  | { readonly ok: false; readonly error: OciError };

/** Opens the upstream GET of the blob from byte `offset` (a range request when above 0). */
export type UpstreamOpener = (signal: AbortSignal, offset: number) => Promise<FillOpen>;

/**
 * Where a fill's bytes come from: `fetched` when they are the upstream GET made with the first client's credentials
 * (which authorized that client), else another replica's fill; `done` runs once the fill settled. A refusal without
 * an error: the blob is in storage now.
 */
export type FillSource =
  | { readonly ok: true; readonly body: Readable; readonly size?: number; readonly fetched: boolean; readonly done?: () => Promise<void> }
  | { readonly ok: false; readonly error?: OciError };

export type FillStart = { readonly ok: true; readonly fill: BlobFill; readonly fetched: boolean } | Extract<FillSource, { ok: false }>;

/** Where a fill's source comes from when replicas coordinate (fill-coordinator.ts). */
export interface FillSourceOpener {
  open(digest: Digest, openUpstream: UpstreamOpener, signal: AbortSignal): Promise<FillSource>;
}

export interface FillContext {
  readonly storage: StorageDriver;
  /** The site's fill coordination; without it, each replica fetches its own misses. */
  readonly coordinator?: FillSourceOpener;
  readonly spoolDir: string;
  readonly timeoutMs: number;
  readonly busy: BusyKeys;
  readonly log: Logger;
  readonly events?: CacheEvents;
}

/** Largest read of the disk copy for a reader behind the window. */
const READ_CHUNK = 256 * 1024;
/**
 * What a reader's stream buffers ahead of its client, at most (about one upstream chunk): 100 clients of one cold
 * blob then hold 6 MiB, not 25 (peak RSS, bench/).
 */
const READER_BUFFER = 64 * 1024;
/** Upstream bytes buffered ahead of hashing, at most. */
const SINK_BUFFER = 4 * 1024 * 1024;
/** Recent upstream bytes kept in memory for readers that keep up (per fill), beyond those not on disk yet. */
const WINDOW = 4 * 1024 * 1024;
/** Bytes handed to the disk but not written yet, at most, before the fill waits for the disk (per fill). */
const DISK_LAG = 8 * 1024 * 1024;

/** The in-flight fills, by digest: concurrent misses of one blob join one fill. */
export class FillRegistry {
  private readonly slots = new Map<string, Promise<FillStart>>();
  private readonly shutdown = new AbortController();

  constructor(private readonly context: FillContext) {}

  private async direct(openUpstream: UpstreamOpener, signal: AbortSignal): Promise<FillSource> {
    const opened = await openUpstream(signal, 0);
    return opened.ok ? { ok: true, body: opened.body, size: opened.size, fetched: true } : opened;
  }

  get(digest: Digest): Promise<FillStart> | undefined {
    return this.slots.get(digest.text);
  }

  get size(): number {
    return this.slots.size;
  }

  /**
   * Starts a fill of `digest` into `key`. `openUpstream` makes the upstream GET (with the first client's
   * credentials) under `signal`, which fires after `filltimeout`. The slot is registered before anything is
   * awaited, so a request arriving a moment later joins instead of fetching again.
   */
  begin(digest: Digest, key: string, openUpstream: UpstreamOpener): Promise<FillStart> {
    const existing = this.slots.get(digest.text);
    if (existing) return existing;
    const release = this.context.busy.hold(key);
    const signal = AbortSignal.any([AbortSignal.timeout(this.context.timeoutMs), this.shutdown.signal]);
    const start = (async (): Promise<FillStart> => {
      const { coordinator } = this.context;
      const opened = await (coordinator ? coordinator.open(digest, openUpstream, signal) : this.direct(openUpstream, signal)).catch(
        (err): FillSource => ({
          ok: false,
          error: { status: 502, code: 'UNAVAILABLE', message: `upstream request failed: ${(err as Error).message}` },
        }),
      );
      if (!opened.ok) return opened;
      const fill = new BlobFill(digest, key, opened.size, this.context);
      fill.run(opened.body, signal);
      if (opened.done) void fill.settled.then(opened.done).catch(() => undefined);
      return { ok: true, fill, fetched: opened.fetched };
    })();
    this.slots.set(digest.text, start);
    const forget = () => {
      if (this.slots.get(digest.text) === start) this.slots.delete(digest.text);
      release();
    };
    // The slot stays until the object is committed (or the fill failed): a request that finds no slot then
    // finds the object in storage, so no second upstream GET can start in between.
    start.then((s) => (s.ok ? s.fill.settled.then(forget) : forget()), forget);
    return start;
  }

  /** Stops every fill now (server close): nothing partial is committed, readers are cut. */
  abortAll(): void {
    this.shutdown.abort(new Error('the cache is shutting down'));
  }

  /** Waits for every fill to settle (drain, shutdown). */
  async settled(): Promise<void> {
    const starts = await Promise.allSettled([...this.slots.values()]);
    await Promise.allSettled(starts.map((s) => (s.status === 'fulfilled' && s.value.ok ? s.value.fill.settled : undefined)));
  }
}

type FillState = 'filling' | 'verified' | 'failed';

export class BlobFill {
  private state: FillState = 'filling';
  private written = 0;
  /**
   * The latest upstream chunks, as they came (at least WINDOW bytes once that much arrived). Readers that keep up
   * with the fill (the usual case) take their bytes from here, before the disk has them; readers further behind
   * read them back from disk. Chunks leave the window only once on disk.
   */
  private window: Array<{ readonly offset: number; readonly bytes: Buffer }> = [];
  private windowBytes = 0;
  /** Bytes on disk (`written` to the backing): every offset below this that is not in the window can be read. */
  private onDisk = 0;
  /** Why the backing could not be written, once that happened (the fill fails at its next step). */
  private diskFailure?: Error;
  private failure?: string;
  private readers = 0;
  private finished = false;
  private waiters: Array<() => void> = [];
  /** Resolves when the fill is verified and committed, or failed; never rejects. */
  readonly settled: Promise<void>;
  private settle!: () => void;

  /** The storage write; undefined once it failed (or if it could not start). */
  private pending?: PendingWrite;
  /** Where readers behind the window read: the pending write read back, or the spool. */
  private backing?: WrittenBytes;
  /** The spool, when the pending write cannot be read back. */
  private spool?: FileHandle;
  /** The spool the fill goes on in after its read-back storage write failed, from byte `cut`. */
  private fallback?: Promise<FileHandle>;
  private cut = Infinity;
  /**
   * Opening the disk side (storage write, read-back or spool). Nothing waits for it but the disk writes: the first
   * bytes reach the clients while the files are being opened (time to first byte, bench/).
   */
  private readonly diskOpened: Promise<void>;

  constructor(
    readonly digest: Digest,
    readonly key: string,
    /** From the upstream's Content-Length; undefined when it sent none. */
    readonly size: number | undefined,
    private readonly context: FillContext,
  ) {
    this.settled = new Promise((resolve) => (this.settle = resolve));
    this.diskOpened = this.openDisk();
    this.diskOpened.catch(() => undefined); // surfaced by the first disk write
  }

  private async openDisk(): Promise<void> {
    const { storage } = this.context;
    this.pending = await storage.write(this.key, this.size).catch((err: unknown) => {
      this.uncached('write', err);
      return undefined;
    });
    this.pending?.stream.on('error', () => undefined); // surfaced by writeAllTo/commit
    this.backing = await this.pending?.readBack?.();
    if (this.backing) return;
    this.backing = this.spool = await this.openSpool();
  }

  private async openSpool(): Promise<FileHandle> {
    const { spoolDir } = this.context;
    await mkdir(spoolDir, { recursive: true });
    const path = join(spoolDir, `${this.digest.hex.slice(0, 16)}-${randomUUID()}.spool`);
    const spool = await open(path, 'w+');
    await unlink(path).catch(() => undefined);
    return spool;
  }

  /** After the read-back write failed: a spool for bytes from `cut` on; the write's descriptor serves those before. */
  private async fallBack(): Promise<FileHandle> {
    const written = this.backing as WrittenBytes;
    const spool = await this.openSpool();
    if (this.closing) await spool.close(); // the fill is over already: later writes to it fail, and nobody reads
    this.backing = {
      read: (buffer, offset, length, position) =>
        position < this.cut
          ? written.read(buffer, offset, Math.min(length, this.cut - position), position)
          : spool.read(buffer, offset, length, position),
      close: async () => {
        await Promise.all([written.close(), spool.close()]);
      },
    };
    return spool;
  }

  /** The storage write is lost: logged, and the `uncached` event (the fill goes on for its clients). */
  private uncached(operation: string, err: unknown): void {
    storageFailed(this.context, this.digest, operation, err);
    const full = isNoSpace(err);
    this.context.log.warn('serving the blob from the upstream uncached', {
      digest: this.digest.text,
      reason: full ? 'storage full' : 'storage error',
    });
    this.context.events?.emit('uncached', {
      digest: this.digest.text,
      reason: full ? 'storage-full' : 'storage-error',
      bytes: this.size ?? this.written,
    });
  }

  get bytesWritten(): number {
    return this.written;
  }

  /** Copies `body` to storage (and the spool, if any), verifies, commits. Runs detached; never throws. */
  run(body: Readable, signal: AbortSignal): void {
    const { log, events } = this.context;
    events?.emit('fillStarted', { digest: this.digest.text });
    const started = Date.now();
    void (async () => {
      const hash = createHash(this.digest.algorithm);
      try {
        // Readers wake as soon as a batch is hashed and held in the window, before the disk has it, and the next
        // batch is taken while the disk writes run: upstream reads, hashing, clients and the disk overlap instead
        // of taking turns (in lock-step, a 1 GiB cold pull took the sum of their latencies, bench/, issue 8).
        // DISK_LAG bounds what is written but not on disk yet; the window holds all of it.
        let disk: Promise<void> = this.diskOpened;
        const append = async (chunks: Buffer[]): Promise<void> => {
          if (this.diskFailure) throw this.diskFailure;
          const offset = this.written;
          for (const chunk of chunks) {
            if (this.size !== undefined && this.written + chunk.length > this.size) {
              throw new Error(`upstream sent more than its Content-Length of ${this.size} bytes`);
            }
            hash.update(chunk);
            this.window.push({ offset: this.written, bytes: chunk });
            this.windowBytes += chunk.length;
            this.written += chunk.length;
          }
          this.wake();
          const end = this.written;
          const written = this.diskOpened.then(() =>
            Promise.all([this.storeBatch(chunks, offset), this.spool && writevFully(this.spool, chunks, offset)]),
          );
          // In order: the disk holds [0, end) once this and every earlier batch are written.
          disk = Promise.all([disk, written]).then(
            () => {
              this.onDisk = end;
              this.trimWindow();
            },
            (err: unknown) => {
              this.diskFailure ??= err instanceof Error ? err : new Error(String(err));
            },
          );
          if (this.written - this.onDisk > DISK_LAG) await disk;
        };
        const sink = new Writable({
          highWaterMark: SINK_BUFFER,
          writev(chunks, callback) {
            append(chunks.map((c) => c.chunk as Buffer)).then(() => callback(), callback);
          },
        });
        await pipeline(body, sink, { signal }).catch((err: Error) => {
          throw signal.aborted ? new Error(`fill stopped: ${(signal.reason as Error)?.message ?? 'filltimeout reached'}`) : err;
        });
        await disk;
        if (this.diskFailure) throw this.diskFailure;
        if (this.size !== undefined && this.written !== this.size) {
          throw new Error(`upstream body ended after ${this.written} of ${this.size} bytes`);
        }
        const actual = hash.digest('hex');
        if (actual !== this.digest.hex) throw new Error(`digest mismatch: upstream bytes hash to ${this.digest.algorithm}:${actual}`);
        this.state = 'verified';
        this.wake();
        const pending = this.pending;
        if (pending) {
          pending.stream.end();
          await pending.commit().then(
            () => log.info('blob cached', { digest: this.digest.text, bytes: this.written, ms: Date.now() - started }),
            (err) => this.uncached('commit', err),
          );
        }
        events?.emit('fillEnded', { digest: this.digest.text, ok: true, bytes: this.written });
      } catch (err) {
        this.failure = (err as Error).message;
        this.state = 'failed';
        this.wake();
        body.destroy();
        await this.diskOpened.catch(() => undefined);
        await this.pending?.abort().catch(() => undefined);
        log.warn('blob fill failed; nothing committed', { digest: this.digest.text, bytes: this.written, reason: this.failure });
        events?.emit('fillEnded', { digest: this.digest.text, ok: false, bytes: this.written, reason: this.failure });
      } finally {
        this.finished = true;
        this.settle();
        await this.closeIfUnused();
      }
    })();
  }

  /**
   * Hands a batch (at `offset`) to the storage write. A storage failure only stops caching: with a spool beside the
   * write, clients go on reading the spool; without one, this batch and the rest go to a fallback spool.
   */
  private storeBatch(chunks: Buffer[], offset: number): Promise<void> | undefined {
    const pending = this.pending;
    if (!pending) return this.fallback?.then((spool) => writevFully(spool, chunks, offset));
    return writeAllTo(pending.stream, chunks).catch(async (err: unknown) => {
      // Batches written before this one are in the aborted write; this one and later ones may not be.
      this.cut = Math.min(this.cut, offset);
      if (this.pending === pending) {
        this.uncached('write', err);
        this.pending = undefined;
        if (!this.spool) this.fallback = this.fallBack();
        await pending.abort().catch(() => undefined);
      }
      if (this.fallback) await writevFully(await this.fallback, chunks, offset);
    });
  }

  /**
   * A stream of the blob (or of `range`) as it fills. It errors if the fill fails, and ends only once the content
   * is verified. Undefined once the fill is over and its backing closed: storage has the blob.
   */
  reader(range?: { readonly start: number; readonly end?: number }): Readable | undefined {
    if (this.closing) return undefined;
    this.readers++;
    let position = range?.start ?? 0;
    const endExclusive = range?.end !== undefined ? range.end + 1 : (this.size ?? Infinity);
    // One pump at a time per reader. A read() that arrives while the pump runs (a push can call read() back
    // synchronously) is remembered and served when the pump returns; dropping it would stall the reader.
    let busy = false;
    let wanted = false;
    const fill = this;
    const pump = (): void => {
      busy = true;
      wanted = false;
      fill
        .pump(
          stream,
          () => position,
          (n) => (position += n),
          endExclusive,
        )
        .then(
          () => {
            busy = false;
            if (wanted && !stream.destroyed) pump();
          },
          (err) => stream.destroy(err as Error),
        );
    };
    const stream = new Readable({
      highWaterMark: READER_BUFFER,
      read() {
        if (busy) wanted = true;
        else pump();
      },
      destroy(err, callback) {
        fill.readers--;
        fill.closeIfUnused().then(
          () => callback(err),
          () => callback(err),
        );
      },
    });
    return stream;
  }

  /** Pushes what is available into `stream` until it wants no more, the range is done, or the fill fails. */
  private async pump(stream: Readable, position: () => number, advance: (n: number) => void, endExclusive: number): Promise<void> {
    for (;;) {
      if (stream.destroyed) return;
      if (this.state === 'failed') throw new Error(`upstream transfer failed: ${this.failure}`);
      const verified = this.state === 'verified';
      const end = verified ? Math.min(endExclusive, this.written) : endExclusive;
      if (position() >= end && verified) {
        stream.push(null);
        return;
      }
      // Unverified: never hand out the last byte of what the client asked for (of what came so far, when the
      // upstream sent no length), so no client ever has all the bytes of a fill that fails.
      const available = verified ? end : Math.min(this.written - (this.size === undefined ? 1 : 0), endExclusive - 1);
      if (available > position()) {
        const length = Math.min(available - position(), READ_CHUNK);
        const chunk = this.fromWindow(position(), length) ?? (await this.fromDisk(position(), length));
        if (stream.destroyed) return;
        advance(chunk.length);
        if (!stream.push(chunk)) return;
        continue;
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /**
   * Up to `length` bytes at `position` from the window: part of one upstream chunk, without a copy (copies of
   * every pushed byte cost a cold 1 GiB pull a second of allocation and GC, bench/). Chunks are socket reads
   * (64 KiB at most), so a slow reader pins only the few its stream buffers.
   */
  private fromWindow(position: number, length: number): Buffer | undefined {
    const window = this.window;
    if (window.length === 0 || position < window[0].offset) return undefined;
    let lo = 0;
    let hi = window.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (window[mid].offset <= position) lo = mid;
      else hi = mid - 1;
    }
    const { offset, bytes } = window[lo];
    const start = position - offset;
    return start < bytes.length ? bytes.subarray(start, start + Math.min(length, bytes.length - start)) : undefined;
  }

  /** Drops chunks on disk from the front while the rest still holds WINDOW bytes. */
  private trimWindow(): void {
    let drop = 0;
    while (drop < this.window.length && this.windowBytes - this.window[drop].bytes.length >= WINDOW) {
      const { offset, bytes } = this.window[drop];
      if (offset + bytes.length > this.onDisk) break;
      this.windowBytes -= bytes.length;
      drop++;
    }
    if (drop > 0) this.window = this.window.slice(drop);
  }

  /** Up to `length` bytes at `position` (before the window) read back from disk, never past what is on disk. */
  private async fromDisk(position: number, length: number): Promise<Buffer> {
    const end = Math.min(position + length, this.window.length ? this.window[0].offset : this.onDisk);
    const buffer = Buffer.allocUnsafe(end - position);
    // Bytes before the window are on disk, so the disk side is open by now.
    const { bytesRead } = await (this.backing as WrittenBytes).read(buffer, 0, buffer.length, position);
    if (bytesRead === 0) throw new Error(`the fill's disk copy ends before byte ${position}`);
    return buffer.subarray(0, bytesRead);
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private closing?: Promise<void>;
  private async closeIfUnused(): Promise<void> {
    if (!this.finished || this.readers > 0) return;
    this.closing ??= this.diskOpened.then(() => this.backing?.close()).catch(() => undefined);
    await this.closing;
  }
}

/** A full disk (the driver's error, or its cause). */
function isNoSpace(err: unknown): boolean {
  const code = (e: unknown) => (e as NodeJS.ErrnoException | undefined)?.code;
  return code(err) === 'ENOSPC' || code((err as Error | undefined)?.cause) === 'ENOSPC';
}

function storageFailed(context: FillContext, digest: Digest, operation: string, err: unknown): void {
  context.log.error('storage failed during a fill', {
    digest: digest.text,
    operation,
    reason: (err as Error)?.message ?? String(err),
  });
  context.events?.emit('storageError', { operation });
}

/** FileHandle.writev may write less than asked (IOV_MAX buffers, a signal): continues until all is written. */
async function writevFully(file: FileHandle, chunks: Buffer[], position: number): Promise<void> {
  let rest = chunks;
  while (rest.length > 0) {
    let { bytesWritten } = await file.writev(rest, position);
    position += bytesWritten;
    let i = 0;
    while (i < rest.length && bytesWritten >= rest[i].length) bytesWritten -= rest[i++].length;
    rest = rest.slice(i);
    if (bytesWritten > 0) rest[0] = rest[0].subarray(bytesWritten);
  }
}

/**
 * Writes `chunks`; resolves once the stream has handled the last (so all) of them, which for a file is once they
 * are in it and can be read back. Rejects with the write's error, or if the stream is destroyed first.
 */
function writeAllTo(stream: Writable, chunks: readonly Buffer[]): Promise<void> {
  if (stream.destroyed) return Promise.reject(new Error('storage write stream was destroyed'));
  return new Promise((resolve, reject) => {
    chunks.forEach((chunk, i) => stream.write(chunk, i < chunks.length - 1 ? undefined : (err) => (err ? reject(err) : resolve())));
  });
}
