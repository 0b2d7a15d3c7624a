/**
 * The command table: each command's name, one-line summary and module, loaded on demand so `serve` in the image
 * never loads the construct library and `plan` never loads the server. Add a line here for a new command.
 */
import { CommandEntry } from './command';

export const COMMANDS: Readonly<Record<string, CommandEntry>> = {
  'check-config': { summary: 'validate a cache config.yml', load: () => import('./check-config') },
  register: { summary: 'register a cache with DTR (content caches API), list or remove', load: () => import('./register') },
  warm: { summary: 'pull images through a cache so the first real pull is a hit', load: () => import('./warm') },
  plan: { summary: 'summarize a synthesized cdktf app per datacenter, and what changed', load: () => import('./plan') },
  serve: { summary: 'run the cache server', load: () => import('./serve') },
};
