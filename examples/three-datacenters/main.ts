/**
 * The seed scenario: the US datacenter runs DTR (HA) at https://dtr.us.example.com; Asia and Europe each get a cache
 * site, in their own stack (each datacenter is its own swarm, reached through its own MKE client bundle, unpacked
 * under bundles/<datacenter>/), fetching from the US DTR. The image comes from $DTR_CACHE_IMAGE (or options.image):
 * the default is a placeholder to replace with your registry's copy.
 */
import { existsSync } from 'node:fs';
import { App, TerraformStack } from 'cdktf';
import { DtrCacheSite, StorageBackend, SwarmConnection } from '../../lib/constructs';
import { ExampleOptions, newApp, productionImage, synthIfMain, tlsFor } from '../support';

const DTR = 'https://dtr.us.example.com';

/** The datacenter's MKE client bundle; its env.sh names the manager's API, else ucp.<datacenter>.example.com. */
function clientBundle(datacenter: string): SwarmConnection {
  const directory = `bundles/${datacenter}`;
  return existsSync(`${directory}/env.sh`)
    ? SwarmConnection.clientBundle({ directory })
    : SwarmConnection.clientBundle({ directory, host: `tcp://ucp.${datacenter}.example.com:443` });
}

export function buildThreeDatacenters(options: ExampleOptions = {}): App {
  const app = newApp(options);
  const connection = options.connection ?? clientBundle;
  const image = productionImage(options);

  // Asia: two dedicated workers sharing an NFS export, behind the routing mesh on 8443 (MKE's managers serve their
  // own API and UI on 443, which the routing mesh would claim on every node).
  const asia = new TerraformStack(app, 'dtr-cache-asia');
  new DtrCacheSite(asia, 'asia', {
    datacenter: 'asia',
    upstreams: [DTR],
    host: 'cache.asia.example.com',
    nodes: ['cache-asia-1', 'cache-asia-2'],
    storage: StorageBackend.nfs({ server: 'nfs.asia.example.com' }),
    tls: tlsFor('cache.asia.example.com', options),
    image: { reference: image },
    connection: connection('asia'),
    port: 8443,
    blobTtl: '24h',
    // cdktf deploy registers the cache with DTR (DTR_USERNAME/DTR_PASSWORD of an admin in the deploy environment).
    registration: { name: 'region-asia' },
    now: options.now,
  });

  // Europe: a small office, one replica on one dedicated worker, on 8443 as well.
  const europe = new TerraformStack(app, 'dtr-cache-europe');
  new DtrCacheSite(europe, 'europe', {
    datacenter: 'europe',
    upstreams: [DTR],
    host: 'cache.europe.example.com',
    nodes: ['cache-europe-1'],
    tls: tlsFor('cache.europe.example.com', options),
    image: { reference: image },
    connection: connection('europe'),
    port: 8443,
    blobTtl: '24h',
    registration: { name: 'region-europe' },
    now: options.now,
  });
  return app;
}

synthIfMain(module, buildThreeDatacenters);
