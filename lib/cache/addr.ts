/** Listen addresses as the config writes them. */

/** `0.0.0.0:443`, `:5000`, `[::1]:5000` → host (undefined: every interface) and port. */
export function parseAddr(addr: string): { host: string | undefined; port: number } {
  const colon = addr.lastIndexOf(':');
  const host = addr.slice(0, colon).replace(/^\[|\]$/g, '');
  return { host: host === '' ? undefined : host, port: Number(addr.slice(colon + 1)) };
}
