/**
 * The cache's operational surface, attached to a running server: `/metrics`, `/healthz` and `/readyz` on the
 * main listener (and on `http.debug.addr` when configured, so they can stay off the public port), the metrics
 * fed by the server's events, the eviction sweeper when `blobttl` or `maxsize` is set, the integrity scrub, and
 * eviction when a fill finds the storage full.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CacheConfig } from '../config';
import type { CacheEvents } from './events';
import { Health } from './health';
import type { BlobIntegrity } from './integrity';
import type { Logger } from './log';
import { createCacheMetrics, METRICS_CONTENT_TYPE, observeEvents, renderMetrics, type CacheMetrics } from './metrics';
import { sendError, ociError } from './oci-error';
import type { StorageDriver } from './storage';
import { Scrub } from './scrub';
import { SpaceReclaimer } from './space';
import { Sweeper } from './sweeper';
import type { Upstream } from './upstream';

type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface OperationsParts {
  readonly events: CacheEvents;
  readonly storage: StorageDriver;
  readonly upstream: Upstream;
  readonly log: Logger;
  readonly isBusy: (key: string) => boolean;
  readonly integrity: BlobIntegrity;
  /** Registers an exact path on the main listener. */
  readonly route: (path: string, handler: Handler) => void;
  /** `host:port` → bind parameters (the server's own parser). */
  readonly parseAddr: (addr: string) => { host: string | undefined; port: number };
  /** What a scrape answers. @default this process's metrics (renderMetrics); a cluster worker's sums all workers */
  readonly exposition?: Exposition;
}

/** The text a `/metrics` scrape gets, given this server's metrics. */
export type Exposition = (metrics: CacheMetrics) => Promise<string>;

export interface Operations {
  readonly metrics: CacheMetrics;
  readonly health: Health;
  readonly sweeper: Sweeper | undefined;
  readonly scrub: Scrub;
  /** Where the debug listener answers, when `http.debug.addr` is set. */
  readonly debugUrl: string | undefined;
  markDraining(): void;
  isDraining(): boolean;
  stop(): Promise<void>;
}

export async function startOperations(config: CacheConfig, parts: OperationsParts): Promise<Operations> {
  const options = config.middleware.registry[0].options;
  const metrics = createCacheMetrics();
  const unobserve = observeEvents(parts.events, metrics);
  let draining = false;
  const health = new Health({ storage: parts.storage, upstream: parts.upstream, draining: () => draining });

  const exposition = parts.exposition ?? renderMetrics;
  const serveMetrics: Handler = async (req, res) => {
    const body = await exposition(metrics);
    res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
  const getOnly =
    (handler: Handler): Handler =>
    (req, res) =>
      req.method === 'GET' || req.method === 'HEAD'
        ? handler(req, res)
        : sendError(res, ociError(405, 'UNSUPPORTED', `${req.method} is not supported; use GET`));
  const routes = new Map<string, Handler>([
    ['/metrics', getOnly(serveMetrics)],
    ['/healthz', getOnly(health.healthz)],
    ['/readyz', getOnly(health.readyz)],
  ]);
  for (const [path, handler] of routes) parts.route(path, handler);

  const sweeper =
    options.blobttl !== undefined || options.maxsize !== undefined
      ? new Sweeper(parts.storage, options.sweepinterval, {
          blobTtlMs: options.blobttl,
          maxSizeBytes: options.maxsize,
          isBusy: parts.isBusy,
          // As at server start: no fill (bounded by filltimeout) can still own an older temp file.
          staleWriteAgeMs: options.filltimeout + 60_000,
          events: parts.events,
          metrics,
          log: (level, message, fields) => parts.log[level](message, fields),
        })
      : undefined;
  sweeper?.start();
  const scrub = new Scrub(
    parts.storage,
    parts.integrity,
    { rateBytesPerSecond: options.scrubrate, intervalMs: options.sweepinterval, isBusy: parts.isBusy },
    parts.events,
    parts.log,
  );
  scrub.start();
  const space = new SpaceReclaimer(parts.storage, parts.isBusy, metrics, parts.log);
  const unwatchSpace = parts.events.on('uncached', (p) => p.reason === 'storage-full' && space.reclaim(p.bytes));

  let debug: Server | undefined;
  let debugUrl: string | undefined;
  const debugConfig = config.http.debug;
  if (debugConfig) {
    const debugRoutes = new Map(routes);
    debugRoutes.delete('/metrics');
    if (debugConfig.prometheus?.enabled !== false) debugRoutes.set(debugConfig.prometheus?.path ?? '/metrics', getOnly(serveMetrics));
    debug = createServer((req, res) => {
      const handler = debugRoutes.get((req.url ?? '/').split('?')[0]);
      if (!handler) return sendError(res, ociError(404, 'NOT_FOUND', `the debug listener serves ${[...debugRoutes.keys()].join(', ')}`));
      void Promise.resolve(handler(req, res)).catch(() => sendError(res, ociError(500, 'UNAVAILABLE', 'internal error')));
    });
    const { host, port } = parts.parseAddr(debugConfig.addr);
    await new Promise<void>((resolve, reject) => {
      debug!.once('error', (err) =>
        reject(new Error(`http.debug.addr: cannot listen on ${debugConfig.addr} (${(err as NodeJS.ErrnoException).code ?? err.message})`)),
      );
      debug!.listen(port, host, resolve);
    });
    const address = debug.address() as AddressInfo;
    debugUrl = `http://${!host || host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host}:${address.port}`;
    parts.log.info('debug listener', { url: debugUrl });
  }

  return {
    metrics,
    health,
    sweeper,
    scrub,
    debugUrl,
    markDraining: () => void (draining = true),
    isDraining: () => draining,
    stop: async () => {
      unwatchSpace();
      await Promise.all([sweeper?.stop(), scrub.stop(), space.stop()]);
      if (debug) {
        debug.closeAllConnections();
        await new Promise<void>((resolve) => debug!.close(() => resolve()));
      }
      unobserve();
    },
  };
}
