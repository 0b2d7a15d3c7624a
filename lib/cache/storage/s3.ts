/**
 * S3 (and S3-compatible servers) with the AWS SDK v3, configured with the registry's s3 driver keys.
 *
 * Atomicity: an S3 object appears only when its upload completes, so a write streams parts of `chunksize`
 * bytes into a multipart upload as they arrive and calls CompleteMultipartUpload only in `commit()`;
 * `abort()` aborts the upload. A write shorter than one part never starts a multipart upload: its bytes (at
 * most `chunksize`, the bounded spool) go up as a single PutObject at commit. Not @aws-sdk/lib-storage's
 * Upload: it completes the upload as soon as the stream ends, before the content is verified.
 * Access times: access marker objects (see object-store.ts), as S3 has no cheap in-place metadata change.
 */
import { Agent } from 'node:https';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ClientConfig,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import type { S3Options } from '../../config';
import type { ByteRange } from './driver';
import { Bucket, BucketUpload, ObjectStoreDriver, RawObject, rootPrefix } from './object-store';
import { partWriter } from './part-writer';

/** distribution's default s3 chunksize. */
const DEFAULT_PART_SIZE = 10 * 1024 * 1024;
const PARTS_IN_FLIGHT = 2;
const MAX_PARTS = 10_000;

