import { gcsSchema } from '../../../../lib/config/storage-schema';
import { createGcsDriver, DEFAULT_CHUNK_SIZE, gcsChunkSize, gcsStorageOptions, gcsTempName } from '../../../../lib/cache/storage/gcs';
import { rootPrefix } from '../../../../lib/cache/storage/object-store';

describe('GCS object names under rootdirectory', () => {
  test('rootdirectory becomes a prefix without leading slash; none means the bucket root', () => {
    expect(rootPrefix('/dtr-cache')).toBe('dtr-cache/');
    expect(rootPrefix('//dtr-cache/site-a/')).toBe('dtr-cache/site-a/');
    expect(rootPrefix(undefined)).toBe('');
    expect(rootPrefix('/')).toBe('');
  });
  test('temp objects of writes live under <root>_uploads/, outside every key the server builds', () => {
    expect(gcsTempName(rootPrefix('/dtr-cache'), 'abc')).toBe('dtr-cache/_uploads/abc');
    expect(gcsTempName(rootPrefix(undefined), 'abc')).toBe('_uploads/abc');
  });
  test('reserved and escaping keys are refused before any request is made', async () => {
    // No endpoint answers on port 9: the refusal comes from the key check, not from the network.
    const driver = createGcsDriver({ bucket: 'b', rootdirectory: '/cache', endpoint: 'http://127.0.0.1:9' });
    for (const key of ['_uploads/x', '_access/x', '../x', 'a/../../x', '/abs', ''])
      await expect(driver.stat(key)).rejects.toThrow(/not a valid key under the storage root/);
  });
});

describe('GCS chunksize rule', () => {
  test('the config accepts multiples of 256 KiB, in bytes or with a unit', () => {
    expect(gcsSchema.safeParse({ bucket: 'b', chunksize: 262144 }).success).toBe(true);
    expect(gcsSchema.parse({ bucket: 'b', chunksize: 16 * 262144 }).chunksize).toBe(4 << 20);
    expect(gcsSchema.parse({ bucket: 'b', chunksize: '8MiB' }).chunksize).toBe(8 << 20);
  });
  test('the config refuses sizes that are not multiples of 256 KiB, naming the rule', () => {
    const r = gcsSchema.safeParse({ bucket: 'b', chunksize: 5 * 1000 * 1000 });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).toMatch(/multiple of 256 KiB \(262144 bytes\)/);
  });
  test('the driver uses chunksize, else 8 MiB, and refuses a size GCS would reject', () => {
    expect(gcsChunkSize({ chunksize: 512 * 1024 })).toBe(512 * 1024);
    expect(gcsChunkSize({})).toBe(DEFAULT_CHUNK_SIZE);
    expect(DEFAULT_CHUNK_SIZE % (256 * 1024)).toBe(0);
    expect(() => gcsChunkSize({ chunksize: 300_000 })).toThrow(/storage\.gcs\.chunksize: 300000 is not a positive multiple of 256 KiB/);
  });
});

describe('GCS SDK options from registry keys', () => {
  test('keyfile or inline credentials; a custom endpoint keeps authentication only when credentials are given', () => {
    expect(gcsStorageOptions({ bucket: 'b', keyfile: '/run/secrets/gcs-key.json' })).toEqual({ keyFilename: '/run/secrets/gcs-key.json' });
    const credentials = { client_email: 'a@b.iam.gserviceaccount.com', private_key: 'k' };
    expect(gcsStorageOptions({ bucket: 'b', credentials, endpoint: 'http://gcs.internal:4443/' })).toEqual({
      credentials,
      apiEndpoint: 'http://gcs.internal:4443',
      useAuthWithCustomEndpoint: true,
    });
    expect(gcsStorageOptions({ bucket: 'b', endpoint: 'http://gcs.internal:4443' })).toEqual({
      apiEndpoint: 'http://gcs.internal:4443',
      useAuthWithCustomEndpoint: false,
    });
  });
});
