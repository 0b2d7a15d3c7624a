/**
 * Eviction. Content not accessed within `blobttl` is removed (last access = the driver's `lastAccess`, which the
 * server sets with `touch` on every hit, so a blob pulled daily never expires, as DTR documents); if `maxsize` is
 * set and the store is larger, the least recently used blobs and manifests go until it fits. Tags whose manifest is
 * gone are dropped, so a tag never points at nothing.
 *
 * Work per pass does not grow with the store:
 * - One replica per site sweeps: the holder of a lease in the store (store-lease.ts). The others only look at the
 *   lease once per renewal period, and report the bytes they filled.
 * - Content keys are split into 256 shards by the digest's first two hex digits (`blobs/<alg>/<xx>/…`,
 *   `manifests/<alg>/<xx>/…`); the passes of one cycle list each shard once, the cycle as long as a quarter of
 *   `blobttl` allows (less a lease takeover and a pass): a blob unused for `blobttl` is gone within 1.25 × `blobttl`,
 *   and the store is listed no faster than that needs.
 * - Per shard, the last listing's bytes, count and oldest access are kept in `_sweeper/state` (one small object,
 *   written once per pass), so the store's size is known without a full listing; fills since a shard's listing are
 *   added as they are reported (`_sweeper/fills/`, written by non-holders). Above `maxsize`, the 64 least recently
 *   used entries remembered per listed shard go first; a shard whose oldest access is older than every remembered
 *   entry is listed again first, so eviction is least-recently-used over the whole store.
 * - A manifest's tags go with it: each tag record has a back-reference beside its manifest (reference.ts tagRefKey),
 *   so evicting a manifest costs a listing of its references and a read per tag, not a read of every tag. Reading
 *   every tag (for tags without a back-reference: written before them, or left by a failed write or a crash) runs at
 *   the end of a cycle at most once per TAG_CHECK_MS: such a tag only costs one revalidation with the upstream
 *   (manifests.ts treats a tag naming a missing manifest as a miss), so its lifetime need not be short.
 *
 * `sweep` is the same eviction over the whole store in one go, for callers that want everything now.
 */
import type { CacheEvents } from './events';
import { DIGEST_ALGORITHMS } from './reference';
import { readCapped } from './relay';
import { StoreLease } from './store-lease';
import { SweepRun, type ContentItem, type SweepOptions, type SweepResult } from './sweep-run';
import { writeSmall, type StorageDriver } from './storage';

export { manifestKeyOfTag, type EvictionReason, type SweepOptions, type SweepResult } from './sweep-run';

export const SHARDS = 256;
const CONTENT_KINDS = ['blobs', 'manifests'] as const;
const TAGS_PREFIX = 'tags/';
const STATE_KEY = '_sweeper/state';
const FILLS_PREFIX = '_sweeper/fills/';
const LEASE_PREFIX = '_sweeper/lease/';
/** Least recently used entries remembered per listed shard, for `maxsize`. */
const CANDIDATES_PER_SHARD = 64;
/** Full cycle when only `maxsize` is set: how stale a shard's size may get before it is listed again. */
const DEFAULT_CYCLE_MS = 86_400_000;
/** Lease renewal period, at most; the lease expires after four missed renewals. */
const MAX_RENEW_MS = 30_000;
const RENEWALS_TO_EXPIRE = 4;
/** Shards never listed (no `_sweeper/state` entry yet) are added to passes this many at a time while `maxsize` is set. */
const BOOTSTRAP_SHARDS_PER_PASS = 32;
/** Fills remembered for reporting, at most (reports failing for hours must not grow memory). */
const MAX_PENDING_FILLS = 100_000;
const MAX_STATE_BYTES = 1024 * 1024;
/** How often every tag is read to find tags without a back-reference whose manifest is gone, at most. */
const TAG_CHECK_MS = 7 * 86_400_000;

