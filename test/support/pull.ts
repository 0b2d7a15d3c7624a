/** A blob pulled the way a client pulls it: the sha256 of the body, streamed (never held whole). */
import { createHash } from 'node:crypto';
import { request } from 'undici';
import type { TestRegistry } from '../../harness/registry';

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

/** `clients` concurrent pulls of each blob through each of `bases`, all at once: what each received, and how long. */
export async function pullConcurrently(
  bases: readonly string[],
  repo: string,
  digests: readonly string[],
  clients: number,
): Promise<{ ms: number; received: { want: string; got: string }[] }> {
  const started = Date.now();
  const received = await Promise.all(
    digests.flatMap((want) =>
      bases.flatMap((base) => Array.from({ length: clients }, async () => ({ want, got: await pulledBlobDigest(base, repo, want) }))),
    ),
  );
  return { ms: Date.now() - started, received };
}

/** The upstream's GETs of each of `digests` (access log lines are written when a request ends: waits for them). */
export async function upstreamGetsPerBlob(upstream: TestRegistry, digests: readonly string[]): Promise<number[]> {
  await new Promise((r) => setTimeout(r, 500));
  const gets = upstream.blobGets().map((e) => e.path.split('/blobs/')[1]);
  return digests.map((digest) => gets.filter((g) => g === digest).length);
}
