/**
 * The tfplugin5.Provider service: schemas, validation, configuration, the resource lifecycle (plan as the SDK
 * does, apply and read through the resources' Engine API implementations), and the data sources' reads.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { Engine } from './engine';
import { normalizeBlocks, Path, planResource } from './planner';
import { ProviderContext, RESOURCES } from './resources';
import { dataSourceType, objectType, resourceType, SCHEMAS, wireBlock, withImplicit } from './schema';
import { readRegistryImage } from './registry-image-data';
import { RegistryAuth } from './service';
import { decodeValue, encodeValue, ObjectValue, UNKNOWN, Value } from './values';

interface DynamicValue {
  msgpack?: Buffer;
  json?: Buffer;
}
type Request = Record<string, unknown>;
interface Diagnostic {
  severity: 'ERROR' | 'WARNING';
  summary: string;
  detail?: string;
  attribute?: { steps: { attribute_name?: string; element_key_int?: number }[] };
}

/** Attributes in the provider's schema that the stand-in does not implement: setting one fails validation. */
const NOT_IMPLEMENTED: Record<string, string[][]> = {
  provider: [['context'], ['cert_path']],
  docker_service: [
    ['task_spec', 'container_spec', 'privileges'],
    ['task_spec', 'resources', 'reservation', 'generic_resources'],
    ['mode', 'global'],
  ],
  docker_image: [['build'], ['platform'], ['triggers']],
};

/** The data sources the stand-in reads, by type (each as its ReadContext in the provider). */
const DATA_SOURCES: Record<string, (ctx: ProviderContext, config: ObjectValue) => Promise<ObjectValue>> = {
  docker_registry_image: readRegistryImage,
};

function decode(v: DynamicValue | undefined): Value {
  if (!v) return null;
  if (v.msgpack && v.msgpack.length) return decodeValue(v.msgpack);
  if (v.json && v.json.length) return JSON.parse(v.json.toString()) as Value;
  return null;
}

const error = (summary: string, detail?: string, path?: Path): Diagnostic => ({
  severity: 'ERROR',
  summary,
  detail,
  attribute: path && { steps: path.map((p) => (typeof p === 'number' ? { element_key_int: p } : { attribute_name: p })) },
});

/** Unknown values resolved to null, for the state after apply (what the SDK's zero values become). */
function known(v: Value): Value {
  if (v === UNKNOWN) return null;
  if (Array.isArray(v)) return v.map(known);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, known(x)]));
  return v;
}

function setAt(value: Value, path: string[]): boolean {
  if (value === null || value === undefined || value === UNKNOWN) return false;
  if (Array.isArray(value)) return value.some((v) => setAt(v, path));
  if (path.length === 0) return !(value === false || (Array.isArray(value) && value.length === 0));
  return setAt((value as ObjectValue)[path[0]] ?? null, path.slice(1));
}

export class ProviderService {
  private ctx?: ProviderContext;

  constructor(private readonly stop: () => void) {}

  handlers(): grpc.UntypedServiceImplementation {
    const unary =
      (fn: (req: Request) => Promise<Record<string, unknown>> | Record<string, unknown>) =>
      (call: grpc.ServerUnaryCall<Request, unknown>, done: grpc.sendUnaryData<unknown>) => {
        Promise.resolve()
          .then(() => fn(call.request))
          .then(
            (res) => done(null, res),
            (err: Error) => done(null, { diagnostics: [error(err.message)] }),
          );
      };
    return {
      GetSchema: unary(() => this.getSchema()),
      PrepareProviderConfig: unary((req) => ({
        prepared_config: req.config,
        diagnostics: this.validate('provider', decode(req.config as DynamicValue)),
      })),
      ValidateResourceTypeConfig: unary((req) => ({
        diagnostics: this.validate(String(req.type_name), decode(req.config as DynamicValue)),
      })),
      UpgradeResourceState: unary((req) => this.upgrade(req)),
      Configure: unary((req) => this.configure(decode(req.config as DynamicValue) as ObjectValue)),
      ReadResource: unary((req) => this.read(req)),
      PlanResourceChange: unary((req) => this.plan(req)),
      ApplyResourceChange: unary((req) => this.apply(req)),
      ValidateDataSourceConfig: unary((req) => ({
        diagnostics: this.validate(String(req.type_name), decode(req.config as DynamicValue)),
      })),
      ReadDataSource: unary((req) => this.readDataSource(req)),
      Stop: unary(() => {
        setImmediate(this.stop);
        return { Error: '' };
      }),
    };
  }

