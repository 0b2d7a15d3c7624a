/**
 * Blob GET/HEAD. A hit streams from storage (with Range) once the client is authorized. A miss joins the
 * blob's in-flight fill, or starts one with the client's credentials (a successful upstream GET with them is
 * the authorization); either way the client reads the growing blob at its own pace, from the fill's in-memory
 * window or read back from disk behind it (blob-fill.ts). HEAD never starts a fill.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { BlobFill, FillOpen } from './blob-fill';
import type { ClientRequest, PullContext } from './context';
import { verifying } from './integrity';
import { type AccessTarget, ociError, refusal, sendError, unavailable } from './oci-error';
import { contentRange, parseRange } from './range';
import { blobKey, type Digest } from './reference';
import { readCapped, relay } from './relay';
import type { ByteRange } from './storage';
import { FileReader, type SendCheck } from './storage/file-reader';
import { header } from './upstream';

/**
 * How often a hit records an access in storage, per key: enough for day-scale TTLs, cheap on object stores. A
 * shorter `blobttl` touches at a quarter of it, or a blob pulled all the time would expire between two touches.
 */
const TOUCH_INTERVAL_MS = 60_000;
/** A joiner whose fill vanished (refused for another client, or finished in between) looks again, this often. */
const MAX_ATTEMPTS = 4;

export class BlobHandler {
  private readonly touched = new Map<string, number>();
  private readonly touchIntervalMs: number;

  constructor(private readonly ctx: PullContext) {
    this.touchIntervalMs = Math.min(TOUCH_INTERVAL_MS, (ctx.options.blobttl ?? Infinity) / 4);
  }

