/**
 * Fill sharing between the replicas of a site, on when `http.secret` is set: this replica's endpoint
 * (replica-endpoint.ts) and the coordinator its fills go through (fill-coordinator.ts). The coordinator writes the
 * endpoint's address in the leases it takes; the endpoint serves the fills once the registry exists (before, it
 * serves stored blobs only).
 */
import type { CacheConfig } from '../config';
import type { FillRegistry } from './blob-fill';
import { FillCoordinator } from './fill-coordinator';
import type { Logger } from './log';
import { startReplicaEndpoint } from './replica-endpoint';
import type { StorageDriver } from './storage';

export interface FillSharing {
  readonly coordinator: FillCoordinator;
  /** Serves the fills of `fills` to the other replicas from now on. */
  serve(fills: FillRegistry): void;
  close(): Promise<void>;
}

export async function startFillSharing(
  http: CacheConfig['http'],
  storage: StorageDriver,
  log: Logger,
  parseAddr: (addr: string) => { host: string | undefined; port: number },
): Promise<FillSharing | undefined> {
  const secret = http.secret;
  if (!secret) return undefined;
  let served: FillRegistry | undefined;
  const endpoint = await startReplicaEndpoint({
    secret,
    addr: http.internal.addr,
    advertise: http.internal.advertise,
    fills: () => served,
    storage,
    log,
    parseAddr,
  });
  return {
    coordinator: new FillCoordinator({ storage, address: endpoint.address, secret, log }),
    serve: (fills) => void (served = fills),
    close: () => endpoint.close(),
  };
}
