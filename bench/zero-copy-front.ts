/**
 * `npm run bench -- --zero-copy-front [--quick]`: what removes Node's user-space copies from warm filesystem hits
 * (issue 20), side by side in one run: the warm rows of bench/wan-workers.ts (64 MiB blob, 16 clients, TLS and plain)
 * for distribution 2.8's proxy, ours with 1 worker and with one per CPU, and ours behind the nginx front of
 * bench/nginx-front.ts with 1 and 2 nginx workers (sendfile over plain HTTP, nginx's OpenSSL over TLS; ours, plain
 * and with 1 worker, answers the front's authorizing HEADs); over plain HTTP also ours with a sendfile addon
 * (bench/sendfile/, a prototype loaded with `node -r`). Writes bench/results/zero-copy-front.md.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { usableCpus } from '../lib/cache/cpus';
import { requireTool } from '../harness/tools';
import { BenchRun } from './bench-run';
import { generateBlob, pushBlobFile } from './blobs';
import { startNginxFront } from './nginx-front';
import { formatNumber, median, type Row, rssTarget } from './report';
import { startOurCache, startRegistry, type System } from './systems';
import { describeSamples, peakRss, selfSignedCertificate, WARM_CLIENTS, warmPlan, warmRows, warmTarget } from './warm';

const MiB = 2 ** 20;
const ROOT = resolve(__dirname, '..');
const REPO = 'bench/front';

const log = (message: string) => process.stderr.write(`[bench zero-copy-front] ${message}\n`);

/** The protocol and cipher a default OpenSSL client (as wrk) gets from `url`. */
function negotiated(url: string): string {
  const { host } = new URL(url);
  const out = execFileSync(requireTool('openssl'), ['s_client', '-connect', host], { input: '', timeout: 10_000, stdio: 'pipe' });
  return /New, (\S+), Cipher is (\S+)/.exec(out.toString())?.slice(1).join(' ') ?? 'unknown';
}

/**
 * The sendfile prototype (bench/sendfile/): the addon compiled into `dir`, and the node flags and environment that
 * load it into our cache. Each transfer holds a threadpool thread until it is sent: 16 clients and the cache's own
 * file operations need more than libuv's default 4.
 */
function buildSendfileAddon(dir: string) {
  const addon = join(dir, 'sendfile.node');
  const source = join(ROOT, 'bench/sendfile/sendfile.c');
  execFileSync(requireTool('gcc'), ['-O2', '-Wall', '-shared', '-fPIC', '-I/usr/include/node', '-o', addon, source], { stdio: 'pipe' });
  return {
    args: ['-r', join(ROOT, 'bench/sendfile/preload.js')],
    env: { DTR_BENCH_SENDFILE_ADDON: addon, UV_THREADPOOL_SIZE: '32' },
  };
}

interface Candidate {
  /** Row id without its b/c prefix: `1`, `N`, `F1`, `F2`, `S1`, `SN`. */
  readonly id: string;
  readonly label: string;
  readonly system: System;
}

