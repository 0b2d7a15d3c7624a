/**
 * The zero-copy front prototype (bench/nginx-front.ts, issue 20), with real clients: nginx before our cache, the
 * upstream a real distribution 2.8 with htpasswd auth. A warm blob GET is sent by nginx from the store (it adds a
 * Last-Modified header, which our cache never sends) only after our cache's HEAD allowed the client; every refusal
 * reaches the client exactly as our cache answers it directly (status, OCI error body, WWW-Authenticate); a miss,
 * a Range, a HEAD and skopeo copy work through it.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startNginxFront } from '../../bench/nginx-front';
import { killAllSync } from '../../bench/processes';
import type { System } from '../../bench/systems';
import { makeImage, pushImage, sha256 } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { requireTool } from '../../harness/tools';
import { startCache, type TestCache } from '../support/cache-server';

const run = promisify(execFile);
const basic = (user: string, password = `${user}-pw`) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}

/** One request with curl; its status line, headers (lower-case names) and body. */
async function curl(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Answer> {
  const args = ['-sk', '-i', '-X', method, ...(method === 'HEAD' ? ['-I'] : []), '--max-time', '30'];
  const out = await run(requireTool('curl'), [...args, ...Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]), url], {
    encoding: 'buffer',
    maxBuffer: 16 * 2 ** 20,
  });
  const split = out.stdout.indexOf('\r\n\r\n');
  const [statusLine, ...lines] = out.stdout.subarray(0, split).toString().split('\r\n');
  return {
    status: Number(statusLine.split(' ')[1]),
    headers: Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()])),
    body: out.stdout.subarray(split + 4),
  };
}

