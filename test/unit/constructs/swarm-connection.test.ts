import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SwarmConnection } from '../../../lib/constructs';

describe('SwarmConnection', () => {
  let bundle = '';
  beforeAll(() => {
    bundle = mkdtempSync(join(tmpdir(), 'ucp-bundle-'));
  });
  afterAll(() => rmSync(bundle, { recursive: true, force: true }));

  it('local socket by default path, or a given one', () => {
    expect(SwarmConnection.localSocket().providerConfig()).toEqual({ host: 'unix:///var/run/docker.sock' });
    expect(SwarmConnection.localSocket('/run/x.sock').environment()).toEqual({ DOCKER_HOST: 'unix:///run/x.sock' });
  });

  it('client bundle: host read from env.sh as UCP writes it; key material only as file() references', () => {
    writeFileSync(
      join(bundle, 'env.sh'),
      'export DOCKER_TLS_VERIFY=1\nexport COMPOSE_TLS_VERSION=TLSv1_2\nexport DOCKER_CERT_PATH="$(pwd)"\nexport DOCKER_HOST=tcp://ucp.eu.example.com:443\n',
    );
    const c = SwarmConnection.clientBundle({ directory: bundle });
    expect(c.host).toBe('tcp://ucp.eu.example.com:443');
    expect(c.providerConfig()).toMatchObject({ host: 'tcp://ucp.eu.example.com:443' });
    expect(JSON.stringify(c.providerConfig())).not.toContain('PRIVATE KEY');
    expect(c.environment()).toEqual({ DOCKER_HOST: 'tcp://ucp.eu.example.com:443', DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: bundle });
    expect(c.describe()).toBe(`client bundle ${bundle} → tcp://ucp.eu.example.com:443`);
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
    expect(SwarmConnection.ssh({ user: 'ops', host: 'm1', port: 2200 }).environment()).toEqual({ DOCKER_HOST: 'ssh://ops@m1:2200' });
  });
});
