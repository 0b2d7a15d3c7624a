/** Every command, registered lazily. Add a line here for a new command module. */
import { register } from './registry';

register('check-config', 'validate a cache config.yml', () => import('./check-config'));
