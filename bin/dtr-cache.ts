#!/usr/bin/env node
/**
 * dtr-cache: one entry point, one module per command under bin/commands/. Commands are loaded on demand so
 * `serve` in the image never loads the construct library, and `plan` never loads the server.
 */
import { COMMANDS, runCommand } from './commands/registry';

runCommand(process.argv.slice(2), COMMANDS).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`dtr-cache: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
