/**
 * `npm run bench -- --wan-workers [--quick]`: the rows of one upstream fetch per site and of workers, ours against
 * distribution 2.8's proxy in one run; writes bench/results/wan-workers.md.
 * - a: two replicas on one shared store, 10 clients on each pulling the same cold blob from an upstream behind a
 *   WAN link (bench/wan-link.ts: 100 ms round trip, 32 MiB/s shared): total time against one direct pull over the
 *   same link, bytes that crossed the link ÷ the blob's size, and the upstream's blob GETs. Each replica of ours
 *   runs one worker (`--workers 1`) with the site's http.secret: the replicas share fills through the store's lease.
 * - b: warm blob, 16 clients, over TLS; c: the same over plain HTTP. Ours with 1 worker and with one per CPU.
 * - d: peak RSS per worker of ours after rows b and c.
 */
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { usableCpus } from '../lib/cache/cpus';
import { BenchRun } from './bench-run';
import { type BlobFile, generateBlob, pushBlobFile } from './blobs';
import { pull, storm, verifyDigest } from './load';
import { formatNumber, median, type Row, rssTarget, type Target } from './report';
import { startOurCache, startRegistry, type System } from './systems';
import { startWanLink } from './wan-link';
import { describeSamples, peakRss, selfSignedCertificate, warmPlan, warmRows, warmTarget } from './warm';

const MiB = 2 ** 20;
export const REPO = 'bench/wan';
export const RTT_MS = 100;
export const WAN_BYTES_PER_SECOND = 32 * MiB;
export const CLIENTS_PER_REPLICA = 10;

const log = (message: string) => process.stderr.write(`[bench wan-workers] ${message}\n`);

const totalTarget: Target = {
  text: '≤ 1.15× direct',
  met: (r) => (r.ours !== undefined && r.baseline ? r.ours <= 1.15 * r.baseline.value : undefined),
};
const wanBytesTarget: Target = { text: '≤ 1.05', met: (r) => (r.ours !== undefined ? r.ours <= 1.05 : undefined) };
const oneGetTarget: Target = { text: 'exactly 1', met: (r) => (r.ours !== undefined ? r.ours === 1 : undefined) };

