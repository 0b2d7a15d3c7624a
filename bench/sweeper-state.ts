/**
 * Puts a generated store's sweeper bookkeeping into a known state before a bench/bookkeeping-hits.ts run (issue 23):
 *
 *   node -r ts-node/register/transpile-only bench/sweeper-state.ts <root> indexed|noindex [dueSeconds]
 *
 * `_sweeper/state` (as the sweeper wrote it) gets: cursor 0 (the next pass processes shards 0-7 at `blobttl` 24h),
 * the next pass due `dueSeconds` from now (0: at once; 40: between the server's first tick and its second, 30 s later,
 * so the pass runs inside the measured window), every tag checked 3 h ago (no tag check), and every shard processed
 * 3 h ago and either listed then, so its index `_sweeper/index/<xx>` is read (`indexed`), or never listed
 * (`noindex`: code with shard indexes lists the shard and writes its index, as on a store without indexes). Lease
 * objects are removed, so the server takes the lease at its first tick. Code before the indexes ignores `fullAt`.
 */
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [root, mode, due] = process.argv.slice(2);
if (!root || (mode !== 'indexed' && mode !== 'noindex')) throw new Error('usage: sweeper-state <root> indexed|noindex [dueSeconds]');
const file = join(root, '_sweeper/state');
const state = JSON.parse(readFileSync(file, 'utf8')) as {
  cursor: number;
  passAt: number;
  tagsCheckedAt?: number;
  shards: { listedAt: number; fullAt?: number }[];
};
const now = Date.now();
const threeHoursAgo = now - 3 * 3_600_000;
state.cursor = 0;
state.passAt = now - 600_000 + Number(due ?? 0) * 1000; // sweepinterval 10m
state.tagsCheckedAt = threeHoursAgo;
for (const shard of state.shards) {
  shard.listedAt = threeHoursAgo;
  if (mode === 'noindex') delete shard.fullAt;
  else shard.fullAt = threeHoursAgo;
}
writeFileSync(file, JSON.stringify(state));
for (const lease of readdirSync(join(root, '_sweeper/lease'))) rmSync(join(root, '_sweeper/lease', lease), { recursive: true });
process.stdout.write(`${JSON.stringify({ state: mode, passAt: state.passAt })}\n`);
