/**
 * Storage keys in use right now: being filled, or streamed to a client. The eviction sweeper asks `has(key)`
 * so it never deletes an object under a reader or a fill.
 */
export class BusyKeys {
  private readonly counts = new Map<string, number>();

  /** Marks `key` busy; call the returned function (once; extra calls are ignored) when done. */
  hold(key: string): () => void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.counts.get(key) ?? 1) - 1;
      if (left > 0) this.counts.set(key, left);
      else this.counts.delete(key);
    };
  }

  has(key: string): boolean {
    return this.counts.has(key);
  }

  get size(): number {
    return this.counts.size;
  }
}