export async function wanAndWorkers(cli: string | undefined, commit: string, quick: boolean): Promise<number> {
  const { blobBytes, seconds: wrkSeconds, rounds } = warmPlan(quick, 5);
  const workers = usableCpus();
  const work = mkdtempSync(join(tmpdir(), 'dtr-cache-bench-wan-'));
  const run = new BenchRun(log);
  const { notes, step, start, stop, quiet, loadBefore } = run;
  const figures = new Map<string, { reference?: number; ours?: number; baseline?: number }>();
  const put = (row: string, system: 'reference' | 'ours' | 'baseline', value: number | undefined) => {
    if (value !== undefined) figures.set(row, { ...figures.get(row), [system]: value });
  };
  /** The figure so far, or 0: rows a2 and a3 report the worst of the rounds. */
  const f0 = (row: string, system: 'reference' | 'ours') => figures.get(row)?.[system] ?? 0;
  const blobUrl = (base: string, blob: BlobFile) => `${base}/v2/${REPO}/blobs/${blob.digest}`;
  const timeoutFor = (bytes: number) => 120_000 + Math.ceil(bytes / MiB) * 1000;

  await run.main(work, async () => {
    log(`generating blobs of ${blobBytes / MiB} MiB; load average ${loadBefore}`);
    const blobDir = join(work, 'blobs');
    mkdirSync(blobDir);
    const coldOurs: BlobFile[] = [];
    for (let round = 0; round < rounds; round++) coldOurs.push(await generateBlob(blobDir, `cold-ours-${round}`, blobBytes));
    const [coldReference, warm] = [
      await generateBlob(blobDir, 'cold-reference', blobBytes),
      await generateBlob(blobDir, 'warm', blobBytes),
    ];
    const upstream = await start(startRegistry('upstream'));
    for (const blob of [...coldOurs, coldReference, warm]) await pushBlobFile(upstream.url, REPO, blob);
    const link = await startWanLink({ targetPort: upstream.registry.port, rttMs: RTT_MS, sharedBytesPerSecond: WAN_BYTES_PER_SECOND });
    const upstreamGets = (digest: string) => upstream.registry.blobGets().filter((e) => e.path.includes(digest)).length;

    // a. Two replicas on one store behind the WAN link, 10 clients on each, one cold blob. Ours and the direct pull
    // in `rounds` rounds (a fresh cold blob each), the reference (47 s a run) once.
    const aSamples: Record<'baseline' | 'ours' | 'reference', number[]> = { baseline: [], ours: [], reference: [] };
    const runs: ['ours' | 'reference', BlobFile][] = [
      ...coldOurs.map((b) => ['ours', b] as ['ours', BlobFile]),
      ['reference', coldReference],
    ];
    for (const [run, [key, blob]] of runs.entries()) {
      if (key === 'ours') {
        await quiet('row a direct');
        log(`row a round ${run + 1}/${rounds}: one direct pull over the link`);
        const direct = await step('row a direct', () => pull(blobUrl(link.url, warm), warm.size, timeoutFor(warm.size)));
        if (direct) aSamples.baseline.push(direct.totalMs);
      }
      const store = join(work, `shared-${key}-${run}`);
      const replicas =
        key === 'ours'
          ? await Promise.all(
              [0, 1].map(() => start(startOurCache(link.url, undefined, cli, { root: store, workers: 1, secret: 'bench-site-secret' }))),
            )
          : await Promise.all([0, 1].map((i) => start(startRegistry(`reference-${i}`, link.url, { root: store }))));
      await quiet(`row a ${key}`);
      log(`row a: ${key}, 2 replicas × ${CLIENTS_PER_REPLICA} clients, cold ${blob.size / MiB} MiB blob over the link`);
      const bytesBefore = link.bytesDown;
      const getsBefore = upstreamGets(blob.digest);
      const t0 = performance.now();
      const storms = await step(`row a ${key}`, () =>
        Promise.all(replicas.map((r) => storm(blobUrl(r.url, blob), CLIENTS_PER_REPLICA, blob.size, timeoutFor(blob.size * 4)))),
      );
      const wallMs = performance.now() - t0;
      // A fill may still be running after its clients are done: wait until the link is idle for 1 s.
      let last = -1;
      for (let i = 0; i < 60 && link.bytesDown !== last; i++) {
        last = link.bytesDown;
        await new Promise((r) => setTimeout(r, 1000));
      }
      if (storms) {
        // Timed as the direct pull is: curl's own clock (without starting and ending its process), the slowest transfer.
        const totalMs = Math.max(...storms.flatMap((s) => s.transfers.map((t) => t.totalMs)));
        aSamples[key].push(totalMs);
        notes.push(
          `row a ${key} run ${run + 1}: total ${formatNumber(totalMs)} ms (wall with curl's start and exit ${formatNumber(wallMs)})`,
        );
        put('a2', key, Math.max(f0('a2', key), (link.bytesDown - bytesBefore) / blob.size));
        put('a3', key, Math.max(f0('a3', key), upstreamGets(blob.digest) - getsBefore));
        await step(`row a ${key}: cached copy`, () => verifyDigest(blobUrl(replicas[1].url, blob), blob.digest, timeoutFor(blob.size)));
      }
      await stop(...replicas);
    }
    for (const key of ['baseline', 'ours', 'reference'] as const) {
      if (aSamples[key].length === 0) continue;
      put('a1', key, median(aSamples[key]));
      if (aSamples[key].length > 1)
        notes.push(
          `row a1 ${key}: ${aSamples[key].map((v) => formatNumber(v)).join(', ')} ms (median ${formatNumber(median(aSamples[key]))})`,
        );
    }
    await link.stop();

    // b, c. Warm blob, 16 clients: TLS and plain; ours with 1 worker and with one per CPU.
    const tls = selfSignedCertificate(work);
    const systems: { row: string; key: 'ours' | 'reference'; system: System }[] = [];
    for (const [suffix, secure] of [
      ['tls', true],
      ['plain', false],
    ] as const) {
      const reference = await start(startRegistry(`reference-${suffix}`, upstream.url, secure ? { tls } : {}));
      systems.push({ row: `${secure ? 'b' : 'c'}`, key: 'reference', system: reference });
      for (const n of [1, workers]) {
        const ours = await start(startOurCache(upstream.url, undefined, cli, { workers: n, tls: secure ? tls : undefined }));
        systems.push({ row: `${secure ? 'b' : 'c'}${n === 1 ? '1' : 'N'}`, key: 'ours', system: ours });
      }
    }
    const samples = await warmRows(
      systems.map(({ row, key, system }) => ({ id: `${row}/${key}`, system })),
      {
        url: (s) => blobUrl(s.url, warm),
        digest: warm.digest,
        timeoutMs: timeoutFor(warm.size),
        rounds,
        seconds: wrkSeconds,
        quiet,
        step,
        log,
      },
    );
    for (const [id, values] of samples) {
      const [row, key] = id.split('/') as [string, 'ours' | 'reference'];
      const mibPerSecond = median(values.map((v) => v.mibPerSecond));
      for (const target of key === 'reference' ? [`${row}1`, `${row}N`] : [row]) put(target, key, mibPerSecond);
      notes.push(`row ${row} ${key}: ${describeSamples(values)}`);
    }
    // d. Peak RSS per worker (VmHWM since start), after rows b and c.
    for (const { row, key, system } of systems) {
      if (key !== 'ours') continue;
      const { peak, text } = peakRss(system);
      put(`d${row}`, 'ours', peak);
      notes.push(`row d${row}: ${text}`);
    }
  });

  const f = (id: string) => figures.get(id) ?? {};
  const size = `${blobBytes / MiB} MiB`;
  const rows: Row[] = [
    {
      id: 'a1',
      measure: `2 replicas on one store × ${CLIENTS_PER_REPLICA} clients, cold ${size} blob over the WAN link: total`,
      unit: 'ms',
      higherIsBetter: false,
      reference: f('a1').reference,
      ours: f('a1').ours,
      baseline: f('a1').baseline !== undefined ? { label: 'direct', value: f('a1').baseline! } : undefined,
      target: totalTarget,
    },
    {
      id: 'a2',
      measure: 'the same: bytes over the WAN ÷ blob size',
      unit: '×',
      higherIsBetter: false,
      reference: f('a2').reference,
      ours: f('a2').ours,
      target: wanBytesTarget,
    },
    {
      id: 'a3',
      measure: 'the same: upstream blob GETs',
      unit: 'count',
      higherIsBetter: false,
      reference: f('a3').reference,
      ours: f('a3').ours,
      target: oneGetTarget,
    },
    ...(['b', 'c'] as const).flatMap((row) =>
      (['1', 'N'] as const).map((n) => ({
        id: `${row}${n}`,
        measure: `warm ${size} blob, 16 clients, ${row === 'b' ? 'TLS' : 'plain HTTP'}, ours with ${n === '1' ? '1 worker' : `${workers} workers`}`,
        unit: 'MiB/s',
        higherIsBetter: true,
        reference: f(`${row}${n}`).reference,
        ours: f(`${row}${n}`).ours,
        target: warmTarget,
      })),
    ),
    ...(['b1', 'bN', 'c1', 'cN'] as const).map((row) => ({
      id: `d${row}`,
      measure: `peak RSS per worker after rows b and c, ours as in row ${row}`,
      unit: 'MiB',
      higherIsBetter: false,
      ours: f(`d${row}`).ours,
      target: rssTarget,
    })),
  ];
  return run.report('wan-workers.md', commit, `${quick ? 'quick' : 'full'} --wan-workers`, rows, [
    `Row a: upstream distribution 2.8 behind bench/wan-link.ts (${RTT_MS} ms round trip, ${WAN_BYTES_PER_SECOND / MiB} MiB/s shared by all connections, each direction; no loss, no slow start). Two replicas of each system on one shared filesystem root, each with the link's URL as its upstream; ours with --workers 1 each and one http.secret (fill sharing through the store's lease, as DtrCacheSite configures replicas). ${CLIENTS_PER_REPLICA} parallel curl transfers on each replica at once; total = the slowest of the 20 transfers by curl's own clock (as the direct pull is timed); ours and direct in ${rounds} round(s), a fresh cold blob and store each (median shown; a2 and a3 the worst round), the reference once; bytes = what crossed the link target→client from the first request until it was idle for 1 s. Direct = one curl pull of the same size over the same link, just before each round of ours. The link has a 20 ms bottleneck buffer (bench/wan-link.ts).`,
    `Rows b, c: wrk, 16 connections, 2 threads, ${wrkSeconds} s, ${rounds} round(s) in rotating order (median shown; every figure below); TLS with a self-signed RSA-2048 certificate (TLS 1.3, wrk's OpenSSL). The reference figure is the same in rows x1 and xN. Ours with N = ${workers} workers (usableCpus() on this machine).`,
    'Row d: VmHWM of each worker process (/proc/<pid>/status) after rows b and c; the primary of a pool serves nothing and is listed below.',
  ]);
}