export async function zeroCopyFront(cli: string | undefined, commit: string, quick: boolean): Promise<number> {
  requireTool('nginx');
  const { blobBytes, seconds, rounds } = warmPlan(quick);
  const workers = usableCpus();
  const work = mkdtempSync(join(tmpdir(), 'dtr-cache-bench-front-'));
  const run = new BenchRun(log);
  const { notes, step, start, quiet, loadBefore } = run;
  const figures = new Map<string, { reference?: number; ours?: number }>();
  const candidates: Record<'b' | 'c', Candidate[]> = { b: [], c: [] };

  await run.main(work, async () => {
    log(`generating a blob of ${blobBytes / MiB} MiB; load average ${loadBefore}`);
    const warm = await generateBlob(work, 'warm', blobBytes);
    const upstream = await start(startRegistry('upstream'));
    await pushBlobFile(upstream.url, REPO, warm);
    const tls = selfSignedCertificate(work);
    const references: Record<'b' | 'c', System | undefined> = { b: undefined, c: undefined };
    const sendfileNode = buildSendfileAddon(work);
    // The fronts' backend: ours as deployed behind them (plain HTTP on loopback), on a store root nginx reads.
    const storeRoot = join(work, 'front-store');
    const backend = await start(startOurCache(upstream.url, undefined, cli, { root: storeRoot, workers: 1 }));
    const backendAddr = new URL(backend.url).host;
    for (const row of ['b', 'c'] as const) {
      const secure = row === 'b' ? tls : undefined;
      references[row] = await start(startRegistry(`reference-${row}`, upstream.url, secure ? { tls: secure } : {}));
      for (const n of [1, workers]) {
        const system = await start(startOurCache(upstream.url, undefined, cli, { workers: n, tls: secure }));
        candidates[row].push({ id: n === 1 ? '1' : 'N', label: `ours with ${n} worker${n > 1 ? 's' : ''}`, system });
      }
      for (const n of [1, 2]) {
        const system = await start(startNginxFront(backendAddr, storeRoot, { workerProcesses: n, tls: secure }));
        candidates[row].push({ id: `F${n}`, label: `nginx front with ${n} worker${n > 1 ? 's' : ''} before ours`, system });
      }
      if (secure) continue;
      for (const n of [1, workers]) {
        const system = await start(startOurCache(upstream.url, undefined, cli, { workers: n, node: sendfileNode }));
        candidates[row].push({
          id: `S${n === 1 ? '1' : 'N'}`,
          label: `ours with ${n} worker${n > 1 ? 's' : ''} and the sendfile addon`,
          system,
        });
      }
    }
    const systems = (['b', 'c'] as const).flatMap((row) => [
      { id: `${row}/reference`, system: references[row]! },
      ...candidates[row].map((c) => ({ id: `${row}${c.id}`, system: c.system })),
    ]);
    const samples = await warmRows(systems, {
      url: (s) => `${s.url}/v2/${REPO}/blobs/${warm.digest}`,
      digest: warm.digest,
      timeoutMs: 120_000 + (blobBytes / MiB) * 1000,
      rounds,
      seconds,
      quiet,
      step,
      log,
    });
    for (const [id, values] of samples) {
      const [row, key] = id.split('/');
      const targets = key === 'reference' ? candidates[row as 'b' | 'c'].map((c) => `${row}${c.id}`) : [id];
      for (const target of targets)
        figures.set(target, {
          ...figures.get(target),
          [key === 'reference' ? 'reference' : 'ours']: median(values.map((v) => v.mibPerSecond)),
        });
      notes.push(`row ${id}: ${describeSamples(values)}`);
    }
    // Peak RSS per serving process (VmHWM since start): our workers, or the front's nginx workers.
    for (const row of ['b', 'c'] as const) {
      for (const c of candidates[row]) {
        const { peak, text } = peakRss(c.system, c.id.startsWith('F') ? 'master' : 'primary');
        figures.set(`d${row}${c.id}`, { ours: peak });
        notes.push(`row d${row}${c.id}: ${text}`);
      }
    }
    for (const { id, system } of systems.filter((s) => s.system.url.startsWith('https:')))
      notes.push(`row ${id}: TLS ${negotiated(system.url)} (openssl s_client with OpenSSL's default client offer, as wrk's)`);
    figures.set('dB', { ours: peakRss(backend).peak });
  });

  const size = `${blobBytes / MiB} MiB`;
  const f = (id: string) => figures.get(id) ?? {};
  const rows: Row[] = [
    ...(['b', 'c'] as const).flatMap((row) =>
      candidates[row].map((c) => ({
        id: `${row}${c.id}`,
        measure: `warm ${size} blob, ${WARM_CLIENTS} clients, ${row === 'b' ? 'TLS' : 'plain HTTP'}, ${c.label}`,
        unit: 'MiB/s',
        higherIsBetter: true,
        reference: f(`${row}${c.id}`).reference,
        ours: f(`${row}${c.id}`).ours,
        target: warmTarget,
      })),
    ),
    ...(['b', 'c'] as const).flatMap((row) =>
      candidates[row].map((c) => ({
        id: `d${row}${c.id}`,
        measure: `peak RSS per worker after the warm rows, as in row ${row}${c.id}${c.id.startsWith('F') ? ' (nginx workers)' : ''}`,
        unit: 'MiB',
        higherIsBetter: false,
        ours: f(`d${row}${c.id}`).ours,
        target: rssTarget,
      })),
    ),
    {
      id: 'dB',
      measure: "peak RSS of ours behind the fronts (1 worker, answers the fronts' HEADs and their misses)",
      unit: 'MiB',
      higherIsBetter: false,
      ours: f('dB').ours,
      target: rssTarget,
    },
  ];
  return run.report('zero-copy-front.md', commit, `${quick ? 'quick' : 'full'} --zero-copy-front`, rows, [
    `wrk, ${WARM_CLIENTS} connections, 2 threads, ${seconds} s, ${rounds} round(s) in rotating order over all twelve systems (median shown; every figure below), as rows b and c of bench/results/wan-workers.md (bench/warm.ts); TLS with a self-signed RSA-2048 certificate (TLS 1.3, wrk's OpenSSL). The reference figure is the same in the rows of one protocol. Ours with N = ${workers} workers (usableCpus() on this machine).`,
    `Rows F: ${requireTool('nginx')} (Debian's nginx, OpenSSL; kernel TLS is not available on this kernel, so TLS is nginx's user-space SSL_write) with the config of bench/nginx-front.ts: a GET of a blob in the store is authorized by auth_request (a HEAD of the same URI to ours, keep-alive) and sent from the file (sendfile on plain HTTP); ours behind the fronts is one process with 1 worker, plain HTTP on loopback, the same for all four fronts.`,
    `Rows S (plain HTTP only: no kernel TLS here): ours with bench/sendfile/preload.js, which replaces the blob handler's send() of the built CLI so that a whole stored blob needing no digest check goes to a plain socket by sendfile(2) in bench/sendfile/sendfile.c (N-API, built with gcc, one libuv threadpool thread per transfer waiting in poll(2) for the socket; UV_THREADPOOL_SIZE=32).`,
    'Rows d: VmHWM of each serving process (/proc/<pid>/status) after the warm rows: our workers, or the nginx workers of a front (its master and the primary of a pool are listed below).',
  ]);
}
