import { readFile } from 'node:fs/promises';
import { CacheConfig, loadConfig } from '../../lib/config';
import { UsageError } from '../../lib/cli/errors';

/**
 * Reads and validates a config.yml file with REGISTRY_* overrides from the environment, as the server does.
 * Errors (each with its YAML path and fix) go to stderr and give undefined; warnings go to stderr too.
 */
export async function readConfigFile(file: string): Promise<CacheConfig | undefined> {
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new UsageError(`cannot read ${file}: ${err.code ?? err.message}`);
  });
  const result = loadConfig(text, process.env, file);
  if (!result.ok) {
    for (const line of result.errors) process.stderr.write(`${line}\n`);
    return undefined;
  }
  for (const line of result.warnings) process.stderr.write(`warning: ${line}\n`);
  return result.config;
}
