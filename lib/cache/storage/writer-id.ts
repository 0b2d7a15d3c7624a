/**
 * Who owns a temp file of a write in progress, so a restarted cache can remove what a killed process left at once,
 * instead of waiting `filltimeout` (a temp file younger than that may belong to a live fill of another replica).
 *
 * The id is `<scope>-<pid>-<start>`: `scope` hashes the kernel boot id and the PID namespace, `start` is the
 * process start time in clock ticks (/proc/<pid>/stat). A writer is known to be gone only when its scope is ours
 * (same machine boot, same PID namespace) and no process with that pid and start time exists. Any other writer
 * (another node or container sharing an NFS export, a platform without /proc) is never judged here: the age rule
 * still applies to it.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';

const ID = /^([0-9a-f]{12})-(\d+)-(\d+)$/;

let own: string | undefined;

/** This process's writer id (`unknown` where /proc is unavailable: never judged gone). */
export function writerId(): string {
  return (own ??= computeOwn());
}

/** True only when `id` is a writer of this machine and PID namespace that no longer runs. */
export function writerGone(id: string): boolean {
  const match = ID.exec(id);
  if (!match || match[1] !== scope()) return false;
  const start = startTicks(Number(match[2]));
  return start === undefined || start !== match[3];
}

function computeOwn(): string {
  const s = scope();
  const start = startTicks(process.pid);
  return s && start ? `${s}-${process.pid}-${start}` : 'unknown';
}

function scope(): string | undefined {
  try {
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const ns = readlinkSync('/proc/self/ns/pid');
    return createHash('sha256').update(`${boot} ${ns}`).digest('hex').slice(0, 12);
  } catch {
    return undefined;
  }
}

/** Field 22 of /proc/<pid>/stat (after the command name, which may hold spaces and parentheses). */
function startTicks(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}
