/**
 * Synthesizes a one-site stack with DtrCacheSite, as a platform team would, configured for this machine:
 * host-mode publishing (no IPVS here), the test engine's socket, a prebuilt image (a tag the site pins to the digest
 * its registry serves), and the test's certificates.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, TerraformStack } from 'cdktf';
import { DockerProvider, DockerProviderRegistryAuth } from '@cdktf/provider-docker/lib/provider';
import { DtrCacheSite, LoadBalancer, SecretSource, SwarmConnection } from '../../../lib/constructs';
import { TEST_DOCKER_SOCK } from '../../terraform-provider-docker/engine';

export interface SiteOptions {
  readonly datacenter: string;
  readonly upstream: string;
  readonly host: string;
  readonly port: number;
  readonly image: string;
  readonly nodes: string[];
  readonly certificateFile: string;
  readonly keyFile: string;
  readonly dtrCaFile: string;
  /** registry_auth of the stack's docker provider (which the site uses), e.g. a plain-http image registry. */
  readonly registryAuth?: DockerProviderRegistryAuth[];
  /** Synth output directory; a new temporary one by default. */
  readonly outdir?: string;
}

/** Synthesizes and returns the path of the stack's cdk.tf.json. */
export function synthSite(options: SiteOptions): string {
  const outdir = options.outdir ?? mkdtempSync(join(tmpdir(), 'dtr-cache-e2e-synth-'));
  const app = new App({ outdir, skipValidation: false });
  const stack = new TerraformStack(app, options.datacenter);
  const connection = SwarmConnection.localSocket(TEST_DOCKER_SOCK);
  // The stack's provider reaches the site's swarm, so the site uses it (with its registry_auth).
  new DockerProvider(stack, 'docker', { ...connection.providerConfig(stack), registryAuth: options.registryAuth });
  new DtrCacheSite(stack, 'Site', {
    datacenter: options.datacenter,
    upstreams: [options.upstream],
    host: options.host,
    nodes: options.nodes,
    tls: {
      certificate: SecretSource.fromFile(options.certificateFile),
      key: SecretSource.fromFile(options.keyFile),
      dtrCa: SecretSource.fromFile(options.dtrCaFile),
    },
    image: { reference: options.image },
    connection,
    port: options.port,
    loadBalancer: LoadBalancer.external({ kind: 'haproxy', nodeAddresses: options.nodes.map(() => '127.0.0.1') }),
    workersOnly: false,
  });
  app.synth();
  return join(outdir, 'stacks', options.datacenter, 'cdk.tf.json');
}
