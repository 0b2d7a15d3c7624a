import { Counter, Registry } from 'prom-client';
import { createCacheMetrics, processMetrics, renderMetrics, upstreamOutcome } from '../../../lib/cache/metrics';

/** Every non-comment line of an exposition must be `name{labels} value`; returns name+labels → value. */
function parseExposition(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  expect(text.endsWith('\n')).toBe(true);
  for (const line of text.trimEnd().split('\n')) {
    // Blank lines are allowed between families (prom-client writes one after each).
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})?) (\S+)$/.exec(line);
    if (!match) throw new Error(`not an exposition sample line: ${line}`);
    samples.set(match[1], match[2] === '+Inf' ? Infinity : Number(match[2]));
  }
  return samples;
}

describe('metrics', () => {
  it('renders counters, gauges and histograms with cumulative buckets, sum and count', async () => {
    const m = createCacheMetrics();
    m.requests.inc({ route: 'blob', method: 'GET', status: '200' });
    m.requests.inc({ route: 'blob', method: 'GET', status: '200' });
    m.requests.inc({ route: 'manifest', method: 'HEAD', status: '401' });
    m.servedBytes.inc({ source: 'storage' }, 1000);
    m.servedBytes.inc({ source: 'upstream' }, 24);
    m.fillsInFlight.inc({ kind: 'blob' });
    m.fillsInFlight.inc({ kind: 'blob' });
    m.fillsInFlight.dec({ kind: 'blob' });
    m.upstreamLatency.observe({ method: 'GET', outcome: '2xx' }, 0.003);
    m.upstreamLatency.observe({ method: 'GET', outcome: '2xx' }, 0.2);
    m.upstreamLatency.observe({ method: 'GET', outcome: '2xx' }, 100);
    m.evictions.inc({ reason: 'ttl' }, 3);

    const text = await renderMetrics(m);
    const s = parseExposition(text);
    expect(s.get('dtr_cache_http_requests_total{route="blob",method="GET",status="200"}')).toBe(2);
    expect(s.get('dtr_cache_http_requests_total{route="manifest",method="HEAD",status="401"}')).toBe(1);
    expect(s.get('dtr_cache_served_bytes_total{source="storage"}')).toBe(1000);
    expect(s.get('dtr_cache_fills_in_flight{kind="blob"}')).toBe(1);
    expect(s.get('dtr_cache_upstream_request_duration_seconds_bucket{le="0.005",method="GET",outcome="2xx"}')).toBe(1);
    expect(s.get('dtr_cache_upstream_request_duration_seconds_bucket{le="0.25",method="GET",outcome="2xx"}')).toBe(2);
    expect(s.get('dtr_cache_upstream_request_duration_seconds_bucket{le="30",method="GET",outcome="2xx"}')).toBe(2);
    expect(s.get('dtr_cache_upstream_request_duration_seconds_bucket{le="+Inf",method="GET",outcome="2xx"}')).toBe(3);
    expect(s.get('dtr_cache_upstream_request_duration_seconds_count{method="GET",outcome="2xx"}')).toBe(3);
    expect(s.get('dtr_cache_upstream_request_duration_seconds_sum{method="GET",outcome="2xx"}')).toBeCloseTo(100.203, 6);
    expect(s.get('dtr_cache_evictions_total{reason="ttl"}')).toBe(3);
    // Every metric is documented and typed, once, and everything is prefixed.
    for (const name of [
      'dtr_cache_http_requests_total',
      'dtr_cache_lookups_total',
      'dtr_cache_served_bytes_total',
      'dtr_cache_upstream_request_duration_seconds',
      'dtr_cache_fills_in_flight',
      'dtr_cache_evictions_total',
      'dtr_cache_storage_errors_total',
    ]) {
      expect(text.split('\n').filter((l) => l.startsWith(`# HELP ${name} `))).toHaveLength(1);
      expect(text.split('\n').filter((l) => l.startsWith(`# TYPE ${name} `))).toHaveLength(1);
    }
    // Beside ours, only prom-client's standard process metrics, which operators' dashboards expect.
    expect([...s.keys()].filter((k) => !/^(dtr_cache_|process_|nodejs_)/.test(k))).toEqual([]);
    for (const name of ['process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds', 'nodejs_heap_size_used_bytes']) {
      expect(s.has(name)).toBe(true);
    }
    expect(text).toContain('# TYPE nodejs_gc_duration_seconds histogram');
  });

  it('escapes label values so hostile input cannot break the format', async () => {
    const r = new Registry();
    const c = new Counter({ name: 'dtr_cache_test_total', help: 'help with \\ and\nnewline', labelNames: ['path'], registers: [r] });
    c.inc({ path: 'a"b\\c\nd' });
    const text = await r.metrics();
    expect(text).toContain('# HELP dtr_cache_test_total help with \\\\ and\\nnewline');
    expect(parseExposition(text).get('dtr_cache_test_total{path="a\\"b\\\\c\\nd"}')).toBe(1);
  });

  it('refuses misuse: unknown labels, negative counter increments, duplicate names', () => {
    const m = createCacheMetrics();
    expect(() => m.requests.inc({ route: 'blob', method: 'GET', status: '200', path: '/x' } as never)).toThrow(/path/);
    expect(() => m.servedBytes.inc({ source: 'storage' }, -1)).toThrow(/decrease/);
    expect(() => new Counter({ name: 'dtr_cache_lookups_total', help: 'again', registers: [m.registry] })).toThrow(
      /already been registered/,
    );
  });

  it('collects the process metrics once per process, whatever the number of servers', async () => {
    expect(processMetrics()).toBe(processMetrics());
    const [a, b] = [createCacheMetrics(), createCacheMetrics()];
    a.lookups.inc({ kind: 'blob', result: 'hit' });
    expect(parseExposition(await renderMetrics(b)).get('dtr_cache_lookups_total{kind="blob",result="hit"}')).toBeUndefined();
    expect(parseExposition(await renderMetrics(a)).get('dtr_cache_lookups_total{kind="blob",result="hit"}')).toBe(1);
  });

  it('times with startTimer and classifies upstream outcomes', async () => {
    const m = createCacheMetrics();
    const end = m.upstreamLatency.startTimer();
    await new Promise((r) => setTimeout(r, 20));
    const seconds = end({ method: 'HEAD', outcome: upstreamOutcome(404) });
    expect(seconds).toBeGreaterThanOrEqual(0.015);
    const count = (await m.upstreamLatency.get()).values.find(
      (v) => v.metricName === 'dtr_cache_upstream_request_duration_seconds_count' && v.labels.outcome === '4xx',
    );
    expect(count?.value).toBe(1);
    expect(upstreamOutcome(undefined)).toBe('error');
    expect(upstreamOutcome(503)).toBe('5xx');
  });
});
