/**
 * Graceful shutdown. On SIGTERM (what `docker service update` and swarm rescheduling send) or SIGINT the cache
 * stops accepting connections, lets the responses and blob fills in flight finish for up to
 * `http.draintimeout`, then closes (aborting whatever is left: nothing partial is ever committed) and reports
 * exit code 0. A second signal stops at once. Node as PID 1 in a container ignores SIGTERM unless it is handled,
 * which is why this exists at all.
 */
import type { Logger } from './log';

/** What a drain needs from the server. */
export interface Drainable {
  readonly log: Logger;
  stopAccepting(): Promise<void>;
  requestsInFlight(): number;
  fillsInFlight(): number;
  /** Marks the server as going away (readiness fails from now on). */
  markDraining(): void;
  close(): Promise<void>;
}

export interface DrainResult {
  /** True when everything in flight finished before the deadline. */
  readonly clean: boolean;
  readonly waitedMs: number;
  /** Requests and fills still running at the deadline (aborted by close). */
  readonly abandoned: { readonly requests: number; readonly fills: number };
}

const POLL_MS = 50;

/** Drains `server` within `timeoutMs` and closes it. */
export async function drain(server: Drainable, timeoutMs: number): Promise<DrainResult> {
  const started = Date.now();
  server.markDraining();
  await server.stopAccepting();
  const busy = () => server.requestsInFlight() > 0 || server.fillsInFlight() > 0;
  // Bounded: at most timeoutMs / POLL_MS rounds.
  while (busy() && Date.now() - started < timeoutMs) {
    await new Promise((r) => setTimeout(r, Math.min(POLL_MS, Math.max(1, timeoutMs - (Date.now() - started)))));
    // Keep-alive connections that finished a response since the last round are closed, so they stop counting.
    await server.stopAccepting();
  }
  const abandoned = { requests: server.requestsInFlight(), fills: server.fillsInFlight() };
  const clean = abandoned.requests === 0 && abandoned.fills === 0;
  await server.close();
  return { clean, waitedMs: Date.now() - started, abandoned };
}

/** Starts a drain once (`begin`) or closes at once (`now`); reports the exit code through `done`. */
export interface DrainSwitch {
  begin(reason: string): void;
  now(reason: string): void;
  isDraining(): boolean;
}

export function drainSwitch(server: Drainable, timeoutMs: number, done: (exitCode: number) => void): DrainSwitch {
  let draining: Promise<void> | undefined;
  return {
    isDraining: () => draining !== undefined,
    begin: (signal) => {
      if (draining) return;
      server.log.info('draining', { signal, timeoutMs, requests: server.requestsInFlight(), fills: server.fillsInFlight() });
      draining = drain(server, timeoutMs).then(
        (result) => {
          server.log[result.clean ? 'info' : 'warn']('drained; exiting', { ...result });
          done(0);
        },
        (err: unknown) => {
          server.log.error('drain failed', { reason: err instanceof Error ? err.message : String(err) });
          done(1);
        },
      );
    },
    now: (signal) => {
      server.log.warn('second signal; stopping now', { signal });
      server.close().then(
        () => done(0),
        () => done(1),
      );
    },
  };
}

/**
 * Drains on the first SIGTERM/SIGINT and calls `done(0)` when closed; a second signal closes at once.
 * Returns a function that removes the handlers.
 */
export function drainOnSignals(server: Drainable, timeoutMs: number, done: (exitCode: number) => void): () => void {
  return onSignals(drainSwitch(server, timeoutMs, done));
}

/** SIGTERM/SIGINT drive `control`: the first begins the drain, any later one stops at once. */
export function onSignals(control: DrainSwitch): () => void {
  const onSignal = (signal: NodeJS.Signals) => (control.isDraining() ? control.now(signal) : control.begin(signal));
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return () => {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  };
}
