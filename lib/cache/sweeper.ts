/**
 * Eviction. Content not accessed within `blobttl` is removed (last access = the driver's `lastAccess`, which the
 * server sets with `touch` on every hit, so a blob pulled daily never expires, as DTR documents); if `maxsize` is
 * set and the store is larger, the least recently used blobs and manifests go until it fits. Tags whose manifest is
 * gone are dropped, so a tag never points at nothing.
 *
 * Work per pass does not grow with the store:
 * - One replica per site sweeps: the holder of a lease in the store (store-lease.ts). The others only look at the
 *   lease once per renewal period, and report what they filled and served.
 * - Content keys are split into 256 shards by the digest's first two hex digits (`blobs/<alg>/<xx>/…`,
 *   `manifests/<alg>/<xx>/…`); the passes of one cycle process each shard once, the cycle as long as a quarter of
 *   `blobttl` allows (less a lease takeover and a pass): a blob unused for `blobttl` is gone within 1.25 × `blobttl`.
 * - A pass reads a shard's index instead of listing it (sweep-index.ts: key, size and last access of each entry, one
 *   object `_sweeper/index/<xx>` per shard, written by the holder when it processes the shard). Every replica reports
 *   its fills and hits (key, size / key, time; the latest per key, bounded) as one small object per renewal period;
 *   the holder merges them into its changes not yet in an index and applies a shard's changes when it processes the
 *   shard (sweep-reports.ts). An entry the index says is past `blobttl` (or chosen for `maxsize`) is stat'ed before it is deleted and
 *   kept, its entry updated, if it was accessed since: `touch` on every hit stays authoritative, so a lost report
 *   costs a stat, never a wrongly evicted blob.
 * - A shard is listed instead (and its index rebuilt from the listing) when it has no index (a store from before
 *   the index, or a lost one: start-up does not wait for it) and once per FULL_LISTING_MS: that listing finds
 *   content no report named (a crash between commit and report, another tool's writes) and drops entries whose
 *   object is gone. The listings of a store without indexes are spread over a cycle, so their repeats are too.
 * - Per shard, its bytes, count and oldest access are kept in `_sweeper/state` (one small object, written once per
 *   pass), so the store's size is known without a full listing; fills since the shard was processed are added as
 *   they are reported. Above `maxsize`, the 64 least recently used entries remembered per processed shard go first;
 *   a shard whose oldest access is older than every remembered entry is processed first, so eviction is
 *   least-recently-used over the whole store.
 * - A manifest's tags go with it: each tag record has a back-reference beside its manifest (reference.ts tagRefKey),
 *   so evicting a manifest costs a listing of its references and a read per tag, not a read of every tag. Reading
 *   every tag (for tags without a back-reference: written before them, or left by a failed write or a crash) runs at
 *   the end of a cycle at most once per TAG_CHECK_MS: such a tag only costs one revalidation with the upstream
 *   (manifests.ts treats a tag naming a missing manifest as a miss), so its lifetime need not be short.
 *
 * `sweep` is the same eviction over the whole store in one go, for callers that want everything now.
 */
import type { CacheEvents } from './events';
import { blobKey, DIGEST_ALGORITHMS, parseDigest } from './reference';
import { readCapped } from './relay';
import { StoreLease } from './store-lease';
import { applyChanges, indexKey, readIndex, writeIndex, type ShardIndex } from './sweep-index';
import { shardOfKey, SweepReports } from './sweep-reports';
import { SweepRun, type ContentItem, type SweepOptions, type SweepResult } from './sweep-run';
import { writeSmall, type StorageDriver } from './storage';

export { manifestKeyOfTag, type EvictionReason, type SweepOptions, type SweepResult } from './sweep-run';

