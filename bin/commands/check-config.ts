import { parseArgs } from 'node:util';
import { selectStorage } from '../../lib/config';
import { readConfigFile } from './config-file';
import { UsageError } from '../../lib/cli/errors';
import { Command } from './command';

export const command: Command = {
  usage: `Usage: dtr-cache check-config <config.yml>

Validates a cache config.yml with the schema the server uses, with REGISTRY_* environment overrides applied.
Prints each error with its YAML path and fix. Exit 0 when valid, 2 when not.`,
  async run(args) {
    const { positionals } = parseArgs({ args: [...args], allowPositionals: true, options: {} });
    if (positionals.length !== 1) throw new UsageError('expects exactly one config file');
    const file = positionals[0];
    const config = await readConfigFile(file);
    if (!config) return 2;
    process.stdout.write(
      `${file}: valid (storage ${selectStorage(config.storage).kind}, upstreams ${config.middleware.registry[0].options.upstreams.join(', ')})\n`,
    );
    return 0;
  },
};
