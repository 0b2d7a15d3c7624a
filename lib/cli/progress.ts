/**
 * Progress of `warm`: on a terminal, one redrawn bar per image (bytes, rate, ETA); otherwise plain lines, one
 * when an image starts and one when it ends, so CI logs stay readable. Both write to the given stream.
 */
import { formatBytes, formatDuration, formatEta, formatRate, renderTable } from './format';
import { ImagePlan, ImageResult, WarmReporter } from './warm';

export interface Output {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
  readonly rows?: number;
}

export function reporterFor(out: Output, now: () => number = Date.now): WarmReporter & { close(): void } {
  return out.isTTY ? new BarReporter(out, now) : new LineReporter(out);
}

export class LineReporter implements WarmReporter {
  constructor(private readonly out: Output) {}

  planned(image: string, plan: ImagePlan): void {
    this.out.write(`warming ${image}: ${plan.platforms.join(', ')}; ${plan.blobs} blobs, ${formatBytes(plan.bytes)}\n`);
  }

  progress(): void {}

  finished(r: ImageResult): void {
    this.out.write(
      r.error
        ? `failed  ${r.image}: ${r.error}\n`
        : `warmed  ${r.image}: ${r.blobs} blobs, ${formatBytes(r.bytes)} in ${formatDuration(r.ms)} (${formatRate(r.bytes, r.ms)})\n`,
    );
  }

  close(): void {}
}

interface Row {
  image: string;
  started: number;
  total: number;
  done: number;
  state: 'resolving' | 'pulling' | 'warmed' | 'failed';
  ms?: number;
}

/** Redraws all rows in place at most every 100 ms; rows that do not fit the terminal height are summarized. */
export class BarReporter implements WarmReporter {
  private readonly rows = new Map<string, Row>();
  private drawn = 0;
  private closed = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly out: Output,
    private readonly now: () => number,
  ) {
    this.timer = setInterval(() => this.draw(), 100);
    this.timer.unref();
  }

  planned(image: string, plan: ImagePlan): void {
    this.rows.set(image, { image, started: this.now(), total: plan.bytes, done: 0, state: 'pulling' });
  }

  progress(image: string, bytes: number): void {
    const row = this.rows.get(image);
    if (row) row.done += bytes;
  }

  finished(r: ImageResult): void {
    const row = this.rows.get(r.image) ?? { image: r.image, started: this.now(), total: r.bytes, done: 0, state: 'pulling' };
    row.state = r.error ? 'failed' : 'warmed';
    row.ms = r.ms;
    this.rows.set(r.image, row);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.draw();
  }

  private draw(): void {
    const width = Math.max(40, this.out.columns || 80); // 0 when the terminal reports no size
    const height = Math.max(3, (this.out.rows || 24) - 2);
    let rows = [...this.rows.values()];
    const hidden = rows.length > height ? rows.length - (height - 1) : 0;
    if (hidden) rows = [...rows.filter((r) => r.state === 'pulling'), ...rows.filter((r) => r.state !== 'pulling')].slice(0, height - 1);
    const lines = rows.map((r) => this.line(r, width));
    if (hidden) lines.push(`… and ${hidden} more`);
    const up = this.drawn > 0 ? `\x1b[${this.drawn}A` : '';
    this.out.write(up + lines.map((l) => `\x1b[2K${l}\n`).join(''));
    this.drawn = lines.length;
  }

  private line(r: Row, width: number): string {
    const elapsed = r.ms ?? this.now() - r.started;
    const name = r.image.length > 30 ? `…${r.image.slice(-29)}` : r.image.padEnd(30);
    const fraction = r.total > 0 ? Math.min(1, r.done / r.total) : r.state === 'warmed' ? 1 : 0;
    const barWidth = Math.max(10, Math.min(30, width - 80));
    const filled = Math.round(fraction * barWidth);
    const bar = `[${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}]`;
    const numbers = `${formatBytes(r.done)}/${formatBytes(r.total)} ${formatRate(r.done, elapsed)}`;
    const tail = r.state === 'pulling' ? `ETA ${formatEta(r.done, r.total, elapsed)}` : `${r.state} in ${formatDuration(elapsed)}`;
    return `${name} ${bar} ${String(Math.floor(fraction * 100)).padStart(3)}% ${numbers} ${tail}`.slice(0, width - 1);
  }
}

/** The end-of-run table: image, platforms, blobs, bytes, time, result. */
export function summaryTable(results: readonly ImageResult[]): string {
  const rows = results.map((r) => [
    r.image,
    r.platforms.join(',') || '-',
    String(r.blobs),
    formatBytes(r.bytes),
    formatDuration(r.ms),
    r.error ? `FAILED: ${r.error}` : 'ok',
  ]);
  const failed = results.filter((r) => r.error).length;
  const total = results.reduce((sum, r) => sum + (r.error ? 0 : r.bytes), 0);
  return `${renderTable(['IMAGE', 'PLATFORMS', 'BLOBS', 'BYTES', 'TIME', 'RESULT'], rows)}${results.length - failed} of ${results.length} images warmed (${formatBytes(total)})${failed ? `, ${failed} failed` : ''}\n`;
}
