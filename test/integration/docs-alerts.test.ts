/**
 * The example alert rules (docs/prometheus-alerts.yml) fire when they should and stay quiet when they should not,
 * evaluated by Prometheus' own rule engine: `promtool test rules` over synthetic series shaped like the cache's
 * metrics (names and labels as docs-metrics.test.ts checks against a running cache).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse, stringify } from 'yaml';
import { requireTool } from '../../harness/tools';

const exec = promisify(execFile);
const RULES = join(__dirname, '..', '..', 'docs', 'prometheus-alerts.yml');

interface Rule {
  alert: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}
const rules = (parse(readFileSync(RULES, 'utf8')) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap((g) => g.rules);

/** What promtool expects of a firing alert: the rule's labels plus the series' labels, annotations expanded. */
function expected(alert: string, labels: Record<string, string>) {
  const rule = rules.find((r) => r.alert === alert);
  if (!rule) throw new Error(`no alert ${alert} in ${RULES}`);
  const annotations = Object.fromEntries(
    Object.entries(rule.annotations).map(([k, v]) => [k, v.replace(/\{\{ \$labels\.(\w+) \}\}/g, (_, name: string) => labels[name] ?? '')]),
  );
  return { exp_labels: { ...rule.labels, ...labels }, exp_annotations: annotations };
}

const at = { job: 'dtr-cache', instance: 'cache-asia-1:443' };
const sel = (name: string, labels: Record<string, string>) =>
  `${name}{${Object.entries({ ...at, ...labels })
    .map(([k, v]) => `${k}="${v}"`)
    .join(',')}}`;

/** One test group per scenario: input series (one sample a minute) and what must (not) fire when. */
const scenarios = [
  {
    name: 'upstream failing: 20% errors fire after 10 minutes; 5% never fires',
    series: [
      { series: sel('dtr_cache_upstream_request_duration_seconds_count', { method: 'HEAD', outcome: '2xx' }), values: '0+80x40' },
      { series: sel('dtr_cache_upstream_request_duration_seconds_count', { method: 'HEAD', outcome: 'error' }), values: '0+20x40' },
    ],
    checks: [
      { eval_time: '5m', alertname: 'DtrCacheUpstreamFailing', exp_alerts: [] },
      { eval_time: '20m', alertname: 'DtrCacheUpstreamFailing', exp_alerts: [expected('DtrCacheUpstreamFailing', at)] },
    ],
  },
  {
    name: 'upstream mostly fine: 5% errors stay under the threshold',
    series: [
      { series: sel('dtr_cache_upstream_request_duration_seconds_count', { method: 'HEAD', outcome: '2xx' }), values: '0+95x40' },
      { series: sel('dtr_cache_upstream_request_duration_seconds_count', { method: 'HEAD', outcome: '5xx' }), values: '0+5x40' },
    ],
    checks: [{ eval_time: '30m', alertname: 'DtrCacheUpstreamFailing', exp_alerts: [] }],
  },
  {
    name: 'not scraped: the healthcheck series stops at 10 minutes, the alert fires 10 minutes later',
    series: [{ series: sel('dtr_cache_http_requests_total', { route: 'healthz', method: 'GET', status: '200' }), values: '0+4x10' }],
    checks: [
      { eval_time: '9m', alertname: 'DtrCacheNotScraped', exp_alerts: [] },
      {
        eval_time: '25m',
        alertname: 'DtrCacheNotScraped',
        exp_alerts: [expected('DtrCacheNotScraped', { job: 'dtr-cache', route: 'healthz' })],
      },
    ],
  },
  {
    name: 'storage errors fire; server errors fire above 5% of pulls',
    series: [
      { series: sel('dtr_cache_storage_errors_total', { operation: 'commit' }), values: '0 0 0 1+1x30' },
      { series: sel('dtr_cache_http_requests_total', { route: 'blob', method: 'GET', status: '200' }), values: '0+90x40' },
      { series: sel('dtr_cache_http_requests_total', { route: 'blob', method: 'GET', status: '503' }), values: '0+10x40' },
    ],
    checks: [
      {
        eval_time: '20m',
        alertname: 'DtrCacheStorageErrors',
        exp_alerts: [expected('DtrCacheStorageErrors', { ...at, operation: 'commit' })],
      },
      { eval_time: '20m', alertname: 'DtrCacheServerErrors', exp_alerts: [expected('DtrCacheServerErrors', at)] },
    ],
  },
  {
    name: 'hit ratio: 30% hits with traffic fires after 3 hours; 90% hits does not',
    series: [
      { series: sel('dtr_cache_lookups_total', { kind: 'blob', result: 'hit' }), values: '0+30x300' },
      { series: sel('dtr_cache_lookups_total', { kind: 'blob', result: 'miss' }), values: '0+70x300' },
    ],
    checks: [
      { eval_time: '2h', alertname: 'DtrCacheLowHitRatio', exp_alerts: [] },
      { eval_time: '4h30m', alertname: 'DtrCacheLowHitRatio', exp_alerts: [expected('DtrCacheLowHitRatio', { job: 'dtr-cache' })] },
    ],
  },
  {
    name: 'a good hit ratio stays quiet',
    series: [
      { series: sel('dtr_cache_lookups_total', { kind: 'blob', result: 'hit' }), values: '0+90x300' },
      { series: sel('dtr_cache_lookups_total', { kind: 'blob', result: 'miss' }), values: '0+10x300' },
    ],
    checks: [{ eval_time: '4h30m', alertname: 'DtrCacheLowHitRatio', exp_alerts: [] }],
  },
];

describe('example alert rules under promtool test rules', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'docs-alerts-'));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('fire and stay quiet as documented', async () => {
    let promtool: string;
    try {
      promtool = requireTool('promtool');
    } catch {
      throw new Error('promtool is not installed: apt-get install -y --no-install-recommends prometheus, or run npm run test:all');
    }
    const file = join(dir, 'alerts.test.yml');
    writeFileSync(
      file,
      stringify({
        rule_files: [RULES],
        evaluation_interval: '1m',
        tests: scenarios.map((s) => ({ name: s.name, interval: '1m', input_series: s.series, alert_rule_test: s.checks })),
      }),
    );
    const result = await exec(promtool, ['test', 'rules', file]).then(
      (r) => ({ ok: true, out: r.stdout + r.stderr }),
      (err: { stdout?: string; stderr?: string }) => ({ ok: false, out: `${err.stdout ?? ''}${err.stderr ?? ''}` }),
    );
    expect(result).toEqual({ ok: true, out: expect.stringContaining('SUCCESS') });
  });
});
