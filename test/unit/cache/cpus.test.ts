import { cgroupCpuQuota, usableCpus, type ReadText } from '../../../lib/cache/cpus';
import { SINGLE_PROCESS, workerAddr, workerSlotFromEnv, WORKER_SLOT_ENV } from '../../../lib/cache/worker-slot';

/** The files of a cgroup filesystem, as the kernel shows them. */
const files =
  (entries: Record<string, string>): ReadText =>
  (path) =>
    entries[path];

describe('usable CPUs', () => {
  it('reads the cgroup v2 quota (cpu.max) and rounds a fraction down, at least 1', () => {
    expect(cgroupCpuQuota(files({ '/sys/fs/cgroup/cpu.max': '150000 100000\n' }))).toBe(1.5);
    expect(usableCpus(files({ '/sys/fs/cgroup/cpu.max': '150000 100000\n' }), 8)).toBe(1);
    expect(usableCpus(files({ '/sys/fs/cgroup/cpu.max': '400000 100000\n' }), 8)).toBe(4);
    expect(usableCpus(files({ '/sys/fs/cgroup/cpu.max': '50000 100000\n' }), 8)).toBe(1);
  });

  it('reads the cgroup v1 quota and period', () => {
    const v1 = files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '200000\n', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n' });
    expect(cgroupCpuQuota(v1)).toBe(2);
    expect(usableCpus(v1, 16)).toBe(2);
    const combined = files({
      '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '300000',
      '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000',
    });
    expect(usableCpus(combined, 16)).toBe(3);
  });

  it('uses the affinity mask when there is no quota, or when it is smaller', () => {
    expect(usableCpus(files({ '/sys/fs/cgroup/cpu.max': 'max 100000\n' }), 6)).toBe(6);
    expect(usableCpus(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' }), 6)).toBe(6);
    expect(usableCpus(files({}), 3)).toBe(3);
    expect(usableCpus(files({ '/sys/fs/cgroup/cpu.max': '800000 100000' }), 2)).toBe(2);
  });

  it('matches this machine: at most os.availableParallelism()', () => {
    const { availableParallelism } = jest.requireActual<typeof import('node:os')>('node:os');
    expect(usableCpus()).toBeGreaterThanOrEqual(1);
    expect(usableCpus()).toBeLessThanOrEqual(availableParallelism());
  });
});

describe('worker slots', () => {
  it('reads the slot the primary set, and is worker 0 of 1 otherwise', () => {
    expect(workerSlotFromEnv({ [WORKER_SLOT_ENV]: '2/4' })).toEqual({ index: 2, count: 4 });
    expect(workerSlotFromEnv({})).toBe(SINGLE_PROCESS);
    expect(workerSlotFromEnv({ [WORKER_SLOT_ENV]: '4/4' })).toBe(SINGLE_PROCESS);
  });

  it("gives each worker's own listener the configured port plus its index; port 0 stays any free port", () => {
    expect(workerAddr('0.0.0.0:5443', { index: 0, count: 3 })).toBe('0.0.0.0:5443');
    expect(workerAddr('0.0.0.0:5443', { index: 2, count: 3 })).toBe('0.0.0.0:5445');
    expect(workerAddr('[::1]:7000', { index: 1, count: 2 })).toBe('[::1]:7001');
    expect(workerAddr('127.0.0.1:0', { index: 1, count: 2 })).toBe('127.0.0.1:0');
  });
});
