/**
 * `npm run bench -- --scrub-cost`: what the background scrub costs the warm row (row 1), scrub off against scrub on
 * in the same run. Our cache fills a warm 64 MiB blob, a 1 MiB one and 512 MiB of other blobs, then is restarted on
 * the same store for each setting: after a restart no stored blob counts as verified, so with the scrub on it reads
 * the store at `scrubrate` (the default, 8 MiB/s) for the whole measurement. Each setting: the first GET of the warm
 * blobs (digest-checked), 5 s idle (CPU time of the cache process: what the scrub costs alone), then rows 1a-1c with
 * wrk, and the scrub's bytes read over them (from /metrics). The settings alternate over the rounds. Writes
 * bench/results/scrub-cost.md.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { generateBlob, pushBlobFile, type BlobFile } from './blobs';
import { verifyDigest, wrk } from './load';
import { atExit, cpuTicks } from './processes';
import { formatNumber } from './report';
import { startOurCache, startRegistry } from './systems';
import { sleep } from '../harness/tools';

const MiB = 2 ** 20;
const ROOT = resolve(__dirname, '..');
const REPO = 'bench/blobs';
const FILLER_BLOBS = 8;
const WRK_SECONDS = 3;
const IDLE_SECONDS = 5;

type Setting = 'off' | 'on';
const SCRUBRATE: Record<Setting, string> = { off: '0', on: '8MiB' };

async function scrubBytes(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('dtr_cache_scrub_bytes_total '));
  return line ? Number(line.split(' ')[1]) : 0;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1];

export async function scrubCost(cli: string | undefined, commit: string, rounds: number): Promise<void> {
  const log = (message: string) => process.stderr.write(`[scrub-cost] ${message}\n`);
  const work = mkdtempSync(join(tmpdir(), 'dtr-cache-bench-scrub-'));
  atExit(() => rmSync(work, { recursive: true, force: true }));
  const blobDir = join(work, 'blobs');
  mkdirSync(blobDir);
  const warm = await generateBlob(blobDir, 'warm', 64 * MiB);
  const small = await generateBlob(blobDir, 'small', MiB);
  const fillers: BlobFile[] = [];
  for (let i = 0; i < FILLER_BLOBS; i++) fillers.push(await generateBlob(blobDir, `filler${i}`, 64 * MiB));
  const upstream = await startRegistry('upstream');
  const root = join(work, 'store');
  const url = (base: string, blob: BlobFile) => `${base}/v2/${REPO}/blobs/${blob.digest}`;
  const results: Record<Setting, Record<string, number[]>> = { off: {}, on: {} };
  const record = (setting: Setting, key: string, value: number) => (results[setting][key] ??= []).push(value);
  try {
    for (const blob of [warm, small, ...fillers]) await pushBlobFile(upstream.url, REPO, blob);
    log('filling the store');
    const filler = await startOurCache(upstream.url, undefined, cli, { root, options: { scrubrate: '0' } });
    for (const blob of [warm, small, ...fillers]) await verifyDigest(url(filler.url, blob), blob.digest, 120_000);
    await filler.stop();

    for (let round = 0; round < rounds; round++) {
      for (const setting of (round % 2 ? ['on', 'off'] : ['off', 'on']) as Setting[]) {
        const cache = await startOurCache(upstream.url, undefined, cli, { root, options: { scrubrate: SCRUBRATE[setting] } });
        try {
          for (const blob of [warm, small]) await verifyDigest(url(cache.url, blob), blob.digest, 120_000);
          const pid = cache.pid as number;
          const ticks = cpuTicks(pid) ?? NaN;
          await sleep(IDLE_SECONDS * 1000);
          record(setting, 'idle CPU (% of one core)', ((cpuTicks(pid) ?? NaN) - ticks) / IDLE_SECONDS); // 100 ticks per second
          const bytesBefore = await scrubBytes(cache.url);
          const started = Date.now();
          for (const [row, blob, connections] of [
            ['1a', warm, 1],
            ['1b', warm, 16],
            ['1c', small, 16],
          ] as const) {
            const r = await wrk(url(cache.url, blob), connections, WRK_SECONDS);
            log(`round ${round + 1}, scrub ${setting}: row ${row} ${formatNumber(r.mibPerSecond)} MiB/s`);
            record(setting, `row ${row} (MiB/s)`, r.mibPerSecond);
          }
          const rate = (await scrubBytes(cache.url)) - bytesBefore;
          record(setting, 'scrub read during rows 1a-1c (MiB/s)', rate / MiB / ((Date.now() - started) / 1000));
        } finally {
          await cache.stop();
        }
      }
    }
  } finally {
    await upstream.stop();
  }
  const keys = Object.keys(results.off);
  const lines = [
    '# Scrub cost on the warm row',
    '',
    `Commit ${commit}, ${new Date().toISOString()}. Measured on a shared 2-core VM with other engineers' work running: figures`,
    'are noisy; compare the two columns of this run only.',
    '',
    `Our cache restarted on a store of ${2 + FILLER_BLOBS} blobs (${(64 * (FILLER_BLOBS + 1) + 1).toString()} MiB): scrub off (scrubrate: 0) and on`,
    `(scrubrate: 8MiB, the default, reading unverified blobs for the whole run); ${rounds} round(s), settings alternating; medians.`,
    `Idle CPU: ${IDLE_SECONDS} s without requests after the first GETs. Rows 1a-1c: wrk ${WRK_SECONDS} s each, as in npm run bench.`,
    '',
    '| measure | scrub off | scrub on | on ÷ off |',
    '| ------- | --------- | -------- | -------- |',
    ...keys.map((key) => {
      const off = median(results.off[key]);
      const on = median(results.on[key]);
      return `| ${key} | ${formatNumber(off)} | ${formatNumber(on)} | ${off > 0 ? `${formatNumber(on / off)}×` : '—'} |`;
    }),
    '',
    ...keys.map(
      (key) => `- ${key}: off ${results.off[key].map(formatNumber).join(', ')}; on ${results.on[key].map(formatNumber).join(', ')}`,
    ),
    '',
  ];
  const dir = join(ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'scrub-cost.md'), lines.join('\n'));
  process.stdout.write(lines.join('\n'));
}
