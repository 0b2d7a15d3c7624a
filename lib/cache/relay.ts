/**
 * Passing upstream answers through to the client (GET /v2/, tags/list, refusals), and reading the small
 * upstream bodies the cache must hold whole (manifests, error bodies) with a hard size bound.
 */
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream';
import type { UpstreamHeaders } from './upstream';
import { header } from './upstream';

/** Response headers of a passed-through answer that mean something to a registry client. */
const PASSED_HEADERS = ['content-type', 'content-length', 'www-authenticate', 'docker-distribution-api-version', 'link', 'etag'];

/** Streams an upstream answer to the client, keeping status, registry headers and body. */
export function relay(res: ServerResponse, status: number, headers: UpstreamHeaders, body: Readable, head: boolean): void {
  const out: Record<string, string> = {};
  for (const name of PASSED_HEADERS) {
    const value = header(headers, name);
    if (value !== undefined) out[name] = value;
  }
  res.writeHead(status, out);
  if (head) {
    body.resume();
    res.end();
    return;
  }
  pipeline(body, res, () => undefined);
}

export class TooLargeError extends Error {}

/** Reads `stream` whole; rejects with TooLargeError past `max` bytes (and destroys the stream). */
export async function readCapped(stream: Readable, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > max) {
      stream.destroy();
      throw new TooLargeError(`body is larger than ${max} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}
