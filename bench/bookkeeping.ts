/**
 * Bookkeeping cost at scale (issue 23): CPU seconds and storage requests per hour of steady-state eviction work
 * for one site of two replicas, on a generated store (bench/store-generate.ts), and how long a blob past `blobttl`
 * takes to go.
 *
 *   node -r ts-node/register/transpile-only bench/bookkeeping.ts --root=<store> --lib=<lib dir> --mode=before|after
 *     [--ttl=ms] [--interval=ms] [--maxsize=bytes] [--s3=<endpoint> --bucket=<name>]
 *
 * `--lib` is the `lib` directory of the code measured (the tree of a commit extracted with git archive), so the same
 * harness measures before and after. `before` (the sweeper up to issue 23): one `sweep()` over the whole store, which
 * every replica ran every `sweepinterval`; per hour = one sweep x 3600 s / interval x 2 replicas. `after`: two
 * Sweepers on the store (one takes the lease) ticked on a simulated clock, one lease period per tick, through one
 * full cycle of passes after the first passes learnt every shard's size; per hour = the totals / simulated hours.
 * For code with shard indexes (lib/cache/sweep-index.ts), the warm-up is one `runOnce` on the holder (every shard
 * listed and its index written, every tag read): what the periodic listing of every shard and the check of every
 * tag cost once per 7 days, added per hour as its totals / 168 h; the blobs planted to expire are planted before it
 * (as content filled earlier is in an index), 1 s short of `blobttl`. `--hits=n`: each replica reports n hits per
 * second (of the `--blobs=n` generated blobs, default 700,000, through the `accessed` event), so reports and their
 * merging are counted.
 * CPU is process.cpuUsage() (user + system) of this process, which runs the work of both replicas.
 * With `--s3`, the store is a bucket of an S3 server (`--root` is then the server's directory on disk, where
 * planted blobs are back-dated; see bench/results/bookkeeping.md).
 *
 * Three counts of the same work:
 * - requests: what the storage backend is asked. Filesystem: calls into node:fs (a readdir, a stat, an open, a
 *   rename: one each). S3: HTTP requests (a LIST page of up to 1,000 keys is one).
 * - driver calls: calls of StorageDriver methods, a `list` counted once per 1,000 keys it returns (as an object
 *   store pages it).
 * - per-object operations (the measure of the first rows): each listed object, stat, read, write, delete one.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const HOUR = 3_600_000;
const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const root = resolve(args.root);
const lib = resolve(args.lib);
const mode = args.mode as 'before' | 'after';
const ttlMs = Number(args.ttl ?? 7 * 24 * HOUR);
const intervalMs = Number(args.interval ?? 600_000);
const maxSizeBytes = args.maxsize ? Number(args.maxsize) : undefined;
const hitsPerSecond = Number(args.hits ?? 0);
/** Blobs of the generated store (70 % of its objects), of which hits pick. */
const storeBlobs = Number(args.blobs ?? 700_000);
const indexed = existsSync(join(lib, 'cache/sweep-index.ts')) || existsSync(join(lib, 'cache/sweep-index.js'));

/* eslint-disable @typescript-eslint/no-require-imports, @typescript-eslint/no-explicit-any */
const requests: Record<string, number> = {};
const countRequest = (name: string) => void (requests[name] = (requests[name] ?? 0) + 1);
// Backend requests, counted where they leave this process: node:fs calls (the filesystem driver reads its functions
// from the module object at each call) and node:http requests (the AWS SDK takes `request` from it at first use).
const fsp = require('node:fs/promises') as Record<string, unknown>;
for (const name of ['readdir', 'stat', 'open', 'rename', 'rm', 'utimes', 'link', 'writeFile', 'readFile', 'mkdir']) {
  const original = fsp[name] as (...a: unknown[]) => unknown;
  fsp[name] = (...a: unknown[]) => (countRequest(`fs.${name}`), original(...a));
}
const http = require('node:http') as { request: (...a: any[]) => any };
const httpRequest = http.request;
http.request = (...a: any[]) => {
  const options = a.find((x) => typeof x === 'object' && x !== null && 'method' in x) as { method?: string; path?: string } | undefined;
  countRequest(`http.${options?.method ?? 'GET'}${/[?&]list-type=/.test(options?.path ?? '') ? ' (LIST)' : ''}`);
  return httpRequest(...a);
};

const { FilesystemDriver } = require(join(lib, 'cache/storage/filesystem')) as any;
const sweeperModule = require(join(lib, 'cache/sweeper')) as any;

const ops: Record<string, number> = {};
const count = (name: string, n = 1) => void (ops[name] = (ops[name] ?? 0) + n);
/** Driver calls by method and kind of key (`read _sweeper/index`, `stat blobs`…): a breakdown of `ops`. */
const byKey: Record<string, number> = {};
const keyGroup = (key: string) => (key.startsWith('_sweeper/') ? key.split('/', 2).join('/') : key.split('/', 1)[0]);

