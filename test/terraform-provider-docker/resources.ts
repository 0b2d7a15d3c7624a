/**
 * The resources the stand-in serves, each as kreuzwerker/docker 3.6.2 creates, reads and deletes it. Read returns
 * the attributes the provider's Read sets (the others keep their planned or prior value, as the SDK's ResourceData
 * does), or undefined when the object is gone (Terraform then plans to create it again).
 */
import { Engine, EngineError } from './engine';
import { createService, deleteService, readService, RegistryAuth, updateService } from './service';
import { ObjectValue, Value } from './values';

type Obj = ObjectValue;
const str = (v: Value | undefined): string => (typeof v === 'string' ? v : '');
const list = (v: Value | undefined): Obj[] => (Array.isArray(v) ? (v as Obj[]) : []);
const labelMap = (v: Value | undefined): Record<string, string> => Object.fromEntries(list(v).map((l) => [str(l.label), str(l.value)]));
const labelSet = (m: Record<string, string> | null | undefined): Obj[] =>
  Object.entries(m ?? {}).map(([label, value]) => ({ label, value }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface ProviderContext {
  readonly engine: Engine;
  /** Registry credentials of the provider's registry_auth blocks, by registry address. */
  readonly auths: Record<string, RegistryAuth>;
}

export interface ResourceImpl {
  create(ctx: ProviderContext, d: Obj): Promise<string>;
  read(ctx: ProviderContext, id: string, d: Obj): Promise<Obj | undefined>;
  /** Absent: every change replaces (all attributes are ForceNew or computed). */
  update?(ctx: ProviderContext, id: string, d: Obj): Promise<void>;
  delete(ctx: ProviderContext, id: string, d: Obj): Promise<void>;
}

function notFoundIsGone(err: unknown): undefined {
  if (err instanceof EngineError && err.status === 404) return undefined;
  throw err;
}

/** The provider removes an object in use (a secret during a task's shutdown) by retrying until it is free. */
async function removeRetrying(engine: Engine, path: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await engine.request('DELETE', path);
      return;
    } catch (err) {
      if (err instanceof EngineError && err.status === 404) return;
      if (Date.now() > deadline || !(err instanceof EngineError && /in use/i.test(err.message))) throw err;
      await sleep(1000);
    }
  }
}

