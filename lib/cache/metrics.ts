/**
 * The cache's metrics, exposed by prom-client in the Prometheus text format, next to prom-client's standard
 * process metrics (`process_*`, `nodejs_*`: CPU, resident memory, heap, event-loop lag, GC), which are collected
 * once per process. Under `serve --workers N` every worker keeps its own and `/metrics` answers the sum over the
 * workers (lib/cache/cluster-metrics.ts).
 *
 * Metrics (all prefixed `dtr_cache_`):
 * - `dtr_cache_http_requests_total{route,method,status}` — client requests answered, by route (`base`, `manifest`,
 *   `blob`, `metrics`, `healthz`, `readyz`, `other`), method and status code.
 * - `dtr_cache_lookups_total{kind,result}` — cache lookups of `blob`/`manifest`/`tag` content: `hit` (served from
 *   storage) or `miss` (fetched upstream).
 * - `dtr_cache_served_bytes_total{source}` — body bytes sent to clients, from `storage` or streamed from `upstream`.
 * - `dtr_cache_upstream_request_duration_seconds{method,outcome}` — time to the upstream's response headers;
 *   outcome is the status class (`2xx`, `4xx`, …) or `error` when no response came.
 * - `dtr_cache_fills_in_flight{kind}` — upstream transfers being written to storage now.
 * - `dtr_cache_evictions_total{reason}` — objects removed by the sweeper (`ttl`, `size`, `orphan-tag`), or by the
 *   server: `damaged` (a stored blob failed an integrity check).
 * - `dtr_cache_storage_errors_total{operation}` — storage driver failures, by driver operation.
 * - `dtr_cache_integrity_checks_total{check,result}` — checks of stored blobs: `size` (every hit of a verified blob),
 *   `digest` (a hit's streaming check), `scrub` (background); result `ok` or `damaged`.
 * - `dtr_cache_scrub_bytes_total` — bytes of stored blobs the background scrub read.
 * - `dtr_cache_uncached_fills_total{reason}` — fills that lost their storage write and served their clients
 *   uncached: `storage-full` (ENOSPC; least recently used content is then evicted) or `storage-error`.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CacheEvents } from './events';

export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

let processRegistry: Registry | undefined;

/** prom-client's default metrics of this process, in a registry of their own, collected from the first call on. */
export function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** Upstream latency buckets (seconds): from a loopback HEAD to a slow DTR across a WAN. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface CacheMetrics {
  /** This server's metrics (not the process metrics). */
  readonly registry: Registry;
  readonly requests: Counter<'route' | 'method' | 'status'>;
  readonly lookups: Counter<'kind' | 'result'>;
  readonly servedBytes: Counter<'source'>;
  readonly upstreamLatency: Histogram<'method' | 'outcome'>;
  readonly fillsInFlight: Gauge<'kind'>;
  readonly evictions: Counter<'reason'>;
  readonly storageErrors: Counter<'operation'>;
  readonly integrityChecks: Counter<'check' | 'result'>;
  readonly scrubBytes: Counter;
  readonly uncachedFills: Counter<'reason'>;
}

/** The exposition of this server's metrics and the process metrics, as one scrape answers it. */
export function renderMetrics(metrics: CacheMetrics): Promise<string> {
  return Registry.merge([processMetrics(), metrics.registry]).metrics();
}

/** The cache's metrics, documented at the top of this file. One instance per server. */
export function createCacheMetrics(): CacheMetrics {
  const registry = new Registry();
  const registers = [registry];
  return {
    registry,
    requests: new Counter({
      name: 'dtr_cache_http_requests_total',
      help: 'Client requests answered, by route, method and status code.',
      labelNames: ['route', 'method', 'status'],
      registers,
    }),
    lookups: new Counter({
      name: 'dtr_cache_lookups_total',
      help: 'Cache lookups by kind (blob, manifest, tag) and result (hit, miss).',
      labelNames: ['kind', 'result'],
      registers,
    }),
    servedBytes: new Counter({
      name: 'dtr_cache_served_bytes_total',
      help: 'Body bytes sent to clients, by source (storage, upstream).',
      labelNames: ['source'],
      registers,
    }),
    upstreamLatency: new Histogram({
      name: 'dtr_cache_upstream_request_duration_seconds',
      help: 'Time until the upstream answered with headers, by method and outcome (2xx, 3xx, 4xx, 5xx, error).',
      labelNames: ['method', 'outcome'],
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    fillsInFlight: new Gauge({
      name: 'dtr_cache_fills_in_flight',
      help: 'Upstream transfers being written to storage now, by kind.',
      labelNames: ['kind'],
      registers,
    }),
    evictions: new Counter({
      name: 'dtr_cache_evictions_total',
      help: 'Objects removed, by reason (ttl, size, orphan-tag by the sweeper; damaged).',
      labelNames: ['reason'],
      registers,
    }),
    storageErrors: new Counter({
      name: 'dtr_cache_storage_errors_total',
      help: 'Storage driver failures, by operation.',
      labelNames: ['operation'],
      registers,
    }),
    integrityChecks: new Counter({
      name: 'dtr_cache_integrity_checks_total',
      help: 'Checks of stored blobs, by check (size, digest, scrub) and result (ok, damaged).',
      labelNames: ['check', 'result'],
      registers,
    }),
    scrubBytes: new Counter({
      name: 'dtr_cache_scrub_bytes_total',
      help: 'Bytes of stored blobs read by the background scrub.',
      registers,
    }),
    uncachedFills: new Counter({
      name: 'dtr_cache_uncached_fills_total',
      help: 'Fills whose storage write failed, served to their clients uncached, by reason (storage-full, storage-error).',
      labelNames: ['reason'],
      registers,
    }),
  };
}

/** The outcome label of an upstream answer: its status class, or `error` when none came. */
export function upstreamOutcome(status: number | undefined): string {
  return status === undefined ? 'error' : `${Math.floor(status / 100)}xx`;
}

/** Subscribes `metrics` to the server's events; returns the unsubscribe function. */
export function observeEvents(events: CacheEvents, metrics: CacheMetrics): () => void {
  const offs = [
    // Status 0: the client went away before the answer was complete.
    events.on('request', (p) => metrics.requests.inc({ route: p.route, method: p.method, status: String(p.status) })),
    events.on('lookup', (p) => metrics.lookups.inc({ kind: p.kind, result: p.result })),
    events.on('served', (p) => metrics.servedBytes.inc({ source: p.source }, p.bytes)),
    events.on('upstream', (p) => metrics.upstreamLatency.observe({ method: p.method, outcome: upstreamOutcome(p.status) }, p.seconds)),
    events.on('fillStarted', () => metrics.fillsInFlight.inc({ kind: 'blob' })),
    events.on('fillEnded', () => metrics.fillsInFlight.dec({ kind: 'blob' })),
    events.on('storageError', (p) => metrics.storageErrors.inc({ operation: p.operation })),
    events.on('integrity', (p) => metrics.integrityChecks.inc({ check: p.check, result: p.result })),
    events.on('scrubbed', (p) => metrics.scrubBytes.inc(p.bytes)),
    events.on('evicted', (p) => metrics.evictions.inc({ reason: p.reason })),
    events.on('uncached', (p) => metrics.uncachedFills.inc({ reason: p.reason })),
  ];
  return () => offs.forEach((off) => off());
}
