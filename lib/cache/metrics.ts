/**
 * The cache's metrics in the Prometheus text exposition format (version 0.0.4). Hand-written rather than
 * prom-client: the cache needs counters, one gauge and one histogram, and this keeps the server's dependencies
 * to undici, yaml and zod.
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
import type { CacheEvents } from './events';

type Labels = Readonly<Record<string, string>>;

/** Exposition escaping: label values escape `\`, `"` and newline; help text escapes `\` and newline. */
function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}
function escapeHelp(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatLabels(names: readonly string[], values: readonly string[], extra?: [string, string]): string {
  const pairs = names.map((n, i) => `${n}="${escapeLabel(values[i])}"`);
  if (extra) pairs.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
  return pairs.length ? `{${pairs.join(',')}}` : '';
}

function formatNumber(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

abstract class Metric {
  /** Series by the JSON of their label values, so each label combination is one series. */
  protected readonly series = new Map<string, { values: string[]; state: number[] }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(name)) throw new Error(`invalid metric name ${name}`);
  }

  protected abstract readonly type: 'counter' | 'gauge' | 'histogram';
  protected abstract initial(): number[];
  protected abstract samples(values: readonly string[], state: readonly number[]): string[];

  protected entry(labels: Labels): number[] {
    const values = this.labelNames.map((n) => {
      const v = labels[n];
      if (v === undefined) throw new Error(`metric ${this.name} needs label ${n}`);
      return v;
    });
    const id = JSON.stringify(values);
    let found = this.series.get(id);
    if (!found) {
      found = { values, state: this.initial() };
      this.series.set(id, found);
    }
    return found.state;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`];
    for (const { values, state } of this.series.values()) lines.push(...this.samples(values, state));
    return lines.join('\n');
  }
}

export class Counter extends Metric {
  protected readonly type = 'counter';
  protected initial(): number[] {
    return [0];
  }
  inc(labels: Labels = {}, by = 1): void {
    if (!(by >= 0)) throw new Error(`counter ${this.name} can only increase`);
    this.entry(labels)[0] += by;
  }
  get(labels: Labels = {}): number {
    return this.entry(labels)[0];
  }
  protected samples(values: readonly string[], state: readonly number[]): string[] {
    return [`${this.name}${formatLabels(this.labelNames, values)} ${formatNumber(state[0])}`];
  }
}

export class Gauge extends Metric {
  protected readonly type = 'gauge';
  protected initial(): number[] {
    return [0];
  }
  inc(labels: Labels = {}, by = 1): void {
    this.entry(labels)[0] += by;
  }
  dec(labels: Labels = {}, by = 1): void {
    this.entry(labels)[0] -= by;
  }
  set(labels: Labels, value: number): void {
    this.entry(labels)[0] = value;
  }
  get(labels: Labels = {}): number {
    return this.entry(labels)[0];
  }
  protected samples(values: readonly string[], state: readonly number[]): string[] {
    return [`${this.name}${formatLabels(this.labelNames, values)} ${formatNumber(state[0])}`];
  }
}

/** State layout: one cumulative count per bucket, then the +Inf count, then the sum. */
export class Histogram extends Metric {
  protected readonly type = 'histogram';
  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    readonly buckets: readonly number[],
  ) {
    super(name, help, labelNames);
    if (buckets.some((b, i) => i > 0 && b <= buckets[i - 1])) throw new Error(`histogram ${name}: buckets must increase`);
  }
  protected initial(): number[] {
    return new Array(this.buckets.length + 2).fill(0);
  }
  observe(labels: Labels, value: number): void {
    const state = this.entry(labels);
    this.buckets.forEach((b, i) => {
      if (value <= b) state[i]++;
    });
    state[this.buckets.length]++;
    state[this.buckets.length + 1] += value;
  }
  /** Starts a timer; the returned function observes the elapsed seconds with the labels given at the end. */
  startTimer(): (labels: Labels) => number {
    const start = process.hrtime.bigint();
    return (labels) => {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      this.observe(labels, seconds);
      return seconds;
    };
  }
  count(labels: Labels): number {
    return this.entry(labels)[this.buckets.length];
  }
  protected samples(values: readonly string[], state: readonly number[]): string[] {
    const n = this.buckets.length;
    return [
      ...this.buckets.map(
        (b, i) => `${this.name}_bucket${formatLabels(this.labelNames, values, ['le', formatNumber(b)])} ${formatNumber(state[i])}`,
      ),
      `${this.name}_bucket${formatLabels(this.labelNames, values, ['le', '+Inf'])} ${formatNumber(state[n])}`,
      `${this.name}_sum${formatLabels(this.labelNames, values)} ${formatNumber(state[n + 1])}`,
      `${this.name}_count${formatLabels(this.labelNames, values)} ${formatNumber(state[n])}`,
    ];
  }
}

/** A set of metrics rendered together. */
export class MetricsRegistry {
  private readonly metrics = new Map<string, Metric>();

  private add<M extends Metric>(metric: M): M {
    if (this.metrics.has(metric.name)) throw new Error(`metric ${metric.name} is registered twice`);
    this.metrics.set(metric.name, metric);
    return metric;
  }
  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.add(new Counter(name, help, labelNames));
  }
  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.add(new Gauge(name, help, labelNames));
  }
  histogram(name: string, help: string, labelNames: readonly string[], buckets: readonly number[]): Histogram {
    return this.add(new Histogram(name, help, labelNames, buckets));
  }
  /** The exposition text, ending with a newline as the format requires. */
  render(): string {
    return `${[...this.metrics.values()].map((m) => m.render()).join('\n')}\n`;
  }
}

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Upstream latency buckets (seconds): from a loopback HEAD to a slow DTR across a WAN. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface CacheMetrics {
  readonly registry: MetricsRegistry;
  readonly requests: Counter;
  readonly lookups: Counter;
  readonly servedBytes: Counter;
  readonly upstreamLatency: Histogram;
  readonly fillsInFlight: Gauge;
  readonly evictions: Counter;
  readonly storageErrors: Counter;
  readonly integrityChecks: Counter;
  readonly scrubBytes: Counter;
  readonly uncachedFills: Counter;
}

/** The cache's metrics, documented at the top of this file. One instance per server. */
export function createCacheMetrics(): CacheMetrics {
  const registry = new MetricsRegistry();
  return {
    registry,
    requests: registry.counter('dtr_cache_http_requests_total', 'Client requests answered, by route, method and status code.', [
      'route',
      'method',
      'status',
    ]),
    lookups: registry.counter('dtr_cache_lookups_total', 'Cache lookups by kind (blob, manifest, tag) and result (hit, miss).', [
      'kind',
      'result',
    ]),
    servedBytes: registry.counter('dtr_cache_served_bytes_total', 'Body bytes sent to clients, by source (storage, upstream).', ['source']),
    upstreamLatency: registry.histogram(
      'dtr_cache_upstream_request_duration_seconds',
      'Time until the upstream answered with headers, by method and outcome (2xx, 3xx, 4xx, 5xx, error).',
      ['method', 'outcome'],
      LATENCY_BUCKETS,
    ),
    fillsInFlight: registry.gauge('dtr_cache_fills_in_flight', 'Upstream transfers being written to storage now, by kind.', ['kind']),
    evictions: registry.counter(
      'dtr_cache_evictions_total',
      'Objects removed, by reason (ttl, size, orphan-tag by the sweeper; damaged).',
      ['reason'],
    ),
    storageErrors: registry.counter('dtr_cache_storage_errors_total', 'Storage driver failures, by operation.', ['operation']),
    integrityChecks: registry.counter(
      'dtr_cache_integrity_checks_total',
      'Checks of stored blobs, by check (size, digest, scrub) and result (ok, damaged).',
      ['check', 'result'],
    ),
    scrubBytes: registry.counter('dtr_cache_scrub_bytes_total', 'Bytes of stored blobs read by the background scrub.'),
    uncachedFills: registry.counter(
      'dtr_cache_uncached_fills_total',
      'Fills whose storage write failed, served to their clients uncached, by reason (storage-full, storage-error).',
      ['reason'],
    ),
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
    events.on('scrubbed', (p) => metrics.scrubBytes.inc({}, p.bytes)),
    events.on('evicted', (p) => metrics.evictions.inc({ reason: p.reason })),
    events.on('uncached', (p) => metrics.uncachedFills.inc({ reason: p.reason })),
  ];
  return () => offs.forEach((off) => off());
}
