import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { loadConfig, selectStorage } from '../../lib/config';
import { Command, UsageError } from './registry';

export const command: Command = {
  name: 'check-config',
  summary: 'validate a cache config.yml',
  usage: `Usage: dtr-cache check-config <config.yml>

Validates a cache config.yml with the schema the server uses, with REGISTRY_* environment overrides applied.
Prints each error with its YAML path and fix. Exit 0 when valid, 2 when not.`,
  async run(args) {
    const { positionals } = parseArgs({ args: [...args], allowPositionals: true, options: {} });
    if (positionals.length !== 1) throw new UsageError('expects exactly one config file');
    const file = positionals[0];
    const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new UsageError(`cannot read ${file}: ${err.code ?? err.message}`);
    });
    const result = loadConfig(text, process.env, file);
    if (!result.ok) {
      for (const line of result.errors) process.stderr.write(`${line}\n`);
      return 2;
    }
    for (const line of result.warnings) process.stderr.write(`warning: ${line}\n`);
    process.stdout.write(
      `${file}: valid (storage ${selectStorage(result.config.storage).kind}, upstreams ${result.config.middleware.registry[0].options.upstreams.join(', ')})\n`,
    );
    return 0;
  },
};
