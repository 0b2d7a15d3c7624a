/**
 * The filesystem driver's commit, traced with strace: the order of system calls is what makes a blob committed on
 * one NFS client readable whole by another (close-to-open consistency): every write of the temp file, then fsync and
 * close of it, then one rename to the blob's name. No NFS client or server runs in this kernel, so the NFS side itself
 * is not exercised here; the calls the driver makes are the same on any filesystem.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireTool } from '../../harness/tools';

const REPO = join(__dirname, '..', '..');

test('a committed blob is written, fsynced and closed before it is renamed into place', () => {
  const strace = requireTool('strace');
  const work = mkdtempSync(join(tmpdir(), 'dtr-cache-fs-commit-'));
  try {
    const root = join(work, 'root');
    const trace = join(work, 'trace');
    // 3 MiB in three chunks.
    const program = `
      const { FilesystemDriver } = require(${JSON.stringify(join(REPO, 'lib', 'cache', 'storage', 'filesystem.ts'))});
      (async () => {
        const driver = new FilesystemDriver({ rootdirectory: ${JSON.stringify(root)} });
        const w = await driver.write('blobs/sha256/ab/abcd/data');
        for (let i = 0; i < 3; i++) w.stream.write(Buffer.alloc(1024 * 1024, i));
        w.stream.end();
        await w.commit();
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const run = spawnSync(
      strace,
      [
        '-f',
        '-qq',
        '-e',
        'trace=openat,write,pwrite64,writev,pwritev,fsync,fdatasync,close,rename,renameat,renameat2',
        '-o',
        trace,
        process.execPath,
        '-r',
        'ts-node/register/transpile-only',
        '-e',
        program,
      ],
      { cwd: REPO, encoding: 'utf8', timeout: 60_000 },
    );
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(readFileSync(join(root, 'blobs/sha256/ab/abcd/data')).length).toBe(3 * 1024 * 1024);

    // Each call's line, in the order the calls started ("<pid> <call>(<fd>, ..."); the driver awaits each step, so
    // that is also the order they finished. With several threads strace splits a call into "<unfinished ...>" and
    // "<... resumed>" lines of the same pid: result() reads the return value from whichever ends the call.
    const lines = readFileSync(trace, 'utf8').split('\n');
    const result = (i: number): number => {
      const pid = lines[i].split(' ')[0];
      const end = lines.findIndex((l, j) => j >= i && l.startsWith(`${pid} `) && /= \d+$/.test(l));
      return Number(/= (\d+)$/.exec(lines[end])?.[1]);
    };
    const open = lines.findIndex((l) => /openat\(.*_uploads\/[^"]+\.tmp", O_WRONLY\|O_CREAT\|O_TRUNC/.test(l));
    expect(open).toBeGreaterThanOrEqual(0);
    const fd = result(open);
    const onFd = (call: RegExp) =>
      lines.map((l, i) => (call.test(l) && new RegExp(`\\(${fd}[,) ]`).test(l) ? i : -1)).filter((i) => i > open);
    const writes = onFd(/ (p?write(v|64)?|pwritev2?)\(/);
    const fsync = onFd(/ f(data)?sync\(/)[0];
    const close = onFd(/ close\(/)[0];
    const rename = lines.findIndex((l, i) => i > open && /rename(at2?)?\(.*_uploads\/.*\.tmp".*blobs\/sha256\/ab\/abcd\/data"/.test(l));
    // All 3 MiB went to the temp file (node may gather the chunks into one writev).
    expect(writes.reduce((sum, i) => sum + result(i), 0)).toBe(3 * 1024 * 1024);
    expect(fsync).toBeGreaterThan(Math.max(...writes));
    expect(close).toBeGreaterThan(fsync);
    expect(rename).toBeGreaterThan(close);
    // Nothing is written to the temp file after it is fsynced.
    expect(writes.filter((i) => i > fsync)).toEqual([]);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
