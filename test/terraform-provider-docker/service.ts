/**
 * docker_service as kreuzwerker/docker 3.6.2 implements it (resource_docker_service_funcs.go and
 * _structures.go): the spec it sends (every block key read, unset values as Go zero values), the state its Read
 * sets (durations through shortDur, the engine's own labels, image and endpoint), the image pinned to its digest and
 * the registry's platforms added on create (the Docker client's QueryRegistry) but not on update, and the converge
 * wait only under converge_config.
 */
import { Engine, EngineError } from './engine';
import { parseGoDuration, shortDur } from './durations';
import { ObjectValue, Value } from './values';

type Obj = ObjectValue;
const list = (v: Value | undefined): Obj[] => (Array.isArray(v) ? (v as Obj[]) : []);
const first = (v: Value | undefined): Obj | undefined => list(v)[0];
const str = (v: Value | undefined): string => (typeof v === 'string' ? v : '');
const int = (v: Value | undefined): number => (typeof v === 'number' ? v : 0);
const strings = (v: Value | undefined): string[] => (Array.isArray(v) ? (v as string[]) : []);
const dur = (v: Value | undefined): number => parseGoDuration(str(v)) ?? 0;
const stringMap = (v: Value | undefined): Record<string, string> =>
  v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, string>) : {};
const labelMap = (v: Value | undefined): Record<string, string> => Object.fromEntries(list(v).map((l) => [str(l.label), str(l.value)]));
const labelSet = (m: Record<string, string> | undefined): Obj[] => Object.entries(m ?? {}).map(([label, value]) => ({ label, value }));
/** Go's omitempty-free JSON would send these; the engine treats empty and absent alike. */
const orUndefined = <T>(v: T[]): T[] | undefined => (v.length ? v : undefined);

export interface RegistryAuth {
  username?: string;
  password?: string;
  serveraddress?: string;
}

export function serviceSpec(d: Obj): Record<string, unknown> {
  const task = first(d.task_spec) ?? {};
  const mode = first(d.mode);
  const replicated = mode && first(mode.replicated);
  const endpoint = first(d.endpoint_spec);
  return {
    Name: str(d.name),
    Labels: list(d.labels).length ? labelMap(d.labels) : undefined,
    TaskTemplate: {
      ContainerSpec: containerSpec(first(task.container_spec) ?? {}),
      Resources: resources(first(task.resources)),
      RestartPolicy: restartPolicy(first(task.restart_policy)),
      Placement: placement(first(task.placement)),
      ForceUpdate: int(task.force_update),
      Runtime: str(task.runtime) || undefined,
      Networks: list(task.networks_advanced).map((n) => ({
        Target: str(n.name),
        Aliases: orUndefined(strings(n.aliases)),
        DriverOpts: orUndefined(strings(n.driver_opts)) && Object.fromEntries(strings(n.driver_opts).map((o) => o.split('=', 2))),
      })),
      LogDriver: first(task.log_driver) && { Name: str(first(task.log_driver)!.name), Options: stringMap(first(task.log_driver)!.options) },
    },
    Mode: mode
      ? { ...(replicated ? { Replicated: { Replicas: int(replicated.replicas) } } : {}), ...(mode.global === true ? { Global: {} } : {}) }
      : {},
    UpdateConfig: updateConfig(first(d.update_config)),
    RollbackConfig: updateConfig(first(d.rollback_config)),
    EndpointSpec: endpoint
      ? {
          Mode: str(endpoint.mode) || undefined,
          Ports: list(endpoint.ports).map((p) => ({
            Name: str(p.name),
            Protocol: str(p.protocol),
            TargetPort: int(p.target_port),
            PublishedPort: int(p.published_port),
            PublishMode: str(p.publish_mode),
          })),
        }
      : {},
  };
}

