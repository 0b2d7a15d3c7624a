/**
 * `npm run bench`: our cache side by side with distribution 2.8's proxy mode, on loopback, each on fresh
 * storage, with the same clients; writes bench/results/latest.md and latest.svg.
 * Flags: --quick (small blobs, short runs, for building and debugging), --profile (our cache under
 * node --cpu-prof; profiles in bench/results/prof/), --cli=<path> (another build of dist/bin/dtr-cache.js),
 * --commit=<sha> (what that build was made from, for the report), --scrub-cost[=<rounds>] (only the scrub's cost on
 * row 1, scrub off against on: bench/scrub-cost.ts; default 1 round), --wan-workers (only the WAN link and workers
 * rows: bench/wan-workers.ts, written to bench/results/wan-workers.md), --wan-phases[=<rounds>] (row a1 of those, ours
 * only, phase by phase: bench/wan-phases.ts, written to bench/results/wan-phases.md; default 3 rounds),
 * --zero-copy-front (only the warm rows against ours behind an nginx front: bench/zero-copy-front.ts, written to
 * bench/results/zero-copy-front.md).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { requireTool, sleep } from '../harness/tools';
import { BlobFile, generateBlob, pushBlobFile, pushSmallImage } from './blobs';
import { renderChart } from './chart';
import { paced, pull, storm, Transfer, verifyDigest, writeNewFile, wrk } from './load';
import { atExit, killAllSync, waitForQuiet } from './processes';
import {
  coldTotalTarget,
  formatNumber,
  manifestP99Target,
  median,
  oneFetchTarget,
  renderMarkdown,
  Row,
  rssTarget,
  throughputTarget,
  ttfbTarget,
} from './report';
import { RssSampler } from './rss';
import { scrubCost } from './scrub-cost';
import { wanPhases } from './wan-phases';
import { wanAndWorkers } from './wan-workers';
import { zeroCopyFront } from './zero-copy-front';
import { startOurCache, startRegistry, startStaticServer, System } from './systems';

const MiB = 2 ** 20;
const ROOT = resolve(__dirname, '..');
const REPO = 'bench/blobs';
const IMAGE_REPO = 'bench/image';
const MANIFEST_RATE = 500;

interface Plan {
  readonly mode: string;
  readonly smallBytes: number;
  readonly warmBytes: number;
  readonly coldBytes: number;
  readonly stormBytes: number;
  readonly stormClients: number;
  readonly wrkSeconds: number;
  readonly pacedSeconds: number;
  /**
   * Rows 1 and 2 are measured this many times, the systems in a rotating order, and the median is reported: on this
   * shared VM one figure can be off by 2× (ours, row 1a: 424 MiB/s in one run, 848 in a separate one an hour later).
   */
  readonly rounds: number;
}

const FULL: Plan = {
  mode: 'full',
  smallBytes: MiB,
  warmBytes: 64 * MiB,
  coldBytes: 1024 * MiB,
  stormBytes: 64 * MiB,
  stormClients: 100,
  wrkSeconds: 3,
  pacedSeconds: 10,
  rounds: 3,
};
const QUICK: Plan = {
  mode: 'quick',
  smallBytes: MiB,
  warmBytes: 16 * MiB,
  coldBytes: 64 * MiB,
  stormBytes: 8 * MiB,
  stormClients: 100,
  wrkSeconds: 2,
  pacedSeconds: 3,
  rounds: 2,
};

const startedAt = Date.now();
function log(message: string): void {
  process.stderr.write(`[bench +${((Date.now() - startedAt) / 1000).toFixed(1)}s] ${message}\n`);
}

/** sync(1), bounded: writes every dirty page out, so the next measurement does not pay for an earlier one's writes. */
function flushDirtyPages(): void {
  execFileSync('sync', [], { timeout: 60_000 });
}

const sizeLabel = (bytes: number) => (bytes >= 1024 * MiB ? `${bytes / (1024 * MiB)} GiB` : `${bytes / MiB} MiB`);
const describe = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Per system figures of one measurement; an error instead of a figure when that step failed. */
type Figures = Partial<Record<'reference' | 'ours' | 'raw' | 'floor', number>>;

/** `items` rotated left by `n`: round n measures the systems in another order, so none is always first or last. */
const rotate = <T>(items: readonly T[], n: number): T[] => items.map((_, i) => items[(i + n) % items.length]);

