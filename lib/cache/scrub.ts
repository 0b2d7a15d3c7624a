/**
 * The background scrub: walks the stored blobs and verifies each one not verified within `verifyage` (by a fill, a
 * read or an earlier pass), reading at most `scrubrate` bytes per second, so damage is found in blobs nobody pulls
 * and the first pull after a restart finds them verified. A damaged blob is evicted (integrity.ts). A pass starts
 * at server start and then `sweepinterval` after the previous one ended; one pass at a time, stopped on close.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { CacheEvents } from './events';
import type { BlobIntegrity } from './integrity';
import type { Logger } from './log';
import { parseDigest } from './reference';
import type { StorageDriver } from './storage';

/** `blobs/<alg>/<xx>/<hex>/data` → `<alg>:<hex>`. */
const BLOB_KEY = /^blobs\/([a-z0-9]+)\/[0-9a-f]{2}\/([0-9a-f]+)\/data$/;

export interface ScrubOptions {
  /** Bytes per second read, at most; 0 turns the scrub off. */
  readonly rateBytesPerSecond: number;
  /** Pause between the end of a pass and the next. */
  readonly intervalMs: number;
  /** Keys being filled or served: left for the next pass. */
  readonly isBusy: (key: string) => boolean;
}

export interface ScrubPass {
  readonly checked: number;
  readonly damaged: number;
  readonly bytes: number;
}

export class Scrub {
  private readonly stopping = new AbortController();
  private running: Promise<ScrubPass> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly storage: StorageDriver,
    private readonly integrity: BlobIntegrity,
    private readonly options: ScrubOptions,
    private readonly events: CacheEvents,
    private readonly log: Logger,
  ) {}

  /** Starts the first pass now and schedules the rest; nothing when the rate is 0. */
  start(): void {
    if (this.options.rateBytesPerSecond > 0) this.schedule(0);
  }

  /** One pass now, or the one already running. */
  runOnce(): Promise<ScrubPass> {
    this.running ??= this.pass().finally(() => (this.running = undefined));
    return this.running;
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    clearTimeout(this.timer);
    await this.running?.catch(() => undefined);
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(() => {
      this.runOnce()
        .then((pass) => pass.checked > 0 && this.log.info('scrub pass done', { ...pass }))
        .catch((err: unknown) => this.log.warn('scrub pass failed', { reason: (err as Error).message }))
        .finally(() => !this.stopping.signal.aborted && this.schedule(this.options.intervalMs));
    }, delayMs);
    this.timer.unref(); // the scrub alone never keeps the process alive
  }

  private async pass(): Promise<ScrubPass> {
    const { signal } = this.stopping;
    const rate = this.options.rateBytesPerSecond;
    const started = Date.now();
    let bytes = 0;
    // Paced over the whole pass: after each chunk, wait until the bytes read so far fit the rate.
    const pace = async (n: number) => {
      bytes += n;
      this.events.emit('scrubbed', { bytes: n });
      const ahead = (bytes / rate) * 1000 - (Date.now() - started);
      if (ahead > 0) await sleep(ahead, undefined, { signal });
    };
    let checked = 0;
    let damaged = 0;
    for await (const info of this.storage.list('blobs/')) {
      if (signal.aborted) break;
      const match = BLOB_KEY.exec(info.key);
      const digest = match ? parseDigest(`${match[1]}:${match[2]}`) : undefined;
      if (!digest?.ok || !this.integrity.needsDigestCheck(digest.value.text) || this.options.isBusy(info.key)) continue;
      try {
        checked++;
        if ((await this.integrity.verifyStored(digest.value, 'scrub', pace)) === 'damaged') damaged++;
      } catch (err) {
        if (signal.aborted) break;
        this.log.warn('scrub could not read a blob', { key: info.key, reason: (err as Error).message });
        this.events.emit('storageError', { operation: 'read' });
      }
    }
    return { checked, damaged, bytes };
  }
}
