/**
 * One upstream transfer per blob, detached from the clients that asked for it.
 *
 * The upstream body is written, at upstream speed, to a spool file and to the storage driver's pending write,
 * while its digest is computed. Every client (the first and any late joiner) gets its own reader of the growing
 * spool: it sends the bytes already there, then waits for more. Nothing is buffered per client, so a slow client
 * never slows the fill or the others, and a client that leaves cancels nothing: the fill runs to its end, bounded
 * by `filltimeout`.
 *
 * Until the digest is verified, readers hold back the last byte of what they were asked for: a client can never
 * receive a complete-looking response of unverified content. On a digest mismatch, a short body or an upstream
 * abort, nothing is committed and every reader fails, which cuts the client's connection mid-body.
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
import type { ByteRange, StorageDriver } from './storage';

/** What opening the upstream transfer gave: a body to fill from, or a refusal for the client that asked. */
export type FillOpen =
  { readonly ok: true; readonly body: Readable; readonly size?: number } | { readonly ok: false; readonly error: OciError };

export type FillStart = { readonly ok: true; readonly fill: BlobFill } | Extract<FillOpen, { ok: false }>;

export interface FillContext {
  readonly storage: StorageDriver;
  readonly spoolDir: string;
  readonly timeoutMs: number;
  readonly busy: BusyKeys;
  readonly log: Logger;
  readonly events?: CacheEvents;
}

const READ_CHUNK = 256 * 1024;
/** Upstream bytes read ahead of the spool and storage writes, at most. */
const SINK_BUFFER = 4 * 1024 * 1024;

/** The in-flight fills, by digest: concurrent misses of one blob join one fill. */
export class FillRegistry {
  private readonly slots = new Map<string, Promise<FillStart>>();
  private readonly shutdown = new AbortController();

