/**
 * The S3 driver, and the OSS driver through its S3 path, against a real S3 implementation: OpenStack Swift's
 * s3api middleware (Debian's swift packages), one all-in-one shared by both suites, a bucket each.
 * (s3rver answers NotImplemented to ListMultipartUploads and AbortMultipartUpload, so it cannot show cleanup.)
 * s3api also answers conditional PUTs (If-None-Match: *) NotImplemented: createIfAbsent's fallback is what runs here.
 */
import { CreateBucketCommand, HeadObjectCommand, ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import type { OssOptions, S3Options } from '../../lib/config';
import { createStorage } from '../../lib/cache/storage';
import { ossToS3Options } from '../../lib/cache/storage/oss';
import { s3ClientConfig } from '../../lib/cache/storage/s3';
import { ConformanceBackend, describeConformance } from '../support/storage-conformance';
import { startSwift, SwiftServer } from '../support/storage-servers';

const PART = 5 * 1024 * 1024;
const REGION = 'oss-cn-beijing';
let server: Promise<SwiftServer> | undefined;

/** One Swift for both suites (jest runs them one after the other), stopped after the last. */
function sharedSwift(): Promise<SwiftServer> {
  // s3api checks the SigV4 region against its one location: both suites sign for the OSS region.
  server ??= startSwift({ s3Region: REGION });
  return server;
}

afterAll(async () => {
  await (await server?.catch(() => undefined))?.stop();
}, 60_000);

async function backend(options: S3Options, root: string, driverFor: () => ReturnType<typeof createStorage>): Promise<ConformanceBackend> {
  const client = new S3Client(s3ClientConfig(options));
  await client.send(new CreateBucketCommand({ Bucket: options.bucket }));
  const driver = await driverFor();
  return {
    driver,
    partSize: PART,
    createRace:
      "Swift's s3api answers conditional PUTs 501 NotImplemented, so the driver falls back to head-then-put here (AWS S3 honours If-None-Match: * since 2024; no AWS-conformant emulator runs here)",
    leftovers: async () => (await client.send(new ListMultipartUploadsCommand({ Bucket: options.bucket }))).Uploads?.length ?? 0,
    // A multipart object's ETag is "<md5 of part md5s>-<part count>".
    partsOf: async (key) => {
      const etag = (await client.send(new HeadObjectCommand({ Bucket: options.bucket, Key: `${root}${key}` }))).ETag ?? '';
      const m = /-(\d+)"?$/.exec(etag);
      return m ? Number(m[1]) : 1;
    },
    teardown: async () => {
      client.destroy();
    },
  };
}

describeConformance('s3 (swift s3api)', async () => {
  const swift = await sharedSwift();
  const options: S3Options = {
    region: REGION,
    bucket: 'dtr-cache-s3',
    accesskey: swift.s3.accesskey,
    secretkey: swift.s3.secretkey,
    regionendpoint: swift.url,
    chunksize: PART,
    rootdirectory: '/cache/root',
  };
  return backend(options, 'cache/root/', () => createStorage({ kind: 's3', options }));
});

describeConformance('oss (S3 path, swift s3api)', async () => {
  const swift = await sharedSwift();
  const oss: OssOptions = {
    accesskeyid: swift.s3.accesskey,
    accesskeysecret: swift.s3.secretkey,
    region: REGION,
    bucket: 'dtr-cache-oss',
    endpoint: new URL(swift.url).host,
    secure: false,
    chunksize: PART,
    rootdirectory: '/oss',
  };
  return backend(ossToS3Options(oss), 'oss/', () => createStorage({ kind: 'oss', options: oss }));
});
