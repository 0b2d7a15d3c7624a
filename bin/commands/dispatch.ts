/**
 * The dispatcher. Exit codes (documented in the README):
 * 0 success, 1 the command failed, 2 usage or input error (bad flags, invalid config).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CommandError, UsageError } from '../../lib/cli/errors';
import { CommandEntry } from './command';

export async function runCommand(argv: readonly string[], commands: Readonly<Record<string, CommandEntry>>): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-V') {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(topLevelHelp(commands));
    return name ? 0 : 2;
  }
  const entry = commands[name];
  if (!entry) {
    process.stderr.write(`dtr-cache: unknown command "${name}"\n\n${topLevelHelp(commands)}`);
    return 2;
  }
  const { command } = await entry.load();
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(command.usage.endsWith('\n') ? command.usage : `${command.usage}\n`);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    if (err instanceof UsageError || isParseArgsError(err)) {
      process.stderr.write(`dtr-cache ${name}: ${(err as Error).message}\nRun dtr-cache ${name} --help for usage.\n`);
      return 2;
    }
    if (err instanceof CommandError) {
      process.stderr.write(`dtr-cache ${name}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

/** node:util parseArgs rejects unknown flags and missing values with codes ERR_PARSE_ARGS_*. */
function isParseArgsError(err: unknown): boolean {
  return err instanceof TypeError && String((err as NodeJS.ErrnoException).code).startsWith('ERR_PARSE_ARGS_');
}

function topLevelHelp(commands: Readonly<Record<string, CommandEntry>>): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length), 4);
  const lines = Object.entries(commands).map(([n, c]) => `  ${n.padEnd(width)}  ${c.summary}`);
  return `Usage: dtr-cache <command> [options]\n       dtr-cache --version\n\nCommands:\n${lines.join('\n')}\n\nRun dtr-cache <command> --help for a command's options.\n`;
}

/** The version in this package's package.json (bin/commands from source, dist/bin/commands when installed). */
export function packageVersion(): string {
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'dtr-cache-site' && pkg.version) return pkg.version;
    }
  }
  return 'unknown';
}
