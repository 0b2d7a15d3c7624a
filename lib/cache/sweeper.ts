/**
 * Eviction. Content not accessed within `blobttl` is removed (last access = the driver's `lastAccess`, which the
 * server sets with `touch` on every hit, so a blob pulled daily never expires, as DTR documents); then, if
 * `maxsize` is set and the store is still larger, the least recently used blobs and manifests go until it fits.
 * Tags whose manifest is gone are dropped, so a tag never points at nothing.
 *
 * Safety:
 * - A key the server is serving or filling (`isBusy`) is never removed.
 * - Several replicas may sweep one store at once: deleting a missing key is not an error, and each candidate is
 *   stat'ed again right before deletion, so a hit on another replica (which touched it) since the listing
 *   saves it. A read that opened the file before the delete still completes on POSIX filesystems.
 * - Leftovers of writes by a killed process (temp files older than the longest possible fill) are removed too.
 */
import type { StorageDriver } from './storage';
import { StorageError } from './storage';
import type { CacheMetrics } from './metrics';

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
  /** Bytes of blobs and manifests left after the sweep. */
  readonly storedBytes: number;
  readonly staleWritesRemoved: number;
  readonly errors: number;
}

/** Content prefixes; tags are handled after them. */
const CONTENT_PREFIXES = ['blobs/', 'manifests/'] as const;
const DIGEST = /sha256:([0-9a-f]{64})/;

/** `manifests/sha256/<xx>/<hex>/data` for the digest a tag file holds (plain or JSON), if any. */
export function manifestKeyOfTag(content: string): string | undefined {
  const match = DIGEST.exec(content);
  return match ? `manifests/sha256/${match[1].slice(0, 2)}/${match[1]}/data` : undefined;
}

/** One sweep over `storage`. Never throws for a storage failure: it counts it and goes on. */
export async function sweep(storage: StorageDriver, options: SweepOptions): Promise<SweepResult> {
  const now = options.now ?? Date.now;
  const evicted: { key: string; reason: EvictionReason; size: number }[] = [];
  const spared: string[] = [];
  let errors = 0;
  const failed = (operation: string, key: string, err: unknown) => {
    errors++;
    options.metrics?.storageErrors.inc({ operation: err instanceof StorageError ? err.operation : operation });
    options.log?.('warn', 'sweep: storage error', { operation, key, error: err instanceof Error ? err.message : String(err) });
  };

  /** Deletes `key` if it is idle and `stillEvictable` holds for a fresh stat; true when removed. */
  const evict = async (key: string, reason: EvictionReason, stillEvictable: (lastAccess: number) => boolean): Promise<boolean> => {
    if (options.isBusy(key)) {
      spared.push(key);
      return false;
    }
    try {
      const fresh = await storage.stat(key);
      if (!fresh) return false; // another replica removed it
      if (!stillEvictable(fresh.lastAccess.getTime())) return false;
      if (options.isBusy(key)) {
        spared.push(key);
        return false;
      }
      await storage.delete(key);
      evicted.push({ key, reason, size: fresh.size });
      options.metrics?.evictions.inc({ reason });
      options.log?.('info', 'evicted', { key, reason, size: fresh.size });
      return true;
    } catch (err) {
      failed('delete', key, err);
      return false;
    }
  };

  // 1. List content once.
  const content: { key: string; size: number; lastAccess: number }[] = [];
  for (const prefix of CONTENT_PREFIXES) {
    try {
      for await (const info of storage.list(prefix))
        content.push({ key: info.key, size: info.size, lastAccess: info.lastAccess.getTime() });
    } catch (err) {
      failed('list', prefix, err);
    }
  }

  // 2. TTL: from last access.
  const kept: typeof content = [];
  for (const item of content) {
    const ttl = options.blobTtlMs;
    const expired = (lastAccess: number) => ttl !== undefined && now() - lastAccess > ttl;
    if (expired(item.lastAccess) && (await evict(item.key, 'ttl', expired))) continue;
    kept.push(item);
  }

  // 3. Size bound: least recently used first, until the rest fits.
  let storedBytes = kept.reduce((sum, i) => sum + i.size, 0);
  if (options.maxSizeBytes !== undefined && storedBytes > options.maxSizeBytes) {
    const byAge = [...kept].sort((a, b) => a.lastAccess - b.lastAccess);
    for (const item of byAge) {
      if (storedBytes <= options.maxSizeBytes) break;
      // Untouched since listed: a hit in between makes it recently used again.
      if (await evict(item.key, 'size', (lastAccess) => lastAccess <= item.lastAccess)) storedBytes -= item.size;
    }
  }

  // 4. Tags whose manifest is gone (evicted now, or earlier by another replica).
  try {
    for await (const tag of storage.list('tags/')) {
      const manifestKey = await readSmall(storage, tag.key);
      const target = manifestKey === undefined ? undefined : manifestKeyOfTag(manifestKey);
      if (target === undefined) continue; // unreadable or not ours to judge: leave it
      if (await storage.stat(target)) continue;
      await evict(tag.key, 'orphan-tag', () => true);
    }
  } catch (err) {
    failed('list', 'tags/', err);
  }

  // 5. Temp files of writes by a killed process.
  let staleWritesRemoved = 0;
  if (options.staleWriteAgeMs !== undefined) {
    try {
      staleWritesRemoved = await storage.removeStaleWrites(options.staleWriteAgeMs);
    } catch (err) {
      failed('removeStaleWrites', '_uploads', err);
    }
  }

  return { evicted, spared, storedBytes, staleWritesRemoved, errors };
}

/** Reads a tag file (a few hundred bytes at most; more means it is not a tag file, and it is left alone). */
async function readSmall(storage: StorageDriver, key: string): Promise<string | undefined> {
  const stream = await storage.read(key, { start: 0, end: 4095 });
  if (!stream) return undefined;
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** Runs `sweep` every `intervalMs`, never two at once; `stop` waits for a running sweep. */
export class Sweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<SweepResult> | undefined;
  private stopped = true;

  constructor(
    private readonly storage: StorageDriver,
    private readonly intervalMs: number,
    private readonly options: SweepOptions,
  ) {}

  /** Sweeps once now (removing a dead process's leftovers first thing), then every interval. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule(0);
  }

  /** One sweep now, or the one already running. */
  runOnce(): Promise<SweepResult> {
    if (!this.running) {
      this.running = sweep(this.storage, this.options).finally(() => {
        this.running = undefined;
      });
    }
    return this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.runOnce()
        .catch((err: unknown) => this.options.log?.('warn', 'sweep failed', { error: err instanceof Error ? err.message : String(err) }))
        .finally(() => {
          if (!this.stopped) this.schedule(this.intervalMs);
        });
    }, delayMs);
    // The sweeper alone never keeps the process alive (drain decides when it exits).
    this.timer.unref();
  }
}
