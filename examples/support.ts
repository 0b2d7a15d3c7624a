/**
 * What every example shares: its options (so tests pass fixed certificates and a fixed clock), the default image and
 * the embedded TEST ONLY certificates used when none are given.
 */
import { App } from 'cdktf';
import { SiteTlsOptions, testCertificates } from '../lib/constructs';
import { version } from '../package.json';

export interface ExampleOptions {
  /** Where synth writes. @default $CDKTF_OUTDIR, else "cdktf.out" */
  readonly outdir?: string;
  /** TLS material per cache host. @default self-signed TEST ONLY certificates generated under .gen/test-certs/ */
  readonly tls?: (host: string) => SiteTlsOptions;
  /** Clock for certificate expiry checks. @default now */
  readonly now?: Date;
  /** Image the sites run. @default 127.0.0.1:5000/dtr-cache:<package version> */
  readonly image?: string;
}

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
