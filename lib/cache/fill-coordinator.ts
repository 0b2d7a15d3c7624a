/**
 * One upstream fetch per blob per site: the replicas sharing a store coordinate their fills through a lease per
 * digest in that store (store-lease.ts, `_fill-leases/<algorithm>-<hex>.<generation>`).
 *
 * - The replica that creates the lease (create-if-absent) fetches from the upstream, renews the lease while its
 *   fill runs, and releases it once the blob is committed (or the fill failed).
 * - A replica that finds a live lease does not fetch: it streams the blob from the holder's replica endpoint
 *   (replica-endpoint.ts, the address the lease names, authenticated with `http.secret`) into its own fill, which
 *   serves its clients as any fill does. The holder sends no byte it does not have and its last byte only once
 *   verified; this replica verifies the digest again before its own last byte.
 * - A holder that dies stops renewing; its lease expires after `expireMs`, and of the replicas whose streams broke one
 *   takes the lease over and resumes from the upstream with a range request where its bytes end (an upstream that
 *   ignores the range sends the whole blob again: the bytes already there are skipped); the others stream from the
 *   new holder from where they are.
 *
 * Every replica writes its own copy through the driver's atomic commit (identical verified content: the last commit
 * wins whole), so any of them can finish the blob after a takeover. The lease saves WAN transfers, it does not guard
 * correctness: a replica that cannot read or write the lease fetches from the upstream itself.
 */
import { request } from 'undici';
import { Readable } from 'node:stream';
import type { FillSource, SourceKind, UpstreamOpener } from './blob-fill';
import type { Logger } from './log';
import type { OciError } from './oci-error';
import { blobKey, type Digest } from './reference';
import { FILL_PATH, replicaHeaders, SIZE_HEADER } from './replica-endpoint';
import { removeExpiredLeases, StoreLease } from './store-lease';
import type { StorageDriver } from './storage';

export const FILL_LEASE_PREFIX = '_fill-leases/';

export interface FillCoordinatorOptions {
  readonly storage: StorageDriver;
  /** This replica's endpoint, host:port, written in the leases it holds. */
  readonly address: string;
  readonly secret: string;
  readonly log: Logger;
  /** The holder rewrites its lease this often. @default 2 s */
  readonly renewMs?: number;
  /** A lease not renewed for this long is taken over. @default 5 renewals */
  readonly expireMs?: number;
}

/** Where a fill's next bytes come from, starting at `start`. */
interface Segment {
  readonly from: 'upstream' | 'replica' | 'storage';
  readonly body: Readable;
  readonly size?: number;
  readonly start: number;
}

type Next = { readonly ok: true; readonly segment: Segment } | { readonly ok: false; readonly error?: OciError };

/** One blob's coordination: its lease, and the renewal while this replica holds it. */
interface Attempt {
  readonly digest: Digest;
  readonly lease: StoreLease;
  readonly openUpstream: UpstreamOpener;
  readonly signal: AbortSignal;
  /** Told where the first bytes come from, once, as soon as that is decided. */
  decided?: (kind: SourceKind) => void;
  renewal?: NodeJS.Timeout;
  /** The renewal in flight: a release waits for it, or the renewal could write the lease back after the release. */
  renewing?: Promise<unknown>;
}

export class FillCoordinator {
  readonly renewMs: number;
  readonly expireMs: number;
  /** When this replica last looked for expired fill leases (see `removeExpired`). */
  private tidiedAt = 0;

  constructor(private readonly options: FillCoordinatorOptions) {
    this.renewMs = options.renewMs ?? 2_000;
    this.expireMs = options.expireMs ?? 5 * this.renewMs;
  }

  /**
   * The source of a fill of `digest`: the upstream (this replica took the lease; `fetched`), or the holder's
   * stream. `{ ok: false }` without an error: the blob was committed meanwhile (look in storage again).
   */
  async open(digest: Digest, openUpstream: UpstreamOpener, signal: AbortSignal, decided?: (kind: SourceKind) => void): Promise<FillSource> {
    const lease = new StoreLease(this.options.storage, {
      prefix: `${FILL_LEASE_PREFIX}${digest.algorithm}-${digest.hex}.`,
      expireMs: this.expireMs,
      info: { address: this.options.address },
    });
    const attempt: Attempt = { digest, lease, openUpstream, signal, decided };
    const first = await this.next(attempt, 0, undefined);
    if (!first.ok) return first;
    const size = first.segment.size;
    return {
      ok: true,
      body: this.chain(attempt, first.segment, size),
      size,
      fetched: first.segment.from === 'upstream',
      done: () => this.release(attempt),
    };
  }

