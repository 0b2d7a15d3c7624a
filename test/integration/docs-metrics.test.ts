/**
 * The metrics documentation must match what a running cache exposes. A real `dtr-cache serve` (the image's entry
 * point, through ts-node) in front of a distribution 2.8 upstream serves two real pulls (skopeo: a cold one, then a
 * warm one), so the series exist; then:
 * - every metric docs/metrics.md describes is in `/metrics`, and every metric in `/metrics` is described;
 * - the Grafana dashboard is valid JSON and every metric name in its queries is in `/metrics`;
 * - the alert rules pass `promtool check rules` and use only metrics in `/metrics`;
 * - a real Prometheus scrapes the cache, and every dashboard and alert query is valid PromQL there, with data for
 *   each dashboard panel.
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse, stringify } from 'yaml';
import { makeImage, pushImage } from '../../harness/images';
import { startCacheProcess } from '../support/cache-process';
import { TestRegistry } from '../../harness/registry';
import { freePort, requireTool, waitFor } from '../../harness/tools';

const exec = promisify(execFile);
const ROOT = join(__dirname, '..', '..');
const DOCS = join(ROOT, 'docs');

/** Prometheus and promtool come from Debian's prometheus package; a plain requireTool would not say so. */
function requirePrometheus(tool: 'prometheus' | 'promtool'): string {
  try {
    return requireTool(tool);
  } catch {
    throw new Error(`${tool} is not installed: apt-get install -y --no-install-recommends prometheus, or run npm run test:all`);
  }
}

/** Metric names a query uses: our names only (PromQL functions and labels never start with dtr_cache_). */
function metricNames(expr: string): string[] {
  return [...new Set(expr.match(/\bdtr_cache_[a-z0-9_]+/g) ?? [])];
}

/**
 * Names in an exposition: every sample name, plus each family of ours named by HELP (a family may have no series
 * yet); prom-client's standard process metrics (`process_*`, `nodejs_*`) are listed apart.
 */
function exposedNames(text: string): { families: Set<string>; samples: Set<string>; processFamilies: Set<string> } {
  const families = new Set<string>();
  const processFamilies = new Set<string>();
  const samples = new Set<string>();
  for (const line of text.split('\n')) {
    const help = /^# HELP (\S+)/.exec(line);
    if (help) (help[1].startsWith('dtr_cache_') ? families : processFamilies).add(help[1]);
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/.exec(line);
    if (sample && !line.startsWith('#')) samples.add(sample[1]);
  }
  return { families, samples, processFamilies };
}

interface Dashboard {
  panels: Array<{ title: string; targets?: Array<{ expr: string }> }>;
  templating: { list: Array<{ name: string; query?: unknown }> };
}
interface RuleFile {
  groups: Array<{ rules: Array<{ alert: string; expr: string }> }>;
}

const dashboard = (): Dashboard => JSON.parse(readFileSync(join(DOCS, 'grafana-dashboard.json'), 'utf8')) as Dashboard;
const alertRules = (): RuleFile['groups'][number]['rules'] =>
  (parse(readFileSync(join(DOCS, 'prometheus-alerts.yml'), 'utf8')) as RuleFile).groups.flatMap((g) => g.rules);

/** Dashboard variables as Grafana would expand them for this one cache. */
function expandVariables(expr: string): string {
  return expr
    .replace(/\$__rate_interval/g, '15s')
    .replace(/\$job/g, 'dtr-cache')
    .replace(/\$instance/g, '.*');
}

