/**
 * Integrity of stored blobs. Bytes at rest can rot or be cut (a flipped bit, a truncated file, a bad restore), and
 * a blob's key never changes, so without a check a damaged blob would be served forever under its right digest.
 *
 * - Every blob whose content this process verified (a fill, a digest-checked read, the scrub) has its size and the
 *   time of that check remembered. A hit whose stored size differs from it is damaged (a free check).
 * - A hit on a blob not verified by this process, or verified longer than `verifyage` ago, is digest-checked while
 *   it streams: the last chunk is held back until the digest is known, so a mismatch cuts the connection and the
 *   client never gets a complete response. A range of such a blob is served only after the whole blob checked.
 * - The scrub (scrub.ts) verifies stored blobs in the background at a bounded rate.
 * A damaged blob is deleted, so the next request fetches it again.
 */
import { createHash } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import type { CacheEvents } from './events';
import type { Logger } from './log';
import { blobKey, type Digest } from './reference';
import type { StorageDriver } from './storage';
import type { SendCheck } from './storage/file-reader';

export type IntegrityCheck = 'size' | 'digest' | 'scrub';

/** Bytes read at once by a paced (scrub) check. */
const PACED_READ = 1024 * 1024;
/** Verified blobs remembered, at most (about 150 bytes each); a forgotten one is digest-checked again on its next read. */
const MAX_REMEMBERED = 200_000;

export class BlobIntegrity {
  /** Digest text → size and time of the last verification, oldest first. */
  private readonly verified = new Map<string, { size: number; at: number }>();

  constructor(
    private readonly storage: StorageDriver,
    /** A verification older than this no longer spares a read its digest check (`verifyage`). */
    readonly verifyAgeMs: number,
    private readonly log: Logger,
    private readonly events: CacheEvents,
  ) {}

  /** Records that `digest`'s content, `size` bytes, was verified now. */
  record(digest: string, size: number): void {
    this.verified.delete(digest);
    this.verified.set(digest, { size, at: Date.now() });
    if (this.verified.size > MAX_REMEMBERED) this.verified.delete(this.verified.keys().next().value as string);
  }

  /** The size a verification recorded, if any. */
  recordedSize(digest: Digest): number | undefined {
    return this.verified.get(digest.text)?.size;
  }

  /** Whether a read of `digest` must check the digest: never verified by this process, or too long ago. */
  needsDigestCheck(digest: string): boolean {
    const known = this.verified.get(digest);
    return known === undefined || Date.now() - known.at >= this.verifyAgeMs;
  }

  /** Counts a check that found the blob intact. */
  passed(check: IntegrityCheck): void {
    this.events.emit('integrity', { check, result: 'ok' });
  }

  /** Counts, logs and deletes a damaged blob, so the next request fetches it again. */
  async damaged(digest: Digest, check: IntegrityCheck, reason: string): Promise<void> {
    this.verified.delete(digest.text);
    this.events.emit('integrity', { check, result: 'damaged' });
    this.log.error('stored blob is damaged; evicting it', { digest: digest.text, check, reason });
    try {
      await this.storage.delete(blobKey(digest));
      this.events.emit('evicted', { reason: 'damaged' });
    } catch (err) {
      this.log.error('could not evict a damaged blob', { digest: digest.text, reason: (err as Error).message });
      this.events.emit('storageError', { operation: 'delete' });
    }
  }

  /**
   * A check of the whole stored blob's bytes against `digest`, fed chunk by chunk. `finish` gives an Error when
   * they do not match (the blob is then evicted), and records the blob as verified when they do. Senders hold the
   * last chunk back until `finish` passes, so a client's transfer of a damaged blob is cut, never complete.
   */
  digestCheck(digest: Digest): SendCheck {
    const hash = createHash(digest.algorithm);
    let size = 0;
    return {
      update: (chunk) => {
        hash.update(chunk);
        size += chunk.length;
      },
      finish: () => {
        const actual = hash.digest('hex');
        if (actual !== digest.hex) {
          const reason = `stored bytes hash to ${digest.algorithm}:${actual} (${size} bytes)`;
          void this.damaged(digest, 'digest', reason);
          return new Error(`damaged blob: ${reason}`);
        }
        this.record(digest.text, size);
        this.passed('digest');
        return undefined;
      },
    };
  }

  /**
   * Reads the whole stored blob and checks its digest: `ok` (and recorded), `damaged` (and evicted) or `gone`.
   * `pace` is awaited after each chunk (the scrub's rate bound).
   */
  async verifyStored(digest: Digest, check: IntegrityCheck, pace?: (bytes: number) => Promise<void>): Promise<'ok' | 'damaged' | 'gone'> {
    const key = blobKey(digest);
    const info = await this.storage.stat(key);
    if (!info) return 'gone';
    const hash = createHash(digest.algorithm);
    let size = 0;
    // Paced, the blob is read a range at a time, with no stream open between two: an open read would count as a
    // client of the filesystem driver's read budget and shrink every client's reads (bench/scrub-cost.ts).
    const ranged = pace !== undefined && info.size > 0;
    const step = ranged ? PACED_READ : Math.max(1, info.size);
    for (let start = 0; start < Math.max(1, info.size); start += step) {
      const stream = await this.storage.read(key, ranged ? { start, end: Math.min(info.size, start + step) - 1 } : undefined);
      if (!stream) return 'gone';
      let read = 0;
      for await (const chunk of stream) {
        hash.update(chunk as Buffer);
        read += (chunk as Buffer).length;
      }
      size += read;
      await pace?.(read);
    }
    const actual = hash.digest('hex');
    if (actual !== digest.hex) {
      await this.damaged(digest, check, `stored bytes hash to ${digest.algorithm}:${actual} (${size} bytes)`);
      return 'damaged';
    }
    this.record(digest.text, size);
    this.passed(check);
    return 'ok';
  }
}

/** `stream` (the whole stored blob) passed through `check`, its last chunk held back until the check passes. */
export function verifying(stream: Readable, check: SendCheck): Readable {
  let held: Buffer | undefined;
  const through = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      check.update(chunk);
      const previous = held;
      held = chunk;
      callback(null, previous);
    },
    flush: (callback) => {
      const err = check.finish();
      callback(err ?? null, err ? undefined : held);
    },
  });
  stream.on('error', (err) => through.destroy(err));
  through.on('close', () => stream.destroy()); // a client that leaves closes the file too
  return stream.pipe(through);
}
