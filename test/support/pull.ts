/** A blob pulled the way a client pulls it: the sha256 of the body, streamed (never held whole). */
import { createHash } from 'node:crypto';
import { request } from 'undici';

/** GETs `<base>/v2/<repo>/blobs/<digest>` and returns the digest of what came; throws unless 200 and complete. */
export async function pulledBlobDigest(base: string, repo: string, digest: string, onBytes?: (n: number) => void): Promise<string> {
  const res = await request(`${base}/v2/${repo}/blobs/${digest}`);
  if (res.statusCode !== 200) {
    await res.body.dump();
    throw new Error(`GET ${base}/v2/${repo}/blobs/${digest} answered ${res.statusCode}`);
  }
  const hash = createHash('sha256');
  for await (const chunk of res.body) {
    hash.update(chunk as Buffer);
    onBytes?.((chunk as Buffer).length);
  }
  return `sha256:${hash.digest('hex')}`;
}