function containerSpec(c: Obj): Record<string, unknown> {
  const privileges = first(c.privileges);
  const fileRef = (kind: 'secret' | 'config') => (s: Obj) => ({
    [kind === 'secret' ? 'SecretID' : 'ConfigID']: str(s[`${kind}_id`]),
    [kind === 'secret' ? 'SecretName' : 'ConfigName']: str(s[`${kind}_name`]),
    File: { Name: str(s.file_name), UID: str(s.file_uid), GID: str(s.file_gid), Mode: int(s.file_mode) },
  });
  const health = first(c.healthcheck);
  const dns = first(c.dns_config);
  return {
    Image: str(c.image),
    Labels: labelMap(c.labels),
    Command: strings(c.command),
    Args: strings(c.args),
    Hostname: str(c.hostname),
    Env: Object.entries(stringMap(c.env)).map(([k, v]) => `${k}=${v}`),
    Dir: str(c.dir),
    User: str(c.user),
    Groups: strings(c.groups),
    Privileges: privileges && {
      CredentialSpec: first(privileges.credential_spec) && {
        // The provider writes `registry` into File as well (resource_docker_service_structures.go).
        File: str(first(privileges.credential_spec)!.registry) || str(first(privileges.credential_spec)!.file),
      },
      SELinuxContext: first(privileges.se_linux_context) && {
        Disable: first(privileges.se_linux_context)!.disable === true,
        User: str(first(privileges.se_linux_context)!.user),
        Role: str(first(privileges.se_linux_context)!.role),
        Type: str(first(privileges.se_linux_context)!.type),
        Level: str(first(privileges.se_linux_context)!.level),
      },
    },
    ReadOnly: c.read_only === true,
    Mounts: list(c.mounts).map((m) => {
      const bind = first(m.bind_options);
      const vol = first(m.volume_options);
      const tmpfs = first(m.tmpfs_options);
      return {
        Type: str(m.type),
        Target: str(m.target),
        Source: str(m.source),
        ReadOnly: m.read_only === true,
        BindOptions: bind && { Propagation: str(bind.propagation) },
        VolumeOptions: vol && {
          NoCopy: vol.no_copy === true,
          Labels: labelMap(vol.labels),
          DriverConfig: { Name: str(vol.driver_name), Options: stringMap(vol.driver_options) },
        },
        TmpfsOptions: tmpfs && { SizeBytes: int(tmpfs.size_bytes), Mode: int(tmpfs.mode) },
      };
    }),
    StopSignal: str(c.stop_signal),
    StopGracePeriod: dur(c.stop_grace_period),
    Healthcheck: health
      ? {
          Test: strings(health.test),
          Interval: dur(health.interval),
          Timeout: dur(health.timeout),
          StartPeriod: dur(health.start_period),
          Retries: int(health.retries),
        }
      : {},
    Hosts: list(c.hosts).map((h) => `${str(h.ip)} ${str(h.host)}`),
    DNSConfig: dns ? { Nameservers: strings(dns.nameservers), Search: strings(dns.search), Options: strings(dns.options) } : {},
    Secrets: list(c.secrets).map(fileRef('secret')),
    Configs: list(c.configs).map(fileRef('config')),
    Isolation: str(c.isolation),
    Sysctls: stringMap(c.sysctl),
    CapabilityAdd: orUndefined(strings(c.cap_add)),
    CapabilityDrop: orUndefined(strings(c.cap_drop)),
  };
}

function resources(r: Obj | undefined): Record<string, unknown> {
  if (!r) return {};
  const limits = first(r.limits);
  const reservation = first(r.reservation);
  const generic = reservation && first(reservation.generic_resources);
  return {
    Limits: limits && { NanoCPUs: int(limits.nano_cpus), MemoryBytes: int(limits.memory_bytes) },
    Reservations: reservation && {
      NanoCPUs: int(reservation.nano_cpus),
      MemoryBytes: int(reservation.memory_bytes),
      GenericResources: generic && [
        ...strings(generic.named_resources_spec).map((s) => ({ NamedResourceSpec: { Kind: s.split('=')[0], Value: s.split('=')[1] } })),
        ...strings(generic.discrete_resources_spec).map((s) => ({
          DiscreteResourceSpec: { Kind: s.split('=')[0], Value: Number(s.split('=')[1]) },
        })),
      ],
    },
  };
}

