/**
 * Durations as the docker provider (kreuzwerker/docker 3.6.2) reads them back from the swarm: Go's
 * `time.Duration.String()` with a trailing "0s" after minutes and then a trailing "0m" after hours cut off (its
 * `shortDur`). A duration written any other way ("120s", "60m") reads back differently ("2m", "1h") and every plan
 * shows a change; written this way, the second plan is empty.
 */
import { parseDuration } from '../../config';

/**
 * Nanoseconds of a Go duration as `time.ParseDuration` takes it (`90s`, `1h30m`, `1.5s`, `0`), or undefined for
 * anything else (a bare number other than 0, a negative duration, no unit).
 */
export function durationNanos(text: string): number | undefined {
  if (text !== '0' && /^\d+(\.\d+)?$/.test(text.trim())) return undefined;
  const ms = parseDuration(text);
  return ms === undefined ? undefined : Math.round(ms * 1e6);
}

/** Go's `time.Duration.String()` of `nanos` (a whole, non-negative number of nanoseconds). */
export function goDurationString(nanos: number): string {
  let u = BigInt(nanos);
  if (u === 0n) return '0s';
  if (u < 1_000_000_000n) {
    // Below a second: one unit, with a fraction (1.5µs, 250ms).
    const [unit, scale] = u < 1_000n ? ['ns', 1n] : u < 1_000_000n ? ['µs', 1_000n] : ['ms', 1_000_000n];
    return `${u / scale}${fraction(u % scale, scale)}${unit}`;
  }
  const seconds = `${(u / 1_000_000_000n) % 60n}${fraction(u % 1_000_000_000n, 1_000_000_000n)}s`;
  u /= 60_000_000_000n;
  if (u === 0n) return seconds;
  const minutes = `${u % 60n}m${seconds}`;
  u /= 60n;
  return u === 0n ? minutes : `${u}h${minutes}`;
}

/** ".5" for 5 of 10, "" for 0: the digits of `part/scale` without trailing zeros, as Go's fmtFrac prints them. */
function fraction(part: bigint, scale: bigint): string {
  if (part === 0n) return '';
  const digits = part.toString().padStart(scale.toString().length - 1, '0');
  return `.${digits.replace(/0+$/, '')}`;
}

/** The provider's `shortDur`: `goDurationString` with a trailing "m0s", then a trailing "h0m", cut by two characters. */
export function shortDur(nanos: number): string {
  let s = goDurationString(nanos);
  if (s.endsWith('m0s')) s = s.slice(0, -2);
  if (s.endsWith('h0m')) s = s.slice(0, -2);
  return s;
}

/**
 * `text` (a Go duration) written as the provider reads it back: "120s" → "2m", "60m" → "1h", "90s" → "1m30s".
 * Text that is not a duration is returned as given, for the props validation to report.
 */
export function providerDuration(text: string): string {
  const nanos = durationNanos(text);
  return nanos === undefined ? text : shortDur(nanos);
}
