/**
 * HTTP Range for blob requests (RFC 9110 §14): a single `bytes=` range is served as 206; several ranges or
 * another unit are ignored (a full 200 is a valid answer); a range that starts past the end is 416.
 */
import type { ByteRange } from './storage';

export type RangeRequest =
  { readonly kind: 'full' } | { readonly kind: 'partial'; readonly range: ByteRange } | { readonly kind: 'unsatisfiable' };

/** Resolves a Range header against an object of `size` bytes. */
export function parseRange(header: string | undefined, size: number): RangeRequest {
  if (header === undefined) return { kind: 'full' };
  const match = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!match) return { kind: 'full' }; // multiple ranges, other units, garbage: ignored, as RFC 9110 allows
  const [, first, last] = match;
  if (first === '' && last === '') return { kind: 'full' };
  if (first === '') {
    // Suffix range: the last N bytes.
    const length = Number(last);
    if (length === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'partial', range: { start: Math.max(0, size - length), end: size - 1 } };
  }
  const start = Number(first);
  if (!Number.isSafeInteger(start) || start >= size) return { kind: 'unsatisfiable' };
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (!Number.isSafeInteger(end) || end < start) return { kind: 'full' }; // syntactically invalid: ignore it
  return { kind: 'partial', range: { start, end } };
}

/** `bytes 0-99/1234` */
export function contentRange(range: ByteRange, size: number): string {
  return `bytes ${range.start}-${range.end}/${size}`;
}
