import { DtrCacheSite, LoadBalancer, StorageBackend } from '../../../lib/constructs';
import { durationNanos, goDurationString, providerDuration, shortDur } from '../../../lib/constructs/base/provider-duration';
import { asiaSiteProps, newStack, resourcesOf, synth, TfJson, validationErrors } from './helpers';

const S = 1e9;

describe('shortDur (kreuzwerker/docker 3.6.2, internal/provider/resource_docker_service_structures.go)', () => {
  it("formats like Go's time.Duration.String", () => {
    // Expected values are Go's output for the same durations.
    const cases: [number, string][] = [
      [0, '0s'],
      [1, '1ns'],
      [1_500, '1.5µs'],
      [250_000_000, '250ms'],
      [1.5 * S, '1.5s'],
      [90 * S, '1m30s'],
      [120 * S, '2m0s'],
      [3600 * S, '1h0m0s'],
      [3601 * S, '1h0m1s'],
      [3600.5 * S, '1h0m0.5s'],
      [5400 * S, '1h30m0s'],
      [36 * 3600 * S, '36h0m0s'],
    ];
    expect(cases.map(([n]) => goDurationString(n))).toEqual(cases.map(([, s]) => s));
  });

  it('cuts a trailing "0s" after minutes, then a trailing "0m" after hours, and nothing else', () => {
    const cases: [string, string][] = [
      ['120s', '2m'],
      ['60m', '1h'],
      ['3600s', '1h'],
      ['90m', '1h30m'],
      ['90s', '1m30s'],
      ['61m', '1h1m'],
      ['1h0m1s', '1h0m1s'],
      ['500ms', '500ms'],
      ['1.5s', '1.5s'],
      ['2m0.5s', '2m0.5s'],
      ['0', '0s'],
      ['24h', '24h'],
    ];
    expect(cases.map(([text]) => providerDuration(text))).toEqual(cases.map(([, s]) => s));
    expect(shortDur(7 * S)).toBe('7s');
  });

  it('reads Go durations as time.ParseDuration does, and nothing else', () => {
    expect(durationNanos('1h30m')).toBe(5400 * S);
    expect(durationNanos('1.5h')).toBe(5400 * S);
    expect(durationNanos('300ms')).toBe(0.3 * S);
    expect(['120', '5 m', 'five minutes', '', '-1s'].map(durationNanos)).toEqual([undefined, undefined, undefined, undefined, undefined]);
    expect(providerDuration('soon')).toBe('soon');
  });
});

/** Every duration-valued field of every docker_service in `json`, with its path. */
function serviceDurations(json: TfJson): [string, string][] {
  const keys = new Set(['delay', 'monitor', 'interval', 'timeout', 'start_period', 'stop_grace_period', 'window']);
  const found: [string, string][] = [];
  const walk = (value: unknown, path: string): void => {
    if (Array.isArray(value)) value.forEach((v, i) => walk(v, `${path}[${i}]`));
    else if (value && typeof value === 'object')
      for (const [k, v] of Object.entries(value)) {
        if (keys.has(k) && typeof v === 'string') found.push([`${path}.${k}`, v]);
        else walk(v, `${path}.${k}`);
      }
  };
  for (const service of resourcesOf(json, 'docker_service')) walk(service, String(service.name));
  return found;
}

describe('every duration the constructs emit reads back unchanged', () => {
  const variants = {
    'routing mesh, 2 replicas': {},
    'one replica': { storage: StorageBackend.localFilesystem(), nodes: ['n1'] },
    'haproxy service': { loadBalancer: LoadBalancer.service({ image: '127.0.0.1:5000/haproxy:2.8' }) },
    'external haproxy, 30 replicas (61 minutes)': {
      loadBalancer: LoadBalancer.external({ kind: 'haproxy' }),
      nodes: Array.from({ length: 30 }, (_, i) => `n${i}`),
    },
    'convergeTimeout 600s': { convergeTimeout: '600s' },
    'convergeTimeout 90m': { convergeTimeout: '90m' },
  };

  it.each(Object.entries(variants))('%s', (_name, overrides) => {
    const stack = newStack('s', false);
    new DtrCacheSite(stack, 'asia', asiaSiteProps(overrides));
    expect(validationErrors(stack)).toEqual([]);
    const durations = serviceDurations(synth(stack));
    expect(durations.length).toBeGreaterThanOrEqual(12);
    expect(durations.filter(([, d]) => providerDuration(d) !== d)).toEqual([]);
  });

  it('the values, as written', () => {
    const stack = newStack('s', false);
    new DtrCacheSite(
      stack,
      'asia',
      asiaSiteProps({ convergeTimeout: '90m', loadBalancer: LoadBalancer.service({ image: '127.0.0.1:5000/haproxy:2.8' }) }),
    );
    expect(Object.fromEntries(serviceDurations(synth(stack)))).toEqual({
      'dtr-cache-asia.task_spec.container_spec.healthcheck.interval': '15s',
      'dtr-cache-asia.task_spec.container_spec.healthcheck.timeout': '5s',
      'dtr-cache-asia.task_spec.container_spec.healthcheck.start_period': '20s',
      'dtr-cache-asia.task_spec.container_spec.stop_grace_period': '40s',
      'dtr-cache-asia.task_spec.restart_policy.delay': '5s',
      'dtr-cache-asia.task_spec.restart_policy.window': '2m',
      'dtr-cache-asia.update_config.delay': '10s',
      'dtr-cache-asia.update_config.monitor': '30s',
      'dtr-cache-asia.rollback_config.delay': '10s',
      'dtr-cache-asia.rollback_config.monitor': '30s',
      'dtr-cache-asia.converge_config.timeout': '1h30m',
      'dtr-cache-asia.converge_config.delay': '7s',
      'dtr-cache-asia-lb.task_spec.container_spec.stop_grace_period': '40s',
      'dtr-cache-asia-lb.task_spec.restart_policy.delay': '5s',
      'dtr-cache-asia-lb.task_spec.restart_policy.window': '0s',
      'dtr-cache-asia-lb.update_config.delay': '5s',
      'dtr-cache-asia-lb.converge_config.timeout': '1h30m',
      'dtr-cache-asia-lb.converge_config.delay': '7s',
    });
  });
});
