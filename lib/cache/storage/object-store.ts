/**
 * The StorageDriver contract on top of any object store. Each backend (s3.ts, azure.ts, gcs.ts, swift.ts)
 * only says how to head/get/put/list/remove one named object and how to run an upload that stays invisible
 * until `complete()`; key mapping under the root prefix, access times, probing and error typing live here once.
 *
 * Access times: only some stores can change an object's metadata in place cheaply (Azure, GCS: a metadata
 * PATCH). S3 cannot — its only way is a CopyObject of the whole object onto itself, which costs a full copy of
 * a possibly multi-GiB layer on every hit — and Swift's container listings do not show metadata. For those, a
 * `touch` writes an empty marker object `<root>_access/<key>`; its Last-Modified (server clock, like the
 * object's own) is the last access. Listings of objects and markers come back in the same byte order, so
 * `list` joins them in one streaming pass without holding the keyspace in memory.
 */
import { randomUUID } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { StorageKind } from '../../config';
import { ByteRange, ObjectInfo, PendingWrite, StorageDriver, StorageError } from './driver';

export interface RawObject {
  /** Full object name in the store, root prefix included. */
  readonly name: string;
  readonly size: number;
  readonly modified: Date;
  /** Last access recorded in the object's own metadata, for stores with a native `touch`. */
  readonly accessed?: Date;
}

/** An upload of one object that becomes visible only on `complete()`. */
export interface BucketUpload {
  readonly stream: Writable;
  complete(): Promise<void>;
  abort(): Promise<void>;
}

export interface Bucket {
  head(name: string): Promise<RawObject | undefined>;
  get(name: string, range?: ByteRange): Promise<Readable | undefined>;
  upload(name: string, sizeHint?: number): Promise<BucketUpload>;
  /** A small object in one request (probes, access markers). */
  put(name: string, body: Buffer): Promise<void>;
  /**
   * A small object in one conditional request that fails if the name exists; false when it did. Absent: the
   * driver falls back to head-then-put, which two contenders can both pass (see ObjectStoreDriver.createIfAbsent).
   */
  create?(name: string, body: Buffer): Promise<boolean>;
  /** Removes an object; a missing one is not an error. */
  remove(name: string): Promise<void>;
  /** Objects whose name starts with `prefix`, in byte order of their names. */
  list(prefix: string): AsyncIterable<RawObject>;
  /** Records an access in the object's metadata. Absent: the driver keeps access markers instead. */
  touch?(name: string): Promise<void>;
  /** Discards uploads under `prefix` begun more than `olderThanMs` ago and never completed. */
  removeStaleUploads(prefix: string, olderThanMs: number): Promise<number>;
  close?(): Promise<void>;
}

/** Reserved names under the root; keys the server builds never start with these. */
const UPLOADS = '_uploads/';
const ACCESS = '_access/';

/** `rootdirectory: /dtr-cache` → `dtr-cache/`; none → `` (object names have no leading slash). */
export function rootPrefix(rootdirectory: string | undefined): string {
  const trimmed = (rootdirectory ?? '').replace(/^\/+|\/+$/g, '');
  return trimmed === '' ? '' : `${trimmed}/`;
}

export class ObjectStoreDriver implements StorageDriver {
  constructor(
    readonly kind: StorageKind,
    private readonly bucket: Bucket,
    private readonly root: string,
  ) {}

  private name(key: string): string {
    if (key === '' || key.startsWith('/') || key.split('/').includes('..') || key.startsWith(UPLOADS) || key.startsWith(ACCESS))
      throw new StorageError('resolve', key, 'not a valid key under the storage root');
    return this.root + key;
  }

  private marker(key: string): string {
    return this.root + ACCESS + key;
  }

  private key(name: string): string {
    return name.slice(this.root.length);
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    const name = this.name(key);
    return guard('stat', key, async () => {
      const object = await this.bucket.head(name);
      if (!object) return undefined;
      const marker = this.bucket.touch ? undefined : await this.bucket.head(this.marker(key));
      return { key, size: object.size, lastAccess: latest(object, marker?.modified) };
    });
  }

  async read(key: string, range?: ByteRange): Promise<Readable | undefined> {
    const name = this.name(key);
    return guard('read', key, () => this.bucket.get(name, range));
  }