class Collector {
  readonly errors: string[] = [];
  readonly observations: string[] = [];

  observe(note: string): void {
    this.observations.push(note);
    log(note);
  }

  /** Runs a step for one system; a failure is recorded and the benchmark goes on with the other systems. */
  async step<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
    try {
      return await fn();
    } catch (err) {
      this.errors.push(`${what}: ${describe(err)}`);
      log(`FAILED ${what}: ${describe(err)}`);
      return undefined;
    }
  }
}

/** Set by run.sh, which builds the CLI from this commit rather than from the work tree. */
let commitFlag: string | undefined;

function gitCommit(): string {
  if (commitFlag) return `${commitFlag} (CLI built from this commit)`;
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'lib', 'bin'], { cwd: ROOT, encoding: 'utf8' }).trim();
    return dirty ? `${sha} (with uncommitted changes under lib/ or bin/)` : sha;
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const plan = args.includes('--quick') ? QUICK : FULL;
  const profileDir = args.includes('--profile') ? join(ROOT, 'bench/results/prof') : undefined;
  const cli = args.find((a) => a.startsWith('--cli='))?.slice('--cli='.length);
  commitFlag = args.find((a) => a.startsWith('--commit='))?.slice('--commit='.length);
  for (const tool of ['wrk', 'curl', 'docker-registry']) requireTool(tool);
  if (args.includes('--wan-workers')) return wanAndWorkers(cli && resolve(cli), gitCommit(), args.includes('--quick'));
  if (args.includes('--zero-copy-front')) return zeroCopyFront(cli && resolve(cli), gitCommit(), args.includes('--quick'));
  const phaseRounds = args.find((a) => a.startsWith('--wan-phases'));
  if (phaseRounds) return wanPhases(cli && resolve(cli), gitCommit(), Number(phaseRounds.split('=')[1] ?? 3), profileDir);
  const scrubRounds = args.find((a) => a.startsWith('--scrub-cost'));
  if (scrubRounds) {
    await scrubCost(cli && resolve(cli), gitCommit(), Number(scrubRounds.split('=')[1] ?? 1));
    return 0;
  }

  const work = mkdtempSync(join(tmpdir(), 'dtr-cache-bench-'));
  atExit(() => rmSync(work, { recursive: true, force: true }));
  const collector = new Collector();
  const started: System[] = [];
  const figures = new Map<string, Figures>();
  const put = (key: string, system: keyof Figures, value: number | undefined) => {
    if (value !== undefined) figures.set(key, { ...figures.get(key), [system]: value });
  };
  // Rows measured in rounds: every figure, then their median (put) once all rounds ran.
  const samples = new Map<string, Partial<Record<keyof Figures, number[]>>>();
  const sample = (key: string, system: keyof Figures, value: number | undefined) => {
    if (value === undefined) return;
    const row = samples.get(key) ?? {};
    samples.set(key, { ...row, [system]: [...(row[system] ?? []), value] });
  };
  const putMedians = () => {
    for (const [key, row] of samples) {
      for (const [system, values] of Object.entries(row) as [keyof Figures, number[]][]) {
        put(key, system, median(values));
        if (values.length > 1)
          collector.observe(
            `row ${key} ${system}: ${values.map((v) => formatNumber(v)).join(', ')} (median ${formatNumber(median(values))})`,
          );
      }
    }
  };
  let direct: Transfer | undefined;
  let manifestDigest = '';
  try {
    log(
      `${plan.mode} run: generating blobs of ${[plan.smallBytes, plan.warmBytes, plan.coldBytes, plan.stormBytes].map(sizeLabel).join(', ')}`,
    );
    const blobDir = join(work, 'blobs');
    mkdirSync(blobDir);
    const small = await generateBlob(blobDir, 'small', plan.smallBytes);
    const warm = await generateBlob(blobDir, 'warm', plan.warmBytes);
    const colds: BlobFile[] = [];
    for (let round = 0; round < plan.rounds; round++) colds.push(await generateBlob(blobDir, `cold${round}`, plan.coldBytes));
    const cold = colds[0];
    const stormBlob = await generateBlob(blobDir, 'storm', plan.stormBytes);

    log('starting the upstream (distribution 2.8) and seeding it');
    const upstream = await startRegistry('upstream');
    started.push(upstream);
    for (const blob of [small, warm, ...colds, stormBlob]) await pushBlobFile(upstream.url, REPO, blob);
    const image = await pushSmallImage(upstream.url, IMAGE_REPO, 'v1');
    manifestDigest = image.digest;

    log('starting distribution 2.8 in proxy mode, our cache and the raw static server');
    const reference = await startRegistry('reference', upstream.url);
    started.push(reference);
    const ours = await collector.step('starting our cache', () => startOurCache(upstream.url, profileDir, cli && resolve(cli)));
    if (ours) started.push(ours);
    const raw = await startStaticServer(blobDir);
    started.push(raw);

    const caches: [keyof Figures, System][] = [['reference', reference]];
    if (ours) caches.push(['ours', ours]);
    const samplers = new Map(caches.map(([key, system]) => [key, new RssSampler(system.pid ?? 0)]));
    const blobUrl = (system: System, blob: BlobFile) =>
      system === raw ? `${raw.url}/${blob.name}` : `${system.url}/v2/${REPO}/blobs/${blob.digest}`;
    const timeoutFor = (bytes: number) => 60_000 + Math.ceil(bytes / MiB) * 100;
    // Before each measurement the disk has no dirty pages left (their writeback takes CPU here) and every system is
    // idle: none is measured while the machine still works off an earlier step.
    const pids = started.map((s) => s.pid).filter((pid): pid is number => pid !== undefined);
    const quiet = async (what: string) => {
      flushDirtyPages();
      if (!(await waitForQuiet(pids))) collector.observe(`${what}: the systems were still busy after 60 s; measured anyway`);
    };

    // 1. Warm blob throughput (after one filling GET, whose bytes are checked against the digest).
    for (const [key, cache] of caches) {
      for (const blob of [warm, small]) {
        await collector.step(`${key}: filling ${blob.name}`, () => verifyDigest(blobUrl(cache, blob), blob.digest, timeoutFor(blob.size)));
      }
    }
    const servers: [keyof Figures, System][] = [...caches, ['raw', raw]];
    for (let round = 0; round < plan.rounds; round++) {
      for (const [key, system] of rotate(servers, round)) {
        for (const [row, blob, connections] of [
          ['1a', warm, 1],
          ['1b', warm, 16],
          ['1c', small, 16],
        ] as const) {
          await quiet(`row ${row} ${key}`);
          log(
            `row ${row} round ${round + 1}/${plan.rounds}: ${key}, ${sizeLabel(blob.size)} blob, ${connections} client(s), ${plan.wrkSeconds} s`,
          );
          const r = await collector.step(`row ${row} ${key}`, () => wrk(blobUrl(system, blob), connections, plan.wrkSeconds));
          sample(row, key, r?.mibPerSecond);
        }
      }
    }

    // 2. Cold pull of a big blob (a new one each round), against a direct pull from the upstream with the same client,
    // and against writing as many bytes to a new file on the caches' filesystem (dd): the floor of any cache that
    // stores what it serves (on this VM, writing new page-cache pages costs ~2 s of CPU per GiB; rewriting cached
    // ones, a tenth of that).
    const directPulls: Transfer[] = [];
    for (let round = 0; round < plan.rounds; round++) {
      const blob = colds[round];
      for (const [key, system] of rotate([...caches, ['direct', upstream] as [string, System]], round)) {
        await quiet(`row 2 ${key}`);
        log(
          `row 2 round ${round + 1}/${plan.rounds}: cold ${sizeLabel(blob.size)} pull ${key === 'direct' ? 'from the upstream' : `through ${key}`}`,
        );
        const t = await collector.step(`row 2 ${key}`, () => pull(blobUrl(system, blob), blob.size, timeoutFor(blob.size) * 1.5));
        if (key === 'direct') {
          if (t) directPulls.push(t);
        } else {
          sample('2a', key as keyof Figures, t?.ttfbMs);
          sample('2b', key as keyof Figures, t?.totalMs);
        }
      }
      await quiet('row 2 floor');
      sample('2c', 'floor', await collector.step('row 2 floor', () => writeNewFile(blob.path, join(work, 'floor'))));
    }
    putMedians();
    if (directPulls.length) {
      direct = {
        status: 200,
        bytes: cold.size,
        ttfbMs: median(directPulls.map((t) => t.ttfbMs)),
        totalMs: median(directPulls.map((t) => t.totalMs)),
      };
      if (directPulls.length > 1)
        collector.observe(
          `row 2 direct: TTFB ${directPulls.map((t) => formatNumber(t.ttfbMs)).join(', ')} ms, total ${directPulls.map((t) => formatNumber(t.totalMs)).join(', ')} ms (medians used)`,
        );
    }

    // 3. Simultaneous cold requests for one blob that no cache has seen: upstream GETs and total time.
    for (const [key, cache] of caches) {
      await quiet(`row 3 ${key}`);
      log(`row 3: ${plan.stormClients} concurrent cold GETs of the ${sizeLabel(stormBlob.size)} blob through ${key}`);
      const before = upstreamGets(upstream, stormBlob.digest);
      const s = await collector.step(`row 3 ${key}`, () =>
        storm(blobUrl(cache, stormBlob), plan.stormClients, stormBlob.size, timeoutFor(stormBlob.size * 4)),
      );
      put('3b', key, s?.wallMs);
      // The upstream logs a GET when it ends, and a cache may still be filling after its clients are done.
      const gets = await settledCount(() => upstreamGets(upstream, stormBlob.digest) - before);
      put('3a', key, gets);
      await collector.step(`row 3 ${key}: cached copy`, () =>
        verifyDigest(blobUrl(cache, stormBlob), stormBlob.digest, timeoutFor(stormBlob.size)),
      );
    }

    // 5. Peak RSS over rows 1-3 (VmHWM counts from process start, which is before row 1).
    for (const [key, sampler] of samplers) {
      const memory = sampler.stop();
      put('5a', key, memory.peak / MiB);
      put('5b', key, memory.maxSampledRss / MiB);
    }

    // 4. Manifest by tag with a warm cache: fixed 500 req/s, then unpaced.
    const manifestUrl = (system: System) => `${system.url}/v2/${IMAGE_REPO}/manifests/v1`;
    for (const [key, cache] of caches) {
      await quiet(`row 4 ${key}`);
      log(`row 4: manifests through ${key}, ${MANIFEST_RATE} req/s for ${plan.pacedSeconds} s, then unpaced for ${plan.wrkSeconds} s`);
      // Steady state, as a cache in service: the tag cached and the process warmed up (JIT) by 1 s of the same load.
      await collector.step(`row 4 ${key}: warming`, () => paced(manifestUrl(cache), MANIFEST_RATE, 1, image.digest, image.mediaType));
      const p = await collector.step(`row 4 ${key} paced`, () =>
        paced(manifestUrl(cache), MANIFEST_RATE, plan.pacedSeconds, image.digest, image.mediaType),
      );
      put('4a', key, p?.p50Ms);
      put('4b', key, p?.p99Ms);
      put('4c', key, p?.achievedRps);
      if (p?.unfinished)
        collector.observe(
          `row 4 ${key}: ${p.unfinished} of ${p.sent} paced requests were unanswered 5 s after the last was due; counted in p50/p99 with their wait so far`,
        );
      const w = await collector.step(`row 4 ${key} unpaced`, () =>
        wrk(manifestUrl(cache), 16, plan.wrkSeconds, { accept: image.mediaType }),
      );
      put('4d', key, w?.requestsPerSecond);
      put('4e', key, w?.p99Ms);
    }
    // The paced client's own floor on this machine: the same load on the raw static server, the manifest as a file.
    const manifest = await fetch(manifestUrl(upstream), { headers: { accept: image.mediaType } }).then((r) => r.arrayBuffer());
    writeFileSync(join(blobDir, 'manifest'), Buffer.from(manifest));
    await quiet('row 4 raw');
    await collector.step('row 4 raw: warming', () => paced(`${raw.url}/manifest`, MANIFEST_RATE, 1, '-', image.mediaType));
    const floor = await collector.step('row 4 raw paced', () =>
      paced(`${raw.url}/manifest`, MANIFEST_RATE, plan.pacedSeconds, '-', image.mediaType),
    );
    put('4b', 'raw', floor?.p99Ms);
  } catch (err) {
    collector.errors.push(describe(err));
    log(`FAILED: ${describe(err)}`);
  } finally {
    log('stopping everything');
    for (const system of started.reverse()) await system.stop().catch((err: unknown) => log(`stopping ${system.name}: ${describe(err)}`));
    rmSync(work, { recursive: true, force: true });
  }

  const rows = buildRows(plan, figures, direct);
  writeResults(plan, rows, collector, manifestDigest);
  return collector.errors.length ? 1 : 0;
}

