/**
 * The boundary of an operator command: InputError becomes a usage error (exit 2, via the dispatcher's
 * UsageError passed in to keep lib/ free of bin/), CommandError is printed on one line (exit 1).
 */
import { CommandError, InputError } from './flags';

export async function guard(
  name: string,
  toUsageError: (message: string) => Error,
  body: () => Promise<number>,
  stderr: { write(text: string): unknown } = process.stderr,
): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof InputError) throw toUsageError(err.message);
    if (err instanceof CommandError) {
      stderr.write(`dtr-cache ${name}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
