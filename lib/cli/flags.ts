/**
 * Flag handling shared by the operator commands: node:util parseArgs errors turned into InputError (the
 * commands map it to a usage error, exit 2), and validators that name the flag and the fix.
 */
/** Bad flags or input files: the command prints the message and exits 2. */
export class InputError extends Error {}

/** A command that ran but failed (DTR refused, cache unreachable…): exit 1. */
export class CommandError extends Error {}

/** Runs node:util parseArgs (strict) and turns its errors (unknown flag, missing value) into InputError. */
export function parsing<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw new InputError(err instanceof Error ? err.message : String(err));
  }
}

/** An http(s) URL with no path, query or credentials (a registry or DTR base URL). */
export function baseUrl(flag: string, value: string | undefined): URL {
  if (!value) throw new InputError(`${flag} is required (e.g. ${flag} https://dtr.example.com)`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InputError(`${flag} "${value}" is not a URL: give scheme and host, e.g. https://dtr.example.com`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new InputError(`${flag} "${value}" must start with https:// or http://`);
  if (url.username || url.password) throw new InputError(`${flag} must not contain credentials: use --username and --password-env`);
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) {
    throw new InputError(`${flag} "${value}" must be scheme://host[:port] without a path`);
  }
  return url;
}

/** A whole number in [min, max]. */
export function intFlag(flag: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new InputError(`${flag} must be a whole number from ${min} to ${max}, got "${value}"`);
  return n;
}
