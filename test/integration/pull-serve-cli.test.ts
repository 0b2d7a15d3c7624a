/**
 * `dtr-cache serve` as a real child process: help, a bad config (exit 2 with the YAML path), a missing TLS file
 * (exit 1 naming the field), and a TLS server with a dead first upstream (ordered failover) that skopeo pulls
 * through, stopped by SIGTERM (exit 0).
 */
import { ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';
import { stringify } from 'yaml';
import { makeImage, pushImage, sha256 } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { freePort, requireTool, waitFor } from '../../harness/tools';

const run = promisify(execFile);
const ROOT = join(__dirname, '..', '..');
const CLI = ['-r', 'ts-node/register/transpile-only', join(ROOT, 'bin', 'dtr-cache.ts')];

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(process.execPath, [...CLI, ...args], { cwd: ROOT, timeout: 60_000 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
  );
}

describe('dtr-cache serve', () => {
  let work: string;
  let upstream: TestRegistry;
  const image = makeImage({ layerSizes: [1024, 50_000] });

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'dtr-cache-serve-'));
    upstream = await TestRegistry.start();
    await pushImage(upstream.url, 'team/app', 'v1', image);
  });

  afterAll(async () => {
    await upstream?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  function writeConfig(name: string, config: unknown): string {
    const file = join(work, name);
    writeFileSync(file, stringify(config));
    return file;
  }

  it('--help prints usage and exits 0', async () => {
    const { code, stdout } = await cli(['serve', '--help']);
    expect(code).toBe(0);
    expect(stdout).toContain('Usage: dtr-cache serve --config <config.yml>');
  });

  it('a bad config exits 2 naming the YAML path and the fix', async () => {
    const file = writeConfig('bad.yml', {
      version: 0.1,
      storage: { filesystem: { rootdirectory: join(work, 'store') } },
      middleware: { registry: [{ name: 'downstream', options: { upstreams: ['ftp://dtr.example.com'] } }] },
    });
    const { code, stderr } = await cli(['serve', '--config', file]);
    expect(code).toBe(2);
    expect(stderr).toContain('middleware.registry[0].options.upstreams[0]');
    expect(stderr).toContain('scheme http or https');
    expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('a missing TLS key file exits 1 naming the field', async () => {
    const file = writeConfig('notls.yml', {
      version: 0.1,
      storage: { filesystem: { rootdirectory: join(work, 'store') } },
      http: { addr: '127.0.0.1:0', tls: { certificate: join(work, 'nope.pem'), key: join(work, 'nope.key') } },
      middleware: { registry: [{ name: 'downstream', options: { upstreams: [upstream.url] } }] },
    });
    const { code, stderr } = await cli(['serve', '--config', file]);
    expect(code).toBe(1);
    expect(stderr).toContain('http.tls.certificate');
    expect(stderr).not.toMatch(/\n\s+at /);
  });

  it('serves TLS, fails over from a dead upstream to the next, pulls with skopeo, and exits 0 on SIGTERM', async () => {
    const openssl = requireTool('openssl');
    const cert = join(work, 'cache.cert.pem');
    const key = join(work, 'cache.key.pem');
    execFileSync(openssl, [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
    ], { stdio: 'ignore' }); // prettier-ignore
    const port = await freePort();
    const dead = `http://127.0.0.1:${await freePort()}`;
    const file = writeConfig('good.yml', {
      version: 0.1,
      log: { level: 'info' },
      storage: { filesystem: { rootdirectory: join(work, 'store') }, delete: { enabled: true } },
      http: { addr: `127.0.0.1:${port}`, tls: { certificate: cert, key } },
      middleware: { registry: [{ name: 'downstream', options: { upstreams: [dead, upstream.url], upstreamtimeout: '5s' } }] },
    });
    const child: ChildProcess = spawn(process.execPath, [...CLI, 'serve', '--config', file], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let stdout = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await waitFor('dtr-cache serve to listen', async () => stderr.includes(`serving https://127.0.0.1:${port}`), 30_000);
      const dispatcher = new Agent({ connect: { ca: readFileSync(cert) } });
      const res = await request(`https://127.0.0.1:${port}/v2/team/app/manifests/v1`, { dispatcher, headers: { accept: image.mediaType } });
      expect(res.statusCode).toBe(200);
      expect(sha256(Buffer.from(await res.body.arrayBuffer()))).toBe(image.digest);
      await dispatcher.close();

      const dir = join(work, 'pulled');
      await run(requireTool('skopeo'), ['copy', '--src-tls-verify=false', `docker://127.0.0.1:${port}/team/app:v1`, `dir:${dir}`], {
        timeout: 60_000,
      });
      expect(sha256(readFileSync(join(dir, 'manifest.json')))).toBe(image.digest);
      // JSON log lines on stdout, one per request.
      const lines = stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.some((l) => l.msg === 'request' && l.status === 200)).toBe(true);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});
