/**
 * createIfAbsent on OSS: OSS documents `x-oss-forbid-overwrite: true` on PutObject (409 FileAlreadyExists when the
 * object exists), not S3's If-None-Match. No OSS emulator runs here, so a fixture that keeps OSS's documented
 * PutObject/HeadObject behaviour (and ignores If-None-Match) stands in for it: the oss driver's conditional create is
 * exclusive there, the s3 driver's (without the header) would overwrite.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createOssDriver } from '../../../../lib/cache/storage/oss';
import type { StorageDriver } from '../../../../lib/cache/storage';

interface OssFixture {
  readonly port: number;
  readonly objects: Map<string, Buffer>;
  readonly forbidHeaders: (string | undefined)[];
  close(): Promise<void>;
}

async function body(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** PutObject and HeadObject as OSS documents them, path-style; If-None-Match is ignored. */
async function startOssFixture(): Promise<OssFixture> {
  const objects = new Map<string, Buffer>();
  const forbidHeaders: (string | undefined)[] = [];
  const server: Server = createServer((req, res) => {
    const key = decodeURIComponent((req.url ?? '').split('?')[0]);
    void (async () => {
      if (req.method === 'PUT') {
        const data = await body(req);
        const forbid = req.headers['x-oss-forbid-overwrite'] as string | undefined;
        forbidHeaders.push(forbid);
        if (forbid === 'true' && objects.has(key)) {
          res.writeHead(409, { 'content-type': 'application/xml' });
          res.end(
            '<?xml version="1.0" encoding="UTF-8"?><Error><Code>FileAlreadyExists</Code><Message>The object you specified already exists and can not be overwritten.</Message></Error>',
          );
          return;
        }
        objects.set(key, data);
        res.writeHead(200, { etag: '"fixture"' }).end();
      } else if (req.method === 'HEAD') {
        const data = objects.get(key);
        res.writeHead(data ? 200 : 404, data ? { 'content-length': data.length, 'last-modified': new Date().toUTCString() } : {}).end();
      } else {
        res.writeHead(501).end();
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    objects,
    forbidHeaders,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe('oss createIfAbsent against OSS PutObject semantics (fixture)', () => {
  let fixture: OssFixture;
  let driver: StorageDriver;

  beforeAll(async () => {
    fixture = await startOssFixture();
    driver = createOssDriver({
      accesskeyid: 'fixture',
      accesskeysecret: 'fixture-secret',
      region: 'oss-cn-hangzhou',
      bucket: 'site',
      endpoint: `127.0.0.1:${fixture.port}`,
      secure: false,
      rootdirectory: '/cache',
    });
  });
  afterAll(async () => {
    await driver.close?.();
    await fixture.close();
  });

  it('sends x-oss-forbid-overwrite: true; the first create wins, a later one is refused and changes nothing', async () => {
    expect(await driver.createIfAbsent('_fill-leases/sha256-abc.000000000001', Buffer.from('first'))).toBe(true);
    expect(await driver.createIfAbsent('_fill-leases/sha256-abc.000000000001', Buffer.from('second'))).toBe(false);
    expect(fixture.forbidHeaders).toEqual(['true', 'true']);
    expect(fixture.objects.get('/site/cache/_fill-leases/sha256-abc.000000000001')?.toString()).toBe('first');
  });

  it('of 6 concurrent creates of one key, exactly one wins', async () => {
    const won = await Promise.all(
      Array.from({ length: 6 }, (_, i) => driver.createIfAbsent('_fill-leases/sha256-def.000000000001', Buffer.from(`c${i}`))),
    );
    expect(won.filter(Boolean)).toHaveLength(1);
  });
});
