/**
 * How manifests and tags sit in storage (other replicas and the sweeper read the same keys):
 * - `manifests/<alg>/<xx>/<hex>/data`: the media type, a newline, then the manifest bytes — one object, so the
 *   type and the bytes are committed together;
 * - `tags/<repository>/_tags/<tag>`: `{"digest","mediaType","checkedAt"}`, the last answer of the upstream for the
 *   tag. Stores written with the earlier `tags/<repository>/<tag>` are moved to it on start (`migrateTagLayout`).
 * - `tagrefs/<alg>/<xx>/<hex>/<repository>/_tags/<tag>`: empty, the manifest's back-reference to a tag that named it,
 *   so the sweeper finds a manifest's tags without reading every tag.
 * Reads verify: a manifest whose bytes do not hash to its key is treated as absent.
 *
 * A bounded memory layer sits in front: a warm tag pull is then answered without storage I/O or hashing, which
 * keeps tag latency flat under load (bench/ row 4; figures: bench/results/design-figures.md).
 * Manifests by digest are immutable and verified once, so a remembered one is always right; a remembered tag
 * record is used only while it is younger than `tagttl`, after which storage is read again (another replica
 * may have revalidated the tag since).
 */
import { createHash } from 'node:crypto';
import { manifestKey, migratedTagKey, parseDigest, tagKey, tagRefKey, type Digest } from './reference';
import { readCapped } from './relay';
import { writeSmall, type StorageDriver } from './storage';

/** distribution refuses manifests over 4 MiB; so does the cache. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** Manifest bytes kept in memory, at most (most manifests are a few KiB: thousands fit). */
const MEMORY_BYTES = 8 * 1024 * 1024;
/** Tag records kept in memory, at most. */
const MEMORY_TAGS = 10_000;

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

export class ManifestStore {
  /** Verified manifests by digest, least recently used first. */
  private readonly manifests = new Map<string, StoredManifest>();
  private manifestBytes = 0;
  /** Tag records by repository and tag, oldest first. */
  private readonly tags = new Map<string, TagRecord>();

  constructor(
    private readonly storage: StorageDriver,
    /** How long a tag record is trusted (`tagttl`): older ones are read from storage again. */
    private readonly tagTtlMs: number,
  ) {}

  async readManifest(digest: Digest): Promise<StoredManifest | undefined> {
    const remembered = this.manifests.get(digest.text);
    if (remembered) {
      this.manifests.delete(digest.text); // re-insert: most recently used last
      this.manifests.set(digest.text, remembered);
      return remembered;
    }
    const stream = await this.storage.read(manifestKey(digest));
    if (!stream) return undefined;
    const data = await readCapped(stream, MAX_MANIFEST_BYTES + 1024);
    const newline = data.indexOf(0x0a);
    if (newline < 0) return undefined;
    const bytes = data.subarray(newline + 1);
    if (digestOf(digest.algorithm, bytes) !== digest.hex) return undefined;
    const manifest = { digest, mediaType: data.subarray(0, newline).toString('utf8'), bytes };
    this.remember(manifest);
    return manifest;
  }

  /** Stores the manifest; resolves to its key and the bytes stored. */
  async writeManifest(manifest: StoredManifest): Promise<{ key: string; bytes: number }> {
    const mediaType = manifest.mediaType.replace(/[\r\n]/g, '');
    const key = manifestKey(manifest.digest);
    const data = Buffer.concat([Buffer.from(`${mediaType}\n`), manifest.bytes]);
    await writeSmall(this.storage, key, data);
    this.remember(manifest);
    return { key, bytes: data.length };
  }

