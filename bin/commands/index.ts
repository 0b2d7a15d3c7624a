/** Every command, registered lazily. Add a line here for a new command module. */
import { register } from './registry';

register('check-config', 'validate a cache config.yml', () => import('./check-config'));
register('register', 'register a cache with DTR (content caches API), list or remove', () => import('./register'));
register('warm', 'pull images through a cache so the first real pull is a hit', () => import('./warm'));
register('plan', 'summarize a synthesized cdktf app per datacenter, and what changed', () => import('./plan'));
register('serve', 'run the cache server', () => import('./serve'));
