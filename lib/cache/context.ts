/** What the request handlers share: one instance per server. */
import type { DownstreamOptions } from '../config';
import type { Authorizer } from './authorize';
import type { FillRegistry } from './blob-fill';
import type { BlobIntegrity } from './integrity';
import type { BusyKeys } from './busy';
import type { CacheEvents } from './events';
import type { Logger } from './log';
import type { ManifestStore } from './manifest-store';
import type { NotFoundCache } from './not-found';
import type { StorageDriver } from './storage';
import type { Upstream } from './upstream';

export interface PullContext {
  readonly options: DownstreamOptions;
  readonly storage: StorageDriver;
  /** Manifests and tag records: storage behind a bounded memory layer. */
  readonly manifests: ManifestStore;
  readonly upstream: Upstream;
  readonly authorizer: Authorizer;
  readonly fills: FillRegistry;
  readonly busy: BusyKeys;
  /** Which stored blobs were verified, and when: what a hit checks. */
  readonly integrity: BlobIntegrity;
  /** Upstream 404s remembered for `notfoundttl`. */
  readonly notFound: NotFoundCache;
  readonly events: CacheEvents;
  readonly log: Logger;
}

/** What a handler knows about the client: its credential is only ever forwarded to the upstream. */
export interface ClientRequest {
  readonly credential: string | undefined;
  readonly accept: string | undefined;
  readonly log: Logger;
}
