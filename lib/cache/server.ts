/**
 * The cache's HTTP(S) server: routes the OCI pull API onto the manifest and blob handlers, passes `GET /v2/`
 * and tags/list through to the upstream (so its 401 challenge reaches the client), and answers everything else
 * with OCI error JSON.
 *
 * `createCacheServer(config)` is the one entry point for the CLI and the tests. Seams for operations
 * (metrics, health, drain, eviction) are on the returned object: `events`, `route()`, `isBusy()`, `idle()`.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selectStorage, type CacheConfig } from '../config';
import { Authorizer } from './authorize';
import { FillRegistry } from './blob-fill';
import { BlobHandler } from './blobs';
import { BusyKeys } from './busy';
import type { ClientRequest, PullContext } from './context';
import { CacheEvents } from './events';
import { BlobIntegrity } from './integrity';
import { createLogger, type Logger } from './log';
import { ManifestStore, migrateTagLayout } from './manifest-store';
import { answerManifest } from './manifests';
import { ociError, sendError, unavailable } from './oci-error';
import { parseRoute, type Route } from './reference';
import { relay } from './relay';
import { NotFoundCache } from './not-found';
import { startOperations, type Operations } from './operations';
import { createStorage, type StorageDriver } from './storage';
import { Upstream } from './upstream';

export type RouteHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface CacheServerOptions {
  readonly logger?: Logger;
  /** Where fills spool; default `<OS temp dir>/dtr-cache-spool`. */
  readonly spoolDir?: string;
  /** Use this storage instead of creating one from config.storage. */
  readonly storage?: StorageDriver;
}

export interface CacheServer {
  /** Where clients reach it, e.g. http://127.0.0.1:5000. */
  readonly url: string;
  readonly port: number;
  readonly events: CacheEvents;
  readonly storage: StorageDriver;
  readonly upstream: Upstream;
  readonly log: Logger;
  /** Adds a handler for an exact path outside the pull API (/healthz, /metrics…). */
  route(path: string, handler: RouteHandler): void;
  /** Whether a storage key is being filled or streamed (the sweeper must not evict it). */
  isBusy(key: string): boolean;
  /** Blob fills in flight. */
  fillsInFlight(): number;
  /** Client requests not answered (or cut) yet: what a drain waits for. */
  requestsInFlight(): number;
  /** Metrics, health and the sweeper (lib/cache/operations.ts). */
  readonly operations: Operations;
  /** Fails readiness from now on (drain). */
  markDraining(): void;
  /** Resolves once every fill in flight has settled. */
  idle(): Promise<void>;
  /** Stops listening and accepting; in-flight responses keep going until `close()`. */
  stopAccepting(): Promise<void>;
  /** Stops now: closes connections, aborts fills (nothing partial is committed). */
  close(): Promise<void>;
}

