/**
 * How a site reaches its datacenter's swarm. One object feeds both the docker provider block and the environment
 * of every local-exec the site runs, so the two can never point at different swarms.
 *
 * Key material is never embedded: a client bundle's files are read by Terraform at deploy time (`file()`), and the
 * local-exec gets DOCKER_CERT_PATH (a directory), not the keys. Provider configuration is not stored in Terraform
 * state; the plan file does hold it, so keep plan files as private as the bundle itself.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { IConstruct } from 'constructs';
import { Fn } from 'cdktf';
import { deployPath } from './deploy-path';
import { DockerProviderConfig } from '@cdktf/provider-docker/lib/provider';

/** Options of a UCP client bundle connection. */
export interface ClientBundleOptions {
  /** Directory of the unpacked client bundle (holds ca.pem, cert.pem, key.pem and env.sh). */
  readonly directory: string;
  /**
   * The swarm's Docker API endpoint, e.g. tcp://ucp.asia.example.com:443.
   * @default the DOCKER_HOST exported by the bundle's env.sh
   */
  readonly host?: string;
}

/** Options of an SSH connection to a manager node. */
export interface SshConnectionOptions {
  /** The manager node's host name or address. */
  readonly host: string;
  /** The SSH user, who must be able to run docker on the manager. */
  readonly user: string;
  /**
   * SSH port.
   * @default 22
   */
  readonly port?: number;
  /**
   * Extra ssh options for the provider (ssh_opts), e.g. ["-o", "StrictHostKeyChecking=yes"]. The Docker CLI run by
   * local-exec has no such flag: put the same options in ~/.ssh/config for the manager host.
   * @default none
   */
  readonly sshOpts?: string[];
}

export type SwarmConnectionKind = 'local-socket' | 'client-bundle' | 'ssh';

export class SwarmConnection {
  /** The local Docker socket: for a cdktf deploy run on a manager node. */
  public static localSocket(socket = '/var/run/docker.sock'): SwarmConnection {
    return new SwarmConnection('local-socket', `unix://${socket}`, undefined, []);
  }

  /** A UCP client bundle: TLS client certificate for the swarm's API. */
  public static clientBundle(options: ClientBundleOptions): SwarmConnection {
    const directory = resolve(options.directory);
    const host = options.host ?? readBundleHost(directory);
    if (!host) {
      throw new Error(
        `SwarmConnection.clientBundle: no host: ${join(directory, 'env.sh')} has no DOCKER_HOST export; pass host, e.g. tcp://ucp.example.com:443`,
      );
    }
    return new SwarmConnection('client-bundle', host, directory, []);
  }

  /** SSH to a manager node (ssh://user@manager[:port]); the Docker CLI and the provider both use the ssh binary. */
  public static ssh(options: SshConnectionOptions): SwarmConnection {
    const port = options.port && options.port !== 22 ? `:${options.port}` : '';
    return new SwarmConnection('ssh', `ssh://${options.user}@${options.host}${port}`, undefined, options.sshOpts ?? []);
  }

  private constructor(
    public readonly kind: SwarmConnectionKind,
    /** The Docker host URL, as DOCKER_HOST takes it. */
    public readonly host: string,
    /** The client bundle directory, for kind client-bundle. */
    public readonly certDirectory: string | undefined,
    private readonly sshOpts: readonly string[],
  ) {}

  /**
   * The docker provider configuration in `scope`'s stack: host, and for a bundle the PEM files read at deploy time
   * (paths relative to the stack's directory).
   */
  public providerConfig(scope: IConstruct): DockerProviderConfig {
    if (this.certDirectory !== undefined) {
      const file = (name: string) => Fn.file(deployPath(scope, join(this.certDirectory ?? '', name)));
      return { host: this.host, caMaterial: file('ca.pem'), certMaterial: file('cert.pem'), keyMaterial: file('key.pem') };
    }
    return this.sshOpts.length > 0 ? { host: this.host, sshOpts: [...this.sshOpts] } : { host: this.host };
  }

  /**
   * The environment a local-exec in `scope`'s stack needs to run the Docker CLI against the same swarm (a bundle's
   * DOCKER_CERT_PATH relative to the stack's directory, where Terraform runs local-exec).
   */
  public environment(scope: IConstruct): Record<string, string> {
    const env: Record<string, string> = { DOCKER_HOST: this.host };
    if (this.certDirectory !== undefined) {
      env.DOCKER_TLS_VERIFY = '1';
      env.DOCKER_CERT_PATH = deployPath(scope, this.certDirectory);
    }
    return env;
  }

  /**
   * The same environment for a destroy-time local-exec, which may refer to `self` only: each variable read from
   * `self.input.environment`, where the resource's `input` holds `environment(scope)`.
   */
  public static fromSelfInput(environment: Record<string, string>): Record<string, string> {
    return Object.fromEntries(Object.keys(environment).map((name) => [name, `\${self.input.environment.${name}}`]));
  }

  /** One line for summaries: never includes key material; a bundle's directory relative to the current one. */
  public describe(): string {
    return this.kind === 'client-bundle'
      ? `client bundle ${relative(process.cwd(), this.certDirectory ?? '') || '.'} → ${this.host}`
      : `${this.kind} ${this.host}`;
  }
}

/** DOCKER_HOST from a bundle's env.sh (`export DOCKER_HOST=tcp://…`), if present. */
function readBundleHost(directory: string): string | undefined {
  const envFile = join(directory, 'env.sh');
  if (!existsSync(envFile)) return undefined;
  const match = /^\s*(?:export\s+)?DOCKER_HOST=["']?([^"'\s]+)/m.exec(readFileSync(envFile, 'utf8'));
  return match?.[1];
}
