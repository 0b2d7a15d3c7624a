/**
 * The docker provider stand-in as the real `terraform` binary sees it, without a Docker engine: the go-plugin
 * handshake (with AutoMTLS) and the schemas Terraform reads from it, validation of attributes the provider does
 * not have or the stand-in does not implement, and its planning rules (the SDK's defaults, ForceNew, shortDur).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { providerCliConfig, terraformDeploy } from '../../support/terraform';
import { goDurationString, parseGoDuration, shortDur } from '../../terraform-provider-docker/durations';
import { planResource } from '../../terraform-provider-docker/planner';
import { flattenService, serviceSpec } from '../../terraform-provider-docker/service';
import { resourceType } from '../../terraform-provider-docker/schema';
import { decodeValue, encodeValue, UNKNOWN } from '../../terraform-provider-docker/values';
import { objectType } from '../../terraform-provider-docker/schema';

jest.setTimeout(120_000);

const work = mkdtempSync(join(tmpdir(), 'tf-stand-in-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A stack directory with a provider that never reaches an engine (validation and planning stop before). */
function stack(name: string, resources: Record<string, unknown>): string {
  const dir = join(work, name);
  spawnSync('mkdir', ['-p', dir]);
  writeFileSync(
    join(dir, 'main.tf.json'),
    JSON.stringify({
      terraform: { required_providers: { docker: { source: 'kreuzwerker/docker', version: '3.6.2' } } },
      provider: { docker: [{ host: `unix://${join(work, 'no-engine.sock')}` }] },
      resource: resources,
    }),
  );
  return dir;
}

const service = (extra: Record<string, unknown> = {}) => ({
  docker_service: { s: { name: 'x', task_spec: { container_spec: { image: '127.0.0.1:5000/x:1', ...extra } } } },
});

