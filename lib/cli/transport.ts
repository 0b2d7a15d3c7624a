/**
 * The HTTP transport of the operator commands: an undici Agent with the TLS trust the flags ask for
 * (`--ca <file>` adds a CA, `--insecure` skips verification), and network errors rewritten as one-line
 * messages that say what to do (no stack traces).
 */
import { readFileSync } from 'node:fs';
import { Agent } from 'undici';
import { CommandError, UsageError } from './errors';

export const TLS_FLAGS = {
  ca: { type: 'string' },
  insecure: { type: 'boolean' },
} as const;

export function makeAgent(flags: { ca?: string; insecure?: boolean }): Agent {
  let ca: string | undefined;
  if (flags.ca) {
    try {
      ca = readFileSync(flags.ca, 'utf8');
    } catch (err) {
      throw new UsageError(`--ca ${flags.ca}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
    if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`--ca ${flags.ca}: not a PEM certificate file`);
  }
  return new Agent({
    connect: { ...(ca ? { ca } : {}), rejectUnauthorized: !flags.insecure },
    connectTimeout: 10_000,
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
  });
}

const NETWORK_CODES: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  ECONNRESET: 'connection reset',
  ETIMEDOUT: 'timed out',
  EHOSTUNREACH: 'host unreachable',
  UND_ERR_CONNECT_TIMEOUT: 'connect timed out',
  UND_ERR_HEADERS_TIMEOUT: 'no response (headers timeout)',
  UND_ERR_BODY_TIMEOUT: 'response stalled (body timeout)',
  UND_ERR_SOCKET: 'connection closed',
};

const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** A CommandError describing why `url` could not be reached. */
export function unreachable(url: URL | string, err: unknown): CommandError {
  const where = typeof url === 'string' ? url : url.origin;
  const code = (err as { code?: string; cause?: { code?: string } })?.code ?? (err as { cause?: { code?: string } })?.cause?.code;
  if (code && TLS_CODES.has(code)) {
    return new CommandError(`cannot reach ${where}: its TLS certificate is not trusted (${code}): pass --ca <its CA file>, or --insecure`);
  }
  if (code === 'EPROTO' || code === 'ERR_SSL_WRONG_VERSION_NUMBER') {
    return new CommandError(`cannot reach ${where}: TLS handshake failed (${code}): check http:// versus https://`);
  }
  const reason = (code && NETWORK_CODES[code]) ?? (err instanceof Error ? err.message : String(err));
  return new CommandError(`cannot reach ${where}: ${reason}${code && NETWORK_CODES[code] ? ` (${code})` : ''}`);
}