function restartPolicy(r: Obj | undefined): Record<string, unknown> {
  if (!r) return {};
  return { Condition: str(r.condition), Delay: dur(r.delay), MaxAttempts: int(r.max_attempts), Window: dur(r.window) };
}

function placement(p: Obj | undefined): Record<string, unknown> {
  if (!p) return {};
  return {
    Constraints: strings(p.constraints),
    Preferences: strings(p.prefs).map((s) => ({ Spread: { SpreadDescriptor: s } })),
    Platforms: list(p.platforms).map((x) => ({ Architecture: str(x.architecture), OS: str(x.os) })),
    MaxReplicas: int(p.max_replicas),
  };
}

function updateConfig(u: Obj | undefined): Record<string, unknown> | undefined {
  if (!u) return undefined;
  return {
    Parallelism: int(u.parallelism),
    Delay: dur(u.delay),
    FailureAction: str(u.failure_action),
    Monitor: dur(u.monitor),
    MaxFailureRatio: Number(str(u.max_failure_ratio) || 0),
    Order: str(u.order),
  };
}

// ---- Read: what the provider sets from the engine's service ----

interface Dict {
  [key: string]: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** The attributes resourceDockerServiceReadRefreshFunc sets; the others (auth, converge_config) keep their value. */
export function flattenService(s: Dict): Obj {
  const spec = s.Spec as Dict;
  const endpoint = s.Endpoint?.Spec?.Mode
    ? { mode: s.Endpoint.Spec.Mode, ports: s.Endpoint.Ports }
    : { mode: spec.EndpointSpec?.Mode, ports: spec.EndpointSpec?.Ports };
  return {
    id: s.ID,
    name: spec.Name,
    labels: labelSet(spec.Labels),
    task_spec: [flattenTaskSpec(spec.TaskTemplate ?? {})],
    mode: [
      {
        ...(spec.Mode?.Replicated
          ? { replicated: [{ ...(spec.Mode.Replicated.Replicas !== undefined ? { replicas: spec.Mode.Replicated.Replicas } : {}) }] }
          : {}),
        global: spec.Mode?.Global !== undefined,
      },
    ],
    update_config: flattenUpdateConfig(spec.UpdateConfig),
    rollback_config: flattenUpdateConfig(spec.RollbackConfig),
    endpoint_spec: [
      {
        mode: endpoint.mode,
        ports: ((endpoint.ports ?? []) as Dict[]).map((p) => ({
          name: p.Name ?? '',
          protocol: p.Protocol ?? '',
          target_port: p.TargetPort ?? 0,
          published_port: p.PublishedPort ?? 0,
          publish_mode: p.PublishMode ?? '',
        })),
      },
    ],
  };
}

function flattenUpdateConfig(u: Dict | undefined): Obj[] {
  if (!u) return [];
  return [
    {
      parallelism: u.Parallelism ?? 0,
      delay: shortDur(u.Delay ?? 0),
      failure_action: u.FailureAction ?? '',
      monitor: shortDur(u.Monitor ?? 0),
      max_failure_ratio: (u.MaxFailureRatio ?? 0).toFixed(1),
      order: u.Order ?? '',
    },
  ];
}

function flattenTaskSpec(t: Dict): Obj {
  const m: Obj = {};
  if (t.ContainerSpec) m.container_spec = [flattenContainerSpec(t.ContainerSpec)];
  if (t.Resources) {
    const r = t.Resources as Dict;
    m.resources = [
      {
        limits: r.Limits ? [{ nano_cpus: r.Limits.NanoCPUs ?? 0, memory_bytes: r.Limits.MemoryBytes ?? 0 }] : [],
        reservation: r.Reservations
          ? [
              {
                nano_cpus: r.Reservations.NanoCPUs ?? 0,
                memory_bytes: r.Reservations.MemoryBytes ?? 0,
                generic_resources: r.Reservations.GenericResources?.length
                  ? [
                      {
                        named_resources_spec: (r.Reservations.GenericResources as Dict[])
                          .filter((g) => g.NamedResourceSpec)
                          .map((g) => `${g.NamedResourceSpec.Kind}=${g.NamedResourceSpec.Value}`),
                        discrete_resources_spec: (r.Reservations.GenericResources as Dict[])
                          .filter((g) => g.DiscreteResourceSpec)
                          .map((g) => `${g.DiscreteResourceSpec.Kind}=${g.DiscreteResourceSpec.Value}`),
                      },
                    ]
                  : [],
              },
            ]
          : [],
      },
    ];
  }
  if (t.RestartPolicy) {
    const r = t.RestartPolicy as Dict;
    const p: Obj = {};
    if (r.Condition) p.condition = r.Condition;
    if (r.Delay !== undefined) p.delay = shortDur(r.Delay);
    if (r.MaxAttempts !== undefined) p.max_attempts = r.MaxAttempts;
    if (r.Window !== undefined) p.window = shortDur(r.Window);
    m.restart_policy = [p];
  }
  if (t.Placement) {
    const p = t.Placement as Dict;
    const out: Obj = { max_replicas: p.MaxReplicas ?? 0 };
    if (p.Constraints?.length) out.constraints = p.Constraints;
    if (p.Preferences?.length) out.prefs = (p.Preferences as Dict[]).map((x) => x.Spread?.SpreadDescriptor ?? '');
    if (p.Platforms?.length) out.platforms = (p.Platforms as Dict[]).map((x) => ({ architecture: x.Architecture, os: x.OS }));
    m.placement = [out];
  }
  m.force_update = t.ForceUpdate ?? 0;
  if (t.Runtime) m.runtime = t.Runtime;
  if (t.Networks?.length)
    m.networks_advanced = (t.Networks as Dict[]).map((n) => ({
      name: n.Target,
      driver_opts: Object.entries((n.DriverOpts ?? {}) as Record<string, string>).map(([k, v]) => `${k}=${v}`),
      ...(n.Aliases?.length ? { aliases: n.Aliases } : {}),
    }));
  if (t.LogDriver) m.log_driver = [{ name: t.LogDriver.Name ?? '', options: t.LogDriver.Options ?? {} }];
  return m;
}

function flattenContainerSpec(c: Dict): Obj {
  const m: Obj = {};
  if (c.Image) m.image = c.Image;
  if (c.Labels && Object.keys(c.Labels).length) m.labels = labelSet(c.Labels);
  if (c.Command?.length) m.command = c.Command;
  if (c.Args?.length) m.args = c.Args;
  if (c.Hostname) m.hostname = c.Hostname;
  if (c.Env?.length)
    m.env = Object.fromEntries((c.Env as string[]).filter((e) => e).map((e) => [e.split('=')[0], e.split('=').slice(1).join('=')]));
  if (c.User) m.user = c.User;
  if (c.Dir) m.dir = c.Dir;
  if (c.Groups?.length) m.groups = c.Groups;
  if (c.Privileges) {
    const p = c.Privileges as Dict;
    m.privileges = [
      {
        ...(p.CredentialSpec
          ? { credential_spec: [{ file: p.CredentialSpec.File ?? '', registry: p.CredentialSpec.Registry ?? '' }] }
          : {}),
        ...(p.SELinuxContext
          ? {
              se_linux_context: [
                {
                  disable: !!p.SELinuxContext.Disable,
                  user: p.SELinuxContext.User ?? '',
                  role: p.SELinuxContext.Role ?? '',
                  type: p.SELinuxContext.Type ?? '',
                  level: p.SELinuxContext.Level ?? '',
                },
              ],
            }
          : {}),
      },
    ];
  }
  if (c.ReadOnly) m.read_only = true;
  if (c.Mounts?.length)
    m.mounts = (c.Mounts as Dict[]).map((v) => ({
      target: v.Target ?? '',
      source: v.Source ?? '',
      type: v.Type ?? '',
      read_only: !!v.ReadOnly,
      ...(v.BindOptions ? { bind_options: [v.BindOptions.Propagation ? { propagation: v.BindOptions.Propagation } : {}] } : {}),
      ...(v.VolumeOptions
        ? {
            volume_options: [
              {
                no_copy: !!v.VolumeOptions.NoCopy,
                labels: labelSet(v.VolumeOptions.Labels),
                ...(v.VolumeOptions.DriverConfig
                  ? {
                      ...(v.VolumeOptions.DriverConfig.Name ? { driver_name: v.VolumeOptions.DriverConfig.Name } : {}),
                      driver_options: v.VolumeOptions.DriverConfig.Options ?? {},
                    }
                  : {}),
              },
            ],
          }
        : {}),
      ...(v.TmpfsOptions
        ? { tmpfs_options: [{ size_bytes: v.TmpfsOptions.SizeBytes ?? 0, mode: (v.TmpfsOptions.Mode ?? 0) & 0o777 }] }
        : {}),
    })) as Obj[];
  if (c.StopSignal) m.stop_signal = c.StopSignal;
  if (c.StopGracePeriod !== undefined) m.stop_grace_period = shortDur(c.StopGracePeriod);
  if (c.Healthcheck) {
    const h = c.Healthcheck as Dict;
    m.healthcheck = [
      {
        ...(h.Test?.length ? { test: h.Test } : {}),
        interval: shortDur(h.Interval ?? 0),
        timeout: shortDur(h.Timeout ?? 0),
        start_period: shortDur(h.StartPeriod ?? 0),
        retries: h.Retries ?? 0,
      },
    ];
  }
  if (c.Hosts?.length) m.hosts = (c.Hosts as string[]).map((h) => ({ ip: h.split(' ')[0], host: h.split(' ')[1] }));
  if (c.DNSConfig) {
    const d = c.DNSConfig as Dict;
    m.dns_config = [
      {
        ...(d.Nameservers?.length ? { nameservers: d.Nameservers } : {}),
        ...(d.Search?.length ? { search: d.Search } : {}),
        ...(d.Options?.length ? { options: d.Options } : {}),
      },
    ];
  }
  const fileRefs = (refs: Dict[], kind: 'secret' | 'config') =>
    refs.map((v) => ({
      [`${kind}_id`]: kind === 'secret' ? v.SecretID : v.ConfigID,
      ...((kind === 'secret' ? v.SecretName : v.ConfigName) ? { [`${kind}_name`]: kind === 'secret' ? v.SecretName : v.ConfigName } : {}),
      ...(v.File
        ? {
            file_name: v.File.Name,
            ...(v.File.UID ? { file_uid: v.File.UID } : {}),
            ...(v.File.GID ? { file_gid: v.File.GID } : {}),
            file_mode: v.File.Mode ?? 0,
          }
        : {}),
    }));
  if (c.Secrets?.length) m.secrets = fileRefs(c.Secrets, 'secret');
  if (c.Configs?.length) m.configs = fileRefs(c.Configs, 'config');
  if (c.Isolation) m.isolation = c.Isolation;
  if (c.Sysctls && Object.keys(c.Sysctls).length) m.sysctl = c.Sysctls;
  if (c.CapabilityAdd?.length) m.cap_add = c.CapabilityAdd;
  if (c.CapabilityDrop?.length) m.cap_drop = c.CapabilityDrop;
  return m;
}

// ---- Create, update, delete ----

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * What the Docker client's ServiceCreate does with QueryRegistry (docker/docker client/service_create.go), which the
 * provider sets on create only: the image gets a tag (latest) when it has none, is pinned to the digest the
 * registry reports unless it has one, and the registry's platforms become Placement.Platforms.
 */
async function queryRegistry(engine: Engine, spec: Dict, auth: string): Promise<void> {
  const container = spec.TaskTemplate.ContainerSpec as Dict;
  let info: { Descriptor: { digest: string }; Platforms?: { architecture: string; os: string }[] };
  try {
    info = await engine.request('GET', `/distribution/${container.Image}/json`, undefined, { 'x-registry-auth': auth });
  } catch {
    return; // the client warns that the image could not be pinned, and creates the service anyway
  }
  if (!String(container.Image).includes('@')) container.Image = `${container.Image}@${info.Descriptor.digest}`;
  if (info.Platforms?.length) {
    spec.TaskTemplate.Placement ??= {};
    spec.TaskTemplate.Placement.Platforms = info.Platforms.map((p) => ({
      Architecture: p.architecture.toLowerCase() === 'arm' ? '' : p.architecture,
      OS: p.os,
    }));
  }
}

/** ServiceCreate and ServiceUpdate both tag an image that has neither tag nor digest with latest. */
function tagImage(spec: Dict): void {
  const container = spec.TaskTemplate.ContainerSpec as Dict;
  const image = String(container.Image);
  if (!image.includes('@') && !image.slice(image.lastIndexOf('/') + 1).includes(':')) container.Image = `${image}:latest`;
}

export async function createService(engine: Engine, d: Obj, auth: RegistryAuth): Promise<string> {
  const header = Buffer.from(JSON.stringify(auth)).toString('base64url');
  const spec = serviceSpec(d) as Dict;
  tagImage(spec);
  await queryRegistry(engine, spec, header);
  const { ID } = await engine.request<{ ID: string }>('POST', '/services/create', spec, { 'x-registry-auth': header });
  const converge = first(d.converge_config);
  if (converge) {
    try {
      await waitFor(engine, ID, converge, false);
    } catch (err) {
      await deleteService(engine, ID, d).catch(() => undefined); // as the provider: a service that did not converge is removed
      throw err;
    }
  }
  return ID;
}

export async function updateService(engine: Engine, id: string, d: Obj, auth: RegistryAuth): Promise<void> {
  const current = await engine.request<Dict>('GET', `/services/${id}`);
  const header = Buffer.from(JSON.stringify(auth)).toString('base64url');
  const spec = serviceSpec(d) as Dict;
  tagImage(spec);
  await engine.request('POST', `/services/${id}/update?version=${current.Version.Index}`, spec, { 'x-registry-auth': header });
  const converge = first(d.converge_config);
  if (converge) await waitFor(engine, id, converge, true);
}

/** The provider's Read: waits (at most 30 s) until the engine reports an endpoint mode; undefined when gone. */
export async function readService(engine: Engine, id: string, name: string): Promise<Obj | undefined> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const services = await engine.request<Dict[]>('GET', '/services');
    const found = services.find((s) => s.ID === id || s.Spec.Name === name);
    if (!found) return undefined;
    const service = await engine.request<Dict>('GET', `/services/${found.ID}`);
    if (service.Endpoint?.Spec?.Mode || service.Spec.EndpointSpec?.Mode) return flattenService(service);
    if (Date.now() > deadline) throw new Error(`service ${id} exposes no endpoint spec after 30 s`);
    await sleep(2000);
  }
}

