/**
 * Pure translations of the kreuzwerker docker provider's resources (as cdktf synthesizes them, references already
 * resolved) to Docker Engine API bodies. Every field is read through `Fields`, so one the translation does not
 * know makes it throw instead of being dropped.
 */
import type { Value } from './expressions';
import { compact, Fields } from './fields';

/** Terraform meta-arguments the applier itself handles (ordering, replacement). */
export const META_ARGUMENTS = ['depends_on', 'lifecycle', '//', 'provider'];

export interface SecretOrConfigSpec {
  Name: string;
  Data: string;
  Labels?: Record<string, string>;
}

/** docker_secret and docker_config: `data` is already base64, as the Engine API wants it. */
export function secretSpec(attrs: Value, where: string, kind: 'docker_secret' | 'docker_config'): SecretOrConfigSpec {
  const f = resourceFields(attrs, where);
  const spec = compact({
    Name: f.requiredStr('name'),
    Data: f.requiredStr('data'),
    Labels: kind === 'docker_secret' ? f.labels('labels') : undefined,
  }) as SecretOrConfigSpec;
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(spec.Data)) throw new Error(`${where}.data: must be base64 (the provider sends it as is)`);
  f.done();
  return spec;
}

export function volumeSpec(attrs: Value, where: string): Record<string, unknown> {
  const f = resourceFields(attrs, where);
  const spec = compact({
    Name: f.requiredStr('name'),
    Driver: f.str('driver'),
    DriverOpts: f.stringMap('driver_opts'),
    Labels: f.labels('labels'),
  });
  f.done();
  return spec;
}

export function networkSpec(attrs: Value, where: string): Record<string, unknown> {
  const f = resourceFields(attrs, where);
  const ipamConfig = f.blocks('ipam_config').map((c) => {
    const out = compact({
      Subnet: c.str('subnet'),
      Gateway: c.str('gateway'),
      IPRange: c.str('ip_range'),
      AuxiliaryAddresses: c.stringMap('aux_address'),
    });
    c.done();
    return out;
  });
  const ipamDriver = f.str('ipam_driver');
  const ipamOptions = f.stringMap('ipam_options');
  const spec = compact({
    Name: f.requiredStr('name'),
    CheckDuplicate: f.bool('check_duplicate') ?? true,
    Driver: f.str('driver'),
    Attachable: f.bool('attachable'),
    Internal: f.bool('internal'),
    Ingress: f.bool('ingress'),
    EnableIPv6: f.bool('ipv6'),
    Options: f.stringMap('options'),
    Labels: f.labels('labels'),
    IPAM:
      ipamDriver || ipamOptions || ipamConfig.length
        ? compact({ Driver: ipamDriver, Options: ipamOptions, Config: ipamConfig })
        : undefined,
  });
  f.done();
  return spec;
}

export interface ServiceTranslation {
  /** The Engine API ServiceSpec. */
  spec: Record<string, unknown>;
  /** X-Registry-Auth for the image pull, from the `auth` block. */
  registryAuth?: { username: string; password: string; serveraddress: string };
  /** From `converge_config`: wait until the service runs, at most this long. */
  converge?: { delayMs: number; timeoutMs: number };
}

export function serviceSpec(attrs: Value, where: string): ServiceTranslation {
  const f = resourceFields(attrs, where);
  const name = f.requiredStr('name');
  const task = f.block('task_spec');
  if (!task) throw f.error('task_spec', 'is required');
  const auth = f.block('auth');
  const registryAuth = auth && {
    username: auth.str('username') ?? '',
    password: auth.str('password') ?? '',
    serveraddress: auth.requiredStr('server_address'),
  };
  auth?.done();
  const converge = f.block('converge_config');
  const convergeOut = converge && {
    delayMs: (converge.durationNs('delay') ?? 7e9) / 1e6,
    timeoutMs: (converge.durationNs('timeout') ?? 180e9) / 1e6,
  };
  converge?.done();
  const spec = compact({
    Name: name,
    Labels: f.labels('labels'),
    TaskTemplate: taskTemplate(task),
    Mode: mode(f.block('mode')),
    UpdateConfig: updateConfig(f.block('update_config')),
    RollbackConfig: updateConfig(f.block('rollback_config')),
    EndpointSpec: endpointSpec(f.block('endpoint_spec')),
  });
  f.done();
  return { spec, registryAuth, converge: convergeOut };
}

