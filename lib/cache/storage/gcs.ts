/**
 * Google Cloud Storage with @google-cloud/storage, configured with the registry's gcs driver keys.
 *
 * Atomicity: a write is a resumable upload, sent in `chunksize` requests as bytes arrive, to a temp object
 * `<root>_uploads/<uuid>`; `commit()` rewrites it server-side onto the final name (objects.rewrite: within one
 * bucket a metadata-only copy) and deletes the temp object. A GCS object write is atomic, so readers and a
 * concurrent writer's commit see the old object or one whole new one. Deferring the finalization of the upload
 * itself to `commit()` is not possible through the SDK: it finalizes when the stream ends, and a held-back
 * session (`isPartialUpload`) would need every non-final request to be a multiple of 256 KiB, which the end of
 * an arbitrary blob is not.
 * Access times: an object-metadata PATCH is cheap and in place, so `touch` stores `lastaccess` in custom
 * metadata (not `customTime`: it may only move forward, and replicas' clocks differ). `modified` is the
 * object's `timeCreated`, since a PATCH moves `updated`.
 */
import { randomUUID } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { Bucket as GcsBucketHandle, Storage, StorageOptions } from '@google-cloud/storage';
import type { GcsOptions } from '../../config';
import type { ByteRange } from './driver';
import { Bucket, BucketUpload, ObjectStoreDriver, RawObject, rootPrefix } from './object-store';

/** The SDK keeps one chunk per write in memory (to resend it on a retry), so the default stays moderate. */
export const DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024;
/** Resumable uploads take chunks in multiples of this (GCS JSON API); the config schema enforces it too. */
export const CHUNK_GRANULE = 256 * 1024;

/** The request size of resumable uploads: `chunksize` when set, else the default. Throws on a size GCS refuses. */
export function gcsChunkSize(options: Pick<GcsOptions, 'chunksize'>): number {
  const size = options.chunksize ?? DEFAULT_CHUNK_SIZE;
  if (!Number.isInteger(size) || size <= 0 || size % CHUNK_GRANULE !== 0)
    throw new Error(`storage.gcs.chunksize: ${size} is not a positive multiple of 256 KiB (262144 bytes); set e.g. 8388608`);
  return size;
}

/** SDK options the registry keys select. Pure. */
export function gcsStorageOptions(options: GcsOptions): StorageOptions {
  const authenticated = Boolean(options.keyfile || options.credentials);
  return {
    ...(options.keyfile ? { keyFilename: options.keyfile } : {}),
    ...(options.credentials ? { credentials: options.credentials as StorageOptions['credentials'] } : {}),
    // A custom endpoint gets no credentials unless asked to; a compatible server given a key expects them.
    ...(options.endpoint ? { apiEndpoint: options.endpoint.replace(/\/+$/, ''), useAuthWithCustomEndpoint: authenticated } : {}),
  };
}

/** Object names of one write: the temp object under the root's `_uploads/`. Pure. */
export function gcsTempName(root: string, id: string): string {
  return `${root}_uploads/${id}`;
}

export class GcsBucket implements Bucket {
  private readonly bucket: GcsBucketHandle;
  private readonly chunkSize: number;

  constructor(
    options: GcsOptions,
    private readonly root: string,
  ) {
    this.chunkSize = gcsChunkSize(options);
    this.bucket = new Storage(gcsStorageOptions(options)).bucket(options.bucket);
  }