export async function deleteService(engine: Engine, id: string, d: Obj): Promise<void> {
  const grace = str(first(first(d.task_spec)?.container_spec)?.stop_grace_period);
  const waitContainers = grace !== '' && grace !== '0s';
  const containers: string[] = [];
  if (waitContainers) {
    const tasks = await engine.request<Dict[]>('GET', `/tasks?filters=${encodeURIComponent(JSON.stringify({ service: [str(d.name)] }))}`);
    for (const t of tasks) {
      const cid = t.Status?.ContainerStatus?.ContainerID as string | undefined;
      if (cid?.trim() && t.Status.State !== 'shutdown') containers.push(cid);
    }
  }
  await engine.request('DELETE', `/services/${id}`);
  // The provider waits for each container to be removed (at most the grace period), then force-removes it; on
  // another node's engine the container is not found here, which the provider ignores too.
  for (const cid of containers) {
    const deadline = Date.now() + (parseGoDuration(grace) ?? 0) / 1e6;
    while (Date.now() < deadline && (await engine.find(`/containers/${cid}/json`))) await sleep(500);
    await engine.request('DELETE', `/containers/${cid}?v=true&force=true`).catch((err: unknown) => {
      if (!(err instanceof EngineError && (err.status === 404 || /already in progress/.test(err.message)))) throw err;
    });
  }
}