function driver(): any {
  if (!args.s3) return new FilesystemDriver({ rootdirectory: root });
  const { s3Schema } = require(join(lib, 'config/storage-schema')) as any;
  const { createS3Driver } = require(join(lib, 'cache/storage/s3')) as any;
  const options = {
    region: 'us-east-1',
    bucket: args.bucket,
    accesskey: 'S3RVER',
    secretkey: 'S3RVER',
    regionendpoint: args.s3,
    secure: false,
  };
  return createS3Driver(s3Schema.parse(options));
}

/** The real driver with every call counted; `list` also once per 1,000 keys it returns (`listPages`). */
function counted(): any {
  return new Proxy(driver(), {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function' || prop === 'constructor') return value;
      if (prop === 'list')
        return async function* (prefix: string) {
          count('list');
          let n = 0;
          for await (const item of value.call(target, prefix)) {
            count('listed');
            if (n++ % 1000 === 0 && n > 1) count('listPages');
            yield item;
          }
          count('listPages');
        };
      return (...a: unknown[]) => {
        count(String(prop));
        if (typeof a[0] === 'string') byKey[`${String(prop)} ${keyGroup(a[0])}`] = (byKey[`${String(prop)} ${keyGroup(a[0])}`] ?? 0) + 1;
        return value.apply(target, a);
      };
    },
  });
}

function cpuSeconds(since: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
}
const sum = (o: Record<string, number>) => Object.values(o).reduce((s, n) => s + n, 0);
/** The first rows' measure: each listed object, stat, read, write, delete one (list calls and pages not). */
const perObject = (o: Record<string, number>) => sum(o) - (o.list ?? 0) - (o.listPages ?? 0);
/** Driver calls, a listing once per 1,000 keys. */
const driverCalls = (o: Record<string, number>) => sum(o) - (o.list ?? 0) - (o.listed ?? 0);
/** The three counts of `o` (driver) and `r` (backend), as totals and per second over `seconds`. */
function counts(o: Record<string, number>, r: Record<string, number>, seconds: number): Record<string, unknown> {
  const per = (n: number) => Math.round((n / seconds) * 100) / 100;
  return {
    requests: sum(r),
    requestsPerSecond: per(sum(r)),
    requestKinds: { ...r },
    driverCalls: driverCalls(o),
    driverCallsPerSecond: per(driverCalls(o)),
    perObjectOps: perObject(o),
    perObjectOpsPerSecond: per(perObject(o)),
    driverOps: { ...o },
    byKey: { ...byKey },
  };
}
const reset = (...all: Record<string, number>[]) => all.forEach((o) => Object.keys(o).forEach((k) => delete o[k]));

async function before(): Promise<Record<string, unknown>> {
  const driver = counted();
  const start = process.cpuUsage();
  const wall = Date.now();
  const result = await sweeperModule.sweep(driver, { blobTtlMs: ttlMs, maxSizeBytes, isBusy: () => false, staleWriteAgeMs: 1_860_000 });
  const cpu = cpuSeconds(start);
  const sweepsPerHour = (3600_000 / intervalMs) * 2;
  return {
    mode,
    sweepCpuSeconds: cpu,
    sweepWallSeconds: (Date.now() - wall) / 1000,
    sweep: counts(ops, requests, 1),
    evicted: result.evicted.length,
    storedBytes: result.storedBytes,
    cpuSecondsPerHourPerSite: cpu * sweepsPerHour,
    coreShare: (cpu * sweepsPerHour) / 3600,
    perSite: counts(ops, requests, 3600 / sweepsPerHour),
    // An expired blob goes at the next sweep of any replica: within one interval plus one sweep's duration.
    expiredGoneWithinMs: intervalMs + (Date.now() - wall),
  };
}

/**
 * A blob last accessed `ageMs` before the simulated `now`. On the filesystem its mtime is set; on S3 the object is
 * written, then its file in the S3 server's directory (`--root`) is back-dated, which the server reports as
 * LastModified (s3rver keeps objects as files).
 */
async function plant(key: string, at: number): Promise<void> {
  const t = new Date(at);
  if (!args.s3) {
    mkdirSync(join(root, key, '..'), { recursive: true });
    writeFileSync(join(root, key), 'x');
    utimesSync(join(root, key), t, t);
    return;
  }
  const pending = await driver().write(key, 1);
  pending.stream.end(Buffer.from('x'));
  await pending.commit();
  for (const file of s3rverFiles(key)) utimesSync(file, t, t);
}

/** The files s3rver keeps for an object (its bytes and its metadata), under `--root`/<bucket>. */
function s3rverFiles(key: string): string[] {
  const base = join(root, args.bucket, key);
  return [`${base}._S3rver_object`, `${base}._S3rver_metadata.json`, `${base}._S3rver_object.md5`].filter((f) => existsSync(f));
}

