/**
 * `npm run docs` must keep working: TypeDoc with the repository's typedoc.json (broken `{@link}`s in doc comments
 * are errors there) builds the API reference, here into a temporary directory so the checkout's docs/api is left
 * alone, and the page of DtrCacheSiteProps carries the props' doc comments.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const ROOT = join(__dirname, '..', '..');

describe('API reference (TypeDoc)', () => {
  let out: string;
  beforeAll(() => {
    out = mkdtempSync(join(tmpdir(), 'docs-api-'));
  });
  afterAll(() => {
    if (out) rmSync(out, { recursive: true, force: true });
  });

  it('builds with typedoc.json and documents the construct props', async () => {
    const typedoc = join(ROOT, 'node_modules', 'typedoc', 'bin', 'typedoc');
    const { stdout, stderr } = await exec(process.execPath, [typedoc, '--options', join(ROOT, 'typedoc.json'), '--out', out], {
      cwd: ROOT,
      timeout: 150_000,
    });
    expect(`${stdout}${stderr}`).not.toMatch(/\[error\]/);
    const page = join(out, 'interfaces', 'DtrCacheSiteProps.html');
    expect(existsSync(join(out, 'index.html'))).toBe(true);
    expect(existsSync(join(out, 'classes', 'DtrCacheSite.html'))).toBe(true);
    const html = readFileSync(page, 'utf8');
    // Each prop of the main construct is on the page with its doc comment (the first words of it, HTML-escaped).
    for (const prop of ['datacenter', 'upstreams', 'host', 'nodes', 'tls', 'image', 'storage', 'replicas', 'blobTtl']) {
      expect(html).toContain(`id="${prop.toLowerCase()}"`);
    }
    expect(html).toContain('Datacenter name');
  }, 180_000);
});
