/**
 * How fills and hits reach the shard indexes (sweep-index.ts). Each replica records its own in memory (the latest
 * per key, bounded). A replica without the sweeper's lease writes them as one report object per renewal period
 * (`_sweeper/fills/<time>-<holder>`, named for its first use); the holder merges its own and the reports into its
 * pending changes, writes those (`_sweeper/pending`) and only then deletes the reports, so a holder that dies loses
 * nothing written; a shard's pending changes are taken when the holder processes the shard.
 */
import { readCapped } from './relay';
import { ChangeLog, decodeChanges, encodeChanges, type Change } from './sweep-index';
import { writeSmall, type StorageDriver } from './storage';

const REPORTS_PREFIX = '_sweeper/fills/';
const PENDING_KEY = '_sweeper/pending';
/** Keys a replica remembers for reporting, at most (reports failing for hours must not grow memory). */
const MAX_REPORTED_KEYS = 100_000;
/** Keys changed and not yet in an index that the holder remembers, at most (beyond: found by the next listing). */
const MAX_PENDING_KEYS = 1_000_000;
const MAX_REPORT_BYTES = 16 * 1024 * 1024;
const MAX_PENDING_BYTES = 128 * 1024 * 1024;
const CONTENT_KEY = /^(blobs|manifests)\/[a-z0-9]+\/[0-9a-f]{2}\//;

/** Shard (0-255) of a content key `<kind>/<alg>/<xx>/…`. */
export function shardOfKey(key: string): number {
  return parseInt(key.split('/', 3)[2]?.slice(0, 2) ?? '', 16) || 0;
}

export class SweepReports {
  /** Fills and hits of this replica not yet merged (holder) or reported (others). */
  private readonly own = new ChangeLog(MAX_REPORTED_KEYS);
  /** The holder's changes not yet in an index: as in `_sweeper/pending`, plus later ones while `changed`. */
  private pending = new ChangeLog(MAX_PENDING_KEYS);
  private changed = false;

  constructor(private readonly storage: StorageDriver) {}

  /** A fill or hit of this replica. */
  record(key: string, change: Change): void {
    this.own.add(key, change);
  }

  /** A change the holder made itself (an eviction), or learnt from a stat. */
  note(key: string, change: Change): void {
    this.pending.add(key, change);
    this.changed = true;
  }

  /** Removes and returns the pending changes of `shard`. */
  takeShard(shard: number): [string, Change][] {
    return this.pending.take((key) => shardOfKey(key) === shard);
  }

  /** Puts back changes taken but not written to their index. */
  restore(changes: Iterable<[string, Change]>): void {
    this.pending.addAll(changes);
  }

  /** Reads the pending changes as the last holder wrote them (replacing this replica's). Throws if unreadable. */
  async load(): Promise<void> {
    this.pending = new ChangeLog(MAX_PENDING_KEYS);
    this.changed = false;
    const stream = await this.storage.read(PENDING_KEY);
    if (stream) this.pending.addAll(decodeChanges(await readCapped(stream, MAX_PENDING_BYTES)));
  }

  /** Writes this replica's fills and hits as one report for the holder (none without any); kept on failure. */
  async report(name: string): Promise<void> {
    if (this.own.size === 0) return;
    const changes = this.own.take();
    await writeSmall(this.storage, `${REPORTS_PREFIX}${name}`, encodeChanges(changes)).catch((err: unknown) => {
      this.own.addAll(changes);
      throw err;
    });
  }

  /**
   * On the holder (`holder`): this replica's changes and every report into the pending changes, written before the
   * reports are deleted. Returns the changes merged; `failed` hears of each storage error.
   */
  async merge(holder: boolean, failed: (operation: string, key: string, err: unknown) => void): Promise<[string, Change][]> {
    const merged: [string, Change][] = this.own.take();
    const reports: string[] = [];
    try {
      for await (const report of this.storage.list(REPORTS_PREFIX)) {
        const stream = await this.storage.read(report.key);
        if (stream) merged.push(...decodeChanges(await readCapped(stream, MAX_REPORT_BYTES)).filter(([key]) => CONTENT_KEY.test(key)));
        reports.push(report.key);
      }
    } catch (err) {
      failed('list', REPORTS_PREFIX, err);
    }
    if (merged.length === 0 && reports.length === 0) return merged;
    this.pending.addAll(merged);
    this.changed = true;
    if (await this.save(holder, failed))
      for (const key of reports) await this.storage.delete(key).catch((err: unknown) => failed('delete', key, err));
    return merged;
  }

  /** Writes the pending changes if they changed; false when that failed, or this replica is not the holder. */
  async save(holder: boolean, failed: (operation: string, key: string, err: unknown) => void): Promise<boolean> {
    if (!holder) return false;
    if (!this.changed) return true;
    return writeSmall(this.storage, PENDING_KEY, encodeChanges(this.pending.entries())).then(
      () => {
        this.changed = false;
        return true;
      },
      (err: unknown) => {
        failed('write', PENDING_KEY, err);
        return false;
      },
    );
  }
}
