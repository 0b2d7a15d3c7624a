/**
 * Liveness and readiness, for swarm healthchecks and load balancers.
 *
 * - `/healthz`: the process answers. Nothing else is checked, so a slow upstream never gets a healthy cache
 *   restarted (a restart would only lose in-flight fills).
 * - `/readyz`: storage accepts a write-read-delete (`probe()`), and an upstream answers `GET /v2/` with anything
 *   but a 5xx (401 is the normal answer of a token-protected DTR). 503 with a JSON reason otherwise, or while
 *   the process drains. Concurrent probes share one check, and a result is reused for a second, so a burst of
 *   probes never becomes a burst of upstream requests.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { StorageDriver } from './storage';
import type { Upstream } from './upstream';

export interface ReadinessCheck {
  readonly name: 'storage' | 'upstream' | 'draining';
  readonly ok: boolean;
  readonly reason?: string;
}

export interface Readiness {
  readonly ready: boolean;
  readonly checks: readonly ReadinessCheck[];
}

export interface HealthDependencies {
  readonly storage: Pick<StorageDriver, 'probe'>;
  readonly upstream: Pick<Upstream, 'request'>;
  /** True once a drain started: the cache is going away and should get no new traffic. */
  readonly draining?: () => boolean;
  /** Bound of each check. Default 5 s. */
  readonly timeoutMs?: number;
}

const REUSE_MS = 1000;

export class Health {
  private last: { at: number; result: Readiness } | undefined;
  private running: Promise<Readiness> | undefined;

  constructor(private readonly deps: HealthDependencies) {}

  /** The readiness now (or from less than a second ago). */
  readiness(): Promise<Readiness> {
    if (this.deps.draining?.()) {
      return Promise.resolve({ ready: false, checks: [{ name: 'draining', ok: false, reason: 'the cache is shutting down' }] });
    }
    if (this.last && Date.now() - this.last.at < REUSE_MS) return Promise.resolve(this.last.result);
    this.running ??= this.check().finally(() => (this.running = undefined));
    return this.running;
  }

  private async check(): Promise<Readiness> {
    const timeoutMs = this.deps.timeoutMs ?? 5000;
    const [storage, upstream] = await Promise.all([
      bounded('storage', timeoutMs, async () => {
        await this.deps.storage.probe();
      }),
      bounded('upstream', timeoutMs, async () => {
        const res = await this.deps.upstream.request({ method: 'GET', path: '/v2/', signal: AbortSignal.timeout(timeoutMs) });
        if (!res.ok) throw new Error(res.reason);
        res.body.resume();
      }),
    ]);
    const result = { ready: storage.ok && upstream.ok, checks: [storage, upstream] };
    this.last = { at: Date.now(), result };
    return result;
  }

  /** GET/HEAD /healthz */
  readonly healthz = (req: IncomingMessage, res: ServerResponse): void => {
    sendJson(res, 200, { status: 'ok' }, req.method === 'HEAD');
  };

  /** GET/HEAD /readyz */
  readonly readyz = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const r = await this.readiness();
    const failed = r.checks.filter((c) => !c.ok);
    sendJson(
      res,
      r.ready ? 200 : 503,
      r.ready
        ? { status: 'ready', checks: r.checks }
        : { status: 'not ready', reason: failed.map((c) => `${c.name}: ${c.reason}`).join('; '), checks: r.checks },
      req.method === 'HEAD',
    );
  };
}

async function bounded(name: ReadinessCheck['name'], timeoutMs: number, work: () => Promise<void>): Promise<ReadinessCheck> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([work(), timeout]);
    return { name, ok: true };
  } catch (err) {
    return { name, ok: false, reason: err instanceof Error ? err.message : String(err) };
  } finally {
    clearTimeout(timer);
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, head = false): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(head ? undefined : text);
}
