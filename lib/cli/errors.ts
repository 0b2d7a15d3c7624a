/**
 * The two ways an operator command fails, told apart by the dispatcher (bin/commands/dispatch.ts):
 * a UsageError exits 2 with a pointer to `--help`, a CommandError exits 1 on one line.
 */

/** Bad flags or input (an unknown flag, a malformed URL or image name, an unreadable file): exit 2. */
export class UsageError extends Error {}

/** A command that ran but failed (DTR refused, cache unreachable…): exit 1. */
export class CommandError extends Error {}
