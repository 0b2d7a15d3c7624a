/**
 * `dtr-cache serve --workers N`: a primary process forks N workers (node:cluster), each a full cache server on the
 * same `http.addr` (the cluster shares the listening socket). The primary serves no request itself. It
 * - starts worker i with its slot `i/N` (worker-slot.ts), so a worker's own listeners get ports of their own;
 * - replaces a worker that dies unasked (after 1 s when it lived less than 10 s, so a crash loop does not spin);
 * - answers a worker's `/metrics` with the sum over all workers (prom-client's AggregatorRegistry asks each one);
 * - on SIGTERM/SIGINT tells every worker to drain (each runs lib/cache/drain.ts as a single process does) and
 *   exits when all have; a second signal tells them to stop at once.
 * A worker whose primary is gone exits (node:cluster does so on disconnect).
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import type { DrainSwitch } from './drain';
import type { Logger } from './log';
import { processMetrics, type CacheMetrics } from './metrics';
import type { Exposition } from './operations';
import { WORKER_SLOT_ENV } from './worker-slot';

/** Messages between the primary and its workers (over the cluster's IPC channel). */
type Message =
  | { readonly type: 'dtr-cache:ready'; readonly url: string }
  | { readonly type: 'dtr-cache:metrics-request'; readonly id: number }
  | { readonly type: 'dtr-cache:metrics'; readonly id: number; readonly text?: string; readonly error?: string }
  | { readonly type: 'dtr-cache:drain' }
  | { readonly type: 'dtr-cache:stop' };

const isMessage = (m: unknown): m is Message => typeof (m as Message)?.type === 'string' && (m as Message).type.startsWith('dtr-cache:');

export interface WorkerPool {
  /** Where clients reach the workers (what worker 0 reported). */
  readonly url: string;
  /** Resolves with the exit code once every worker has exited after a signal. */
  readonly exited: Promise<number>;
}

export interface PoolOptions {
  readonly workers: number;
  /** http.draintimeout: how long a worker may drain before the primary kills it (plus 15 s of grace). */
  readonly drainTimeoutMs: number;
  readonly log: Logger;
}

/** In the primary: forks the workers and resolves once every one listens; rejects if one exits before that. */
export function startWorkerPool(options: PoolOptions): Promise<WorkerPool> {
  const { workers: count, log } = options;
  const aggregator = new AggregatorRegistry();
  const live = new Map<number, Worker>();
  const restarts = new Set<NodeJS.Timeout>();
  let stopping = false;
  let failedCode = 0;
  let settleExit: (code: number) => void = () => undefined;
  const exited = new Promise<number>((resolve) => (settleExit = resolve));

  return new Promise<WorkerPool>((resolveStart, rejectStart) => {
    const readyUrls = new Map<number, string>();
    let started = false;

    const fork = (index: number) => {
      const bornAt = Date.now();
      const worker = cluster.fork({ [WORKER_SLOT_ENV]: `${index}/${count}` });
      live.set(index, worker);
      worker.on('message', (message: unknown) => {
        if (!isMessage(message)) return;
        if (message.type === 'dtr-cache:ready') {
          readyUrls.set(index, message.url);
          if (!started && readyUrls.size === count) {
            started = true;
            resolveStart({ url: readyUrls.get(0)!, exited });
          }
        } else if (message.type === 'dtr-cache:metrics-request') {
          const reply = (answer: Omit<Extract<Message, { type: 'dtr-cache:metrics' }>, 'type' | 'id'>) =>
            worker.isConnected() && worker.send({ type: 'dtr-cache:metrics', id: message.id, ...answer } satisfies Message);
          aggregator.clusterMetrics().then(
            (text) => reply({ text }),
            (err: Error) => reply({ error: err.message }),
          );
        }
      });
      worker.on('exit', (code, signal) => {
        if (live.get(index) === worker) live.delete(index);
        if (!started) {
          // A worker that cannot start (config, port taken) says why on stderr; the others are stopped.
          stopping = true;
          for (const other of live.values()) other.kill('SIGKILL');
          if (live.size === 0) rejectStart(new Error(`worker ${index} exited (${signal ?? `code ${code}`}) before it listened`));
          return;
        }
        if (stopping) {
          // The exit code of the pool: 0 when every worker drained and exited 0.
          if (code !== 0) failedCode = 1;
          if (live.size === 0) settleExit(failedCode);
          return;
        }
        log.warn('worker exited; starting another', { worker: index, code, signal });
        const timer = setTimeout(
          () => {
            restarts.delete(timer);
            if (!stopping) fork(index);
          },
          Date.now() - bornAt < 10_000 ? 1_000 : 0,
        );
        restarts.add(timer);
      });
    };

    let kill: NodeJS.Timeout | undefined;
    const onSignal = (signal: NodeJS.Signals) => {
      if (!started) return;
      const first = !stopping;
      stopping = true;
      for (const timer of restarts) clearTimeout(timer);
      log.info(first ? 'draining workers' : 'second signal; stopping workers now', { signal, workers: live.size });
      for (const worker of live.values()) {
        if (worker.isConnected()) worker.send({ type: first ? 'dtr-cache:drain' : 'dtr-cache:stop' } satisfies Message);
      }
      if (live.size === 0) settleExit(failedCode);
      kill ??= setTimeout(() => {
        for (const worker of live.values()) worker.kill('SIGKILL');
      }, options.drainTimeoutMs + 15_000);
      kill.unref();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    void exited.then(() => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      if (kill) clearTimeout(kill);
    });
    for (let index = 0; index < count; index++) fork(index);
  });
}

/** In a worker: `/metrics` asks the primary, which sums the metrics of every worker. */
export function workerExposition(): Exposition {
  const pending = new Map<number, { resolve: (text: string) => void; reject: (err: Error) => void }>();
  let nextId = 0;
  process.on('message', (message: unknown) => {
    if (!isMessage(message) || message.type !== 'dtr-cache:metrics') return;
    const waiter = pending.get(message.id);
    pending.delete(message.id);
    if (message.text !== undefined) waiter?.resolve(message.text);
    else waiter?.reject(new Error(`metrics of the other workers: ${message.error ?? 'no answer'}`));
  });
  return () => {
    const id = nextId++;
    return new Promise<string>((resolve, reject) => {
      // Bounded: the primary gives up on a silent worker after 5 s (prom-client), this on a silent primary after 10.
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error('metrics of the other workers: the primary did not answer within 10 s'));
      }, 10_000);
      const settle =
        <T>(fn: (value: T) => void) =>
        (value: T) => {
          clearTimeout(timer);
          fn(value);
        };
      pending.set(id, { resolve: settle(resolve), reject: settle(reject) });
      process.send!({ type: 'dtr-cache:metrics-request', id } satisfies Message);
    });
  };
}

/**
 * In a worker, once its server listens: offers its metrics to the primary's sums, tells the primary it is ready,
 * and drains or stops when the primary says so.
 */
export function joinPool(
  server: { readonly url: string; readonly operations: { readonly metrics: CacheMetrics } },
  control: DrainSwitch,
): void {
  // Constructed for its side effect: this worker answers the primary's requests for its metrics.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([processMetrics(), server.operations.metrics.registry]);
  process.on('message', (message: unknown) => {
    if (!isMessage(message)) return;
    if (message.type === 'dtr-cache:drain') control.begin('primary');
    else if (message.type === 'dtr-cache:stop') control.now('primary');
  });
  process.send!({ type: 'dtr-cache:ready', url: server.url } satisfies Message);
}