/** The content prefixes of shard `shard` (0-255). */
export function shardPrefixes(shard: number): string[] {
  const xx = shard.toString(16).padStart(2, '0');
  return CONTENT_KINDS.flatMap((kind) => Object.keys(DIGEST_ALGORITHMS).map((alg) => `${kind}/${alg}/${xx}/`));
}

/** Eviction over the whole store at once. Never throws for a storage failure: it counts it and goes on. */
export async function sweep(storage: StorageDriver, options: SweepOptions): Promise<SweepResult> {
  const run = new SweepRun(storage, options);
  const kept = await run.expire(CONTENT_KINDS.map((kind) => `${kind}/`));
  let storedBytes = kept.reduce((sum, item) => sum + item.size, 0);
  if (options.maxSizeBytes !== undefined && storedBytes > options.maxSizeBytes)
    storedBytes -= await run.evictLeastRecent(kept, storedBytes - options.maxSizeBytes);
  await run.dropOrphanTags(TAGS_PREFIX);
  await run.removeStaleWrites();
  return run.result(storedBytes);
}

export interface SweeperOptions extends SweepOptions {
  /** Sweep only while holding the site's lease in the store. @default true */
  readonly lease?: boolean;
  /** How often the lease is renewed, or looked at by a replica without it. @default min(interval, 30 s) */
  readonly leaseRenewMs?: number;
  /** The server's events: completed fills count toward `maxsize` before their shard is listed again. */
  readonly events?: Pick<CacheEvents, 'on'>;
}

interface ShardState {
  /** Bytes of the shard's blobs and manifests: the last listing plus fills reported since. */
  bytes: number;
  count: number;
  /** Oldest last access among them at the last listing (epoch ms). */
  oldest: number;
  listedAt: number;
}

interface State {
  version: 1;
  /** Where the next regular pass starts, in 1/passesPerCycle of a shard: it lists shards cursor/p to (cursor+256)/p. */
  cursor: number;
  passAt: number;
  /** When every tag was last read (epoch ms); absent in a new store. */
  tagsCheckedAt?: number;
  shards: (ShardState | null)[];
}

/**
 * Runs the site's eviction: `start` ticks every lease period; a tick renews or takes the lease and, on the holder,
 * runs a pass once per `intervalMs`. `runOnce` and `freeBytes` act now, lease or not (safe beside a running pass).
 */
