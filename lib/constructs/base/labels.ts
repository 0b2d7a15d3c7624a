/**
 * The labels every swarm object of a site carries: `dtr.cache.managed-by`, and on Mirantis Kubernetes Engine (MKE,
 * formerly UCP) the access label that puts the object into a collection, which DtrCacheSite's `accessLabel` sets for
 * everything under it (construct context, so the constructs need no extra prop).
 */
import { IConstruct } from 'constructs';

/** The label MKE reads an object's collection from, e.g. /Shared/dtr-cache. */
export const MKE_ACCESS_LABEL = 'com.docker.ucp.access.label';

const ACCESS_LABEL_CONTEXT = 'dtr-cache-site:accessLabel';

/** Sets the MKE access label of every object created under `scope` from now on. */
export function setAccessLabel(scope: IConstruct, collection: string): void {
  scope.node.setContext(ACCESS_LABEL_CONTEXT, collection);
}

/** The labels of a swarm object created in `scope`. */
export function managedLabels(scope: IConstruct): { label: string; value: string }[] {
  const access = scope.node.tryGetContext(ACCESS_LABEL_CONTEXT) as string | undefined;
  return [{ label: 'dtr.cache.managed-by', value: 'dtr-cache-site' }, ...(access ? [{ label: MKE_ACCESS_LABEL, value: access }] : [])];
}
