/**
 * Test images the tests make themselves (there is no Docker Hub here): real gzipped tar layers that
 * `docker pull` can extract, an image config with matching diff_ids, and Docker schema2, OCI, or multi-arch
 * index manifests, pushed to a registry through the distribution push API.
 */
import { createHash, randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';

export const MEDIA = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export interface Blob {
  readonly digest: string;
  readonly data: Buffer;
  readonly mediaType: string;
}

export interface TestImage {
  /** Digest of the top-level manifest (the index for multi-arch images). */
  readonly digest: string;
  readonly manifest: Buffer;
  readonly mediaType: string;
  /** Every blob (configs and layers) of every platform. */
  readonly blobs: readonly Blob[];
  /** Platform manifests of an index. */
  readonly children: readonly TestImage[];
}

/** A ustar archive holding `files` (name → content). */
export function tar(files: Record<string, Buffer>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, content] of Object.entries(files)) {
    const header = Buffer.alloc(512);
    header.write(name, 0, 100);
    header.write('0000644\0', 100);
    header.write('0000000\0', 108);
    header.write('0000000\0', 116);
    header.write(content.length.toString(8).padStart(11, '0') + '\0', 124);
    header.write('00000000000\0', 136);
    header.write('        ', 148);
    header.write('0', 156);
    header.write('ustar\0', 257);
    header.write('00', 263);
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    parts.push(header, content, Buffer.alloc((512 - (content.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export interface ImageSpec {
  /** Sizes in bytes of the random file in each layer. Default: [2048, 65536]. */
  readonly layerSizes?: readonly number[];
  readonly format?: 'docker' | 'oci';
  readonly architecture?: string;
}

/** One single-platform image. Content is random, so every call makes new digests. */
export function makeImage(spec: ImageSpec = {}): TestImage {
  const oci = spec.format === 'oci';
  const layers = (spec.layerSizes ?? [2048, 65536]).map((size, i) => {
    const uncompressed = tar({ [`layer${i}.bin`]: randomBytes(size) });
    return { uncompressed, blob: { data: gzipSync(uncompressed), mediaType: oci ? MEDIA.ociLayer : MEDIA.dockerLayer } };
  });
  const config = Buffer.from(
    JSON.stringify({
      architecture: spec.architecture ?? 'amd64',
      os: 'linux',
      config: { Cmd: ['/layer0.bin'] },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => sha256(l.uncompressed)) },
    }),
  );
  const configBlob: Blob = { data: config, digest: sha256(config), mediaType: oci ? MEDIA.ociConfig : MEDIA.dockerConfig };
  const layerBlobs: Blob[] = layers.map((l) => ({ ...l.blob, digest: sha256(l.blob.data) }));
  const mediaType = oci ? MEDIA.ociManifest : MEDIA.dockerManifest;
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      config: descriptor(configBlob),
      layers: layerBlobs.map(descriptor),
    }),
  );
  return { digest: sha256(manifest), manifest, mediaType, blobs: [configBlob, ...layerBlobs], children: [] };
}

/** A multi-arch index (OCI image index, or Docker manifest list) over one image per architecture. */
export function makeIndex(architectures: readonly string[] = ['amd64', 'arm64'], format: 'docker' | 'oci' = 'oci'): TestImage {
  const children = architectures.map((architecture) => makeImage({ architecture, format, layerSizes: [4096] }));
  const mediaType = format === 'oci' ? MEDIA.ociIndex : MEDIA.dockerList;
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      manifests: children.map((child, i) => ({
        mediaType: child.mediaType,
        digest: child.digest,
        size: child.manifest.length,
        platform: { architecture: architectures[i], os: 'linux' },
      })),
    }),
  );
  return { digest: sha256(manifest), manifest, mediaType, blobs: children.flatMap((c) => c.blobs), children };
}

function descriptor(blob: Blob) {
  return { mediaType: blob.mediaType, digest: blob.digest, size: blob.data.length };
}

/** Pushes blobs then manifests (children first) to `registryUrl`/`repo`:`tag`. `headers` carry auth if needed. */
export async function pushImage(
  registryUrl: string,
  repo: string,
  tag: string,
  image: TestImage,
  headers: Record<string, string> = {},
): Promise<void> {
  for (const blob of image.blobs) await pushBlob(registryUrl, repo, blob.data, headers);
  for (const child of image.children) await pushManifest(registryUrl, repo, child.digest, child, headers);
  await pushManifest(registryUrl, repo, tag, image, headers);
}

/** Pushes one blob (monolithic upload) and returns its digest. */
export async function pushBlob(registryUrl: string, repo: string, data: Buffer, headers: Record<string, string> = {}): Promise<string> {
  const digest = sha256(data);
  const start = await fetch(`${registryUrl}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers });
  if (start.status !== 202) throw new Error(`starting upload to ${repo}: ${start.status} ${await start.text()}`);
  const location = new URL(start.headers.get('location') as string, registryUrl);
  location.searchParams.set('digest', digest);
  const put = await fetch(location, {
    method: 'PUT',
    // No explicit content-length: fetch derives it from the Buffer, and an explicit one is refused once undici 7
    // (loaded by the cache in the same process) is the global dispatcher.
    headers: { ...headers, 'content-type': 'application/octet-stream' },
    body: data,
  });
  if (put.status !== 201) throw new Error(`uploading ${digest} to ${repo}: ${put.status} ${await put.text()}`);
  return digest;
}

async function pushManifest(
  registryUrl: string,
  repo: string,
  reference: string,
  image: TestImage,
  headers: Record<string, string>,
): Promise<void> {
  const res = await fetch(`${registryUrl}/v2/${repo}/manifests/${reference}`, {
    method: 'PUT',
    headers: { ...headers, 'content-type': image.mediaType },
    body: image.manifest,
  });
  if (res.status !== 201) throw new Error(`pushing manifest ${repo}:${reference}: ${res.status} ${await res.text()}`);
}
