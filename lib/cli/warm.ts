/**
 * Warming: for each image, read its manifest through the cache (for an index, every platform or the one
 * asked for), then pull every blob through the cache with bounded concurrency, so the first real pull is a
 * hit. A failing image is reported and the others go on. Blobs shared by several images are pulled once.
 */
import { formatPlatform, ImageRef, Platform, platformMatches } from './image-ref';
import { Limit } from './limit';
import { RegistryClient } from './registry-client';

export interface ImagePlan {
  readonly platforms: readonly string[];
  readonly blobs: number;
  readonly bytes: number;
}

export interface ImageResult extends ImagePlan {
  readonly image: string;
  readonly ms: number;
  /** Set when the image failed. */
  readonly error?: string;
}

/** What the progress display is told. */
export interface WarmReporter {
  planned(image: string, plan: ImagePlan): void;
  progress(image: string, bytes: number): void;
  finished(result: ImageResult): void;
}

export interface WarmOptions {
  readonly client: RegistryClient;
  readonly images: readonly ImageRef[];
  readonly platform?: Platform;
  readonly concurrency: number;
  readonly reporter: WarmReporter;
}

interface Descriptor {
  readonly mediaType?: string;
  readonly digest: string;
  readonly size: number;
  readonly platform?: { os?: string; architecture?: string; variant?: string };
}

interface ManifestJson {
  readonly mediaType?: string;
  readonly manifests?: Descriptor[];
  readonly config?: Descriptor;
  readonly layers?: Descriptor[];
}

const INDEX_TYPES = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json']);

export async function warmImages(options: WarmOptions): Promise<ImageResult[]> {
  const limit = new Limit(options.concurrency);
  const shared = new Map<string, Promise<void>>();
  return Promise.all(options.images.map((image) => warmImage(image, options, limit, shared)));
}

async function warmImage(image: ImageRef, options: WarmOptions, limit: Limit, shared: Map<string, Promise<void>>): Promise<ImageResult> {
  const started = Date.now();
  let plan: ImagePlan = { platforms: [], blobs: 0, bytes: 0 };
  try {
    const { platforms, blobs } = await resolve(image, options, limit);
    plan = { platforms, blobs: blobs.length, bytes: blobs.reduce((sum, b) => sum + b.size, 0) };
    options.reporter.planned(image.text, plan);
    const failures: string[] = [];
    await Promise.all(
      blobs.map(async (blob) => {
        try {
          let pending = shared.get(blob.digest);
          if (pending) {
            await pending;
            options.reporter.progress(image.text, blob.size);
            return;
          }
          pending = limit.run(() =>
            options.client.blob(image.repository, blob.digest, blob.size, (n) => options.reporter.progress(image.text, n)),
          );
          shared.set(blob.digest, pending);
          await pending;
        } catch (err) {
          failures.push(err instanceof Error ? err.message : String(err));
        }
      }),
    );
    if (failures.length)
      throw new Error(failures.length > 1 ? `${failures[0]} (and ${failures.length - 1} more blob errors)` : failures[0]);
    const result = { image: image.text, ...plan, ms: Date.now() - started };
    options.reporter.finished(result);
    return result;
  } catch (err) {
    const result = { image: image.text, ...plan, ms: Date.now() - started, error: err instanceof Error ? err.message : String(err) };
    options.reporter.finished(result);
    return result;
  }
}

/** The platforms and distinct blobs (configs and layers) of an image, manifests fetched through the cache. */
async function resolve(image: ImageRef, options: WarmOptions, limit: Limit): Promise<{ platforms: string[]; blobs: Descriptor[] }> {
  const { client, platform } = options;
  const top = await limit.run(() => client.manifest(image.repository, image.reference));
  const topJson = parseManifest(top.body, image.text);
  const blobs = new Map<string, Descriptor>();
  if (!INDEX_TYPES.has(top.mediaType) && !topJson.manifests) {
    collect(topJson, blobs, image.text);
    return { platforms: ['single'], blobs: [...blobs.values()] };
  }
  const entries = topJson.manifests ?? [];
  const chosen = platform ? entries.filter((m) => m.platform && platformMatches(platform, m.platform)) : entries;
  if (chosen.length === 0) {
    const available = entries.map((m) => formatPlatform(m.platform ?? {})).join(', ') || 'none';
    throw new Error(
      platform ? `no ${formatPlatform(platform)} manifest in the index (it has ${available})` : 'the index lists no manifests',
    );
  }
  const children = await Promise.all(chosen.map((m) => limit.run(() => client.manifest(image.repository, m.digest))));
  children.forEach((child) => collect(parseManifest(child.body, image.text), blobs, image.text));
  return { platforms: chosen.map((m) => formatPlatform(m.platform ?? {})), blobs: [...blobs.values()] };
}

function parseManifest(body: Buffer, image: string): ManifestJson {
  try {
    return JSON.parse(body.toString('utf8')) as ManifestJson;
  } catch {
    throw new Error(`${image}: manifest is not JSON`);
  }
}

function collect(manifest: ManifestJson, into: Map<string, Descriptor>, image: string): void {
  if (manifest.manifests) throw new Error(`${image}: nested index (an index inside an index) is not supported`);
  if (!manifest.config && !manifest.layers) throw new Error(`${image}: manifest has neither config nor layers (schema 1 is not supported)`);
  for (const d of [...(manifest.config ? [manifest.config] : []), ...(manifest.layers ?? [])]) {
    if (d.mediaType && /foreign|nondistributable/.test(d.mediaType)) continue; // pulled from their own URLs, never via a registry
    if (typeof d.digest !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(d.digest)) throw new Error(`${image}: descriptor with a bad digest`);
    if (!into.has(d.digest)) into.set(d.digest, { digest: d.digest, size: typeof d.size === 'number' ? d.size : -1 });
  }
}
