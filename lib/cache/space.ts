/**
 * Room on a full store. When a fill finds the storage full (ENOSPC), its clients are served uncached (blob-fill.ts)
 * and the least recently used content is evicted to make room for the blob, with the sweeper's own eviction (`sweep`
 * with a size bound of what is stored minus the blob), so the next pull of it is cached. A blob larger than all the
 * cached content together would not fit even in an emptied store: nothing is evicted for it. One reclaim at a time;
 * a full disk reported meanwhile is covered by the one running.
 */
import type { Logger } from './log';
import type { CacheMetrics } from './metrics';
import type { StorageDriver } from './storage';
import { sweep } from './sweeper';

export class SpaceReclaimer {
  private running: Promise<void> | undefined;

  constructor(
    private readonly storage: StorageDriver,
    private readonly isBusy: (key: string) => boolean,
    private readonly metrics: Pick<CacheMetrics, 'evictions' | 'storageErrors'>,
    private readonly log: Logger,
  ) {}

  /** Starts evicting to make room for `bytes`, unless a reclaim is running. */
  reclaim(bytes: number): void {
    this.running ??= this.run(bytes)
      .catch((err: unknown) => this.log.warn('storage full: eviction failed', { reason: (err as Error).message }))
      .finally(() => (this.running = undefined));
  }

  async stop(): Promise<void> {
    await this.running;
  }

  private async run(bytes: number): Promise<void> {
    let stored = 0;
    for (const prefix of ['blobs/', 'manifests/']) for await (const info of this.storage.list(prefix)) stored += info.size;
    if (bytes > stored) {
      this.log.warn('storage full: the blob is larger than all cached content; nothing evicted for it', { bytes, stored });
      return;
    }
    const result = await sweep(this.storage, {
      maxSizeBytes: stored - bytes,
      isBusy: this.isBusy,
      metrics: this.metrics,
      log: (level, message, fields) => this.log[level](message, fields),
    });
    this.log.warn('storage full: evicted least recently used content', {
      bytes: result.evicted.reduce((sum, e) => sum + e.size, 0),
      objects: result.evicted.length,
      needed: bytes,
    });
  }
}
