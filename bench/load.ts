/**
 * The load generators, identical for every system: wrk (Debian, C) for throughput and unpaced request rates,
 * curl for single pulls and the 100-request cold storm (one process, parallel transfers), and the paced
 * client for fixed-rate latency. Each run is bounded in time and checks that every response was a full 200.
 */
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { get, type IncomingMessage } from 'node:http';
import { get as httpsGet } from 'node:https';
import { join, resolve } from 'node:path';
import { requireTool } from '../harness/tools';
import { reapedChildrenTicks, runToCompletion } from './processes';

const BENCH = resolve(__dirname);

export interface WrkResult {
  readonly requests: number;
  readonly bytes: number;
  readonly seconds: number;
  readonly mibPerSecond: number;
  readonly requestsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** CPU wrk itself used (user and system, all its threads), ms. */
  readonly clientCpuMs: number;
}

/** wrk against url for `seconds` with `connections` connections (threads: at most 2, the cores here). */
export async function wrk(url: string, connections: number, seconds: number, headers: Record<string, string> = {}): Promise<WrkResult> {
  const bin = requireTool('wrk');
  const threads = Math.min(2, connections);
  const headerArgs = Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
  const args = ['-t', String(threads), '-c', String(connections), '-d', `${seconds}s`, '--timeout', '60s'];
  const ticksBefore = reapedChildrenTicks();
  const out = await runToCompletion(bin, [...args, '-s', join(BENCH, 'wrk-report.lua'), ...headerArgs, url], (seconds + 70) * 1000);
  // Any other child reaped meanwhile counts too: the warm rows run wrk alone.
  const clientCpuMs = (reapedChildrenTicks() - ticksBefore) * 10;
  const line = out.split('\n').find((l) => l.startsWith('WRK_JSON '));
  if (!line) throw new Error(`wrk printed no summary for ${url}: ${out.slice(-500)}`);
  const r = JSON.parse(line.slice('WRK_JSON '.length)) as Record<string, number>;
  const errors = r.connectErrors + r.readErrors + r.writeErrors + r.statusErrors + r.timeouts;
  // wrk counts every byte read, also of a response still running at the end: bytes, not requests, must be > 0.
  if (errors > 0 || r.bytes === 0) {
    throw new Error(
      `wrk on ${url}: ${r.requests} requests, errors connect ${r.connectErrors} read ${r.readErrors} write ${r.writeErrors} status ${r.statusErrors} timeout ${r.timeouts}`,
    );
  }
  const secondsRun = r.durationUs / 1e6;
  return {
    requests: r.requests,
    bytes: r.bytes,
    seconds: secondsRun,
    mibPerSecond: r.bytes / secondsRun / 2 ** 20,
    requestsPerSecond: r.requests / secondsRun,
    p50Ms: r.p50Us / 1000,
    p99Ms: r.p99Us / 1000,
    clientCpuMs,
  };
}

export interface Transfer {
  readonly status: number;
  readonly bytes: number;
  readonly ttfbMs: number;
  readonly totalMs: number;
}

const CURL_FORMAT = 'CURL %{http_code} %{size_download} %{time_starttransfer} %{time_total}\\n';

function parseTransfers(out: string): Transfer[] {
  return out
    .split('\n')
    .filter((l) => l.startsWith('CURL '))
    .map((l) => {
      const [status, bytes, ttfb, total] = l.slice(5).split(' ').map(Number);
      return { status, bytes, ttfbMs: ttfb * 1000, totalMs: total * 1000 };
    });
}

function checkFull(what: string, transfers: readonly Transfer[], count: number, size: number): void {
  const bad = transfers.filter((t) => t.status !== 200 || t.bytes !== size);
  if (transfers.length !== count || bad.length > 0) {
    const sample = bad[0] ? `, e.g. status ${bad[0].status} with ${bad[0].bytes} bytes` : '';
    throw new Error(`${what}: ${transfers.length}/${count} transfers reported, ${bad.length} not a full 200 of ${size} bytes${sample}`);
  }
}

