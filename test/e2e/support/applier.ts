/**
 * Applies a synthesized cdktf stack (`cdk.tf.json`) to a swarm through the Docker Engine API, standing in for
 * `terraform apply` with the kreuzwerker docker provider, which cannot be downloaded here. It keeps its own state
 * (what it created, under which id) so a second apply updates and replaces like Terraform would, and destroy
 * removes everything, running destroy-time provisioners.
 *
 * It refuses, loudly, any block, resource type, field or function it does not understand.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { waitFor } from '../../support/tools';
import { Engine, EngineError, serviceTasks } from '../../terraform-provider-docker/engine';
import { evaluate, EvalContext, references, Value } from './expressions';
import { Fields } from './fields';
import { META_ARGUMENTS, networkSpec, secretSpec, serviceSpec, ServiceTranslation, volumeSpec } from './translate';

const RESOURCE_TYPES = [
  'docker_secret',
  'docker_config',
  'docker_volume',
  'docker_network',
  'docker_image',
  'docker_registry_image',
  'docker_service',
  'terraform_data',
  'null_resource',
] as const;
type ResourceType = (typeof RESOURCE_TYPES)[number];

/** One resource as synthesized: its address and raw (unevaluated) body. */
export interface SynthResource {
  readonly type: ResourceType;
  readonly name: string;
  readonly address: string;
  readonly body: Record<string, unknown>;
}

export interface StackDocument {
  readonly resources: SynthResource[];
  readonly outputs: Record<string, unknown>;
  /** The docker provider's `host`, when set: for the report; the applier talks to its own engine. */
  readonly dockerHost?: string;
  /** The provider's ca/cert/key_material (client bundle), unevaluated: a test builds its TLS engine from them. */
  readonly dockerTls?: { readonly ca: Value; readonly cert: Value; readonly key: Value };
}

interface StateEntry {
  readonly type: ResourceType;
  readonly id: string;
  /** Evaluated attributes (what references resolve to), plus `id`. */
  readonly attributes: Record<string, Value>;
  /** Raw provisioner blocks, evaluated at destroy time against `self`. */
  readonly provisioners: unknown[];
  /** Order in which it was created, for reverse-order destroy. */
  readonly order: number;
}

export type ApplierState = Record<string, StateEntry>;

export interface ApplyOptions {
  readonly engine: Engine;
  /** Image names of docker_image / docker_registry_image resources the test built and pushed itself. */
  readonly prebuiltImages?: readonly string[];
  /** Extra environment for local-exec provisioners (e.g. DOCKER_HOST of the test engine). */
  readonly env?: Record<string, string>;
  readonly log?: (line: string) => void;
  /** How long to wait for a service to converge (running, healthy), unless converge_config says otherwise. */
  readonly convergeTimeoutMs?: number;
}

export interface ApplyResult {
  readonly state: ApplierState;
  readonly outputs: Record<string, Value>;
  /** What happened per address: created, updated, replaced, unchanged, skipped, destroyed. */
  readonly actions: Record<string, string>;
}

/** Reads `cdk.tf.json`, refusing any top-level block the applier cannot apply faithfully. */
export function readStack(file: string): StackDocument {
  const doc = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  const top = new Fields(doc as Value, 'cdk.tf.json');
  top.ignore('//');
  const terraform = top.block('terraform');
  if (terraform) {
    terraform.raw('required_providers');
    const backend = terraform.block('backend');
    if (backend) {
      backend.raw('local');
      backend.done();
    }
    terraform.done();
  }
  let dockerHost: string | undefined;
  let dockerTls: StackDocument['dockerTls'];
  const providers = top.block('provider');
  if (providers) {
    for (const p of providers.blocks('docker')) {
      dockerHost = p.str('host');
      if (p.has('ca_material') || p.has('cert_material') || p.has('key_material')) {
        const [ca, cert, key] = ['ca_material', 'cert_material', 'key_material'].map((k) => p.raw(k));
        if (ca === undefined || cert === undefined || key === undefined)
          throw p.error('ca_material', 'needs cert_material and key_material too');
        dockerTls = { ca, cert, key };
      }
      if (p.has('registry_auth')) throw p.error('registry_auth', 'is not supported by the applier (the test registry needs no auth)');
      p.done();
    }
    for (const p of providers.blocks('null')) p.done();
    providers.done();
  }
  const resources: SynthResource[] = [];
  const byType = top.block('resource');
  if (byType) {
    const raw = doc.resource as Record<string, Record<string, Record<string, unknown>>>;
    for (const type of Object.keys(raw)) {
      if (!(RESOURCE_TYPES as readonly string[]).includes(type)) {
        throw new Error(`cdk.tf.json: resource type ${type} is not supported by the applier (it knows ${RESOURCE_TYPES.join(', ')})`);
      }
      byType.raw(type);
      for (const [name, body] of Object.entries(raw[type])) {
        for (const unsupported of ['count', 'for_each', 'connection']) {
          if (unsupported in body) throw new Error(`${type}.${name}.${unsupported}: not supported by the applier`);
        }
        resources.push({ type: type as ResourceType, name, address: `${type}.${name}`, body });
      }
    }
    byType.done();
  }
  const outputs = (top.raw('output') ?? {}) as Record<string, unknown>;
  top.done();
  return { resources: orderByDependencies(resources), outputs, dockerHost, dockerTls };
}

