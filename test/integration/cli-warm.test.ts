/**
 * `dtr-cache warm` run as a child process against a real distribution 2.8 registry (the protocol a cache
 * speaks too): what it pulls (the registry's access log), its plain-line output off a terminal, its bars on a
 * pseudo-terminal, a failing image among good ones, --platform, --file, and the token flow with realm checks.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatBytes } from '../../lib/cli/format';
import { testCertificates } from '../../lib/constructs/test-certificates';
import { runCli, runCliOnTty } from '../fixtures/cli';
import { makeImage, makeIndex, pushImage, TestImage } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { startTokenRegistry, TokenRegistry } from '../support/token-registry';
import { requireTool, waitFor } from '../../harness/tools';

const exec = promisify(execFile);

/** Digests whose blob the registry served with 200 since the last clearLog. */
function servedBlobs(registry: TestRegistry): string[] {
  return registry
    .blobGets()
    .filter((e) => e.status === 200)
    .map((e) => e.path.replace(/.*\/blobs\//, ''))
    .sort();
}

const digests = (...images: TestImage[]) => [...new Set(images.flatMap((i) => i.blobs.map((b) => b.digest)))].sort();

describe('dtr-cache warm against distribution 2.8', () => {
  let registry: TestRegistry;
  let dir: string;
  const app = makeImage();
  const multi = makeIndex(['amd64', 'arm64']);
  const corrupt = makeImage({ layerSizes: [4096] });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cli-warm-'));
    registry = await TestRegistry.start();
    await pushImage(registry.url, 'team/app', 'v1', app);
    await pushImage(registry.url, 'team/multi', 'v1', multi);
    await pushImage(registry.url, 'team/corrupt', 'v1', corrupt);
    // Flip the stored bytes of corrupt's layer (same length): the registry serves them as they are on disk.
    const layer = corrupt.blobs[1].digest.slice('sha256:'.length);
    const file = join(registry.dir, 'data/docker/registry/v2/blobs/sha256', layer.slice(0, 2), layer, 'data');
    writeFileSync(file, randomBytes(statSync(file).size));
  });
  afterAll(async () => {
    await registry?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => registry.clearLog());

  it('warms every blob of good images, reports a failing image, exits 1, with plain lines off a terminal', async () => {
    const res = await runCli(['warm', '--cache', registry.url, 'team/app:v1', 'team/multi:v1', 'team/missing:v1', 'team/corrupt:v1']);
    expect(res.code).toBe(1);
    const size = (i: TestImage) => i.blobs.reduce((s, b) => s + b.data.length, 0);

    // Every config and layer of the good images went through, all platforms of the index included.
    expect(servedBlobs(registry)).toEqual(expect.arrayContaining(digests(app, multi)));
    expect(registry.requests({ pathIncludes: '/v2/team/missing/manifests/v1' })).toEqual([
      expect.objectContaining({ method: 'GET', status: 404 }),
    ]);

    // Progress: one line per start and one per end; images run concurrently, so compare sorted.
    const lines = res.stderr.trimEnd().split('\n').sort();
    expect(lines).toEqual([
      expect.stringMatching(
        new RegExp(
          `^failed  team/corrupt:v1: blob ${corrupt.blobs[1].digest}: received ${corrupt.blobs[1].data.length} bytes with digest sha256:[a-f0-9]{64}$`,
        ),
      ),
      expect.stringMatching(
        /^failed  team\/missing:v1: GET http:\/\/127\.0\.0\.1:\d+\/v2\/team\/missing\/manifests\/v1: 404 MANIFEST_UNKNOWN/,
      ),
      expect.stringMatching(new RegExp(`^warmed  team/app:v1: 3 blobs, ${formatBytes(size(app))} in \\S+ \\(\\S+ \\S+/s\\)$`)),
      expect.stringMatching(new RegExp(`^warmed  team/multi:v1: 4 blobs, ${formatBytes(size(multi))} in `)),
      `warming team/app:v1: single; 3 blobs, ${formatBytes(size(app))}`,
      `warming team/corrupt:v1: single; 2 blobs, ${formatBytes(size(corrupt))}`,
      `warming team/multi:v1: linux/amd64, linux/arm64; 4 blobs, ${formatBytes(size(multi))}`,
    ]);
    expect(lines).toHaveLength(7);
    expect(res.stderr).not.toContain('\x1b['); // no terminal control codes in logs

    // Summary table on stdout: one row per image in the order given, and the totals.
    const table = res.stdout.trimEnd().split('\n');
    expect(table[0]).toMatch(/^IMAGE\s+PLATFORMS\s+BLOBS\s+BYTES\s+TIME\s+RESULT$/);
    expect(table[1]).toMatch(/^team\/app:v1\s+single\s+3\s+[\d.]+ KiB\s+\S+\s+ok$/);
    expect(table[2]).toMatch(/^team\/multi:v1\s+linux\/amd64,linux\/arm64\s+4\s+[\d.]+ KiB\s+\S+\s+ok$/);
    expect(table[3]).toMatch(/^team\/missing:v1\s+-\s+0\s+0 B\s+\S+\s+FAILED: GET .* 404 MANIFEST_UNKNOWN/);
    expect(table[4]).toMatch(/^team\/corrupt:v1\s+single\s+2\s+[\d.]+ KiB\s+\S+\s+FAILED: blob sha256:\w+: received \d+ bytes with digest/);
    expect(table[5]).toBe(`2 of 4 images warmed (${formatBytes(size(app) + size(multi))}), 2 failed`);
    expect(table).toHaveLength(6);
  });

  it('pulls only the platform asked for with --platform', async () => {
    const res = await runCli(['warm', '--cache', registry.url, '--platform', 'linux/arm64', 'team/multi:v1']);
    expect(res.stderr).toMatch(/^warming team\/multi:v1: linux\/arm64; 2 blobs/);
    expect(res.code).toBe(0);
    expect(servedBlobs(registry)).toEqual(digests(multi.children[1]));
    const none = await runCli(['warm', '--cache', registry.url, '--platform', 'linux/s390x', 'team/multi:v1']);
    expect(none.code).toBe(1);
    expect(none.stdout).toContain('FAILED: no linux/s390x manifest in the index (it has linux/amd64, linux/arm64)');
  });

  it('reads images from --file, pulls each shared blob once, by digest too, with --concurrency 1', async () => {
    const list = join(dir, 'images.txt');
    const host = registry.url.replace('http://', '');
    writeFileSync(list, `# warm before the release\nteam/app:v1\n\n${host}/team/app@${app.digest}\n`);
    const res = await runCli(['warm', '--cache', registry.url, '--concurrency', '1', '--file', list]);
    expect(res.stderr).toContain(`warmed  ${host}/team/app@${app.digest}: 3 blobs`);
    expect(res.stderr).toContain('warmed  team/app:v1: 3 blobs');
    expect(res.code).toBe(0);
    expect(servedBlobs(registry)).toEqual(digests(app)); // the same image twice: each blob pulled once
  });

  it('draws progress bars on a terminal', async () => {
    const res = await runCliOnTty(['warm', '--cache', registry.url, 'team/app:v1']);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('\x1b[2K');
    expect(res.stdout).toMatch(/team\/app:v1\s+\[#{10,}\]\s+100% [\d.]+ KiB\/[\d.]+ KiB \S+ \S+\/s warmed in \S+/);
    expect(res.stdout).toMatch(/IMAGE\s+PLATFORMS\s+BLOBS/);
  });

  it('exits 2 with the fix for bad input', async () => {
    const res = await runCli(['warm', '--cache', registry.url, 'docker.io/library/node:20']);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('names registry docker.io, but warm pulls through --cache');
    const none = await runCli(['warm', '--cache', registry.url]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('no images: name them after the flags or pass --file <list>');
  });
});

describe('dtr-cache warm through a token-protected registry', () => {
  let up: TokenRegistry;
  const image = makeImage({ layerSizes: [2048] });
  const alice = { DTR_USERNAME: 'alice', DTR_PASSWORD: 'alice-pw' };

  beforeAll(async () => {
    up = await startTokenRegistry({ users: { alice: 'alice-pw' }, acl: [{ who: 'alice', repo: 'team/*', actions: ['pull'] }] });
    await up.push('team/secure', 'v1', image);
  });
  afterAll(async () => {
    await up?.stop();
  });

  it('never sends credentials to a realm on another port of the same host unless it is --dtr; then gets a token', async () => {
    const before = up.issuer.requests.length;
    const refused = await runCli(['warm', '--cache', up.registry.url, 'team/secure:v1'], alice);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toContain(
      `sends credentials to token realm ${up.issuer.realm}, which is at neither the cache's nor --dtr's origin (scheme, host and port): refusing`,
    );
    expect(up.issuer.requests.length).toBe(before); // the realm was not contacted at all

    const res = await runCli(['warm', '--cache', up.registry.url, '--dtr', up.issuer.url, 'team/secure:v1'], alice);
    expect(res.stderr).toMatch(/^warming team\/secure:v1/);
    expect(res.code).toBe(0);
    expect(up.issuer.requests.at(-1)).toEqual({ user: 'alice', scopes: ['repository:team/secure:pull'], status: 200 });
  });

  it('never sends credentials to a realm on another host unless it is --dtr', async () => {
    const viaName = up.registry.url.replace('127.0.0.1', 'localhost'); // realm stays on 127.0.0.1: another host name
    const before = up.issuer.requests.length;
    const refused = await runCli(['warm', '--cache', viaName, 'team/secure:v1'], alice);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toContain(
      `sends credentials to token realm ${up.issuer.realm}, which is at neither the cache's nor --dtr's origin (scheme, host and port): refusing`,
    );
    expect(up.issuer.requests.length).toBe(before); // the realm was not contacted at all

    const allowed = await runCli(['warm', '--cache', viaName, '--dtr', up.issuer.url, 'team/secure:v1'], alice);
    expect(allowed.code).toBe(0);
    expect(up.issuer.requests.length).toBe(before + 1);
  });

  it('fails the image with exit 1 for a wrong password', async () => {
    const res = await runCli(['warm', '--cache', up.registry.url, '--dtr', up.issuer.url, 'team/secure:v1'], {
      ...alice,
      DTR_PASSWORD: 'nope-wrong',
    });
    expect(res.code).toBe(1);
    expect(res.stdout).toContain(`FAILED: token realm ${up.issuer.url}/token: 401 for user "alice"`);
    expect(res.stdout + res.stderr).not.toContain('nope-wrong');
  });
});

describe('dtr-cache warm over TLS', () => {
  let registry: TestRegistry;
  let dir: string;
  let caFile: string;
  const image = makeImage({ layerSizes: [1024] });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cli-warm-tls-'));
    const certs = testCertificates('localhost', dir);
    caFile = certs.certificatePath;
    registry = await TestRegistry.start({ tls: { certificate: certs.certificatePath, key: certs.keyPath } });
    const trusting = new Agent({ connect: { ca: readFileSync(caFile, 'utf8') } });
    try {
      await waitFor(
        'TLS registry',
        async () => (await request(`https://localhost:${registry.port}/v2/`, { dispatcher: trusting })).statusCode === 200,
      );
    } finally {
      await trusting.close();
    }
    // jest's sandbox keeps the global fetch from using another dispatcher: push over plain HTTP, copy with skopeo.
    const plain = await TestRegistry.start();
    try {
      await pushImage(plain.url, 'team/tls', 'v1', image);
      await exec(requireTool('skopeo'), [
        'copy', '--src-tls-verify=false', '--dest-tls-verify=false', '--preserve-digests',
        `docker://127.0.0.1:${plain.port}/team/tls:v1`, `docker://localhost:${registry.port}/team/tls:v1`,
      ]); // prettier-ignore
    } finally {
      await plain.stop();
    }
  });
  afterAll(async () => {
    await registry?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('refuses an untrusted certificate, and warms with --ca or --insecure', async () => {
    const cache = `https://localhost:${registry.port}`;
    const untrusted = await runCli(['warm', '--cache', cache, 'team/tls:v1']);
    expect(untrusted.code).toBe(1);
    expect(untrusted.stdout).toMatch(/FAILED: cannot reach https:\/\/localhost:\d+: its TLS certificate is not trusted \(\w+\): pass --ca/);
    registry.clearLog();
    const withCa = await runCli(['warm', '--cache', cache, '--ca', caFile, 'team/tls:v1']);
    expect(withCa.code).toBe(0);
    expect(registry.blobGets().filter((e) => e.status === 200)).toHaveLength(2);
    const insecure = await runCli(['warm', '--cache', cache, '--insecure', 'team/tls:v1']);
    expect(insecure.code).toBe(0);
    const missingCa = await runCli(['warm', '--cache', cache, '--ca', join(dir, 'nope.pem'), 'team/tls:v1']);
    expect(missingCa.code).toBe(2);
    expect(missingCa.stderr).toContain(`--ca ${join(dir, 'nope.pem')}: cannot read it (ENOENT)`);
  });
});
