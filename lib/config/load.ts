/**
 * Reading config.yml: YAML text → registry-style environment overrides → schema. Returns a typed result
 * rather than throwing, so the CLI prints the errors (YAML path, problem, fix) and exits, with no stack trace.
 */
import { parse, stringify, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { CacheConfig, CacheConfigInput, configSchema } from './schema';

export type ConfigResult =
  | { readonly ok: true; readonly config: CacheConfig; readonly warnings: readonly string[] }
  | { readonly ok: false; readonly errors: readonly string[] };

/** `middleware.registry[0].options.upstreams` */
export function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((out, key) => (typeof key === 'number' ? `${out}[${key}]` : out ? `${out}.${String(key)}` : String(key)), '');
}

/** Parses and validates config.yml text. `env` supplies REGISTRY_* overrides (pass {} for none). */
export function loadConfig(text: string, env: NodeJS.ProcessEnv = {}, source = 'config.yml'): ConfigResult {
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (err) {
    const where = err instanceof YAMLParseError && err.linePos ? ` at line ${err.linePos[0].line}, column ${err.linePos[0].col}` : '';
    return { ok: false, errors: [`${source}: not valid YAML${where}: ${(err as Error).message.split('\n')[0]}`] };
  }
  if (raw === null || raw === undefined) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    return { ok: false, errors: [`${source}: must be a YAML mapping with version, storage, http and middleware`] };
  }
  const overridden = applyEnvOverrides(raw as Record<string, unknown>, env);
  return validateConfig(overridden.config, source, overridden.origins);
}

/** Validates an already-parsed config object (what constructs build). */
export function validateConfig(raw: unknown, source = 'config.yml', origins: ReadonlyMap<string, string> = new Map()): ConfigResult {
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    return {
      ok: false,
      errors: result.error.issues.map((issue) => {
        const path = formatPath(issue.path);
        const from = origins.get(path);
        return `${source}: ${path || '(top level)'}${from ? ` (from ${from})` : ''}: ${describeIssue(issue)}`;
      }),
    };
  }
  const warnings = registryOnlyPaths(raw).map(
    (path) => `${source}: ${path} is a registry option this cache does not use; it is ignored (remove it to silence this warning)`,
  );
  return { ok: true, config: result.data, warnings };
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') {
    return `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.join(', ')}; check the spelling against the registry configuration reference, or remove ${issue.keys.length > 1 ? 'them' : 'it'}`;
  }
  if (issue.code === 'invalid_value' && issue.values.length > 0 && !issue.message.includes('must')) {
    return `must be one of ${issue.values.map(String).join(', ')}`;
  }
  return issue.message;
}

/** Renders a config object as config.yml text, after validating it with the same schema the server uses. */
export function renderConfig(input: CacheConfigInput): string {
  const result = validateConfig(input);
  if (!result.ok) throw new Error(result.errors.join('\n'));
  return stringify(input, { lineWidth: 0 });
}

/**
 * Applies the registry's environment overrides: REGISTRY_HTTP_ADDR=:443 sets http.addr. Each value is read as
 * YAML, so `true` is a boolean and `[a, b]` a list. A numeric part indexes a list
 * (REGISTRY_MIDDLEWARE_REGISTRY_0_OPTIONS_BLOBTTL=24h).
 */
export function applyEnvOverrides(
  raw: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
): { config: Record<string, unknown>; origins: Map<string, string> } {
  const config = structuredClone(raw);
  const origins = new Map<string, string>();
  for (const [name, value] of Object.entries(env).sort(([a], [b]) => a.localeCompare(b))) {
    if (!name.startsWith('REGISTRY_') || value === undefined) continue;
    const parts = name.slice('REGISTRY_'.length).toLowerCase().split('_');
    let node: Record<string, unknown> = config;
    for (const part of parts.slice(0, -1)) {
      const next = node[part];
      if (next === null || typeof next !== 'object') node[part] = {};
      node = node[part] as Record<string, unknown>;
    }
    node[parts[parts.length - 1]] = readEnvValue(value);
    origins.set(formatPath(parts.map((p) => (/^\d+$/.test(p) ? Number(p) : p))), `environment variable ${name}`);
  }
  return { config, origins };
}

function readEnvValue(value: string): unknown {
  try {
    return parse(value) ?? value;
  } catch {
    return value;
  }
}

/** Paths present in `raw` that the schema accepts only for registry compatibility. */
function registryOnlyPaths(raw: unknown): string[] {
  const found: string[] = [];
  const walk = (schema: z.ZodType, value: unknown, path: PropertyKey[]): void => {
    if (value === undefined || value === null) return;
    if (schema.description === 'registry-only') {
      found.push(formatPath(path));
      return;
    }
    const def = (schema as unknown as { _zod: { def: Record<string, unknown> } })._zod.def;
    switch (def.type) {
      case 'optional':
      case 'default':
      case 'prefault':
      case 'nullable':
        return walk(def.innerType as z.ZodType, value, path);
      case 'pipe':
        return walk(def.in as z.ZodType, value, path);
      case 'array':
        if (Array.isArray(value)) value.forEach((item, i) => walk(def.element as z.ZodType, item, [...path, i]));
        return;
      case 'object':
        if (typeof value === 'object') {
          for (const [key, child] of Object.entries(def.shape as Record<string, z.ZodType>)) {
            walk(child, (value as Record<string, unknown>)[key], [...path, key]);
          }
        }
        return;
      default:
        return;
    }
  };
  walk(configSchema, raw, []);
  return found;
}
