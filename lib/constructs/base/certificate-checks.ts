/**
 * Synth-time checks of a certificate and key with node's X509Certificate: pure functions returning problems, so the
 * constructs decide what is an error and what a warning.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';

export interface CertificateInfo {
  /** Subject, one RDN per line as node prints it, e.g. "CN=cache.asia.example.com". */
  readonly subject: string;
  /** Issuer, in the same form as subject. */
  readonly issuer: string;
  /** Expiry, ISO 8601. */
  readonly validTo: string;
  /** Whether subject and issuer are the same. */
  readonly selfSigned: boolean;
}

export interface CertificateReport {
  /** Subject and expiry; undefined when the PEM could not be parsed. */
  readonly info?: CertificateInfo;
  /** Problems that fail synth. */
  readonly errors: string[];
  /** Problems reported as warnings (expiry within 30 days). */
  readonly warnings: string[];
}

const DAY_MS = 86_400_000;

/**
 * Checks `certPem` (leaf first, intermediates appended) against `keyPem` and `host`, at `now`. `prop` names the props
 * in messages, e.g. "CacheTls: certificate".
 */
export function checkCertificate(
  prop: { certificate: string; key: string },
  certPem: string,
  keyPem: string | undefined,
  host: string | undefined,
  now: Date,
): CertificateReport {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    return {
      errors: [`${prop.certificate}: is not a PEM certificate (${(err as Error).message}); give the cache certificate, leaf first`],
      warnings: [],
    };
  }
  const info: CertificateInfo = {
    subject: cert.subject.replace(/\n/g, ', '),
    issuer: cert.issuer.replace(/\n/g, ', '),
    validTo: new Date(cert.validTo).toISOString(),
    selfSigned: cert.subject === cert.issuer,
  };
  const errors: string[] = [];
  const warnings: string[] = [];
  if (keyPem !== undefined) {
    try {
      if (!cert.checkPrivateKey(createPrivateKey(keyPem))) {
        errors.push(`${prop.key}: does not match ${prop.certificate} (${info.subject}); give the key the certificate was issued for`);
      }
    } catch (err) {
      errors.push(
        `${prop.key}: is not an unencrypted PEM private key (${(err as Error).message}); decrypt it, e.g. openssl pkey -in key.pem`,
      );
    }
  }
  if (host !== undefined && cert.checkHost(host) === undefined) {
    errors.push(
      `${prop.certificate}: does not cover the cache host ${host} (subject ${info.subject}, names ${cert.subjectAltName ?? 'none'}); issue a certificate with ${host} in its subjectAltName`,
    );
  }
  const remaining = new Date(cert.validTo).getTime() - now.getTime();
  if (remaining <= 0) {
    errors.push(`${prop.certificate}: expired on ${info.validTo}; renew it`);
  } else if (remaining < 30 * DAY_MS) {
    warnings.push(`${prop.certificate}: expires on ${info.validTo}, in ${Math.ceil(remaining / DAY_MS)} days; renew it soon`);
  }
  return { info, errors, warnings };
}
