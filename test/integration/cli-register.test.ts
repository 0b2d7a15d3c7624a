/**
 * `dtr-cache register` run as a child process (what a deploy step's local-exec runs) against the DTR content
 * caches API fixture: create, idempotent re-run, host change, list, remove, auth failures, TLS trust.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { registerCommandLine } from '../../lib/constructs/registration-command';
import { runCli } from '../fixtures/cli';
import { FakeDtrApi } from '../fixtures/dtr-api';

const exec = promisify(execFile);
const ADMIN = { DTR_USERNAME: 'admin', DTR_PASSWORD: 'admin-secret-pw' };

describe('dtr-cache register', () => {
  let dtr: FakeDtrApi;
  let tlsDtr: FakeDtrApi;

  beforeAll(async () => {
    const users = { admin: { password: ADMIN.DTR_PASSWORD, admin: true }, dev: { password: 'dev-pw', admin: false } };
    dtr = await FakeDtrApi.start(users);
    tlsDtr = await FakeDtrApi.start(users, { tls: true });
  });
  afterAll(async () => {
    await dtr?.stop();
    await tlsDtr?.stop();
  });

  const register = (...args: string[]) => runCli(['register', '--dtr', dtr.url, ...args], ADMIN);
  const methods = (from: number) => dtr.requests.slice(from).map((r) => `${r.method} ${r.status}`);

  it('registers a cache, then changes nothing when run again', async () => {
    const first = await register('--name', 'region-asia', '--host', 'https://cache-asia.example.com:8443');
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(dtr.caches).toEqual([{ id: expect.any(String), name: 'region-asia', host: 'https://cache-asia.example.com:8443' }]);
    expect(first.stdout).toBe(`cache region-asia registered: https://cache-asia.example.com:8443 (id ${dtr.caches[0].id}) at ${dtr.url}\n`);

    const before = dtr.requests.length;
    const again = await register('--name', 'region-asia', '--host', 'https://cache-asia.example.com:8443/');
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/^cache region-asia already registered: /);
    expect(methods(before)).toEqual(['GET 200']); // listed, nothing written
    expect(dtr.caches).toHaveLength(1);
  });

  it('replaces the entry when the host changed (delete + create: DTR documents no update)', async () => {
    const oldId = dtr.caches.find((c) => c.name === 'region-asia')?.id;
    const before = dtr.requests.length;
    const res = await register('--name', 'region-asia', '--host', 'https://cache-asia2.example.com');
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^cache region-asia re-registered \(host changed\): https:\/\/cache-asia2\.example\.com /);
    expect(methods(before)).toEqual(['GET 200', 'DELETE 204', 'POST 201']);
    expect(dtr.caches).toEqual([{ id: expect.any(String), name: 'region-asia', host: 'https://cache-asia2.example.com' }]);
    expect(dtr.caches[0].id).not.toBe(oldId);
  });

  it('lists registered caches with their ids as a table', async () => {
    await register('--name', 'region-eu', '--host', 'https://cache-eu.example.com');
    const res = await register('--list');
    expect(res.code).toBe(0);
    const lines = res.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID\s+NAME\s+HOST$/);
    expect(lines.slice(1)).toEqual(
      dtr.caches.map((c) => expect.stringMatching(new RegExp(`^${c.id}\\s+${c.name}\\s+${c.host.replace(/\./g, '\\.')}$`))),
    );
    expect(lines).toHaveLength(3);
  });

  it('removes a cache by name, and removing it again is not an error', async () => {
    const res = await register('--name', 'region-eu', '--remove');
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^removed cache region-eu \(id [\w-]+\) from /);
    expect(dtr.caches.map((c) => c.name)).toEqual(['region-asia']);
    const again = await register('--name', 'region-eu', '--remove');
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('cache region-eu is not registered');
  });

  it('fails with exit 1 and a clear message for a wrong password, never printing it', async () => {
    const res = await runCli(['register', '--dtr', dtr.url, '--list'], { DTR_USERNAME: 'admin', DTR_PASSWORD: 'wrong-password-xyz' });
    expect(res.code).toBe(1);
    expect(res.stdout).toBe('');
    expect(res.stderr).toBe(
      `dtr-cache register: GET ${dtr.url}/api/v0/content_caches: 401 unauthorized for user "admin": check --username / DTR_USERNAME and the password or token in the --password-env variable\n`,
    );
    expect(res.stderr).not.toContain('wrong-password-xyz');
  });

  it('fails with exit 1 for a non-admin (403), credentials from --username and --password-env', async () => {
    const res = await runCli(['register', '--dtr', dtr.url, '--username', 'dev', '--password-env', 'CI_DTR_TOKEN', '--list'], {
      CI_DTR_TOKEN: 'dev-pw',
    });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('403 forbidden for user "dev": content caches need a DTR admin account');
    expect(dtr.requests.at(-1)).toMatchObject({ user: 'dev', status: 403 });
  });

  it('fails with exit 1 when DTR is unreachable', async () => {
    const res = await runCli(['register', '--dtr', 'http://127.0.0.1:9', '--list'], ADMIN);
    expect(res.code).toBe(1);
    expect(res.stderr).toBe('dtr-cache register: cannot reach http://127.0.0.1:9: connection refused (ECONNREFUSED)\n');
  });

  it('exits 2 on bad flags, naming the flag and the fix', async () => {
    const noName = await runCli(['register', '--dtr', dtr.url, '--host', 'https://c.example.com'], ADMIN);
    expect(noName.code).toBe(2);
    expect(noName.stderr).toContain('--name is required');
    const badHost = await runCli(['register', '--dtr', dtr.url, '--name', 'x', '--host', 'cache.example.com'], ADMIN);
    expect(badHost.code).toBe(2);
    expect(badHost.stderr).toContain('--host "cache.example.com" is not a URL');
    const help = await runCli(['register', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--password-env <VAR>');
  });

  it('trusts a DTR with its own CA only when given --ca', async () => {
    const untrusted = await runCli(['register', '--dtr', tlsDtr.url, '--list'], ADMIN);
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toMatch(/its TLS certificate is not trusted \(\w+\): pass --ca <its CA file>, or --insecure/);
    const trusted = await runCli(
      ['register', '--dtr', tlsDtr.url, '--ca', tlsDtr.caFile as string, '--name', 'tls-site', '--host', 'https://c.example.com'],
      ADMIN,
    );
    expect(trusted.stderr).toBe('');
    expect(trusted.code).toBe(0);
    expect(tlsDtr.caches.map((c) => c.name)).toEqual(['tls-site']);
  });
});

describe('registerCommandLine (what a local-exec provisioner runs)', () => {
  let dtr: FakeDtrApi;
  beforeAll(async () => {
    dtr = await FakeDtrApi.start({ deployer: { password: 'tok en', admin: true } });
  });
  afterAll(async () => {
    await dtr?.stop();
  });

  it('registers and removes through a shell with credentials only in the environment', async () => {
    const bin = `${process.execPath} -r ts-node/register/transpile-only ${join(__dirname, '..', '..', 'bin', 'dtr-cache.ts')}`;
    const common = {
      dtr: dtr.url,
      name: "eu's cache",
      host: 'https://cache-eu.example.com',
      cli: bin,
      usernameEnv: 'DEPLOY_USER',
      passwordEnv: 'DEPLOY_TOKEN',
    };
    const line = registerCommandLine(common);
    expect(line).not.toContain('tok en');
    expect(line).not.toContain('deployer');
    const env = {
      ...process.env,
      DEPLOY_USER: 'deployer',
      DEPLOY_TOKEN: 'tok en',
      TS_NODE_PROJECT: join(__dirname, '..', '..', 'tsconfig.json'),
    };
    // The name is invalid on purpose first: the quoting must carry it intact to the CLI, which refuses it (exit 2).
    const bad = await exec('sh', ['-c', line], { env }).catch((err: { code: number; stderr: string }) => err);
    expect(bad).toMatchObject({ code: 2, stderr: expect.stringContaining(`--name "eu's cache": use letters`) });

    await exec('sh', ['-c', registerCommandLine({ ...common, name: 'region-eu' })], { env });
    expect(dtr.caches).toEqual([{ id: expect.any(String), name: 'region-eu', host: 'https://cache-eu.example.com' }]);
    await exec('sh', ['-c', registerCommandLine({ ...common, name: 'region-eu', action: 'remove' })], { env });
    expect(dtr.caches).toEqual([]);
    expect(dtr.requests.every((r) => r.user === 'deployer')).toBe(true);
  });
});
