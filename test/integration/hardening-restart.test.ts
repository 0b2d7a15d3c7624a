/**
 * Hardening (issue 10): a startup sweep removes what a killed process left. `dtr-cache serve` is killed with
 * SIGKILL in the middle of a fill over a slow link; on a filesystem store the fill has no spool (object-store fills
 * spool to an unlinked file, which lives only as the process's descriptor), and the storage temp file is removed
 * by the next start, at once rather than after `filltimeout`, because its writer is known to be gone. A temp file
 * of a writer still running is left alone.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CacheConfigInput } from '../../lib/config';
import { writerId } from '../../lib/cache/storage/writer-id';
import { startCacheProcess, type CacheProcess } from '../support/cache-process';
import { pushBlob } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { startThrottleProxy, type ThrottleProxy } from '../support/throttle-proxy';
import { waitFor } from '../../harness/tools';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Every file under `dir`, relative, sorted. */
function files(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, prefix: string) => {
    if (!existsSync(d)) return;
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name), `${prefix}${e.name}/`);
      else out.push(`${prefix}${e.name}`);
    }
  };
  walk(dir, '');
  return out.sort();
}

describe('hardening: kill -9 mid-fill, restart: no temp or spool file remains', () => {
  let upstream: TestRegistry;
  let link: ThrottleProxy;
  let root: string;
  let cache: CacheProcess | undefined;
  const blob = randomBytes(8 * MiB);
  let digest = '';

  const config = (): CacheConfigInput => ({
    version: '0.1',
    log: { level: 'info' },
    storage: { filesystem: { rootdirectory: join(root, 'store') }, delete: { enabled: true } },
    http: { addr: '127.0.0.1:0' },
    // A long filltimeout: the age rule alone would keep the killed process's temp file for 30 min + 1 min.
    middleware: { registry: [{ name: 'downstream', options: { upstreams: [link.url], filltimeout: '30m' } }] },
  });

  beforeAll(async () => {
    upstream = await TestRegistry.start();
    digest = await pushBlob(upstream.url, 'team/big', blob);
    link = await startThrottleProxy(upstream.port, 512 * 1024); // ~16 s for the blob: the kill lands mid-fill
    root = mkdtempSync(join(tmpdir(), 'dtr-cache-restart-'));
  });
  afterAll(async () => {
    await cache?.kill();
    await link?.stop();
    await upstream?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('removes the killed fill temp file at the next start, keeps a live writer one, and then fills normally', async () => {
    const store = join(root, 'store');
    const first = (cache = await startCacheProcess(config()));
    const client = fetch(`${first.url}/v2/team/big/blobs/${digest}`)
      .then((res) => res.arrayBuffer())
      .then(
        () => 'completed',
        () => 'cut',
      );
    // Bounded: the fill has written bytes to its storage temp file.
    await waitFor(
      'the fill to write its temp file',
      async () => files(store).some((f) => f.startsWith('_uploads/') && statSync(join(store, f)).size > 0),
      30_000,
    );
    // On a filesystem store the fill needs no spool: readers behind read its storage temp file back, through a second
    // descriptor of it. The temp file is then the only thing a kill can leave, and the next start removes it.
    const fds = readdirSync(`/proc/${first.child.pid}/fd`).map((fd) => {
      try {
        return readlinkSync(`/proc/${first.child.pid}/fd/${fd}`);
      } catch {
        return '';
      }
    });
    expect(fds.filter((target) => target.includes('.spool'))).toEqual([]);
    expect(fds.filter((target) => target.startsWith(join(store, '_uploads')))).toHaveLength(2);

    first.child.kill('SIGKILL');
    expect(await first.exited).toBe('SIGKILL');
    expect(await client).toBe('cut');
    const leftovers = files(store).filter((f) => f.startsWith('_uploads/'));
    expect(leftovers).toHaveLength(1);
    expect(files(store).filter((f) => f.startsWith('blobs/'))).toEqual([]); // nothing committed mid-transfer

    // A temp file of a writer that is alive (this test process) must survive the restart's sweep.
    const live = `_uploads/${writerId()}.live-writer.tmp`;
    mkdirSync(join(store, '_uploads'), { recursive: true });
    writeFileSync(join(store, live), 'in progress');

    link.rate = 64 * MiB;
    const second = (cache = await startCacheProcess(config()));
    expect(files(store).filter((f) => f.startsWith('_uploads/'))).toEqual([live]);
    expect(second.output()).toContain('removed stale writes of an earlier process');
    rmSync(join(store, live));

    const res = await fetch(`${second.url}/v2/team/big/blobs/${digest}`);
    expect(res.status).toBe(200);
    expect(sha(Buffer.from(await res.arrayBuffer()))).toBe(digest);
    await waitFor('the fill to commit', async () => files(store).some((f) => f.startsWith('blobs/')), 30_000);
    expect(files(store).filter((f) => f.startsWith('_uploads/'))).toEqual([]);
  }, 180_000);
});
