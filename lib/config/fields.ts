/**
 * Field builders for the config schema. Each one carries the fix in its error message, so a bad config.yml
 * is answered with the YAML path, what is wrong and what to write instead.
 */
import { z } from 'zod';
import { parseDuration, parseSize } from './duration';

/** A required string; `fix` says what to set it to. */
export function str(fix: string) {
  return z.string({
    error: (issue) => (issue.input === undefined ? `is required; ${fix}` : `must be a string; ${fix}`),
  });
}

/** A YAML boolean (true/false). */
export function bool(name: string) {
  return z.boolean({
    error: (issue) =>
      issue.input === undefined
        ? `is required; set ${name}: true or false`
        : `must be a YAML boolean; write ${name}: true or ${name}: false (no quotes)`,
  });
}

/** An optional boolean that, like the registry's s3 and swift drivers, also accepts the strings "true" and "false". */
export function optionalBool(name: string) {
  return z
    .union([z.boolean(), z.enum(['true', 'false']).transform((v) => v === 'true')], {
      error: `must be true or false; write ${name}: true or ${name}: false`,
    })
    .optional();
}

/** A Go duration (`24h`, `90s`); a bare number is nanoseconds, as in the registry. Output: milliseconds. */
export function duration(example: string) {
  return z.union([z.string(), z.number()]).transform((value, ctx) => {
    const ms = parseDuration(value);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `is not a duration; write a Go duration such as ${example} (units ns, us, ms, s, m, h)` });
      return z.NEVER;
    }
    return ms;
  });
}

/**
 * A Go duration that defaults to `text`, written as config.yml writes it (and parsed like one); `text` is the
 * error's example too.
 */
export function durationDefault(text: string) {
  return duration(text).prefault(text);
}

/** A byte size (`10MiB`, `5242880`) of at least `min` bytes. Output: bytes. */
export function size(name: string, min: number) {
  return z.union([z.string(), z.number()]).transform((value, ctx) => {
    const bytes = parseSize(value);
    if (bytes === undefined || bytes < min) {
      ctx.addIssue({
        code: 'custom',
        message: `${name} must be a size of at least ${min} bytes, e.g. ${Math.max(min, 5 * 1024 * 1024)} or 10MiB`,
      });
      return z.NEVER;
    }
    return bytes;
  });
}

/** An optional byte size of at least `min` bytes. Output: bytes. */
export function optionalSize(name: string, min: number) {
  return size(name, min).optional();
}

/**
 * A key the registry's configuration allows but this cache does not use. It is accepted, so that a registry
 * config.yml loads unchanged, and reported as a warning by the loader (see REGISTRY_ONLY_HINT).
 */
export const registryOnly = z.unknown().optional().describe('registry-only');
