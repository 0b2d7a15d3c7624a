/**
 * One client's stream of a blob as it fills: it sends the bytes already there, then waits for more. It owns its
 * position; the fill only says how far it is. Until the digest is verified, it holds back the last byte of what it
 * was asked for (of what came so far, when the upstream sent no length): a client never has all the bytes of a fill
 * that fails. It errors if the fill fails, and ends only once the content is verified.
 */
import { Readable } from 'node:stream';

/** How far a fill is. */
export interface FillProgress {
  readonly state: 'filling' | 'verified' | 'failed';
  /** Bytes received so far: [0, written) can be read. */
  readonly written: number;
  /** Why it failed. */
  readonly failure?: string;
}

/** What a reader needs of its fill. */
export interface FillFeed {
  /** From the upstream's Content-Length; undefined when it sent none. */
  readonly size: number | undefined;
  progress(): FillProgress;
  /** Up to `length` bytes at `position` (below what was written): from memory, or read back from disk. */
  bytesAt(position: number, length: number): Buffer | Promise<Buffer>;
  /** Resolves when more bytes came or the fill's state changed. */
  changed(): Promise<void>;
  /** The reader is gone (ended, failed, or its client left). */
  detach(): Promise<void>;
}

/** Largest read of the disk copy for a reader behind the window. */
const READ_CHUNK = 256 * 1024;
/**
 * What a reader's stream buffers ahead of its client, at most (about one upstream chunk): 100 clients of one cold
 * blob then hold 6 MiB, not 25 (peak RSS, bench/).
 */
const READER_BUFFER = 64 * 1024;

export class FillReader extends Readable {
  private position: number;
  private readonly endExclusive: number;
  /**
   * One pump at a time. A read() that arrives while the pump runs (a push can call read() back synchronously) is
   * remembered and served when the pump returns; dropping it would stall the reader.
   */
  private pumping = false;
  private wanted = false;

  constructor(
    private readonly fill: FillFeed,
    range?: { readonly start: number; readonly end?: number },
  ) {
    super({ highWaterMark: READER_BUFFER });
    this.position = range?.start ?? 0;
    this.endExclusive = range?.end !== undefined ? range.end + 1 : (fill.size ?? Infinity);
  }

  override _read(): void {
    if (this.pumping) this.wanted = true;
    else this.pump();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.fill.detach().then(
      () => callback(err),
      () => callback(err),
    );
  }

  private pump(): void {
    this.pumping = true;
    this.wanted = false;
    this.send().then(
      () => {
        this.pumping = false;
        if (this.wanted && !this.destroyed) this.pump();
      },
      (err) => this.destroy(err as Error),
    );
  }

  /** Pushes what is available until the stream wants no more, the range is done, or the fill fails. */
  private async send(): Promise<void> {
    const { fill, endExclusive } = this;
    for (;;) {
      if (this.destroyed) return;
      const { state, written, failure } = fill.progress();
      if (state === 'failed') throw new Error(`upstream transfer failed: ${failure}`);
      const verified = state === 'verified';
      const end = verified ? Math.min(endExclusive, written) : endExclusive;
      if (this.position >= end && verified) {
        this.push(null);
        return;
      }
      const available = verified ? end : Math.min(written - (fill.size === undefined ? 1 : 0), endExclusive - 1);
      if (available > this.position) {
        const chunk = await fill.bytesAt(this.position, Math.min(available - this.position, READ_CHUNK));
        if (this.destroyed) return;
        this.position += chunk.length;
        if (!this.push(chunk)) return;
        continue;
      }
      await fill.changed();
    }
  }
}
