/**
 * The steps of eviction, shared by a full sweep (`sweep`) and the sweeper's sharded passes (`Sweeper`): listing
 * content under prefixes, TTL from last access, LRU removal, orphaned tags, and the one guarded delete they all use.
 *
 * Safety of the guarded delete (`SweepRun.evict`):
 * - A key the server is serving or filling (`isBusy`) is never removed.
 * - Each candidate is stat'ed again right before deletion, so a hit on any replica (which touched it) since the
 *   listing saves it; deleting a missing key is not an error. A read that opened the file before the delete still
 *   completes on POSIX filesystems.
 */
import type { CacheMetrics } from './metrics';
import { manifestKey, parseDigest, tagKeyOfRef, tagRefsPrefix } from './reference';
import { StorageError, type ObjectInfo, type StorageDriver } from './storage';

export type EvictionReason = 'ttl' | 'size' | 'orphan-tag';

export interface SweepOptions {
  /** Remove content not accessed for this long. Undefined: no TTL. */
  readonly blobTtlMs?: number;
  /** Keep the stored bytes (blobs + manifests) at or under this. Undefined: no bound. */
  readonly maxSizeBytes?: number;
  /** True while the server is serving or filling `key`; such keys are never removed. */
  readonly isBusy: (key: string) => boolean;
  /** Temp files of writes older than this are a dead process's leftovers. Undefined: leave them. */
  readonly staleWriteAgeMs?: number;
  readonly now?: () => number;
  readonly metrics?: Pick<CacheMetrics, 'evictions' | 'storageErrors'>;
  readonly log?: (level: 'info' | 'warn', message: string, fields: Record<string, unknown>) => void;
}

export interface SweepResult {
  readonly evicted: readonly { key: string; reason: EvictionReason; size: number }[];
  /** Busy keys that would otherwise have been evicted. */
  readonly spared: readonly string[];
  /** Bytes of blobs and manifests left after the sweep (of the whole store, as far as the sweeper knows it). */
  readonly storedBytes: number;
  readonly staleWritesRemoved: number;
  readonly errors: number;
}

export interface ContentItem {
  readonly key: string;
  readonly size: number;
  readonly lastAccess: number;
}

const DIGEST = /(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})(?![0-9a-f])/;

/** `manifests/<alg>/<xx>/<hex>/data` for the digest a tag file holds (plain or JSON), if any. */
export function manifestKeyOfTag(content: string): string | undefined {
  const match = DIGEST.exec(content);
  const digest = match && parseDigest(match[1]);
  return digest && digest.ok ? manifestKey(digest.value) : undefined;
}

/** One sweep's bookkeeping: what went, what was spared, errors; and the guarded delete. */
export class SweepRun {
  readonly evicted: { key: string; reason: EvictionReason; size: number }[] = [];
  readonly spared: string[] = [];
  errors = 0;
  staleWritesRemoved = 0;
  readonly now: () => number;

  /** Objects listed since the last checkpoint. */
  private sinceCheckpoint = 0;

  constructor(
    readonly storage: StorageDriver,
    readonly options: SweepOptions,
    /**
     * Asked every 1,000 listed objects: false stops the listing (the sweeper renews its lease here, so a long pass
     * does not let it expire, and stops when another replica holds it).
     */
    private readonly checkpoint: () => Promise<boolean> = async () => true,
  ) {
    this.now = options.now ?? Date.now;
  }

  /** False when the run must stop. */
  private async proceed(): Promise<boolean> {
    if (++this.sinceCheckpoint < 1000) return true;
    this.sinceCheckpoint = 0;
    return this.checkpoint();
  }

  /** Asks the checkpoint now (the sweeper, once per shard, so reading many indexes also renews its lease). */
  async checkpointNow(): Promise<boolean> {
    this.sinceCheckpoint = 0;
    return this.checkpoint();
  }

  failed(operation: string, key: string, err: unknown): void {
    this.errors++;
    this.options.metrics?.storageErrors.inc({ operation: err instanceof StorageError ? err.operation : operation });
    this.options.log?.('warn', 'sweep: storage error', { operation, key, error: err instanceof Error ? err.message : String(err) });
  }

