/**
 * Self-signed TEST ONLY certificates for examples run without real ones. Generated with the `openssl` binary (present
 * on every Debian and CI image) rather than an npm X.509 library: no new dependency, and node's crypto checks the
 * result. Reused while valid for more than 30 days, so repeated synths give the same secrets.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { join, resolve } from 'node:path';
import { SecretSource } from './base/secret-source';

export interface TestCertificateFiles {
  /** The certificate, as a file source. */
  readonly certificate: SecretSource;
  /** The key, as a file source. */
  readonly key: SecretSource;
  /** Absolute path of the certificate. */
  readonly certificatePath: string;
  /** Absolute path of the key. */
  readonly keyPath: string;
  /** Always true: pass it as SiteTlsOptions.testOnly. */
  readonly testOnly: true;
}

/** A self-signed certificate and key for `host` under `directory/<host>/`, valid 90 days. */
export function testCertificates(host: string, directory: string): TestCertificateFiles {
  const dir = resolve(directory, host);
  const certificatePath = join(dir, 'cache.cert.pem');
  const keyPath = join(dir, 'cache.key.pem');
  if (!stillGood(certificatePath, keyPath, host)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    try {
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-keyout',
          keyPath,
          '-out',
          certificatePath,
          '-days',
          '90',
          '-subj',
          `/O=dtr-cache TEST ONLY/CN=${host}`,
          '-addext',
          `subjectAltName=DNS:${host}`,
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new Error(
        code === 'ENOENT'
          ? 'test certificates need the openssl binary: apt-get install -y openssl, or pass tls.certificate and tls.key'
          : `openssl could not create test certificates in ${dir}: ${String((err as { stderr?: Buffer }).stderr ?? err)}`,
      );
    }
  }
  return {
    certificate: SecretSource.fromFile(certificatePath),
    key: SecretSource.fromFile(keyPath),
    certificatePath,
    keyPath,
    testOnly: true,
  };
}

function stillGood(certificatePath: string, keyPath: string, host: string): boolean {
  if (!existsSync(certificatePath) || !existsSync(keyPath)) return false;
  try {
    const cert = new X509Certificate(readFileSync(certificatePath));
    return cert.checkHost(host) !== undefined && new Date(cert.validTo).getTime() - Date.now() > 30 * 86_400_000;
  } catch {
    return false;
  }
}
