/**
 * The client of the upstream registries (DTR, or the next cache): one undici Agent with keep-alive, the
 * configured CAs added to the trust roots, connect/header/idle timeouts, and ordered failover: the first
 * upstream that answers wins; a connection error or a 5xx moves on to the next.
 *
 * After `offlineafter` consecutive connection failures an upstream is assumed offline for `offlineperiod`, so
 * requests for cached content do not each wait for a connect timeout while DTR is down.
 *
 * Redirects (DTR with object storage answers blob GETs with a signed redirect) are followed for GET/HEAD, and
 * the client's Authorization header is dropped when a redirect leaves the upstream's origin: credentials only
 * ever go to the upstream itself.
 */
import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import { Agent } from 'undici';
import type { CacheEvents } from './events';

export interface UpstreamOptions {
  readonly upstreams: readonly string[];
  /** PEM CA files, added to the system roots. */
  readonly cas: readonly string[];
  readonly timeoutMs: number;
  readonly offlineAfter: number;
  readonly offlinePeriodMs: number;
}

export interface UpstreamRequest {
  readonly method: 'GET' | 'HEAD';
  /** Path and query, e.g. `/v2/app/manifests/latest`. */
  readonly path: string;
  readonly headers?: Readonly<Record<string, string | undefined>>;
  readonly signal?: AbortSignal;
}

export type UpstreamHeaders = Record<string, string | string[] | undefined>;

export type UpstreamResult =
  | {
      readonly ok: true;
      readonly status: number;
      readonly headers: UpstreamHeaders;
      /** Consume or destroy it. Empty for HEAD. */
      readonly body: Readable;
      readonly origin: string;
    }
  /** No upstream answered, or every one answered 5xx. */
  | { readonly ok: false; readonly reason: string };

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 3;

interface UpstreamState {
  readonly origin: string;
  failures: number;
  offlineUntil: number;
}

export class Upstream {
  private readonly agent: Agent;
  private readonly states: UpstreamState[];

  constructor(
    private readonly options: UpstreamOptions,
    private readonly events?: CacheEvents,
  ) {
    const extra = options.cas.map((file) => readFileSync(file, 'utf8'));
    this.agent = new Agent({
      connect: { timeout: options.timeoutMs, ...(extra.length ? { ca: [...rootCertificates, ...extra] } : {}) },
      headersTimeout: options.timeoutMs,
      // Idle time between body chunks: a stalled upstream fails the transfer instead of hanging a fill.
      bodyTimeout: options.timeoutMs,
      keepAliveTimeout: 30_000,
      connections: 64,
    });
    this.states = options.upstreams.map((origin) => ({ origin, failures: 0, offlineUntil: 0 }));
  }

  /** True unless every upstream is currently assumed offline. */
  reachable(): boolean {
    const now = Date.now();
    return this.states.some((s) => s.offlineUntil <= now);
  }

  async request(req: UpstreamRequest): Promise<UpstreamResult> {
    const now = Date.now();
    const candidates = this.states.filter((s) => s.offlineUntil <= now);
    if (candidates.length === 0) return { ok: false, reason: 'every upstream is assumed offline after repeated connection failures' };
    const reasons: string[] = [];
    for (const state of candidates) {
      const result = await this.attempt(state, req);
      if (result.ok) return result;
      reasons.push(`${state.origin}: ${result.reason}`);
      if (req.signal?.aborted) break;
    }
    return { ok: false, reason: reasons.join('; ') };
  }

  private async attempt(state: UpstreamState, req: UpstreamRequest): Promise<UpstreamResult> {
    let url = new URL(req.path, state.origin);
    let headers = clean(req.headers);
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const started = process.hrtime.bigint();
      let res;
      try {
        res = await this.agent.request({
          origin: url.origin,
          path: url.pathname + url.search,
          method: req.method,
          headers,
          signal: req.signal,
        });
      } catch (err) {
        this.events?.emit('upstream', { method: req.method, seconds: elapsed(started) });
        // A client that went away is not an upstream failure.
        if (url.origin === state.origin && !req.signal?.aborted) this.failed(state);
        return { ok: false, reason: describe(err) };
      }
      this.events?.emit('upstream', { method: req.method, status: res.statusCode, seconds: elapsed(started) });
      state.failures = 0;
      state.offlineUntil = 0;
      const location = res.headers.location;
      if (REDIRECTS.has(res.statusCode) && typeof location === 'string') {
        res.body.dump().catch(() => undefined);
        const next = new URL(location, url);
        if (next.origin !== state.origin) {
          const { authorization: _dropped, ...rest } = headers;
          headers = rest;
        }
        url = next;
        continue;
      }
      if (res.statusCode >= 500) {
        res.body.dump().catch(() => undefined);
        return { ok: false, reason: `answered ${res.statusCode}` };
      }
      return { ok: true, status: res.statusCode, headers: res.headers, body: res.body, origin: state.origin };
    }
    return { ok: false, reason: `more than ${MAX_REDIRECTS} redirects` };
  }

  private failed(state: UpstreamState): void {
    state.failures++;
    if (state.failures >= this.options.offlineAfter) state.offlineUntil = Date.now() + this.options.offlinePeriodMs;
  }

  async close(): Promise<void> {
    await this.agent.destroy();
  }
}

/** The first value of a response header. */
export function header(headers: UpstreamHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function clean(headers: Readonly<Record<string, string | undefined>> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers ?? {})) if (v !== undefined) out[k] = v;
  return out;
}

function elapsed(started: bigint): number {
  return Number(process.hrtime.bigint() - started) / 1e9;
}

function describe(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  return [e.code, e.message, e.cause?.code].filter(Boolean).join(' ') || String(err);
}
