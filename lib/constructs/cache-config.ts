/**
 * The cache's config.yml, rendered with lib/config's `renderConfig` (the schema the server parses), so what
 * synthesizes is what the server accepts. Mounted at /config.yml.
 *
 * Without secret values it is a `docker_config`. With any (a storage key, a password) it is a `docker_secret`
 * instead, so that the values are encrypted in the swarm and never in a plain config: the YAML is synthesized with a
 * placeholder for each value and Terraform splices in each value (read from its file, JSON-quoted, which is valid YAML)
 * at deploy time. The name carries a content hash so a change rolls the service.
 */
import { Construct } from 'constructs';
import { Fn, Token } from 'cdktf';
import { Config } from '@cdktf/provider-docker/lib/config';
import { Secret } from '@cdktf/provider-docker/lib/secret';
import { CacheConfigInput, validateConfig, renderConfig } from '../config';
import { base64Text, shortHash, terraformText, textHash } from './base/secret-source';
import { check } from './base/validation';
import { ConfigSecretValue } from './shared-storage';
import { managedLabels } from './base/labels';

/** log.level of the server. */
export enum LogLevel {
  DEBUG = 'debug',
  INFO = 'info',
  WARN = 'warn',
  ERROR = 'error',
}

/** Paths of the TLS certificate and key in the container. */
export interface TlsPaths {
  /** PEM certificate path, e.g. /run/secrets/cache.cert.pem. */
  readonly certificate: string;
  /** PEM key path, e.g. /run/secrets/cache.key.pem. */
  readonly key: string;
}

export interface CacheConfigProps {
  /** Upstream DTR (or next cache) URLs, https://host[:port]. */
  readonly upstreams: string[];
  /** The cache's external URL, https://host[:port] (http.host). */
  readonly host: string;
  /** The port the server listens on in the container (http.addr 0.0.0.0:<port>). */
  readonly containerPort: number;
  /** The `storage` section, from SharedStorage.storageSection. */
  readonly storage: Record<string, unknown>;
  /** Secret values to splice into the config at deploy time. @default none */
  readonly secretValues?: ConfigSecretValue[];
  /** http.tls certificate and key paths in the container. @default plain HTTP (not for production) */
  readonly tls?: TlsPaths;
  /** CA files of the upstream, paths in the container. @default none */
  readonly cas?: string[];
  /**
   * http.secret, identical on every replica. The registry signs upload state with it; a pull-only cache has no uploads,
   * so a value derived from the site's name and host is the default.
   * @default a hash of namePrefix and host
   */
  readonly httpSecret?: string;
  /** Remove content not pulled for this long (Go duration); enables storage.delete. @default kept until evicted by size */
  readonly blobTtl?: string;
  /** log.level. @default LogLevel.INFO */
  readonly logLevel?: LogLevel;
  /** Prefix of the swarm object's name. @default "dtr-cache" */
  readonly namePrefix?: string;
  /**
   * What the user wrote, per config.yml path: a message about `middleware.registry[0].options.blobttl` then reads
   * "DtrCacheSite: blobTtl: …". Paths mapped to undefined are not reported here: the caller reports that prop itself.
   * @default messages name the config.yml path
   */
  readonly propNames?: Readonly<Record<string, string | undefined>>;
}

/** The config.yml path of each setting a site takes from its props. */
export const CONFIG_PATHS = {
  upstreams: 'middleware.registry[0].options.upstreams',
  host: 'http.host',
  blobTtl: 'middleware.registry[0].options.blobttl',
  logLevel: 'log.level',
} as const;

/** Where the service mounts config.yml from. */
export interface ConfigMount {
  /** docker_config, or docker_secret when config.yml carries secret values. */
  readonly kind: 'config' | 'secret';
  /** ID of the docker_config or docker_secret. */
  readonly id: string;
  /** Its name (with content hash). */
  readonly name: string;
  /** Where the service mounts it: /config.yml. */
  readonly fileName: string;
}

export const CONFIG_PATH = '/config.yml';

export class CacheConfig extends Construct {
  /** config.yml as synthesized (secret values as placeholders). */
  public readonly text: string;
  /** The config object rendered. */
  public readonly input: CacheConfigInput;
  /** The docker_config, or the docker_secret when the config carries secret values. */
  public readonly resource: Config | Secret;
  /** How the service mounts config.yml. */
  public readonly mount: ConfigMount;

