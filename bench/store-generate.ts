/**
 * Generates a store of `count` objects laid out as the cache lays them out, fast: 70 % blobs, 10 % manifests, 20 %
 * tags (each naming a stored manifest, with the manifest's back-reference to it: one more object per tag). Last
 * accesses are spread evenly over [now - spreadMs, now]; `expired` extra blobs are planted just past `ttlMs`, to time
 * how long one takes to go.
 *
 * On the filesystem, blob files are sparse (ftruncate), so a million of them take inodes, not bytes:
 *   node -r ts-node/register/transpile-only bench/store-generate.ts <root> <count> [spreadMs] [ttlMs] [expired]
 * In a bucket of s3rver (`--s3`), by PUTs at most `concurrency` at once; each object holds at most 64 bytes (sizes
 * are the filesystem store's only there), and last accesses are set on s3rver's files under its directory `<root>`,
 * which it reports as LastModified:
 *   node -r ts-node/register/transpile-only bench/store-generate.ts <root> <count> [spreadMs] [ttlMs] [expired] \
 *     --s3=<endpoint> --bucket=<name> [--concurrency=32]
 */
import { createHash } from 'node:crypto';
import { closeSync, ftruncateSync, futimesSync, mkdirSync, openSync, utimesSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export interface GeneratedStore {
  readonly blobs: number;
  readonly manifests: number;
  readonly tags: number;
  readonly bytes: number;
  /** Keys of the planted blobs last accessed just over `ttlMs` ago. */
  readonly expired: readonly string[];
}

interface StoreObject {
  readonly key: string;
  readonly size: number;
  readonly mtimeMs: number;
  readonly body?: string;
}

function hexOf(seed: string): string {
  return createHash('sha256').update(seed).digest('hex');
}

/** The objects of a generated store, and its totals in `totals`. */
function* storeObjects(
  count: number,
  spreadMs: number,
  ttlMs: number,
  expiredCount: number,
  totals: { bytes: number },
): Generator<StoreObject> {
  const now = Date.now();
  const blobs = Math.round(count * 0.7);
  const manifests = Math.round(count * 0.1);
  const tags = count - blobs - manifests;
  // Sizes: a few KiB to ~100 MiB, log-uniform-ish, deterministic.
  for (let i = 0; i < blobs; i++) {
    const hex = hexOf(`blob${i}`);
    const size = 4096 * 2 ** (i % 15);
    totals.bytes += size;
    yield { key: `blobs/sha256/${hex.slice(0, 2)}/${hex}/data`, size, mtimeMs: now - ((i * 7919) % blobs) * (spreadMs / blobs) };
  }
  const manifestHex: string[] = [];
  for (let i = 0; i < manifests; i++) {
    const hex = hexOf(`manifest${i}`);
    manifestHex.push(hex);
    totals.bytes += 1500;
    yield {
      key: `manifests/sha256/${hex.slice(0, 2)}/${hex}/data`,
      size: 1500,
      mtimeMs: now - ((i * 7919) % manifests) * (spreadMs / manifests),
    };
  }
  for (let i = 0; i < tags; i++) {
    const hex = manifestHex[i % manifests];
    const body = JSON.stringify({ digest: `sha256:${hex}`, mediaType: 'application/vnd.oci.image.manifest.v1+json', checkedAt: now });
    const tag = `org${i % 500}/repo${i % 2000}/_tags/t${i}`;
    yield { key: `tags/${tag}`, size: body.length, mtimeMs: now, body };
    // The manifest's back-reference, as ManifestStore.writeTag writes it (code before it ignores these).
    yield { key: `tagrefs/sha256/${hex.slice(0, 2)}/${hex}/${tag}`, size: 0, mtimeMs: now, body: '' };
  }
  for (let i = 0; i < expiredCount; i++) {
    const hex = hexOf(`expired${i}`);
    yield { key: `blobs/sha256/${hex.slice(0, 2)}/${hex}/data`, size: 4096, mtimeMs: now - ttlMs - 1000 };
  }
}

function counts(count: number, expiredCount: number, bytes: number): GeneratedStore {
  const blobs = Math.round(count * 0.7);
  const manifests = Math.round(count * 0.1);
  const expired = Array.from({ length: expiredCount }, (_, i) => hexOf(`expired${i}`)).map(
    (h) => `blobs/sha256/${h.slice(0, 2)}/${h}/data`,
  );
  return { blobs, manifests, tags: count - blobs - manifests, bytes, expired };
}

function file(root: string, object: StoreObject): void {
  const path = join(root, object.key);
  mkdirSync(join(path, '..'), { recursive: true });
  const fd = openSync(path, 'w');
  if (object.body !== undefined) writeSync(fd, object.body);
  else ftruncateSync(fd, object.size);
  const t = object.mtimeMs / 1000;
  futimesSync(fd, t, t);
  closeSync(fd);
}

export function generateStore(root: string, count: number, spreadMs: number, ttlMs: number, expiredCount = 0): GeneratedStore {
  const totals = { bytes: 0 };
  for (const object of storeObjects(count, spreadMs, ttlMs, expiredCount, totals)) file(root, object);
  return counts(count, expiredCount, totals.bytes);
}

/** The same store in a bucket of s3rver (which keeps each object as `<dir>/<bucket>/<key>._S3rver_object`). */
export async function generateS3Store(
  dir: string,
  endpoint: string,
  bucket: string,
  count: number,
  spreadMs: number,
  ttlMs: number,
  expiredCount: number,
  concurrency: number,
): Promise<GeneratedStore> {
  /* eslint-disable-next-line @typescript-eslint/no-require-imports */
  const { S3Client, PutObjectCommand, CreateBucketCommand } = require('@aws-sdk/client-s3') as typeof import('@aws-sdk/client-s3');
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  });
  await client.send(new CreateBucketCommand({ Bucket: bucket })).catch(() => undefined);
  const totals = { bytes: 0 };
  const objects = storeObjects(count, spreadMs, ttlMs, expiredCount, totals);
  const worker = async () => {
    for (let next = objects.next(); !next.done; next = objects.next()) {
      const object = next.value;
      const body = Buffer.from(object.body ?? 'x'.repeat(Math.min(64, object.size)));
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: object.key, Body: body }));
      const base = join(dir, bucket, object.key);
      const t = new Date(object.mtimeMs);
      for (const suffix of ['._S3rver_object', '._S3rver_metadata.json', '._S3rver_object.md5'])
        try {
          utimesSync(base + suffix, t, t);
        } catch {
          // not every version of s3rver keeps each of these files
        }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  client.destroy();
  return counts(count, expiredCount, totals.bytes);
}

if (require.main === module) {
  const positional = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  const flags = Object.fromEntries(
    process.argv
      .slice(2)
      .filter((a) => a.startsWith('--'))
      .map((a) => a.slice(2).split('=') as [string, string]),
  );
  const [root, count, spread, ttl, expired] = positional;
  const started = Date.now();
  const spreadMs = Number(spread ?? 86_400_000);
  const ttlMs = Number(ttl ?? 7 * 86_400_000);
  const made = flags.s3
    ? generateS3Store(root, flags.s3, flags.bucket, Number(count), spreadMs, ttlMs, Number(expired ?? 0), Number(flags.concurrency ?? 32))
    : Promise.resolve(generateStore(root, Number(count), spreadMs, ttlMs, Number(expired ?? 0)));
  void made.then((store) =>
    process.stdout.write(`${JSON.stringify({ ...store, expired: store.expired.length, seconds: (Date.now() - started) / 1000 })}\n`),
  );
}
