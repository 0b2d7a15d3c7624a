/** The simplest site: one replica on one labelled worker, content in the container (lost on reschedule). */
import { App, TerraformStack } from 'cdktf';
import { DtrCacheSite } from '../../lib/constructs';
import { DEFAULT_IMAGE, ExampleOptions, newApp, synthIfMain, tlsFor } from '../support';

export function buildSingleReplica(options: ExampleOptions = {}): App {
  const app = newApp(options);
  const stack = new TerraformStack(app, 'dtr-cache-single');
  new DtrCacheSite(stack, 'site', {
    datacenter: 'single',
    upstreams: ['https://dtr.us.example.com'],
    host: 'cache.example.com',
    nodes: ['cache-1'],
    tls: tlsFor('cache.example.com', options),
    image: { reference: options.image ?? DEFAULT_IMAGE },
    now: options.now,
  });
  return app;
}

synthIfMain(module, buildSingleReplica);
