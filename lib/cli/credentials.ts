/**
 * Credentials come from the environment only (a secret in argv shows up in `ps` and shell history):
 * `--username` (default $DTR_USERNAME) and the password or token from the variable named by `--password-env`
 * (default DTR_PASSWORD). Nothing here ever prints a secret.
 */
import { UsageError } from './errors';

export interface Credentials {
  readonly username: string;
  readonly password: string;
}

export const CREDENTIAL_FLAGS = {
  username: { type: 'string' },
  'password-env': { type: 'string' },
} as const;

/** Credentials if both parts are present; undefined when neither is; UsageError when only one is. */
export function readCredentials(flags: { username?: string; 'password-env'?: string }, env: NodeJS.ProcessEnv): Credentials | undefined {
  const passwordVar = flags['password-env'] ?? 'DTR_PASSWORD';
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(passwordVar)) {
    throw new UsageError(`--password-env takes the NAME of an environment variable (e.g. DTR_PASSWORD), not the password itself`);
  }
  const username = flags.username ?? env.DTR_USERNAME;
  const password = env[passwordVar];
  if (flags['password-env'] && password === undefined) {
    throw new UsageError(`--password-env ${passwordVar}: environment variable ${passwordVar} is not set`);
  }
  if (!username && !password) return undefined;
  if (!username) throw new UsageError(`${passwordVar} is set but no user name: pass --username or set DTR_USERNAME`);
  if (password === undefined || password === '') {
    throw new UsageError(`user "${username}" has no password: set ${passwordVar} (or name another variable with --password-env)`);
  }
  return { username, password };
}

export function basicAuthorization(credentials: Credentials): string {
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
}