  constructor(private readonly context: FillContext) {}

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
  begin(digest: Digest, key: string, openUpstream: (signal: AbortSignal) => Promise<FillOpen>): Promise<FillStart> {
    const existing = this.slots.get(digest.text);
    if (existing) return existing;
    const release = this.context.busy.hold(key);
    const signal = AbortSignal.any([AbortSignal.timeout(this.context.timeoutMs), this.shutdown.signal]);
    const start = (async (): Promise<FillStart> => {
      const opened = await openUpstream(signal).catch((err): FillOpen => ({
        ok: false,
        error: { status: 502, code: 'UNAVAILABLE', message: `upstream request failed: ${(err as Error).message}` },
      }));
      if (!opened.ok) return opened;
      const fill = await BlobFill.open(digest, key, opened.size, this.context).catch((err) => {
        opened.body.destroy();
        throw err;
      });
      fill.run(opened.body, signal);
      return { ok: true, fill };
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
   * The bytes of the last spool write and where they start. Readers that keep up with the fill (the usual case)
   * copy from here instead of reading the spool back from disk; readers further behind read the spool.
   */
  private tail?: { readonly offset: number; readonly bytes: Buffer };
  private failure?: string;
  private readers = 0;
  private finished = false;
  private waiters: Array<() => void> = [];
  /** Resolves when the fill is verified and committed, or failed; never rejects. */
  readonly settled: Promise<void>;
  private settle!: () => void;

  private constructor(
    readonly digest: Digest,
    readonly key: string,
    /** From the upstream's Content-Length; undefined when it sent none. */
    readonly size: number | undefined,
    private readonly spool: FileHandle,
    private readonly context: FillContext,
  ) {
    this.settled = new Promise((resolve) => (this.settle = resolve));
  }

  static async open(digest: Digest, key: string, size: number | undefined, context: FillContext): Promise<BlobFill> {
    await mkdir(context.spoolDir, { recursive: true });
    const path = join(context.spoolDir, `${digest.hex.slice(0, 16)}-${randomUUID()}.spool`);
    const spool = await open(path, 'w+');
    await unlink(path).catch(() => undefined);
    return new BlobFill(digest, key, size, spool, context);
  }

  get bytesWritten(): number {
    return this.written;
  }

  /** Copies `body` to the spool and to storage, verifies, commits. Runs detached; never throws. */
  run(body: Readable, signal: AbortSignal): void {
    const { storage, log, events } = this.context;
    events?.emit('fillStarted', { digest: this.digest.text });
    const started = Date.now();
    void (async () => {
      const hash = createHash(this.digest.algorithm);
      let pending: Awaited<ReturnType<StorageDriver['write']>> | undefined;
      try {
        pending = await storage.write(this.key, this.size).catch((err) => {
          this.storageFailed('write', err);
          return undefined;
        });
        pending?.stream.on('error', () => undefined); // surfaced by writeTo/commit
        // Chunks that arrive while a write is in progress are handed over together (writev), so the disk sees a
        // few large writes instead of one per network chunk; SINK_BUFFER bounds what is read ahead of the disk.
        const append = async (chunk: Buffer): Promise<void> => {
          if (this.size !== undefined && this.written + chunk.length > this.size) {
            throw new Error(`upstream sent more than its Content-Length of ${this.size} bytes`);
          }
          hash.update(chunk);
          // Spool and storage are written side by side; readers wake as soon as the spool has the bytes.
          const stored = pending
            ? writeTo(pending.stream, chunk).then(
                () => undefined,
                (err: unknown) => err ?? new Error('write failed'),
              )
            : undefined;
          await this.spool.write(chunk, 0, chunk.length, this.written);
          this.tail = { offset: this.written, bytes: chunk };
          this.written += chunk.length;
          this.wake();
          const storeError = await stored;
          if (storeError && pending) {
            this.storageFailed('write', storeError);
            await pending.abort().catch(() => undefined);
            pending = undefined;
          }
        };
        const sink = new Writable({
          highWaterMark: SINK_BUFFER,
          writev(chunks, callback) {
            append(chunks.length === 1 ? chunks[0].chunk : Buffer.concat(chunks.map((c) => c.chunk))).then(() => callback(), callback);
          },
        });
        await pipeline(body, sink, { signal }).catch((err: Error) => {
          throw signal.aborted ? new Error(`fill stopped: ${(signal.reason as Error)?.message ?? 'filltimeout reached'}`) : err;
        });
        if (this.size !== undefined && this.written !== this.size) {
          throw new Error(`upstream body ended after ${this.written} of ${this.size} bytes`);
        }
        const actual = hash.digest('hex');
        if (actual !== this.digest.hex) throw new Error(`digest mismatch: upstream bytes hash to ${this.digest.algorithm}:${actual}`);
        this.state = 'verified';
        this.wake();
        if (pending) {
          pending.stream.end();
          await pending.commit().then(
            () => log.info('blob cached', { digest: this.digest.text, bytes: this.written, ms: Date.now() - started }),
            (err) => this.storageFailed('commit', err),
          );
        }
        events?.emit('fillEnded', { digest: this.digest.text, ok: true, bytes: this.written });
      } catch (err) {
        this.failure = (err as Error).message;
        this.state = 'failed';
        this.wake();
        body.destroy();
        await pending?.abort().catch(() => undefined);
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
   * A stream of the blob (or of `range`) from the spool, as it fills. It errors if the fill fails, and ends only
   * once the content is verified. Undefined once the fill is over and its spool closed: storage has the blob.
   */
  reader(range?: ByteRange): Readable | undefined {
    if (this.closing) return undefined;
    this.readers++;
    let position = range?.start ?? 0;
    const endExclusive = range ? range.end + 1 : (this.size ?? Infinity);
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
      highWaterMark: READ_CHUNK,
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
      // Unverified: never hand out the last byte of what the client asked for.
      const available = verified ? end : Math.min(this.written, endExclusive - 1);
      if (available > position()) {
        const length = Math.min(available - position(), READ_CHUNK);
        const chunk = this.fromTail(position(), length) ?? (await this.fromSpool(position(), length));
        if (stream.destroyed) return;
        advance(chunk.length);
        if (!stream.push(chunk)) return;
        continue;
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** A copy (so no reader pins the fill's buffer) of up to `length` bytes at `position`, if the tail holds them. */
  private fromTail(position: number, length: number): Buffer | undefined {
    const tail = this.tail;
    if (!tail || position < tail.offset || position >= tail.offset + tail.bytes.length) return undefined;
    const start = position - tail.offset;
    return Buffer.from(tail.bytes.subarray(start, start + Math.min(length, tail.bytes.length - start)));
  }

  private async fromSpool(position: number, length: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(length);
    const { bytesRead } = await this.spool.read(buffer, 0, length, position);
    return buffer.subarray(0, bytesRead);
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private storageFailed(operation: string, err: unknown): void {
    this.context.log.error('storage failed during a fill; clients are still served, the blob is not cached', {
      digest: this.digest.text,
      operation,
      reason: (err as Error)?.message ?? String(err),
    });
    this.context.events?.emit('storageError', { operation });
  }

  private closing?: Promise<void>;
  private async closeIfUnused(): Promise<void> {
    if (!this.finished || this.readers > 0) return;
    this.closing ??= this.spool.close().catch(() => undefined);
    await this.closing;
  }
}

/** Writes with backpressure; rejects if the stream errors instead of draining. */
function writeTo(stream: Writable, chunk: Buffer): Promise<void> {
  if (stream.destroyed) return Promise.reject(new Error('storage write stream was destroyed'));
  if (stream.write(chunk)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      stream.off('drain', onDrain);
      stream.off('error', done);
      stream.off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => done();
    const onClose = () => done(new Error('storage write stream closed'));
    stream.once('drain', onDrain);
    stream.once('error', done);
    stream.once('close', onClose);
  });
}
