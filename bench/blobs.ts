/**
 * Benchmark content: random blob files generated on disk (never a whole large blob in memory), pushed to the
 * upstream registry with a streamed monolithic upload, plus a small tagged image for the manifest benchmark.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { once } from 'node:events';
import { makeImage, pushImage } from '../harness/images';

export interface BlobFile {
  readonly name: string;
  readonly path: string;
  readonly size: number;
  readonly digest: string;
}

const CHUNK = 1 << 20;

/**
 * Writes `size` random-looking bytes to dir/name in 1 MiB chunks, hashing as it goes. The bytes are AES-256-CTR
 * keystream under a random key: incompressible and unique per call like randomBytes, several times faster.
 */
export async function generateBlob(dir: string, name: string, size: number): Promise<BlobFile> {
  const path = join(dir, name);
  const out = createWriteStream(path);
  const hash = createHash('sha256');
  const keystream = createCipheriv('aes-256-ctr', randomBytes(32), randomBytes(16));
  const zeros = Buffer.alloc(CHUNK);
  for (let written = 0; written < size;) {
    const n = Math.min(CHUNK, size - written);
    const data = keystream.update(zeros.subarray(0, n)); // a new buffer per write: the stream may still hold the last one
    hash.update(data);
    if (!out.write(data)) await once(out, 'drain');
    written += n;
  }
  out.end();
  await once(out, 'finish');
  return { name, path, size, digest: `sha256:${hash.digest('hex')}` };
}

/** Pushes a blob file to registryUrl/repo with POST + streamed PUT (distribution's monolithic upload). */
export async function pushBlobFile(registryUrl: string, repo: string, blob: BlobFile): Promise<void> {
  const start = await fetch(`${registryUrl}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  if (start.status !== 202) throw new Error(`starting upload of ${blob.name} to ${repo}: ${start.status} ${await start.text()}`);
  const location = new URL(start.headers.get('location') ?? '', registryUrl);
  location.searchParams.set('digest', blob.digest);
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(
      location,
      { method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'content-length': String(blob.size) } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    createReadStream(blob.path).on('error', reject).pipe(req);
  });
  if (status !== 201) throw new Error(`uploading ${blob.name} (${blob.digest}) to ${repo}: status ${status}`);
}

/** Pushes a small single-layer image as repo:tag; returns its manifest media type for the Accept header. */
export async function pushSmallImage(registryUrl: string, repo: string, tag: string): Promise<{ mediaType: string; digest: string }> {
  const image = makeImage({ layerSizes: [4096] });
  await pushImage(registryUrl, repo, tag, image);
  return { mediaType: image.mediaType, digest: image.digest };
}
