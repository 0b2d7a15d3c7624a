/**
 * A cache server (lib/cache) in this process, in front of `upstreams`, on a free loopback port with a fresh
 * filesystem store. The config goes through the same schema as config.yml.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateConfig, type CacheConfigInput } from '../../lib/config';
import { createCacheServer, type CacheServer } from '../../lib/cache/server';
import { createLogger } from '../../lib/cache/log';

type DownstreamInput = NonNullable<CacheConfigInput['middleware']>['registry'][number]['options'];

export interface TestCache {
  readonly server: CacheServer;
  readonly url: string;
  /** host:port, for image references. */
  readonly host: string;
  /** The filesystem storage root. */
  readonly root: string;
  /** JSON log lines the cache wrote. */
  readonly logs: Record<string, unknown>[];
  stop(): Promise<void>;
}

export async function startCache(
  upstreams: string[],
  options: Partial<DownstreamInput> = {},
  root = mkdtempSync(join(tmpdir(), 'dtr-cache-store-')),
  /** Merged over `http: { addr: 127.0.0.1:0 }` (e.g. tls). */
  http: Partial<NonNullable<CacheConfigInput['http']>> = {},
): Promise<TestCache> {
  const input: CacheConfigInput = {
    version: '0.1',
    log: { level: 'info' },
    storage: { filesystem: { rootdirectory: root }, delete: { enabled: true } },
    http: { addr: '127.0.0.1:0', ...http },
    middleware: { registry: [{ name: 'downstream', options: { upstreams, ...options } }] },
  };
  const result = validateConfig(input);
  if (!result.ok) throw new Error(result.errors.join('\n'));
  const logs: Record<string, unknown>[] = [];
  const logger = createLogger('debug', (line) => void logs.push(JSON.parse(line)));
  const server = await createCacheServer(result.config, { logger });
  return {
    server,
    url: server.url,
    host: new URL(server.url).host,
    root,
    logs,
    stop: async () => {
      await server.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
}