function upstreamGets(upstream: System & { registry?: { blobGets(): { path: string }[] } }, digest: string): number {
  return upstream.registry?.blobGets().filter((e) => e.path.includes(digest)).length ?? 0;
}

/** Polls count() until it has not changed for 1 s (at most 20 s): the settled number. */
async function settledCount(count: () => number): Promise<number> {
  let last = count();
  let stableSince = Date.now();
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && Date.now() - stableSince < 1_000) {
    await sleep(100);
    const now = count();
    if (now !== last) {
      last = now;
      stableSince = Date.now();
    }
  }
  return last;
}

function buildRows(plan: Plan, figures: Map<string, Figures>, direct: Transfer | undefined): Row[] {
  const f = (key: string) => figures.get(key) ?? {};
  const both = (key: string) => ({ reference: f(key).reference, ours: f(key).ours });
  const rawBaseline = (key: string) => (f(key).raw !== undefined ? { label: 'raw', value: f(key).raw! } : undefined);
  const warm = sizeLabel(plan.warmBytes);
  const cold = sizeLabel(plan.coldBytes);
  return [
    {
      id: '1a',
      measure: `warm ${warm} blob, 1 client`,
      unit: 'MiB/s',
      higherIsBetter: true,
      ...both('1a'),
      baseline: rawBaseline('1a'),
      target: throughputTarget,
    },
    {
      id: '1b',
      measure: `warm ${warm} blob, 16 clients`,
      unit: 'MiB/s',
      higherIsBetter: true,
      ...both('1b'),
      baseline: rawBaseline('1b'),
      target: throughputTarget,
    },
    {
      id: '1c',
      measure: `warm ${sizeLabel(plan.smallBytes)} blob, 16 clients`,
      unit: 'MiB/s',
      higherIsBetter: true,
      ...both('1c'),
      baseline: rawBaseline('1c'),
    },
    {
      id: '2a',
      measure: `cold ${cold} pull, time to first byte`,
      unit: 'ms',
      higherIsBetter: false,
      ...both('2a'),
      baseline: direct ? { label: 'direct', value: direct.ttfbMs } : undefined,
      target: ttfbTarget,
    },
    {
      id: '2b',
      measure: `cold ${cold} pull, total`,
      unit: 'ms',
      higherIsBetter: false,
      ...both('2b'),
      baseline: direct ? { label: 'direct', value: direct.totalMs } : undefined,
      target: coldTotalTarget,
    },
    {
      id: '2c',
      measure: `writing ${cold} to a new file on the caches' filesystem (dd, no cache): the storage floor of 2b`,
      unit: 'ms',
      higherIsBetter: false,
      baseline: f('2c').floor !== undefined ? { label: 'dd', value: f('2c').floor! } : undefined,
    },
    {
      id: '3a',
      measure: `${plan.stormClients} concurrent cold GETs of a ${sizeLabel(plan.stormBytes)} blob: upstream GETs`,
      unit: 'count',
      higherIsBetter: false,
      ...both('3a'),
      target: oneFetchTarget,
    },
    {
      id: '3b',
      measure: `${plan.stormClients} concurrent cold GETs of a ${sizeLabel(plan.stormBytes)} blob: total time`,
      unit: 'ms',
      higherIsBetter: false,
      ...both('3b'),
    },
    { id: '4a', measure: `manifest by tag at ${MANIFEST_RATE} req/s: p50`, unit: 'ms', higherIsBetter: false, ...both('4a') },
    {
      id: '4b',
      measure: `manifest by tag at ${MANIFEST_RATE} req/s: p99`,
      unit: 'ms',
      higherIsBetter: false,
      ...both('4b'),
      baseline: rawBaseline('4b'),
      target: manifestP99Target,
    },
    { id: '4c', measure: `manifest by tag at ${MANIFEST_RATE} req/s: achieved rate`, unit: 'req/s', higherIsBetter: true, ...both('4c') },
    { id: '4d', measure: 'manifest by tag, unpaced (16 connections): max rate', unit: 'req/s', higherIsBetter: true, ...both('4d') },
    { id: '4e', measure: 'manifest by tag, unpaced (16 connections): p99', unit: 'ms', higherIsBetter: false, ...both('4e') },
    { id: '5a', measure: 'peak RSS during rows 1-3 (VmHWM)', unit: 'MiB', higherIsBetter: false, ...both('5a'), target: rssTarget },
    { id: '5b', measure: 'largest sampled RSS during rows 1-3 (VmRSS every 100 ms)', unit: 'MiB', higherIsBetter: false, ...both('5b') },
  ];
}

