import { ossToS3Options } from '../../../../lib/cache/storage/oss';
import { s3ClientConfig } from '../../../../lib/cache/storage/s3';

const base = { accesskeyid: 'id', accesskeysecret: 'secret', region: 'oss-cn-beijing', bucket: 'b' };

describe('OSS endpoint derivation (registry oss keys → S3 API endpoint)', () => {
  test('public endpoint from region, https by default, virtual-hosted', () => {
    const o = ossToS3Options(base);
    expect(o.regionendpoint).toBe('https://oss-cn-beijing.aliyuncs.com');
    expect(s3ClientConfig(o)).toMatchObject({ endpoint: 'https://oss-cn-beijing.aliyuncs.com', forcePathStyle: false, tls: true });
  });
  test('internal: true selects the VPC-internal endpoint; secure: false plain http', () => {
    expect(ossToS3Options({ ...base, internal: true, secure: false }).regionendpoint).toBe('http://oss-cn-beijing-internal.aliyuncs.com');
  });
  test('an explicit endpoint wins; an IP-literal endpoint is addressed path-style', () => {
    expect(ossToS3Options({ ...base, endpoint: 'oss-accelerate.aliyuncs.com' })).toMatchObject({
      regionendpoint: 'https://oss-accelerate.aliyuncs.com',
      forcepathstyle: false,
    });
    expect(ossToS3Options({ ...base, endpoint: '127.0.0.1:9000', secure: false })).toMatchObject({
      regionendpoint: 'http://127.0.0.1:9000',
      forcepathstyle: true,
    });
  });
  test('credentials, encryption, chunk size and root carry over', () => {
    const o = ossToS3Options({ ...base, encrypt: true, chunksize: 8 << 20, rootdirectory: '/x' });
    expect(o).toMatchObject({ accesskey: 'id', secretkey: 'secret', encrypt: true, chunksize: 8 << 20, rootdirectory: '/x' });
  });
});

describe('S3 client options from registry keys', () => {
  test('regionendpoint implies path-style as in distribution v2.7; forcepathstyle overrides', () => {
    const r = { region: 'us-east-1', bucket: 'b' };
    expect(s3ClientConfig({ ...r, regionendpoint: 'minio.example:9000', secure: false })).toMatchObject({
      endpoint: 'http://minio.example:9000',
      forcePathStyle: true,
    });
    expect(s3ClientConfig({ ...r, regionendpoint: 'https://s3.example', forcepathstyle: false }).forcePathStyle).toBe(false);
    expect(s3ClientConfig(r)).toMatchObject({ forcePathStyle: false, tls: true });
    expect(s3ClientConfig(r).credentials).toBeUndefined(); // default credential chain
    expect(s3ClientConfig({ ...r, accesskey: 'a', secretkey: 's' }).credentials).toMatchObject({ accessKeyId: 'a', secretAccessKey: 's' });
  });
});
