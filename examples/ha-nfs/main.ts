/** A highly available site: three replicas on three dedicated workers sharing an NFS export. */
import { App, TerraformStack } from 'cdktf';
import { DtrCacheSite, StorageBackend } from '../../lib/constructs';
import { DEFAULT_IMAGE, ExampleOptions, newApp, synthIfMain, tlsFor } from '../support';

export function buildHaNfs(options: ExampleOptions = {}): App {
  const app = newApp(options);
  const stack = new TerraformStack(app, 'dtr-cache-ha-nfs');
  new DtrCacheSite(stack, 'site', {
    datacenter: 'ha-nfs',
    upstreams: ['https://dtr.us.example.com'],
    host: 'cache-ha.example.com',
    nodes: ['cache-1', 'cache-2', 'cache-3'],
    replicas: 3,
    // The deploy writes /etc/exports.d/dtr-cache-ha-nfs.exports on the server over SSH (as root, with the deploy
    // machine's ssh keys): /dtr-cache 10.0.0.0/24(rw,root_squash,no_wdelay); before the service rolls, every node
    // mounts the volume and reads another's probe.
    storage: StorageBackend.nfs({ server: '10.0.0.10', path: '/dtr-cache', clients: ['10.0.0.0/24'], applyOverSsh: {} }),
    tls: tlsFor('cache-ha.example.com', options),
    image: { reference: options.image ?? DEFAULT_IMAGE },
    blobTtl: '24h',
    now: options.now,
  });
  return app;
}

synthIfMain(module, buildHaNfs);
