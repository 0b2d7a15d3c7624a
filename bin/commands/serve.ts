import { parseArgs } from 'node:util';
import { readConfigFile } from './config-file';
import { UsageError } from '../../lib/cli/errors';
import { Command } from './command';

export const command: Command = {
  usage: `Usage: dtr-cache serve --config <config.yml>

Runs the pull-through cache described by config.yml (REGISTRY_* environment overrides applied), in front of
middleware.registry[0].options.upstreams, and prints where it listens. Logs are JSON lines on stdout.
Exit 2 when the config is invalid (each error names its YAML path and the fix).

Options:
  --config <file>   the cache's config.yml (default /config.yml, as in the image)`,
  async run(args) {
    const { values, positionals } = parseArgs({
      args: [...args],
      allowPositionals: true,
      options: { config: { type: 'string', short: 'c' } },
    });
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}; pass the file with --config`);
    const file = values.config ?? '/config.yml';
    const config = await readConfigFile(file);
    if (!config) return 2;
    // Loaded here, not at the top, so `dtr-cache serve --help` does not load the server.
    const { createCacheServer } = await import('../../lib/cache/server');
    let server;
    try {
      server = await createCacheServer(config);
    } catch (err) {
      process.stderr.write(`dtr-cache serve: ${(err as Error).message}\n`);
      return 1;
    }
    // SIGTERM/SIGINT: stop accepting, let responses and fills finish within http.draintimeout, then exit 0.
    // Installed before "serving" is printed, so a signal right after start is a drain, not a kill.
    const { drainOnSignals } = await import('../../lib/cache/drain');
    const running = server;
    const exited = new Promise<number>((resolve) => {
      const remove = drainOnSignals(running, config.http.draintimeout, (code) => {
        remove();
        resolve(code);
      });
    });
    process.stderr.write(`dtr-cache: serving ${server.url} (upstreams ${config.middleware.registry[0].options.upstreams.join(', ')})\n`);
    return exited;
  },
};
