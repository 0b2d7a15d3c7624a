/**
 * A readable stream of a stored file's byte range, built for serving warm blobs cheaply:
 * - It reads on the event loop while the data comes from the page cache. A read on libuv's threadpool costs two
 *   thread hand-offs, more CPU on a busy machine than the copy itself. A read from memory takes tens of
 *   microseconds; one slower than SLOW_READ_MS went to the disk (or the NFS server), and the rest of that stream reads
 *   on the threadpool, so the event loop waits for a device at most once per stream. The first read of a stream, the
 *   one most likely to miss the page cache, goes to the threadpool.
 * - `sendTo` writes the range to a socket through two or three buffers it reuses. Every Buffer allocated counts as
 *   external memory, and V8 starts a full collection each time that grows by 64 MiB: at hundreds of MiB/s through
 *   fresh buffers, full collections take a third of the CPU. Rows b and c of bench/results/wan-workers.md give the
 *   CPU per MiB served.
 */
import { read, readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Readable, type Writable } from 'node:stream';

/** A read on the event loop slower than this went to a device: the stream reads on the threadpool from then on. */
export const SLOW_READ_MS = 2;

export interface FileReaderOptions {
  /** First byte. @default 0 */
  readonly start?: number;
  /** Last byte, inclusive (as a Range header's). @default the end of the file */
  readonly end?: number;
  /** Bytes per read. */
  readonly chunkSize: number;
}

/** Sees every byte before it is sent; `finish`, before the last chunk goes, may refuse it with an Error. */
export interface SendCheck {
  update(chunk: Buffer): void;
  finish(): Error | undefined;
}

export class FileReader extends Readable {
  private position: number;
  private readonly end: number;
  private readonly chunkSize: number;
  /** Reads go to the threadpool: the first one, and every one after a slow read. */
  private onPool = true;
  private slow = false;
  /** A threadpool read is in flight: the descriptor stays open until it returns (the number could be reused). */
  private reading = false;
  private closeAfterRead: (() => void) | undefined;

  constructor(
    private readonly handle: FileHandle,
    options: FileReaderOptions,
  ) {
    super({ highWaterMark: options.chunkSize });
    this.position = options.start ?? 0;
    this.end = options.end ?? Infinity;
    this.chunkSize = options.chunkSize;
  }

  override _read(): void {
    this.next(undefined, (chunk) => this.push(chunk));
  }

  /**
   * Writes the rest of the range to `out` and ends it, instead of piping: the chunks are read into buffers reused once
   * `out` has written them. `onChunk` is told the size of each chunk written. With `check`, each chunk is held back
   * until the next is read, and the last one goes only if `check.finish()` passes; a refusal destroys the stream with
   * its Error. The stream emits 'error' on a failure and 'close' once done; `out` is not ended after a failure. Call
   * it on a stream nothing has read yet.
   */
  sendTo(out: Writable, onChunk: (bytes: number) => void, check?: SendCheck): void {
    const free: Buffer[] = [];
    let held: { chunk: Buffer; buffer: Buffer } | undefined;
    // Writable calls a write's callback before it emits 'drain', so the buffer is free again when pumping resumes.
    const write = (chunk: Buffer, buffer: Buffer) => {
      onChunk(chunk.length);
      return out.write(chunk, () => free.push(buffer));
    };
    const pump = (): void =>
      this.next(free.pop(), (chunk, buffer) => {
        if (!chunk) {
          const refused = check?.finish();
          if (refused) return void this.destroy(refused);
          if (held) write(held.chunk, held.buffer);
          out.end();
          this.destroy();
          return;
        }
        let more = true;
        if (check) {
          check.update(chunk);
          if (held) more = write(held.chunk, held.buffer);
          held = { chunk, buffer };
        } else more = write(chunk, buffer);
        if (more) process.nextTick(pump);
        else out.once('drain', pump);
      });
    pump();
  }

  /**
   * Reads the next chunk, into `buffer` if given and large enough, and gives it to `deliver`, or null at the
   * end of the range or of the file (a file shorter than the range ends early, as fs.createReadStream's does: callers
   * check the length). A failed read destroys the stream instead.
   */
  private next(buffer: Buffer | undefined, deliver: (chunk: Buffer | null, buffer: Buffer) => void): void {
    const want = Math.min(this.chunkSize, this.end - this.position + 1);
    // Not from Buffer's shared pool: a chunk may stay referenced (a socket's queue) after the stream moves on.
    const into = buffer && buffer.length >= want ? buffer : Buffer.allocUnsafeSlow(Math.max(0, want));
    const done = (bytes: number) => {
      if (this.destroyed) return;
      this.position += bytes;
      deliver(bytes === 0 ? null : into.subarray(0, bytes), into);
    };
    if (want <= 0) return done(0);
    if (this.onPool) {
      this.reading = true;
      read(this.handle.fd, into, 0, want, this.position, (err, bytes) => {
        this.reading = false;
        if (this.closeAfterRead) return this.closeAfterRead();
        if (err) return void this.destroy(err);
        this.onPool = this.slow;
        done(bytes);
      });
      return;
    }
    const started = performance.now();
    let bytes: number;
    try {
      bytes = readSync(this.handle.fd, into, 0, want, this.position);
    } catch (err) {
      return void this.destroy(err as Error);
    }
    if (performance.now() - started > SLOW_READ_MS) this.onPool = this.slow = true;
    done(bytes);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const close = () =>
      void this.handle.close().then(
        () => callback(err),
        (closeErr: Error) => callback(err ?? closeErr),
      );
    if (this.reading) this.closeAfterRead = close;
    else close();
  }
}
