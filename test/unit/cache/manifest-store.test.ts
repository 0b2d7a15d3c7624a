/**
 * ManifestStore against the real FilesystemDriver in a temp dir: what storage holds (other replicas and the
 * sweeper read it), what the memory layer answers without storage, when a tag record is read from storage
 * again, and the memory bound.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManifestStore, type StoredManifest } from '../../../lib/cache/manifest-store';
import { manifestKey, parseDigest, tagKey, type Digest } from '../../../lib/cache/reference';
import { FilesystemDriver } from '../../../lib/cache/storage/filesystem';
import { sleep } from '../../../harness/tools';

const MEDIA_TYPE = 'application/vnd.oci.image.manifest.v1+json';

function manifestOf(bytes: Buffer): StoredManifest {
  const parsed = parseDigest(`sha256:${createHash('sha256').update(bytes).digest('hex')}`);
  if (!parsed.ok) throw new Error('unreachable');
  return { digest: parsed.value, mediaType: MEDIA_TYPE, bytes };
}

let root: string;
let storage: FilesystemDriver;
const file = (key: string) => join(root, key);

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'dtr-cache-manifest-store-'));
  storage = new FilesystemDriver({ rootdirectory: root });
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

test('a written manifest is in storage as media type, newline, bytes; another store reads and verifies it', async () => {
  const manifest = manifestOf(Buffer.from('{"schemaVersion":2}'));
  await new ManifestStore(storage, 30_000).writeManifest(manifest);
  expect(readFileSync(file(manifestKey(manifest.digest)), 'utf8')).toBe(`${MEDIA_TYPE}\n{"schemaVersion":2}`);

  const other = new ManifestStore(storage, 30_000);
  expect(await other.readManifest(manifest.digest)).toEqual(manifest);
  // Bytes that do not hash to the key are absent for a store that has not seen the manifest yet.
  writeFileSync(file(manifestKey(manifest.digest)), `${MEDIA_TYPE}\n{"schemaVersion":3}`);
  expect(await new ManifestStore(storage, 30_000).readManifest(manifest.digest)).toBeUndefined();
});

test('a manifest read or written once is answered from memory, even after storage lost it', async () => {
  const store = new ManifestStore(storage, 30_000);
  const manifest = manifestOf(Buffer.from('{"layers":[]}'));
  await store.writeManifest(manifest);
  rmSync(file(manifestKey(manifest.digest)));
  expect(await store.readManifest(manifest.digest)).toEqual(manifest);
  expect(await new ManifestStore(storage, 30_000).readManifest(manifest.digest)).toBeUndefined();
});

test('memory holds at most 8 MiB of manifests, dropping the least recently used first', async () => {
  const store = new ManifestStore(storage, 30_000);
  const manifests = Array.from({ length: 20 }, () => manifestOf(randomBytes(512 * 1024)));
  for (const m of manifests) await store.writeManifest(m);
  await store.readManifest(manifests[0].digest); // used again: now the most recent
  for (const m of manifests) rmSync(file(manifestKey(m.digest)));
  const remembered = (await Promise.all(manifests.map((m) => store.readManifest(m.digest)))).map((m) => m !== undefined);
  // 16 of 512 KiB fit in 8 MiB: manifest 0 (refreshed) and the last 15 written.
  expect(remembered).toEqual([true, false, false, false, false, ...Array<boolean>(15).fill(true)]);
});

test('a tag record younger than tagttl comes from memory; an older one is read from storage again', async () => {
  const ttl = 200;
  const store = new ManifestStore(storage, ttl);
  const first: { digest: string; mediaType: string; checkedAt: number } = {
    digest: manifestOf(Buffer.from('a')).digest.text,
    mediaType: MEDIA_TYPE,
    checkedAt: Date.now(),
  };
  await store.writeTag('team/app', 'latest', first);
  expect(JSON.parse(readFileSync(file(tagKey('team/app', 'latest')), 'utf8'))).toEqual(first);

  // Another replica revalidates the tag and writes a newer record.
  const second = { digest: manifestOf(Buffer.from('b')).digest.text, mediaType: MEDIA_TYPE, checkedAt: Date.now() + 50 };
  await new ManifestStore(storage, ttl).writeTag('team/app', 'latest', second);
  expect(await store.readTag('team/app', 'latest')).toEqual(first); // still fresh in memory
  await sleep(ttl + 20);
  expect(await store.readTag('team/app', 'latest')).toEqual(second); // stale in memory: storage's record

  await store.deleteTag('team/app', 'latest');
  expect(existsSync(file(tagKey('team/app', 'latest')))).toBe(false);
  expect(await store.readTag('team/app', 'latest')).toBeUndefined();
});

test('an unreadable or malformed tag record is absent', async () => {
  const store = new ManifestStore(storage, 30_000);
  const digest: Digest = manifestOf(Buffer.from('x')).digest;
  await store.writeTag('r', 'ok', { digest: digest.text, mediaType: MEDIA_TYPE, checkedAt: 1 });
  writeFileSync(file(tagKey('r', 'ok')), '{not json');
  expect(await new ManifestStore(storage, 30_000).readTag('r', 'ok')).toBeUndefined();
  writeFileSync(file(tagKey('r', 'ok')), JSON.stringify({ digest: 'sha256:short', mediaType: MEDIA_TYPE, checkedAt: 1 }));
  expect(await new ManifestStore(storage, 30_000).readTag('r', 'ok')).toBeUndefined();
});