  constructor(scope: Construct, id: string, props: CacheConfigProps) {
    super(scope, id);
    const prefix = props.namePrefix ?? 'dtr-cache';
    const options: Record<string, unknown> = { upstreams: props.upstreams };
    if (props.cas?.length) options.cas = props.cas;
    if (props.blobTtl !== undefined) options.blobttl = props.blobTtl;
    this.input = {
      version: '0.1',
      log: { level: props.logLevel ?? 'info' },
      storage: { ...props.storage, delete: { enabled: true } },
      http: {
        addr: `0.0.0.0:${props.containerPort}`,
        host: props.host,
        secret: props.httpSecret ?? shortHash('http.secret', prefix, props.host),
        ...(props.tls ? { tls: { certificate: props.tls.certificate, key: props.tls.key } } : {}),
      },
      middleware: { registry: [{ name: 'downstream', options }] },
    } as CacheConfigInput;
    // Values that are Terraform expressions are checked with a stand-in; their own format is checked at apply.
    const checkable = withStandIns(this.input);
    const result = validateConfig(checkable.value, 'config.yml');
    // Invalid settings are reported by validation (with the YAML path) rather than thrown here, so synth lists them all.
    this.node.addValidation(check(() => (result.ok ? [] : result.errors.flatMap((e) => renamed(e, props.propNames ?? {})))));
    this.text = result.ok ? checkable.restore(renderConfig(checkable.value)) : '';
    const secretValues = props.secretValues ?? [];
    const text = terraformText(this, 'Text', this.text);
    if (secretValues.length === 0) {
      const name = `${prefix}-config-${textHash(text)}`;
      this.resource = new Config(this, 'Config', {
        name,
        data: base64Text(text),
        lifecycle: { createBeforeDestroy: true },
      });
      this.mount = { kind: 'config', id: this.resource.id, name, fileName: CONFIG_PATH };
    } else {
      // rawString: the YAML (and a plain-text value) may hold quotes or "${", which Terraform would otherwise interpret.
      const spliced = secretValues.reduce<string>(
        (text, { placeholder, source }) =>
          Fn.replace(
            text,
            placeholder,
            source.isFile ? Fn.jsonencode(Fn.trimspace(source.plain(this))) : Fn.rawString(JSON.stringify(source.plain(this))),
          ),
        // Raw, unless it holds expressions (a host variable), which Terraform must evaluate.
        Token.isUnresolved(text) ? text : Fn.rawString(text),
      );
      const name = `${prefix}-config-${textHash(text)}-${Fn.substr(Fn.sha256(spliced), 0, 8)}`;
      this.resource = new Secret(this, 'Secret', {
        name,
        data: Fn.base64encode(spliced),
        labels: managedLabels(this),
        lifecycle: { createBeforeDestroy: true },
      });
      this.mount = { kind: 'secret', id: this.resource.id, name, fileName: CONFIG_PATH };
    }
  }
}

/**
 * `value` with every Terraform expression in its strings replaced by a plausible stand-in, so that it can be validated
 * and rendered: a string that is one expression (an upstream URL variable) by a URL, an expression inside a string (the
 * host in https://<host>) by a host name. `restore` puts the expressions back into rendered text.
 */
function withStandIns<T>(value: T): { value: T; restore: (text: string) => string } {
  const found: [string, string][] = [];
  const standIn = (token: string, whole: boolean): string => {
    const name = `apply-time-${found.length}.invalid`;
    found.push([whole ? `https://${name}` : name, token]);
    return whole ? `https://${name}` : name;
  };
  const token = String.raw`[$#]\{TfToken\[[^\]]*\]\}`;
  const json = JSON.stringify(value)
    .replace(new RegExp(`"(${token})"`, 'g'), (_m, t: string) => `"${standIn(t, true)}"`)
    .replace(new RegExp(token, 'g'), (t) => standIn(t, false));
  return {
    value: JSON.parse(json) as T,
    restore: (text) => found.reduce((out, [name, t]) => out.split(name).join(t), text),
  };
}

/**
 * "config.yml: <path>: <problem>" as the user wrote it: "<prop name><rest of path>: <problem>" for a mapped path (none
 * for a path mapped to undefined), else "CacheConfig: config.yml: <path>: <problem>".
 */
function renamed(error: string, propNames: Readonly<Record<string, string | undefined>>): string[] {
  const path = /^config\.yml: ([^:]+): /.exec(error)?.[1] ?? '';
  const mapped = Object.keys(propNames).find((p) => path === p || path.startsWith(`${p}[`) || path.startsWith(`${p}.`));
  if (mapped === undefined) return [`CacheConfig: ${error}`];
  const name = propNames[mapped];
  return name === undefined ? [] : [`${name}${path.slice(mapped.length)}: ${error.slice(`config.yml: ${path}: `.length)}`];
}
