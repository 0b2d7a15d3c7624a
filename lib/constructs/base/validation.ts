/**
 * Props validation with zod, reported through `Node.addValidation` so that `cdktf synth` lists every problem at once,
 * each naming the construct, the prop and the fix.
 */
import { IValidation } from 'constructs';
import { z } from 'zod';
import { durationNanos } from './provider-duration';

/** A validation that checks `props` against `schema`; messages read "<construct>: <prop path>: <problem and fix>". */
export function propsValidation(construct: string, schema: z.ZodType, props: unknown): IValidation {
  return {
    validate: () => {
      const result = schema.safeParse(props);
      if (result.success) return [];
      return result.error.issues.map((issue) => `${construct}: ${issue.path.map(String).join('.') || '(props)'}: ${issue.message}`);
    },
  };
}

/** A validation from a function returning messages (empty when fine). */
export function check(fn: () => string[]): IValidation {
  return { validate: fn };
}

/** Node IDs and hostnames as the Docker CLI takes them: safe to put in a shell command unquoted. */
export const nodeName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, { message: 'must be a swarm node ID or hostname (letters, digits, dot, dash, underscore)' });

/** A TCP port. */
export const port = z
  .number()
  .int({ message: 'must be a whole number' })
  .min(1, { message: 'must be between 1 and 65535' })
  .max(65535, { message: 'must be between 1 and 65535' });

/** A positive Go duration as the docker provider takes it (`90s`, `5m`, `1h30m`). */
export const goDuration = z.string().refine((d) => (durationNanos(d) ?? 0) > 0, {
  message: 'must be a positive Go duration such as 90s, 5m or 1h30m (units ns, us, ms, s, m, h)',
});
