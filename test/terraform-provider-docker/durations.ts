/** Go's time.ParseDuration and Duration.String, and kreuzwerker/docker's shortDur (how it reads durations back). */

const UNITS: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, μs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/** Nanoseconds, or undefined when `text` is not a Go duration. */
export function parseGoDuration(text: string): number | undefined {
  if (text === '0') return 0;
  const m = /^([-+]?)((?:\d*\.?\d+(?:ns|us|µs|μs|ms|s|m|h))+)$/.exec(text);
  if (!m) return undefined;
  let total = 0;
  for (const [, num, unit] of m[2].matchAll(/(\d*\.?\d+)(ns|us|µs|μs|ms|s|m|h)/g)) total += Number(num) * UNITS[unit];
  return Math.round(m[1] === '-' ? -total : total);
}

function fraction(value: number, digits: number): string {
  const whole = Math.trunc(value / 10 ** digits);
  const rest = String(value % 10 ** digits)
    .padStart(digits, '0')
    .replace(/0+$/, '');
  return rest ? `${whole}.${rest}` : String(whole);
}

/** time.Duration.String: "2m0s", "1h0m0s", "1.5s", "500ms", "0s". */
export function goDurationString(ns: number): string {
  if (ns === 0) return '0s';
  if (ns < 0) return `-${goDurationString(-ns)}`;
  if (ns < 1e3) return `${ns}ns`;
  if (ns < 1e6) return `${fraction(ns, 3)}µs`;
  if (ns < 1e9) return `${fraction(ns, 6)}ms`;
  const h = Math.floor(ns / 3600e9);
  const m = Math.floor((ns % 3600e9) / 60e9);
  const s = fraction(ns % 60e9, 9);
  return `${h ? `${h}h` : ''}${h || m ? `${m}m` : ''}${s}s`;
}

/** The provider's shortDur: Duration.String without a trailing "0s" after minutes or "0m" after hours. */
export function shortDur(ns: number): string {
  let s = goDurationString(ns);
  if (s.endsWith('m0s')) s = s.slice(0, -2);
  if (s.endsWith('h0m')) s = s.slice(0, -2);
  return s;
}