export const SHARDS = 256;
const CONTENT_KINDS = ['blobs', 'manifests'] as const;
const TAGS_PREFIX = 'tags/';
const STATE_KEY = '_sweeper/state';
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
const MAX_STATE_BYTES = 1024 * 1024;
/** How often each shard is listed rather than read from its index, at most. */
const FULL_LISTING_MS = 7 * 86_400_000;
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
  /** Bytes of the shard's blobs and manifests: as its index said when last processed, plus fills reported since. */
  bytes: number;
  count: number;
  /** Oldest last access among them when last processed (epoch ms). */
  oldest: number;
  /** When the shard was last processed (its index read, or the shard listed). */
  listedAt: number;
  /** When the shard was last listed and its index written from the listing; absent: it has no index yet. */
  fullAt?: number;
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
  private readonly reports: SweepReports;
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
    this.reports = new SweepReports(storage);
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
    const events = this.options.events;
    const unsubscribe = [
      events?.on('fillEnded', ({ digest, ok, bytes }) => {
        const parsed = parseDigest(digest);
        if (ok && parsed.ok) this.reports.record(blobKey(parsed.value), { size: bytes, at: this.now() });
      }),
      events?.on('stored', ({ key, bytes }) => this.reports.record(key, { size: bytes, at: this.now() })),
      events?.on('accessed', ({ key }) => this.reports.record(key, { at: this.now() })),
    ];
    this.unsubscribe = () => unsubscribe.forEach((off) => off?.());
    this.schedule(0);
  }

  /**
   * Stops ticking, waits for work in progress, and gives up the lease so another replica takes over at once; fills
   * and hits not yet merged or reported are reported, for the next holder.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    await this.queue.catch(() => undefined);
    await this.lease?.release();
    await this.report();
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
          await this.report();
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

  /** A pass over every shard (listed, not read from indexes) and every tag now (lease or not). */
  runOnce(): Promise<SweepResult> {
    return this.exclusive(async () => {
      const state = await this.loadState();
      return this.pass(
        state,
        Array.from({ length: SHARDS }, (_, i) => i),
        true,
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
    if ((await this.mergeReports(run, state)) === 0) return undefined;
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

  private async pass(state: State, shards: readonly number[], tags: boolean, list = false): Promise<SweepResult> {
    const run = this.run();
    // Passes keep to a grid of `intervalMs` (a pass starts up to one tick late, and the lateness must not add up over
    // a cycle's hundreds of passes); after a long gap (no holder) the grid restarts now.
    state.passAt = this.now() - state.passAt < 2 * this.intervalMs ? state.passAt + this.intervalMs : this.now();
    await this.mergeReports(run, state);
    for (const shard of shards) await this.processShard(run, state, shard, list);
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

  /**
   * Processes one shard: its index (or, without one or once per FULL_LISTING_MS, a listing) with the changes
   * reported since applied; TTL eviction of what the index says is past `blobttl`, each entry stat'ed first; then the
   * index written back, and the shard's size, count, oldest access and least recently used entries kept.
   */
  private async processShard(run: SweepRun, state: State, shard: number, list = false): Promise<void> {
    await run.checkpointNow(); // renews the lease when due; writes below check that it is still held
    const now = this.now();
    const known = state.shards[shard];
    let fullAt = known?.fullAt;
    let index: ShardIndex | undefined;
    if (!list && fullAt !== undefined && now - fullAt < FULL_LISTING_MS)
      index = await readIndex(this.storage, shard).catch((err: unknown) => void run.failed('read', indexKey(shard), err));
    let complete = true; // false when a listing was cut short: its index would miss entries
    let changed = !index;
    if (!index) {
      const errors = run.errors;
      const kept = await run.expire(shardPrefixes(shard));
      complete = run.errors === errors && this.isHolder();
      index = new Map(kept.map((item) => [item.key, { size: item.size, lastAccess: item.lastAccess }]));
      if (complete) fullAt = now;
    }
    const changes = this.reports.takeShard(shard);
    if (changes.length > 0) changed = true;
    for (const key of applyChanges(index, changes)) {
      const info = await this.storage.stat(key).catch((err: unknown) => void run.failed('stat', key, err));
      if (info) index.set(key, { size: info.size, lastAccess: info.lastAccess.getTime() });
    }
    const ttl = this.options.blobTtlMs;
    if (ttl !== undefined) {
      const expired = (lastAccess: number) => this.now() - lastAccess > ttl;
      for (const [key, entry] of index) {
        if (!expired(entry.lastAccess)) continue;
        let gone = false;
        const removed = await run.evict(key, 'ttl', expired, (fresh) => {
          if (fresh) entry.lastAccess = fresh.lastAccess.getTime();
          gone = !fresh;
          changed = true;
        });
        if (removed !== undefined || gone) index.delete(key);
      }
    }
    if (changed && complete && this.isHolder()) {
      const written = await writeIndex(this.storage, shard, index).then(
        () => true,
        (err: unknown) => run.failed('write', indexKey(shard), err),
      );
      if (!written) {
        this.reports.restore(changes); // applied at the shard's next processing
        fullAt = known?.fullAt;
      }
    }
    const items = [...index].map(([key, e]) => ({ key, size: e.size, lastAccess: e.lastAccess }));
    items.sort((a, b) => a.lastAccess - b.lastAccess);
    state.shards[shard] = {
      bytes: items.reduce((sum, item) => sum + item.size, 0),
      count: items.length,
      oldest: items[0]?.lastAccess ?? now,
      listedAt: now,
      ...(fullAt !== undefined && { fullAt }),
    };
    this.candidates.set(shard, items.slice(0, CANDIDATES_PER_SHARD));
  }

  private isHolder(): boolean {
    return !this.lease || this.lease.held;
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
        await this.processShard(run, state, stale);
        continue;
      }
      if (best === undefined) break;
      const item = this.candidates.get(best)!.shift()!;
      const known = state.shards[best]!;
      known.oldest = item.lastAccess;
      const removed = await run.evict(
        item.key,
        'size',
        (lastAccess) => lastAccess <= item.lastAccess,
        // What the index will learn at the shard's next processing: the key gone, or accessed since.
        (fresh) => this.reports.note(item.key, fresh ? { at: fresh.lastAccess.getTime() } : { at: this.now(), gone: true }),
      );
      if (removed === undefined) continue;
      this.reports.note(item.key, { at: this.now(), gone: true });
      freed += removed;
      known.bytes -= removed;
      known.count--;
    }
  }

  /**
   * Merges this replica's fills and hits and the reports of the others (sweep-reports.ts); fills count toward their
   * shard's bytes (if filled after the shard was processed). Returns how many fills it saw.
   */
  private async mergeReports(run: SweepRun, state: State): Promise<number> {
    let fills = 0;
    for (const [key, change] of await this.reports.merge(this.isHolder(), (op, key, err) => run.failed(op, key, err))) {
      if (change.size === undefined || change.gone) continue;
      fills++;
      const known = state.shards[shardOfKey(key)];
      if (known && change.at >= known.listedAt) {
        known.bytes += change.size;
        known.count++;
      }
    }
    return fills;
  }

  /** A replica without the lease writes its fills and hits for the holder, one small object per tick with any. */
  private async report(): Promise<void> {
    await this.reports.report(`${this.now()}-${this.lease?.holder ?? 'replica'}`).catch((err: unknown) => {
      this.options.log?.('warn', 'sweeper: report failed', { error: err instanceof Error ? err.message : String(err) });
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
    try {
      await this.reports.load();
    } catch (err) {
      // Lost changes: the index lags until the shard's next listing; a stat before each deletion still decides.
      this.options.log?.('warn', 'sweeper: pending changes unreadable', { error: err instanceof Error ? err.message : String(err) });
    }
    return this.state;
  }

  /** Only the holder writes the state (a replica without the lease acting now, e.g. freeBytes, keeps its view). */
  private async saveState(run: SweepRun, state: State): Promise<void> {
    if (!this.isHolder()) return;
    await this.reports.save(this.isHolder(), (op, key, err) => run.failed(op, key, err));
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
