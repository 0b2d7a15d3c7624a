/**
 * Registers a cache with DTR on deploy (`dtr-cache register`, idempotent) and removes it on destroy, from a
 * `terraform_data` local-exec. The command line comes from `registerCommandLine` (registration-command.ts), which puts only the names
 * of the credential variables in it: the values stay in the deploy environment, out of the synthesized JSON and state.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Construct, IConstruct } from 'constructs';
import { DataResource } from 'cdktf';
import { Service } from '@cdktf/provider-docker/lib/service';
import { registerCommandLine, shellQuote } from './registration-command';
import { deployPath } from './base/deploy-path';

export interface DtrRegistrationProps {
  /** DTR base URL, e.g. https://dtr.us.example.com. */
  readonly dtr: string;
  /** The cache's name in DTR (what users pick in their settings), e.g. region-asia. */
  readonly name: string;
  /** The cache URL users reach, https://host[:port]. */
  readonly cacheUrl: string;
  /** PEM CA file of DTR on the machine running the deploy. @default the system trust store */
  readonly caFile?: string;
  /** Environment variable holding a DTR admin's user name. @default "DTR_USERNAME" */
  readonly usernameEnv?: string;
  /** Environment variable holding the password or access token. @default "DTR_PASSWORD" */
  readonly passwordEnv?: string;
  /**
   * How the deploy machine runs the CLI.
   * @default this package's own CLI, run with node by its path (relative to the stack's directory); never a package
   * fetched by name, which would run with DTR admin credentials in its environment
   */
  readonly cli?: string;
  /**
   * The cache's service: registration runs only once it exists and, with its converge_config, has converged (every
   * replica running and healthy), so DTR never points users at a cache that does not answer.
   */
  readonly service: Service;
}

export class DtrRegistration extends Construct {
  /** The terraform_data that runs the register and remove steps. */
  public readonly resource: DataResource;

  constructor(scope: Construct, id: string, props: DtrRegistrationProps) {
    super(scope, id);
    const common = {
      dtr: props.dtr,
      name: props.name,
      host: props.cacheUrl,
      caFile: props.caFile,
      usernameEnv: props.usernameEnv,
      passwordEnv: props.passwordEnv,
      cli: props.cli ?? installedCli(this),
    };
    this.resource = new DataResource(this, 'Registration', {
      input: { dtr: props.dtr, name: props.name, host: props.cacheUrl },
      // A new DTR, name or URL replaces the resource: the old entry is removed, the new one registered.
      triggersReplace: { dtr: props.dtr, name: props.name, host: props.cacheUrl },
      dependsOn: [props.service],
      provisioners: [
        { type: 'local-exec', command: registerCommandLine({ ...common, action: 'register' }) },
        { type: 'local-exec', when: 'destroy', command: registerCommandLine({ ...common, action: 'remove' }) },
      ],
    });
  }
}

/**
 * `node <path>` of the dtr-cache CLI installed with these constructs: dist/bin/dtr-cache.js beside the compiled
 * dist/lib/constructs, or, run from source (ts-node: this repository's tests and examples), bin/dtr-cache.ts.
 */
export function installedCli(scope: IConstruct): string {
  const compiled = resolve(__dirname, '..', '..', 'bin', 'dtr-cache.js');
  if (existsSync(compiled)) return `node ${shellQuote(deployPath(scope, compiled))}`;
  const source = resolve(__dirname, '..', '..', 'bin', 'dtr-cache.ts');
  return `node -r ts-node/register/transpile-only ${shellQuote(deployPath(scope, source))}`;
}
