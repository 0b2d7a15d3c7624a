/**
 * One sweeper per site: a lease kept in the store the replicas share. The lease is an object
 * `_sweeper/lease/<generation>` naming its holder; the highest generation present is the lease. Its holder renews
 * it by rewriting it (the store's modification time is the renewal) after reading it back to check it is still its
 * own; a lease not renewed for `expireMs` belongs to a dead holder, and a contender takes over by creating
 * generation + 1 with the driver's `createIfAbsent` (exclusive create on the filesystem, a conditional write on
 * object stores), so of several contenders exactly one wins. A replica without the lease lists `_sweeper/lease/`
 * once per tick, nothing more.
 *
 * The lease saves work, it does not guard correctness: a paused holder may run one more pass after a takeover, and
 * two passes at once are safe (the sweeper re-stats every key before deleting it). Expiry compares this process's
 * clock with the store's modification time, so the clocks must agree within `expireMs` (minutes, by default).
 */
import { randomUUID } from 'node:crypto';
import { readCapped } from './relay';
import { writeSmall, type StorageDriver } from './storage';

export const LEASE_PREFIX = '_sweeper/lease/';

export interface LeaseOptions {
  /** A lease not renewed for this long is taken over. */
  readonly expireMs: number;
}

interface LeaseObject {
  readonly key: string;
  readonly generation: number;
  readonly renewedAt: number;
}

export class StoreLease {
  /** This process's identity in lease keys. */
  readonly holder = randomUUID();
  private heldKey: string | undefined;
  private readonly body = Buffer.from(JSON.stringify({ holder: this.holder, pid: process.pid }));

  constructor(
    private readonly storage: StorageDriver,
    private readonly options: LeaseOptions,
  ) {}

  /** True after the last `tick` found this process holding the lease. */
  get held(): boolean {
    return this.heldKey !== undefined;
  }

  /**
   * Renews the lease if held, takes it if absent or expired; true while this process holds it. One listing of
   * `_sweeper/lease/`, and on the holder a read and a write (plus removal of superseded generations).
   */
  async tick(): Promise<boolean> {
    const now = Date.now(); // compared with the store's clock, never a test's
    const leases = await this.list();
    const current = leases.at(-1);
    for (const stale of leases.slice(0, -1)) await this.storage.delete(stale.key).catch(() => undefined);
    if (this.heldKey !== undefined && current?.key === this.heldKey && (await this.isMine(current.key))) {
      await writeSmall(this.storage, current.key, this.body);
      return true;
    }
    this.heldKey = undefined;
    if (current && now - current.renewedAt < this.options.expireMs) return false;
    const key = `${LEASE_PREFIX}${String((current?.generation ?? 0) + 1).padStart(12, '0')}`;
    if (!(await this.storage.createIfAbsent(key, this.body))) return false;
    this.heldKey = key;
    if (current) await this.storage.delete(current.key).catch(() => undefined);
    return true;
  }

  /** Gives the lease up (on a clean stop), so another replica takes over at its next tick. */
  async release(): Promise<void> {
    const key = this.heldKey;
    this.heldKey = undefined;
    if (key) await this.storage.delete(key).catch(() => undefined);
  }

  /** Lease objects, lowest generation first. */
  private async list(): Promise<LeaseObject[]> {
    const out: LeaseObject[] = [];
    for await (const info of this.storage.list(LEASE_PREFIX)) {
      const generation = Number(info.key.slice(LEASE_PREFIX.length));
      if (Number.isSafeInteger(generation)) out.push({ key: info.key, generation, renewedAt: info.lastAccess.getTime() });
    }
    return out.sort((a, b) => a.generation - b.generation);
  }

  /** Generations restart at 1 once released, so a holder back from a pause checks the holder it names. */
  private async isMine(key: string): Promise<boolean> {
    const stream = await this.storage.read(key);
    return stream !== undefined && (await readCapped(stream, 4096)).equals(this.body);
  }
}
