/**
 * Building what every pull shares, from the config: the storage (writes an earlier process left behind removed,
 * tag records moved to the current layout), the upstream client, the authorizer, the fill registry and the
 * in-memory layers. Nothing here listens: `server.ts` puts a handler and a listener in front of it.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selectStorage, type CacheConfig } from '../config';
import { Authorizer } from './authorize';
import { parseAddr } from './addr';
import { FillRegistry } from './blob-fill';
import { BusyKeys } from './busy';
import type { PullContext } from './context';
import { CacheEvents } from './events';
import { startFillSharing, type FillSharing } from './fill-sharing';
import { BlobIntegrity } from './integrity';
import type { Logger } from './log';
import { ManifestStore, migrateTagLayout } from './manifest-store';
import { NotFoundCache } from './not-found';
import { createStorage, type StorageDriver } from './storage';
import { Upstream } from './upstream';
import { SINGLE_PROCESS, workerAddr, type WorkerSlot } from './worker-slot';

export interface PullContextOptions {
  /** Where fills spool; default `<OS temp dir>/dtr-cache-spool`. */
  readonly spoolDir?: string;
  /** Use this storage instead of creating one from config.storage. */
  readonly storage?: StorageDriver;
  /** Which worker of `serve --workers N` builds it: its replica endpoint listens on `workerAddr(internal.addr)`. */
  readonly worker?: WorkerSlot;
}

/** The context, and the fill sharing with the other replicas (and workers) when `http.secret` is set. */
export interface BuiltPullContext {
  readonly ctx: PullContext;
  readonly sharing: FillSharing | undefined;
}

export async function buildPullContext(config: CacheConfig, log: Logger, options: PullContextOptions = {}): Promise<BuiltPullContext> {
  const downstream = config.middleware.registry[0].options;
  const events = new CacheEvents();
  const storage = options.storage ?? (await createStorage(selectStorage(config.storage)));
  await tidyStorage(storage, downstream.filltimeout, log);
  // One shared directory, never removed: spool files are unlinked as soon as they are opened, so it stays empty
  // and even a killed process leaves nothing in it (a per-process directory would leak on kill -9).
  const spoolDir = options.spoolDir ?? join(tmpdir(), 'dtr-cache-spool');
  const upstream = new Upstream(
    {
      upstreams: downstream.upstreams,
      cas: downstream.cas,
      timeoutMs: downstream.upstreamtimeout,
      offlineAfter: downstream.offlineafter,
      offlinePeriodMs: downstream.offlineperiod,
    },
    events,
  );
  const busy = new BusyKeys();
  const integrity = new BlobIntegrity(storage, downstream.verifyage, log, events);
  // A fill verified the bytes it committed.
  events.on('fillEnded', (p) => p.ok && integrity.record(p.digest, p.bytes));
  // With http.secret, the replicas of a site, and the workers of each, fetch each blob once (fill-sharing.ts).
  // Each worker is a holder of its own: its endpoint's port (and an advertised port) is offset by its index.
  const slot = options.worker ?? SINGLE_PROCESS;
  const { addr, advertise } = config.http.internal;
  const advertisedPort = advertise !== undefined && /:\d+$/.test(advertise) && !/^[^[]*:.*:/.test(advertise);
  const internal = { addr: workerAddr(addr, slot), advertise: advertisedPort ? workerAddr(advertise, slot) : advertise };
  const sharing = await startFillSharing({ ...config.http, internal }, storage, log, parseAddr);
  const ctx: PullContext = {
    options: downstream,
    storage,
    manifests: new ManifestStore(storage, downstream.tagttl),
    upstream,
    authorizer: new Authorizer(upstream, { ttlMs: downstream.authttl, maxStaleMs: downstream.authstale }, log, events),
    fills: new FillRegistry({ storage, spoolDir, timeoutMs: downstream.filltimeout, busy, log, events, coordinator: sharing?.coordinator }),
    busy,
    integrity,
    notFound: new NotFoundCache(downstream.notfoundttl),
    events,
    log,
  };
  sharing?.serve(ctx.fills);
  return { ctx, sharing };
}

/** What an earlier process left in the store: stale temp writes removed, tag records in the current layout. */
async function tidyStorage(storage: StorageDriver, fillTimeoutMs: number, log: Logger): Promise<void> {
  // Another replica may be filling into a shared store right now: only writes older than any fill can be are stale.
  const stale = await storage.removeStaleWrites(fillTimeoutMs + 60_000).catch((err) => {
    log.warn('could not remove stale writes', { reason: (err as Error).message });
    return 0;
  });
  if (stale > 0) log.info('removed stale writes of an earlier process', { count: stale });
  const migrated = await migrateTagLayout(storage).catch((err) => {
    log.error('could not move tag records to the current layout; they are fetched again', { reason: (err as Error).message });
    return 0;
  });
  if (migrated > 0) log.info('moved tag records to the current layout', { count: migrated });
}