/** Topological order by `${...}` references and depends_on; a cycle or a reference to a missing resource throws. */
export function orderByDependencies(resources: SynthResource[]): SynthResource[] {
  const byAddress = new Map(resources.map((r) => [r.address, r]));
  const deps = new Map<string, Set<string>>();
  for (const r of resources) {
    const set = new Set<string>();
    const { provisioner, depends_on, ...rest } = r.body as { provisioner?: unknown; depends_on?: unknown };
    for (const ref of references(rest)) {
      if (ref[0] === 'self') throw new Error(`${r.address}: self is only allowed in provisioners`);
      const address = `${ref[0]}.${ref[1]}`;
      if (!byAddress.has(address)) throw new Error(`${r.address}: references ${ref.join('.')}, which is not a resource in this stack`);
      set.add(address);
    }
    void provisioner;
    for (const d of (depends_on as string[] | undefined) ?? []) {
      if (!byAddress.has(d)) throw new Error(`${r.address}.depends_on: ${d} is not a resource in this stack`);
      set.add(d);
    }
    deps.set(r.address, set);
  }
  const ordered: SynthResource[] = [];
  const mark = new Map<string, 'visiting' | 'done'>();
  const visit = (address: string, path: string[]) => {
    if (mark.get(address) === 'done') return;
    if (mark.get(address) === 'visiting') throw new Error(`dependency cycle: ${[...path, address].join(' -> ')}`);
    mark.set(address, 'visiting');
    for (const d of deps.get(address) ?? []) visit(d, [...path, address]);
    mark.set(address, 'done');
    ordered.push(byAddress.get(address) as SynthResource);
  };
  for (const r of resources) visit(r.address, []);
  return ordered;
}

/**
 * Applies the stack: creates what is new, updates services in place, replaces changed immutable objects
 * (create the new one, point dependents at it, then remove the old: secrets in use cannot be removed first),
 * removes what is gone, then waits until every service runs with passing health checks.
 */
