import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createStorage } from '../../lib/cache/storage';
import { describeConformance } from '../support/storage-conformance';

describeConformance('filesystem', async () => {
  const root = mkdtempSync(join(tmpdir(), 'dtr-cache-fs-'));
  const driver = await createStorage({ kind: 'filesystem', options: { rootdirectory: root } });
  return {
    driver,
    leftovers: async () => {
      try {
        return readdirSync(join(root, '_uploads')).length;
      } catch {
        return 0;
      }
    },
    teardown: async () => rmSync(root, { recursive: true, force: true }),
  };
});
