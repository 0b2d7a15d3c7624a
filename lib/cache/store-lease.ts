/**
 * A lease kept in the store the replicas share: who sweeps the site (sweeper.ts), who fetches a blob from the
 * upstream (fill-coordinator.ts). The lease is an object `<prefix><generation>` naming its holder; the highest
 * generation present is the lease. Its holder renews it by rewriting it (the store's modification time is the
 * renewal) after reading it back to check it is still its own; a lease not renewed for `expireMs` belongs to a dead
 * holder, and a contender takes over by creating generation + 1 with the driver's `createIfAbsent` (exclusive create
 * on the filesystem, a conditional write on object stores), so of several contenders exactly one wins where the
 * backend has a conditional create (see StorageDriver.createIfAbsent). A replica without the lease lists `<prefix>`
 * once per tick, nothing more.
 *
 * Expiry compares this process's clock with the store's modification time, so the clocks must agree within
 * `expireMs`.
 */
import { randomUUID } from 'node:crypto';
import { readCapped } from './relay';
import { writeSmall, type StorageDriver } from './storage';

export interface LeaseOptions {
  /** Lease objects are `<prefix><generation>`. */
  readonly prefix: string;
  /** A lease not renewed for this long is taken over. */
  readonly expireMs: number;
  /** What the lease tells other replicas about its holder (e.g. its address), beside the holder's identity. */
  readonly info?: Readonly<Record<string, string | number>>;
}

interface LeaseObject {
  readonly key: string;
  readonly generation: number;
  readonly renewedAt: number;
}

/** A live lease of another holder, as its object says. */
export interface LeaseHolder {
  readonly holder: string;
  readonly info: Readonly<Record<string, unknown>>;
  /** The lease object's last renewal (the store's clock): it advances while the holder lives. */
  readonly renewedAt: number;
}

/** Bound of a lease object's size when read back. */
const MAX_LEASE_BYTES = 4096;

export class StoreLease {
  /** This process's identity in lease objects. */
  readonly holder = randomUUID();
  private heldKey: string | undefined;
  private readonly body: Buffer;

  constructor(
    private readonly storage: StorageDriver,
    private readonly options: LeaseOptions,
  ) {
    this.body = Buffer.from(JSON.stringify({ ...options.info, holder: this.holder, pid: process.pid }));
  }

  /** True after the last `tick` found this process holding the lease. */
  get held(): boolean {
    return this.heldKey !== undefined;
  }

  /**
   * Renews the lease if held, takes it if absent or expired; true while this process holds it. One listing of
   * `<prefix>`, and on the holder a read and a write (plus removal of superseded generations).
   */
  async tick(): Promise<boolean> {
    const now = Date.now(); // compared with the store's clock, never a test's
    const leases = await this.list();
    const current = leases.at(-1);
    for (const stale of leases.slice(0, -1)) await this.storage.delete(stale.key).catch(() => undefined);
    if (this.heldKey !== undefined && current?.key === this.heldKey && (await this.read(current.key))?.equals(this.body)) {
      await writeSmall(this.storage, current.key, this.body);
      return true;
    }
    this.heldKey = undefined;
    if (current && now - current.renewedAt < this.options.expireMs) return false;
    const key = `${this.options.prefix}${String((current?.generation ?? 0) + 1).padStart(12, '0')}`;
    if (!(await this.storage.createIfAbsent(key, this.body))) return false;
    this.heldKey = key;
    if (current) await this.storage.delete(current.key).catch(() => undefined);
    return true;
  }

  /** The live lease of another holder, if there is one now (one listing and one read). */
  async liveHolder(): Promise<LeaseHolder | undefined> {
    const current = (await this.list()).at(-1);
    if (!current || current.key === this.heldKey || Date.now() - current.renewedAt >= this.options.expireMs) return undefined;
    const body = await this.read(current.key);
    if (!body) return undefined;
    try {
      const info = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
      return typeof info.holder === 'string' ? { holder: info.holder, info, renewedAt: current.renewedAt } : undefined;
    } catch {
      return undefined; // a lease being rewritten is never partial (atomic commit); anything else is not ours
    }
  }

  /** Gives the lease up (on a clean stop, or once the work is done), so another replica takes over now. */
  async release(): Promise<void> {
    const key = this.heldKey;
    this.heldKey = undefined;
    if (key) await this.storage.delete(key).catch(() => undefined);
  }

  /** Lease objects, lowest generation first. */
  private async list(): Promise<LeaseObject[]> {
    return listLeases(this.storage, this.options.prefix);
  }

  /** Generations restart at 1 once released, so a holder back from a pause checks the holder a lease names. */
  private async read(key: string): Promise<Buffer | undefined> {
    const stream = await this.storage.read(key);
    return stream && (await readCapped(stream, MAX_LEASE_BYTES));
  }
}

/**
 * Removes the lease objects under `prefix` (of several leases: `_fill-leases/` holds one per blob being filled) not
 * renewed for `expireMs`: their holders died (kill -9, a lost node) and nobody took them over, as nobody asked for
 * the same work again. A contender would take each over, so removing one changes no holder; a holder that was only
 * paused that long finds its lease gone at its next renewal and takes it again. Returns how many went.
 */
export async function removeExpiredLeases(storage: StorageDriver, prefix: string, expireMs: number): Promise<number> {
  const now = Date.now();
  let removed = 0;
  for await (const info of storage.list(prefix)) {
    if (!/\d$/.test(info.key) || now - info.lastAccess.getTime() < expireMs) continue;
    await storage.delete(info.key);
    removed++;
  }
  return removed;
}

/** The lease objects of `prefix`, lowest generation first. */
async function listLeases(storage: StorageDriver, prefix: string): Promise<LeaseObject[]> {
  const out: LeaseObject[] = [];
  for await (const info of storage.list(prefix)) {
    const suffix = info.key.slice(prefix.length);
    const generation = Number(suffix);
    if (/^\d+$/.test(suffix) && Number.isSafeInteger(generation))
      out.push({ key: info.key, generation, renewedAt: info.lastAccess.getTime() });
  }
  return out.sort((a, b) => a.generation - b.generation);
}
