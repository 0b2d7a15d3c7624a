/** The S3 driver against a real S3 implementation: OpenStack Swift's s3api middleware (Debian's swift packages). */
import { CreateBucketCommand, HeadObjectCommand, ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import type { S3Options } from '../../lib/config';
import { createStorage } from '../../lib/cache/storage';
import { s3ClientConfig } from '../../lib/cache/storage/s3';
import { describeConformance } from '../support/storage-conformance';
import { startSwift } from '../support/storage-servers';

const PART = 5 * 1024 * 1024;

describeConformance('s3 (swift s3api)', async () => {
  const swift = await startSwift();
  const options: S3Options = {
    region: 'us-east-1',
    bucket: 'dtr-cache-s3',
    accesskey: swift.s3.accesskey,
    secretkey: swift.s3.secretkey,
    regionendpoint: swift.url,
    chunksize: PART,
    rootdirectory: '/cache/root',
  };
  const client = new S3Client(s3ClientConfig(options));
  await client.send(new CreateBucketCommand({ Bucket: options.bucket }));
  const driver = await createStorage({ kind: 's3', options });
  return {
    driver,
    partSize: PART,
    leftovers: async () => (await client.send(new ListMultipartUploadsCommand({ Bucket: options.bucket }))).Uploads?.length ?? 0,
    partsOf: async (key) => {
      const etag = (await client.send(new HeadObjectCommand({ Bucket: options.bucket, Key: `cache/root/${key}` }))).ETag ?? '';
      const m = /-(\d+)"?$/.exec(etag);
      return m ? Number(m[1]) : 1;
    },
    teardown: async () => {
      client.destroy();
      await swift.stop();
    },
  };
});
