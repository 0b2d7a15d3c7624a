/** No import circles anywhere in the repository's TypeScript (madge reads the imports as tsc resolves them). */
import { join } from 'node:path';
import madge from 'madge';

const root = join(__dirname, '..', '..');

test('the TypeScript sources import each other without circles', async () => {
  const graph = await madge(
    ['lib', 'bin', 'examples', 'test', 'bench', 'harness'].map((dir) => join(root, dir)),
    {
      baseDir: root,
      fileExtensions: ['ts'],
      tsConfig: join(root, 'tsconfig.test.json'),
    },
  );
  expect(Object.keys(graph.obj()).length).toBeGreaterThan(150);
  expect(graph.circular()).toEqual([]);
});