  /** The blob's bytes from the first segment on, resuming from the next source when a replica's stream breaks. */
  private chain(attempt: Attempt, first: Segment, size: number | undefined): Readable {
    const { log } = this.options;
    const next = (offset: number) => this.next(attempt, offset, size);
    const digest = attempt.digest.text;
    async function* bytes(): AsyncGenerator<Buffer> {
      let segment = first;
      let offset = 0;
      try {
        for (;;) {
          // An upstream that answered a range request with the whole blob: skip what is here already.
          let skip = offset - segment.start;
          if (skip < 0) throw new Error(`the blob's source resumed at byte ${segment.start}, after ${offset}`);
          try {
            for await (const chunk of segment.body as AsyncIterable<Buffer>) {
              if (skip >= chunk.length) {
                skip -= chunk.length;
                continue;
              }
              const part = skip > 0 ? chunk.subarray(skip) : chunk;
              skip = 0;
              offset += part.length;
              yield part;
            }
            return; // the upstream's end (the fill checks length and digest), or the other replica's verified end
          } catch (err) {
            if (segment.from !== 'replica' || attempt.signal.aborted) throw err;
            log.warn('the replica filling this blob stopped; resuming', { digest, offset, reason: (err as Error).message });
            const resumed = await next(offset);
            if (!resumed.ok) throw new Error(resumed.error?.message ?? 'the blob could not be resumed');
            segment = resumed.segment;
          }
        }
      } finally {
        segment.body.destroy();
      }
    }
    return Readable.from(bytes(), { objectMode: false });
  }

  /**
   * The source of the blob from byte `offset`: storage if committed, else the upstream if this replica gets the
   * lease, else the holder's endpoint. Tries once per `renewMs` until `signal` (filltimeout) fires.
   */
  private async next(attempt: Attempt, offset: number, size: number | undefined): Promise<Next> {
    const { storage, log } = this.options;
    const { digest, lease, signal } = attempt;
    const key = blobKey(digest);
    /** The holder whose endpoint could not be reached, and its lease's renewal time then. */
    let unreachable: { holder: string; renewedAt: number; since: number } | undefined;
    let bypass = false;
    const began = Date.now();
    for (let tries = 0; !signal.aborted; tries++) {
      if (tries > 0) await sleep(this.renewMs, signal);
      if (signal.aborted) break;
      const held =
        bypass ||
        (await lease.tick().catch((err: unknown) => {
          log.warn('fill lease unavailable; fetching from the upstream', { digest: digest.text, reason: (err as Error).message });
          return true;
        }));
      if (held) {
        const stored = await storage.stat(key).catch(() => undefined);
        if (stored) {
          await lease.release();
          if (offset === 0) return { ok: false };
          const body =
            offset < stored.size
              ? await storage.read(key, { start: offset, end: stored.size - 1 }).catch(() => undefined)
              : Readable.from([]);
          if (body) return { ok: true, segment: { from: 'storage', body, size: stored.size, start: offset } };
          continue;
        }
        this.renew(attempt);
        log.info('fill lease taken; fetching from the upstream', { digest: digest.text, offset, leaseMs: Date.now() - began });
        this.decide(attempt, 'upstream');
        const opened = await attempt.openUpstream(signal, offset).catch(async (err: unknown) => {
          await this.release(attempt);
          throw err;
        });
        if (!opened.ok) {
          await this.release(attempt);
          return opened;
        }
        if (offset > 0 && !bypass)
          log.info('took over a fill from a replica that stopped', { digest: digest.text, offset, ranged: opened.start === offset });
        return { ok: true, segment: { from: 'upstream', body: opened.body, size: opened.size ?? size, start: opened.start ?? 0 } };
      }
      const holder = await lease.liveHolder().catch(() => undefined);
      if (!holder || typeof holder.info.address !== 'string') continue; // released or expired just now: ask again
      const address = holder.info.address;
      this.decide(attempt, 'replica');
      const streamed = await this.fromReplica(address, digest, offset, signal);
      if (streamed.ok) {
        log.info('blob miss; streaming from the replica fetching it', { digest: digest.text, address, offset, ms: Date.now() - began });
        return { ok: true, segment: { from: 'replica', body: streamed.body, size: streamed.size ?? size, start: offset } };
      }
      if (!streamed.unreachable) continue; // not filling (any more): its lease goes once it is released or stops renewing
      // A holder that renews its lease after this replica failed to reach it is alive but out of reach (a wrong
      // http.internal.advertise, another http.secret, no route between them): fetch rather than wait for its whole
      // fill. A dead holder renews no more; its lease expires and one replica takes over.
      if (unreachable?.holder !== holder.holder) unreachable = { holder: holder.holder, renewedAt: holder.renewedAt, since: Date.now() };
      else if (holder.renewedAt > unreachable.renewedAt || Date.now() - unreachable.since >= 2 * this.expireMs) {
        log.error('the replica holding the fill lease cannot be reached; fetching from the upstream too', {
          digest: digest.text,
          address,
          reason: streamed.reason,
          fix: 'check http.internal.advertise and that http.secret is the same on every replica',
        });
        bypass = true;
      }
    }
    return {
      ok: false,
      error: { status: 503, code: 'UNAVAILABLE', message: `fill of ${digest.text} stopped: filltimeout reached or shutting down` },
    };
  }

