/**
 * Bookkeeping cost at scale (issue 23): CPU seconds and storage operations per hour of steady-state eviction work
 * for one site of two replicas, on a generated filesystem store (bench/store-generate.ts), and how long a blob past
 * `blobttl` takes to go.
 *
 *   node -r ts-node/register/transpile-only bench/bookkeeping.ts --root=<store> --lib=<lib dir> --mode=before|after
 *
 * `--lib` is the `lib` directory of the code measured (the tree of a commit extracted with git archive), so the same
 * harness measures before and after. `before` (the sweeper up to issue 23): one `sweep()` over the whole store, which
 * every replica ran every `sweepinterval`; per hour = one sweep x 3600 s / interval x 2 replicas. `after`: two
 * Sweepers on the store (one takes the lease) ticked on a simulated clock, one lease period per tick, through one
 * full cycle of passes after the first passes learnt every shard's size; per hour = the totals / simulated hours.
 * CPU is process.cpuUsage() (user + system) of this process, which runs the work of both replicas.
 * Storage operations are driver calls, each listed object counted as one (the filesystem driver stats each, after a
 * readdir of its directory).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const HOUR = 3_600_000;
const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const root = resolve(args.root);
const lib = resolve(args.lib);
const mode = args.mode as 'before' | 'after';
const ttlMs = Number(args.ttl ?? 7 * 24 * HOUR);
const intervalMs = Number(args.interval ?? 600_000);
const maxSizeBytes = args.maxsize ? Number(args.maxsize) : undefined;

/* eslint-disable @typescript-eslint/no-require-imports, @typescript-eslint/no-explicit-any */
const { FilesystemDriver } = require(join(lib, 'cache/storage/filesystem')) as any;
const sweeperModule = require(join(lib, 'cache/sweeper')) as any;

const ops: Record<string, number> = {};
const count = (name: string, n = 1) => void (ops[name] = (ops[name] ?? 0) + n);

/** The real driver with every call counted. */
function counted(): any {
  const driver = new FilesystemDriver({ rootdirectory: root });
  return new Proxy(driver, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function' || prop === 'constructor') return value;
      if (prop === 'list')
        return async function* (prefix: string) {
          count('list');
          for await (const item of value.call(target, prefix)) {
            count('listed');
            yield item;
          }
        };
      return (...a: unknown[]) => {
        count(String(prop));
        return value.apply(target, a);
      };
    },
  });
}

function cpuSeconds(since: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
}
const total = (o: Record<string, number>) => Object.entries(o).reduce((s, [k, n]) => s + (k === 'list' ? 0 : n), 0);

async function before(): Promise<Record<string, unknown>> {
  const driver = counted();
  const start = process.cpuUsage();
  const wall = Date.now();
  const result = await sweeperModule.sweep(driver, { blobTtlMs: ttlMs, maxSizeBytes, isBusy: () => false, staleWriteAgeMs: 1_860_000 });
  const cpu = cpuSeconds(start);
  const perHour = (3600_000 / intervalMs) * 2;
  return {
    mode,
    sweepCpuSeconds: cpu,
    sweepWallSeconds: (Date.now() - wall) / 1000,
    sweepOps: total(ops),
    ops: { ...ops },
    evicted: result.evicted.length,
    storedBytes: result.storedBytes,
    cpuSecondsPerHourPerSite: cpu * perHour,
    coreShare: (cpu * perHour) / 3600,
    opsPerSecondPerSite: (total(ops) * perHour) / 3600,
    // An expired blob goes at the next sweep of any replica: within one interval plus one sweep's duration.
    expiredGoneWithinMs: intervalMs + (Date.now() - wall),
  };
}

async function after(): Promise<Record<string, unknown>> {
  let now = Date.now();
  const clock = () => now;
  const planted = new Set<string>();
  const options = { blobTtlMs: ttlMs, maxSizeBytes, isBusy: () => false, staleWriteAgeMs: 1_860_000, now: clock };
  const replicas = [new sweeperModule.Sweeper(counted(), intervalMs, options), new sweeperModule.Sweeper(counted(), intervalMs, options)];
  const renew: number = replicas[0].leaseRenewMs;
  const passesPerCycle: number = replicas[0].passesPerCycle;
  let plantedAt = now;
  const gone: number[] = [];
  let maxPassCpu = 0;
  let passes = 0;
  const tickAll = async () => {
    for (const r of replicas) {
      const start = process.cpuUsage();
      const result = await r.tick();
      if (!result) continue;
      passes++;
      maxPassCpu = Math.max(maxPassCpu, cpuSeconds(start));
      for (const e of result.evicted) if (planted.delete(e.key)) gone.push(now - plantedAt);
    }
    now += renew;
  };
  // Warm-up: the first passes learn every shard's size (a store from before issue 23: once per store).
  const warmStart = process.cpuUsage();
  const warmOps = { ...ops };
  // Until the holder's state knows every shard (a replica without the lease keeps no state).
  const unknownShards = () => !replicas.some((r) => r.state && !r.state.shards.includes(null));
  while (maxSizeBytes !== undefined && unknownShards()) await tickAll();
  const bootstrapPasses = passes;
  const warmCpu = cpuSeconds(warmStart);
  const warmupOps = total(ops) - total(warmOps);
  // Steady state: one full cycle, with 20 blobs planted that expire right now (simulated), in random shards.
  plantedAt = now;
  for (let i = 0; i < 20; i++) {
    const hex = createHash('sha256').update(`planted${i}-${now}`).digest('hex');
    const key = `blobs/sha256/${hex.slice(0, 2)}/${hex}/data`;
    mkdirSync(join(root, key, '..'), { recursive: true });
    writeFileSync(join(root, key), 'x');
    utimesSync(join(root, key), new Date(now - ttlMs), new Date(now - ttlMs));
    planted.add(key);
  }
  for (const k of Object.keys(ops)) delete ops[k];
  passes = 0;
  maxPassCpu = 0;
  const start = process.cpuUsage();
  const simStart = now;
  const wall = Date.now();
  while (passes < passesPerCycle) await tickAll();
  const cpu = cpuSeconds(start);
  const hours = (now - simStart) / HOUR;
  const leaders = replicas.filter((r) => r.isLeader).length;
  for (const r of replicas) await r.stop();
  return {
    mode,
    passesPerCycle,
    leaders,
    simulatedHours: hours,
    cycleCpuSeconds: cpu,
    cycleWallSeconds: (Date.now() - wall) / 1000,
    maxPassCpuSeconds: maxPassCpu,
    cycleOps: total(ops),
    ops: { ...ops },
    cpuSecondsPerHourPerSite: cpu / hours,
    coreShare: cpu / hours / 3600,
    opsPerSecondPerSite: total(ops) / hours / 3600,
    warmupPasses: bootstrapPasses,
    warmupCpuSeconds: warmCpu,
    warmupOps,
    // Of 20 blobs planted at the cycle's start to expire then: how many went within the cycle, and the latest after expiry.
    expiredGone: { count: gone.length, maxHoursPastTtl: Math.max(...gone) / HOUR, maxTtlFraction: Math.max(...gone) / ttlMs },
  };
}

(mode === 'before' ? before() : after())
  .then((r) => process.stdout.write(`${JSON.stringify(r)}\n`))
  .catch((err) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