async function after(): Promise<Record<string, unknown>> {
  let now = Date.now();
  const clock = () => now;
  const planted = new Set<string>();
  const options = { blobTtlMs: ttlMs, maxSizeBytes, isBusy: () => false, staleWriteAgeMs: 1_860_000, now: clock };
  // Steady state: the check of every tag was done just now (the code that runs it once per cycle ignores this field).
  const state = { version: 1, cursor: 0, passAt: 0, tagsCheckedAt: now, shards: Array.from({ length: sweeperModule.SHARDS }, () => null) };
  const writer = driver();
  const pending = await writer.write('_sweeper/state');
  pending.stream.end(Buffer.from(JSON.stringify(state)));
  await pending.commit();
  const { CacheEvents } = require(join(lib, 'cache/events')) as any;
  const events = [new CacheEvents(), new CacheEvents()];
  const replicas = events.map((e) => new sweeperModule.Sweeper(counted(), intervalMs, { ...options, events: e }));
  // Subscribed as `start` does, without its timer (the harness ticks).
  for (const r of replicas) if (hitsPerSecond > 0) (r.start(), clearTimeout(r.timer));
  const renew: number = replicas[0].leaseRenewMs;
  const passesPerCycle: number = replicas[0].passesPerCycle;
  // With indexes: the planted blobs expire 1 s into the cycle (planted before the warm-up, which indexes them).
  let expiresAt = now;
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
      for (const e of result.evicted) if (planted.delete(e.key)) gone.push(now - expiresAt);
    }
    // Hits of generated blobs (bench/store-generate.ts names them), reported by each replica.
    for (const e of events)
      for (let i = 0; i < (hitsPerSecond * renew) / 1000; i++) {
        const hex = createHash('sha256')
          .update(`blob${Math.floor(Math.random() * storeBlobs)}`)
          .digest('hex');
        e.emit('accessed', { key: `blobs/sha256/${hex.slice(0, 2)}/${hex}/data` });
      }
    now += renew;
  };
  const plantAll = async (lastAccess: number) => {
    for (let i = 0; i < 20; i++) {
      const hex = createHash('sha256').update(`planted${i}-${now}`).digest('hex');
      const key = `blobs/sha256/${hex.slice(0, 2)}/${hex}/data`;
      await plant(key, lastAccess);
      planted.add(key);
    }
  };
  let fullListing: Record<string, unknown> | undefined;
  if (indexed) {
    expiresAt = now + 1000;
    await plantAll(now - ttlMs + 1000);
    await tickAll();
    now -= renew; // the warm-up takes no simulated time
    reset(ops, requests, byKey);
    const listStart = process.cpuUsage();
    const holder = replicas.find((r) => r.isLeader);
    await holder.runOnce();
    fullListing = { cpuSeconds: cpuSeconds(listStart), ...counts(ops, requests, 1) };
    // The cycle's first pass at its first tick (as without a warm-up), one tick later: the planted blobs expired.
    now += renew;
    holder.state.passAt = now - intervalMs;
  }
  // Warm-up: the first passes learn every shard's size (a store from before issue 23: once per store).
  const warmStart = process.cpuUsage();
  // Until the holder's state knows every shard (a replica without the lease keeps no state).
  const unknownShards = () => !replicas.some((r) => r.state && !r.state.shards.includes(null));
  while (maxSizeBytes !== undefined && unknownShards()) await tickAll();
  const bootstrapPasses = passes;
  const warmCpu = cpuSeconds(warmStart);
  const warmup = counts(ops, requests, 1);
  // Steady state: one full cycle, with 20 blobs planted that expire right now (simulated), in random shards.
  if (!indexed) {
    expiresAt = now - 1000;
    await plantAll(now - ttlMs - 1000);
  }
  reset(ops, requests, byKey);
  passes = 0;
  maxPassCpu = 0;
  const start = process.cpuUsage();
  const simStart = now;
  const wall = Date.now();
  while (passes < passesPerCycle) await tickAll();
  const cpu = cpuSeconds(start);
  const hours = (now - simStart) / HOUR;
  const cycle = counts(ops, requests, hours * 3600);
  const leaders = replicas.filter((r) => r.isLeader).length;
  for (const r of replicas) await r.stop();
  // The check of every tag, once: the code after issue 23's back-references runs it once per 7 days.
  reset(ops, requests, byKey);
  const tagStart = process.cpuUsage();
  const { SweepRun } = require(join(lib, 'cache/sweep-run')) as any;
  await new SweepRun(counted(), options).dropOrphanTags('tags/');
  const tagCheck = { cpuSeconds: cpuSeconds(tagStart), ...counts(ops, requests, 1) };
  return {
    mode,
    passesPerCycle,
    leaders,
    simulatedHours: hours,
    cycleCpuSeconds: cpu,
    cycleWallSeconds: (Date.now() - wall) / 1000,
    maxPassCpuSeconds: maxPassCpu,
    cpuSecondsPerHourPerSite: cpu / hours,
    coreShare: cpu / hours / 3600,
    cycle,
    tagCheck,
    // With indexes: every shard listed and every tag read (runOnce), once per 7 days; per hour = its totals / 168.
    fullListing,
    hitsPerSecond,
    warmupPasses: bootstrapPasses,
    warmupCpuSeconds: warmCpu,
    warmup,
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
