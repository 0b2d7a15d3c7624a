/**
 * Cache chaining as DTR allows it (two levels): cache A's upstream is cache B, whose upstream is the
 * token-protected registry. Authorization still reaches the real upstream through both hops.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startCache, type TestCache } from '../support/cache-server';
import { makeImage, sha256 } from '../../harness/images';
import { startTokenRegistry, type TokenRegistry } from '../support/token-registry';
import { requireTool, sleep } from '../../harness/tools';

const run = promisify(execFile);
const settleLog = () => sleep(400);

describe('two-level cache chain', () => {
  let up: TokenRegistry;
  let near: TestCache; // what users pull from
  let far: TestCache; // near's upstream
  let work: string;
  const image = makeImage({ layerSizes: [2048, 80_000] });

  beforeAll(async () => {
    up = await startTokenRegistry({
      users: { alice: 'alice-pw', bob: 'bob-pw' },
      acl: [{ who: 'alice', repo: 'team/app', actions: ['pull'] }],
    });
    await up.push('team/app', 'v1', image);
    far = await startCache([up.registry.url]);
    near = await startCache([far.url]);
    work = mkdtempSync(join(tmpdir(), 'dtr-cache-chain-'));
  });

  afterAll(async () => {
    await near?.stop();
    await far?.stop();
    await up?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const copy = async (creds: string) => {
    const dir = mkdtempSync(join(work, 'dir-'));
    await run(
      requireTool('skopeo'),
      ['copy', '--src-tls-verify=false', '--src-creds', creds, `docker://${near.host}/team/app:v1`, `dir:${dir}`],
      { timeout: 60_000 },
    );
    return sha256(readFileSync(join(dir, 'manifest.json')));
  };

  it('pulls through both caches with the right token; the second pull reaches no upstream blob', async () => {
    expect(await copy('alice:alice-pw')).toBe(image.digest);
    await settleLog();
    expect(up.registry.blobGets().length).toBeGreaterThan(0);
    up.registry.clearLog();
    expect(await copy('alice:alice-pw')).toBe(image.digest);
    await settleLog();
    expect(up.registry.blobGets()).toEqual([]);
  });

  it('refuses a user without access, although both caches hold the image', async () => {
    await expect(copy('bob:bob-pw')).rejects.toThrow(/unauthorized|denied|authentication required|401|403/i);
    const res = await fetch(`${near.url}/v2/team/app/blobs/${image.blobs[2].digest}`, {
      headers: { authorization: up.bearer('bob', 'team/app') },
    });
    expect([401, 403, 404]).toContain(res.status);
  });
});
