/** `dtr-cache check-config` as an operator runs it: the real CLI in a child process, on files it writes. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../fixtures/cli';

const VALID = `version: 0.1
storage:
  delete: {enabled: true}
  filesystem: {rootdirectory: /var/lib/registry}
http: {addr: 0.0.0.0:443, prefix: /ignored}
middleware:
  registry:
    - name: downstream
      options: {blobttl: 24h, upstreams: [https://dtr.example.com]}
`;

describe('dtr-cache check-config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dtr-cache-check-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  it('accepts a valid config, says what it uses, and warns about registry-only keys', async () => {
    const path = file('valid.yml', VALID);
    const run = await runCli(['check-config', path]);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(`${path}: valid (storage filesystem, upstreams https://dtr.example.com)\n`);
    expect(run.stderr).toBe(
      `warning: ${path}: http.prefix is a registry option this cache does not use; it is ignored (remove it to silence this warning)\n`,
    );
  });

  it('exits 2 with one line per error, naming the YAML path (and the environment variable) and the fix', async () => {
    const path = file('bad.yml', VALID.replace('blobttl: 24h', 'blobttl: forever'));
    const run = await runCli(['check-config', path], { REGISTRY_HTTP_ADDR: 'everywhere' });
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr.trim().split('\n')).toEqual([
      `${path}: http.addr (from environment variable REGISTRY_HTTP_ADDR): must be host:port, e.g. 0.0.0.0:443 or :5000`,
      `${path}: middleware.registry[0].options.blobttl: is not a duration; write a Go duration such as 24h (units ns, us, ms, s, m, h)`,
    ]);
  });

  it('exits 2 with usage errors for a missing file or argument, without a stack trace', async () => {
    const missing = await runCli(['check-config', join(dir, 'absent.yml')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(
      /^dtr-cache check-config: cannot read .*absent\.yml: ENOENT\nRun dtr-cache check-config --help for usage\.\n$/,
    );
    const none = await runCli(['check-config']);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/expects exactly one config file/);
  });
});
