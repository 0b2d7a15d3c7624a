/**
 * The cache over TLS (http.tls) with client certificates required (http.tls.clientcas): a client without a
 * certificate from those CAs gets no connection, one with it reaches the pull API.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';
import { startCache, type TestCache } from '../support/cache-server';
import { makeImage, pushImage, sha256 } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { requireTool } from '../../harness/tools';

describe('TLS with client certificates', () => {
  let upstream: TestRegistry;
  let cache: TestCache;
  let dir: string;
  const image = makeImage({ layerSizes: [1024] });

  beforeAll(async () => {
    const openssl = requireTool('openssl');
    dir = mkdtempSync(join(tmpdir(), 'dtr-cache-tls-'));
    const ssl = (...args: string[]) => execFileSync(openssl, args, { cwd: dir, stdio: 'ignore' });
    ssl(
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
      '-days',
      '1',
      '-subj',
      '/CN=test client CA',
    );
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.pem', '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'); // prettier-ignore
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=puller');
    ssl('x509', '-req', '-in', 'client.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.pem', '-days', '1');
    upstream = await TestRegistry.start();
    await pushImage(upstream.url, 'team/app', 'v1', image);
    cache = await startCache([upstream.url], {}, undefined, {
      tls: { certificate: join(dir, 'server.pem'), key: join(dir, 'server.key'), clientcas: [join(dir, 'ca.pem')] },
    });
  });

  afterAll(async () => {
    await cache?.stop();
    await upstream?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('serves https and refuses a client without a certificate from clientcas', async () => {
    expect(cache.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const anonymous = new Agent({ connect: { ca: readFileSync(join(dir, 'server.pem')) } });
    await expect(request(`${cache.url}/v2/`, { dispatcher: anonymous }).then((r) => r.body.text())).rejects.toThrow();
    await anonymous.close();
  });

  it('a client with a certificate from clientcas pulls a manifest', async () => {
    const client = new Agent({
      connect: {
        ca: readFileSync(join(dir, 'server.pem')),
        cert: readFileSync(join(dir, 'client.pem')),
        key: readFileSync(join(dir, 'client.key')),
      },
    });
    const res = await request(`${cache.url}/v2/team/app/manifests/v1`, { dispatcher: client, headers: { accept: image.mediaType } });
    expect(res.statusCode).toBe(200);
    expect(sha256(Buffer.from(await res.body.arrayBuffer()))).toBe(image.digest);
    await client.close();
  });

  it('chooses AES-128-GCM, as the registry does, though OpenSSL clients ask for AES-256-GCM first', async () => {
    // Asynchronously: the cache serves from this process's event loop.
    const negotiated = async (...version: string[]) => {
      const args = ['s_client', '-connect', new URL(cache.url).host, ...version, '-cert', 'client.pem', '-key', 'client.key'];
      const run = promisify(execFile)(requireTool('openssl'), args, { cwd: dir, timeout: 10_000 });
      run.child.stdin?.end();
      return /Cipher is (\S+)/.exec((await run).stdout)?.[1];
    };
    expect(await negotiated()).toBe('TLS_AES_128_GCM_SHA256');
    expect(await negotiated('-tls1_2')).toBe('ECDHE-RSA-AES128-GCM-SHA256');
  });
});
