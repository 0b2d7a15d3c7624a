/**
 * Which worker of `dtr-cache serve --workers N` a server is. Every worker listens on `http.addr` (node:cluster
 * shares the socket); anything a worker must reach on its own (a per-process internal endpoint that other
 * replicas or workers stream from) listens on `workerAddr(addr, slot)`: the configured port plus the worker's
 * index, so N workers on base port P take P … P+N-1, and port 0 stays "any free port" in each.
 */
export interface WorkerSlot {
  /** 0 … count-1. */
  readonly index: number;
  readonly count: number;
}

/** A server outside a cluster: worker 0 of 1. */
export const SINGLE_PROCESS: WorkerSlot = { index: 0, count: 1 };

/** The environment variable through which the primary tells a worker its slot (`index/count`). */
export const WORKER_SLOT_ENV = 'DTR_CACHE_WORKER_SLOT';

/** The slot in `env` (set by the primary for each worker it forks); worker 0 of 1 when absent. */
export function workerSlotFromEnv(env: NodeJS.ProcessEnv = process.env): WorkerSlot {
  const match = /^(\d+)\/(\d+)$/.exec(env[WORKER_SLOT_ENV] ?? '');
  if (!match) return SINGLE_PROCESS;
  const [index, count] = [Number(match[1]), Number(match[2])];
  return index < count ? { index, count } : SINGLE_PROCESS;
}

/** `host:port` of this worker's own listener: the port plus the worker's index (0 stays 0). */
export function workerAddr(addr: string, slot: WorkerSlot): string {
  const colon = addr.lastIndexOf(':');
  const port = Number(addr.slice(colon + 1));
  return port === 0 ? addr : `${addr.slice(0, colon)}:${port + slot.index}`;
}
