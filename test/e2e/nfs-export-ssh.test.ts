/**
 * NfsExportApply's SSH step applied by the real `terraform` binary (terraform_data and local-exec need no provider)
 * against a real OpenSSH sshd (Debian openssh-server) in a network namespace of its own, reached over a veth with a
 * generated key and a pinned host key (StrictHostKeyChecking=yes).
 *
 * What could not run here: there is no NFS server in this kernel, so `exportfs` on the "server" is a shim that records
 * its arguments and what /etc/exports.d held when it ran; nothing is exported. sshd runs in a private mount namespace
 * where /etc is a copy (so /etc/exports.d/ is written under this test's directory, not the machine's) and
 * /usr/local/sbin holds the shim; the exported directory is under this test's directory.
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NfsExportOptions, SharedStorage, StorageBackend } from '../../lib/constructs';
import { requireTool, waitFor } from '../../harness/tools';
import { run } from './support/netns-engine';
import { terraform, writeStack } from './support/terraform';

jest.setTimeout(120_000);

const NET = `10.94.${process.pid % 250}`;
const NETNS = `dtrssh${process.pid}`;
const VETH = `dss${process.pid}`;
const SERVER = `${NET}.2`;
const work = mkdtempSync(join(tmpdir(), 'dtr-cache-ssh-e2e-'));
const etc = join(work, 'etc');
const shimLog = join(work, 'exportfs.log');
const stackDir = join(work, 'stack');
const exportPath = join(work, 'export', 'dtr-cache');
const key = join(work, 'id_ed25519');
const sshOptions = ['-o', `UserKnownHostsFile=${join(work, 'known_hosts')}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'ConnectTimeout=10'];
let sshd: ChildProcess | undefined;
let sshdLog = '';

/** Synthesizes a stack holding only the export's SSH step, for the site `prefix`. */
function writeExportStack(prefix: string, options: Partial<NfsExportOptions> = {}): void {
  writeStack(stackDir, (stack) => {
    new SharedStorage(stack, 'Storage', {
      namePrefix: prefix,
      backend: StorageBackend.nfs({
        server: 'nfs.test',
        path: exportPath,
        clients: ['10.20.0.0/24'],
        ...options,
        applyOverSsh: { host: SERVER, identityFile: key, sshOptions },
      }),
    });
  });
}

/** terraform apply (or destroy) that must succeed; returns its output. */
function applied(...args: string[]): string {
  const r = terraform(stackDir, ...args, '-auto-approve');
  if (r.status !== 0) throw new Error(`terraform ${args.join(' ')} failed:\n${r.out}\nsshd: ${sshdLog.slice(-2000)}`);
  return r.out;
}

const exportsFiles = (): string[] => (existsSync(join(etc, 'exports.d')) ? readdirSync(join(etc, 'exports.d')).sort() : []);
const exportsFile = (name: string): string => readFileSync(join(etc, 'exports.d', name), 'utf8');
const shimCalls = (): string[] =>
  existsSync(shimLog)
    ? readFileSync(shimLog, 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.trimEnd())
    : [];

