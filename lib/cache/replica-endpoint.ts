/**
 * The replica endpoint: how the replicas of a site hand each other a blob that one of them is fetching, so the site
 * crosses the WAN once per blob (fill-coordinator.ts). `GET /fills/<digest>?from=N` streams the blob from byte N:
 * from this replica's fill in flight (never past what it has, the last byte only once verified), else from storage
 * once committed; 404 when it has neither.
 *
 * Only replicas holding the site's `http.secret` are answered: every request carries an HMAC-SHA256 of its digest,
 * offset and time under that secret, valid for a minute; anything else gets 401 and no byte. The endpoint listens on
 * its own address (`http.internal`), never on the clients' port, and serves no client: a client's own request was
 * authorized with the upstream before its replica asks here.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import { Readable } from 'node:stream';
import type { FillRegistry } from './blob-fill';
import type { Logger } from './log';
import { blobKey, parseDigest, type Digest } from './reference';
import type { StorageDriver } from './storage';

export const FILL_PATH = '/fills/';
const TIME_HEADER = 'x-dtr-cache-replica-time';
const AUTH_HEADER = 'x-dtr-cache-replica-auth';
/** The blob's full size, when known: a stream from an offset has only the rest as its length. */
export const SIZE_HEADER = 'x-dtr-cache-blob-size';
/** How far a request's time may be from this replica's clock. */
const MAX_SKEW_MS = 60_000;

function mac(secret: string, digest: string, from: number, time: string): Buffer {
  return createHmac('sha256', secret).update(`${time}\n${digest}\n${from}`).digest();
}

/** The headers that authenticate a request for `digest` from byte `from` to another replica. */
export function replicaHeaders(secret: string, digest: string, from: number, now = Date.now()): Record<string, string> {
  const time = String(now);
  return { [TIME_HEADER]: time, [AUTH_HEADER]: mac(secret, digest, from, time).toString('hex') };
}

/** Whether `headers` carry a fresh HMAC of this request under `secret`. */
export function isReplicaRequest(
  secret: string,
  digest: string,
  from: number,
  headers: IncomingMessage['headers'],
  now = Date.now(),
): boolean {
  const time = headers[TIME_HEADER];
  const auth = headers[AUTH_HEADER];
  if (typeof time !== 'string' || typeof auth !== 'string' || !/^\d+$/.test(time) || !/^[0-9a-f]{64}$/.test(auth)) return false;
  if (Math.abs(now - Number(time)) > MAX_SKEW_MS) return false;
  return timingSafeEqual(Buffer.from(auth, 'hex'), mac(secret, digest, from, time));
}

export interface ReplicaEndpointOptions {
  readonly secret: string;
  /** host:port to listen on; port 0 picks a free one. */
  readonly addr: string;
  /** host or host:port the other replicas reach this one at; default: addr's host, else the first non-loopback IPv4. */
  readonly advertise?: string;
  /** The fills in flight (undefined until the server has them: requests before that find storage only). */
  readonly fills: () => FillRegistry | undefined;
  readonly storage: StorageDriver;
  readonly log: Logger;
  readonly parseAddr: (addr: string) => { host: string | undefined; port: number };
}

export interface ReplicaEndpoint {
  /** host:port, as written in this replica's fill leases. */
  readonly address: string;
  close(): Promise<void>;
}

export async function startReplicaEndpoint(options: ReplicaEndpointOptions): Promise<ReplicaEndpoint> {
  const server: Server = createServer((req, res) => {
    serve(options, req, res).catch((err: unknown) => {
      options.log.warn('replica endpoint: request failed', { reason: (err as Error).message });
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  });
  server.requestTimeout = 0; // a fill may take long; the requesting replica bounds it
  const { host, port } = options.parseAddr(options.addr);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // Exclusive: a cluster worker's endpoint is its own, never shared with the other workers (serve --workers).
    server.listen({ port, host, exclusive: true }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const actual = (server.address() as AddressInfo).port;
  const address = advertisedAddress(options.advertise, host, actual);
  options.log.info('replica endpoint listening', { addr: `${host ?? ''}:${actual}`, advertised: address });
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** `advertise` with the port appended if it has none; else the listening host, else this machine's IPv4. */
export function advertisedAddress(advertise: string | undefined, host: string | undefined, port: number): string {
  if (advertise) return /:\d+$/.test(advertise) && !/^[^[]*:.*:/.test(advertise) ? advertise : `${bracket(advertise)}:${port}`;
  if (host && host !== '0.0.0.0' && host !== '::') return `${bracket(host)}:${port}`;
  const ipv4 = Object.values(networkInterfaces())
    .flat()
    .find((i) => i && i.family === 'IPv4' && !i.internal);
  return `${ipv4?.address ?? '127.0.0.1'}:${port}`;
}

function bracket(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

async function serve(options: ReplicaEndpointOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://replica');
  const parsed = url.pathname.startsWith(FILL_PATH) ? parseDigest(url.pathname.slice(FILL_PATH.length)) : undefined;
  const from = Number(url.searchParams.get('from') ?? '0');
  if (req.method !== 'GET' || !parsed?.ok || !Number.isSafeInteger(from) || from < 0) {
    res.writeHead(404).end();
    return;
  }
  const digest = parsed.value;
  if (!isReplicaRequest(options.secret, digest.text, from, req.headers)) {
    options.log.warn('replica endpoint: refused a request without a valid http.secret HMAC', { remote: req.socket.remoteAddress });
    res.writeHead(401).end();
    return;
  }
  const fills = options.fills();
  const found = (fills && (await fromFill(fills, digest, from))) ?? (await fromStorage(options.storage, digest, from));
  if (!found) {
    res.writeHead(404).end();
    return;
  }
  const { stream, size } = found;
  const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream' };
  if (size !== undefined) {
    headers[SIZE_HEADER] = size;
    headers['content-length'] = Math.max(0, size - from);
  }
  res.writeHead(200, headers);
  stream.on('error', () => res.destroy()); // the fill failed: the other replica sees a cut body
  res.on('close', () => stream.destroy());
  stream.pipe(res);
}

async function fromFill(fills: FillRegistry, digest: Digest, from: number): Promise<{ stream: Readable; size?: number } | undefined> {
  const slot = fills.get(digest);
  const start = slot && (await slot);
  if (!start?.ok) return undefined;
  const { fill } = start;
  if (fill.size !== undefined && from > fill.size) return undefined;
  const stream = fill.reader({ start: from });
  return stream && { stream, size: fill.size };
}

async function fromStorage(storage: StorageDriver, digest: Digest, from: number): Promise<{ stream: Readable; size: number } | undefined> {
  const key = blobKey(digest);
  const info = await storage.stat(key);
  if (!info || from > info.size) return undefined;
  const stream = from === info.size ? Readable.from([]) : await storage.read(key, { start: from, end: info.size - 1 });
  return stream && { stream, size: info.size };
}