describe('metrics reference, dashboard and alert rules against a running cache', () => {
  let dir: string;
  let upstream: TestRegistry;
  let cache: ChildProcess | undefined;
  let prometheus: ChildProcess | undefined;
  let cacheUrl: string;
  let promUrl: string;
  let metricsText = '';
  let exposed: ReturnType<typeof exposedNames>;
  const image = makeImage({ layerSizes: [4096, 300_000] });

  beforeAll(async () => {
    const skopeo = requireTool('skopeo');
    const prometheusBin = requirePrometheus('prometheus');
    dir = mkdtempSync(join(tmpdir(), 'docs-metrics-'));
    upstream = await TestRegistry.start();
    await pushImage(upstream.url, 'team/app', 'v1', image);

    const started = await startCacheProcess({
      version: '0.1',
      log: { level: 'warn' },
      storage: { delete: { enabled: true }, filesystem: { rootdirectory: join(dir, 'data') } },
      middleware: { registry: [{ name: 'downstream', options: { upstreams: [upstream.url] } }] },
    });
    cache = started.child;
    cacheUrl = started.url;
    const port = started.port;

    // A real Prometheus scraping the cache every second.
    const promPort = await freePort();
    promUrl = `http://127.0.0.1:${promPort}`;
    writeFileSync(
      join(dir, 'prometheus.yml'),
      stringify({
        global: { scrape_interval: '1s', evaluation_interval: '1s' },
        scrape_configs: [{ job_name: 'dtr-cache', static_configs: [{ targets: [`127.0.0.1:${port}`] }] }],
      }),
    );
    prometheus = spawn(
      prometheusBin,
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'tsdb')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
      ],
      { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let promLog = '';
    prometheus.stderr?.on('data', (c: Buffer) => (promLog = (promLog + c.toString()).slice(-4000)));
    const prom = prometheus;
    await waitFor(
      `prometheus on ${promUrl}`,
      async () => {
        if (prom.exitCode !== null) throw new Error(`prometheus exited with ${prom.exitCode}: ${promLog}`);
        const res = await fetch(`${promUrl}/-/ready`);
        await res.arrayBuffer();
        return res.status === 200;
      },
      30_000,
    );

    // Two real pulls through the cache: the first fills it (misses), the second is served from storage (hits).
    const host = new URL(cacheUrl).host;
    for (const n of [1, 2]) {
      await exec(skopeo, ['copy', '--src-tls-verify=false', `docker://${host}/team/app:v1`, `oci:${join(dir, `pulled-${n}`)}:v1`], {
        timeout: 60_000,
      });
    }
    const res = await fetch(`${cacheUrl}/metrics`);
    expect(res.status).toBe(200);
    metricsText = await res.text();
    exposed = exposedNames(metricsText);
  }, 180_000);

  afterAll(async () => {
    for (const child of [prometheus, cache]) {
      if (!child || child.exitCode !== null) continue;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 10_000)))]);
      clearTimeout(timer);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    await upstream?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('exposes the series of the pulls that happened', () => {
    const value = (pattern: RegExp): number => {
      const line = metricsText.split('\n').find((l) => pattern.test(l));
      return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : NaN;
    };
    const layers = image.blobs.length;
    expect(value(/^dtr_cache_lookups_total\{kind="blob",result="miss"\}/)).toBe(layers);
    expect(value(/^dtr_cache_lookups_total\{kind="blob",result="hit"\}/)).toBe(layers);
    const total = image.blobs.reduce((sum, b) => sum + b.data.length, 0);
    // The cold pull streamed every blob from the upstream, the warm one every blob from storage; manifests add a few
    // hundred bytes to one side or the other, never kilobytes.
    for (const source of ['upstream', 'storage']) {
      const served = value(new RegExp(`^dtr_cache_served_bytes_total\\{source="${source}"\\}`));
      expect(served).toBeGreaterThanOrEqual(total);
      expect(served).toBeLessThan(total + 16 * 1024);
    }
    expect(exposed.samples).toContain('dtr_cache_upstream_request_duration_seconds_bucket');
    expect(exposed.samples).toContain('dtr_cache_http_requests_total');
  });

  it('documents exactly the metrics the cache exposes (docs/metrics.md)', () => {
    const reference = readFileSync(join(DOCS, 'metrics.md'), 'utf8');
    const headings = [...reference.matchAll(/^### `(dtr_cache_[a-z0-9_]+)`/gm)].map((m) => m[1]);
    expect(headings.length).toBeGreaterThan(0);
    expect(new Set(headings)).toEqual(exposed.families);
    // Everything else is prom-client's standard process metrics, which the reference names.
    expect([...exposed.processFamilies].filter((n) => !/^(process|nodejs)_/.test(n))).toEqual([]);
    for (const name of ['process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds', 'nodejs_gc_duration_seconds']) {
      expect(exposed.processFamilies).toContain(name);
      expect(reference).toContain(`\`${name}`);
    }
  });

  it('has a Grafana dashboard that is valid JSON and queries only exposed metrics', () => {
    const board = dashboard();
    const exprs = board.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
    expect(exprs.length).toBeGreaterThanOrEqual(8);
    const names = [...new Set(exprs.flatMap(metricNames))];
    // Every family of the cache has a panel, and every name a panel uses is in /metrics.
    for (const family of exposed.families) expect(names.some((n) => n.startsWith(family))).toBe(true);
    const missing = names.filter((n) => !exposed.families.has(n) && !exposed.samples.has(n));
    expect({ missing }).toEqual({ missing: [] });
  });

  it('has alert rules that promtool accepts and that use only exposed metrics', async () => {
    const promtool = requirePrometheus('promtool');
    const { stdout } = await exec(promtool, ['check', 'rules', join(DOCS, 'prometheus-alerts.yml')]);
    expect(stdout).toMatch(/SUCCESS: \d+ rules found/);
    const rules = alertRules();
    expect(rules.length).toBeGreaterThan(0);
    const names = [...new Set(rules.flatMap((r) => metricNames(r.expr)))];
    const missing = names.filter((n) => !exposed.families.has(n) && !exposed.samples.has(n));
    expect({ missing }).toEqual({ missing: [] });
  });

  it('answers every dashboard and alert query in a real Prometheus, with data for each panel', async () => {
    const query = async (expr: string) => {
      const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
      return (await res.json()) as { status: string; error?: string; data?: { result: unknown[] } };
    };
    // Wait until two scrapes after the pulls are in, so rate() over the window has two points per series.
    await waitFor('two scrapes of the cache', async () => {
      const r = await query('count_over_time(dtr_cache_served_bytes_total{job="dtr-cache",source="storage"}[1m])');
      return Number((r.data?.result[0] as { value?: [number, string] } | undefined)?.value?.[1] ?? 0) >= 2;
    });
    const empty: string[] = [];
    for (const panel of dashboard().panels) {
      for (const target of panel.targets ?? []) {
        const answer = await query(expandVariables(target.expr));
        expect({ panel: panel.title, status: answer.status, error: answer.error }).toEqual({
          panel: panel.title,
          status: 'success',
          error: undefined,
        });
        // Evictions, storage errors and uncached fills have no series until something is evicted or fails, nor the
        // scrub's bytes before it reads a stored blob (its first pass ran on an empty store): no data is right there.
        if (answer.data?.result.length === 0 && !/evictions|storage_errors|uncached_fills|scrub_bytes/.test(target.expr)) {
          empty.push(panel.title);
        }
      }
    }
    expect({ panelsWithoutData: empty }).toEqual({ panelsWithoutData: [] });
    for (const rule of alertRules()) {
      const answer = await query(rule.expr);
      expect({ alert: rule.alert, status: answer.status, error: answer.error }).toEqual({
        alert: rule.alert,
        status: 'success',
        error: undefined,
      });
    }
  }, 60_000);
});
