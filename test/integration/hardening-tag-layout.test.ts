/**
 * Tag layout (issue 21): the tag `app` of repository `team/small` and the repository `team/small/app` used to collide
 * in the store (`tags/team/small/app` was the tag's file and the repository's directory: EISDIR on commit, so the
 * tag was never stored and not served during an outage). Against a real distribution 2.8 upstream:
 * - both tags are stored (`tags/<repository>/_tags/<tag>`) and no storage error is logged;
 * - a store of the earlier layout is moved to the current one on start, records unchanged; once moved, a start lists
 *   no tags (the marker TAG_LAYOUT_MIGRATED);
 * - after that restart, with the upstream stopped, both `team/small:app` and `team/small/app:v1` are served from the
 *   store (stale, with a Warning) to the client authorized before the outage.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { TAG_LAYOUT_MIGRATED } from '../../lib/cache/manifest-store';
import { tagKey } from '../../lib/cache/reference';
import { startCache, type TestCache } from '../support/cache-server';
import { makeImage, pushImage, type TestImage } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { sleep } from '../../harness/tools';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('tag layout: a tag and a repository of the same path', () => {
  let upstream: TestRegistry | undefined;
  let root: string;
  const caches: TestCache[] = [];
  const images: Record<string, [string, TestImage]> = {
    'team/small:app': ['app', makeImage()],
    'team/small/app:v1': ['v1', makeImage({ layerSizes: [3000] })],
    'team/other:v2': ['v2', makeImage({ layerSizes: [4000] })],
  };
  const repo = (ref: string) => ref.split(':')[0];
  const file = (ref: string) => join(root, tagKey(repo(ref), images[ref][0]));
  /** The earlier layout's file of a tag: `tags/<repository>/<tag>`. */
  const oldFile = (ref: string) => join(root, 'tags', repo(ref), images[ref][0]);

  const start = async () => {
    const cache = await startCache([upstream!.url], { tagttl: '1s', authttl: '1s', scrubrate: '0' }, root);
    caches.push(cache);
    return cache;
  };
  async function pullByTag(cache: TestCache, ref: string): Promise<{ status: number; digest: string; warning: string | null }> {
    const [tag, image] = images[ref];
    const res = await fetch(`${cache.url}/v2/${repo(ref)}/manifests/${tag}`, { headers: { accept: image.mediaType } });
    return { status: res.status, digest: sha(Buffer.from(await res.arrayBuffer())), warning: res.headers.get('warning') };
  }
  const storageErrors = (cache: TestCache) => cache.logs.filter((l) => l.level === 'error');

  beforeAll(async () => {
    upstream = await TestRegistry.start();
    for (const [ref, [tag, image]] of Object.entries(images)) await pushImage(upstream.url, repo(ref), tag, image);
    root = mkdtempSync(join(tmpdir(), 'dtr-cache-tag-layout-'));
  });
  afterAll(async () => {
    for (const c of caches) await c.server.close();
    await upstream?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('stores the tag team/small:app next to the repository team/small/app', async () => {
    const cache = await start();
    for (const ref of Object.keys(images)) {
      expect(await pullByTag(cache, ref)).toMatchObject({ status: 200, digest: images[ref][1].digest });
    }
    for (const ref of Object.keys(images))
      expect(JSON.parse(readFileSync(file(ref), 'utf8'))).toMatchObject({ digest: images[ref][1].digest });
    expect(storageErrors(cache)).toEqual([]);
    expect(existsSync(join(root, TAG_LAYOUT_MIGRATED))).toBe(true); // a new store has nothing to move
    await cache.server.close();
  });

  it('moves a store of the earlier layout on start, and serves both tags from the store through an outage', async () => {
    // The earlier layout could hold team/small/app:v1 or team/small:app, never both: keep the repository's.
    rmSync(file('team/small:app'));
    const records: Record<string, string> = {};
    for (const ref of ['team/small/app:v1', 'team/other:v2']) {
      records[ref] = readFileSync(file(ref), 'utf8');
      mkdirSync(dirname(oldFile(ref)), { recursive: true });
      renameSync(file(ref), oldFile(ref));
    }
    rmSync(join(root, 'tags', 'team', 'other', '_tags'), { recursive: true });
    rmSync(join(root, TAG_LAYOUT_MIGRATED)); // a store of the earlier layout was never migrated
    expect(existsSync(oldFile('team/other:v2'))).toBe(true);

    const cache = await start(); // the restart
    expect(cache.logs.find((l) => l.msg === 'moved tag records to the current layout')).toMatchObject({ count: 2 });
    for (const ref of Object.keys(records)) {
      expect(readFileSync(file(ref), 'utf8')).toBe(records[ref]);
    }
    expect(existsSync(oldFile('team/other:v2'))).toBe(false);
    expect(existsSync(join(root, TAG_LAYOUT_MIGRATED))).toBe(true);

    // Authorized while the upstream is up (decisions live in memory), then the upstream stops.
    for (const ref of ['team/small:app', 'team/small/app:v1']) expect((await pullByTag(cache, ref)).status).toBe(200);
    await upstream!.stop();
    upstream = undefined;
    await sleep(1100); // past tagttl and authttl: only the stored tag records can answer
    for (const ref of ['team/small:app', 'team/small/app:v1']) {
      const answer = await pullByTag(cache, ref);
      expect(answer).toMatchObject({ status: 200, digest: images[ref][1].digest });
      expect(answer.warning).toContain('110');
    }
    expect(storageErrors(cache)).toEqual([]);
  });

  it('lists no tags on a start once the store is migrated: a record in the earlier layout stays where it is', async () => {
    const planted = join(root, 'tags', 'team', 'late', 'v3');
    mkdirSync(dirname(planted), { recursive: true });
    writeFileSync(planted, JSON.stringify({ digest: images['team/other:v2'][1].digest, mediaType: 'x', checkedAt: 0 }));
    // The upstream is stopped (the outage above): a start needs none.
    const cache = await startCache(['http://127.0.0.1:9'], { scrubrate: '0' }, root);
    caches.push(cache);
    expect(existsSync(planted)).toBe(true);
    expect(cache.logs.find((l) => l.msg === 'moved tag records to the current layout')).toBeUndefined();
  });
});
