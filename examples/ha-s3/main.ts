/**
 * A highly available site on S3, published in host mode for an external load balancer. The secret key is read from a
 * file by Terraform at deploy time and delivered inside config.yml as a swarm secret; synth does not need the file.
 */
import { App, TerraformStack } from 'cdktf';
import { DtrCacheSite, LoadBalancer, SecretSource, StorageBackend } from '../../lib/constructs';
import { DEFAULT_IMAGE, ExampleOptions, newApp, synthIfMain, tlsFor } from '../support';

export function buildHaS3(options: ExampleOptions = {}): App {
  const app = newApp(options);
  const stack = new TerraformStack(app, 'dtr-cache-ha-s3');
  new DtrCacheSite(stack, 'site', {
    datacenter: 'ha-s3',
    upstreams: ['https://dtr.us.example.com'],
    host: 'cache-s3.example.com',
    nodes: ['cache-1', 'cache-2'],
    storage: StorageBackend.s3({
      region: 'eu-west-1',
      bucket: 'dtr-cache-eu',
      accessKey: 'AKIAEXAMPLE',
      secretKey: SecretSource.fromFile('/etc/dtr-cache/s3-secret-key'),
      rootDirectory: '/dtr-cache',
    }),
    loadBalancer: LoadBalancer.external({ kind: 'haproxy' }),
    port: 8443,
    tls: tlsFor('cache-s3.example.com', options),
    image: { reference: options.image ?? DEFAULT_IMAGE },
    now: options.now,
  });
  return app;
}

synthIfMain(module, buildHaS3);
