/**
 * A test certificate authority made with the openssl binary: one CA signs the upstream's (DTR stand-in) and the
 * cache's certificates, so a client or the cache trusts both through one ca.crt.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireTool } from '../../../harness/tools';

export interface TestCa {
  readonly dir: string;
  readonly caCert: string;
  /** Issues a certificate for `names` (DNS names and IP addresses) under `dir/<label>/`: returns its files. */
  issue(label: string, names: readonly string[]): { certificate: string; key: string };
}

export function createTestCa(dir: string): TestCa {
  const openssl = requireTool('openssl');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const caKey = join(dir, 'ca.key');
  const caCert = join(dir, 'ca.crt');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const run = (args: string[]) => execFileSync(openssl, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  run(['req', '-x509', ...ec, '-keyout', caKey, '-out', caCert, '-days', '2', '-subj', '/CN=dtr-cache e2e test CA']);
  return {
    dir,
    caCert,
    issue(label, names) {
      const out = join(dir, label);
      mkdirSync(out, { recursive: true, mode: 0o700 });
      const key = join(out, 'key.pem');
      const certificate = join(out, 'cert.pem');
      const csr = join(out, 'req.csr');
      const ext = join(out, 'ext.cnf');
      const san = names.map((n) => (/^[\d.]+$/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
      writeFileSync(ext, `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`);
      run(['req', ...ec, '-keyout', key, '-out', csr, '-subj', `/CN=${names[0]}`]);
      run([
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        caCert,
        '-CAkey',
        caKey,
        '-CAcreateserial',
        '-out',
        certificate,
        '-days',
        '2',
        '-extfile',
        ext,
      ]);
      return { certificate, key };
    },
  };
}
