/**
 * Registry auth challenges (`WWW-Authenticate`) and the rule for where credentials may go: a Bearer realm is
 * trusted only at the origin (scheme, host and port) of the cache or of the configured DTR (a 2026 advisory:
 * credentials must only go to token realms of the upstream itself; another port of the same host may be another
 * service).
 */

export interface Challenge {
  readonly scheme: 'basic' | 'bearer';
  readonly params: Readonly<Record<string, string>>;
}

/** Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`; undefined for other schemes. */
export function parseChallenge(header: string | undefined): Challenge | undefined {
  if (!header) return undefined;
  const match = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!match) return undefined;
  const scheme = match[1].toLowerCase();
  if (scheme !== 'basic' && scheme !== 'bearer') return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g;
  for (let m = re.exec(match[2]); m; m = re.exec(match[2]))
    params[m[1].toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3];
  return { scheme, params };
}

/** Whether a token realm may receive the user's credentials: the same origin (scheme, host, port) as one of `trusted`. */
export function realmTrusted(realm: string, trusted: readonly URL[]): boolean {
  let url: URL;
  try {
    url = new URL(realm);
  } catch {
    return false;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return false;
  return trusted.some((t) => t.origin === url.origin);
}
