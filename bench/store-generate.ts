/**
 * Generates a filesystem store of `count` objects laid out as the cache lays them out, fast: 70 % blobs, 10 %
 * manifests, 20 % tags (each naming a stored manifest). Blob files are sparse (ftruncate), so a million of them take
 * inodes, not bytes. Last accesses are spread evenly over [now - spreadMs, now]; `expired` extra blobs are planted
 * just past `ttlMs`, to time how long one takes to go.
 *
 *   node -r ts-node/register/transpile-only bench/store-generate.ts <root> <count> [spreadMs] [ttlMs] [expired]
 */
import { createHash } from 'node:crypto';
import { closeSync, ftruncateSync, futimesSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export interface GeneratedStore {
  readonly blobs: number;
  readonly manifests: number;
  readonly tags: number;
  readonly bytes: number;
  /** Keys of the planted blobs last accessed just over `ttlMs` ago. */
  readonly expired: readonly string[];
}

function hexOf(seed: string): string {
  return createHash('sha256').update(seed).digest('hex');
}

function file(root: string, key: string, size: number, mtimeMs: number, body?: string): void {
  const path = join(root, key);
  mkdirSync(join(path, '..'), { recursive: true });
  const fd = openSync(path, 'w');
  if (body !== undefined) writeSync(fd, body);
  else ftruncateSync(fd, size);
  const t = mtimeMs / 1000;
  futimesSync(fd, t, t);
  closeSync(fd);
}

export function generateStore(root: string, count: number, spreadMs: number, ttlMs: number, expiredCount = 0): GeneratedStore {
  const now = Date.now();
  const blobs = Math.round(count * 0.7);
  const manifests = Math.round(count * 0.1);
  const tags = count - blobs - manifests;
  // Sizes: a few KiB to ~100 MiB, log-uniform-ish, deterministic.
  let bytes = 0;
  for (let i = 0; i < blobs; i++) {
    const hex = hexOf(`blob${i}`);
    const size = 4096 * 2 ** (i % 15);
    bytes += size;
    file(root, `blobs/sha256/${hex.slice(0, 2)}/${hex}/data`, size, now - ((i * 7919) % blobs) * (spreadMs / blobs));
  }
  const manifestHex: string[] = [];
  for (let i = 0; i < manifests; i++) {
    const hex = hexOf(`manifest${i}`);
    manifestHex.push(hex);
    bytes += 1500;
    file(root, `manifests/sha256/${hex.slice(0, 2)}/${hex}/data`, 1500, now - ((i * 7919) % manifests) * (spreadMs / manifests));
  }
  for (let i = 0; i < tags; i++) {
    const digest = `sha256:${manifestHex[i % manifests]}`;
    const record = JSON.stringify({ digest, mediaType: 'application/vnd.oci.image.manifest.v1+json', checkedAt: now });
    file(root, `tags/org${i % 500}/repo${i % 2000}/t${i}`, 0, now, record);
  }
  const expired: string[] = [];
  for (let i = 0; i < expiredCount; i++) {
    const hex = hexOf(`expired${i}`);
    const key = `blobs/sha256/${hex.slice(0, 2)}/${hex}/data`;
    file(root, key, 4096, now - ttlMs - 1000);
    expired.push(key);
  }
  return { blobs, manifests, tags, bytes, expired };
}

if (require.main === module) {
  const [root, count, spread, ttl, expired] = process.argv.slice(2);
  const started = Date.now();
  const store = generateStore(root, Number(count), Number(spread ?? 86_400_000), Number(ttl ?? 7 * 86_400_000), Number(expired ?? 0));
  process.stdout.write(`${JSON.stringify({ ...store, expired: store.expired.length, seconds: (Date.now() - started) / 1000 })}\n`);
}
