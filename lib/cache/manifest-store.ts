/**
 * How manifests and tags sit in storage (other replicas and the sweeper read the same keys):
 * - `manifests/<alg>/<xx>/<hex>/data`: the media type, a newline, then the manifest bytes — one object, so the
 *   type and the bytes are committed together;
 * - `tags/<repository>/<tag>`: `{"digest","mediaType","checkedAt"}`, the last answer of the upstream for the tag.
 * Reads verify: a manifest whose bytes do not hash to its key is treated as absent.
 */
import { createHash } from 'node:crypto';
import { manifestKey, parseDigest, tagKey, type Digest } from './reference';
import { readCapped } from './relay';
import type { StorageDriver } from './storage';

/** distribution refuses manifests over 4 MiB; so does the cache. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export interface StoredManifest {
  readonly digest: Digest;
  readonly mediaType: string;
  readonly bytes: Buffer;
}

export interface TagRecord {
  readonly digest: string;
  readonly mediaType: string;
  /** Epoch ms of the upstream's last answer for this tag. */
  readonly checkedAt: number;
}

export function digestOf(algorithm: Digest['algorithm'], bytes: Buffer): string {
  return createHash(algorithm).update(bytes).digest('hex');
}

export async function readManifest(storage: StorageDriver, digest: Digest): Promise<StoredManifest | undefined> {
  const stream = await storage.read(manifestKey(digest));
  if (!stream) return undefined;
  const data = await readCapped(stream, MAX_MANIFEST_BYTES + 1024);
  const newline = data.indexOf(0x0a);
  if (newline < 0) return undefined;
  const bytes = data.subarray(newline + 1);
  if (digestOf(digest.algorithm, bytes) !== digest.hex) return undefined;
  return { digest, mediaType: data.subarray(0, newline).toString('utf8'), bytes };
}

export async function writeManifest(storage: StorageDriver, manifest: StoredManifest): Promise<void> {
  const mediaType = manifest.mediaType.replace(/[\r\n]/g, '');
  await writeSmall(storage, manifestKey(manifest.digest), Buffer.concat([Buffer.from(`${mediaType}\n`), manifest.bytes]));
}

export async function readTag(storage: StorageDriver, name: string, tag: string): Promise<TagRecord | undefined> {
  const stream = await storage.read(tagKey(name, tag));
  if (!stream) return undefined;
  try {
    const record = JSON.parse((await readCapped(stream, 64 * 1024)).toString('utf8')) as Partial<TagRecord>;
    if (typeof record.digest !== 'string' || !parseDigest(record.digest).ok) return undefined;
    if (typeof record.mediaType !== 'string' || typeof record.checkedAt !== 'number') return undefined;
    return record as TagRecord;
  } catch {
    return undefined; // unreadable record: as if absent, the upstream is asked again
  }
}

export async function writeTag(storage: StorageDriver, name: string, tag: string, record: TagRecord): Promise<void> {
  await writeSmall(storage, tagKey(name, tag), Buffer.from(JSON.stringify(record)));
}

export async function deleteTag(storage: StorageDriver, name: string, tag: string): Promise<void> {
  await storage.delete(tagKey(name, tag));
}

async function writeSmall(storage: StorageDriver, key: string, data: Buffer): Promise<void> {
  const pending = await storage.write(key, data.length);
  try {
    pending.stream.end(data);
    await pending.commit();
  } catch (err) {
    await pending.abort();
    throw err;
  }
}