describe('the stand-in under terraform', () => {
  it('refuses to run without the go-plugin magic cookie', () => {
    providerCliConfig();
    const run = spawnSync(process.execPath, [join(__dirname, '../../../node_modules/.cache/terraform-provider-docker/main.js')], {
      encoding: 'utf8',
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('This binary is a plugin');
  });

  it('serves kreuzwerker/docker 3.6.2 schemas through the handshake (terraform providers schema)', async () => {
    const tf = terraformDeploy(stack('schema', service()));
    await tf.init();
    const run = await tf.must(['providers', 'schema', '-json']);
    const doc = JSON.parse(run.stdout) as {
      provider_schemas: Record<
        string,
        {
          provider: { block: { attributes: Record<string, { optional?: boolean; sensitive?: boolean }> } };
          resource_schemas: Record<string, { version: number; block: Record<string, any> }>;
          data_source_schemas: Record<string, { version: number; block: Record<string, any> }>;
        }
      >;
    }; // eslint-disable-line @typescript-eslint/no-explicit-any
    const docker = doc.provider_schemas['registry.terraform.io/kreuzwerker/docker'];
    expect(Object.keys(docker.provider.block.attributes).sort()).toEqual(
      ['ca_material', 'cert_material', 'cert_path', 'context', 'disable_docker_daemon_check', 'host', 'key_material', 'ssh_opts'].sort(),
    );
    expect(docker.provider.block.attributes.host.optional).toBe(true); // Required with a DefaultFunc, as the SDK reports it
    expect(Object.keys(docker.resource_schemas).sort()).toEqual(
      [
        'docker_config',
        'docker_image',
        'docker_network',
        'docker_registry_image',
        'docker_secret',
        'docker_service',
        'docker_volume',
      ].sort(),
    );
    const svc = docker.resource_schemas.docker_service;
    expect(svc.version).toBe(2);
    expect(svc.block.block_types.task_spec).toMatchObject({ nesting_mode: 'list', min_items: 1, max_items: 1 });
    expect(svc.block.block_types.converge_config).toMatchObject({ nesting_mode: 'list', max_items: 1 });
    expect(svc.block.block_types.labels.nesting_mode).toBe('set');
    expect(docker.resource_schemas.docker_secret.block.attributes.data).toMatchObject({ required: true, sensitive: true });
    expect(docker.resource_schemas.docker_image.block.block_types.timeouts.nesting_mode).toBe('single');
    // The one data source the stand-in reads, as data_source_docker_registry_image.go declares it (the SDK adds id).
    expect(Object.keys(docker.data_source_schemas)).toEqual(['docker_registry_image']);
    const data = docker.data_source_schemas.docker_registry_image.block.attributes;
    expect(Object.keys(data).sort()).toEqual(['id', 'insecure_skip_verify', 'name', 'sha256_digest']);
    expect(data.name).toMatchObject({ type: 'string', required: true });
    expect(data.sha256_digest).toMatchObject({ type: 'string', computed: true });
    expect(data.insecure_skip_verify).toMatchObject({ type: 'bool', optional: true });
  });

  it('fails plan naming an attribute kreuzwerker/docker does not have', async () => {
    const tf = terraformDeploy(stack('unknown', service({ no_such_attribute: 'x' })));
    await tf.init();
    const run = await tf.run(['plan', '-input=false', '-no-color']);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('No argument or block type is named "no_such_attribute".');
  });

  it('fails plan naming an attribute the stand-in does not implement', async () => {
    const tf = terraformDeploy(stack('unimplemented', service({ privileges: { se_linux_context: { disable: true } } })));
    await tf.init();
    const run = await tf.run(['plan', '-input=false', '-no-color']);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(
      'docker_service: task_spec.container_spec.privileges is not implemented by the test stand-in of kreuzwerker/docker',
    );
  });
});

describe('planning as terraform-plugin-sdk v2', () => {
  const attrs = resourceType('docker_service');
  const config = {
    name: 'svc',
    labels: [{ label: 'a', value: '1' }],
    task_spec: [
      {
        container_spec: [{ image: 'img', secrets: [{ secret_id: 's1', file_name: '/run/secrets/x' }] }],
        restart_policy: [{ window: '2m' }],
      },
    ],
    update_config: [{}],
  };

  it('fills defaults and leaves computed values unknown on create', () => {
    const { planned } = planResource(attrs, null, config);
    const container = (planned.task_spec as any)[0].container_spec[0]; // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(container.secrets[0]).toMatchObject({ file_uid: '0', file_gid: '0', file_mode: 0o444 });
    expect(container.isolation).toBe('default');
    expect((planned.update_config as any)[0]).toMatchObject({
      parallelism: 1,
      delay: '0s',
      monitor: '5s',
      order: 'stop-first',
      max_failure_ratio: '0.0',
    }); // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(planned.id).toBe(UNKNOWN);
    expect(planned.mode).toBe(UNKNOWN); // optional + computed block not configured
    expect(planned.converge_config).toEqual([]);
  });

  it('replaces on a ForceNew change (a label of the service) and updates in place otherwise', () => {
    const prior = { ...planResource(attrs, null, config).planned, id: 'abc', mode: [{ replicated: [{ replicas: 1 }], global: false }] };
    const relabel = planResource(attrs, prior, { ...config, labels: [{ label: 'a', value: '2' }] });
    expect(relabel.requiresReplace).toEqual([['labels']]);
    expect(relabel.planned.id).toBe(UNKNOWN);
    const image = planResource(attrs, prior, {
      ...config,
      task_spec: [{ ...config.task_spec[0], container_spec: [{ ...config.task_spec[0].container_spec[0], image: 'img2' }] }],
    });
    expect(image.requiresReplace).toEqual([]);
    expect(image.planned.id).toBe('abc');
    expect(image.planned.mode).toEqual(prior.mode); // not configured: keeps what was read
    // mode is ForceNew, which covers its count only: a new replica count updates in place.
    const scaled = planResource(attrs, prior, { ...config, mode: [{ replicated: [{ replicas: 3 }] }] });
    expect(scaled.requiresReplace).toEqual([]);
  });

  it('reads durations back as the provider does (shortDur)', () => {
    expect(['120s', '90s', '3600s', '40s', '0s', '1.5s', '500ms'].map((d) => shortDur(parseGoDuration(d)!))).toEqual([
      '2m',
      '1m30s',
      '1h',
      '40s',
      '0s',
      '1.5s',
      '500ms',
    ]);
    expect(goDurationString(parseGoDuration('1h2m3s')!)).toBe('1h2m3s');
  });

  it('sends the Engine API spec the provider builds, and reads it back as the provider does', () => {
    const { planned } = planResource(attrs, null, {
      name: 'svc',
      labels: [{ label: 'a', value: 'b' }],
      mode: [{ replicated: [{ replicas: 2 }] }],
      task_spec: [
        {
          container_spec: [
            {
              image: '127.0.0.1:5000/x:1',
              env: { A: '1' },
              configs: [{ config_id: 'cid', config_name: 'cfg', file_name: '/config.yml' }],
              secrets: [
                { secret_id: 'sid', secret_name: 'sec', file_name: '/run/secrets/k', file_mode: 256, file_uid: '10001', file_gid: '10001' },
              ],
              healthcheck: [{ test: ['CMD', 'true'], interval: '15s', timeout: '5s', retries: 3, start_period: '90s' }],
              stop_grace_period: '40s',
            },
          ],
          placement: [{ constraints: ['node.labels.dtr.cache == true'], max_replicas: 1 }],
          restart_policy: [{ condition: 'on-failure', delay: '5s', window: '120s' }],
        },
      ],
      endpoint_spec: [{ mode: 'dnsrr', ports: [{ name: 'https', target_port: 443, published_port: 18443, publish_mode: 'host' }] }],
    });
    const spec = serviceSpec(planned) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(spec).toMatchObject({
      Name: 'svc',
      Labels: { a: 'b' },
      Mode: { Replicated: { Replicas: 2 } },
      TaskTemplate: {
        ContainerSpec: {
          Env: ['A=1'],
          Configs: [{ ConfigID: 'cid', ConfigName: 'cfg', File: { Name: '/config.yml', UID: '0', GID: '0', Mode: 0o444 } }],
          Secrets: [{ SecretID: 'sid', SecretName: 'sec', File: { Name: '/run/secrets/k', UID: '10001', GID: '10001', Mode: 0o400 } }],
          Healthcheck: { Test: ['CMD', 'true'], Interval: 15e9, Timeout: 5e9, Retries: 3, StartPeriod: 90e9 },
          StopGracePeriod: 40e9,
          Isolation: 'default',
        },
        Placement: { Constraints: ['node.labels.dtr.cache == true'], MaxReplicas: 1 },
        RestartPolicy: { Condition: 'on-failure', Delay: 5e9, Window: 120e9 },
      },
      EndpointSpec: {
        Mode: 'dnsrr',
        Ports: [{ Name: 'https', Protocol: 'tcp', TargetPort: 443, PublishedPort: 18443, PublishMode: 'host' }],
      },
    });
    const read = flattenService({
      ID: 'id1',
      Spec: JSON.parse(JSON.stringify(spec)),
      Endpoint: { Spec: { Mode: 'dnsrr' }, Ports: spec.EndpointSpec.Ports },
    }) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
    // MaxAttempts is sent as 0 when unset and read back as 0: the SDK does not tell unset from zero.
    expect(read.task_spec[0].restart_policy).toEqual([{ condition: 'on-failure', delay: '5s', max_attempts: 0, window: '2m' }]);
    expect(read.task_spec[0].container_spec[0].healthcheck[0]).toMatchObject({ interval: '15s', start_period: '1m30s' });
    expect(read.mode).toEqual([{ replicated: [{ replicas: 2 }], global: false }]);

    // Planned against what was read: an unset duration is sent as 0 and read back "0s", which is not the string's
    // zero value: a change in every plan, as with the real provider (the number 0 of max_attempts is not).
    const readPolicy = [{ condition: 'on-failure', delay: '5s', max_attempts: 0, window: '0s' }];
    const prior = { ...planned, ...read, id: 'id1', task_spec: [{ ...read.task_spec[0], restart_policy: readPolicy }] };
    const config = { ...prior, task_spec: [{ ...read.task_spec[0], restart_policy: [{ condition: 'on-failure', delay: '5s' }] }] };
    const replan = planResource(attrs, prior, config);
    expect((replan.planned.task_spec as any)[0].restart_policy).toEqual([{ ...readPolicy[0], window: null }]); // eslint-disable-line @typescript-eslint/no-explicit-any
  });

  it('encodes values as cty msgpack, unknowns as extension 0', () => {
    const type = objectType(resourceType('docker_secret'));
    const value = decodeValue(encodeValue({ name: 'n', data: 'ZA==', id: UNKNOWN, labels: [] }, type));
    expect(value).toEqual({ name: 'n', data: 'ZA==', id: UNKNOWN, labels: [] });
  });
});
