/**
 * Memory of a process from /proc/<pid>/status: VmHWM is the kernel's peak resident set since the process
 * started; VmRSS is sampled on an interval to show what it held while serving.
 */
import { readFileSync } from 'node:fs';

export interface Memory {
  readonly rssBytes: number;
  readonly peakBytes: number;
}

/** VmRSS and VmHWM of pid, or undefined when the process is gone. */
export function readMemory(pid: number): Memory | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rssBytes: kib('VmRSS'), peakBytes: kib('VmHWM') };
}

/** Samples VmRSS of pid every intervalMs until stopped; `max` is the largest sample seen. */
export class RssSampler {
  private maxRss = 0;
  private samples = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pid: number,
    intervalMs = 100,
  ) {
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
    this.sample();
  }

  private sample(): void {
    const memory = readMemory(this.pid);
    if (!memory) return;
    this.samples++;
    this.maxRss = Math.max(this.maxRss, memory.rssBytes);
  }

  /** Stops sampling; returns the largest sampled VmRSS and the kernel's VmHWM at this moment. */
  stop(): { maxSampledRss: number; peak: number; samples: number } {
    clearInterval(this.timer);
    this.sample();
    return { maxSampledRss: this.maxRss, peak: readMemory(this.pid)?.peakBytes ?? NaN, samples: this.samples };
  }
}
