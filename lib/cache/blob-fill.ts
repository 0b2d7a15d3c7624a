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
 * The disk side (pending write, read-back, spool, storage failures) is fill-disk.ts, the window fill-window.ts, a
 * client's stream fill-reader.ts; `BlobFill.run` reads as the pipeline does: hash → window → disk → verify → commit.
 */
import { createHash, type Hash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BusyKeys } from './busy';
import { FillDisk, type FillDiskContext } from './fill-disk';
import { FillReader, type FillFeed, type FillProgress } from './fill-reader';
import { FillWindow } from './fill-window';
import type { OciError } from './oci-error';
import type { Digest } from './reference';

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

/** Where a fill's bytes come from: this replica's upstream GET, or another replica's fill of the blob. */
export type SourceKind = 'upstream' | 'replica';

/** Where a fill's source comes from when replicas coordinate (fill-coordinator.ts). */
export interface FillSourceOpener {
  /** `decided` is called once it is known where the bytes come from, before the source answers. */
  open(digest: Digest, openUpstream: UpstreamOpener, signal: AbortSignal, decided?: (kind: SourceKind) => void): Promise<FillSource>;
}

export interface FillContext extends FillDiskContext {
  /** The site's fill coordination; without it, each replica fetches its own misses. */
  readonly coordinator?: FillSourceOpener;
  readonly timeoutMs: number;
  readonly busy: BusyKeys;
}

/** Upstream bytes buffered ahead of hashing, at most. */
const SINK_BUFFER = 4 * 1024 * 1024;
/** Recent upstream bytes kept in memory for readers that keep up (per fill), beyond those not on disk yet. */
const WINDOW = 4 * 1024 * 1024;
/** Bytes handed to the disk but not written yet, at most, before the fill waits for the disk (per fill). */
const DISK_LAG = 8 * 1024 * 1024;

