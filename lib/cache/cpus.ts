/**
 * How many CPUs this process may use: `os.availableParallelism()` (the CPU affinity mask), lowered to the cgroup's
 * CPU quota when one is set (`docker run --cpus`, a swarm service's `limits.cpus`): cgroup v2 `cpu.max`, or v1
 * `cpu.cfs_quota_us` / `cpu.cfs_period_us`. A fractional quota rounds down (at least 1), as Go's automaxprocs does:
 * more busy event loops than the quota only get throttled.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** Reads a file's text, or undefined when it is absent. */
export type ReadText = (path: string) => string | undefined;

const readText: ReadText = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};

/** The cgroup CPU quota in CPUs (e.g. 1.5), or undefined when there is none. */
export function cgroupCpuQuota(read: ReadText = readText): number | undefined {
  const v2 = read('/sys/fs/cgroup/cpu.max')?.trim().split(/\s+/);
  if (v2) return v2[0] === 'max' ? undefined : ratio(v2[0], v2[1] ?? '100000');
  for (const dir of ['/sys/fs/cgroup/cpu', '/sys/fs/cgroup/cpu,cpuacct']) {
    const quota = read(`${dir}/cpu.cfs_quota_us`)?.trim();
    if (quota !== undefined) return quota === '-1' ? undefined : ratio(quota, read(`${dir}/cpu.cfs_period_us`)?.trim() ?? '100000');
  }
  return undefined;
}

function ratio(quota: string, period: string): number | undefined {
  const q = Number(quota);
  const p = Number(period);
  return q > 0 && p > 0 ? q / p : undefined;
}

/** The CPUs this process may use: the smaller of the affinity mask and the cgroup quota (rounded down, at least 1). */
export function usableCpus(read: ReadText = readText, parallelism = availableParallelism()): number {
  const quota = cgroupCpuQuota(read);
  return Math.max(1, Math.min(parallelism, quota === undefined ? parallelism : Math.floor(quota)));
}