  private getSchema(): Record<string, unknown> {
    return {
      provider: { version: 0, block: wireBlock(withImplicit(SCHEMAS.provider, false)) },
      resource_schemas: Object.fromEntries(
        Object.entries(SCHEMAS.resources).map(([type, r]) => [
          type,
          { version: r.version, block: wireBlock(withImplicit(r, true), r.version) },
        ]),
      ),
      data_source_schemas: Object.fromEntries(
        Object.entries(SCHEMAS.dataSources).map(([type, r]) => [
          type,
          { version: r.version, block: wireBlock(withImplicit(r, true), r.version) },
        ]),
      ),
      diagnostics: [],
      server_capabilities: { plan_destroy: false, get_provider_schema_optional: false },
    };
  }

  private validate(type: string, config: Value): Diagnostic[] {
    return (NOT_IMPLEMENTED[type] ?? [])
      .filter((path) => setAt(config, path))
      .map((path) =>
        error(
          `${type}: ${path.join('.')} is not implemented by the test stand-in of kreuzwerker/docker`,
          'The real provider accepts it; teach test/terraform-provider-docker what it does before a test relies on it.',
          path,
        ),
      );
  }

  private upgrade(req: Request): Record<string, unknown> {
    const type = String(req.type_name);
    const version = Number(req.version);
    if (version !== SCHEMAS.resources[type]?.version)
      throw new Error(`${type}: state at schema version ${version}; the stand-in has no upgrader to ${SCHEMAS.resources[type]?.version}`);
    const raw = (req.raw_state as { json?: Buffer })?.json;
    if (!raw?.length) throw new Error(`${type}: only JSON state can be upgraded`);
    const attrs = resourceType(type);
    return { upgraded_state: { msgpack: encodeValue(JSON.parse(raw.toString()) as Value, objectType(attrs)) }, diagnostics: [] };
  }

  private async configure(config: ObjectValue): Promise<Record<string, unknown>> {
    const host = (config.host as string | null) || process.env.DOCKER_HOST || 'unix:///var/run/docker.sock';
    const material = (k: string, env: string) => (config[k] as string | null) || process.env[env] || '';
    const [ca, cert, key] = [
      material('ca_material', 'DOCKER_CA_MATERIAL'),
      material('cert_material', 'DOCKER_CERT_MATERIAL'),
      material('key_material', 'DOCKER_KEY_MATERIAL'),
    ];
    if (host.startsWith('ssh://'))
      throw new Error(
        `host ${host}: the test stand-in does not dial over ssh (ssh_opts ${JSON.stringify(config.ssh_opts ?? [])}); tests reach engines on unix:// or tcp:// with TLS`,
      );
    if ((ca || cert || key) && !(ca && cert && key)) throw new Error('ca_material, cert_material and key_material must be given together');
    const engine = Engine.at(host, ca ? { ca, cert, key } : undefined);
    if (config.disable_docker_daemon_check !== true) {
      await engine.requestText('GET', '/_ping').catch((err: Error) => {
        throw new Error(
          `Error pinging Docker server, please make sure that ${host} is reachable and has a  '_ping' endpoint. Error: ${err.message}`,
        );
      });
    }
    this.ctx = { engine, auths: registryAuths(config.registry_auth as ObjectValue[] | null) };
    return { diagnostics: [] };
  }

  private context(): ProviderContext {
    if (!this.ctx) throw new Error('the provider was not configured');
    return this.ctx;
  }

  private async read(req: Request): Promise<Record<string, unknown>> {
    const type = String(req.type_name);
    const attrs = resourceType(type);
    const state = decode(req.current_state as DynamicValue) as ObjectValue;
    const found = await RESOURCES[type].read(this.context(), String(state.id), state);
    const next = found ? normalizeBlocks(attrs, { ...state, ...found }) : null;
    return { new_state: { msgpack: encodeValue(next, objectType(attrs)) }, private: req.private, diagnostics: [] };
  }

