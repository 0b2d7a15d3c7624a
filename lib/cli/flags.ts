/** Flag validators shared by the operator commands: each error names the flag and the fix. */
import { UsageError } from './errors';

/** An http(s) URL with no path, query or credentials (a registry or DTR base URL). */
export function baseUrl(flag: string, value: string | undefined): URL {
  if (!value) throw new UsageError(`${flag} is required (e.g. ${flag} https://dtr.example.com)`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`${flag} "${value}" is not a URL: give scheme and host, e.g. https://dtr.example.com`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new UsageError(`${flag} "${value}" must start with https:// or http://`);
  if (url.username || url.password) throw new UsageError(`${flag} must not contain credentials: use --username and --password-env`);
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) {
    throw new UsageError(`${flag} "${value}" must be scheme://host[:port] without a path`);
  }
  return url;
}

/** A whole number in [min, max]. */
export function intFlag(flag: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UsageError(`${flag} must be a whole number from ${min} to ${max}, got "${value}"`);
  return n;
}
