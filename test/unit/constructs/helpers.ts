/** Shared helpers of the construct tests: fixed certificates, a fresh stack, the synthesized JSON, validation output. */
import { join, relative } from 'node:path';
import { IConstruct } from 'constructs';
import { TerraformStack, Testing } from 'cdktf';
import { DockerProvider } from '@cdktf/provider-docker/lib/provider';
import { DtrCacheSiteProps, SecretSource, SiteTlsOptions, StorageBackend } from '../../../lib/constructs';
import { isProjectPath, stackDirectory } from '../../../lib/constructs/base/deploy-path';

export const FIXTURES = join(__dirname, 'fixtures');
export const fixture = (name: string): string => join(FIXTURES, name);
/** The fixture certificate is valid until 2126; tests pin the clock for expiry checks. */
export const NOW = new Date('2026-11-26T00:00:00Z');

export function fixtureTls(): SiteTlsOptions {
  return { certificate: SecretSource.fromFile(fixture('cache.cert.pem')), key: SecretSource.fromFile(fixture('cache.key.pem')) };
}

/** The Asia site of the seed scenario (two NFS-backed replicas fetching from the US DTR), with `overrides`. */
export function asiaSiteProps(overrides: Partial<DtrCacheSiteProps> = {}): DtrCacheSiteProps {
  return {
    datacenter: 'asia',
    upstreams: ['https://dtr.us.example.com'],
    host: 'cache.asia.example.com',
    nodes: ['cache-asia-1', 'cache-asia-2'],
    storage: StorageBackend.nfs({ server: 'nfs.asia.example.com', clients: ['10.20.0.0/24'] }),
    tls: fixtureTls(),
    image: { reference: '127.0.0.1:5000/dtr-cache:0.1.0' },
    now: NOW,
    ...overrides,
  };
}

/** A stack in a test app; with a docker provider unless the construct under test brings its own. */
export function newStack(name = 'test', withProvider = true): TerraformStack {
  const stack = new TerraformStack(Testing.app(), name);
  if (withProvider) new DockerProvider(stack, 'docker', {});
  return stack;
}

/** Synthesized Terraform JSON of a stack (validations not run: see validationErrors). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type TfJson = Record<string, any>;
export function synth(stack: TerraformStack): TfJson {
  return JSON.parse(Testing.synth(stack)) as TfJson;
}

/** The bodies of all resources of `type`, metadata removed. */
export function resourcesOf(json: TfJson, type: string): TfJson[] {
  return Object.values((json.resource?.[type] ?? {}) as Record<string, TfJson>).map(({ '//': _m, ...rest }) => rest);
}

/** The resource of `type` whose name matches `pattern`. */
export function resourceNamed(json: TfJson, type: string, pattern: RegExp): TfJson {
  const found = resourcesOf(json, type).filter((r) => pattern.test(String(r.name)));
  if (found.length !== 1) throw new Error(`expected one ${type} named ${pattern}, found ${found.length}`);
  return found[0];
}

/** The single resource of `type`. */
export function onlyResource(json: TfJson, type: string): TfJson {
  const all = resourcesOf(json, type);
  if (all.length !== 1) throw new Error(`expected one ${type}, found ${all.length}`);
  return all[0];
}

/** Every validation message under `scope`, as `cdktf synth` would report them. */
export function validationErrors(scope: IConstruct): string[] {
  return scope.node.findAll().flatMap((c) => c.node.validate());
}

/** Annotations of `level` (warn or info) under `scope`. */
export function annotations(scope: IConstruct, level: 'warn' | 'info'): string[] {
  return scope.node.findAll().flatMap((c) => c.node.metadata.filter((m) => m.type === `@cdktf/${level}`).map((m) => String(m.data)));
}

/**
 * How a file read at apply appears as a Terraform function's argument in the synthesized JSON: a project file relative
 * to the directory Terraform runs in for `scope`, a machine file as given (deployPath's rule).
 */
export function synthesizedPath(scope: IConstruct, absolute: string): string {
  return isProjectPath(absolute) ? `join("/", [path.module, "${relative(stackDirectory(scope), absolute)}"])` : JSON.stringify(absolute);
}

/** The same path as a whole attribute's value. */
export function synthesizedValue(scope: IConstruct, absolute: string): string {
  return isProjectPath(absolute) ? `\${${synthesizedPath(scope, absolute)}}` : absolute;
}