  async readTag(name: string, tag: string): Promise<TagRecord | undefined> {
    const remembered = this.tags.get(tagKey(name, tag));
    if (remembered && Date.now() - remembered.checkedAt < this.tagTtlMs) return remembered;
    const stream = await this.storage.read(tagKey(name, tag));
    if (!stream) return undefined;
    let record: Partial<TagRecord>;
    try {
      record = JSON.parse((await readCapped(stream, 64 * 1024)).toString('utf8')) as Partial<TagRecord>;
    } catch {
      return undefined; // unreadable record: as if absent, the upstream is asked again
    }
    if (typeof record.digest !== 'string' || !parseDigest(record.digest).ok) return undefined;
    if (typeof record.mediaType !== 'string' || typeof record.checkedAt !== 'number') return undefined;
    this.rememberTag(name, tag, record as TagRecord);
    return record as TagRecord;
  }

  /**
   * The record and the manifest's back-reference to it (reference.ts tagRefKey), through which evicting the manifest
   * removes the record. Both are written at once (a tag revalidation waits for them): a record left without its
   * reference by a failure or a crash is found by the sweeper's weekly read of every tag, and meanwhile costs one
   * revalidation at most. The reference is written with every record, not only when the digest changes: the sweeper
   * may have removed it with an earlier copy of the same manifest.
   */
  async writeTag(name: string, tag: string, record: TagRecord): Promise<void> {
    this.rememberTag(name, tag, record);
    const digest = parseDigest(record.digest);
    await Promise.all([
      digest.ok && writeSmall(this.storage, tagRefKey(digest.value, name, tag), Buffer.alloc(0)),
      writeSmall(this.storage, tagKey(name, tag), Buffer.from(JSON.stringify(record))),
    ]);
  }

  async deleteTag(name: string, tag: string): Promise<void> {
    this.tags.delete(tagKey(name, tag));
    await this.storage.delete(tagKey(name, tag));
  }

  private remember(manifest: StoredManifest): void {
    if (manifest.bytes.length > MEMORY_BYTES / 16 || this.manifests.has(manifest.digest.text)) return;
    this.manifests.set(manifest.digest.text, manifest);
    this.manifestBytes += manifest.bytes.length;
    for (const [digest, old] of this.manifests) {
      if (this.manifestBytes <= MEMORY_BYTES) break;
      this.manifests.delete(digest);
      this.manifestBytes -= old.bytes.length;
    }
  }

  private rememberTag(name: string, tag: string, record: TagRecord): void {
    const key = tagKey(name, tag);
    this.tags.delete(key);
    this.tags.set(key, record);
    if (this.tags.size > MEMORY_TAGS) this.tags.delete(this.tags.keys().next().value as string);
  }
}

/** Written once a start has moved every record of the earlier tag layout: later starts list no tags. */
export const TAG_LAYOUT_MIGRATED = '_migrations/tag-layout';

/**
 * Moves tag records of the earlier layout (`tags/<repository>/<tag>`, where a tag could collide with a repository
 * of the same path) to `tagKey`. A record already at its new key (written since, or by another replica migrating
 * at the same time) is newer and wins. The old record is deleted before the new one is written: the tag `_tags`
 * of the earlier layout is a file where its new key needs a directory. A record lost to a crash in between is only
 * a tag answer, asked from the upstream again. Returns how many records moved.
 * It lists every tag, so it runs until it has once finished (TAG_LAYOUT_MIGRATED), and start-up then costs one stat
 * at any store size. A record an older replica writes in the earlier layout after that (during a rolling upgrade)
 * is not read: that tag is asked from the upstream again.
 */
export async function migrateTagLayout(storage: StorageDriver): Promise<number> {
  if (await storage.stat(TAG_LAYOUT_MIGRATED)) return 0;
  const old: string[] = [];
  for await (const info of storage.list('tags/')) if (migratedTagKey(info.key)) old.push(info.key);
  for (const key of old) {
    const target = migratedTagKey(key) as string;
    const stream = await storage.read(key);
    const record = stream && (await readCapped(stream, 64 * 1024));
    await storage.delete(key);
    if (record && !(await storage.stat(target))) await writeSmall(storage, target, record);
  }
  await writeSmall(storage, TAG_LAYOUT_MIGRATED, Buffer.from(`${new Date().toISOString()} moved ${old.length}\n`));
  return old.length;
}