describe('the nginx zero-copy front before our cache', () => {
  let dir: string;
  let upstream: TestRegistry;
  let cache: TestCache;
  let plain: System;
  let tls: System;
  const image = makeImage({ layerSizes: [300_000, 2048] });
  const layer = [...image.blobs].sort((a, b) => b.data.length - a.data.length)[0];
  const alice = { authorization: basic('alice') };

  beforeAll(async () => {
    requireTool('nginx');
    dir = mkdtempSync(join(tmpdir(), 'dtr-cache-front-'));
    const htpasswd = join(dir, 'htpasswd');
    execFileSync(requireTool('htpasswd'), ['-cbB', htpasswd, 'alice', 'alice-pw']);
    upstream = await TestRegistry.start({ extra: { auth: { htpasswd: { realm: 'dtr', path: htpasswd } } } });
    await pushImage(upstream.url, 'team/app', 'v1', image, alice);
    await pushImage(upstream.url, 'team/other', 'v1', makeImage({ layerSizes: [1000] }), alice);
    cache = await startCache([upstream.url], { scrubrate: '0' });
    const certificate = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    execFileSync(requireTool('openssl'), [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', certificate, '-days', '1', '-subj', '/CN=127.0.0.1',
    ], { stdio: 'ignore' }); // prettier-ignore
    plain = await startNginxFront(cache.host, cache.root, { workerProcesses: 1 });
    tls = await startNginxFront(cache.host, cache.root, { workerProcesses: 1, tls: { certificate, key } });
  });

  afterAll(async () => {
    await plain?.stop();
    await tls?.stop();
    await cache?.stop();
    await upstream?.stop();
    killAllSync();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const path = (repo: string, digest: string) => `/v2/${repo}/blobs/${digest}`;

  /** The front answers as our cache does: same status, OCI error body and WWW-Authenticate; nginx sent no file. */
  async function expectAnsweredByOurs(front: System, repo: string, headers: Record<string, string>, status: number, method = 'GET') {
    const direct = await curl(cache.url + path(repo, layer.digest), headers, method);
    const through = await curl(front.url + path(repo, layer.digest), headers, method);
    expect(direct.status).toBe(status);
    expect(through.status).toBe(status);
    expect(through.body.toString()).toBe(direct.body.toString());
    expect(through.headers['www-authenticate']).toBe(direct.headers['www-authenticate']);
    expect(through.headers['content-type']).toBe(direct.headers['content-type']);
    expect(through.headers['last-modified']).toBeUndefined();
    return through;
  }

  it('a miss is filled by our cache; the warm blob is then sent by nginx, with our headers, only to allowed clients', async () => {
    const miss = await curl(plain.url + path('team/app', layer.digest), alice);
    expect(miss.status).toBe(200);
    expect(sha256(miss.body)).toBe(layer.digest);
    expect(miss.headers['last-modified']).toBeUndefined(); // our cache answered (the file was not in the store)
    // The fill commits (fsync, rename) after the client's last byte: until then nginx finds no file.
    await cache.server.idle();

    for (const front of [plain, tls]) {
      const warm = await curl(front.url + path('team/app', layer.digest), alice);
      expect(warm.status).toBe(200);
      expect(sha256(warm.body)).toBe(layer.digest);
      expect(warm.headers['last-modified']).toBeDefined(); // nginx sent the file
      expect(warm.headers['docker-content-digest']).toBe(layer.digest);
      expect(warm.headers['content-type']).toBe('application/octet-stream');
      expect(warm.headers['content-length']).toBe(String(layer.data.length));
      expect(warm.headers.etag).toBe(`"${layer.digest}"`);

      // No credentials, a wrong password: our cache's 401 with its challenge.
      const anonymous = await expectAnsweredByOurs(front, 'team/app', {}, 401);
      expect(anonymous.headers['www-authenticate']).toContain('Basic realm="dtr"');
      expect(JSON.parse(anonymous.body.toString()).errors[0].code).toBe('UNAUTHORIZED');
      await expectAnsweredByOurs(front, 'team/app', { authorization: basic('alice', 'wrong') }, 401);
      // A repository the upstream does not link the blob to: its 404, though the file is in the store.
      const elsewhere = await expectAnsweredByOurs(front, 'team/other', alice, 404);
      expect(JSON.parse(elsewhere.body.toString()).errors[0].code).toBe('BLOB_UNKNOWN');
    }
  });

  it('a Range of a warm blob is sent by nginx; an unsatisfiable one and a HEAD are answered by our cache', async () => {
    await curl(plain.url + path('team/app', layer.digest), alice); // warm (the test above may not have run)
    const range = await curl(plain.url + path('team/app', layer.digest), { ...alice, range: 'bytes=100-199' });
    expect(range.status).toBe(206);
    expect(range.headers['content-range']).toBe(`bytes 100-199/${layer.data.length}`);
    expect(range.headers['last-modified']).toBeDefined();
    expect(range.body.equals(layer.data.subarray(100, 200))).toBe(true);

    await expectAnsweredByOurs(plain, 'team/app', { ...alice, range: 'bytes=999999999-' }, 416);
    const head = await curl(plain.url + path('team/app', layer.digest), alice, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.headers['docker-content-digest']).toBe(layer.digest);
    expect(head.headers['last-modified']).toBeUndefined();
  });

  it('skopeo copies the image through the front, cold and warm, with credentials; without them it is refused', async () => {
    const skopeo = requireTool('skopeo');
    const host = new URL(tls.url).host;
    const copy = async (creds: string[]) => {
      const target = mkdtempSync(join(dir, 'oci-'));
      // dir: keeps the manifest as it came (skopeo checks every blob's digest on the way).
      await run(skopeo, ['copy', '--src-tls-verify=false', ...creds, `docker://${host}/team/app:v1`, `dir:${target}`], { timeout: 60_000 });
      return sha256(readFileSync(join(target, 'manifest.json')));
    };
    expect(await copy(['--src-creds', 'alice:alice-pw'])).toBe(image.digest);
    expect(await copy(['--src-creds', 'alice:alice-pw'])).toBe(image.digest);
    await expect(copy([])).rejects.toThrow(/401|unauthorized|authentication required/i);
  });
});