/** The SDK client options the registry keys select. Pure, so the mapping is testable without a server. */
export function s3ClientConfig(options: S3Options): S3ClientConfig {
  const secure = options.secure ?? true;
  let endpoint = options.regionendpoint;
  if (endpoint && !/^https?:\/\//.test(endpoint)) endpoint = `${secure ? 'https' : 'http'}://${endpoint}`;
  return {
    region: options.region,
    ...(endpoint ? { endpoint } : {}),
    // v2.7 addresses a custom regionendpoint path-style; v3's forcepathstyle makes it explicit.
    forcePathStyle: options.forcepathstyle ?? endpoint !== undefined,
    tls: secure,
    // Only the checksums S3 requires: S3-compatible servers (OSS, older Ceph/MinIO) reject the SDK's default CRC
    // trailers, and the cache verifies each blob's sha256 itself.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    useDualstackEndpoint: options.usedualstack ?? false,
    useAccelerateEndpoint: options.accelerate ?? false,
    ...(options.useragent ? { customUserAgent: options.useragent } : {}),
    ...(options.accesskey && options.secretkey
      ? { credentials: { accessKeyId: options.accesskey, secretAccessKey: options.secretkey, sessionToken: options.sessiontoken } }
      : {}), // otherwise the SDK's default chain: env, shared config, web identity, ECS/EC2 metadata
    ...(options.skipverify ? { requestHandler: { httpsAgent: new Agent({ rejectUnauthorized: false }) } } : {}),
  };
}

/** Headers every object write carries: encryption, storage class, ACL. */
function writeParams(options: S3Options) {
  return {
    ...(options.encrypt
      ? options.keyid
        ? { ServerSideEncryption: 'aws:kms' as const, SSEKMSKeyId: options.keyid }
        : { ServerSideEncryption: 'AES256' as const }
      : {}),
    ...(options.storageclass && options.storageclass !== 'NONE' ? { StorageClass: options.storageclass } : {}),
    ...(options.objectacl ? { ACL: options.objectacl as never } : {}),
  };
}

export class S3Bucket implements Bucket {
  /** False once the store answered a conditional PUT with 501 NotImplemented. */
  private conditionalPuts = true;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly partSize: number;
  private readonly params: ReturnType<typeof writeParams>;

  /**
   * `createHeaders`: headers of a conditional create beside If-None-Match, e.g. OSS's `x-oss-forbid-overwrite: true`
   * (OSS documents that header, which it answers 409 FileAlreadyExists, not If-None-Match on PutObject).
   */
  constructor(
    options: S3Options,
    private readonly createHeaders: Readonly<Record<string, string>> = {},
  ) {
    this.client = new S3Client(s3ClientConfig(options));
    this.bucket = options.bucket;
    this.partSize = options.chunksize ?? DEFAULT_PART_SIZE;
    this.params = writeParams(options);
  }

  async head(name: string): Promise<RawObject | undefined> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: name }));
      return { name, size: r.ContentLength ?? 0, modified: r.LastModified ?? new Date(0) };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async get(name: string, range?: ByteRange): Promise<Readable | undefined> {
    try {
      const r = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: name, Range: range ? `bytes=${range.start}-${range.end}` : undefined }),
      );
      return r.Body as Readable;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async upload(name: string, sizeHint?: number): Promise<BucketUpload> {
    const { client, bucket, params } = this;
    // S3 allows 10,000 parts: a blob known to be larger than that many chunks gets larger parts.
    const partSize = Math.max(this.partSize, Math.ceil((sizeHint ?? 0) / MAX_PARTS));
    let uploadId: Promise<string> | undefined;
    const parts: CompletedPart[] = [];
    let small: Buffer | undefined;
    const start = () =>
      (uploadId ??= client
        .send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: name, ...params }))
        .then((r) => r.UploadId as string));
    const sendPart = async (body: Buffer, index: number) => {
      const id = await start();
      const r = await client.send(new UploadPartCommand({ Bucket: bucket, Key: name, UploadId: id, PartNumber: index + 1, Body: body }));
      parts.push({ PartNumber: index + 1, ETag: r.ETag });
    };
    const stream = partWriter({
      partSize,
      concurrency: PARTS_IN_FLIGHT,
      sendPart,
      finish: async (tail, sent) => {
        if (sent === 0) small = tail;
        else if (tail.length > 0) await sendPart(tail, sent);
      },
    });
    return {
      stream,
      complete: async () => {
        if (!uploadId) {
          await client.send(new PutObjectCommand({ Bucket: bucket, Key: name, Body: small ?? Buffer.alloc(0), ...params }));
          return;
        }
        parts.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
        await client.send(
          new CompleteMultipartUploadCommand({ Bucket: bucket, Key: name, UploadId: await uploadId, MultipartUpload: { Parts: parts } }),
        );
      },
      abort: async () => {
        small = undefined;
        const id = await uploadId?.catch(() => undefined);
        if (id) await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: name, UploadId: id }));
      },
    };
  }

  async put(name: string, body: Buffer): Promise<void> {
    await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: name, Body: body, ...this.params }));
  }

  /**
   * If-None-Match: * (S3 conditional writes, AWS since 2024): 412 when the object exists, 409 when a concurrent one
   * won. A store that answers 501 NotImplemented (Swift's s3api, older MinIO/Ceph) gets head-then-put from then on,
   * which two contenders can both pass (the sweeper's lease tolerates it: its holder reads the lease back).
   */
  async create(name: string, body: Buffer): Promise<boolean> {
    if (this.conditionalPuts) {
      try {
        const put = new PutObjectCommand({ Bucket: this.bucket, Key: name, Body: body, IfNoneMatch: '*', ...this.params });
        const headers = this.createHeaders;
        put.middlewareStack.add(
          (next) => (args) => {
            Object.assign((args.request as { headers: Record<string, string> }).headers, headers);
            return next(args);
          },
          { step: 'build', name: 'createHeaders' },
        );
        await this.client.send(put);
        return true;
      } catch (err) {
        const status = (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
        if (status === 412 || status === 409) return false;
        if (status !== 501) throw err;
        this.conditionalPuts = false;
      }
    }
    if (await this.head(name)) return false;
    await this.put(name, body);
    return true;
  }

  async remove(name: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: name }));
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  async *list(prefix: string): AsyncIterable<RawObject> {
    let token: string | undefined;
    for (let page = 0; page < 1_000_000; page++) {
      const r = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }));
      for (const o of r.Contents ?? []) yield { name: o.Key as string, size: o.Size ?? 0, modified: o.LastModified ?? new Date(0) };
      if (!r.IsTruncated || !r.NextContinuationToken) return;
      token = r.NextContinuationToken;
    }
  }

  async removeStaleUploads(prefix: string, olderThanMs: number): Promise<number> {
    let removed = 0;
    let keyMarker: string | undefined;
    let idMarker: string | undefined;
    for (let page = 0; page < 100_000; page++) {
      const r = await this.client.send(
        new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: idMarker }),
      );
      for (const u of r.Uploads ?? []) {
        if (u.Initiated && Date.now() - u.Initiated.getTime() < olderThanMs) continue;
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId }));
        removed++;
      }
      if (!r.IsTruncated) break;
      keyMarker = r.NextKeyMarker;
      idMarker = r.NextUploadIdMarker;
    }
    return removed;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

export function createS3Driver(options: S3Options, kind: 's3' | 'oss' = 's3'): ObjectStoreDriver {
  const createHeaders: Record<string, string> = kind === 'oss' ? { 'x-oss-forbid-overwrite': 'true' } : {};
  return new ObjectStoreDriver(kind, new S3Bucket(options, createHeaders), rootPrefix(options.rootdirectory));
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NotFound' || e?.name === 'NoSuchKey' || e?.$metadata?.httpStatusCode === 404;
}
