/**
 * The command line a deploy step runs to register a cache (e.g. a cdktf `local-exec` provisioner). Only the
 * *names* of the credential variables appear in it: the values stay in the deploy environment, out of the
 * synthesized JSON and the Terraform state.
 */

export interface RegisterCommandOptions {
  /** DTR base URL. */
  readonly dtr: string;
  /** The cache's name in DTR. */
  readonly name: string;
  /** The cache URL users reach. */
  readonly host: string;
  /** PEM CA file of DTR, as a path on the machine running the deploy. */
  readonly caFile?: string;
  /** Environment variable holding the DTR user name (default DTR_USERNAME). */
  readonly usernameEnv?: string;
  /** Environment variable holding the password or token (default DTR_PASSWORD). */
  readonly passwordEnv?: string;
  /** How to invoke the CLI, e.g. `node /opt/dtr-cache/dist/bin/dtr-cache.js`. */
  readonly cli: string;
  /** `remove` for a destroy-time provisioner. */
  readonly action?: 'register' | 'remove';
}

export function registerCommandLine(o: RegisterCommandOptions): string {
  const usernameEnv = o.usernameEnv ?? 'DTR_USERNAME';
  const args = [
    'register',
    '--dtr',
    o.dtr,
    '--name',
    o.name,
    ...(o.action === 'remove' ? ['--remove'] : ['--host', o.host]),
    ...(o.caFile ? ['--ca', o.caFile] : []),
    ...(o.passwordEnv ? ['--password-env', o.passwordEnv] : []),
  ];
  // The user name is read by the shell at run time so that it, too, stays out of the synthesized config.
  const user = usernameEnv === 'DTR_USERNAME' ? '' : ` --username "$${usernameEnv}"`;
  return `${o.cli} ${args.map(shellQuote).join(' ')}${user}`;
}

/** POSIX single-quote quoting. */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_./:@=+-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}
