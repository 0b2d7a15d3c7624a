/**
 * The negative cache: upstream 404s for a manifest or blob are remembered for `notfoundttl`, so a storm of pulls
 * of a missing tag (a CI loop, a typo in a deployment) sends one upstream request per window, not one per pull.
 *
 * Entries are scoped per client credential, repository and reference: a 404 is what the upstream told a client
 * it had authorized for that repository, and another client may be owed a 401 challenge instead. Only 404s are
 * remembered, and an entry never touches storage: cached content is not purged on an upstream 404.
 */
import { createHash } from 'node:crypto';
import type { AccessTarget } from './oci-error';

/** Bound of remembered 404s; the oldest go first. */
const MAX_ENTRIES = 10_000;

export class NotFoundCache {
  private readonly until = new Map<string, number>();

  constructor(private readonly ttlMs: number) {}

  /** Whether the upstream answered 404 for this client and target within the TTL. */
  has(credential: string | undefined, target: AccessTarget): boolean {
    const key = NotFoundCache.key(credential, target);
    const until = this.until.get(key);
    if (until === undefined) return false;
    if (Date.now() < until) return true;
    this.until.delete(key);
    return false;
  }

  /** Records an upstream 404 for this client and target. */
  remember(credential: string | undefined, target: AccessTarget): void {
    if (this.ttlMs <= 0) return;
    const key = NotFoundCache.key(credential, target);
    this.until.delete(key); // re-insert so Map order stays oldest-first
    this.until.set(key, Date.now() + this.ttlMs);
    while (this.until.size > MAX_ENTRIES) this.until.delete(this.until.keys().next().value as string);
  }

  /** A hash, so credentials never sit in a map in clear. */
  private static key(credential: string | undefined, target: AccessTarget): string {
    return createHash('sha256')
      .update(JSON.stringify([credential ?? '', target.kind, target.name, target.reference]))
      .digest('hex');
  }
}