export async function createCacheServer(config: CacheConfig, options: CacheServerOptions = {}): Promise<CacheServer> {
  const log = options.logger ?? createLogger(config.log.level);
  const downstream = config.middleware.registry[0].options;
  const events = new CacheEvents();
  const storage = options.storage ?? (await createStorage(selectStorage(config.storage)));
  // Another replica may be filling into a shared store right now: only writes older than any fill can be are stale.
  const stale = await storage.removeStaleWrites(downstream.filltimeout + 60_000).catch((err) => {
    log.warn('could not remove stale writes', { reason: (err as Error).message });
    return 0;
  });
  if (stale > 0) log.info('removed stale writes of an earlier process', { count: stale });
  const migrated = await migrateTagLayout(storage).catch((err) => {
    log.error('could not move tag records to the current layout; they are fetched again', { reason: (err as Error).message });
    return 0;
  });
  if (migrated > 0) log.info('moved tag records to the current layout', { count: migrated });
  // One shared directory, never removed: spool files are unlinked as soon as they are opened, so it stays empty
  // and even a killed process leaves nothing in it (a per-process directory would leak on kill -9).
  const spoolDir = options.spoolDir ?? join(tmpdir(), 'dtr-cache-spool');
  const upstream = new Upstream(
    {
      upstreams: downstream.upstreams,
      cas: downstream.cas,
      timeoutMs: downstream.upstreamtimeout,
      offlineAfter: downstream.offlineafter,
      offlinePeriodMs: downstream.offlineperiod,
    },
    events,
  );
  const busy = new BusyKeys();
  const integrity = new BlobIntegrity(storage, downstream.verifyage, log, events);
  // A fill verified the bytes it committed.
  events.on('fillEnded', (p) => p.ok && integrity.record(p.digest, p.bytes));
  const ctx: PullContext = {
    options: downstream,
    storage,
    manifests: new ManifestStore(storage, downstream.tagttl),
    upstream,
    authorizer: new Authorizer(upstream, { ttlMs: downstream.authttl, maxStaleMs: downstream.authstale }, log, events),
    fills: new FillRegistry({ storage, spoolDir, timeoutMs: downstream.filltimeout, busy, log, events }),
    busy,
    integrity,
    notFound: new NotFoundCache(downstream.notfoundttl),
    events,
    log,
  };
  const blobs = new BlobHandler(ctx);
  const extraRoutes = new Map<string, RouteHandler>();
  const extraHeaders = Object.entries(config.http.headers ?? {});
  let inFlight = 0;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = Date.now();
    const requestId = randomBytes(8).toString('hex');
    const reqLog = log.child({ requestId });
    const [path, query] = splitUrl(req.url ?? '/');
    const method = req.method ?? 'GET';
    const head = method === 'HEAD';
    res.setHeader('docker-distribution-api-version', 'registry/2.0');
    res.setHeader('x-request-id', requestId);
    for (const [name, values] of extraHeaders) res.setHeader(name, values);
    const extra = extraRoutes.get(path);
    const parsed = extra ? undefined : parseRoute(method, path);
    const routeName = extra ? path.slice(1) : parsed?.ok ? parsed.value.kind : 'invalid';
    inFlight++;
    res.on('close', () => {
      inFlight--;
      const status = res.writableFinished ? res.statusCode : 0;
      events.emit('request', { route: routeName, method, status, durationMs: Date.now() - started });
      reqLog[status >= 500 || status === 0 ? 'warn' : 'info']('request', {
        method,
        path: path.length > 200 ? `${path.slice(0, 200)}…` : path,
        status: status || 'aborted',
        ms: Date.now() - started,
      });
    });
    if (extra) return extra(req, res);
    if (!parsed!.ok) return sendError(res, parsed!.error, head);
    const client: ClientRequest = { credential: req.headers.authorization, accept: req.headers.accept, log: reqLog };
    await dispatch(ctx, blobs, req, res, client, parsed!.value, query, head);
  };

  const tls = config.http.tls;
  const server: Server = tls
    ? createHttpsServer(
        {
          cert: readPem(tls.certificate, 'http.tls.certificate'),
          key: readPem(tls.key, 'http.tls.key'),
          minVersion: tls.minimumtls === 'tls1.3' ? 'TLSv1.3' : 'TLSv1.2',
          // http.tls.clientcas: only clients with a certificate from these CAs get a connection (as in the registry).
          ...(tls.clientcas?.length
            ? {
                ca: tls.clientcas.map((file, i) => readPem(file, `http.tls.clientcas[${i}]`)),
                requestCert: true,
                rejectUnauthorized: true,
              }
            : {}),
        },
        (req, res) => void serveSafely(handle, req, res, log),
      )
    : createHttpServer((req, res) => void serveSafely(handle, req, res, log));
  // Huge or slow request heads are cut by Node's own limits (16 KiB of headers, headersTimeout).
  server.headersTimeout = 30_000;
  server.requestTimeout = 0; // a blob download may take long; the fill and body timeouts bound the upstream side
  const { host, port } = parseAddr(config.http.addr);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const actualPort = (server.address() as AddressInfo).port;
  const urlHost = !host || host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  const url = `${tls ? 'https' : 'http'}://${urlHost}:${actualPort}`;
  log.info('cache listening', { url, addr: config.http.addr, upstreams: downstream.upstreams, storage: storage.kind });
  const operations = await startOperations(config, {
    events,
    storage,
    upstream,
    log,
    isBusy: (key) => busy.has(key),
    integrity,
    route: (path, handler) => void extraRoutes.set(path, handler),
    parseAddr,
  }).catch(async (err) => {
    // E.g. http.debug.addr taken: leave nothing running behind the error.
    await new Promise((resolve) => server.close(resolve));
    await upstream.close();
    throw err;
  });

  let closed: Promise<void> | undefined;
  const stopAccepting = () => new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
  return {
    url,
    port: actualPort,
    events,
    storage,
    upstream,
    log,
    route: (path, handler) => void extraRoutes.set(path, handler),
    isBusy: (key) => busy.has(key),
    fillsInFlight: () => ctx.fills.size,
    requestsInFlight: () => inFlight,
    operations,
    markDraining: () => operations.markDraining(),
    idle: () => ctx.fills.settled(),
    stopAccepting: async () => {
      if (server.listening) server.close();
      server.closeIdleConnections();
    },
    close: () =>
      (closed ??= (async () => {
        const stopped = stopAccepting();
        ctx.fills.abortAll();
        server.closeAllConnections();
        await stopped;
        await ctx.fills.settled();
        await operations.stop();
        await upstream.close();
      })()),
  };
}