function registryAuthFor(ctx: ProviderContext, d: Obj): RegistryAuth {
  const auth = list(d.auth)[0];
  if (auth) {
    // authToServiceAuth: credentials only when both username and password are set.
    return str(auth.username) && str(auth.password)
      ? { username: str(auth.username), password: str(auth.password), serveraddress: str(auth.server_address) }
      : {};
  }
  const image = str(list(list(d.task_spec)[0]?.container_spec)[0]?.image).replace(/^https?:\/\//, '');
  const slash = image.indexOf('/');
  return (slash >= 0 && ctx.auths[image.slice(0, slash)]) || {};
}

const swarmObject = (kind: 'secrets' | 'configs'): ResourceImpl => ({
  async create(ctx, d) {
    const spec = {
      Name: str(d.name),
      Data: str(d.data),
      ...(kind === 'secrets' && list(d.labels).length ? { Labels: labelMap(d.labels) } : {}),
    };
    return (await ctx.engine.request<{ ID: string }>('POST', `/${kind}/create`, spec)).ID;
  },
  async read(ctx, id): Promise<Obj | undefined> {
    const found = await ctx.engine
      .request<{ ID: string; Spec: { Name: string; Data?: string } }>('GET', `/${kind}/${id}`)
      .catch(notFoundIsGone);
    if (!found) return undefined;
    // The engine never returns a secret's data; a config's it does, and the provider reads it back.
    return kind === 'secrets'
      ? { id: found.ID, name: found.Spec.Name }
      : { id: found.ID, name: found.Spec.Name, data: found.Spec.Data ?? '' };
  },
  async delete(ctx, id) {
    await removeRetrying(ctx.engine, `/${kind}/${id}`, 0);
  },
});

export const RESOURCES: Record<string, ResourceImpl> = {
  docker_secret: swarmObject('secrets'),
  docker_config: swarmObject('configs'),

  docker_service: {
    create: (ctx, d) => createService(ctx.engine, d, registryAuthFor(ctx, d)),
    read: (ctx, id, d) => readService(ctx.engine, id, str(d.name)),
    update: (ctx, id, d) => updateService(ctx.engine, id, d, registryAuthFor(ctx, d)),
    delete: (ctx, id, d) => deleteService(ctx.engine, id, d),
  },

  docker_network: {
    async create(ctx, d) {
      const ipamConfig = list(d.ipam_config).map((c) => ({
        Subnet: str(c.subnet),
        IPRange: str(c.ip_range),
        Gateway: str(c.gateway),
        AuxiliaryAddresses: (c.aux_address as Record<string, string>) ?? {},
      }));
      const ipam = d.ipam_driver || ipamConfig.length || (d.ipam_options && Object.keys(d.ipam_options).length);
      const spec = {
        Name: str(d.name),
        CheckDuplicate: d.check_duplicate === true,
        ...(list(d.labels).length ? { Labels: labelMap(d.labels) } : {}),
        ...(d.driver ? { Driver: d.driver } : {}),
        ...(d.options ? { Options: d.options } : {}),
        Internal: d.internal === true,
        Attachable: d.attachable === true,
        Ingress: d.ingress === true,
        ...(d.ipv6 === true ? { EnableIPv6: true } : {}),
        ...(ipam ? { IPAM: { Driver: str(d.ipam_driver), Config: ipamConfig, Options: d.ipam_options ?? {} } } : {}),
      };
      return (await ctx.engine.request<{ Id: string }>('POST', '/networks/create', spec)).Id;
    },
    async read(ctx, id) {
      type Net = {
        Id: string;
        Name: string;
        Labels: Record<string, string> | null;
        Driver: string;
        Internal: boolean;
        Attachable: boolean;
        Ingress: boolean;
        EnableIPv6: boolean;
        Scope: string;
        Options: Record<string, string> | null;
        IPAM: {
          Driver: string;
          Options: Record<string, string> | null;
          Config: { Subnet?: string; IPRange?: string; Gateway?: string; AuxiliaryAddresses?: Record<string, string> }[] | null;
        };
      };
      const n = await ctx.engine.request<Net>('GET', `/networks/${id}`).catch(notFoundIsGone);
      if (!n) return undefined;
      return {
        id: n.Id,
        name: n.Name,
        labels: labelSet(n.Labels),
        driver: n.Driver,
        internal: n.Internal,
        attachable: n.Attachable,
        ingress: n.Ingress,
        ipv6: n.EnableIPv6,
        ipam_driver: n.IPAM.Driver,
        ipam_options: n.IPAM.Options ?? {},
        scope: n.Scope,
        options: n.Options ?? {},
        ipam_config: (n.IPAM.Config ?? []).map((c) => ({
          ...(c.Subnet ? { subnet: c.Subnet } : {}),
          ...(c.IPRange ? { ip_range: c.IPRange } : {}),
          ...(c.Gateway ? { gateway: c.Gateway } : {}),
          ...(c.AuxiliaryAddresses && Object.keys(c.AuxiliaryAddresses).length ? { aux_address: c.AuxiliaryAddresses } : {}),
        })),
      };
    },
    async delete(ctx, id) {
      await removeRetrying(ctx.engine, `/networks/${id}`, 60_000);
    },
  },

  docker_volume: {
    async create(ctx, d) {
      const spec = {
        Name: str(d.name),
        ...(list(d.labels).length ? { Labels: labelMap(d.labels) } : {}),
        ...(d.driver ? { Driver: d.driver } : {}),
        ...(d.driver_opts ? { DriverOpts: d.driver_opts } : {}),
      };
      return (await ctx.engine.request<{ Name: string }>('POST', '/volumes/create', spec)).Name;
    },
    async read(ctx, id) {
      const v = await ctx.engine
        .request<{
          Name: string;
          Labels: Record<string, string> | null;
          Driver: string;
          Options: Record<string, string> | null;
          Mountpoint: string;
        }>('GET', `/volumes/${id}`)
        .catch(notFoundIsGone);
      if (!v) return undefined;
      return {
        id: v.Name,
        name: v.Name,
        labels: labelSet(v.Labels),
        driver: v.Driver,
        driver_opts: v.Options ?? {},
        mountpoint: v.Mountpoint,
      };
    },
    async delete(ctx, id) {
      // Swarm removes task containers lazily: the provider retries while the volume is in use.
      await removeRetrying(ctx.engine, `/volumes/${id}?force=true`, 30_000);
    },
  },

  docker_image: {
    async create(ctx, d) {
      if (list(d.build).length)
        throw new Error(
          'docker_image.build: the test stand-in does not build images; build and push the image in the test and reference it by name',
        );
      const name = str(d.name);
      const auth = ctx.auths[name.split('/')[0]] ?? {};
      const out = await ctx.engine.requestText('POST', `/images/create?fromImage=${encodeURIComponent(name)}`, undefined, {
        'x-registry-auth': Buffer.from(JSON.stringify(auth)).toString('base64url'),
      });
      const failed = out.split('\n').filter((l) => l.includes('"error"'));
      if (failed.length) throw new Error(`pulling ${name}: ${failed.join(' ')}`);
      const image = await ctx.engine.request<{ Id: string }>('GET', `/images/${encodeURIComponent(name)}/json`);
      return `${image.Id}${name}`;
    },
    async read(ctx, id, d) {
      const name = str(d.name);
      const image = await ctx.engine
        .request<{ Id: string; RepoDigests: string[] | null }>('GET', `/images/${encodeURIComponent(name)}/json`)
        .catch(notFoundIsGone);
      if (!image) return undefined;
      const repo = name.replace(/:[^:/]+$/, '');
      return {
        id,
        image_id: image.Id,
        repo_digest: (image.RepoDigests ?? []).find((r) => r.startsWith(`${repo}@`)) ?? (image.RepoDigests ?? [])[0] ?? '',
      };
    },
    async update() {
      // Only keep_locally, force_remove and timeouts change in place: nothing to do on the engine.
    },
    async delete(ctx, _id, d) {
      if (d.keep_locally === true) return;
      await ctx.engine
        .request('DELETE', `/images/${encodeURIComponent(str(d.name))}?force=${d.force_remove === true}`)
        .catch(notFoundIsGone);
    },
  },

  docker_registry_image: {
    async create() {
      throw new Error('docker_registry_image: the test stand-in does not push images; push the image in the test and reference it by name');
    },
    async read(_ctx, id) {
      return { id };
    },
    async delete() {},
  },
};