  async head(name: string): Promise<RawObject | undefined> {
    try {
      const [m] = await this.bucket.file(name).getMetadata();
      return toRaw(name, m);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async get(name: string, range?: ByteRange): Promise<Readable | undefined> {
    // The read stream reports a missing object only once read; the driver contract wants `undefined` up front.
    if (!(await this.head(name))) return undefined;
    return this.bucket.file(name).createReadStream({ start: range?.start, end: range?.end, validation: false, decompress: false });
  }

  async upload(name: string): Promise<BucketUpload> {
    const temp = this.bucket.file(gcsTempName(this.root, randomUUID()));
    let session: string | undefined;
    const stream = new DeferredStream(async () => {
      // The session is opened here rather than by createWriteStream: @google-cloud/storage 7.22 drops
      // `useAuthWithCustomEndpoint` on that path and would open it unauthenticated on a custom `endpoint`.
      // Requests to the session URI need no credentials (the URI is the capability, per the GCS docs).
      const [uri] = await temp.createResumableUpload({ metadata: { contentType: 'application/octet-stream' } });
      session = uri;
      return temp.createWriteStream({
        uri,
        offset: 0,
        resumable: true,
        chunkSize: this.chunkSize,
        validation: false, // the cache verifies the digest itself before commit
      });
    });
    return {
      stream,
      complete: async () => {
        if (!stream.started) return this.put(name, Buffer.alloc(0));
        await temp.copy(this.bucket.file(name));
        await this.remove(temp.name);
      },
      abort: async () => {
        await stream.opening(); // an abort right after the first byte must still find the session
        if (session) await cancelSession(session);
        await this.remove(temp.name);
      },
    };
  }

  async put(name: string, body: Buffer): Promise<void> {
    await this.bucket.file(name).save(body, { resumable: false, validation: false, contentType: 'application/octet-stream' });
  }

  /** ifGenerationMatch=0: the write succeeds only if no live generation exists (412 otherwise). */
  async create(name: string, body: Buffer): Promise<boolean> {
    try {
      await this.bucket.file(name).save(body, {
        resumable: false,
        validation: false,
        contentType: 'application/octet-stream',
        preconditionOpts: { ifGenerationMatch: 0 },
      });
      return true;
    } catch (err) {
      if ((err as { code?: number })?.code === 412) return false;
      throw err;
    }
  }

  async remove(name: string): Promise<void> {
    await this.bucket.file(name).delete({ ignoreNotFound: true });
  }

  async touch(name: string): Promise<void> {
    try {
      await this.bucket.file(name).setMetadata({ metadata: { lastaccess: new Date().toISOString() } });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  async *list(prefix: string): AsyncIterable<RawObject> {
    let pageToken: string | undefined;
    // Bounded: 10^6 pages of 1000 names is far beyond any cache.
    for (let page = 0; page < 1_000_000; page++) {
      const [files, next] = await this.bucket.getFiles({ prefix, pageToken, maxResults: 1000, autoPaginate: false });
      for (const f of files) yield toRaw(f.name, f.metadata);
      pageToken = (next as { pageToken?: string } | null)?.pageToken;
      if (!pageToken) return;
    }
  }

  async removeStaleUploads(prefix: string, olderThanMs: number): Promise<number> {
    let removed = 0;
    for await (const o of this.list(`${prefix}_uploads/`)) {
      if (Date.now() - o.modified.getTime() < olderThanMs) continue;
      await this.remove(o.name);
      removed++;
    }
    return removed;
  }
}

/**
 * A writable that opens the SDK upload at its first byte. An empty write never opens one: for an empty stream the
 * SDK's chunked upload sends `Content-Range: bytes 0--1/0`, which is not a valid range (an empty resumable upload
 * is finalized with `bytes *\/0`), so `complete()` writes the empty object in one request instead.
 */
class DeferredStream extends Writable {
  private target?: Promise<Writable>;

  constructor(private readonly open: () => Promise<Writable>) {
    super();
  }

  get started(): boolean {
    return this.target !== undefined;
  }

  /** Settles once an upload begun at the first byte has its session (or failed to get one). */
  async opening(): Promise<void> {
    await this.target?.catch(() => undefined);
  }

  private start(): Promise<Writable> {
    this.target ??= this.open().then((t) => {
      t.on('error', (err) => this.destroy(err));
      return t;
    });
    return this.target;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.start().then((t) => (t.write(chunk) ? callback() : t.once('drain', () => callback())), callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    if (!this.target) return callback();
    this.target.then((t) => finished(t.end())).then(() => callback(), callback);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    void this.target?.then(
      (t) => t.destroy(),
      () => undefined,
    );
    callback(err);
  }
}

export function createGcsDriver(options: GcsOptions): ObjectStoreDriver {
  const root = rootPrefix(options.rootdirectory);
  return new ObjectStoreDriver('gcs', new GcsBucket(options, root), root);
}

interface ObjectResource {
  size?: string | number;
  timeCreated?: string;
  updated?: string;
  metadata?: Record<string, unknown> | null;
}

function toRaw(name: string, m: ObjectResource): RawObject {
  const accessed = typeof m.metadata?.lastaccess === 'string' ? new Date(m.metadata.lastaccess) : undefined;
  return {
    name,
    size: Number(m.size ?? 0),
    modified: new Date(m.timeCreated ?? m.updated ?? 0),
    accessed: accessed && !Number.isNaN(accessed.getTime()) ? accessed : undefined,
  };
}

/**
 * Cancels a resumable session (DELETE on its URI, answered 499), so a write aborted midway leaves no session
 * holding its bytes until GCS expires it a week later. Best effort: a finalized session answers 404 or 410.
 */
async function cancelSession(uri: string): Promise<void> {
  await fetch(uri, { method: 'DELETE', headers: { 'Content-Length': '0' }, signal: AbortSignal.timeout(10_000) })
    .then((r) => r.body?.cancel())
    .catch(() => undefined);
}

function isNotFound(err: unknown): boolean {
  return (err as { code?: number })?.code === 404;
}
