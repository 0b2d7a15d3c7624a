/**
 * Errors as the distribution spec writes them: `{"errors":[{"code","message","detail"}]}` with a status.
 * A request the cache refuses is answered with one of these values, never with a stack trace; `refusal` and
 * `unavailable` build the ones for an upstream's refusal and for an upstream out of reach.
 */
import type { ServerResponse } from 'node:http';
import { header, type UpstreamHeaders } from './upstream';

export type OciErrorCode =
  | 'BLOB_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'TAG_INVALID'
  | 'RANGE_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'NOT_FOUND'
  | 'UNAVAILABLE';

export interface OciError {
  readonly status: number;
  readonly code: OciErrorCode;
  readonly message: string;
  readonly detail?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
  /** The upstream's own error body, relayed unchanged instead of ours (with its content-type in `headers`). */
  readonly rawBody?: Buffer;
}

/** What a client asks for: the subject of an authorization and of a refusal. */
export interface AccessTarget {
  readonly kind: 'manifest' | 'blob';
  readonly name: string;
  /** A digest (`sha256:…`) or a tag. */
  readonly reference: string;
}

/** Response headers of an upstream refusal that the client needs to act on it. */
const RELAYED_HEADERS = ['www-authenticate', 'docker-distribution-api-version', 'content-type'];

export function ociError(
  status: number,
  code: OciErrorCode,
  message: string,
  detail?: unknown,
  headers?: Record<string, string>,
): OciError {
  return { status, code, message, detail, headers };
}

export function isOciError(value: unknown): value is OciError {
  return typeof value === 'object' && value !== null && 'status' in value && 'code' in value && 'message' in value;
}

export function errorBody(error: OciError): string {
  return JSON.stringify({ errors: [{ code: error.code, message: error.message, detail: error.detail ?? null }] });
}

/** Writes `error` unless the response already started (then the socket is cut, so the client sees a failure). */
export function sendError(res: ServerResponse, error: OciError, head = false): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = error.rawBody ?? errorBody(error);
  res.writeHead(error.status, {
    'content-type': 'application/json; charset=utf-8',
    ...error.headers,
    'content-length': Buffer.byteLength(body),
  });
  res.end(head ? undefined : body);
}

/** The OCI error for an upstream refusal, carrying the headers the client needs (WWW-Authenticate). */
export function refusal(status: number, headers: UpstreamHeaders, target: AccessTarget, rawBody?: Buffer): OciError {
  const relayed: Record<string, string> = {};
  for (const name of RELAYED_HEADERS) {
    const value = header(headers, name);
    if (value !== undefined) relayed[name] = value;
  }
  const [code, message]: [OciErrorCode, string] =
    status === 401
      ? ['UNAUTHORIZED', 'authentication required by the upstream registry']
      : status === 403
        ? ['DENIED', 'the upstream registry denied access']
        : status === 404
          ? [target.kind === 'manifest' ? 'MANIFEST_UNKNOWN' : 'BLOB_UNKNOWN', `${target.kind} unknown to the upstream registry`]
          : ['DENIED', `the upstream registry answered ${status}`];
  if (!rawBody || rawBody.length === 0) {
    delete relayed['content-type'];
    return ociError(status, code, message, { repository: target.name, reference: target.reference }, relayed);
  }
  return { status, code, message, headers: relayed, rawBody };
}

export function unavailable(reason: string): OciError {
  return ociError(503, 'UNAVAILABLE', 'the upstream registry is unreachable and this content cannot be authorized or fetched', {
    reason,
  });
}
