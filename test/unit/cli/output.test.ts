import { formatBytes, formatDuration, formatEta, renderTable } from '../../../lib/cli/format';
import { Limit } from '../../../lib/cli/limit';
import { BarReporter, LineReporter, summaryTable } from '../../../lib/cli/progress';
import { sleep } from '../../../harness/tools';

const sink = (isTTY = false) => {
  const chunks: string[] = [];
  return { chunks, out: { isTTY, columns: 120, rows: 40, write: (t: string) => chunks.push(t) } };
};

describe('formatting', () => {
  it('formats sizes, durations and ETAs', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.50 KiB');
    expect(formatBytes(300 * 1024 * 1024)).toBe('300.0 MiB');
    expect(formatDuration(250)).toBe('250ms');
    expect(formatDuration(1500)).toBe('1.5s');
    expect(formatDuration(125_000)).toBe('2m05s');
    expect(formatEta(25, 100, 1000)).toBe('3.0s');
    expect(formatEta(0, 100, 1000)).toBe('-');
  });

  it('aligns table columns, numbers to the right', () => {
    expect(
      renderTable(
        ['NAME', 'SIZE'],
        [
          ['a', '1 B'],
          ['long-name', '10.0 KiB'],
        ],
      ),
    ).toBe('NAME           SIZE\na               1 B\nlong-name  10.0 KiB\n');
  });
});

describe('progress output', () => {
  const ok = { image: 'team/app:v1', platforms: ['linux/amd64'], blobs: 3, bytes: 2048, ms: 1500 };
  const failed = { image: 'team/gone:v1', platforms: [], blobs: 0, bytes: 0, ms: 20, error: 'GET http://x/v2/team/gone/manifests/v1: 404' };

  it('writes one plain line per start and end when not on a terminal', () => {
    const { chunks, out } = sink();
    const r = new LineReporter(out);
    r.planned(ok.image, ok);
    r.progress();
    r.finished(ok);
    r.finished(failed);
    expect(chunks.join('').split('\n')).toEqual([
      'warming team/app:v1: linux/amd64; 3 blobs, 2.00 KiB',
      'warmed  team/app:v1: 3 blobs, 2.00 KiB in 1.5s (1.33 KiB/s)',
      'failed  team/gone:v1: GET http://x/v2/team/gone/manifests/v1: 404',
      '',
    ]);
  });

  it('redraws bars in place on a terminal', () => {
    let now = 0;
    const { chunks, out } = sink(true);
    const r = new BarReporter(out, () => now);
    r.planned(ok.image, ok);
    now = 1000;
    r.progress(ok.image, 1024);
    r.finished({ ...ok, ms: 2000 });
    r.close();
    r.close(); // idempotent: nothing is drawn over the summary that follows
    expect(chunks).toHaveLength(1);
    expect(chunks[0]).toContain('\x1b[2K');
    expect(chunks[0]).toMatch(/team\/app:v1\s+\[#+-+\]\s+50% 1.00 KiB\/2.00 KiB 512 B\/s warmed in 2.0s/);
  });

  it('summarizes every image and counts failures', () => {
    const table = summaryTable([ok, failed]);
    const lines = table.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^IMAGE\s+PLATFORMS\s+BLOBS\s+BYTES\s+TIME\s+RESULT$/);
    expect(lines[1]).toMatch(/^team\/app:v1\s+linux\/amd64\s+3\s+2.00 KiB\s+1.5s\s+ok$/);
    expect(lines[2]).toMatch(/^team\/gone:v1\s+-\s+0\s+0 B\s+20ms\s+FAILED: GET .*404$/);
    expect(lines[3]).toBe('1 of 2 images warmed (2.00 KiB), 1 failed');
  });
});

describe('Limit', () => {
  it('never runs more than max tasks at once', async () => {
    const limit = new Limit(3);
    let active = 0;
    let peak = 0;
    const tasks = Array.from({ length: 20 }, (_, i) =>
      limit.run(async () => {
        peak = Math.max(peak, ++active);
        await sleep(2 + (i % 4));
        active--;
        return i;
      }),
    );
    expect(await Promise.all(tasks)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(peak).toBe(3);
  });
});
