/**
 * The cache's TLS material as swarm secrets: its certificate (intermediates appended), its key, and the DTR CA the
 * cache uses to verify its upstream. Names carry a content hash, so a rotation rolls the service (see hashedSecret).
 *
 * Give files (`SecretSource.fromFile`): Terraform reads them at deploy time and the synthesized JSON holds only paths.
 * PEM strings (`SecretSource.fromPlainText`) land in the synthesized JSON and in Terraform state. Either way the secret
 * data is in Terraform state, as with every docker_secret.
 */
import { Construct } from 'constructs';
import { Annotations } from 'cdktf';
import { SecretSource } from './base/secret-source';
import { hashedSecret, SecretMount } from './base/hashed-secret';
import { CertificateInfo, checkCertificate } from './base/certificate-checks';
import { check } from './base/validation';

export interface CacheTlsProps {
  /** The cache certificate, PEM, leaf first with intermediates appended. */
  readonly certificate: SecretSource;
  /** The certificate's unencrypted PEM private key. */
  readonly key: SecretSource;
  /**
   * The CA that signed the DTR's certificate (from https://<dtr>/ca), when it is not in the image's trust store.
   * @default none: the upstream's certificate must chain to a public CA
   */
  readonly dtrCa?: SecretSource;
  /**
   * The host name clients use; the certificate must cover it.
   * @default not checked
   */
  readonly host?: string;
  /**
   * Prefix of the secrets' names.
   * @default "dtr-cache"
   */
  readonly namePrefix?: string;
  /**
   * Marks the material as generated test certificates: labels the secrets and makes summaries say TEST ONLY.
   * @default false
   */
  readonly testOnly?: boolean;
  /**
   * The time expiry is checked against.
   * @default the time of synth
   */
  readonly now?: Date;
}

/** File names under /run/secrets/, as in the original cache's stack file. */
export const TLS_FILES = { certificate: 'cache.cert.pem', key: 'cache.key.pem', dtrCa: 'dtr.cert.pem' } as const;

export class CacheTls extends Construct {
  /** Secrets to mount, with their file names under /run/secrets/. */
  public readonly secrets: readonly SecretMount[];
  /** Paths of the certificate and key in the container, for config.yml http.tls. */
  public readonly certificatePath = `/run/secrets/${TLS_FILES.certificate}`;
  /** Path of the key in the container, for config.yml http.tls.key. */
  public readonly keyPath = `/run/secrets/${TLS_FILES.key}`;
  /** Path of the DTR CA in the container, for the downstream middleware's cas; undefined without dtrCa. */
  public readonly dtrCaPath: string | undefined;
  /** Subject and expiry of the certificate, when it was readable at synth. */
  public readonly certificateInfo: CertificateInfo | undefined;
  /** Whether the material is generated TEST ONLY certificates. */
  public readonly testOnly: boolean;

  constructor(scope: Construct, id: string, props: CacheTlsProps) {
    super(scope, id);
    const prefix = props.namePrefix ?? 'dtr-cache';
    this.testOnly = props.testOnly ?? false;
    const testOnly = this.testOnly;
    const mount = (cid: string, file: string, source: SecretSource): SecretMount => ({
      secret: hashedSecret(this, cid, { baseName: `${prefix}-${file}`, source, testOnly }),
      fileName: file,
    });
    this.secrets = [
      mount('Certificate', TLS_FILES.certificate, props.certificate),
      mount('Key', TLS_FILES.key, props.key),
      ...(props.dtrCa ? [mount('DtrCa', TLS_FILES.dtrCa, props.dtrCa)] : []),
    ];
    this.dtrCaPath = props.dtrCa ? `/run/secrets/${TLS_FILES.dtrCa}` : undefined;

    const certPem = props.certificate.readAtSynth();
    const keyPem = props.key.readAtSynth();
    if (certPem === undefined) {
      this.certificateInfo = undefined;
      Annotations.of(this).addWarning(
        `CacheTls: certificate: ${props.certificate.path} is not readable at synth; key match, host and expiry were not checked`,
      );
      return;
    }
    const report = checkCertificate(
      { certificate: 'CacheTls: certificate', key: 'CacheTls: key' },
      certPem,
      keyPem,
      props.host,
      props.now ?? new Date(),
    );
    this.certificateInfo = report.info;
    for (const warning of report.warnings) Annotations.of(this).addWarning(warning);
    if (testOnly) {
      Annotations.of(this).addWarning(
        'CacheTls: TEST ONLY certificates (self-signed, generated): clients will not trust them; give your own certificate and key for production',
      );
    }
    this.node.addValidation(check(() => report.errors));
  }
}
