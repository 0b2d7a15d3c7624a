/**
 * The cache never serves a manifest or blob to a client the upstream would refuse. Before cached content is
 * served, the same manifest or blob is HEADed at the upstream with the client's own Authorization header:
 * 2xx allows; 401/403/404 are relayed (401 keeps WWW-Authenticate, so the client can get a token and retry).
 *
 * Decisions are remembered for `authttl`, keyed by a sha256 of (credential, repository, reference, action):
 * the raw credential is never a map key, a log field or a file. Only positive decisions are remembered: a user
 * who was just granted access must not wait for a cached refusal to expire. A 401 or 403 of the upstream to a
 * credential (on any request) voids every decision remembered for it, so a revoked user stays refused when the
 * upstream goes down next. When the upstream is unreachable (or answers 5xx), a positive decision younger than
 * `authstale` is reused (and logged), so cached images keep pulling during an outage for clients that were allowed
 * before it; anyone else gets 503 UNAVAILABLE.
 */
import { createHash } from 'node:crypto';
import type { CacheEvents } from './events';
import type { Logger } from './log';
import { type AccessTarget, type OciError, refusal, unavailable } from './oci-error';
import type { Upstream } from './upstream';

export type Decision = { readonly allowed: true; readonly stale: boolean } | { readonly allowed: false; readonly error: OciError };

export interface AuthorizerOptions {
  readonly ttlMs: number;
  /** How long a positive decision is reused while the upstream is unreachable (`authstale`). */
  readonly maxStaleMs: number;
  /** Bound of remembered decisions; the oldest go first. */
  readonly maxEntries?: number;
}

interface Remembered {
  readonly at: number;
  /** Order of the decision among decisions and refusals (Date.now() can tie). */
  readonly seq: number;
}

export class Authorizer {
  private readonly decisions = new Map<string, Remembered>();
  /** The seq of the upstream's last 401/403 to each credential (by a hash of it): older decisions are void. */
  private readonly refusedAt = new Map<string, number>();
  private seq = 0;
  private readonly pending = new Map<string, Promise<Decision>>();

  constructor(
    private readonly upstream: Upstream,
    private readonly options: AuthorizerOptions,
    private readonly log: Logger,
    private readonly events?: CacheEvents,
  ) {}

  /** The decision key: a hash, so credentials never sit in memory maps in clear. */
  static key(credential: string | undefined, target: AccessTarget, action = 'pull'): string {
    return createHash('sha256')
      .update(JSON.stringify([credential ?? '', target.name, target.reference, target.kind, action]))
      .digest('hex');
  }

  private static credentialKey(credential: string | undefined): string {
    return createHash('sha256')
      .update(credential ?? '')
      .digest('hex');
  }

  /** When the remembered positive decision was made, unless there is none or a refusal voided it. */
  private decidedAt(credential: string | undefined, target: AccessTarget): number | undefined {
    const decision = this.decisions.get(Authorizer.key(credential, target));
    if (decision === undefined) return undefined;
    const refused = this.refusedAt.get(Authorizer.credentialKey(credential));
    return refused !== undefined && refused > decision.seq ? undefined : decision.at;
  }

  /** A positive decision younger than `authstale`: what may be reused while the upstream is unreachable. */
  allowedWhileOffline(credential: string | undefined, target: AccessTarget): boolean {
    const at = this.decidedAt(credential, target);
    return at !== undefined && Date.now() - at < this.options.maxStaleMs;
  }

  /** A positive decision younger than `authttl`. */
  isFresh(credential: string | undefined, target: AccessTarget): boolean {
    const at = this.decidedAt(credential, target);
    return at !== undefined && Date.now() - at < this.options.ttlMs;
  }

  /** Records that the upstream just served `target` to `credential` (a successful GET or HEAD with it). */
  allow(credential: string | undefined, target: AccessTarget): void {
    const key = Authorizer.key(credential, target);
    this.decisions.delete(key); // re-insert so Map order stays oldest-first
    this.decisions.set(key, { at: Date.now(), seq: ++this.seq });
    const max = this.options.maxEntries ?? 100_000;
    while (this.decisions.size > max) this.decisions.delete(this.decisions.keys().next().value as string);
  }

  /**
   * Records an upstream answer other than success for `target`. A 401 or 403 voids the credential's decision for
   * `target` and, for a real credential, every earlier one (anonymous 401s are only the challenge to log in).
   */
  refused(credential: string | undefined, target: AccessTarget, status: number): void {
    if (status !== 401 && status !== 403) return;
    this.decisions.delete(Authorizer.key(credential, target));
    if (credential === undefined) return;
    const key = Authorizer.credentialKey(credential);
    this.refusedAt.delete(key);
    this.refusedAt.set(key, ++this.seq);
    const max = this.options.maxEntries ?? 100_000;
    while (this.refusedAt.size > max) this.refusedAt.delete(this.refusedAt.keys().next().value as string);
  }

  /** Asks the upstream (or a fresh remembered decision) whether `credential` may pull `target`. */
  async check(credential: string | undefined, target: AccessTarget, accept?: string): Promise<Decision> {
    const key = Authorizer.key(credential, target);
    const at = this.decidedAt(credential, target);
    if (at !== undefined && Date.now() - at < this.options.ttlMs) return { allowed: true, stale: false };
    // Concurrent requests of one client for one object share one upstream check.
    const inFlight = this.pending.get(key);
    if (inFlight) return inFlight;
    const decision = this.ask(credential, target, accept).finally(() => this.pending.delete(key));
    this.pending.set(key, decision);
    return decision;
  }

  private async ask(credential: string | undefined, target: AccessTarget, accept: string | undefined): Promise<Decision> {
    const result = await this.upstream.request({
      method: 'HEAD',
      path: `/v2/${target.name}/${target.kind === 'manifest' ? 'manifests' : 'blobs'}/${target.reference}`,
      headers: { authorization: credential, accept: target.kind === 'manifest' ? accept : undefined },
    });
    if (result.ok) {
      result.body.resume();
      if (result.status >= 200 && result.status < 300) {
        this.allow(credential, target);
        return { allowed: true, stale: false };
      }
      this.refused(credential, target, result.status);
      return { allowed: false, error: refusal(result.status, result.headers, target) };
    }
    const at = this.decidedAt(credential, target);
    if (at !== undefined && Date.now() - at < this.options.maxStaleMs) {
      this.log.warn('upstream unreachable; reusing an earlier authorization', {
        repository: target.name,
        reference: target.reference,
        ageSeconds: Math.round((Date.now() - at) / 1000),
        reason: result.reason,
      });
      this.events?.emit('stale', { kind: 'authorization', name: target.name });
      return { allowed: true, stale: true };
    }
    return { allowed: false, error: unavailable(result.reason) };
  }
}
