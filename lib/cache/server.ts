/**
 * The cache server, wired as distribution's proxy is: build the pull context (storage, upstream, fills), put
 * the request handler in front of it, listen on `http.addr` (TLS when `http.tls` is set), attach operations
 * (metrics, health, sweeper), and own the shutdown.
 *
 * `createCacheServer(config)` is the one entry point for the CLI and the tests. Seams for operations
 * (metrics, health, drain, eviction) are on the returned object: `events`, `route()`, `isBusy()`, `idle()`.
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { DEFAULT_CIPHERS } from 'node:tls';
import type { CacheConfig } from '../config';
import { parseAddr } from './addr';
import type { CacheEvents } from './events';
import { createPullHandler, type RouteHandler } from './handler';
import { createLogger, type Logger } from './log';
import { startOperations, type Exposition, type Operations } from './operations';
import { buildPullContext, type PullContextOptions } from './pull-context';
import type { StorageDriver } from './storage';
import type { Upstream } from './upstream';
import { SINGLE_PROCESS, type WorkerSlot } from './worker-slot';

export type { RouteHandler } from './handler';
export { parseAddr } from './addr';

export interface CacheServerOptions extends PullContextOptions {
  readonly logger?: Logger;
  /** Which worker of `serve --workers N` this server is. @default worker 0 of 1 */
  readonly worker?: WorkerSlot;
  /** What `/metrics` answers. @default this process's metrics */
  readonly exposition?: Exposition;
}

export interface CacheServer {
  /** Where clients reach it, e.g. http://127.0.0.1:5000. */
  readonly url: string;
  readonly port: number;
  readonly events: CacheEvents;
  readonly storage: StorageDriver;
  readonly upstream: Upstream;
  readonly log: Logger;
  /** Which worker of `serve --workers N` this server is (worker 0 of 1 outside a cluster). */
  readonly worker: WorkerSlot;
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
  const worker = options.worker ?? SINGLE_PROCESS;
  const { ctx, sharing } = await buildPullContext(config, log, { ...options, worker });
  const handler = createPullHandler(ctx, config.http.headers);
  const server = createListener(config.http.tls, handler.serve);
  const { url, port } = await listen(server, config.http.addr, config.http.tls !== undefined);
  log.info('cache listening', { url, addr: config.http.addr, upstreams: ctx.options.upstreams, storage: ctx.storage.kind });
  const operations = await startOperations(config, {
    events: ctx.events,
    storage: ctx.storage,
    upstream: ctx.upstream,
    log,
    isBusy: (key) => ctx.busy.has(key),
    integrity: ctx.integrity,
    route: handler.route,
    parseAddr,
    exposition: options.exposition,
  }).catch(async (err) => {
    // E.g. http.debug.addr taken: leave nothing running behind the error.
    await new Promise((resolve) => server.close(resolve));
    await sharing?.close();
    await ctx.upstream.close();
    throw err;
  });

  let closed: Promise<void> | undefined;
  const stopListening = () => new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
  return {
    url,
    port,
    events: ctx.events,
    storage: ctx.storage,
    upstream: ctx.upstream,
    log,
    worker,
    route: handler.route,
    isBusy: (key) => ctx.busy.has(key),
    fillsInFlight: () => ctx.fills.size,
    requestsInFlight: handler.requestsInFlight,
    operations,
    markDraining: () => operations.markDraining(),
    idle: () => ctx.fills.settled(),
    stopAccepting: async () => {
      if (server.listening) server.close();
      server.closeIdleConnections();
    },
    close: () =>
      (closed ??= (async () => {
        const stopped = stopListening();
        ctx.fills.abortAll();
        server.closeAllConnections();
        await stopped;
        await ctx.fills.settled();
        await sharing?.close();
        await operations.stop();
        await ctx.upstream.close();
      })()),
  };
}

type Tls = CacheConfig['http']['tls'];

/**
 * Node's default suites, AES-128-GCM first and chosen by the server's order, as Go's TLS (the registry's) chooses
 * on CPUs with AES instructions: clients such as OpenSSL's ask for AES-256-GCM first, which costs more per byte.
 */
const CIPHERS = ['TLS_AES_128_GCM_SHA256', ...DEFAULT_CIPHERS.split(':').filter((c) => c !== 'TLS_AES_128_GCM_SHA256')].join(':');

/** An HTTP server, or HTTPS with `http.tls` (and client certificates with `http.tls.clientcas`). */
function createListener(tls: Tls, serve: (req: IncomingMessage, res: ServerResponse) => void): Server {
  const server: Server = tls
    ? createHttpsServer(
        {
          cert: readPem(tls.certificate, 'http.tls.certificate'),
          key: readPem(tls.key, 'http.tls.key'),
          minVersion: tls.minimumtls === 'tls1.3' ? 'TLSv1.3' : 'TLSv1.2',
          ciphers: CIPHERS,
          honorCipherOrder: true,
          // http.tls.clientcas: only clients with a certificate from these CAs get a connection (as in the registry).
          ...(tls.clientcas?.length
            ? {
                ca: tls.clientcas.map((file, i) => readPem(file, `http.tls.clientcas[${i}]`)),
                requestCert: true,
                rejectUnauthorized: true,
              }
            : {}),
        },
        serve,
      )
    : createHttpServer(serve);
  // Huge or slow request heads are cut by Node's own limits (16 KiB of headers, headersTimeout).
  server.headersTimeout = 30_000;
  server.requestTimeout = 0; // a blob download may take long; the fill and body timeouts bound the upstream side
  return server;
}

/** Listens on `addr`; resolves with the port and the URL clients use (loopback for a wildcard address). */
async function listen(server: Server, addr: string, tls: boolean): Promise<{ url: string; port: number }> {
  const { host, port } = parseAddr(addr);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const actualPort = (server.address() as AddressInfo).port;
  const urlHost = !host || host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return { url: `${tls ? 'https' : 'http'}://${urlHost}:${actualPort}`, port: actualPort };
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