export class Sweeper {
  /** Regular passes that list every shard once: a full cycle is this many `intervalMs`. */
  readonly passesPerCycle: number;
  readonly leaseRenewMs: number;
  private readonly lease: StoreLease | undefined;
  private readonly now: () => number;
  private state: State | undefined;
  private readonly candidates = new Map<number, ContentItem[]>();
  /** [shard, bytes, at] of fills by this replica not yet merged (holder) or reported (others). */
  private pendingFills: [number, number, number][] = [];
  private queue: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly storage: StorageDriver,
    private readonly intervalMs: number,
    private readonly options: SweeperOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.leaseRenewMs = options.leaseRenewMs ?? Math.min(intervalMs, MAX_RENEW_MS);
    const expireMs = RENEWALS_TO_EXPIRE * this.leaseRenewMs;
    this.lease = options.lease === false ? undefined : new StoreLease(storage, { prefix: LEASE_PREFIX, expireMs });
    // A blob's shard must be listed within a quarter of the TTL after it expires, even if the holder died just before
    // (a takeover waits for expiry and one renewal) and counting the pass that lists it.
    const budget = options.blobTtlMs !== undefined ? options.blobTtlMs / 4 - expireMs - this.leaseRenewMs - intervalMs : DEFAULT_CYCLE_MS;
    this.passesPerCycle = Math.max(1, Math.floor(budget / intervalMs));
  }

  /** Whether this replica held the lease at its last tick (always true without a lease). */
  get isLeader(): boolean {
    return this.lease ? this.lease.held : true;
  }

  /** Ticks now, then every lease period, until `stop`. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.unsubscribe = this.options.events?.on('fillEnded', ({ digest, ok, bytes }) => {
      if (ok && this.pendingFills.length < MAX_PENDING_FILLS) this.pendingFills.push([shardOf(digest), bytes, this.now()]);
    });
    this.schedule(0);
  }

  /** Stops ticking, waits for work in progress, and gives up the lease so another replica takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    await this.queue.catch(() => undefined);
    await this.lease?.release();
  }

  /**
   * One tick: renew or take the lease; on the holder, a pass when one is due, else (with `maxsize`) the fills
   * reported since and the evictions they call for. Without the lease, fills are reported to the holder. Resolves to
   * what was done, or undefined when nothing was.
   */
  tick(): Promise<SweepResult | undefined> {
    return this.exclusive(async () => {
      if (this.lease) {
        const wasHeld = this.lease.held;
        const held = await this.lease.tick().catch((err: unknown) => {
          this.options.log?.('warn', 'sweeper: lease check failed', { error: err instanceof Error ? err.message : String(err) });
          return false;
        });
        if (!held) {
          if (wasHeld) this.options.log?.('info', 'sweeper: another replica sweeps for the site', { holder: this.lease.holder });
          this.state = undefined; // the holder's from now on; read again if this replica takes over
          await this.reportFills();
          return undefined;
        }
        if (!wasHeld) {
          this.state = undefined;
          this.options.log?.('info', 'sweeper: this replica sweeps for the site', { holder: this.lease.holder });
        }
      }
      const state = await this.loadState();
      if (this.now() - state.passAt < this.intervalMs) return this.afterFills(state);
      const cursor = state.cursor;
      const shards = this.regularShards(state);
      // Every tag at a cycle's end (when the cursor wraps), once per TAG_CHECK_MS at most.
      const tags = state.cursor <= cursor && this.now() - (state.tagsCheckedAt ?? 0) >= TAG_CHECK_MS;
      return this.pass(state, shards, tags);
    });
  }

  /** A pass over every shard and every tag now (lease or not). */
  runOnce(): Promise<SweepResult> {
    return this.exclusive(async () => {
      const state = await this.loadState();
      return this.pass(
        state,
        Array.from({ length: SHARDS }, (_, i) => i),
        true,
      );
    });
  }

  /**
   * Evicts least recently used content now until at least `bytes` are gone or nothing evictable is left (lease or
   * not: for a replica that must make room, e.g. on ENOSPC). Busy keys are spared as in every sweep. Shards are
   * listed as least-recently-used order needs: few on the holder, which remembers each shard's oldest entries; up to
   * the whole store on a replica that has not listed any yet.
   */
  freeBytes(bytes: number): Promise<SweepResult> {
    return this.exclusive(async () => {
      const state = await this.loadState();
      const run = this.run();
      await this.evictLeastRecent(run, state, (freed) => bytes - freed);
      await this.saveState(run, state);
      return run.result(storedBytes(state));
    });
  }

  /**
   * Between passes, with `maxsize`: fills reported since the last tick are added, and least recently used content
   * goes at once if they took the store over the bound (so it exceeds `maxsize` by one renewal period's fills at most).
   */
  private async afterFills(state: State): Promise<SweepResult | undefined> {
    const max = this.options.maxSizeBytes;
    if (max === undefined) return undefined;
    const run = this.run();
    if ((await this.mergeFills(run, state)) === 0) return undefined;
    await this.evictLeastRecent(run, state, () => storedBytes(state) - max);
    await this.saveState(run, state);
    return run.result(storedBytes(state));
  }

  /**
   * A run whose listings renew the lease when a renewal is due (a pass over a large store may outlast several
   * renewal periods) and stop once another replica holds it.
   */
  private run(): SweepRun {
    let renewedAt = Date.now();
    return new SweepRun(this.storage, this.options, async () => {
      if (!this.lease?.held || Date.now() - renewedAt < this.leaseRenewMs) return true;
      renewedAt = Date.now();
      return this.lease.tick().catch(() => false);
    });
  }

  private async pass(state: State, shards: readonly number[], tags: boolean): Promise<SweepResult> {
    const run = this.run();
    // Passes keep to a grid of `intervalMs` (a pass starts up to one tick late, and the lateness must not add up over
    // a cycle's hundreds of passes); after a long gap (no holder) the grid restarts now.
    state.passAt = this.now() - state.passAt < 2 * this.intervalMs ? state.passAt + this.intervalMs : this.now();
    await this.mergeFills(run, state);
    for (const shard of shards) await this.listShard(run, state, shard);
    if (tags) {
      await run.dropOrphanTags(TAGS_PREFIX);
      state.tagsCheckedAt = this.now();
    }
    const max = this.options.maxSizeBytes;
    if (max !== undefined) await this.evictLeastRecent(run, state, () => storedBytes(state) - max);
    await run.removeStaleWrites();
    await this.saveState(run, state);
    return run.result(storedBytes(state));
  }

  /** The next 256 / passesPerCycle shards (0, 1 or more), plus never-listed ones while `maxsize` needs their sizes. */
  private regularShards(state: State): number[] {
    const p = this.passesPerCycle;
    const start = state.cursor % (SHARDS * p);
    const shards: number[] = [];
    for (let shard = Math.ceil(start / p); shard * p < start + SHARDS && shard < SHARDS; shard++) shards.push(shard);
    state.cursor = (start + SHARDS) % (SHARDS * p);
    if (this.options.maxSizeBytes !== undefined) {
      const unknown = state.shards.flatMap((s, i) => (s === null && !shards.includes(i) ? [i] : []));
      shards.push(...unknown.slice(0, BOOTSTRAP_SHARDS_PER_PASS));
    }
    return shards;
  }

  /** Lists one shard: TTL eviction, then its size, count, oldest access and least recently used entries. */
  private async listShard(run: SweepRun, state: State, shard: number): Promise<void> {
    const listedAt = this.now();
    const kept = await run.expire(shardPrefixes(shard));
    kept.sort((a, b) => a.lastAccess - b.lastAccess);
    state.shards[shard] = {
      bytes: kept.reduce((sum, item) => sum + item.size, 0),
      count: kept.length,
      oldest: kept[0]?.lastAccess ?? listedAt,
      listedAt,
    };
    this.candidates.set(shard, kept.slice(0, CANDIDATES_PER_SHARD));
  }

  /**
   * Least recently used first until `remaining(freed)` is ≤ 0: the oldest remembered entry, unless a shard without
   * remembered entries (never listed, or used up) may hold an older one; that shard is listed first.
   */
  private async evictLeastRecent(run: SweepRun, state: State, remaining: (freed: number) => number): Promise<void> {
    let freed = 0;
    let listings = 0;
    while (remaining(freed) > 0) {
      let best: number | undefined;
      let stale: number | undefined;
      let staleOldest = Infinity;
      for (let shard = 0; shard < SHARDS; shard++) {
        const head = this.candidates.get(shard)?.[0];
        const known = state.shards[shard];
        if (head) {
          if (best === undefined || head.lastAccess < this.candidates.get(best)![0].lastAccess) best = shard;
        } else if (known === null || known.count > 0) {
          const oldest = known?.oldest ?? -Infinity;
          if (oldest < staleOldest) [stale, staleOldest] = [shard, oldest];
        }
      }
      const bestAccess = best === undefined ? Infinity : this.candidates.get(best)![0].lastAccess;
      if (stale !== undefined && staleOldest < bestAccess && listings < SHARDS) {
        listings++;
        await this.listShard(run, state, stale);
        continue;
      }
      if (best === undefined) break;
      const item = this.candidates.get(best)!.shift()!;
      const known = state.shards[best]!;
      known.oldest = item.lastAccess;
      const removed = await run.evict(item.key, 'size', (lastAccess) => lastAccess <= item.lastAccess);
      if (removed === undefined) continue;
      freed += removed;
      known.bytes -= removed;
      known.count--;
    }
  }

  /**
   * Adds this replica's fills and the reported ones of others to their shards (if filled after the shard's listing);
   * returns how many fills it saw.
   */
  private async mergeFills(run: SweepRun, state: State): Promise<number> {
    let seen = 0;
    const add = (fills: [number, number, number][]) => {
      seen += fills.length;
      for (const [shard, bytes, at] of fills) {
        const known = state.shards[shard];
        if (known && at >= known.listedAt) {
          known.bytes += bytes;
          known.count++;
        }
      }
    };
    add(this.pendingFills);
    this.pendingFills = [];
    try {
      for await (const report of this.storage.list(FILLS_PREFIX)) {
        const stream = await this.storage.read(report.key);
        const fills = stream ? (JSON.parse((await readCapped(stream, MAX_STATE_BYTES)).toString('utf8')) as unknown) : [];
        if (Array.isArray(fills)) add(fills.filter(isFill));
        await this.storage.delete(report.key);
      }
    } catch (err) {
      run.failed('list', FILLS_PREFIX, err);
    }
    return seen;
  }

  /** A replica without the lease writes its fills for the holder, one small object per tick with fills. */
  private async reportFills(): Promise<void> {
    if (this.pendingFills.length === 0) return;
    const fills = this.pendingFills;
    this.pendingFills = [];
    await writeSmall(
      this.storage,
      `${FILLS_PREFIX}${this.now()}-${this.lease?.holder ?? 'replica'}`,
      Buffer.from(JSON.stringify(fills)),
    ).catch((err: unknown) => {
      this.pendingFills.push(...fills.slice(0, MAX_PENDING_FILLS - this.pendingFills.length));
      this.options.log?.('warn', 'sweeper: fill report failed', { error: err instanceof Error ? err.message : String(err) });
    });
  }

  private async loadState(): Promise<State> {
    if (this.state) return this.state;
    let loaded: Partial<State> | undefined;
    try {
      const stream = await this.storage.read(STATE_KEY);
      if (stream) loaded = JSON.parse((await readCapped(stream, MAX_STATE_BYTES)).toString('utf8')) as Partial<State>;
    } catch (err) {
      this.options.log?.('warn', 'sweeper: state unreadable; sizes are learnt again', {
        error: err instanceof Error ? err.message : String(err),
      });
    }
    const valid = loaded?.version === 1 && Array.isArray(loaded.shards) && loaded.shards.length === SHARDS;
    this.state = valid ? (loaded as State) : { version: 1, cursor: 0, passAt: 0, shards: Array.from({ length: SHARDS }, () => null) };
    this.candidates.clear();
    return this.state;
  }

  /** Only the holder writes the state (a replica without the lease acting now, e.g. freeBytes, keeps its view). */
  private async saveState(run: SweepRun, state: State): Promise<void> {
    if (this.lease && !this.lease.held) return;
    await writeSmall(this.storage, STATE_KEY, Buffer.from(JSON.stringify(state))).catch((err: unknown) =>
      run.failed('write', STATE_KEY, err),
    );
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.tick()
        .catch((err: unknown) => this.options.log?.('warn', 'sweep failed', { error: err instanceof Error ? err.message : String(err) }))
        .finally(() => {
          if (!this.stopped) this.schedule(this.leaseRenewMs);
        });
    }, delayMs);
    // The sweeper alone never keeps the process alive (drain decides when it exits).
    this.timer.unref();
  }
}

function storedBytes(state: State): number {
  return state.shards.reduce((sum, s) => sum + (s?.bytes ?? 0), 0);
}

/** Shard of a digest `alg:hex`. */
function shardOf(digest: string): number {
  return parseInt(digest.slice(digest.indexOf(':') + 1, digest.indexOf(':') + 3), 16) || 0;
}

function isFill(value: unknown): value is [number, number, number] {
  return Array.isArray(value) && value.length === 3 && value.every((n) => typeof n === 'number') && value[0] >= 0 && value[0] < SHARDS;
}
