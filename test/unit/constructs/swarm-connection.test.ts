import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { TerraformOutput } from 'cdktf';
import { SwarmConnection } from '../../../lib/constructs';
import { stackDirectory } from '../../../lib/constructs/base/deploy-path';
import { newStack, synth } from './helpers';

/** `value` as it lands in the synthesized JSON. */
function resolved(value: unknown): unknown {
  const stack = newStack();
  new TerraformOutput(stack, 'v', { value });
  return synth(stack).output.v.value;
}

describe('SwarmConnection', () => {
  const stack = newStack();
  let bundle = '';
  beforeAll(() => {
    bundle = mkdtempSync(join(tmpdir(), 'ucp-bundle-'));
  });
  afterAll(() => rmSync(bundle, { recursive: true, force: true }));

  it('local socket by default path, or a given one', () => {
    expect(SwarmConnection.localSocket().providerConfig(stack)).toEqual({ host: 'unix:///var/run/docker.sock' });
    expect(SwarmConnection.localSocket('/run/x.sock').environment(stack)).toEqual({ DOCKER_HOST: 'unix:///run/x.sock' });
  });

  it('client bundle: host read from env.sh as UCP writes it; key material only as file() references', () => {
    writeFileSync(
      join(bundle, 'env.sh'),
      'export DOCKER_TLS_VERIFY=1\nexport COMPOSE_TLS_VERSION=TLSv1_2\nexport DOCKER_CERT_PATH="$(pwd)"\nexport DOCKER_HOST=tcp://ucp.eu.example.com:443\n',
    );
    const c = SwarmConnection.clientBundle({ directory: bundle });
    expect(c.host).toBe('tcp://ucp.eu.example.com:443');
    // A bundle of the machine (outside the project) is read where it is.
    expect(resolved(c.providerConfig(stack))).toEqual({
      host: 'tcp://ucp.eu.example.com:443',
      caMaterial: `\${file("${bundle}/ca.pem")}`,
      certMaterial: `\${file("${bundle}/cert.pem")}`,
      keyMaterial: `\${file("${bundle}/key.pem")}`,
    });
    expect(resolved(c.environment(stack))).toEqual({
      DOCKER_HOST: 'tcp://ucp.eu.example.com:443',
      DOCKER_TLS_VERIFY: '1',
      DOCKER_CERT_PATH: bundle,
    });
    expect(c.describe()).toBe(`client bundle ${relative(process.cwd(), bundle)} → tcp://ucp.eu.example.com:443`);
  });

  it('client bundle in the project: paths relative to the directory Terraform runs in (path.module)', () => {
    const inProject = mkdtempSync(join(process.cwd(), '.ucp-bundle-'));
    try {
      const c = SwarmConnection.clientBundle({ directory: inProject, host: 'tcp://ucp.eu.example.com:443' });
      const rel = relative(stackDirectory(stack), inProject);
      expect(resolved(c.providerConfig(stack))).toMatchObject({ caMaterial: `\${file(join("/", [path.module, "${rel}/ca.pem"]))}` });
      expect(resolved(c.environment(stack))).toMatchObject({ DOCKER_CERT_PATH: `\${join("/", [path.module, "${rel}"])}` });
    } finally {
      rmSync(inProject, { recursive: true, force: true });
    }
  });

  it('client bundle without a host anywhere: an error naming env.sh and the host option', () => {
    const empty = mkdtempSync(join(tmpdir(), 'ucp-empty-'));
    try {
      expect(() => SwarmConnection.clientBundle({ directory: empty })).toThrow(
        `SwarmConnection.clientBundle: no host: ${join(empty, 'env.sh')} has no DOCKER_HOST export; pass host, e.g. tcp://ucp.example.com:443`,
      );
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('ssh: ssh://user@host, the port only when not 22', () => {
    expect(SwarmConnection.ssh({ user: 'ops', host: 'm1' }).host).toBe('ssh://ops@m1');
    expect(SwarmConnection.ssh({ user: 'ops', host: 'm1', port: 2200 }).environment(stack)).toEqual({ DOCKER_HOST: 'ssh://ops@m1:2200' });
  });
});