function resourceFields(attrs: Value, where: string): Fields {
  const f = new Fields(attrs, where);
  f.ignore(...META_ARGUMENTS);
  if (f.has('id')) throw f.error('id', 'is computed by the engine; a synthesized id is not supported');
  f.ignore('id');
  return f;
}

function taskTemplate(t: Fields): Record<string, unknown> {
  const container = t.block('container_spec');
  if (!container) throw t.error('container_spec', 'is required');
  const runtime = t.str('runtime');
  if (runtime !== undefined && runtime !== 'container') throw t.error('runtime', `only "container" is supported, got ${runtime}`);
  const out = compact({
    ContainerSpec: containerSpec(container),
    Resources: resources(t.block('resources')),
    RestartPolicy: restartPolicy(t.block('restart_policy')),
    Placement: placement(t.block('placement')),
    Networks: t.blocks('networks_advanced').map((n) => {
      const net = compact({ Target: n.requiredStr('name'), Aliases: n.strings('aliases'), DriverOpts: n.stringMap('driver_opts') });
      n.done();
      return net;
    }),
    LogDriver: logDriver(t.block('log_driver')),
    ForceUpdate: t.num('force_update'),
  });
  t.done();
  return out;
}

function containerSpec(c: Fields): Record<string, unknown> {
  const env = c.stringMap('env');
  const privileges = c.block('privileges');
  if (privileges) throw privileges.error('', 'privileges (credential_spec, se_linux_context) are not supported by the applier');
  const isolation = c.str('isolation');
  if (isolation !== undefined && isolation !== 'default') throw c.error('isolation', `only "default" is supported, got ${isolation}`);
  const out = compact({
    Image: c.requiredStr('image'),
    Labels: c.labels('labels'),
    Command: c.strings('command'),
    Args: c.strings('args'),
    Hostname: c.str('hostname'),
    Env: env && Object.entries(env).map(([k, v]) => `${k}=${v}`),
    Dir: c.str('dir'),
    User: c.str('user'),
    Groups: c.strings('groups'),
    ReadOnly: c.bool('read_only'),
    StopSignal: c.str('stop_signal'),
    StopGracePeriod: c.durationNs('stop_grace_period'),
    CapabilityAdd: c.strings('cap_add'),
    CapabilityDrop: c.strings('cap_drop'),
    Sysctls: c.stringMap('sysctl'),
    Mounts: c.blocks('mounts').map(mount),
    Secrets: c.blocks('secrets').map((s) => fileReference(s, 'secret')),
    Configs: c.blocks('configs').map((s) => fileReference(s, 'config')),
    Healthcheck: healthcheck(c.block('healthcheck')),
    Hosts: c.blocks('hosts').map((h) => {
      const line = `${h.requiredStr('ip')} ${h.requiredStr('host')}`;
      h.done();
      return line;
    }),
    DNSConfig: dnsConfig(c.block('dns_config')),
  });
  c.done();
  return out;
}

function mount(m: Fields): Record<string, unknown> {
  const type = m.requiredStr('type');
  if (!['volume', 'bind', 'tmpfs'].includes(type)) throw m.error('type', `must be volume, bind or tmpfs, got ${type}`);
  const vol = m.block('volume_options');
  const bind = m.block('bind_options');
  const tmpfs = m.block('tmpfs_options');
  const out = compact({
    Type: type,
    Source: m.str('source'),
    Target: m.requiredStr('target'),
    ReadOnly: m.bool('read_only'),
    VolumeOptions: vol
      ? compact({
          NoCopy: vol.bool('no_copy'),
          Labels: vol.labels('labels'),
          DriverConfig:
            vol.has('driver_name') || vol.has('driver_options')
              ? compact({ Name: vol.str('driver_name'), Options: vol.stringMap('driver_options') })
              : undefined,
        })
      : undefined,
    BindOptions: bind ? compact({ Propagation: bind.str('propagation') }) : undefined,
    TmpfsOptions: tmpfs ? compact({ SizeBytes: tmpfs.num('size_bytes'), Mode: tmpfs.num('mode') }) : undefined,
  });
  for (const b of [vol, bind, tmpfs]) b?.done();
  m.done();
  return out;
}

