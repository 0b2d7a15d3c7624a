/**
 * `npm run bench -- --wan-phases[=rounds]`: where the time of row a1 (bench/wan-workers.ts) goes. Each round runs
 * row a for ours alone on a fresh store and a fresh cold blob, with one direct pull over the same link just before,
 * and writes a timeline (ms from the moment the clients start) per round to bench/results/wan-phases.md:
 * - the link: its first and last byte towards the holder (sampled every 2 ms where it takes bytes in, plus the
 *   one-way delay);
 * - each replica's fill, from its log lines at info: the lease decision, the source's headers (the upstream's
 *   for the holder, the holder's endpoint for the other), first and last source byte, verified (when its readers'
 *   last bytes go), committed;
 * - each replica's 10 curl clients: first byte and end (earliest–latest), from curl's own timers;
 * - each replica's CPU time, and how long its fill's source waited for the disk.
 * With --profile, each replica runs under node --cpu-prof (bench/results/prof/replica-<n>/; bench/profile-top.ts).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { generateBlob, pushBlobFile, type BlobFile } from './blobs';
import { pull, storm, type Storm } from './load';
import { cpuTicks, waitForQuiet } from './processes';
import { formatNumber, median } from './report';
import { startOurCache, startRegistry, type OurSystem, type System } from './systems';
import { startWanLink } from './wan-link';
import { loadAverage } from './bench-run';
import { CLIENTS_PER_REPLICA, REPO, RTT_MS, WAN_BYTES_PER_SECOND } from './wan-workers';

const MiB = 2 ** 20;
const ROOT = resolve(__dirname, '..');

const log = (message: string) => process.stderr.write(`[bench wan-phases] ${message}\n`);

/** One replica's fill of the blob, as its log lines tell it: epoch ms of each phase. */
interface FillPhases {
  leaseTaken?: number;
  /** From the coordinator's start to its decision (lease taken, or the holder's stream answered). */
  coordinatorMs?: number;
  sourceHeaders?: number;
  firstByte?: number;
  bodyEnd?: number;
  verified?: number;
  committed?: number;
  diskWaitMs?: number;
}

function fillPhases(output: string, digest: string): FillPhases {
  const phases: FillPhases = {};
  for (const line of output.split('\n')) {
    if (!line.startsWith('{') || !line.includes(digest)) continue;
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    const at = Date.parse(String(entry.time));
    const ms = (field: string) => Number(entry[field]);
    switch (entry.msg) {
      case 'fill lease taken; fetching from the upstream':
        phases.leaseTaken = at;
        phases.coordinatorMs = ms('leaseMs');
        break;
      case 'blob miss; fetching from upstream':
        phases.sourceHeaders = at;
        break;
      case 'blob miss; streaming from the replica fetching it':
        phases.sourceHeaders = at;
        phases.coordinatorMs = ms('ms');
        break;
      case 'blob cached': {
        const started = at - ms('ms');
        phases.firstByte = started + ms('firstByteMs');
        phases.bodyEnd = started + ms('bodyEndMs');
        phases.verified = started + ms('verifiedMs');
        phases.committed = at;
        phases.diskWaitMs = ms('diskWaitMs');
        break;
      }
    }
  }
  return phases;
}

/** When a counter first and last moved, sampled every 2 ms. */
function watch(counter: () => number): { stop(): { first?: number; last?: number } } {
  let value = counter();
  let first: number | undefined;
  let last: number | undefined;
  const timer = setInterval(() => {
    const now = counter();
    if (now === value) return;
    value = now;
    first ??= Date.now();
    last = Date.now();
  }, 2);
  return {
    stop: () => {
      clearInterval(timer);
      return { first, last };
    },
  };
}

interface Round {
  readonly directMs?: number;
  readonly directTtfbMs?: number;
  readonly totalMs?: number;
  readonly lines: string[];
}