beforeAll(async () => {
  for (const tool of ['terraform', 'ip', 'nsenter', 'unshare', 'ssh', 'ssh-keygen']) requireTool(tool);
  const sshdPath = requireTool('sshd');
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(work, 'host_key')]);
  writeFileSync(join(work, 'authorized_keys'), readFileSync(`${key}.pub`));
  writeFileSync(join(work, 'known_hosts'), `${SERVER} ${readFileSync(join(work, 'host_key.pub'), 'utf8')}`);
  writeFileSync(
    join(work, 'sshd_config'),
    [
      `ListenAddress ${SERVER}:22`,
      `HostKey ${join(work, 'host_key')}`,
      `AuthorizedKeysFile ${join(work, 'authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'PidFile none',
      '',
    ].join('\n'),
  );
  const sbin = join(work, 'sbin');
  mkdirSync(sbin);
  writeFileSync(
    join(sbin, 'exportfs'),
    `#!/bin/sh\n# No NFS server here: record the call and what /etc/exports.d held.\necho "exportfs $* | $(cat /etc/exports.d/*.exports 2>/dev/null | tr '\\n' ';')" >> ${shimLog}\n`,
  );
  chmodSync(join(sbin, 'exportfs'), 0o755);
  run('cp', ['-a', '/etc', etc]);
  rmSync(join(etc, 'exports.d'), { recursive: true, force: true });

  run('ip', ['netns', 'add', NETNS]);
  run('ip', ['link', 'add', VETH, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', NETNS]);
  run('ip', ['addr', 'add', `${NET}.1/30`, 'dev', VETH]);
  run('ip', ['link', 'set', VETH, 'up']);
  run('ip', ['-n', NETNS, 'addr', 'add', `${SERVER}/30`, 'dev', 'eth0']);
  run('ip', ['-n', NETNS, 'link', 'set', 'eth0', 'up']);
  run('ip', ['-n', NETNS, 'link', 'set', 'lo', 'up']);
  const setup = [
    `mount --bind ${etc} /etc`,
    `mount --bind ${sbin} /usr/local/sbin`,
    'mount -t tmpfs tmpfs /run',
    'mkdir -p /run/sshd',
    `exec ${sshdPath} -D -e -f ${join(work, 'sshd_config')}`,
  ].join(' && ');
  sshd = spawn('nsenter', [`--net=/run/netns/${NETNS}`, 'unshare', '--mount', '--propagation', 'private', 'sh', '-c', setup], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const keep = (c: Buffer) => (sshdLog = (sshdLog + c.toString()).slice(-20_000));
  sshd.stdout?.on('data', keep);
  sshd.stderr?.on('data', keep);
  await waitFor(
    `sshd on ${SERVER}:22`,
    async () => {
      if (sshd?.exitCode !== null) throw new Error(`sshd exited: ${sshdLog}`);
      return (
        spawnSync('ssh', ['-o', 'BatchMode=yes', '-i', key, ...sshOptions, `root@${SERVER}`, 'true'], { timeout: 15_000 }).status === 0
      );
    },
    30_000,
  );
}, 60_000);

afterAll(async () => {
  if (sshd && sshd.exitCode === null) {
    const exited = new Promise((r) => sshd?.once('exit', r));
    sshd.kill('SIGTERM');
    await exited;
  }
  spawnSync('ip', ['netns', 'delete', NETNS]);
  spawnSync('ip', ['link', 'delete', VETH]);
  rmSync(work, { recursive: true, force: true });
});

test('apply creates the directory for uid 10001, writes the exports file, then runs exportfs -ra', () => {
  writeExportStack('dtr-cache-ssh');
  const init = terraform(stackDir, 'init');
  expect(init.status).toBe(0);
  const out = applied('apply');
  const line = `${exportPath} 10.20.0.0/24(rw,root_squash,no_wdelay)`;
  expect(out).toContain(`wrote /etc/exports.d/dtr-cache-ssh.exports: ${line}`);
  expect(exportsFiles()).toEqual(['dtr-cache-ssh.exports']);
  expect(exportsFile('dtr-cache-ssh.exports')).toBe(`${line}\n`);
  const dir = statSync(exportPath);
  expect([dir.isDirectory(), dir.uid, dir.gid]).toEqual([true, 10001, 10001]);
  expect(shimCalls()).toEqual([`exportfs -ra | ${line};`]);
  // A second plan has nothing to do.
  expect(terraform(stackDir, 'plan', '-detailed-exitcode').status).toBe(0);
});

test('the step is idempotent: run again, it rewrites nothing and re-exports', () => {
  const json = JSON.parse(readFileSync(join(stackDir, 'main.tf.json'), 'utf8'));
  const [resource] = Object.values(json.resource.terraform_data) as { provisioner: { 'local-exec': { command: string } }[] }[];
  const before = statSync(join(etc, 'exports.d', 'dtr-cache-ssh.exports')).mtimeMs;
  const again = spawnSync('sh', ['-c', resource.provisioner[0]['local-exec'].command], { encoding: 'utf8', timeout: 30_000 });
  expect(again.status).toBe(0);
  expect(again.stdout).not.toContain('wrote');
  expect(statSync(join(etc, 'exports.d', 'dtr-cache-ssh.exports')).mtimeMs).toBe(before);
  expect(shimCalls()).toHaveLength(2);
});

test('a changed line is reconciled: the file is replaced with the new clients and options', () => {
  writeExportStack('dtr-cache-ssh', { clients: ['10.20.0.0/24', '10.21.0.0/24'], exportOptions: 'rw,sync,root_squash,no_wdelay' });
  const out = applied('apply');
  expect(out).toMatch(/must be replaced/);
  const line = `${exportPath} 10.20.0.0/24(rw,sync,root_squash,no_wdelay) 10.21.0.0/24(rw,sync,root_squash,no_wdelay)`;
  expect(exportsFiles()).toEqual(['dtr-cache-ssh.exports']);
  expect(exportsFile('dtr-cache-ssh.exports')).toBe(`${line}\n`);
  // The old file went first (destroy: exportfs with nothing exported), then the new one was written and exported.
  expect(shimCalls().slice(-2)).toEqual(['exportfs -ra |', `exportfs -ra | ${line};`]);
});

test('a renamed site removes the old exports file (from the state’s values) and writes the new one', () => {
  writeExportStack('dtr-cache-ssh2');
  applied('apply');
  expect(exportsFiles()).toEqual(['dtr-cache-ssh2.exports']);
});

test('destroy removes the exports file and re-exports; the directory and its content stay', () => {
  writeFileSync(join(exportPath, 'kept'), 'cached content');
  const before = shimCalls().length;
  applied('destroy');
  expect(exportsFiles()).toEqual([]);
  expect(shimCalls().slice(before)).toEqual(['exportfs -ra |']);
  expect(readFileSync(join(exportPath, 'kept'), 'utf8')).toBe('cached content');
});
