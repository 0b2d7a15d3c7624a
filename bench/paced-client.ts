/**
 * Fixed-rate HTTP load (wrk2-like): request i is due at start + i/rate whatever happened before, and its latency
 * counts from that due time, so a stalled server cannot hide its stall by slowing the client (coordinated
 * omission). Bounded: exactly rate × seconds requests, each with a timeout.
 * Usage: paced-client <url> <rate> <seconds> <expected docker-content-digest, or - for none> [accept]
 * Prints one JSON line: { sent, ok, unfinished, failed, p50Ms, p99Ms, maxMs, achievedRps, firstError }.
 */
import { Pool } from 'undici';

async function main(): Promise<void> {
  const [url, rateText, secondsText, digest, accept] = process.argv.slice(2);
  const rate = Number(rateText);
  const seconds = Number(secondsText);
  if (!url || !(rate > 0) || !(seconds > 0) || !digest) throw new Error('usage: paced-client <url> <rate> <seconds> <digest> [accept]');
  const target = new URL(url);
  const pool = new Pool(target.origin, { connections: 32, pipelining: 1, headersTimeout: 60_000, bodyTimeout: 60_000 });
  const total = Math.round(rate * seconds);
  const latencies: number[] = [];
  let failed = 0;
  let firstError = '';
  const fail = (why: string) => {
    failed++;
    firstError ||= why;
  };
  const pending = new Map<number, bigint>();
  const one = async (id: number, due: bigint) => {
    pending.set(id, due);
    try {
      const res = await pool.request({ method: 'GET', path: target.pathname, headers: accept ? { accept } : {} });
      await res.body.dump();
      const end = process.hrtime.bigint();
      if (!pending.delete(id)) return; // already counted as unfinished at the cutoff
      if (res.statusCode !== 200) return fail(`status ${res.statusCode}`);
      if (digest !== '-' && res.headers['docker-content-digest'] !== digest)
        return fail(`digest ${String(res.headers['docker-content-digest'])}`);
      latencies.push(Number(end - due) / 1e6);
    } catch (err) {
      if (pending.delete(id)) fail(err instanceof Error ? err.message : String(err));
    }
  };
  const intervalNs = BigInt(Math.round(1e9 / rate));
  const start = process.hrtime.bigint() + 10_000_000n;
  const inflight: Promise<void>[] = [];
  let next = 0;
  // A 1 ms tick releases every request that has come due; the due time, not the tick, is the latency origin.
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const now = process.hrtime.bigint();
      for (; next < total && start + BigInt(next) * intervalNs <= now; next++) inflight.push(one(next, start + BigInt(next) * intervalNs));
      if (next >= total) {
        clearInterval(tick);
        resolve();
      }
    }, 1);
  });
  // Bounded wait for the stragglers: what is still unanswered 5 s after the last due time counts with
  // its waiting time so far (a lower bound), so an overloaded server shows in the percentiles instead of hanging us.
  const cutoff = new Promise<void>((resolve) => setTimeout(resolve, 5_000).unref());
  await Promise.race([Promise.all(inflight), cutoff]);
  const now = process.hrtime.bigint();
  const unfinished = pending.size;
  for (const due of pending.values()) latencies.push(Number(now - due) / 1e6);
  pending.clear();
  const elapsedS = Number(now - start) / 1e9;
  await pool.destroy();
  latencies.sort((a, b) => a - b);
  const pct = (p: number) =>
    latencies.length ? latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)] : NaN;
  const result = {
    sent: total,
    ok: latencies.length - unfinished,
    unfinished,
    failed,
    p50Ms: pct(50),
    p99Ms: pct(99),
    maxMs: latencies[latencies.length - 1] ?? NaN,
    achievedRps: (latencies.length - unfinished) / elapsedS,
    firstError,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`paced-client: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
