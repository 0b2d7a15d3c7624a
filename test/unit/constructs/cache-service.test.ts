import { execFile } from 'node:child_process';
import { createServer, Server } from 'node:https';
import { readFileSync } from 'node:fs';
import { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { CacheService, ConfigMount, hashedSecret, healthcheckScript, PublishMode, SecretSource } from '../../../lib/constructs';
import { fixture, newStack, onlyResource, synth, validationErrors } from './helpers';

const config: ConfigMount = { kind: 'config', id: 'config-id', name: 'dtr-cache-config-abc', fileName: '/config.yml' };
const image = '127.0.0.1:5000/dtr-cache:0.1.0';

function serviceJson(props: Partial<ConstructorParameters<typeof CacheService>[2]> = {}) {
  const stack = newStack();
  new CacheService(stack, 'Service', { image, config, ...props });
  return onlyResource(synth(stack), 'docker_service');
}

describe('CacheService', () => {
  it('runs the image with config at /config.yml, placement on labelled workers, one replica per node, restart on failure', () => {
    const s = serviceJson({ replicas: 2, nodeCount: 2 });
    expect(s.name).toBe('dtr-cache');
    expect(s.mode).toEqual({ replicated: { replicas: 2 } });
    const spec = s.task_spec;
    expect(spec.container_spec.image).toBe(image);
    expect(spec.container_spec.configs).toEqual([
      { config_id: 'config-id', config_name: 'dtr-cache-config-abc', file_name: '/config.yml', file_mode: 0o444 },
    ]);
    expect(spec.placement).toEqual({ constraints: ['node.labels.dtr.cache == true', 'node.role == worker'], max_replicas: 1 });
    expect(spec.restart_policy).toEqual({ condition: 'on-failure', delay: '5s', window: '2m' });
    expect(spec.container_spec.healthcheck).toMatchObject({ test: ['CMD', 'node', '-e', healthcheckScript(443, true)], retries: 3 });
  });

  it('allows managers when workersOnly is false, and takes the constraint from CacheNodes', () => {
    const s = serviceJson({ workersOnly: false, placementConstraints: ['node.labels.dtr.cache.eu == true'] });
    expect(s.task_spec.placement.constraints).toEqual(['node.labels.dtr.cache.eu == true']);
  });

  it('publishes 443/tcp through the routing mesh by default', () => {
    const s = serviceJson();
    expect(s.endpoint_spec).toEqual({
      mode: 'vip',
      ports: [{ name: 'https', protocol: 'tcp', target_port: 443, published_port: 443, publish_mode: 'ingress' }],
    });
  });

  it('publishes a custom port', () => {
    expect(serviceJson({ port: 8443 }).endpoint_spec.ports[0]).toMatchObject({
      published_port: 8443,
      target_port: 443,
      publish_mode: 'ingress',
    });
  });

  it('publishes in host mode (dnsrr, no virtual IP) for an external load balancer', () => {
    const s = serviceJson({ publishMode: PublishMode.HOST, port: 4443 });
    expect(s.endpoint_spec).toEqual({
      mode: 'dnsrr',
      ports: [{ name: 'https', protocol: 'tcp', target_port: 443, published_port: 4443, publish_mode: 'host' }],
    });
  });

  it('updates one replica at a time, start-first only when a spare node and the routing mesh allow it', () => {
    expect(serviceJson({ replicas: 2, nodeCount: 3 }).update_config).toEqual({
      parallelism: 1,
      delay: '10s',
      failure_action: 'rollback',
      monitor: '30s',
      order: 'start-first',
    });
    expect(serviceJson({ replicas: 3, nodeCount: 3 }).update_config.order).toBe('stop-first');
    expect(serviceJson({ replicas: 1, nodeCount: 2, publishMode: PublishMode.HOST }).update_config.order).toBe('stop-first');
  });

  it('waits for the service to converge on deploy: 2 minutes per replica plus 1 by default, or the given timeout', () => {
    expect(serviceJson({ replicas: 1 }).converge_config).toEqual({ timeout: '3m', delay: '7s' });
    expect(serviceJson({ replicas: 3 }).converge_config).toEqual({ timeout: '7m', delay: '7s' });
    expect(serviceJson({ replicas: 30 }).converge_config).toEqual({ timeout: '1h1m', delay: '7s' });
    // Written as the provider reads it back.
    expect(serviceJson({ convergeTimeout: '600s', convergeInterval: '5000ms' }).converge_config).toEqual({ timeout: '10m', delay: '5s' });
  });

  it('rejects a converge timeout that is not a positive Go duration, naming the prop', () => {
    const stack = newStack();
    new CacheService(stack, 'Service', { image, config, convergeTimeout: '600', convergeInterval: '0s' });
    expect(validationErrors(stack)).toEqual([
      'CacheService: convergeTimeout: must be a positive Go duration such as 90s, 5m or 1h30m (units ns, us, ms, s, m, h)',
      'CacheService: convergeInterval: must be a positive Go duration such as 90s, 5m or 1h30m (units ns, us, ms, s, m, h)',
    ]);
  });

  it('mounts secrets under /run/secrets/ and a secret config at /config.yml', () => {
    const stack = newStack();
    const secret = hashedSecret(stack, 'Key', { baseName: 'k', source: SecretSource.fromPlainText('x') });
    new CacheService(stack, 'Service', {
      image,
      config: { ...config, kind: 'secret', id: 'sid', name: 'cfg' },
      secrets: [{ secret, fileName: 'cache.key.pem' }],
    });
    const s = onlyResource(synth(stack), 'docker_service');
    expect(s.task_spec.container_spec.configs).toBeUndefined();
    expect(s.task_spec.container_spec.secrets).toEqual([
      { secret_id: 'sid', secret_name: 'cfg', file_name: '/config.yml', file_mode: 0o400, file_uid: '10001', file_gid: '10001' },
      {
        secret_id: expect.stringMatching(/^\$\{docker_secret\.Key.*\.id\}$/),
        secret_name: expect.stringMatching(/^\$\{docker_secret\.Key.*\.name\}$/),
        file_name: '/run/secrets/cache.key.pem',
        file_mode: 0o400,
        // Owned by the image's user: a root-owned 0400 file would be unreadable by the non-root server.
        file_uid: '10001',
        file_gid: '10001',
      },
    ]);
  });

  it('rejects bad replicas and ports, and two services publishing one port in a stack', () => {
    const stack = newStack();
    new CacheService(stack, 'A', { image, config, replicas: 0, port: 70000 });
    new CacheService(stack, 'B', { image, config, name: 'b' });
    new CacheService(stack, 'C', { image, config, name: 'c' });
    expect(validationErrors(stack)).toEqual([
      'CacheService: replicas: must be at least 1',
      'CacheService: port: must be between 1 and 65535',
      'CacheService: port: 443 is also published by test/C on the same swarm; give each cache site on a swarm its own port',
      'CacheService: port: 443 is also published by test/B on the same swarm; give each cache site on a swarm its own port',
    ]);
  });

  it("runs the image's default worker count (--workers auto), or the given one as the command's arguments", () => {
    expect(serviceJson().task_spec.container_spec.args).toBeUndefined();
    expect(serviceJson({ workerProcesses: 3 }).task_spec.container_spec.args).toEqual(['--workers', '3']);
    const stack = newStack();
    new CacheService(stack, 'A', { image, config, workerProcesses: 0 });
    expect(validationErrors(stack)).toEqual(['CacheService: workerProcesses: must be at least 1']);
  });

  describe('healthcheck script, run with node against a real HTTPS server', () => {
    let server: Server;
    let status = 200;
    let port = 0;
    beforeAll(async () => {
      server = createServer({ cert: readFileSync(fixture('cache.cert.pem')), key: readFileSync(fixture('cache.key.pem')) }, (req, res) => {
        res.writeHead(req.url === '/healthz' ? status : 404).end();
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      port = (server.address() as AddressInfo).port;
    });
    afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

    const run = async (p: number): Promise<number> => {
      try {
        await promisify(execFile)(process.execPath, ['-e', healthcheckScript(p, true)], { timeout: 10_000 });
        return 0;
      } catch (err) {
        return (err as { code?: number }).code ?? -1;
      }
    };

    it('exits 0 on 200, 1 on 503 and 1 when nothing listens', async () => {
      status = 200;
      expect(await run(port)).toBe(0);
      status = 503;
      expect(await run(port)).toBe(1);
      expect(await run(1)).toBe(1);
    });
  });
});
