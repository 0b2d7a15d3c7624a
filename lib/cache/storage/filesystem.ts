/**
 * Filesystem driver: a local directory, or an NFS mount shared by several replicas. A write goes to a uniquely
 * named temp file under `_uploads/`, is fsynced and closed, then renamed into place: rename is atomic on POSIX
 * filesystems and on NFS, and NFS's close-to-open consistency makes another client's later open see the whole file,
 * so readers see the old object or the whole new one, never a part. `touch` sets mtime (not atime: NFS mounts are
 * often noatime).
 */
import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { link, mkdir, open, readdir, rename, rm, stat, utimes, writeFile, readFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { FilesystemOptions } from '../../config';
import { FileReader } from './file-reader';
import { ByteRange, ObjectInfo, PendingWrite, StorageDriver, StorageError } from './driver';
import { writerGone, writerId } from './writer-id';

const UPLOADS = '_uploads';

const KiB = 1024;
/** Read size of a stored blob while few are read at once. */
const MAX_READ = 1024 * KiB;
const MIN_READ = 64 * KiB;
/** What the reads of all open blob streams add up to, about: each holds up to two or three reads (see readSize). */
const READ_BUDGET = 4 * MAX_READ;

/**
 * The read size for a stored blob when `openReads` blobs (this one included) are being read. Large reads mean fewer
 * event-loop turns per byte, so one client is served fastest with MAX_READ. But a send to a slow client holds up
 * to two reads (one being read, one queued on its socket; three while its digest is checked, FileReader.sendTo), so
 * the reads shrink as clients add up, in 64 KiB steps, and the reads of all open streams stay near READ_BUDGET
 * (figures: bench/results/design-figures.md).
 */
export function readSize(openReads: number): number {
  const share = Math.floor(READ_BUDGET / Math.max(1, openReads) / MIN_READ) * MIN_READ;
  return Math.min(MAX_READ, Math.max(MIN_READ, share));
}

export class FilesystemDriver implements StorageDriver {
  readonly kind = 'filesystem' as const;
  readonly root: string;
  /** Blob streams open now: what `readSize` divides the read budget by. */
  private openReads = 0;

  constructor(options: FilesystemOptions) {
    this.root = options.rootdirectory;
  }

  private path(key: string): string {
    const full = join(this.root, key);
    // Keys are built by the server from validated digests and names; this guards the invariant anyway.
    if (!full.startsWith(this.root + sep) || key.startsWith(UPLOADS))
      throw new StorageError('resolve', key, 'key escapes the storage root');
    return full;
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const s = await stat(this.path(key));
      return s.isFile() ? { key, size: s.size, lastAccess: s.mtime } : undefined;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw new StorageError('stat', key, err);
    }
  }

  async read(key: string, range?: ByteRange): Promise<Readable | undefined> {
    const handle = await open(this.path(key), 'r').catch((err) => {
      if (isNotFound(err)) return undefined;
      throw new StorageError('read', key, err);
    });
    if (!handle) return undefined;
    this.openReads++;
    const stream = new FileReader(handle, { start: range?.start, end: range?.end, chunkSize: readSize(this.openReads) });
    stream.once('close', () => this.openReads--);
    return stream;
  }

  async write(key: string): Promise<PendingWrite> {
    const target = this.path(key);
    // Named after its writer, so a restart removes what a killed process left (see writer-id.ts).
    const temp = join(this.root, UPLOADS, `${writerId()}.${randomUUID()}.tmp`);
    await mkdir(dirname(temp), { recursive: true });
    const handle = await open(temp, 'w');
    // The numeric fd, not the FileHandle: a stream given a FileHandle holds a reference on it that autoClose:false
    // never drops, and handle.close() in commit() would then wait forever.
    const stream = createWriteStream('', { fd: handle.fd, autoClose: false });
    let settled = false;
    const close = async () => {
      if (!stream.destroyed) stream.destroy();
      await finished(stream).catch(() => undefined);
      await handle.close().catch(() => undefined);
    };
    return {
      stream,
      // A second descriptor of the temp file: it keeps reading the same inode after rename (commit) or rm (abort).
      readBack: () => open(temp, 'r'),
      commit: async () => {
        if (settled) throw new StorageError('commit', key, 'write already settled');
        settled = true;
        try {
          await finished(stream);
          await handle.sync();
          await handle.close();
          await mkdir(dirname(target), { recursive: true });
          await rename(temp, target);
        } catch (err) {
          await close();
          await rm(temp, { force: true });
          throw new StorageError('commit', key, err);
        }
      },
      abort: async () => {
        if (settled) return;
        settled = true;
        await close();
        await rm(temp, { force: true });
      },
    };
  }

  /** The body goes to a temp file first; link(2) then publishes it whole, and fails with EEXIST if the key exists. */
  async createIfAbsent(key: string, body: Buffer): Promise<boolean> {
    const target = this.path(key);
    const temp = join(this.root, UPLOADS, `${writerId()}.${randomUUID()}.tmp`);
    try {
      await mkdir(dirname(temp), { recursive: true });
      await writeFile(temp, body, { flush: true });
      await mkdir(dirname(target), { recursive: true });
      await link(temp, target);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw new StorageError('createIfAbsent', key, err);
    } finally {
      await rm(temp, { force: true });
    }
  }

  async delete(key: string): Promise<void> {
    await rm(this.path(key), { force: true }).catch((err) => {
      throw new StorageError('delete', key, err);
    });
  }

  async touch(key: string): Promise<void> {
    const now = new Date();
    await utimes(this.path(key), now, now).catch((err) => {
      if (!isNotFound(err)) throw new StorageError('touch', key, err);
    });
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const start = join(this.root, prefix.split('/').slice(0, -1).join('/'));
    const stack = [start];
    while (stack.length > 0) {
      const dir = stack.pop() as string;
      const entries = await readdir(dir, { withFileTypes: true }).catch((err) => {
        if (isNotFound(err)) return [];
        throw new StorageError('list', relative(this.root, dir), err);
      });
      for (const entry of entries) {
        const full = join(dir, entry.name);
        const key = relative(this.root, full).split(sep).join('/');
        if (key === UPLOADS) continue;
        if (entry.isDirectory()) stack.push(full);
        else if (entry.isFile() && key.startsWith(prefix)) {
          const info = await this.stat(key);
          if (info) yield info;
        }
      }
    }
  }

  async removeStaleWrites(olderThanMs: number): Promise<number> {
    const dir = join(this.root, UPLOADS);
    const names = await readdir(dir).catch(() => [] as string[]);
    let removed = 0;
    for (const name of names) {
      const s = await stat(join(dir, name)).catch(() => undefined);
      if (s && (Date.now() - s.mtimeMs >= olderThanMs || writerGone(name.split('.')[0]))) {
        await rm(join(dir, name), { force: true });
        removed++;
      }
    }
    return removed;
  }

  async probe(): Promise<void> {
    const file = join(this.root, UPLOADS, `probe-${randomUUID()}`);
    await mkdir(dirname(file), { recursive: true });
    let back: string;
    try {
      await writeFile(file, 'probe');
      back = await readFile(file, 'utf8');
    } finally {
      // A failed write (a full disk) leaves the file created: a probe every few seconds must not pile them up.
      await rm(file, { force: true });
    }
    if (back !== 'probe') throw new StorageError('probe', file, 'read back different bytes');
  }
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'ENOENT' || (err as NodeJS.ErrnoException)?.code === 'ENOTDIR';
}