export async function apply(stackFile: string, previous: ApplierState, options: ApplyOptions): Promise<ApplyResult> {
  const log = options.log ?? (() => undefined);
  const stack = readStack(stackFile);
  const baseDir = dirname(stackFile);
  const state: ApplierState = {};
  const actions: Record<string, string> = {};
  const retired: [string, StateEntry][] = [];
  const touchedServices: { name: string; id: string; translation: ServiceTranslation; rolling: boolean }[] = [];
  let order = Math.max(0, ...Object.values(previous).map((e) => e.order)) + 1;

  for (const r of stack.resources) {
    const { provisioner, ...config } = r.body as { provisioner?: unknown[] };
    const ctx: EvalContext = { baseDir, resolve: resolverFor(state) };
    const attrs = evaluate(stripMeta(config), ctx, r.address) as Record<string, Value>;
    const old = previous[r.address];
    const unchanged = old && JSON.stringify(stripComputed(old.attributes)) === JSON.stringify(attrs);
    if (unchanged && old.type === r.type && r.type !== 'docker_service') {
      state[r.address] = { ...old, provisioners: provisioner ?? [] };
      actions[r.address] = 'unchanged';
      continue;
    }
    const where = r.address;
    let id: string;
    switch (r.type) {
      case 'docker_secret':
      case 'docker_config': {
        const spec = secretSpec(attrs, where, r.type);
        const kind = r.type === 'docker_secret' ? 'secrets' : 'configs';
        id = (
          await options.engine
            .request<{ ID: string }>('POST', `/${kind}/create`, spec)
            .catch((err) => rethrowConflict(err, where, spec.Name))
        ).ID;
        break;
      }
      case 'docker_volume': {
        const spec = volumeSpec(attrs, where);
        if (old) throw new Error(`${where}: a changed volume would be replaced and its data lost; the applier refuses`);
        id = (await options.engine.request<{ Name: string }>('POST', '/volumes/create', spec)).Name;
        break;
      }
      case 'docker_network': {
        const spec = networkSpec(attrs, where);
        id = (
          await options.engine
            .request<{ Id: string }>('POST', '/networks/create', spec)
            .catch((err) => rethrowConflict(err, where, String(spec.Name)))
        ).Id;
        break;
      }
      case 'docker_image':
      case 'docker_registry_image': {
        const f = new Fields(attrs, where);
        f.ignore(...META_ARGUMENTS);
        const name = f.requiredStr('name');
        f.ignore('keep_locally', 'keep_remotely', 'triggers', 'pull_triggers', 'force_remove', 'insecure_skip_verify');
        if (!options.prebuiltImages?.includes(name)) {
          throw new Error(
            `${where}: builds or pushes ${name}; the applier only skips images the test pre-pushed (${options.prebuiltImages?.join(', ') || 'none'})`,
          );
        }
        if (f.has('build')) throw f.error('build', `the test pre-built ${name}; an image build in the stack is not applied`);
        f.done();
        id = name;
        actions[where] = `skipped (pre-pushed ${name})`;
        break;
      }
      case 'docker_service': {
        const translation = serviceSpec(attrs, where);
        const headers: Record<string, string> = translation.registryAuth
          ? { 'x-registry-auth': Buffer.from(JSON.stringify(translation.registryAuth)).toString('base64url') }
          : {};
        const existing = old && (await options.engine.find<ServiceInspect>(`/services/${old.id}`));
        let rolling = false;
        if (existing && unchanged) {
          id = existing.ID;
        } else if (existing) {
          await options.engine.request(
            'POST',
            `/services/${existing.ID}/update?version=${existing.Version.Index}`,
            translation.spec,
            headers,
          );
          id = existing.ID;
          rolling = rollsTasks(existing, await options.engine.request<ServiceInspect>('GET', `/services/${id}`));
        } else {
          id = (await options.engine.request<{ ID: string }>('POST', '/services/create', translation.spec, headers)).ID;
        }
        touchedServices.push({ name: String(translation.spec.Name), id, translation, rolling });
        break;
      }
      case 'terraform_data':
      case 'null_resource': {
        const f = new Fields(attrs, where);
        f.ignore(...META_ARGUMENTS);
        f.raw(r.type === 'terraform_data' ? 'input' : 'triggers');
        if (r.type === 'terraform_data') f.raw('triggers_replace');
        f.done();
        if (old) {
          await runProvisioners(old, 'destroy', options, baseDir, `${where} (replaced)`);
          delete previous[r.address];
        }
        id = `${r.type}-${Date.now()}-${order}`;
        break;
      }
    }
    const attributes: Record<string, Value> = { ...attrs, id, ...(r.type === 'terraform_data' ? { output: attrs.input ?? null } : {}) };
    state[r.address] = { type: r.type, id, attributes, provisioners: provisioner ?? [], order: order++ };
    if (r.type === 'terraform_data' || r.type === 'null_resource')
      await runProvisioners(state[r.address], 'create', options, baseDir, where);
    if (old && old.id !== id) retired.push([r.address, old]);
    actions[r.address] ??= !old ? 'created' : r.type === 'docker_service' ? (unchanged ? 'unchanged' : 'updated') : 'replaced';
    log(`${r.address}: ${actions[r.address]}`);
  }

  for (const s of touchedServices)
    await waitConverged(options.engine, s.name, s.translation, options.convergeTimeoutMs ?? 180_000, s.rolling);

  const gone = Object.entries(previous).filter(([address]) => !state[address]);
  for (const [address, entry] of [...retired, ...gone].sort((a, b) => b[1].order - a[1].order)) {
    await destroyOne(address, entry, options, dirname(stackFile));
    actions[address] = actions[address] ? `${actions[address]} (old removed)` : 'destroyed';
  }

  const ctx: EvalContext = { baseDir, resolve: resolverFor(state) };
  const outputs = Object.fromEntries(
    Object.entries(stack.outputs).map(([name, body]) => {
      const f = new Fields(body as Value, `output.${name}`);
      const value = f.raw('value');
      f.ignore('description', 'sensitive', 'depends_on', '//');
      f.done();
      return [name, evaluate(value, ctx, `output.${name}.value`)];
    }),
  );
  return { state, outputs, actions };
}