  /** The SDK's ReadDataSource: the config with its defaults applied, then the data source's Read on it. */
  private async readDataSource(req: Request): Promise<Record<string, unknown>> {
    const type = String(req.type_name);
    const attrs = dataSourceType(type);
    const read = DATA_SOURCES[type];
    if (!read) throw new Error(`data source ${type} is not implemented by the test stand-in of kreuzwerker/docker`);
    const { planned } = planResource(attrs, null, normalizeBlocks(attrs, decode(req.config as DynamicValue) as ObjectValue));
    const state = await read(this.context(), known(planned) as ObjectValue);
    return { state: { msgpack: encodeValue(normalizeBlocks(attrs, state), objectType(attrs)) }, diagnostics: [] };
  }

  private plan(req: Request): Record<string, unknown> {
    const type = String(req.type_name);
    const attrs = resourceType(type);
    const proposed = decode(req.proposed_new_state as DynamicValue);
    if (proposed === null) return { planned_state: req.proposed_new_state, requires_replace: [], legacy_type_system: true };
    const prior = decode(req.prior_state as DynamicValue) as ObjectValue | null;
    const config = decode(req.config as DynamicValue) as ObjectValue;
    const { planned, requiresReplace } = planResource(attrs, prior && normalizeBlocks(attrs, prior), normalizeBlocks(attrs, config));
    return {
      planned_state: { msgpack: encodeValue(normalizeBlocks(attrs, planned), objectType(attrs)) },
      requires_replace: requiresReplace.map((path) => ({
        steps: path.map((p) => (typeof p === 'number' ? { element_key_int: p } : { attribute_name: p })),
      })),
      planned_private: req.prior_private,
      legacy_type_system: true,
      diagnostics: [],
    };
  }

  private async apply(req: Request): Promise<Record<string, unknown>> {
    const type = String(req.type_name);
    const attrs = resourceType(type);
    const impl = RESOURCES[type];
    const ctx = this.context();
    const prior = decode(req.prior_state as DynamicValue) as ObjectValue | null;
    const planned = decode(req.planned_state as DynamicValue) as ObjectValue | null;
    const respond = (state: ObjectValue | null) => ({
      new_state: { msgpack: encodeValue(state && normalizeBlocks(attrs, state), objectType(attrs)) },
      private: req.planned_private,
      legacy_type_system: true,
      diagnostics: [],
    });
    if (!planned) {
      await impl.delete(ctx, String(prior!.id), prior!);
      return respond(null);
    }
    const d = known(planned) as ObjectValue;
    let id: string;
    if (!prior) id = await impl.create(ctx, d);
    else {
      id = String(prior.id);
      if (!impl.update) throw new Error(`${type}: every attribute forces replacement; an in-place update was planned`);
      await impl.update(ctx, id, d);
    }
    const read = await impl.read(ctx, id, { ...d, id });
    if (!read) throw new Error(`${type} ${id}: gone right after it was applied`);
    return respond({ ...d, id, ...read });
  }
}

/**
 * The provider's registry_auth blocks (providerSetToRegistryAuth), by registry host: the address with https:// unless
 * it names http://; credentials given inline, dummy ones with auth_disabled, or read from a docker config file.
 */
function registryAuths(blocks: ObjectValue[] | null): Record<string, RegistryAuth> {
  const out: Record<string, RegistryAuth> = {};
  for (const b of blocks ?? []) {
    // normalizeRegistryAddress and convertToHostname.
    const serveraddress = /^https?:\/\//.test(String(b.address)) ? String(b.address) : `https://${String(b.address)}`;
    const address = serveraddress.replace(/^https?:\/\//, '').split('/')[0];
    const disabled = b.auth_disabled === true;
    const username = disabled ? 'username' : (b.username as string | null) || process.env.DOCKER_REGISTRY_USER || '';
    const password = disabled ? 'password' : (b.password as string | null) || process.env.DOCKER_REGISTRY_PASS || '';
    if (username) {
      out[address] = { username, password, serveraddress };
      continue;
    }
    const file = ((b.config_file as string | null) || process.env.DOCKER_CONFIG || '~/.docker/config.json').replace(/^~/, homedir());
    const content = (b.config_file_content as string | null) || (existsSync(file) ? readFileSync(file, 'utf8') : '');
    const entry = content ? (JSON.parse(content) as { auths?: Record<string, { auth?: string }> }).auths?.[address] : undefined;
    if (!entry?.auth) throw new Error(`registry_auth ${address}: no credentials (username/password, or an auths entry in ${file})`);
    const [user, ...pass] = Buffer.from(entry.auth, 'base64').toString().split(':');
    out[address] = { username: user, password: pass.join(':'), serveraddress };
  }
  return out;
}
