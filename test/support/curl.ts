/** A real curl as the client of a cache that runs in this process (so asynchronous), and what its /metrics says. */
import { execFile } from 'node:child_process';
import { requireTool } from '../../harness/tools';

/** A curl GET of `url` (with `args`): its exit code (0: a complete transfer) and the bytes it got. */
export function curl(url: string, args: string[] = [], maxSeconds = 60): Promise<{ code: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    execFile(
      requireTool('curl'),
      ['-s', '--max-time', String(maxSeconds), ...args, url],
      { encoding: 'buffer', maxBuffer: 256 * 2 ** 20 },
      (err, stdout) =>
        err && typeof err.code !== 'number' ? reject(err) : resolve({ code: err ? (err.code as number) : 0, body: stdout }),
    );
  });
}

/** The value of the sample `line` (name and labels, e.g. `dtr_cache_served_bytes_total{source="storage"}`) at `base`/metrics; 0 when absent. */
export async function metric(base: string, line: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found ? Number(found.split(' ')[1]) : 0;
}
