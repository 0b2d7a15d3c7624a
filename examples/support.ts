/**
 * What every example shares: its options (so tests pass fixed certificates and a fixed clock), the default image and
 * the embedded TEST ONLY certificates used when none are given.
 */
import { App } from 'cdktf';
import { SiteTlsOptions, SwarmConnection, testCertificates } from '../lib/constructs';
import { version } from '../package.json';

export interface ExampleOptions {
  /** Where synth writes. @default $CDKTF_OUTDIR, else "cdktf.out" */
  readonly outdir?: string;
  /** TLS material per cache host. @default self-signed TEST ONLY certificates generated under .gen/test-certs/ */
  readonly tls?: (host: string) => SiteTlsOptions;
  /** Clock for certificate expiry checks. @default now */
  readonly now?: Date;
  /** Image the sites run. @default $DTR_CACHE_IMAGE, else the example's default */
  readonly image?: string;
  /** How each datacenter's swarm is reached. @default the example's (three-datacenters: a client bundle each) */
  readonly connection?: (datacenter: string) => SwarmConnection;
}

/**
 * The image of the production example: `options.image`, else $DTR_CACHE_IMAGE, else a placeholder to replace with
 * your registry's copy (build it from the package: see the README's "Image").
 */
export function productionImage(options: ExampleOptions): string {
  return options.image ?? process.env.DTR_CACHE_IMAGE ?? PLACEHOLDER_IMAGE;
}

/** Deploys nowhere until replaced: registry.example.com is reserved (RFC 2606). */
export const PLACEHOLDER_IMAGE = `registry.example.com/replace-me/dtr-cache:${version}`;

export const DEFAULT_IMAGE = `127.0.0.1:5000/dtr-cache:${version}`;

export function newApp(options: ExampleOptions): App {
  // Without an outdir, App takes CDKTF_OUTDIR (set by cdktf-cli and by dtr-cache plan) or cdktf.out.
  return new App(options.outdir ? { outdir: options.outdir } : {});
}

export function tlsFor(host: string, options: ExampleOptions): SiteTlsOptions {
  if (options.tls) return options.tls(host);
  const generated = testCertificates(host, '.gen/test-certs');
  return { certificate: generated.certificate, key: generated.key, testOnly: true };
}

/** Synthesizes `build()`'s app when the example file is run directly (cdktf.json, ts-node). */
export function synthIfMain(module: NodeJS.Module, build: () => App): void {
  if (require.main === module) build().synth();
}
