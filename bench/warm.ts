/**
 * The warm rows, the same for every bench that has them (bench/wan-workers.ts, bench/zero-copy-front.ts): each
 * system first fills the blob and serves it once from storage, then wrk with 16 connections measures it for
 * `seconds`, in `rounds` rounds in rotating order, each on a quiet machine; the peak RSS of each serving process.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireTool } from '../harness/tools';
import { verifyDigest, wrk } from './load';
import { cpuTicks, machineTicks } from './processes';
import { formatNumber, median, type Target } from './report';
import { readMemory } from './rss';
import type { System, TlsFiles } from './systems';

const MiB = 2 ** 20;
export const WARM_CLIENTS = 16;

/**
 * Blob size, wrk's seconds and the rounds of a full run, or of a quick one (for building and debugging). Rounds of one
 * system spread 1.2-1.4× on this shared machine (bench/results/wan-workers.md), so a bench whose time bound allows
 * asks for more than the default.
 */
export const warmPlan = (quick: boolean, fullRounds = 3) => ({
  blobBytes: (quick ? 16 : 64) * MiB,
  seconds: quick ? 2 : 5,
  rounds: quick ? 1 : fullRounds,
});

export const warmTarget: Target = {
  text: '≥ 1.2× ref',
  met: (r) => (r.ours !== undefined && r.reference !== undefined ? r.ours >= 1.2 * r.reference : undefined),
};

/** The worker processes of a `serve --workers N` primary or an nginx master (none for a single process). */
export function workerPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Every process serving for `system`: its workers, or itself when it has none. */
export function servingPids(system: System): number[] {
  const workers = workerPids(system.pid ?? 0);
  return workers.length ? workers : [system.pid ?? 0];
}

/** Peak RSS (VmHWM since start, MiB) of each serving process of `system`, and of its primary when it has workers. */
export function peakRss(system: System, primaryName = 'primary'): { peak: number; text: string } {
  const peak = (pid: number) => (readMemory(pid)?.peakBytes ?? NaN) / MiB;
  const workers = servingPids(system).map(peak);
  const primary = workerPids(system.pid ?? 0).length ? `; ${primaryName} ${formatNumber(peak(system.pid!))} MiB` : '';
  return { peak: Math.max(...workers), text: `peak RSS of each worker ${workers.map((p) => formatNumber(p)).join(', ')} MiB${primary}` };
}

export function selfSignedCertificate(dir: string): TlsFiles {
  const certificate = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync(requireTool('openssl'), [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', certificate, '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
  ], { stdio: 'ignore' }); // prettier-ignore
  return { certificate, key };
}

/** A system in the warm rows: `id` names its samples (systems with one id are pooled, e.g. one reference per row). */
export interface WarmSystem {
  readonly id: string;
  readonly system: System;
}

export interface WarmRun {
  /** The blob's URL on a system. */
  readonly url: (system: System) => string;
  readonly digest: string;
  readonly timeoutMs: number;
  readonly rounds: number;
  readonly seconds: number;
  /** Waits until every started process is idle. */
  readonly quiet: (what: string) => Promise<void>;
  /** Runs a step; a failure is recorded by the caller and gives undefined. */
  readonly step: <T>(what: string, fn: () => Promise<T>) => Promise<T | undefined>;
  readonly log: (message: string) => void;
}

/**
 * One round of one system: throughput, the CPU its serving processes and wrk spent per MiB (all cores together), and
 * how busy the machine's cores were. Server and client share the cores: with the machine near 100 % busy, the rate is
 * bound by their CPU per MiB together, about (cores × 1000) / (server + client) MiB/s.
 */
export interface WarmSample {
  readonly mibPerSecond: number;
  readonly cpuMsPerMiB: number;
  readonly clientCpuMsPerMiB: number;
  /** Busy share of all cores during the round, in %. */
  readonly machineBusyPercent: number;
}

/** A row's rounds for the report's notes: each figure of each round, and their medians. */
export function describeSamples(samples: readonly WarmSample[]): string {
  const list = (values: number[]) => `${values.map((v) => formatNumber(v)).join(', ')} (median ${formatNumber(median(values))})`;
  return [
    `${list(samples.map((s) => s.mibPerSecond))} MiB/s`,
    `server CPU ${list(samples.map((s) => s.cpuMsPerMiB))} ms per MiB`,
    `wrk CPU ${list(samples.map((s) => s.clientCpuMsPerMiB))} ms per MiB`,
    `cores busy ${list(samples.map((s) => s.machineBusyPercent))} %`,
  ].join('; ');
}

/** Every round's sample, by id. */
export async function warmRows(systems: readonly WarmSystem[], run: WarmRun): Promise<Map<string, WarmSample[]>> {
  for (const { id, system } of systems) {
    // Warm every worker's page cache and JIT alike: one checked GET fills, a second is a hit.
    await run.step(`row ${id} ${system.name}: filling`, async () => {
      await verifyDigest(run.url(system), run.digest, run.timeoutMs);
      await verifyDigest(run.url(system), run.digest, run.timeoutMs);
    });
  }
  const samples = new Map<string, WarmSample[]>();
  const cpu = (system: System) => servingPids(system).reduce((total, pid) => total + (cpuTicks(pid) ?? NaN), 0) * 10;
  for (let round = 0; round < run.rounds; round++) {
    for (let i = 0; i < systems.length; i++) {
      const { id, system } = systems[(i + round) % systems.length];
      await run.quiet(`row ${id} ${system.name}`);
      run.log(`row ${id} round ${round + 1}/${run.rounds}: ${system.name}, ${WARM_CLIENTS} clients, ${run.seconds} s`);
      const before = cpu(system);
      const machineBefore = machineTicks();
      const r = await run.step(`row ${id} ${system.name}`, () => wrk(run.url(system), WARM_CLIENTS, run.seconds));
      const machine = machineTicks();
      const mib = (r?.bytes ?? 0) / MiB;
      const sample = r && {
        mibPerSecond: r.mibPerSecond,
        cpuMsPerMiB: (cpu(system) - before) / mib,
        clientCpuMsPerMiB: r.clientCpuMs / mib,
        machineBusyPercent: (100 * (machine.busy - machineBefore.busy)) / (machine.total - machineBefore.total),
      };
      if (sample) samples.set(id, [...(samples.get(id) ?? []), sample]);
    }
  }
  return samples;
}
