import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Testing } from 'cdktf';
import { CacheTls, SecretSource } from '../../../lib/constructs';
import { annotations, fixture, newStack, NOW, resourceNamed, resourcesOf, synth, synthesizedPath, validationErrors } from './helpers';

const certPem = readFileSync(fixture('cache.cert.pem'), 'utf8');
const keyPem = readFileSync(fixture('cache.key.pem'), 'utf8');
const validTo = new Date(new X509Certificate(certPem).validTo); // 2126-11-02
const fromFiles = { certificate: SecretSource.fromFile(fixture('cache.cert.pem')), key: SecretSource.fromFile(fixture('cache.key.pem')) };

describe('CacheTls', () => {
  it('creates hash-named docker_secrets for certificate, key and DTR CA with create_before_destroy', () => {
    const stack = newStack();
    const tls = new CacheTls(stack, 'Tls', {
      ...fromFiles,
      dtrCa: SecretSource.fromFile(fixture('dtr-ca.pem')),
      namePrefix: 'dtr-cache-asia',
      now: NOW,
    });
    const secrets = resourcesOf(synth(stack), 'docker_secret');
    // Named by the hash of the bytes Terraform reads at apply, the same bytes that become the secret's data.
    const named = (file: string, name: string) =>
      `dtr-cache-asia-${name}-\${substr(filesha256(${synthesizedPath(stack, fixture(file))}), 0, 12)}`;
    expect(secrets.map((s) => s.name).sort()).toEqual([
      named('cache.cert.pem', 'cache.cert.pem'),
      named('cache.key.pem', 'cache.key.pem'),
      named('dtr-ca.pem', 'dtr.cert.pem'),
    ]);
    for (const s of secrets) expect(s.lifecycle).toEqual({ create_before_destroy: true });
    expect(tls.secrets.map((s) => s.fileName)).toEqual(['cache.cert.pem', 'cache.key.pem', 'dtr.cert.pem']);
    expect([tls.certificatePath, tls.keyPath, tls.dtrCaPath]).toEqual([
      '/run/secrets/cache.cert.pem',
      '/run/secrets/cache.key.pem',
      '/run/secrets/dtr.cert.pem',
    ]);
    expect(tls.certificateInfo?.subject).toBe('O=dtr-cache unit-test fixture, CN=cache.example.com');
  });

  it('keeps key material out of the synthesized JSON when files are given (filebase64 at deploy time)', () => {
    const stack = newStack();
    new CacheTls(stack, 'Tls', { ...fromFiles, now: NOW });
    const text = Testing.synth(stack);
    expect(text).not.toContain('PRIVATE KEY');
    expect(text).not.toContain(Buffer.from(keyPem).toString('base64').slice(0, 40));
    const key = resourceNamed(JSON.parse(text), 'docker_secret', /key/);
    expect(key.data).toBe(`\${filebase64(${synthesizedPath(stack, fixture('cache.key.pem'))})}`);
  });

  it('PEM strings land in the synthesized JSON (base64), as documented', () => {
    const stack = newStack();
    new CacheTls(stack, 'Tls', { certificate: SecretSource.fromPlainText(certPem), key: SecretSource.fromPlainText(keyPem), now: NOW });
    const key = resourceNamed(synth(stack), 'docker_secret', /key/);
    expect(Buffer.from(key.data, 'base64').toString()).toBe(keyPem);
  });

  it('a rotated certificate gets a new secret name; the same content keeps its name', () => {
    const name = (cert: string): string => {
      const stack = newStack();
      new CacheTls(stack, 'Tls', { certificate: SecretSource.fromPlainText(cert), key: SecretSource.fromPlainText(keyPem), now: NOW });
      return resourceNamed(synth(stack), 'docker_secret', /cert/).name;
    };
    expect(name(certPem)).toBe(name(certPem));
    expect(name(certPem)).not.toBe(name(`${certPem}\n`));
  });

  it('marks generated test material in labels and a warning', () => {
    const stack = newStack();
    new CacheTls(stack, 'Tls', { ...fromFiles, testOnly: true, now: NOW });
    expect(resourceNamed(synth(stack), 'docker_secret', /cert/).labels).toContainEqual({ label: 'dtr.cache.test-only', value: 'true' });
    expect(annotations(stack, 'warn')).toEqual([
      'CacheTls: TEST ONLY certificates (self-signed, generated): clients will not trust them; give your own certificate and key for production',
    ]);
  });

  describe('validation', () => {
    const errorsFor = (props: Partial<ConstructorParameters<typeof CacheTls>[2]>): { errors: string[]; warnings: string[] } => {
      const stack = newStack();
      new CacheTls(stack, 'Tls', { ...fromFiles, now: NOW, ...props });
      return { errors: validationErrors(stack), warnings: annotations(stack, 'warn') };
    };

    it('passes a matching key, a covered host and a far expiry', () => {
      expect(errorsFor({ host: 'cache.asia.example.com' })).toEqual({ errors: [], warnings: [] });
    });

    it('rejects a key that does not match the certificate', () => {
      expect(errorsFor({ key: SecretSource.fromFile(fixture('other.key.pem')) }).errors).toEqual([
        'CacheTls: key: does not match CacheTls: certificate (O=dtr-cache unit-test fixture, CN=cache.example.com); give the key the certificate was issued for',
      ]);
    });

    it('rejects a certificate that does not cover the cache host', () => {
      expect(errorsFor({ host: 'cache.other.org' }).errors).toEqual([
        'CacheTls: certificate: does not cover the cache host cache.other.org (subject O=dtr-cache unit-test fixture, CN=cache.example.com, names DNS:cache.example.com, DNS:*.example.com, DNS:cache.asia.example.com, DNS:cache.europe.example.com); issue a certificate with cache.other.org in its subjectAltName',
      ]);
    });

    it('rejects an expired certificate', () => {
      const { errors } = errorsFor({ now: new Date(validTo.getTime() + 2 * 86_400_000) });
      expect(errors).toEqual([`CacheTls: certificate: expired on ${validTo.toISOString()}; renew it`]);
    });

    it('warns when the certificate expires within 30 days', () => {
      const { errors, warnings } = errorsFor({ now: new Date(validTo.getTime() - 10 * 86_400_000) });
      expect(errors).toEqual([]);
      expect(warnings).toEqual([`CacheTls: certificate: expires on ${validTo.toISOString()}, in 10 days; renew it soon`]);
    });

    it('rejects text that is not a certificate or not a key', () => {
      expect(errorsFor({ certificate: SecretSource.fromPlainText('nope') }).errors).toEqual([
        expect.stringMatching(/^CacheTls: certificate: is not a PEM certificate \(.*\); give the cache certificate, leaf first$/),
      ]);
      expect(errorsFor({ key: SecretSource.fromPlainText('nope') }).errors).toEqual([
        expect.stringMatching(
          /^CacheTls: key: is not an unencrypted PEM private key \(.*\); decrypt it, e\.g\. openssl pkey -in key\.pem$/,
        ),
      ]);
    });

    it('warns, and skips the checks, when the certificate file is not readable at synth', () => {
      const { errors, warnings } = errorsFor({ certificate: SecretSource.fromFile('/nonexistent/cache.cert.pem') });
      expect(errors).toEqual([]);
      expect(warnings).toEqual([
        'CacheTls: certificate: /nonexistent/cache.cert.pem is not readable at synth; key match, host and expiry were not checked',
      ]);
    });
  });
});