  /**
   * Deletes `key` if it is idle and `stillEvictable` holds for a fresh stat; the removed size, or undefined. `seen`
   * gets the fresh stat (undefined: the key is gone).
   */
  async evict(
    key: string,
    reason: EvictionReason,
    stillEvictable: (lastAccess: number) => boolean,
    seen?: (fresh: ObjectInfo | undefined) => void,
  ): Promise<number | undefined> {
    if (this.options.isBusy(key)) {
      this.spared.push(key);
      return undefined;
    }
    try {
      const fresh = await this.storage.stat(key);
      seen?.(fresh);
      if (!fresh) return undefined; // another replica removed it
      if (!stillEvictable(fresh.lastAccess.getTime())) return undefined;
      if (this.options.isBusy(key)) {
        this.spared.push(key);
        return undefined;
      }
      await this.storage.delete(key);
      this.evicted.push({ key, reason, size: fresh.size });
      this.options.metrics?.evictions.inc({ reason });
      this.options.log?.('info', 'evicted', { key, reason, size: fresh.size });
      if (key.startsWith('manifests/')) await this.dropTagsOf(key);
      return fresh.size;
    } catch (err) {
      this.failed('delete', key, err);
      return undefined;
    }
  }

  /**
   * Removes the tags that name the evicted `manifest`, found through its back-references (reference.ts tagRefKey):
   * one listing, then a read per tag that ever named it. A tag re-pointed since to another manifest stays; every
   * back-reference of `manifest` goes.
   */
  private async dropTagsOf(manifest: string): Promise<void> {
    const prefix = tagRefsPrefix(manifest);
    const refs: string[] = [];
    try {
      for await (const ref of this.storage.list(prefix)) refs.push(ref.key);
    } catch (err) {
      this.failed('list', prefix, err);
      return;
    }
    for (const ref of refs) {
      const tag = tagKeyOfRef(ref);
      try {
        const content = await readSmall(this.storage, tag);
        if (content !== undefined && manifestKeyOfTag(content) === manifest) await this.evict(tag, 'orphan-tag', () => true);
        await this.storage.delete(ref);
      } catch (err) {
        this.failed('delete', ref, err);
      }
    }
  }

  /** Lists `prefixes` and removes what is past the TTL; returns what is kept. */
  async expire(prefixes: readonly string[]): Promise<ContentItem[]> {
    const ttl = this.options.blobTtlMs;
    const expired = (lastAccess: number) => ttl !== undefined && this.now() - lastAccess > ttl;
    const kept: ContentItem[] = [];
    for (const prefix of prefixes) {
      try {
        for await (const info of this.storage.list(prefix)) {
          if (!(await this.proceed())) return kept;
          const item = { key: info.key, size: info.size, lastAccess: info.lastAccess.getTime() };
          if (expired(item.lastAccess) && (await this.evict(item.key, 'ttl', expired)) !== undefined) continue;
          kept.push(item);
        }
      } catch (err) {
        this.failed('list', prefix, err);
      }
    }
    return kept;
  }

  /** Evicts `items`, least recently used first, until `excess` bytes are gone; returns the bytes removed. */
  async evictLeastRecent(items: readonly ContentItem[], excess: number): Promise<number> {
    let removed = 0;
    for (const item of [...items].sort((a, b) => a.lastAccess - b.lastAccess)) {
      if (removed >= excess) break;
      // Untouched since listed: a hit in between makes it recently used again.
      removed += (await this.evict(item.key, 'size', (lastAccess) => lastAccess <= item.lastAccess)) ?? 0;
    }
    return removed;
  }

  /**
   * Drops tags under `prefix` whose manifest is gone, reading every tag: for tags without a back-reference (written
   * before back-references existed, or whose manifest's eviction was cut short by a crash).
   */
  async dropOrphanTags(prefix: string): Promise<void> {
    try {
      for await (const tag of this.storage.list(prefix)) {
        if (!(await this.proceed())) return;
        const content = await readSmall(this.storage, tag.key);
        const target = content === undefined ? undefined : manifestKeyOfTag(content);
        if (target === undefined) continue; // unreadable or not ours to judge: leave it
        if (await this.storage.stat(target)) continue;
        await this.evict(tag.key, 'orphan-tag', () => true);
      }
    } catch (err) {
      this.failed('list', prefix, err);
    }
  }

  /** Removes temp files of writes by a killed process, when `staleWriteAgeMs` is set. */
  async removeStaleWrites(): Promise<void> {
    if (this.options.staleWriteAgeMs === undefined) return;
    try {
      this.staleWritesRemoved += await this.storage.removeStaleWrites(this.options.staleWriteAgeMs);
    } catch (err) {
      this.failed('removeStaleWrites', '_uploads', err);
    }
  }

  result(storedBytes: number): SweepResult {
    const { evicted, spared, staleWritesRemoved, errors } = this;
    return { evicted, spared, storedBytes, staleWritesRemoved, errors };
  }
}

/** Reads a small object (a few KiB at most; more means it is not a tag file, and it is left alone). */
export async function readSmall(storage: StorageDriver, key: string): Promise<string | undefined> {
  const stream = await storage.read(key, { start: 0, end: 4095 });
  if (!stream) return undefined;
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}