async function dispatch(
  ctx: PullContext,
  blobs: BlobHandler,
  req: IncomingMessage,
  res: ServerResponse,
  client: ClientRequest,
  route: Route,
  query: string,
  head: boolean,
): Promise<void> {
  switch (route.kind) {
    case 'base':
      return passThrough(ctx, res, client, '/v2/', head, true);
    case 'tags':
      return passThrough(ctx, res, client, `/v2/${route.name}/tags/list${query}`, head, false);
    case 'blob':
      return blobs.handle(req, res, client, route.name, route.digest);
    case 'manifest': {
      const answer = await answerManifest(ctx, client, route.name, route.reference);
      if (!answer.ok) return sendError(res, answer.error, head);
      const { manifest } = answer;
      res.writeHead(200, {
        'content-type': manifest.mediaType,
        'content-length': manifest.bytes.length,
        'docker-content-digest': manifest.digest.text,
        etag: `"${manifest.digest.text}"`,
        ...(answer.stale ? { warning: '110 - "Response is Stale"' } : {}),
      });
      res.end(head ? undefined : manifest.bytes);
      if (!head) ctx.events.emit('served', { source: answer.source, bytes: manifest.bytes.length });
      return;
    }
  }
}

/** GET /v2/ and tags/list: the upstream's answer with the client's credentials, unchanged. */
async function passThrough(ctx: PullContext, res: ServerResponse, client: ClientRequest, path: string, head: boolean, isBase: boolean) {
  const up = await ctx.upstream.request({ method: head ? 'HEAD' : 'GET', path, headers: { authorization: client.credential } });
  if (up.ok) return relay(res, up.status, up.headers, up.body, head);
  if (isBase) {
    // The API root only says "this is a registry": while the upstream is down, cached content stays reachable.
    client.log.warn('upstream unreachable; answering /v2/ locally', { reason: up.reason });
    res.writeHead(200, { 'content-type': 'application/json', warning: '110 - "Response is Stale"' });
    res.end(head ? undefined : '{}');
    return;
  }
  sendError(res, unavailable(up.reason), head);
}

async function serveSafely(
  handle: (req: IncomingMessage, res: ServerResponse) => Promise<void>,
  req: IncomingMessage,
  res: ServerResponse,
  log: Logger,
): Promise<void> {
  try {
    await handle(req, res);
  } catch (err) {
    log.error('request failed', { path: (req.url ?? '').split('?')[0].slice(0, 200), reason: (err as Error)?.message ?? String(err) });
    sendError(res, ociError(500, 'UNAVAILABLE', 'internal error while serving this request; see the cache logs'), req.method === 'HEAD');
  }
}

/** `/v2/x/tags/list?n=10` → [`/v2/x/tags/list`, `?n=10`]; the raw path, never normalized (no `..` resolution). */
function splitUrl(url: string): [string, string] {
  const q = url.indexOf('?');
  return q < 0 ? [url, ''] : [url.slice(0, q), url.slice(q)];
}

/** `0.0.0.0:443`, `:5000`, `[::1]:5000` → host (undefined: every interface) and port. */
export function parseAddr(addr: string): { host: string | undefined; port: number } {
  const colon = addr.lastIndexOf(':');
  const host = addr.slice(0, colon).replace(/^\[|\]$/g, '');
  return { host: host === '' ? undefined : host, port: Number(addr.slice(colon + 1)) };
}

function readPem(path: string, field: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(
      `${field}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); fix the path or mount the secret`,
    );
  }
}