/** One GET with curl, body discarded: time to first byte and total time. */
export async function pull(url: string, size: number, timeoutMs: number): Promise<Transfer> {
  const curl = requireTool('curl');
  const args = ['-sS', '--max-time', String(Math.ceil(timeoutMs / 1000)), '-o', '/dev/null', '-w', CURL_FORMAT, url];
  const transfers = parseTransfers(await runToCompletion(curl, args, timeoutMs + 5_000));
  checkFull(`GET ${url}`, transfers, 1, size);
  return transfers[0];
}

/**
 * Copies `source` to a new file `target` with dd (1 MiB blocks, no fsync, like a cache filling its storage) and
 * removes it again: the milliseconds the copy took.
 */
export async function writeNewFile(source: string, target: string): Promise<number> {
  const started = process.hrtime.bigint();
  await runToCompletion('dd', [`if=${source}`, `of=${target}`, 'bs=1M', 'status=none'], 120_000);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  await rm(target, { force: true });
  return ms;
}

export interface Storm {
  readonly transfers: readonly Transfer[];
  readonly wallMs: number;
  readonly slowestMs: number;
  readonly fastestMs: number;
}

/** `count` simultaneous GETs of url from one curl process (parallel transfers, all connections opened at once). */
export async function storm(url: string, count: number, size: number, timeoutMs: number): Promise<Storm> {
  const curl = requireTool('curl');
  const perUrl = Array.from({ length: count }, () => ['-o', '/dev/null', url]).flat();
  const args = ['-sS', '-Z', '--parallel-immediate', '--parallel-max', String(count), '--max-time', String(Math.ceil(timeoutMs / 1000))];
  const started = process.hrtime.bigint();
  const out = await runToCompletion(curl, [...args, '-w', CURL_FORMAT, ...perUrl], timeoutMs + 5_000);
  const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
  const transfers = parseTransfers(out);
  checkFull(`${count} concurrent GETs of ${url}`, transfers, count, size);
  const totals = transfers.map((t) => t.totalMs);
  return { transfers, wallMs, slowestMs: Math.max(...totals), fastestMs: Math.min(...totals) };
}

export interface PacedResult {
  readonly sent: number;
  readonly ok: number;
  /** Still unanswered 5 s after the last due time; counted in the percentiles with their wait so far. */
  readonly unfinished: number;
  readonly failed: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly achievedRps: number;
  readonly firstError: string;
}

/** bench/paced-client.ts in its own process: `rate` requests per second for `seconds`, latency from each due time. */
export async function paced(url: string, rate: number, seconds: number, digest: string, accept: string): Promise<PacedResult> {
  const args = [
    '-r',
    'ts-node/register/transpile-only',
    join(BENCH, 'paced-client.ts'),
    url,
    String(rate),
    String(seconds),
    digest,
    accept,
  ];
  const out = await runToCompletion(process.execPath, args, (seconds + 30) * 1000);
  const result = JSON.parse(out.trim().split('\n').pop() ?? '{}') as PacedResult;
  if (result.failed > 0) throw new Error(`paced load on ${url}: ${result.failed}/${result.sent} failed (${result.firstError})`);
  return result;
}

/** GETs url and checks the body's sha256 against digest (the cache served the right bytes, not just enough). */
export function verifyDigest(url: string, digest: string, timeoutMs: number): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const hash = createHash('sha256');
    // https: our own test certificate on loopback, not verified.
    const getter = url.startsWith('https:')
      ? (u: string, o: object, cb: (res: IncomingMessage) => void) => httpsGet(u, { ...o, rejectUnauthorized: false }, cb)
      : get;
    const req = getter(url, { timeout: timeoutMs }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`GET ${url}: status ${res.statusCode}`));
        return;
      }
      res.on('data', (chunk: Buffer) => hash.update(chunk));
      res.on('error', reject);
      res.on('end', () => {
        const got = `sha256:${hash.digest('hex')}`;
        if (got === digest) resolvePromise();
        else reject(new Error(`GET ${url}: body hashes to ${got}, expected ${digest}`));
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}
