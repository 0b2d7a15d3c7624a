/**
 * Each swarm connection kind × each load balancer mode of DtrCacheSite: the provider block and every local-exec point
 * at the same swarm, the service publishes as the mode needs, the external configuration is an output, and no key
 * material (of the client bundle or of the cache) appears in the synthesized JSON.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DtrCacheSite, DtrCacheSiteProps, LoadBalancer, SwarmConnection, testCertificates } from '../../../lib/constructs';
import {
  asiaSiteProps,
  fixture,
  newStack,
  onlyResource,
  resourcesOf,
  synth,
  synthesizedPath,
  synthesizedValue,
  TfJson,
  validationErrors,
} from './helpers';

const props: DtrCacheSiteProps = asiaSiteProps({ port: 8443 });

/** The base64 lines of a PEM: what would leak if the file's content were embedded. */
function pemBody(file: string): string[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.length > 20 && !l.startsWith('-----'));
}

describe('DtrCacheSite: connection kinds × load balancer modes', () => {
  let bundle = '';
  let certs = '';
  beforeAll(() => {
    // A client bundle as UCP lays it out, with a real (openssl-made) key, so the leak check has something to find.
    bundle = mkdtempSync(join(tmpdir(), 'ucp-bundle-'));
    certs = mkdtempSync(join(tmpdir(), 'ucp-bundle-certs-'));
    const made = testCertificates('ucp-client', certs);
    copyFileSync(made.certificatePath, join(bundle, 'ca.pem'));
    copyFileSync(made.certificatePath, join(bundle, 'cert.pem'));
    copyFileSync(made.keyPath, join(bundle, 'key.pem'));
    writeFileSync(
      join(bundle, 'env.sh'),
      'export DOCKER_TLS_VERIFY=1\nexport DOCKER_CERT_PATH="$(pwd)"\nexport DOCKER_HOST=tcp://ucp.asia.example.com:443\n',
    );
  });
  afterAll(() => {
    rmSync(bundle, { recursive: true, force: true });
    rmSync(certs, { recursive: true, force: true });
  });

  const connections: Record<string, () => SwarmConnection> = {
    'local socket': () => SwarmConnection.localSocket('/run/docker.sock'),
    'client bundle': () => SwarmConnection.clientBundle({ directory: bundle }),
    ssh: () => SwarmConnection.ssh({ user: 'ops', host: 'manager1.asia.example.com', sshOpts: ['-o', 'StrictHostKeyChecking=yes'] }),
  };
  const modes: Record<string, () => LoadBalancer | undefined> = {
    'routing mesh (default)': () => undefined,
    'external haproxy': () => LoadBalancer.external({ kind: 'haproxy', nodeAddresses: ['10.0.0.11', '10.0.0.12'] }),
    'external nginx': () => LoadBalancer.external({ kind: 'nginx', listen: '10.0.0.5:443' }),
    'haproxy service': () => LoadBalancer.service({ image: 'registry.example.com/library/haproxy:2.8' }),
  };

  for (const [connectionName, connection] of Object.entries(connections)) {
    for (const [modeName, mode] of Object.entries(modes)) {
      it(`${connectionName} × ${modeName}`, () => {
        const conn = connection();
        const stack = newStack('dtr-cache-asia', false);
        new DtrCacheSite(stack, 'asia', { ...props, connection: conn, loadBalancer: mode() });
        expect(validationErrors(stack)).toEqual([]);
        const json: TfJson = synth(stack);
        const text = JSON.stringify(json);

        // Provider block: the connection's host, and for a bundle the PEM files read by Terraform at deploy time.
        const provider = json.provider.docker[0];
        expect(provider.host).toBe(conn.host);
        if (conn.kind === 'client-bundle') {
          expect(provider).toEqual({
            host: 'tcp://ucp.asia.example.com:443',
            ca_material: `\${file(${synthesizedPath(stack, join(bundle, 'ca.pem'))})}`,
            cert_material: `\${file(${synthesizedPath(stack, join(bundle, 'cert.pem'))})}`,
            key_material: `\${file(${synthesizedPath(stack, join(bundle, 'key.pem'))})}`,
          });
        } else if (conn.kind === 'ssh') {
          expect(provider).toEqual({ host: 'ssh://ops@manager1.asia.example.com', ssh_opts: ['-o', 'StrictHostKeyChecking=yes'] });
        } else {
          expect(provider).toEqual({ host: 'unix:///run/docker.sock' });
        }

        // Both label steps and the volume removal carry the same swarm in input, and their local-execs read it from
        // there (self.input).
        const labelSteps = resourcesOf(json, 'terraform_data').filter((r) => r.input?.environment);
        expect(labelSteps).toHaveLength(3);
        for (const r of labelSteps) {
          expect(r.input.environment).toEqual(
            conn.kind === 'client-bundle'
              ? { DOCKER_HOST: conn.host, DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: synthesizedValue(stack, bundle) }
              : { DOCKER_HOST: conn.host },
          );
          for (const name of Object.keys(r.input.environment))
            expect(r.provisioner[0]['local-exec'].environment[name]).toBe(`\${self.input.environment.${name}}`);
        }

        // Publishing and outputs per mode.
        const lbConfig = json.output.asia_load_balancer_config;
        if (modeName === 'haproxy service') {
          const [cache, lb] = ['dtr-cache-asia', 'dtr-cache-asia-lb'].map(
            (n) => resourcesOf(json, 'docker_service').find((r) => r.name === n) as TfJson,
          );
          const network = onlyResource(json, 'docker_network');
          expect(network).toMatchObject({ name: 'dtr-cache-asia-lb', driver: 'overlay' });
          // The replicas publish nothing: they are reached on the shared overlay network only.
          expect(cache.endpoint_spec).toEqual({ mode: 'dnsrr' });
          expect(cache.task_spec.networks_advanced).toEqual([
            { name: `\${docker_network.${Object.keys(json.resource.docker_network)[0]}.id}` },
          ]);
          expect(lb.task_spec.networks_advanced).toEqual(cache.task_spec.networks_advanced);
          expect(lb.task_spec.container_spec.image).toBe('registry.example.com/library/haproxy:2.8');
          expect(lb.task_spec.container_spec).toMatchObject({ stop_signal: 'SIGUSR1', stop_grace_period: '40s' });
          expect(lb.endpoint_spec).toEqual({
            mode: 'vip',
            ports: [{ name: 'https', protocol: 'tcp', target_port: 8443, published_port: 8443, publish_mode: 'ingress' }],
          });
          const config = resourcesOf(json, 'docker_config').find((c) => /^dtr-cache-asia-haproxy-/.test(c.name));
          expect(lb.task_spec.container_spec.configs[0]).toMatchObject({
            config_name: config?.name,
            file_name: '/usr/local/etc/haproxy/haproxy.cfg',
          });
          const text = Buffer.from(String(config?.data), 'base64').toString('utf8');
          expect(text).toBe(lbConfig.value);
          expect(text).toContain('  server-template replica- 4 tasks.dtr-cache-asia:443 resolvers swarm init-addr none\n');
          expect(JSON.parse(json.output.asia_summary.value).publishMode).toBe('ingress');
        } else if (modeName.startsWith('routing')) {
          const service = onlyResource(json, 'docker_service');
          expect(service.endpoint_spec).toEqual({
            mode: 'vip',
            ports: [{ name: 'https', protocol: 'tcp', target_port: 443, published_port: 8443, publish_mode: 'ingress' }],
          });
          expect(lbConfig).toBeUndefined();
        } else {
          const service = onlyResource(json, 'docker_service');
          expect(service.endpoint_spec).toEqual({
            mode: 'dnsrr',
            ports: [{ name: 'https', protocol: 'tcp', target_port: 443, published_port: 8443, publish_mode: 'host' }],
          });
          expect(JSON.parse(json.output.asia_summary.value).publishMode).toBe('host');
        }
        if (modeName === 'external haproxy') {
          expect(lbConfig.description).toBe('haproxy configuration (haproxy.cfg), TCP passthrough');
          expect(lbConfig.value).toContain('  server replica-1-10.0.0.11 10.0.0.11:8443\n  server replica-2-10.0.0.12 10.0.0.12:8443\n');
          expect(lbConfig.value).toContain('  bind *:443\n');
          expect(lbConfig.value).toContain('http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host cache.asia.example.com');
        }
        if (modeName === 'external nginx') {
          expect(lbConfig.description).toBe('nginx configuration (dtr-cache-stream.conf), TCP passthrough');
          // Default addresses: the nodes as given.
          expect(lbConfig.value).toContain(
            '    server cache-asia-1:8443 max_fails=2 fail_timeout=10s;\n    server cache-asia-2:8443 max_fails=2',
          );
          expect(lbConfig.value).toContain('    listen 10.0.0.5:443;\n');
        }

        // No key material anywhere in the synthesized JSON: neither the bundle's key nor the cache's.
        for (const line of [...pemBody(join(bundle, 'key.pem')), ...pemBody(fixture('cache.key.pem'))]) expect(text).not.toContain(line);
        expect(text).not.toContain('PRIVATE KEY');
      });
    }
  }

  it('service mode: the image needs a registry host', () => {
    const stack = newStack('dtr-cache-asia', false);
    new DtrCacheSite(stack, 'asia', { ...props, loadBalancer: LoadBalancer.service({ image: 'haproxy:2.8', replicas: 0 }) });
    expect(validationErrors(stack)).toEqual([
      'DtrCacheSite: loadBalancer.image: "haproxy:2.8" has no registry host; name it in full, e.g. registry.example.com/library/haproxy:2.8',
      'DtrCacheSite: loadBalancer.replicas: must be a whole number of at least 1',
    ]);
  });

  it('external mode: node addresses must match the nodes, listen must be address:port', () => {
    const stack = newStack('dtr-cache-asia', false);
    new DtrCacheSite(stack, 'asia', {
      ...props,
      loadBalancer: LoadBalancer.external({ kind: 'haproxy', nodeAddresses: ['10.0.0.11', 'bad address'], listen: '443' }),
    });
    expect(validationErrors(stack)).toEqual([
      'DtrCacheSite: loadBalancer.nodeAddresses: "bad address" is not a host name or IP address, e.g. 10.0.0.11 or node1.asia.example.com',
      'DtrCacheSite: loadBalancer.listen: "443" must be address:port, e.g. *:443 or 10.0.0.5:443',
    ]);
    const stack2 = newStack('dtr-cache-asia2', false);
    new DtrCacheSite(stack2, 'asia', { ...props, loadBalancer: LoadBalancer.external({ kind: 'nginx', nodeAddresses: ['10.0.0.11'] }) });
    expect(validationErrors(stack2)).toEqual([
      'DtrCacheSite: loadBalancer.nodeAddresses: 1 address(es) for 2 node(s); list one address per node, in the order of nodes',
    ]);
  });
});