/** Removes everything in `state`, newest first, running destroy-time provisioners. */
export async function destroy(state: ApplierState, options: ApplyOptions, baseDir: string): Promise<void> {
  const errors: string[] = [];
  for (const [address, entry] of Object.entries(state).sort((a, b) => b[1].order - a[1].order)) {
    await destroyOne(address, entry, options, baseDir).catch((err: Error) => errors.push(`${address}: ${err.message}`));
  }
  if (errors.length) throw new Error(`destroy left things behind:\n${errors.join('\n')}`);
}

async function destroyOne(address: string, entry: StateEntry, options: ApplyOptions, baseDir: string): Promise<void> {
  const { engine } = options;
  const removeRetrying = async (path: string) => {
    // Objects in use (a secret by a task shutting down, a volume by its container) free up within seconds.
    const deadline = Date.now() + 60_000;
    for (let attempt = 0; ; attempt++) {
      try {
        await engine.request('DELETE', path);
        return;
      } catch (err) {
        if (err instanceof EngineError && err.status === 404) return;
        if (Date.now() > deadline || attempt > 120) throw err;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  };
  switch (entry.type) {
    case 'docker_service':
      await removeRetrying(`/services/${entry.id}`);
      await waitFor(`tasks of ${address} to stop`, async () => (await serviceTasks(engine, entry.id).catch(() => [])).length === 0, 60_000);
      break;
    case 'docker_secret':
      await removeRetrying(`/secrets/${entry.id}`);
      break;
    case 'docker_config':
      await removeRetrying(`/configs/${entry.id}`);
      break;
    case 'docker_network':
      await removeRetrying(`/networks/${entry.id}`);
      break;
    case 'docker_volume':
      // Swarm removes task containers lazily; the volume is free once they are gone.
      await removeRetrying(`/volumes/${entry.id}`);
      break;
    case 'terraform_data':
    case 'null_resource':
      await runProvisioners(entry, 'destroy', options, baseDir, address);
      break;
    case 'docker_image':
    case 'docker_registry_image':
      break; // pre-pushed by the test, which removes it
  }
  options.log?.(`${address}: destroyed`);
}

async function runProvisioners(
  entry: StateEntry,
  when: 'create' | 'destroy',
  options: ApplyOptions,
  baseDir: string,
  where: string,
): Promise<void> {
  const ctx: EvalContext = {
    baseDir,
    resolve: (path) => {
      if (path[0] !== 'self') throw new Error(`${where}: provisioners may only reference self, not ${path.join('.')}`);
      return walk(entry.attributes, path.slice(1), `${where}: self`);
    },
  };
  for (const [i, block] of entry.provisioners.entries()) {
    const outer = new Fields(block as Value, `${where}.provisioner[${i}]`);
    const raw = outer.raw('local-exec');
    if (raw === undefined) throw new Error(`${where}.provisioner[${i}]: only local-exec provisioners are supported`);
    outer.done();
    const rawFields = new Fields(raw, `${where}.provisioner[${i}].local-exec`);
    const runsWhen = rawFields.str('when') ?? 'create';
    if (runsWhen !== when) continue;
    const f = new Fields(evaluate(raw, ctx, `${where}.provisioner[${i}]`), `${where}.provisioner[${i}].local-exec`);
    f.ignore('when');
    const command = f.requiredStr('command');
    const environment = f.stringMap('environment') ?? {};
    const interpreter = f.strings('interpreter') ?? ['/bin/sh', '-c'];
    const cwd = f.str('working_dir') ?? baseDir;
    const onFailure = f.str('on_failure') ?? 'fail';
    f.done();
    const run = spawnSync(interpreter[0], [...interpreter.slice(1), command], {
      cwd,
      env: { ...process.env, ...options.env, ...environment },
      encoding: 'utf8',
      timeout: 120_000,
    });
    options.log?.(`${where}: local-exec (${when}) ${command} -> ${run.status}`);
    if ((run.status !== 0 || run.error) && onFailure !== 'continue') {
      throw new Error(`${where}: local-exec (${when}) failed: ${command}\n${run.error?.message ?? ''}${run.stderr}${run.stdout}`);
    }
  }
}

/** References `type.name.attr[...]` resolve against resources already applied in this run. */
function resolverFor(state: ApplierState) {
  return (path: readonly (string | number)[]): Value => {
    const [type, name, ...rest] = path;
    if (['var', 'local', 'data', 'module', 'path', 'self', 'count', 'each', 'terraform'].includes(String(type))) {
      throw new Error(`reference ${path.join('.')}: ${type}.* is not supported by the applier`);
    }
    const entry = state[`${type}.${name}`];
    if (!entry) throw new Error(`reference ${path.join('.')}: ${type}.${name} has not been applied (missing or out of order)`);
    return walk(entry.attributes, rest, `${type}.${name}`);
  };
}

function walk(value: Value, path: readonly (string | number)[], where: string): Value {
  let v: Value = value;
  for (const key of path) {
    // Nested blocks are synthesized as one-element lists or objects; Terraform indexes blocks with [0].
    if (Array.isArray(v) && typeof key === 'number') v = v[key];
    else if (v && typeof v === 'object' && !Array.isArray(v) && String(key) in v) v = (v as Record<string, Value>)[String(key)];
    else throw new Error(`reference ${where}.${path.join('.')}: no attribute ${key} (the applier knows the synthesized attributes and id)`);
    where = `${where}.${key}`;
  }
  return v;
}

function stripMeta(body: Record<string, unknown>): Record<string, unknown> {
  const { depends_on, lifecycle, ...rest } = body as Record<string, unknown> & { lifecycle?: Record<string, unknown> };
  void depends_on;
  if (lifecycle) {
    // create_before_destroy is how the applier replaces anyway; other lifecycle settings change what apply does.
    const f = new Fields(lifecycle as Value, 'lifecycle');
    f.ignore('create_before_destroy');
    f.done();
  }
  delete rest['//'];
  return rest;
}

function stripComputed(attributes: Record<string, Value>): Record<string, Value> {
  const { id, output, ...rest } = attributes;
  void id;
  void output;
  return rest;
}

function rethrowConflict(err: unknown, where: string, name: string): never {
  if (err instanceof EngineError && err.status === 409) {
    throw new Error(`${where}: an object named ${name} already exists; replacing it needs a new name (e.g. one derived from its content)`);
  }
  throw err;
}

interface ServiceInspect {
  ID: string;
  Version: { Index: number };
  Spec: { Mode?: { Replicated?: { Replicas?: number } }; TaskTemplate?: unknown; EndpointSpec?: unknown };
  UpdateStatus?: { State?: string; Message?: string };
}

/**
 * Whether an update replaces the service's tasks (a rolling update, reported in UpdateStatus): the engine rolls when the
 * task template or the published ports change. A change of the replica count alone only adds or removes tasks, and the
 * engine reports no update at all. Both specs are as the engine stores them, so its defaults compare equal.
 */
function rollsTasks(before: ServiceInspect, after: ServiceInspect): boolean {
  return (
    JSON.stringify([before.Spec.TaskTemplate, before.Spec.EndpointSpec]) !==
    JSON.stringify([after.Spec.TaskTemplate, after.Spec.EndpointSpec])
  );
}

/** Waits until the service's update (if any) completed and each desired task runs with a passing health check. */
async function waitConverged(
  engine: Engine,
  name: string,
  translation: ServiceTranslation,
  defaultTimeoutMs: number,
  rolling: boolean,
): Promise<void> {
  const timeoutMs = translation.converge?.timeoutMs ?? defaultTimeoutMs;
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    const service = await engine.request<ServiceInspect>('GET', `/services/${name}`);
    const tasks = (await serviceTasks(engine, name)).filter((t) => t.DesiredState === 'running');
    const failed = (await serviceTasks(engine, name)).filter((t) => ['failed', 'rejected'].includes(t.Status.State));
    const update = service.UpdateStatus?.State;
    if (update === 'rollback_completed' || update === 'paused')
      throw new Error(`service ${name}: update ${update}: ${service.UpdateStatus?.Message}`);
    const replicas = service.Spec.Mode?.Replicated?.Replicas;
    const health = await Promise.all(
      tasks.map(async (t) => {
        const cid = t.Status.ContainerStatus?.ContainerID;
        if (t.Status.State !== 'running' || !cid) return t.Status.State;
        const c = await engine.find<{ State: { Health?: { Status: string } } }>(`/containers/${cid}/json`);
        // A task with a health check turns running only once its container was healthy (the engine's swarm executor).
        if (!c) return 'running (on another node)';
        return c.State.Health?.Status ?? 'running (no healthcheck)';
      }),
    );
    last = `update ${update ?? 'none'}, tasks [${health.join(', ')}]${failed.length ? `, failed: ${failed.map((t) => t.Status.Err ?? t.Status.Message).join('; ')}` : ''}`;
    const ready = health.every((h) => ['healthy', 'running (no healthcheck)', 'running (on another node)'].includes(h));
    // After an update the engine reports UpdateStatus only once it starts rolling: wait for it to say completed.
    if (
      ready &&
      (replicas === undefined || tasks.length === replicas) &&
      (rolling ? update === 'completed' : update === undefined || update === 'completed')
    )
      return;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`service ${name} did not converge in ${timeoutMs} ms: ${last}`);
}
