/**
 * The bookkeeping of one bench run: the systems it started (each stopped at the end, also on failure), the steps
 * that failed (their figures are missing from the table) and the notes under it.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { waitForQuiet } from './processes';
import { renderMarkdown, type Row } from './report';
import type { System } from './systems';
import { workerPids } from './warm';

const RESULTS = resolve(__dirname, 'results');

export const describe = (err: unknown) => (err instanceof Error ? err.message : String(err));
export const loadAverage = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

export class BenchRun {
  readonly started: System[] = [];
  readonly errors: string[] = [];
  readonly notes: string[] = [];

  private readonly startedAt = Date.now();
  readonly loadBefore = loadAverage();

  constructor(private readonly log: (message: string) => void) {}

  /** Runs a step; a failure is recorded and logged, and gives undefined. */
  readonly step = async <T>(what: string, fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (err) {
      this.errors.push(`${what}: ${describe(err)}`);
      this.log(`FAILED ${what}: ${describe(err)}`);
      return undefined;
    }
  };

  readonly start = async <S extends System>(system: Promise<S>): Promise<S> => {
    const s = await system;
    this.started.push(s);
    return s;
  };

  readonly stop = async (...systems: System[]): Promise<void> => {
    for (const s of systems) {
      await s.stop();
      this.started.splice(this.started.indexOf(s), 1);
    }
  };

  /** Waits until every process started (workers included) is idle, after the disk's writes. */
  readonly quiet = async (what: string): Promise<void> => {
    execFileSync('sync', [], { timeout: 60_000 });
    const pids = this.started.flatMap((s) => [s.pid ?? 0, ...workerPids(s.pid ?? 0)]);
    if (!(await waitForQuiet(pids))) this.notes.push(`${what}: the systems were still busy after 60 s; measured anyway`);
  };

  /**
   * Runs the run's body: a failure is recorded and logged (the figures measured so far are kept); then everything
   * started is stopped and `workDir` removed.
   */
  async main(workDir: string, body: () => Promise<void>): Promise<void> {
    try {
      await body();
    } catch (err) {
      this.errors.push(describe(err));
      this.log(`FAILED: ${describe(err)}`);
    } finally {
      await this.stopAll();
      rmSync(workDir, { recursive: true, force: true });
    }
  }

  /** Stops whatever is still running, last started first. */
  async stopAll(): Promise<void> {
    for (const s of [...this.started].reverse()) await s.stop().catch((err: unknown) => this.log(`stopping ${s.name}: ${describe(err)}`));
  }

  /** Writes bench/results/`file`: the run's facts, the table, then `methods` and the notes; 1 when a step failed. */
  report(file: string, commit: string, mode: string, rows: readonly Row[], methods: readonly string[]): number {
    const info = {
      date: new Date().toISOString(),
      commit,
      nproc: cpus().length,
      node: process.version,
      cpu: cpus()[0]?.model ?? 'unknown cpu',
      mode,
      durationS: (Date.now() - this.startedAt) / 1000,
      notes: [
        `Load average (1, 5, 15 min) before: ${this.loadBefore}; after: ${loadAverage()}. The machine's ${cpus().length} cores are shared with other work.`,
        ...methods,
        ...this.notes,
      ],
    };
    mkdirSync(RESULTS, { recursive: true });
    writeFileSync(join(RESULTS, file), renderMarkdown(info, rows, this.errors));
    this.log(`wrote bench/results/${file}${this.errors.length ? ` (${this.errors.length} failed step(s))` : ''}`);
    return this.errors.length ? 1 : 0;
  }
}
