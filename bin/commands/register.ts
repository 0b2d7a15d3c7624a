import { parseArgs } from 'node:util';
import { CREDENTIAL_FLAGS, readCredentials } from '../../lib/cli/credentials';
import { DtrApi, ensureRegistered, ensureRemoved } from '../../lib/cli/dtr-api';
import { UsageError } from '../../lib/cli/errors';
import { baseUrl } from '../../lib/cli/flags';
import { renderTable } from '../../lib/cli/format';
import { makeAgent, TLS_FLAGS } from '../../lib/cli/transport';
import { Command } from './command';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export const command: Command = {
  usage: `Usage: dtr-cache register --dtr <url> --name <name> --host <cache-url> [options]
       dtr-cache register --dtr <url> --list
       dtr-cache register --dtr <url> --name <name> --remove

Registers a content cache with DTR (DTR 2.2+, /api/v0/content_caches) so users can choose it in their settings.
Idempotent: an existing cache with the same name and host is left alone; one with another host is removed and
created again (DTR documents no update endpoint). Safe to call from a deploy step (local-exec).

Options:
  --dtr <url>            DTR base URL, e.g. https://dtr.example.com (required)
  --name <name>          cache name shown to users, e.g. region-asia
  --host <cache-url>     the cache's URL as users reach it, e.g. https://cache-asia.example.com:443
  --list                 print the registered caches (id, name, host)
  --remove               remove the cache called --name (no error if absent)
  --username <user>      DTR admin user (default: $DTR_USERNAME)
  --password-env <VAR>   environment variable holding the password or access token (default: DTR_PASSWORD)
  --ca <file>            PEM CA certificate of DTR (DTR serves it at https://<dtr>/ca)
  --insecure             do not verify DTR's TLS certificate
  -h, --help             this help

Exit codes: 0 done (or nothing to change), 1 DTR refused or unreachable, 2 bad flags.`,
  run: register,
};

/** What the flags ask for, checked. */
type RegisterRequest =
  | { readonly action: 'list' }
  | { readonly action: 'remove'; readonly name: string }
  | { readonly action: 'register'; readonly name: string; readonly host: string };

async function register(args: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...args],
    strict: true,
    options: {
      dtr: { type: 'string' },
      name: { type: 'string' },
      host: { type: 'string' },
      list: { type: 'boolean' },
      remove: { type: 'boolean' },
      ...CREDENTIAL_FLAGS,
      ...TLS_FLAGS,
    },
  });
  const dtr = baseUrl('--dtr', values.dtr);
  const request = registerRequest(values);
  const credentials = readCredentials(values, process.env);
  const agent = makeAgent(values);
  try {
    process.stdout.write(await perform(new DtrApi(dtr, credentials, agent), dtr, request));
    return 0;
  } finally {
    await agent.close();
  }
}

function registerRequest(values: { list?: boolean; remove?: boolean; name?: string; host?: string }): RegisterRequest {
  if (values.list && values.remove) throw new UsageError('--list and --remove exclude each other');
  if (!values.list) {
    if (!values.name) throw new UsageError('--name is required (the cache name users pick, e.g. --name region-asia)');
    if (!NAME.test(values.name)) throw new UsageError(`--name "${values.name}": use letters, digits, ".", "_" or "-" (up to 64)`);
  }
  const host = values.list || values.remove ? undefined : baseUrl('--host', values.host).origin;
  if ((values.list || values.remove) && values.host) throw new UsageError(`--host is not used with ${values.list ? '--list' : '--remove'}`);
  if (values.list) return { action: 'list' };
  if (values.remove) return { action: 'remove', name: values.name as string };
  return { action: 'register', name: values.name as string, host: host as string };
}

/** Carries out `request` at DTR; the line(s) to print. */
async function perform(api: DtrApi, dtr: URL, request: RegisterRequest): Promise<string> {
  if (request.action === 'list') {
    const caches = await api.list();
    return caches.length
      ? renderTable(
          ['ID', 'NAME', 'HOST'],
          caches.map((c) => [c.id, c.name, c.host]),
        )
      : `no content caches registered at ${dtr.origin}\n`;
  }
  const name = request.name;
  if (request.action === 'remove') {
    const removed = await ensureRemoved(api, name);
    return removed.length
      ? `removed cache ${name} (${removed.map((c) => `id ${c.id}`).join(', ')}) from ${dtr.origin}\n`
      : `cache ${name} is not registered at ${dtr.origin}: nothing to remove\n`;
  }
  const { action, cache } = await ensureRegistered(api, name, request.host);
  const verb = { created: 'registered', unchanged: 'already registered', replaced: 're-registered (host changed)' }[action];
  return `cache ${name} ${verb}: ${cache.host} (id ${cache.id}) at ${dtr.origin}\n`;
}
