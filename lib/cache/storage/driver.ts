/**
 * What the cache needs from a storage backend. Keys are relative, slash-separated names such as
 * `blobs/sha256/ab/ab12…/data`; each driver maps them under its own root (rootdirectory, prefix).
 *
 * The contract every driver keeps (checked by test/support/storage-conformance.ts, which each
 * test/integration/storage-*.test.ts runs against its driver):
 * - Nothing is visible under a key until `commit()` of a write returns; a write that is aborted, or whose
 *   process dies, never becomes visible. Two writers of one key never produce a mixture: the last commit wins
 *   whole. This is what lets several replicas share one store.
 * - Reads stream; no driver holds a whole object in memory.
 * - `touch` records an access, and `list` reports it as `lastAccess`, so eviction counts from last use.
 */
import type { Readable, Writable } from 'node:stream';
import type { StorageKind } from '../../config';

export interface ObjectInfo {
  /** The key, relative to the driver's root. */
  readonly key: string;
  readonly size: number;
  /** Last `touch` (or the commit time, if never touched). */
  readonly lastAccess: Date;
}

/** Inclusive byte range, as in an HTTP Range header. */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

/** Bytes written so far, read at any position below what was written (a FileHandle is one). */
export interface WrittenBytes {
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  close(): Promise<void>;
}

/** A write in progress: bytes go to `stream`; they become visible only on `commit()`. */
export interface PendingWrite {
  readonly stream: Writable;
  /**
   * Opens a reader of what was written (bytes whose `stream.write` callback has run), valid after commit or
   * abort until closed. Drivers that write a local file offer it, so a blob fill needs no spool of its own.
   */
  readBack?(): Promise<WrittenBytes>;
  /** Call after `stream` has finished and the content is verified. Makes the object visible atomically. */
  commit(): Promise<void>;
  /** Discards everything written. Safe to call at any point, and more than once. */
  abort(): Promise<void>;
}

export interface StorageDriver {
  readonly kind: StorageKind;
  stat(key: string): Promise<ObjectInfo | undefined>;
  /** A stream of the object (or of `range` of it); undefined when the key does not exist. */
  read(key: string, range?: ByteRange): Promise<Readable | undefined>;
  /** Starts a write of `key`; `sizeHint` (bytes), when known, lets object stores pick part sizes. */
  write(key: string, sizeHint?: number): Promise<PendingWrite>;
  /**
   * Creates `key` holding `body` only if no object exists under it; true when this call created it. Of several
   * concurrent callers at most one gets true where the backend has a conditional create (filesystem: link(2),
   * S3: If-None-Match: *, OSS: x-oss-forbid-overwrite: true, Azure: If-None-Match: *, GCS: ifGenerationMatch=0,
   * Swift: If-None-Match: *). The sweeper's and the fills' leases are built on it.
   */
  createIfAbsent(key: string, body: Buffer): Promise<boolean>;
  /** Removes the object; removing a missing key is not an error. */
  delete(key: string): Promise<void>;
  /** Records that the object was just used. */
  touch(key: string): Promise<void>;
  /** Every committed object whose key starts with `prefix`. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Removes leftovers of writes older than `olderThanMs` (a killed process's temp files or open uploads). */
  removeStaleWrites(olderThanMs: number): Promise<number>;
  /** Writes, reads back and deletes a probe object: what /readyz asks. */
  probe(): Promise<void>;
  /** Releases connections (object-store clients keep sockets alive); optional, the filesystem has none. */
  close?(): Promise<void>;
}

/** Writes a small object whole (manifests, tag records, bookkeeping), through the same atomic commit as blobs. */
export async function writeSmall(storage: StorageDriver, key: string, data: Buffer): Promise<void> {
  const pending = await storage.write(key, data.length);
  try {
    pending.stream.end(data);
    await pending.commit();
  } catch (err) {
    await pending.abort();
    throw err;
  }
}

/** A storage failure, as a value the server can map to a 503 and a metric rather than a crash. */
export class StorageError extends Error {
  constructor(
    readonly operation: string,
    readonly key: string,
    override readonly cause: unknown,
  ) {
    super(`storage ${operation} ${key}: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = 'StorageError';
  }
}
