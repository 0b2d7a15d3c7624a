/**
 * Every process the benchmark starts is tracked here, so a failure, a signal or the 10-minute bound still
 * stops all of them: normally through stop(), as a last resort with SIGKILL from the exit handler.
 */
import { ChildProcess, spawn, SpawnOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { sleep } from '../harness/tools';

const running = new Set<number>();
const exitHooks: (() => void)[] = [];

/** A synchronous last-resort cleanup (e.g. removing a temp dir) for when the benchmark is killed. */
export function atExit(hook: () => void): void {
  exitHooks.push(hook);
}

export function track(pid: number | undefined): void {
  if (pid) running.add(pid);
}

export function untrack(pid: number | undefined): void {
  if (pid) running.delete(pid);
}

/** spawn() whose child is killed when the benchmark exits, whatever the reason. */
export function spawnTracked(command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  track(child.pid);
  child.once('exit', () => untrack(child.pid));
  return child;
}

/** SIGTERM, then SIGKILL if the child has not exited within graceMs. */
export async function stopChild(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Runs a command to completion (bounded by timeoutMs) and returns its stdout; a non-zero exit throws with stderr. */
export function runToCompletion(command: string, args: readonly string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawnTracked(command, args);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else
        reject(
          new Error(
            `${command} ${signal ? `killed by ${signal} (bound ${timeoutMs} ms)` : `exited ${code}`}: ${stderr.trim().slice(-500)}`,
          ),
        );
    });
  });
}

/** Last resort: SIGKILL whatever is still running when the benchmark process exits, then run the atExit hooks. */
export function killAllSync(): void {
  for (const pid of running) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  running.clear();
  for (const hook of exitHooks.splice(0)) {
    try {
      hook();
    } catch {
      // best effort: the process is exiting
    }
  }
}

/** The fields of /proc/<pid>/stat after the command name (which is in parentheses and may hold spaces): field 3 first. */
const statFields = (pid: number | 'self') => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');

/** CPU time (utime + stime, clock ticks) a process has used, from /proc/<pid>/stat; undefined once it is gone. */
export function cpuTicks(pid: number): number | undefined {
  try {
    const fields = statFields(pid); // utime and stime are fields 14 and 15
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

/** CPU time (clock ticks) of this process's children that have exited and been reaped (cutime + cstime, 16 and 17). */
export function reapedChildrenTicks(): number {
  const fields = statFields('self');
  return Number(fields[13]) + Number(fields[14]);
}

/** Clock ticks of all cores since boot: busy (neither idle nor iowait) and total, from /proc/stat. */
export function machineTicks(): { busy: number; total: number } {
  const [user, nice, system, idle, iowait, ...rest] = readFileSync('/proc/stat', 'utf8').split('\n')[0].split(/\s+/).slice(1).map(Number);
  const total = [user, nice, system, idle, iowait, ...rest.slice(0, 3)].reduce((a, b) => a + b, 0); // + irq, softirq, steal
  return { busy: total - idle - iowait, total };
}

/**
 * Waits until the processes used at most `maxTicks` CPU ticks (1/100 s each) together over one second, so a
 * system is never measured while another still works off an earlier step (the reference's backlog of paced
 * requests, its fills after the clients left). Bounded: returns false after timeoutMs without quiet.
 */
export async function waitForQuiet(pids: readonly number[], timeoutMs = 60_000, maxTicks = 5): Promise<boolean> {
  const total = () => pids.reduce((sum, pid) => sum + (cpuTicks(pid) ?? 0), 0);
  const deadline = Date.now() + timeoutMs;
  let before = total();
  while (Date.now() < deadline) {
    await sleep(1000);
    const now = total();
    if (now - before <= maxTicks) return true;
    before = now;
  }
  return false;
}
