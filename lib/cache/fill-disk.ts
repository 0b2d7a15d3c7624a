/**
 * The disk side of a blob fill: the storage driver's pending write, and what readers behind the memory window read
 * back. That is the pending write itself when the driver can read it back (filesystem, NFS), else a spool file beside
 * it (object stores): one disk write per byte where possible, as a separate spool doubles the disk work of a cold pull.
 *
 * A storage failure (a full disk: ENOSPC) leaves the blob uncached, not the clients unserved: when the pending write
 * is what readers read back, the rest of the blob goes to a spool from then on, and readers read what was written
 * before from the aborted write's descriptor (it keeps the bytes after the file is removed). The `uncached` event says
 * so (the server then frees space by eviction when the disk was full).
 *
 * The spool file is unlinked as soon as it is opened: it lives as long as its descriptor, so a killed process leaves
 * nothing behind (the storage driver's own temp file is cleaned by `removeStaleWrites` at start).
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import type { CacheEvents } from './events';
import type { Logger } from './log';
import type { Digest } from './reference';
import type { PendingWrite, StorageDriver, WrittenBytes } from './storage';

/** What the disk side needs of the fill's context. */
export interface FillDiskContext {
  readonly storage: StorageDriver;
  readonly spoolDir: string;
  readonly log: Logger;
  readonly events?: CacheEvents;
}

export class FillDisk {
  /** Bytes on disk: every offset below this can be read back. */
  private onDisk = 0;
  /** Why the disk could not be written, once that happened (the fill fails at its next step). */
  private failure?: Error;
  /** The batches handed over so far, in order: resolves once all of them are on disk. */
  private queue: Promise<void>;

  /** The storage write; undefined once it failed (or if it could not start). */
  private pending?: PendingWrite;
  /** Where readers behind the window read: the pending write read back, or the spool. */
  private backing?: WrittenBytes;
  /** The spool, when the pending write cannot be read back. */
  private spool?: FileHandle;
  /** The spool the fill goes on in after its read-back storage write failed, from byte `cut`. */
  private fallback?: Promise<FileHandle>;
  private cut = Infinity;
  private closing?: Promise<void>;
  /**
   * Opening the storage write, read-back or spool. Nothing waits for it but the disk writes: the first bytes reach
   * the clients while the files are being opened (time to first byte, bench/).
   */
  private readonly opened: Promise<void>;

  constructor(
    private readonly digest: Digest,
    private readonly key: string,
    private readonly size: number | undefined,
    private readonly context: FillDiskContext,
    /** Bytes the fill has so far: what an `uncached` event reports when the size is unknown. */
    private readonly bytesSoFar: () => number,
  ) {
    this.opened = this.open();
    this.opened.catch(() => undefined); // surfaced by the first disk write
    this.queue = this.opened;
  }

  /** The end of what is on disk. */
  get end(): number {
    return this.onDisk;
  }

  /** Throws why the disk failed, if it did. */
  check(): void {
    if (this.failure) throw this.failure;
  }

  /**
   * Hands the batch `chunks` at `offset` (ending at `end`) to the disk; `onWritten` runs once it and every earlier
   * batch are on disk. Returns how many bytes are handed over but not on disk yet.
   */
  append(chunks: Buffer[], offset: number, end: number, onWritten: () => void): number {
    const written = this.opened.then(() =>
      Promise.all([this.storeBatch(chunks, offset), this.spool && writevFully(this.spool, chunks, offset)]),
    );
    this.queue = Promise.all([this.queue, written]).then(
      () => {
        this.onDisk = end;
        onWritten();
      },
      (err: unknown) => {
        this.failure ??= err instanceof Error ? err : new Error(String(err));
      },
    );
    return end - this.onDisk;
  }

  /** Resolves once every batch handed over is on disk (or the disk failed: see `check`). */
  drained(): Promise<void> {
    return this.queue;
  }

  /** Up to `length` bytes at `position`, never past `limit` (at most what is on disk). */
  async read(position: number, length: number, limit: number): Promise<Buffer> {
    const end = Math.min(position + length, limit, this.onDisk);
    const buffer = Buffer.allocUnsafe(end - position);
    // Bytes before the window are on disk, so the disk side is open by now.
    const { bytesRead } = await (this.backing as WrittenBytes).read(buffer, 0, buffer.length, position);
    if (bytesRead === 0) throw new Error(`the fill's disk copy ends before byte ${position}`);
    return buffer.subarray(0, bytesRead);
  }

  /** Makes the verified blob visible in storage; a failure leaves it uncached (logged), never fails the fill. */
  async commit(): Promise<boolean> {
    const pending = this.pending;
    if (!pending) return false;
    pending.stream.end();
    return pending.commit().then(
      () => true,
      (err) => {
        this.uncached('commit', err);
        return false;
      },
    );
  }

  /** Discards the storage write: nothing partial is ever committed. */
  async abort(): Promise<void> {
    await this.opened.catch(() => undefined);
    await this.pending?.abort().catch(() => undefined);
  }

  /** Closes what readers read (once the fill is over and no reader is left). */
  close(): Promise<void> {
    this.closing ??= this.opened.then(() => this.backing?.close()).catch(() => undefined);
    return this.closing;
  }

  get closed(): boolean {
    return this.closing !== undefined;
  }

  private async open(): Promise<void> {
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
    const { log, events } = this.context;
    log.error('storage failed during a fill', { digest: this.digest.text, operation, reason: (err as Error)?.message ?? String(err) });
    events?.emit('storageError', { operation });
    const full = isNoSpace(err);
    log.warn('serving the blob from the upstream uncached', { digest: this.digest.text, reason: full ? 'storage full' : 'storage error' });
    events?.emit('uncached', {
      digest: this.digest.text,
      reason: full ? 'storage-full' : 'storage-error',
      bytes: this.size ?? this.bytesSoFar(),
    });
  }
}

/** A full disk (the driver's error, or its cause). */
function isNoSpace(err: unknown): boolean {
  const code = (e: unknown) => (e as NodeJS.ErrnoException | undefined)?.code;
  return code(err) === 'ENOSPC' || code((err as Error | undefined)?.cause) === 'ENOSPC';
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
