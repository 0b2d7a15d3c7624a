/**
 * The e2e applier's translation from synthesized cdk.tf.json to Docker Engine API bodies, and its refusal of
 * anything it does not understand. Pure: no engine is involved.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testCertificates } from '../../lib/constructs/test-certificates';
import { orderByDependencies, readStack } from './support/applier';
import { evaluate, evaluateTemplate, Value } from './support/expressions';
import { networkSpec, secretSpec, serviceSpec, volumeSpec } from './support/translate';
import { synthSite } from './support/site';

const dir = mkdtempSync(join(tmpdir(), 'dtr-cache-applier-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const noRefs = { baseDir: dir, resolve: (p: readonly (string | number)[]): Value => `<${p.join('.')}>` };

function stackFile(doc: unknown): string {
  const file = join(dir, `stack-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify(doc));
  return file;
}

describe('expressions', () => {
  it('evaluates the functions and references the constructs synthesize', () => {
    writeFileSync(join(dir, 'cert.pem'), 'PEM\n');
    expect(evaluateTemplate(`\${filebase64("${join(dir, 'cert.pem')}")}`, noRefs, 'x')).toBe(Buffer.from('PEM\n').toString('base64'));
    expect(evaluateTemplate('${base64encode("a\\"b")}', noRefs, 'x')).toBe(Buffer.from('a"b').toString('base64'));
    expect(evaluateTemplate('${substr(sha256("abc"), 0, 8)}', noRefs, 'x')).toBe('ba7816bf');
    expect(evaluateTemplate('name-${docker_secret.a.id}-$${literal}', noRefs, 'x')).toBe('name-<docker_secret.a.id>-${literal}');
    expect(evaluate({ l: ['${docker_network.n.name}'] }, noRefs, 'x')).toEqual({ l: ['<docker_network.n.name>'] });
    writeFileSync(join(dir, 'key'), ' s"e${x}\n');
    expect(evaluateTemplate(`\${replace("k: P\\nv: P", "P", jsonencode(trimspace(file("${join(dir, 'key')}"))))}`, noRefs, 'x')).toBe(
      'k: "s\\"e${x}"\nv: "s\\"e${x}"',
    );
  });

  it('refuses unknown functions, operators and directives', () => {
    expect(() => evaluateTemplate('${upper("a")}', noRefs, 'res.field')).toThrow(/res.field: .*unknown function upper\(\)/);
    expect(() => evaluateTemplate('${replace("a", "/a/", "b")}', noRefs, 'res.field')).toThrow(
      /replace\(\) with a regular expression \/a\/ is not supported/,
    );
    expect(() => evaluateTemplate('${1 + 2}', noRefs, 'res.field')).toThrow(/unsupported syntax/);
    expect(() => evaluateTemplate('${a ? b : c}', noRefs, 'res.field')).toThrow(/unsupported syntax/);
    expect(() => evaluateTemplate('%{ if true }x%{ endif }', noRefs, 'res.field')).toThrow(/template directives/);
  });
});

describe('translation to the Engine API', () => {
  it('translates a docker_service with every block the constructs use', () => {
    const { spec } = serviceSpec(
      {
        name: 'svc',
        labels: [{ label: 'a', value: 'b' }],
        mode: { replicated: { replicas: 2 } },
        task_spec: {
          container_spec: {
            image: '127.0.0.1:5000/x:1',
            env: { A: '1' },
            configs: [{ config_id: 'cid', config_name: 'cfg', file_name: '/config.yml', file_mode: 292 }],
            secrets: [
              { secret_id: 'sid', secret_name: 'sec', file_name: '/run/secrets/k', file_mode: 256, file_uid: '10001', file_gid: '10001' },
            ],
            mounts: [{ type: 'volume', source: 'vol', target: '/data', volume_options: { no_copy: false } }],
            healthcheck: { test: ['CMD', 'node', '-e', '1'], interval: '15s', timeout: '5s', retries: 3, start_period: '1m30s' },
            stop_grace_period: '40s',
          },
          placement: { constraints: ['node.labels.dtr.cache == true'], max_replicas: 1 },
          restart_policy: { condition: 'on-failure', delay: '5s', window: '120s' },
          networks_advanced: [{ name: 'net-id', aliases: ['cache'] }],
        },
        update_config: [{ parallelism: 1, delay: '10s', failure_action: 'rollback', monitor: '30s', order: 'stop-first' }],
        endpoint_spec: { mode: 'dnsrr', ports: [{ name: 'https', target_port: 443, published_port: 18443, publish_mode: 'host' }] },
      },
      'docker_service.svc',
    );
    expect(spec).toEqual({
      Name: 'svc',
      Labels: { a: 'b' },
      Mode: { Replicated: { Replicas: 2 } },
      TaskTemplate: {
        ContainerSpec: {
          Image: '127.0.0.1:5000/x:1',
          Env: ['A=1'],
          Configs: [{ ConfigID: 'cid', ConfigName: 'cfg', File: { Name: '/config.yml', UID: '0', GID: '0', Mode: 0o444 } }],
          Secrets: [{ SecretID: 'sid', SecretName: 'sec', File: { Name: '/run/secrets/k', UID: '10001', GID: '10001', Mode: 0o400 } }],
          Mounts: [{ Type: 'volume', Source: 'vol', Target: '/data', VolumeOptions: { NoCopy: false } }],
          Healthcheck: { Test: ['CMD', 'node', '-e', '1'], Interval: 15e9, Timeout: 5e9, Retries: 3, StartPeriod: 90e9 },
          StopGracePeriod: 40e9,
          Hosts: [],
        },
        Placement: { Constraints: ['node.labels.dtr.cache == true'], MaxReplicas: 1, Platforms: [] },
        RestartPolicy: { Condition: 'on-failure', Delay: 5e9, Window: 120e9 },
        Networks: [{ Target: 'net-id', Aliases: ['cache'] }],
      },
      UpdateConfig: { Parallelism: 1, Delay: 10e9, FailureAction: 'rollback', Monitor: 30e9, Order: 'stop-first' },
      EndpointSpec: {
        Mode: 'dnsrr',
        Ports: [{ Name: 'https', Protocol: 'tcp', TargetPort: 443, PublishedPort: 18443, PublishMode: 'host' }],
      },
    });
  });

  it('translates secrets, configs, volumes and networks', () => {
    expect(
      secretSpec(
        { name: 's', data: 'UEVN', labels: [{ label: 'k', value: 'v' }], lifecycle: { create_before_destroy: true } },
        'x',
        'docker_secret',
      ),
    ).toEqual({
      Name: 's',
      Data: 'UEVN',
      Labels: { k: 'v' },
    });
    expect(volumeSpec({ name: 'v', driver: 'local', driver_opts: { type: 'nfs' } }, 'x')).toEqual({
      Name: 'v',
      Driver: 'local',
      DriverOpts: { type: 'nfs' },
    });
    expect(networkSpec({ name: 'n', driver: 'overlay', attachable: true }, 'x')).toEqual({
      Name: 'n',
      CheckDuplicate: true,
      Driver: 'overlay',
      Attachable: true,
    });
  });

  it('refuses any field it does not understand, naming it', () => {
    const base = { name: 'svc', task_spec: { container_spec: { image: '127.0.0.1:5000/x:1' } } };
    expect(() => serviceSpec({ ...base, surprise: 1 }, 'docker_service.svc')).toThrow(
      /docker_service\.svc: the applier does not understand "surprise"/,
    );
    expect(() => serviceSpec({ name: 'svc', task_spec: { container_spec: { image: 'i', tty: true } } }, 'docker_service.svc')).toThrow(
      /docker_service\.svc\.task_spec\.container_spec: the applier does not understand "tty"/,
    );
    expect(() =>
      serviceSpec({ ...base, endpoint_spec: { ports: [{ target_port: 443, published_port: 1, publish_mode: 'host', weird: 'x' }] } }, 's'),
    ).toThrow(/s\.endpoint_spec\.ports\[0\]: the applier does not understand "weird"/);
    expect(() => serviceSpec({ ...base, task_spec: { container_spec: { image: 'i', privileges: {} } } }, 's')).toThrow(/privileges/);
    expect(() => serviceSpec({ ...base, mode: { global: true, replicated: { replicas: 1 } } }, 's')).toThrow(/cannot be set together/);
    expect(() => secretSpec({ name: 's', data: 'not base64!' }, 'docker_secret.s', 'docker_secret')).toThrow(/must be base64/);
    expect(() => volumeSpec({ name: 'v', id: 'x' }, 'docker_volume.v')).toThrow(/id: is computed/);
    expect(() => serviceSpec({ ...base, update_config: { delay: 'soon' } }, 's')).toThrow(
      /s\.update_config\.delay: expected a Go duration/,
    );
  });
});

describe('reading a stack', () => {
  it('refuses unknown resource types, providers, blocks and lifecycle settings', () => {
    expect(() => readStack(stackFile({ resource: { docker_container: { c: {} } } }))).toThrow(
      /resource type docker_container is not supported/,
    );
    expect(() => readStack(stackFile({ provider: { aws: [{}] } }))).toThrow(/does not understand "aws"/);
    expect(() => readStack(stackFile({ variable: { v: {} } }))).toThrow(/does not understand "variable"/);
    expect(() => readStack(stackFile({ data: { docker_network: { n: {} } } }))).toThrow(/does not understand "data"/);
    expect(() => readStack(stackFile({ resource: { docker_secret: { s: { name: 's', data: 'x', count: 2 } } } }))).toThrow(
      /count: not supported/,
    );
    expect(() => readStack(stackFile({ resource: { docker_secret: { s: { name: 's', data: '${docker_config.missing.id}' } } } }))).toThrow(
      /references docker_config.missing.id, which is not a resource in this stack/,
    );
  });

  it('orders resources by references and depends_on, and finds cycles', () => {
    const r = (type: 'docker_secret' | 'docker_service', name: string, body: Record<string, unknown>) => ({
      type,
      name,
      address: `${type}.${name}`,
      body,
    });
    const ordered = orderByDependencies([
      r('docker_service', 's', { x: '${docker_secret.b.id}', depends_on: ['docker_secret.a'] }),
      r('docker_secret', 'b', {}),
      r('docker_secret', 'a', {}),
    ]);
    expect(ordered.map((x) => x.address).indexOf('docker_service.s')).toBe(2);
    expect(() =>
      orderByDependencies([
        r('docker_secret', 'a', { x: '${docker_secret.b.id}' }),
        r('docker_secret', 'b', { x: '${docker_secret.a.id}' }),
      ]),
    ).toThrow(/dependency cycle/);
  });

  it('reads and translates the stack DtrCacheSite synthesizes', () => {
    const pki = testCertificates('localhost', join(dir, 'pki'));
    const file = synthSite({
      datacenter: 'unit',
      upstream: 'https://172.17.0.1:5443',
      host: 'localhost',
      port: 18443,
      image: '127.0.0.1:5000/dtr-cache:unit',
      nodes: ['node-a'],
      certificateFile: pki.certificatePath,
      keyFile: pki.keyPath,
      dtrCaFile: pki.certificatePath,
      outdir: join(dir, 'synth'),
    });
    const stack = readStack(file);
    expect(stack.dockerHost).toBe('unix:///run/dtr-cache-test/docker.sock');
    const addresses = stack.resources.map((x) => x.address);
    expect(addresses[addresses.length - 1]).toMatch(/^docker_service\./);
    const service = stack.resources.find((x) => x.type === 'docker_service')!;
    const { provisioner, ...body } = service.body as { provisioner?: unknown };
    void provisioner;
    const attrs = evaluate(body, noRefs, service.address);
    const { spec } = serviceSpec(attrs, service.address);
    const task = spec.TaskTemplate as { ContainerSpec: { Secrets: { File: { Name: string } }[] }; Placement: { Constraints: string[] } };
    expect(task.ContainerSpec.Secrets.map((s) => s.File.Name)).toEqual([
      '/run/secrets/cache.cert.pem',
      '/run/secrets/cache.key.pem',
      '/run/secrets/dtr.cert.pem',
    ]);
    expect(task.Placement.Constraints).toEqual(['node.labels.dtr.cache == true']);
    expect(spec.EndpointSpec).toEqual({
      Mode: 'dnsrr',
      Ports: [{ Name: 'https', Protocol: 'tcp', TargetPort: 443, PublishedPort: 18443, PublishMode: 'host' }],
    });
    const label = stack.resources.find((x) => x.type === 'terraform_data')!;
    expect(JSON.stringify(label.body)).toContain('docker node update --label-add dtr.cache=true node-a');
  });
});