/** The in-flight fills, by digest: concurrent misses of one blob join one fill. */
export class FillRegistry {
  private readonly slots = new Map<string, Promise<FillStart>>();
  /** Where each fill's bytes come from, once decided (resolves never if the fill fails before). */
  private readonly sources = new Map<string, Promise<SourceKind>>();
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
   * Where the fill of `digest` in flight gets its bytes, as soon as that is decided: before the source answers, so a
   * client of a fill streamed from another replica can be authorized with the upstream meanwhile.
   */
  source(digest: Digest): Promise<SourceKind> | undefined {
    return this.sources.get(digest.text);
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
    let decided!: (kind: SourceKind) => void;
    const source = new Promise<SourceKind>((resolve) => (decided = resolve));
    const start = (async (): Promise<FillStart> => {
      const { coordinator } = this.context;
      if (!coordinator) decided('upstream');
      const opened = await (
        coordinator ? coordinator.open(digest, openUpstream, signal, decided) : this.direct(openUpstream, signal)
      ).catch((err): FillSource => ({
        ok: false,
        error: { status: 502, code: 'UNAVAILABLE', message: `upstream request failed: ${(err as Error).message}` },
      }));
      if (!opened.ok) return opened;
      const fill = new BlobFill(digest, key, opened.size, this.context);
      fill.run(opened.body, signal);
      if (opened.done) void fill.settled.then(opened.done).catch(() => undefined);
      return { ok: true, fill, fetched: opened.fetched };
    })();
    this.slots.set(digest.text, start);
    this.sources.set(digest.text, source);
    const forget = () => {
      if (this.slots.get(digest.text) === start) this.slots.delete(digest.text);
      if (this.sources.get(digest.text) === source) this.sources.delete(digest.text);
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

/**
 * One fill: the upstream body goes, batch by batch, through the hash into the window (readers wake) and to the disk;
 * at its end the length and digest are checked, and only then is the blob committed and the readers' last bytes
 * released. On a digest mismatch, a short body or an upstream abort, nothing is committed and every reader fails.
 */
export class BlobFill implements FillFeed {
  private state: FillProgress['state'] = 'filling';
  private written = 0;
  /** When the first upstream byte came (Date.now()), for the phases 'blob cached' logs. */
  private firstByteAt?: number;
  /** How long the source was held back waiting for the disk (DISK_LAG), in ms. */
  private diskWaitMs = 0;
  private failure?: string;
  private readers = 0;
  private finished = false;
  private waiters: Array<() => void> = [];
  /** Resolves when the fill is verified and committed, or failed; never rejects. */
  readonly settled: Promise<void>;
  private settle!: () => void;
  private readonly window = new FillWindow(WINDOW);
  private readonly disk: FillDisk;

  constructor(
    readonly digest: Digest,
    readonly key: string,
    /** From the upstream's Content-Length; undefined when it sent none. */
    readonly size: number | undefined,
    private readonly context: FillContext,
  ) {
    this.settled = new Promise((resolve) => (this.settle = resolve));
    this.disk = new FillDisk(digest, key, size, context, () => this.written);
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
        await pipeline(body, this.sink(hash), { signal }).catch((err: Error) => {
          throw signal.aborted ? new Error(`fill stopped: ${(signal.reason as Error)?.message ?? 'filltimeout reached'}`) : err;
        });
        const bodyEnd = Date.now();
        await this.disk.drained();
        this.disk.check();
        this.verify(hash);
        this.state = 'verified';
        this.wake();
        const verified = Date.now();
        if (await this.disk.commit())
          log.info('blob cached', {
            digest: this.digest.text,
            bytes: this.written,
            ms: Date.now() - started,
            // The fill's phases from its start: first and last source byte, verified (the readers' last byte goes).
            firstByteMs: (this.firstByteAt ?? bodyEnd) - started,
            bodyEndMs: bodyEnd - started,
            verifiedMs: verified - started,
            diskWaitMs: this.diskWaitMs,
          });
        events?.emit('fillEnded', { digest: this.digest.text, ok: true, bytes: this.written });
      } catch (err) {
        this.failure = (err as Error).message;
        this.state = 'failed';
        this.wake();
        body.destroy();
        await this.disk.abort();
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
   * Where the upstream body goes: each batch is hashed and held in the window, readers wake (before the disk has
   * it), and the batch goes to the disk while the next one is taken: upstream reads, hashing, clients and the disk
   * overlap instead of taking turns (bench/). DISK_LAG bounds what is handed to the disk but not on it yet; the
   * window holds all of it.
   */
  private sink(hash: Hash): Writable {
    const append = async (chunks: Buffer[]): Promise<void> => {
      this.disk.check();
      this.firstByteAt ??= Date.now();
      const offset = this.written;
      for (const chunk of chunks) {
        if (this.size !== undefined && this.written + chunk.length > this.size) {
          throw new Error(`upstream sent more than its Content-Length of ${this.size} bytes`);
        }
        hash.update(chunk);
        this.window.push(this.written, chunk);
        this.written += chunk.length;
      }
      this.wake();
      const lag = this.disk.append(chunks, offset, this.written, () => this.window.trim(this.disk.end));
      if (lag > DISK_LAG) {
        const waited = Date.now();
        await this.disk.drained();
        this.diskWaitMs += Date.now() - waited;
      }
    };
    return new Writable({
      highWaterMark: SINK_BUFFER,
      writev(chunks, callback) {
        append(chunks.map((c) => c.chunk as Buffer)).then(() => callback(), callback);
      },
    });
  }

  /** The whole body came: its length and digest are the ones asked for, or the fill fails. */
  private verify(hash: Hash): void {
    if (this.size !== undefined && this.written !== this.size) {
      throw new Error(`upstream body ended after ${this.written} of ${this.size} bytes`);
    }
    const actual = hash.digest('hex');
    if (actual !== this.digest.hex) throw new Error(`digest mismatch: upstream bytes hash to ${this.digest.algorithm}:${actual}`);
  }

  /**
   * A stream of the blob (or of `range`) as it fills (fill-reader.ts). Undefined once the fill is over and its disk
   * side closed: storage has the blob.
   */
  reader(range?: { readonly start: number; readonly end?: number }): Readable | undefined {
    if (this.disk.closed) return undefined;
    this.readers++;
    return new FillReader(this, range);
  }

  progress(): FillProgress {
    return { state: this.state, written: this.written, failure: this.failure };
  }

  bytesAt(position: number, length: number): Buffer | Promise<Buffer> {
    return this.window.read(position, length) ?? this.disk.read(position, length, this.window.start ?? Infinity);
  }

  changed(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  async detach(): Promise<void> {
    this.readers--;
    await this.closeIfUnused();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private async closeIfUnused(): Promise<void> {
    if (!this.finished || this.readers > 0) return;
    await this.disk.close();
  }
}
