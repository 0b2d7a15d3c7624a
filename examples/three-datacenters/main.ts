/**
 * The seed scenario: the US datacenter runs DTR (HA) at https://dtr.us.example.com; Asia and Europe each get a cache
 * site, in their own stack (each datacenter is its own swarm), fetching from the US DTR.
 */
import { App, TerraformStack } from 'cdktf';
import { DtrCacheSite, StorageBackend, SwarmConnection } from '../../lib/constructs';
import { DEFAULT_IMAGE, ExampleOptions, newApp, synthIfMain, tlsFor } from '../support';

const DTR = 'https://dtr.us.example.com';

export function buildThreeDatacenters(options: ExampleOptions = {}): App {
  const app = newApp(options);

  // Asia: two dedicated workers sharing an NFS export, behind the routing mesh on 443.
  const asia = new TerraformStack(app, 'dtr-cache-asia');
  new DtrCacheSite(asia, 'asia', {
    datacenter: 'asia',
    upstreams: [DTR],
    host: 'cache.asia.example.com',
    nodes: ['cache-asia-1', 'cache-asia-2'],
    storage: StorageBackend.nfs({ server: 'nfs.asia.example.com' }),
    tls: tlsFor('cache.asia.example.com', options),
    image: { reference: options.image ?? DEFAULT_IMAGE },
    connection: SwarmConnection.localSocket(),
    blobTtl: '24h',
    // cdktf deploy registers the cache with DTR (DTR_USERNAME/DTR_PASSWORD of an admin in the deploy environment).
    registration: { name: 'region-asia' },
    now: options.now,
  });

  // Europe: a small office, one replica on one dedicated worker.
  const europe = new TerraformStack(app, 'dtr-cache-europe');
  new DtrCacheSite(europe, 'europe', {
    datacenter: 'europe',
    upstreams: [DTR],
    host: 'cache.europe.example.com',
    nodes: ['cache-europe-1'],
    tls: tlsFor('cache.europe.example.com', options),
    image: { reference: options.image ?? DEFAULT_IMAGE },
    connection: SwarmConnection.localSocket(),
    blobTtl: '24h',
    registration: { name: 'region-europe' },
    now: options.now,
  });
  return app;
}

synthIfMain(module, buildThreeDatacenters);
