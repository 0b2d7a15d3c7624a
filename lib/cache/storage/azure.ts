/**
 * Azure Blob Storage with @azure/storage-blob, configured with the registry's azure driver keys.
 *
 * Atomicity: a block blob changes only when its block list is committed. A write stages blocks of 4 MiB as
 * bytes arrive (block ids carry the writer's uuid, so two writers' blocks never collide) and calls
 * commitBlockList only in `commit()`. If another writer commits the same name first, Azure discards this
 * writer's uncommitted blocks and its commit fails with InvalidBlockList: the object is still the other
 * writer's whole payload. Uncommitted blocks are never visible and Azure deletes them after 7 days; they can't
 * be removed earlier without committing something, so `removeStaleWrites` has nothing to do here.
 * Access times: Set Blob Metadata is cheap and in place, so `touch` stores `lastaccess` in the blob metadata.
 */
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { BlobServiceClient, ContainerClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import type { AzureOptions } from '../../config';
import type { ByteRange } from './driver';
import { Bucket, BucketUpload, ObjectStoreDriver, RawObject, rootPrefix } from './object-store';
import { partWriter } from './part-writer';

const BLOCK_SIZE = 4 * 1024 * 1024;
const BLOCKS_IN_FLIGHT = 2;

/** `serviceurl` when set (azurite, sovereign clouds), else https://<account>.blob.<realm>. */
export function azureServiceUrl(options: AzureOptions): string {
  return options.serviceurl ?? `https://${options.accountname}.blob.${options.realm}`;
}

export class AzureBucket implements Bucket {
  private readonly container: ContainerClient;

  constructor(options: AzureOptions) {
    const credential = new StorageSharedKeyCredential(options.accountname, options.accountkey);
    this.container = new BlobServiceClient(azureServiceUrl(options), credential).getContainerClient(options.container);
  }

  async head(name: string): Promise<RawObject | undefined> {
    try {
      const p = await this.container.getBlockBlobClient(name).getProperties();
      return { name, size: p.contentLength ?? 0, modified: p.lastModified ?? new Date(0), accessed: parseAccess(p.metadata?.lastaccess) };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async get(name: string, range?: ByteRange): Promise<Readable | undefined> {
    try {
      const r = await this.container.getBlockBlobClient(name).download(range?.start ?? 0, range ? range.end - range.start + 1 : undefined);
      return r.readableStreamBody as Readable;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async upload(name: string): Promise<BucketUpload> {
    const blob = this.container.getBlockBlobClient(name);
    const writer = randomUUID();
    const ids: string[] = [];
    const sendPart = async (body: Buffer, index: number) => {
      const id = Buffer.from(`${writer}-${String(index).padStart(6, '0')}`).toString('base64');
      await blob.stageBlock(id, body, body.length);
      ids[index] = id;
    };
    const stream = partWriter({
      partSize: BLOCK_SIZE,
      concurrency: BLOCKS_IN_FLIGHT,
      sendPart,
      finish: async (tail, sent) => {
        if (tail.length > 0) await sendPart(tail, sent);
      },
    });
    return {
      stream,
      complete: async () => {
        await blob.commitBlockList(ids);
      },
      abort: async () => undefined, // uncommitted blocks are invisible and expire on their own
    };
  }

  async put(name: string, body: Buffer): Promise<void> {
    await this.container.getBlockBlobClient(name).upload(body, body.length);
  }

  /** If-None-Match: *: 409 BlobAlreadyExists when the blob exists. */
  async create(name: string, body: Buffer): Promise<boolean> {
    try {
      await this.container.getBlockBlobClient(name).upload(body, body.length, { conditions: { ifNoneMatch: '*' } });
      return true;
    } catch (err) {
      const status = (err as { statusCode?: number })?.statusCode;
      if (status === 409 || status === 412) return false;
      throw err;
    }
  }

  async remove(name: string): Promise<void> {
    await this.container.getBlockBlobClient(name).deleteIfExists();
  }

  async touch(name: string): Promise<void> {
    try {
      await this.container.getBlockBlobClient(name).setMetadata({ lastaccess: new Date().toISOString() });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  async *list(prefix: string): AsyncIterable<RawObject> {
    for await (const b of this.container.listBlobsFlat({ prefix, includeMetadata: true })) {
      yield {
        name: b.name,
        size: b.properties.contentLength ?? 0,
        modified: b.properties.lastModified,
        accessed: parseAccess(b.metadata?.lastaccess),
      };
    }
  }

  async removeStaleUploads(): Promise<number> {
    return 0;
  }
}

export function createAzureDriver(options: AzureOptions): ObjectStoreDriver {
  return new ObjectStoreDriver('azure', new AzureBucket(options), rootPrefix(options.rootdirectory));
}

function parseAccess(value: string | undefined): Date | undefined {
  const d = value ? new Date(value) : undefined;
  return d && !Number.isNaN(d.getTime()) ? d : undefined;
}

function isNotFound(err: unknown): boolean {
  return (err as { statusCode?: number })?.statusCode === 404;
}
