import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { FilesystemDriver, readSize } from '../../../../lib/cache/storage/filesystem';

const KiB = 1024;

describe('readSize: the read size of a stored blob, by how many are read at once', () => {
  it('reads 1 MiB at a time while at most four blobs are read', () => {
    for (const open of [0, 1, 2, 4]) expect(readSize(open)).toBe(1024 * KiB);
  });

  it('shrinks in 64 KiB steps as more are read, never below 64 KiB', () => {
    expect(readSize(5)).toBe(768 * KiB); // 4 MiB / 5 = 819 KiB, rounded down to a 64 KiB step
    expect(readSize(16)).toBe(256 * KiB);
    expect(readSize(100)).toBe(64 * KiB);
    expect(readSize(10_000)).toBe(64 * KiB);
    for (let open = 1; open < 200; open++) expect(readSize(open) % (64 * KiB)).toBe(0);
  });

  it('keeps what 100 concurrent streams read at a time near the 4 MiB budget, not at 100 × 1 MiB', () => {
    let total = 0;
    for (let open = 1; open <= 100; open++) total += readSize(open);
    expect(total / (1024 * KiB)).toBeLessThan(16);
  });
});

describe('FilesystemDriver.read: the read size follows the streams open now', () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'dtr-cache-read-size-'));
    mkdirSync(join(root, 'blob'));
    writeFileSync(join(root, 'blob/data'), Buffer.alloc(3 * 1024 * KiB, 7));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('gives later streams smaller reads while earlier ones are open, and 1 MiB again once they are closed', async () => {
    const driver = new FilesystemDriver({ rootdirectory: root });
    const open: Readable[] = [];
    for (let i = 0; i < 16; i++) open.push((await driver.read('blob/data'))!);
    expect(open.map((s) => s.readableHighWaterMark / KiB)).toEqual([
      1024, 1024, 1024, 1024, 768, 640, 576, 512, 448, 384, 320, 320, 256, 256, 256, 256,
    ]);
    // One read to its end (every byte), the rest destroyed: both release their share.
    let bytes = 0;
    for await (const chunk of open[0]) bytes += (chunk as Buffer).length;
    expect(bytes).toBe(3 * 1024 * KiB);
    for (const s of open.slice(1)) s.destroy();
    await Promise.all(open.map((s) => (s.closed ? undefined : once(s, 'close'))));
    const again = (await driver.read('blob/data'))!;
    expect(again.readableHighWaterMark).toBe(1024 * KiB);
    again.destroy();
  });
});