function writeResults(plan: Plan, rows: Row[], collector: Collector, manifestDigest: string): void {
  const errors = collector.errors;
  const dir = join(ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const info = {
    date: new Date().toISOString(),
    commit: gitCommit(),
    nproc: cpus().length,
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown cpu',
    mode: plan.mode,
    durationS: (Date.now() - startedAt) / 1000,
    notes: [
      'All systems on 127.0.0.1, each a separate process with fresh storage: upstream = Debian docker-registry (distribution 2.8) seeded with random blobs; reference = the same binary with proxy.remoteurl = the upstream (log level warn, access log off); ours = `node dist/bin/dtr-cache.js serve` with filesystem storage and default options (log level warn). Before each measurement sync(1) writes out the dirty pages earlier steps left and the benchmark waits (at most 60 s) until all its processes are idle (≤ 5 CPU ticks in 1 s), so no system is measured while the machine still works off an earlier step.',
      `Row 1: wrk (Debian) for ${plan.wrkSeconds} s per cell, 1 thread for 1 connection, else 2 threads; MiB/s = bytes read / duration. Every cache copy was first fetched once and its sha256 checked. Raw baseline: bench/static-server.ts, a minimal Node http server streaming the same file with fs.createReadStream (same runtime as our cache, no cache logic).`,
      `Row 2: curl, body to /dev/null; TTFB = time_starttransfer. Each round pulls a new ${sizeLabel(plan.coldBytes)} blob through each cache and directly from the upstream (direct), in a rotating order. Row 2c: dd copying the blob file to a new file on the same filesystem as the caches' storage, no fsync: what storing the blob costs here, whoever stores it.`,
      `Row 3: one curl process with ${plan.stormClients} parallel transfers opened at once (--parallel-immediate); upstream GETs counted from the upstream's access log after it settled (no change for 1 s); every transfer checked to be a full 200, and the cached copy's sha256 checked afterwards.`,
      `Row 4: manifest ${manifestDigest} by tag, Accept = its media type, after 1 s of warming at the same rate (the tag cached, the process warmed up). Paced: bench/paced-client.ts (undici, ${MANIFEST_RATE} req/s for ${plan.pacedSeconds} s, latency from each request's due time, wrk2-style; docker-content-digest checked on every answer). Unpaced: wrk, 16 connections, ${plan.wrkSeconds} s. Baseline of 4b: the same paced client against bench/static-server.ts serving the manifest bytes as a file (no digest header to check): the floor this client measures on this machine.`,
      'Row 5: /proc/<pid>/status of the cache process: VmHWM read after row 3 (the kernel peak since start), VmRSS sampled every 100 ms during rows 1-3.',
      `Rows 1 and 2 ran ${plan.rounds} rounds, the systems in a rotating order; the table shows each figure's median, and the figures of every round follow below.`,
      'Ratios are ours ÷ reference; "met?" judges the targets of issue 8 on this run.',
      ...collector.observations,
    ],
  };
  writeFileSync(join(dir, 'latest.md'), renderMarkdown(info, rows, errors));
  writeFileSync(
    join(dir, 'latest.svg'),
    renderChart(
      'DTR cache vs distribution 2.8 proxy',
      `${info.date} · commit ${info.commit} · nproc ${info.nproc} · node ${info.node} · ${plan.mode}`,
      rows,
    ),
  );
  log(`wrote bench/results/latest.md and latest.svg${errors.length ? ` (${errors.length} failed step(s))` : ''}`);
}

process.on('exit', killAllSync);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    log(`${signal}: stopping everything`);
    killAllSync();
    process.exit(130);
  });
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    log(`FAILED: ${describe(err)}`);
    process.exitCode = 1;
  },
);