const STATES = [
  'new',
  'allocated',
  'pending',
  'assigned',
  'accepted',
  'preparing',
  'ready',
  'starting',
  'running',
  'complete',
  'shutdown',
  'failed',
  'rejected',
];
const rank = (s: string) => STATES.indexOf(s) + 1;

/**
 * converge_config: the provider's StateChangeConf (Delay, then polls at least 5 s apart until Timeout) around
 * replicatedConsoleLogUpdater (all replicas' slots running on active nodes) and, for updates, UpdateStatus.
 */
async function waitFor(engine: Engine, id: string, converge: Obj, updating: boolean): Promise<void> {
  const timeoutNs = parseGoDuration(str(converge.timeout)) ?? 180e9;
  const delayMs = updating ? 7000 : (parseGoDuration(str(converge.delay)) ?? 7e9) / 1e6;
  const deadline = Date.now() + timeoutNs / 1e6;
  await sleep(Math.min(delayMs, Math.max(0, deadline - Date.now())));
  let wait = 100;
  while (Date.now() < deadline) {
    const service = await engine.request<Dict>('GET', `/services/${id}`);
    const update = service.UpdateStatus?.State as string | undefined;
    let done: boolean | undefined;
    if (updating && update) {
      if (update === 'completed') return;
      if (update === 'rollback_completed') throw new Error(`service rollback completed: ${service.UpdateStatus.Message}`);
      if (update === 'paused') throw new Error(`service update paused: ${service.UpdateStatus.Message}`);
      if (update === 'rollback_paused') throw new Error(`service rollback paused: ${service.UpdateStatus.Message}`);
    }
    const replicas = service.Spec.Mode?.Replicated?.Replicas;
    if (replicas === undefined) throw new Error('no replica count');
    const tasks = await engine.request<Dict[]>(
      'GET',
      `/tasks?filters=${encodeURIComponent(JSON.stringify({ service: [id], 'desired-state': ['running'] }))}`,
    );
    const nodes = await engine.request<Dict[]>('GET', '/nodes');
    const active = new Set(nodes.filter((n) => n.Status.State !== 'down').map((n) => n.ID));
    const bySlot = new Map<number, Dict>();
    for (const t of tasks) {
      if (!rank(t.DesiredState) || !rank(t.Status.State)) continue;
      const existing = bySlot.get(t.Slot);
      if (
        existing &&
        (rank(existing.DesiredState) < rank(t.DesiredState) ||
          (rank(existing.DesiredState) === rank(t.DesiredState) && rank(existing.Status.State) <= rank(t.Status.State)))
      )
        continue;
      if (t.NodeID && !active.has(t.NodeID)) continue;
      bySlot.set(t.Slot, t);
    }
    const running = [...bySlot.values()].filter((t) => rank(t.DesiredState) <= rank('running') && t.Status.State === 'running').length;
    done = running === replicas;
    if (done && (!updating || update === undefined)) return;
    if (done && updating && service.UpdateStatus?.State === 'rollback_started')
      throw new Error(`service rollback completed: ${service.UpdateStatus.Message}`);
    // StateChangeConf backs off from 100 ms, doubling, to at most 10 s, and no faster than MinTimeout (5 s).
    wait = Math.min(Math.max(wait * 2, 5000), 10_000);
    await sleep(Math.min(wait, Math.max(0, deadline - Date.now())));
  }
  throw new Error(`Service with ID (${id}) did not converge after ${shortDur(timeoutNs)}`);
}
