/**
 * The request handler: routes the OCI pull API onto the manifest and blob handlers, passes `GET /v2/` and
 * tags/list through to the upstream (so its 401 challenge reaches the client), serves the exact paths operations
 * add (/metrics, /healthz…), answers everything else with OCI error JSON, and logs and counts every request.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { unavailable } from './oci-error';
import { BlobHandler } from './blobs';
import type { ClientRequest, PullContext } from './context';
import { answerManifest } from './manifests';
import { ociError, sendError } from './oci-error';
import { parseRoute, type Route } from './reference';
import { relay } from './relay';

export type RouteHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface PullHandler {
  /** For `http.createServer`: never rejects (a handler's error becomes a 500 in OCI error JSON). */
  readonly serve: (req: IncomingMessage, res: ServerResponse) => void;
  /** Adds a handler for an exact path outside the pull API (/healthz, /metrics…). */
  route(path: string, handler: RouteHandler): void;
  /** Client requests not answered (or cut) yet: what a drain waits for. */
  requestsInFlight(): number;
}

/** `headers`: config.http.headers, added to every answer. */
export function createPullHandler(ctx: PullContext, headers: Readonly<Record<string, string[]>> = {}): PullHandler {
  const blobs = new BlobHandler(ctx);
  const extraRoutes = new Map<string, RouteHandler>();
  const extraHeaders = Object.entries(headers);
  let inFlight = 0;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = Date.now();
    const requestId = randomBytes(8).toString('hex');
    const reqLog = ctx.log.child({ requestId });
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
      ctx.events.emit('request', { route: routeName, method, status, durationMs: Date.now() - started });
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

  return {
    serve: (req, res) => void serveSafely(handle, req, res, ctx),
    route: (path, handler) => void extraRoutes.set(path, handler),
    requestsInFlight: () => inFlight,
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
  ctx: PullContext,
): Promise<void> {
  try {
    await handle(req, res);
  } catch (err) {
    ctx.log.error('request failed', { path: (req.url ?? '').split('?')[0].slice(0, 200), reason: (err as Error)?.message ?? String(err) });
    sendError(res, ociError(500, 'UNAVAILABLE', 'internal error while serving this request; see the cache logs'), req.method === 'HEAD');
  }
}

/** `/v2/x/tags/list?n=10` → [`/v2/x/tags/list`, `?n=10`]; the raw path, never normalized (no `..` resolution). */
function splitUrl(url: string): [string, string] {
  const q = url.indexOf('?');
  return q < 0 ? [url, ''] : [url.slice(0, q), url.slice(q)];
}