  private async fromReplica(
    address: string,
    digest: Digest,
    offset: number,
    signal: AbortSignal,
  ): Promise<{ ok: true; body: Readable; size?: number } | { ok: false; unreachable: boolean; reason: string }> {
    try {
      const res = await request(`http://${address}${FILL_PATH}${digest.text}?from=${offset}`, {
        headers: replicaHeaders(this.options.secret, digest.text, offset),
        signal,
        // The holder answers once its upstream GET answered; a holder that stopped (paused, its node gone) without
        // closing the connection is given up after these, and its lease has expired by then.
        headersTimeout: this.expireMs * 3,
        bodyTimeout: this.expireMs * 2,
      });
      if (res.statusCode !== 200) {
        await res.body.dump();
        // 401: another http.secret; 404: not filling (any more); anything else: try again.
        return { ok: false, unreachable: res.statusCode === 401, reason: `answered ${res.statusCode}` };
      }
      const size = Number(res.headers[SIZE_HEADER]);
      return { ok: true, body: res.body as Readable, size: Number.isSafeInteger(size) ? size : undefined };
    } catch (err) {
      return { ok: false, unreachable: isConnectFailure(err), reason: (err as Error).message };
    }
  }

  /** Tells the fill where its first bytes come from (the first decision only: a resumed fill's clients are served). */
  private decide(attempt: Attempt, kind: SourceKind): void {
    attempt.decided?.(kind);
    attempt.decided = undefined;
  }

  /** Rewrites the lease every `renewMs` while this replica fills (one renewal at a time). */
  private renew(attempt: Attempt): void {
    if (attempt.renewal) return;
    attempt.renewal = setInterval(() => {
      if (attempt.renewing) return;
      attempt.renewing = attempt.lease
        .tick()
        .then(
          (held) => held || this.options.log.warn('fill lease lost to another replica', { digest: attempt.digest.text }),
          (err: unknown) =>
            this.options.log.warn('fill lease renewal failed', { digest: attempt.digest.text, reason: (err as Error).message }),
        )
        .finally(() => (attempt.renewing = undefined));
    }, this.renewMs);
    attempt.renewal.unref();
  }

  private async release(attempt: Attempt): Promise<void> {
    clearInterval(attempt.renewal);
    attempt.renewal = undefined;
    await attempt.renewing;
    await attempt.lease.release();
    void this.removeExpired(); // after the fill, never in its way
  }

  /**
   * The lease of a holder that died is taken over (and removed) by the next replica that wants the same blob; one
   * nobody asks for again would stay in the store for good. So once a fill is over, this replica removes the fill
   * leases not renewed for `expireMs`: one listing of `_fill-leases/` per `expireMs` at most.
   */
  private async removeExpired(): Promise<void> {
    if (Date.now() - this.tidiedAt < this.expireMs) return;
    this.tidiedAt = Date.now();
    const { storage, log } = this.options;
    const removed = await removeExpiredLeases(storage, FILL_LEASE_PREFIX, this.expireMs).catch((err: unknown) => {
      log.warn('could not remove expired fill leases', { reason: (err as Error).message });
      return 0;
    });
    if (removed > 0) log.info('removed the fill leases of replicas that stopped mid-fill', { count: removed });
  }
}

/** No connection to the address at all (nothing listens there, no route, no such name); not a slow answer. */
const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

function isConnectFailure(err: unknown): boolean {
  const code = (e: unknown) => (e as { code?: string } | undefined)?.code ?? '';
  return CONNECT_FAILURES.has(code(err)) || CONNECT_FAILURES.has(code((err as { cause?: unknown } | undefined)?.cause));
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