/** A secret or config mounted as a file. The provider's defaults: uid/gid "0", mode 0444. */
function fileReference(s: Fields, kind: 'secret' | 'config'): Record<string, unknown> {
  const out = {
    File: {
      Name: s.requiredStr('file_name'),
      UID: s.str('file_uid') ?? '0',
      GID: s.str('file_gid') ?? '0',
      Mode: s.num('file_mode') ?? 0o444,
    },
    [kind === 'secret' ? 'SecretID' : 'ConfigID']: s.requiredStr(`${kind}_id`),
    [kind === 'secret' ? 'SecretName' : 'ConfigName']: s.str(`${kind}_name`),
  };
  s.done();
  return compact(out);
}

function healthcheck(h: Fields | undefined): Record<string, unknown> | undefined {
  if (!h) return undefined;
  const out = compact({
    Test: h.strings('test'),
    Interval: h.durationNs('interval'),
    Timeout: h.durationNs('timeout'),
    StartPeriod: h.durationNs('start_period'),
    Retries: h.num('retries'),
  });
  h.done();
  return out;
}

function dnsConfig(d: Fields | undefined): Record<string, unknown> | undefined {
  if (!d) return undefined;
  const out = compact({ Nameservers: d.strings('nameservers'), Search: d.strings('search'), Options: d.strings('options') });
  d.done();
  return out;
}

function resources(r: Fields | undefined): Record<string, unknown> | undefined {
  if (!r) return undefined;
  const one = (b: Fields | undefined) => {
    if (!b) return undefined;
    if (b.has('generic_resources')) throw b.error('generic_resources', 'is not supported by the applier');
    const out = compact({ NanoCPUs: b.num('nano_cpus'), MemoryBytes: b.num('memory_bytes') });
    b.done();
    return out;
  };
  const out = compact({ Limits: one(r.block('limits')), Reservations: one(r.block('reservation')) });
  r.done();
  return out;
}

function restartPolicy(r: Fields | undefined): Record<string, unknown> | undefined {
  if (!r) return undefined;
  const out = compact({
    Condition: r.str('condition'),
    Delay: r.durationNs('delay'),
    MaxAttempts: r.num('max_attempts'),
    Window: r.durationNs('window'),
  });
  r.done();
  return out;
}

function placement(p: Fields | undefined): Record<string, unknown> | undefined {
  if (!p) return undefined;
  const out = compact({
    Constraints: p.strings('constraints'),
    Preferences: p.strings('prefs')?.map((pref) => {
      const m = /^spread=(.+)$/.exec(pref);
      if (!m) throw p.error('prefs', `only spread=<descriptor> preferences are supported, got ${pref}`);
      return { Spread: { SpreadDescriptor: m[1] } };
    }),
    MaxReplicas: p.num('max_replicas'),
    Platforms: p.blocks('platforms').map((x) => {
      const out = { Architecture: x.requiredStr('architecture'), OS: x.requiredStr('os') };
      x.done();
      return out;
    }),
  });
  p.done();
  return out;
}

function logDriver(l: Fields | undefined): Record<string, unknown> | undefined {
  if (!l) return undefined;
  const out = compact({ Name: l.requiredStr('name'), Options: l.stringMap('options') });
  l.done();
  return out;
}

function mode(m: Fields | undefined): Record<string, unknown> | undefined {
  if (!m) return undefined;
  const replicated = m.block('replicated');
  const global = m.bool('global');
  if (global && replicated) throw m.error('global', 'cannot be set together with replicated');
  const out = global ? { Global: {} } : { Replicated: { Replicas: replicated?.num('replicas') ?? 1 } };
  replicated?.done();
  m.done();
  return out;
}

function updateConfig(u: Fields | undefined): Record<string, unknown> | undefined {
  if (!u) return undefined;
  const out = compact({
    Parallelism: u.num('parallelism'),
    Delay: u.durationNs('delay'),
    FailureAction: u.str('failure_action'),
    Monitor: u.durationNs('monitor'),
    MaxFailureRatio: u.num('max_failure_ratio'),
    Order: u.str('order'),
  });
  u.done();
  return out;
}

function endpointSpec(e: Fields | undefined): Record<string, unknown> | undefined {
  if (!e) return undefined;
  const out = compact({
    Mode: e.str('mode'),
    Ports: e.blocks('ports').map((p) => {
      const port = compact({
        Name: p.str('name'),
        Protocol: p.str('protocol') ?? 'tcp',
        TargetPort: p.num('target_port'),
        PublishedPort: p.num('published_port'),
        PublishMode: p.str('publish_mode') ?? 'ingress',
      });
      if (port.TargetPort === undefined) throw p.error('target_port', 'is required');
      p.done();
      return port;
    }),
  });
  e.done();
  return out;
}
