/**
 * What the server reports about its work, as typed events. This is the seam for metrics, health and tests:
 * the pull path emits, and observers subscribe without the pull path knowing them.
 */
import { EventEmitter } from 'node:events';

export interface CacheEventMap {
  /** A client request was answered (or cut). */
  request: { route: string; method: string; status: number; durationMs: number };
  /** A lookup of cached content: `hit` served from storage, `miss` fetched upstream. */
  lookup: { kind: 'blob' | 'manifest' | 'tag'; result: 'hit' | 'miss' };
  /** Body bytes sent to a client, by where they came from (a fill's spool counts as upstream). */
  served: { source: 'storage' | 'upstream'; bytes: number };
  /** An upstream request got its response headers (`status`) or failed (`status` undefined). */
  upstream: { method: string; status?: number; seconds: number };
  fillStarted: { digest: string };
  fillEnded: { digest: string; ok: boolean; bytes: number; reason?: string };
  /** Content other than a blob fill was committed to storage (a manifest): `key`, its size. */
  stored: { key: string; bytes: number };
  /** Stored content was used and its last access recorded (`touch`). */
  accessed: { key: string };
  /** Cached content was served past its freshness because the upstream was unreachable. */
  stale: { kind: 'tag' | 'authorization'; name: string };
  storageError: { operation: string };
  /** A fill lost its storage write and went on for its clients only; `bytes`: the blob's size, or what came so far. */
  uncached: { digest: string; reason: 'storage-full' | 'storage-error'; bytes: number };
  /** A stored blob was checked: on a hit (`size`, `digest`) or by the scrub. */
  integrity: { check: 'size' | 'digest' | 'scrub'; result: 'ok' | 'damaged' };
  /** Bytes of stored blobs the scrub read. */
  scrubbed: { bytes: number };
  /** The server removed a stored object itself (the sweeper counts its own evictions). */
  evicted: { reason: 'damaged' };
}

export type CacheEventName = keyof CacheEventMap;

export class CacheEvents {
  private readonly emitter = new EventEmitter();

  constructor() {
    // Observers are few (metrics, logs, tests); a warning at 10 would be noise, not a leak signal.
    this.emitter.setMaxListeners(50);
  }

  on<E extends CacheEventName>(event: E, listener: (payload: CacheEventMap[E]) => void): () => void {
    this.emitter.on(event, listener);
    return () => this.emitter.off(event, listener);
  }

  emit<E extends CacheEventName>(event: E, payload: CacheEventMap[E]): void {
    this.emitter.emit(event, payload);
  }
}