  async write(key: string, sizeHint?: number): Promise<PendingWrite> {
    const name = this.name(key);
    const upload = await guard('write', key, () => this.bucket.upload(name, sizeHint));
    let settled = false;
    const discard = async () => {
      if (!upload.stream.destroyed) upload.stream.destroy();
      await upload.abort().catch(() => undefined);
    };
    return {
      stream: upload.stream,
      commit: async () => {
        if (settled) throw new StorageError('commit', key, 'write already settled');
        settled = true;
        try {
          await finished(upload.stream);
          await upload.complete();
        } catch (err) {
          await discard();
          throw err instanceof StorageError ? err : new StorageError('commit', key, err);
        }
      },
      abort: async () => {
        if (settled) return;
        settled = true;
        await discard();
      },
    };
  }

  /**
   * Conditional create where the backend has one; otherwise head, then put: not atomic (two contenders may both
   * succeed), which the sweeper's lease tolerates (concurrent sweeps are safe, only repeated work).
   */
  async createIfAbsent(key: string, body: Buffer): Promise<boolean> {
    const name = this.name(key);
    return guard('createIfAbsent', key, async () => {
      if (this.bucket.create) return this.bucket.create(name, body);
      if (await this.bucket.head(name)) return false;
      await this.bucket.put(name, body);
      return true;
    });
  }

  async delete(key: string): Promise<void> {
    const name = this.name(key);
    await guard('delete', key, async () => {
      await this.bucket.remove(name);
      if (!this.bucket.touch) await this.bucket.remove(this.marker(key));
    });
  }

  async touch(key: string): Promise<void> {
    const name = this.name(key);
    await guard('touch', key, async () => {
      if (this.bucket.touch) await this.bucket.touch(name);
      else await this.bucket.put(this.marker(key), Buffer.alloc(0));
    });
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const reserved = (name: string) => {
      const key = this.key(name);
      return key.startsWith(UPLOADS) || key.startsWith(ACCESS);
    };
    const objects = this.bucket.list(this.root + prefix)[Symbol.asyncIterator]();
    const markers = this.bucket.touch ? undefined : this.bucket.list(this.root + ACCESS + prefix)[Symbol.asyncIterator]();
    const markerOffset = this.root.length + ACCESS.length;
    let marker = markers ? await next(markers, 'list', prefix) : undefined;
    for (let object = await next(objects, 'list', prefix); object; object = await next(objects, 'list', prefix)) {
      if (reserved(object.name)) continue;
      const key = this.key(object.name);
      // Markers of deleted objects (or touches of missing keys) sort before the next live key: skip them.
      while (marker && marker.name.slice(markerOffset) < key) marker = await next(markers!, 'list', prefix);
      const accessed = marker && marker.name.slice(markerOffset) === key ? marker.modified : undefined;
      yield { key, size: object.size, lastAccess: latest(object, accessed) };
    }
  }

  async removeStaleWrites(olderThanMs: number): Promise<number> {
    return guard('removeStaleWrites', this.root, () => this.bucket.removeStaleUploads(this.root, olderThanMs));
  }

  async close(): Promise<void> {
    await this.bucket.close?.();
  }

  async probe(): Promise<void> {
    const name = `${this.root}${UPLOADS}probe-${randomUUID()}`;
    await guard('probe', name, async () => {
      await this.bucket.put(name, Buffer.from('probe'));
      try {
        const stream = await this.bucket.get(name);
        if (!stream) throw new Error('the probe object was not found right after it was written');
        const chunks: Buffer[] = [];
        for await (const chunk of stream) chunks.push(chunk as Buffer);
        if (Buffer.concat(chunks).toString() !== 'probe') throw new Error('read back different bytes');
      } finally {
        await this.bucket.remove(name);
      }
    });
  }
}

function latest(object: RawObject, marker: Date | undefined): Date {
  const times = [object.modified, object.accessed, marker].filter((d): d is Date => d instanceof Date);
  return new Date(Math.max(...times.map((d) => d.getTime())));
}

async function next(it: AsyncIterator<RawObject>, operation: string, key: string): Promise<RawObject | undefined> {
  const r = await guard(operation, key, () => it.next());
  return r.done ? undefined : r.value;
}

async function guard<T>(operation: string, key: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw err instanceof StorageError ? err : new StorageError(operation, key, err);
  }
}
