/**
 * The rendered external load balancer configurations: exact text for two replicas, and the real programs accept it
 * (`haproxy -c`, `nginx -t` with Debian's stream module).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LoadBalancerConfigOptions, renderHaproxyConfig, renderHaproxySwarmConfig, renderNginxStreamConfig } from '../../../lib/constructs';
import { requireTool } from '../../../harness/tools';

const TWO_NODES: LoadBalancerConfigOptions = {
  name: 'dtr-cache-asia',
  host: 'cache.asia.example.com',
  listen: '*:443',
  backends: [
    { address: '10.0.0.11', port: 8443 },
    { address: '10.0.0.12', port: 8443 },
  ],
};

const NGINX_STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

describe('load balancer configuration renderers', () => {
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'dtr-cache-lb-config-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('HAProxy: TCP passthrough, HTTPS check of /readyz with the cache host as SNI and Host', () => {
    expect(renderHaproxyConfig(TWO_NODES)).toBe(
      [
        '# dtr-cache-asia: TCP passthrough to the cache replicas; TLS ends at the caches.',
        'global',
        '  maxconn 4096',
        '',
        'defaults',
        '  mode tcp',
        '  timeout connect 5s',
        '  timeout client 10m',
        '  timeout server 10m',
        '',
        'frontend dtr-cache-asia',
        '  bind *:443',
        '  default_backend dtr-cache-asia-replicas',
        '',
        'backend dtr-cache-asia-replicas',
        '  balance leastconn',
        '  option httpchk',
        '  http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host cache.asia.example.com',
        '  http-check expect status 200',
        '  default-server check check-ssl check-sni cache.asia.example.com verify none inter 2s fall 2 rise 2',
        '  option redispatch',
        '  retries 2',
        '  server replica-1-10.0.0.11 10.0.0.11:8443',
        '  server replica-2-10.0.0.12 10.0.0.12:8443',
        '',
      ].join('\n'),
    );
  });

  it('nginx: a stream block with passive checks, the readiness URL named for active checkers', () => {
    expect(renderNginxStreamConfig(TWO_NODES)).toBe(
      [
        '# dtr-cache-asia: TCP passthrough to the cache replicas; TLS ends at the caches.',
        '# Replicas answer GET https://cache.asia.example.com/readyz with 200 when ready (for active checks, e.g. NGINX Plus).',
        'stream {',
        '  upstream dtr_cache_asia {',
        '    least_conn;',
        '    server 10.0.0.11:8443 max_fails=2 fail_timeout=10s;',
        '    server 10.0.0.12:8443 max_fails=2 fail_timeout=10s;',
        '  }',
        '  server {',
        '    listen *:443;',
        '    proxy_pass dtr_cache_asia;',
        '    proxy_connect_timeout 5s;',
        '    proxy_timeout 10m;',
        '    proxy_next_upstream on;',
        '  }',
        '}',
        '',
      ].join('\n'),
    );
  });

  const SWARM = {
    name: 'dtr-cache-asia',
    host: 'cache.asia.example.com',
    listen: '*:8443',
    service: 'dtr-cache-asia',
    port: 443,
    slots: 4,
  };

  it('HAProxy as a swarm service: replicas found as tasks.<service> through swarm DNS, same checks', () => {
    const text = renderHaproxySwarmConfig(SWARM);
    expect(text).toBe(
      [
        '# dtr-cache-asia: TCP passthrough to the cache replicas; TLS ends at the caches.',
        'global',
        '  maxconn 4096',
        '',
        'resolvers swarm',
        '  nameserver dns 127.0.0.11:53',
        '  resolve_retries 3',
        '  timeout resolve 1s',
        '  timeout retry 1s',
        '  hold valid 5s',
        '  hold nx 5s',
        '  hold other 5s',
        '',
        'defaults',
        '  mode tcp',
        '  timeout connect 5s',
        '  timeout client 10m',
        '  timeout server 10m',
        '',
        'frontend dtr-cache-asia',
        '  bind *:8443',
        '  default_backend dtr-cache-asia-replicas',
        '',
        'backend dtr-cache-asia-replicas',
        '  balance leastconn',
        '  option httpchk',
        '  http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host cache.asia.example.com',
        '  http-check expect status 200',
        '  default-server check check-ssl check-sni cache.asia.example.com verify none inter 2s fall 2 rise 2',
        '  option redispatch',
        '  retries 2',
        '  server-template replica- 4 tasks.dtr-cache-asia:443 resolvers swarm init-addr none',
        '',
      ].join('\n'),
    );
  });

  it('IPv6 node addresses are bracketed, odd node names made safe as server names', () => {
    const text = renderHaproxyConfig({ ...TWO_NODES, backends: [{ address: 'fd00::11', port: 443 }] });
    expect(text).toContain('  server replica-1-fd00__11 [fd00::11]:443\n');
    expect(renderNginxStreamConfig({ ...TWO_NODES, backends: [{ address: 'fd00::11', port: 443 }] })).toContain('server [fd00::11]:443 ');
  });

  it('haproxy -c accepts the rendered configuration', () => {
    const haproxy = requireTool('haproxy');
    const file = join(dir, 'haproxy.cfg');
    writeFileSync(file, renderHaproxyConfig(TWO_NODES));
    const run = spawnSync(haproxy, ['-c', '-f', file], { encoding: 'utf8', timeout: 30_000 });
    expect(`${run.stdout}${run.stderr}`).toContain('Configuration file is valid');
    expect(run.status).toBe(0);
  });

  it('haproxy -c accepts the swarm service configuration', () => {
    const haproxy = requireTool('haproxy');
    const file = join(dir, 'haproxy-swarm.cfg');
    writeFileSync(file, renderHaproxySwarmConfig(SWARM));
    const run = spawnSync(haproxy, ['-c', '-f', file], { encoding: 'utf8', timeout: 30_000 });
    expect(`${run.stdout}${run.stderr}`).toContain('Configuration file is valid');
    expect(run.status).toBe(0);
  });

  it('nginx -t accepts the rendered stream block at the top level of nginx.conf', () => {
    const nginx = requireTool('nginx');
    if (!existsSync(NGINX_STREAM_MODULE)) {
      throw new Error(`${NGINX_STREAM_MODULE} is missing: apt-get install -y libnginx-mod-stream, or run npm run test:all`);
    }
    writeFileSync(join(dir, 'stream.conf'), renderNginxStreamConfig(TWO_NODES));
    writeFileSync(
      join(dir, 'nginx.conf'),
      `load_module ${NGINX_STREAM_MODULE};\npid ${join(dir, 'nginx.pid')};\nerror_log ${join(dir, 'error.log')};\nevents {}\ninclude ${join(dir, 'stream.conf')};\n`,
    );
    // -t binds nothing; -e keeps nginx from opening the compiled-in /var/log/nginx/error.log first.
    const run = spawnSync(nginx, ['-t', '-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf')], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(run.stderr).toContain('test is successful');
    expect(run.status).toBe(0);
  });
});
