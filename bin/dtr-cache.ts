#!/usr/bin/env node
/** dtr-cache: one entry point; the command table is bin/commands/index.ts, one module per command beside it. */
import { runCommand } from './commands/dispatch';
import { COMMANDS } from './commands/index';

runCommand(process.argv.slice(2), COMMANDS).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`dtr-cache: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