  async handle(req: IncomingMessage, res: ServerResponse, client: ClientRequest, name: string, digest: Digest): Promise<void> {
    const head = req.method === 'HEAD';
    const target: AccessTarget = { kind: 'blob', name, reference: digest.text };
    const key = blobKey(digest);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      let slot = this.ctx.fills.get(digest);
      let starter = false;
      if (!slot) {
        const info = await this.ctx.storage.stat(key).catch((err) => {
          client.log.error('storage stat failed; treating as a miss', { digest: digest.text, reason: (err as Error).message });
          this.ctx.events.emit('storageError', { operation: 'stat' });
          return undefined;
        });
        if (info) {
          const decision = await this.ctx.authorizer.check(client.credential, target);
          if (!decision.allowed) return sendError(res, decision.error, head);
          if (await this.serveStored(req, res, client, digest, info.size)) return;
          continue; // evicted between stat and read: look again
        }
        slot = this.ctx.fills.get(digest);
        if (!slot && this.ctx.notFound.has(client.credential, target)) return sendError(res, refusal(404, {}, target), head);
        if (!slot) {
          if (head) return this.headUpstream(res, client, name, digest);
          slot = this.ctx.fills.begin(digest, key, (signal, offset) => this.openUpstream(client, target, signal, offset));
          starter = true;
        }
      }
      this.ctx.events.emit('lookup', { kind: 'blob', result: 'miss' });
      // Bytes streamed from another replica are served only to clients the upstream allows: ask it while that
      // replica's stream is being opened, not after (the check below then finds this one in flight or decided).
      void this.ctx.fills.source(digest)?.then((kind) => {
        if (kind === 'replica') this.ctx.authorizer.check(client.credential, target).catch(() => undefined);
      });
      const start = await slot;
      if (!start.ok) {
        if (starter && start.error) return sendError(res, start.error, head);
        // The upstream refused the client that started it (this client asks with its own credentials), or the blob
        // was committed meanwhile by another replica (storage has it now).
        continue;
      }
      if (!starter || !start.fetched) {
        // A joiner, or any client of a fill streamed from another replica, reads it only if the upstream would
        // serve it this blob too.
        const decision = await this.ctx.authorizer.check(client.credential, target);
        if (!decision.allowed) return sendError(res, decision.error, head);
      }
      if (this.serveFill(req, res, digest, start.fill, head)) return;
    }
    sendError(res, ociError(503, 'UNAVAILABLE', 'the blob could not be fetched or read; retry', { digest: digest.text }), head);
  }

  /** The upstream GET of the blob, from byte `offset` on when above 0 (resuming a fill another replica began). */
  private async openUpstream(client: ClientRequest, target: AccessTarget, signal: AbortSignal, offset: number): Promise<FillOpen> {
    const res = await this.ctx.upstream.request({
      method: 'GET',
      path: `/v2/${target.name}/blobs/${target.reference}`,
      headers: { authorization: client.credential, ...(offset > 0 ? { range: `bytes=${offset}-` } : {}) },
      signal,
    });
    if (!res.ok) return { ok: false, error: unavailable(res.reason) };
    if (res.status === 206 && offset > 0) {
      // bytes <start>-<end>/<size>: the rest of the blob; anything else is not what was asked.
      const match = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(header(res.headers, 'content-range') ?? '');
      if (!match) {
        res.body.destroy();
        return { ok: false, error: unavailable('the upstream answered a range request without a usable Content-Range') };
      }
      this.ctx.authorizer.allow(client.credential, target);
      const size = match[2] === '*' ? undefined : Number(match[2]);
      client.log.info('blob fill resumed from the upstream', { digest: target.reference, offset: Number(match[1]), bytes: size });
      return { ok: true, body: res.body, size, start: Number(match[1]) };
    }
    if (res.status !== 200) {
      if (res.status === 404) this.ctx.notFound.remember(client.credential, target);
      this.ctx.authorizer.refused(client.credential, target, res.status);
      const body = await readCapped(res.body, 64 * 1024).catch(() => undefined);
      return { ok: false, error: refusal(res.status, res.headers, target, body) };
    }
    this.ctx.authorizer.allow(client.credential, target);
    const length = Number(res.headers['content-length']);
    client.log.info('blob miss; fetching from upstream', {
      digest: target.reference,
      bytes: Number.isSafeInteger(length) ? length : undefined,
    });
    return { ok: true, body: res.body, size: Number.isSafeInteger(length) && length >= 0 ? length : undefined };
  }

  /** HEAD of a blob not cached: the upstream's answer, relayed (the client's credentials, its status). */
  private async headUpstream(res: ServerResponse, client: ClientRequest, name: string, digest: Digest): Promise<void> {
    const up = await this.ctx.upstream.request({
      method: 'HEAD',
      path: `/v2/${name}/blobs/${digest.text}`,
      headers: { authorization: client.credential },
    });
    if (!up.ok) return sendError(res, unavailable(up.reason), true);
    const target: AccessTarget = { kind: 'blob', name, reference: digest.text };
    if (up.status >= 200 && up.status < 300) this.ctx.authorizer.allow(client.credential, target);
    if (up.status === 404) this.ctx.notFound.remember(client.credential, target);
    this.ctx.authorizer.refused(client.credential, target, up.status);
    relay(res, up.status, up.headers, up.body, true);
  }

  /** Streams a stored blob; false when it disappeared before it could be opened. */
  private async serveStored(
    req: IncomingMessage,
    res: ServerResponse,
    client: ClientRequest,
    digest: Digest,
    size: number,
  ): Promise<boolean> {
    const key = blobKey(digest);
    const range = parseRange(req.headers.range, size);
    if (range.kind === 'unsatisfiable') {
      sendError(
        res,
        ociError(416, 'RANGE_INVALID', `the range is outside the blob's ${size} bytes`, undefined, { 'content-range': `bytes */${size}` }),
      );
      return true;
    }
    const { integrity } = this.ctx;
    const recorded = integrity.recordedSize(digest);
    if (recorded !== undefined && recorded !== size) {
      await integrity.damaged(digest, 'size', `stored size ${size} differs from the verified ${recorded}`);
      return false; // gone now: look again, and fetch it
    }
    if (recorded !== undefined) integrity.passed('size');
    const head = req.method === 'HEAD';
    const partial = range.kind === 'partial' ? range.range : undefined;
    const checkDigest = !head && integrity.needsDigestCheck(digest.text);
    if (checkDigest && partial && !(await this.verifyBeforeRange(client, digest))) return false;
    this.ctx.events.emit('lookup', { kind: 'blob', result: 'hit' });
    this.touch(key);
    if (head) {
      this.writeHead(res, digest, size, partial);
      res.end();
      return true;
    }
    const release = this.ctx.busy.hold(key);
    const stream = await this.ctx.storage.read(key, partial).catch((err) => {
      client.log.error('storage read failed', { digest: digest.text, reason: (err as Error).message });
      this.ctx.events.emit('storageError', { operation: 'read' });
      return undefined;
    });
    if (!stream) {
      release();
      return false;
    }
    this.writeHead(res, digest, size, partial);
    this.send(stream, res, 'storage', release, checkDigest && !partial ? integrity.digestCheck(digest) : undefined);
    return true;
  }

  /** A range of a blob not verified lately: the whole blob is checked first; false when damaged (evicted) or gone. */
  private async verifyBeforeRange(client: ClientRequest, digest: Digest): Promise<boolean> {
    const release = this.ctx.busy.hold(blobKey(digest));
    try {
      return (await this.ctx.integrity.verifyStored(digest, 'digest')) === 'ok';
    } catch (err) {
      client.log.error('storage read failed', { digest: digest.text, reason: (err as Error).message });
      this.ctx.events.emit('storageError', { operation: 'read' });
      return false;
    } finally {
      release();
    }
  }

  /** Streams from an in-flight fill (its reader); false when the fill is already gone (then storage has it). */
  private serveFill(req: IncomingMessage, res: ServerResponse, digest: Digest, fill: BlobFill, head: boolean): boolean {
    const size = fill.size;
    let partial: ByteRange | undefined;
    if (size !== undefined) {
      const range = parseRange(req.headers.range, size);
      if (range.kind === 'unsatisfiable') {
        sendError(
          res,
          ociError(416, 'RANGE_INVALID', `the range is outside the blob's ${size} bytes`, undefined, {
            'content-range': `bytes */${size}`,
          }),
          head,
        );
        return true;
      }
      if (range.kind === 'partial') partial = range.range;
    }
    if (head) {
      this.writeHead(res, digest, size, partial);
      res.end();
      return true;
    }
    const reader = fill.reader(partial);
    if (!reader) return false;
    this.writeHead(res, digest, size, partial);
    this.send(reader, res, 'upstream', () => undefined);
    return true;
  }

  private writeHead(res: ServerResponse, digest: Digest, size: number | undefined, range: ByteRange | undefined): void {
    const headers: Record<string, string | number> = {
      'content-type': 'application/octet-stream',
      'docker-content-digest': digest.text,
      etag: `"${digest.text}"`,
      'accept-ranges': 'bytes',
      'cache-control': 'max-age=31536000',
    };
    if (size !== undefined) headers['content-length'] = range ? range.end - range.start + 1 : size;
    if (range && size !== undefined) headers['content-range'] = contentRange(range, size);
    res.writeHead(range ? 206 : 200, headers);
  }

  /**
   * Sends `stream` to the client, through `check` if given (the whole blob's digest); a failure mid-body fails the
   * transfer (`failTransfer`). A stored file is sent through reused buffers (FileReader.sendTo), anything else piped.
   */
  private send(stream: Readable, res: ServerResponse, source: 'storage' | 'upstream', done: () => void, check?: SendCheck): void {
    const served = (bytes: number) => this.ctx.events.emit('served', { source, bytes });
    const body = stream instanceof FileReader || !check ? stream : verifying(stream, check);
    // Not pipeline(): on an error it destroys the response first, which closes the socket cleanly before failTransfer.
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      done();
    };
    body.on('error', () => {
      end();
      failTransfer(res);
    });
    res.on('error', () => undefined); // a write to a client already gone; 'close' follows and cleans up
    res.once('close', () => {
      end();
      body.destroy(); // the client left (or was cut): stop reading
    });
    if (body instanceof FileReader) return body.sendTo(res, served, check);
    body.on('data', (chunk: Buffer) => served(chunk.length));
    body.pipe(res);
  }

  private touch(key: string): void {
    const now = Date.now();
    if (now - (this.touched.get(key) ?? 0) < this.touchIntervalMs) return;
    if (this.touched.size > 100_000) this.touched.clear();
    this.touched.set(key, now);
    this.ctx.storage.touch(key).then(
      () => this.ctx.events.emit('accessed', { key }),
      (err) => {
        this.ctx.log.warn('storage touch failed', { key, reason: (err as Error).message });
        this.ctx.events.emit('storageError', { operation: 'touch' });
      },
    );
  }
}

/**
 * Ends a response whose body failed so that every client sees a failed transfer. With a Content-Length, closing the
 * connection short of it does. Without one (the upstream sent none), a close would end an HTTP/1.0 body (no chunked
 * encoding) the way a complete one ends: the connection is reset (TCP RST) instead.
 */
function failTransfer(res: ServerResponse): void {
  const socket = res.socket;
  if (!res.hasHeader('content-length') && socket && !socket.destroyed) socket.resetAndDestroy();
  else if (!res.destroyed) res.destroy();
}
