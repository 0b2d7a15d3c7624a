/**
 * The latest upstream chunks of a fill, as they came: readers that keep up with the fill (the usual case) take their
 * bytes from here, before the disk has them; readers further behind read them back from disk. Chunks leave the
 * window only once on disk, and only while the rest still holds `minBytes`.
 */
export class FillWindow {
  private chunks: Array<{ readonly offset: number; readonly bytes: Buffer }> = [];
  private bytes = 0;

  constructor(private readonly minBytes: number) {}

  /** The offset of the oldest byte held; undefined when empty. */
  get start(): number | undefined {
    return this.chunks[0]?.offset;
  }

  push(offset: number, bytes: Buffer): void {
    this.chunks.push({ offset, bytes });
    this.bytes += bytes.length;
  }

  /**
   * Up to `length` bytes at `position`: part of one upstream chunk, without a copy (copies of every pushed byte cost
   * a cold 1 GiB pull a second of allocation and GC, bench/). Chunks are socket reads (64 KiB at most), so a slow
   * reader pins only the few its stream buffers. Undefined when `position` is not held.
   */
  read(position: number, length: number): Buffer | undefined {
    const chunks = this.chunks;
    if (chunks.length === 0 || position < chunks[0].offset) return undefined;
    let lo = 0;
    let hi = chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (chunks[mid].offset <= position) lo = mid;
      else hi = mid - 1;
    }
    const { offset, bytes } = chunks[lo];
    const start = position - offset;
    return start < bytes.length ? bytes.subarray(start, start + Math.min(length, bytes.length - start)) : undefined;
  }

  /** Drops chunks wholly below `onDisk` from the front while the rest still holds `minBytes`. */
  trim(onDisk: number): void {
    let drop = 0;
    while (drop < this.chunks.length && this.bytes - this.chunks[drop].bytes.length >= this.minBytes) {
      const { offset, bytes } = this.chunks[drop];
      if (offset + bytes.length > onDisk) break;
      this.bytes -= bytes.length;
      drop++;
    }
    if (drop > 0) this.chunks = this.chunks.slice(drop);
  }
}
