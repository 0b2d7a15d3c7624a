/**
 * Errors as the distribution spec writes them: `{"errors":[{"code","message","detail"}]}` with a status.
 * A request the cache refuses is answered with one of these values, never with a stack trace.
 */
import type { ServerResponse } from 'node:http';

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