export async function wanPhases(cli: string | undefined, commit: string, rounds: number, profileDir?: string): Promise<number> {
  const blobBytes = 64 * MiB;
  const loadBefore = loadAverage();
  const work = mkdtempSync(join(tmpdir(), 'dtr-cache-bench-phases-'));
  const started: System[] = [];
  const results: Round[] = [];
  const errors: string[] = [];
  const rel = (t0: number, at: number | undefined) => (at === undefined ? '—' : formatNumber(at - t0));
  try {
    const blobDir = join(work, 'blobs');
    mkdirSync(blobDir);
    const blobs: BlobFile[] = [];
    for (let round = 0; round < rounds; round++) blobs.push(await generateBlob(blobDir, `cold${round}`, blobBytes));
    const upstream = await startRegistry('upstream');
    started.push(upstream);
    for (const blob of blobs) await pushBlobFile(upstream.url, REPO, blob);
    const link = await startWanLink({ targetPort: upstream.registry.port, rttMs: RTT_MS, sharedBytesPerSecond: WAN_BYTES_PER_SECOND });
    const quiet = async () => {
      const pids = started.map((s) => s.pid ?? 0);
      await waitForQuiet(pids);
    };
    for (const [round, blob] of blobs.entries()) {
      const url = (base: string) => `${base}/v2/${REPO}/blobs/${blob.digest}`;
      await quiet();
      const direct = await pull(url(link.url), blob.size, 120_000).catch((err: unknown) => {
        errors.push(`round ${round + 1} direct: ${(err as Error).message}`);
        return undefined;
      });
      const store = join(work, `store-${round}`);
      const replicas: OurSystem[] = [];
      for (let i = 0; i < 2; i++) {
        const r = await startOurCache(link.url, profileDir && join(profileDir, `replica-${i}`), cli, {
          root: store,
          workers: 1,
          secret: 'bench-site-secret',
          logLevel: 'info',
        });
        replicas.push(r);
        started.push(r);
      }
      await quiet();
      log(`round ${round + 1}/${rounds}: 2 replicas × ${CLIENTS_PER_REPLICA} clients, load average ${loadAverage()}`);
      const ticksBefore = replicas.map((r) => cpuTicks(r.pid ?? 0) ?? 0);
      const linkWatch = watch(() => link.bytesDown);
      const t0 = Date.now();
      const storms = await Promise.all(
        replicas.map((r) =>
          storm(url(r.url), CLIENTS_PER_REPLICA, blob.size, 240_000).catch((err: unknown): Storm | undefined => {
            errors.push(`round ${round + 1} ${r.url}: ${(err as Error).message}`);
            return undefined;
          }),
        ),
      );
      const wallMs = Date.now() - t0;
      const cpuMs = replicas.map((r, i) => ((cpuTicks(r.pid ?? 0) ?? 0) - ticksBefore[i]) * 10);
      // As the direct pull is timed: curl's own clock (no process start), the slowest of the 20 transfers.
      const totalMs = Math.max(...storms.flatMap((s) => (s ? s.transfers.map((t) => t.totalMs) : [NaN])));
      for (let last = -1, i = 0; i < 30 && link.bytesDown !== last; i++) {
        last = link.bytesDown;
        await new Promise((r) => setTimeout(r, 1000));
      }
      const wan = linkWatch.stop();
      const lines = [
        `### Round ${round + 1}: total ${formatNumber(totalMs)} ms (curl's clocks; wall with curl's start and exit ${formatNumber(wallMs)}), direct ${formatNumber(direct?.totalMs ?? NaN)} ms (first byte ${formatNumber(direct?.ttfbMs ?? NaN)}), load average ${loadAverage()}`,
        '',
        `- link: first byte to the holder at ${rel(t0, wan.first && wan.first + RTT_MS / 2)}, last at ${rel(t0, wan.last && wan.last + RTT_MS / 2)}`,
      ];
      const phases = replicas.map((r) => fillPhases(r.output(), blob.digest));
      const order = phases[0].leaseTaken !== undefined ? [0, 1] : [1, 0];
      for (const i of order) {
        const p = phases[i];
        const s = storms[i];
        const ttfb = s ? s.transfers.map((t) => t.ttfbMs) : [];
        const ends = s ? s.transfers.map((t) => t.totalMs) : [];
        const span = (v: number[]) => (v.length ? `${formatNumber(Math.min(...v))}–${formatNumber(Math.max(...v))}` : '—');
        lines.push(
          `- ${p.leaseTaken !== undefined ? 'holder' : 'other'}: lease ${rel(t0, p.leaseTaken)} (coordinator ${formatNumber(p.coordinatorMs ?? NaN)} ms), source headers ${rel(t0, p.sourceHeaders)}, first byte ${rel(t0, p.firstByte)}, last byte ${rel(t0, p.bodyEnd)}, verified ${rel(t0, p.verified)}, committed ${rel(t0, p.committed)}, source held back for the disk ${formatNumber(p.diskWaitMs ?? NaN)} ms, CPU ${formatNumber(cpuMs[i])} ms; its clients: first byte ${span(ttfb)}, end ${span(ends)} (curl's clocks; the storm's wall ${formatNumber(s?.wallMs ?? NaN)})`,
        );
      }
      lines.push('');
      results.push({ directMs: direct?.totalMs, directTtfbMs: direct?.ttfbMs, totalMs, lines });
      log(lines.join('\n'));
      for (const r of replicas) {
        await r.stop();
        started.splice(started.indexOf(r), 1);
      }
    }
    await link.stop();
  } catch (err) {
    errors.push((err as Error).message);
  } finally {
    for (const s of [...started].reverse()) await s.stop().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
  const totals = results.map((r) => r.totalMs ?? NaN);
  const directs = results.map((r) => r.directMs ?? NaN);
  const text = [
    '# Row a1, phase by phase (bench/wan-phases.ts)',
    '',
    `- date: ${new Date().toISOString()}`,
    `- commit: ${commit}`,
    `- machine: nproc ${cpus().length}, node ${process.version}; load average before ${loadBefore}, after ${loadAverage()}`,
    `- ${rounds} round(s); total ${totals.map((t) => formatNumber(t)).join(', ')} ms (median ${formatNumber(median(totals))}); direct ${directs.map((t) => formatNumber(t)).join(', ')} ms (median ${formatNumber(median(directs))}); median ratio ${(median(totals) / median(directs)).toFixed(2)}×`,
    '- times in ms from the start of the 20 clients; the link as in row a (100 ms round trip, 32 MiB/s shared); each replica logs at info.',
    ...(errors.length ? ['', '## Errors', '', ...errors.map((e) => `- ${e}`)] : []),
    '',
    ...results.flatMap((r) => r.lines),
  ].join('\n');
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/results/wan-phases.md'), text);
  log('wrote bench/results/wan-phases.md');
  return errors.length ? 1 : 0;
}
