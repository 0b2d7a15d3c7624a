/**
 * Manifests by digest and by tag.
 *
 * By digest: immutable. Served from storage once the client is authorized; on a miss fetched with the client's
 * credentials, verified (the bytes hash to the digest) and stored.
 *
 * By tag: the tag → digest answer is trusted for `tagttl`; after that (or when the client's authorization is
 * not fresh) a HEAD with the client's credentials revalidates the tag and authorizes in one request. When the
 * upstream is unreachable or failing, the last known digest is served for up to `maxstale`, with a
 * `Warning: 110` header, to clients that were authorized for it before. An upstream 404 is relayed and forgets
 * the tag record (never the blobs).
 *
 * Concurrent identical misses (same client credential, repository, reference and Accept) share one upstream
 * request; they are not shared across credentials, so one client's answer is never another's authorization.
 */
import { createHash } from 'node:crypto';
import type { ClientRequest, PullContext } from './context';
import { digestOf, MAX_MANIFEST_BYTES, type StoredManifest } from './manifest-store';
import { type AccessTarget, ociError, type OciError, refusal, unavailable } from './oci-error';
import { parseDigest, type Digest, type Reference } from './reference';
import { readCapped, TooLargeError } from './relay';
import { header } from './upstream';

export type ManifestAnswer =
  | {
      readonly ok: true;
      readonly manifest: StoredManifest;
      /** Where the bytes came from this time (for the served-bytes metric). */
      readonly source: 'storage' | 'upstream';
      readonly stale?: boolean;
    }
  | { readonly ok: false; readonly error: OciError };

const inFlight = new WeakMap<PullContext, Map<string, Promise<ManifestAnswer>>>();

export async function answerManifest(ctx: PullContext, client: ClientRequest, name: string, reference: Reference): Promise<ManifestAnswer> {
  return reference.kind === 'digest' ? byDigest(ctx, client, name, reference.digest) : byTag(ctx, client, name, reference.tag);
}

async function byDigest(ctx: PullContext, client: ClientRequest, name: string, digest: Digest): Promise<ManifestAnswer> {
  const target: AccessTarget = { kind: 'manifest', name, reference: digest.text };
  const stored = await readStored(ctx, digest);
  if (stored) {
    ctx.events.emit('lookup', { kind: 'manifest', result: 'hit' });
    const decision = await ctx.authorizer.check(client.credential, target, client.accept);
    return decision.allowed ? { ok: true, manifest: stored, source: 'storage' } : { ok: false, error: decision.error };
  }
  ctx.events.emit('lookup', { kind: 'manifest', result: 'miss' });
  if (ctx.notFound.has(client.credential, target)) return { ok: false, error: refusal(404, {}, target) };
  return shared(ctx, client, name, digest.text, () => fetchManifest(ctx, client, name, digest.text, digest));
}

async function byTag(ctx: PullContext, client: ClientRequest, name: string, tag: string): Promise<ManifestAnswer> {
  const target: AccessTarget = { kind: 'manifest', name, reference: tag };
  const record = await ctx.manifests.readTag(name, tag).catch(() => undefined);
  const usable = record && acceptable(client.accept, record.mediaType) ? record : undefined;
  if (usable && Date.now() - usable.checkedAt < ctx.options.tagttl && ctx.authorizer.isFresh(client.credential, target)) {
    const digest = parseDigest(usable.digest);
    const stored = digest.ok ? await readStored(ctx, digest.value) : undefined;
    if (stored) {
      ctx.events.emit('lookup', { kind: 'tag', result: 'hit' });
      return { ok: true, manifest: stored, source: 'storage' };
    }
  }
  ctx.events.emit('lookup', { kind: 'tag', result: 'miss' });
  if (ctx.notFound.has(client.credential, target)) return { ok: false, error: refusal(404, {}, target) };
  return shared(ctx, client, name, tag, () => revalidateTag(ctx, client, name, tag, usable));
}

/** HEADs the tag with the client's credentials: authorizes, and tells the current digest. */
async function revalidateTag(
  ctx: PullContext,
  client: ClientRequest,
  name: string,
  tag: string,
  record: { digest: string; mediaType: string; checkedAt: number } | undefined,
): Promise<ManifestAnswer> {
  const target: AccessTarget = { kind: 'manifest', name, reference: tag };
  const head = await ctx.upstream.request({
    method: 'HEAD',
    path: `/v2/${name}/manifests/${tag}`,
    headers: { authorization: client.credential, accept: client.accept },
  });
  if (!head.ok) return serveStale(ctx, client, name, tag, record, head.reason);
  head.body.resume();
  if (head.status === 404) {
    ctx.notFound.remember(client.credential, target);
    await ctx.manifests.deleteTag(name, tag).catch(() => undefined);
  }
  if (head.status !== 200) {
    ctx.authorizer.refused(client.credential, target, head.status);
    // HEAD answers carry no body; GET the tag for the upstream's own error body when the client should see it.
    return { ok: false, error: refusal(head.status, head.headers, target) };
  }
  ctx.authorizer.allow(client.credential, target);
  const announced = parseDigest(header(head.headers, 'docker-content-digest') ?? '');
  const answer = announced.ok
    ? await manifestFor(ctx, client, name, announced.value)
    : await fetchManifest(ctx, client, name, tag, undefined);
  if (answer.ok) {
    ctx.authorizer.allow(client.credential, { kind: 'manifest', name, reference: answer.manifest.digest.text });
    const next = { digest: answer.manifest.digest.text, mediaType: answer.manifest.mediaType, checkedAt: Date.now() };
    await ctx.manifests.writeTag(name, tag, next).catch((err) => storageFailed(ctx, client, 'write', err));
  }
  return answer;
}

/** The manifest `digest` of a tag just revalidated: from storage, or fetched. */
async function manifestFor(ctx: PullContext, client: ClientRequest, name: string, digest: Digest): Promise<ManifestAnswer> {
  const stored = await readStored(ctx, digest);
  if (stored) return { ok: true, manifest: stored, source: 'storage' };
  return fetchManifest(ctx, client, name, digest.text, digest);
}

function serveStale(
  ctx: PullContext,
  client: ClientRequest,
  name: string,
  tag: string,
  record: { digest: string; checkedAt: number } | undefined,
  reason: string,
): Promise<ManifestAnswer> | ManifestAnswer {
  const target: AccessTarget = { kind: 'manifest', name, reference: tag };
  if (!record || Date.now() - record.checkedAt >= ctx.options.maxstale || !ctx.authorizer.allowedWhileOffline(client.credential, target)) {
    return { ok: false, error: unavailable(reason) };
  }
  const digest = parseDigest(record.digest);
  if (!digest.ok) return { ok: false, error: unavailable(reason) };
  return readStored(ctx, digest.value).then((stored): ManifestAnswer => {
    if (!stored) return { ok: false, error: unavailable(reason) };
    client.log.warn('upstream unreachable; serving the last known tag', {
      repository: name,
      tag,
      digest: record.digest,
      ageSeconds: Math.round((Date.now() - record.checkedAt) / 1000),
      reason,
    });
    ctx.events.emit('stale', { kind: 'tag', name });
    return { ok: true, manifest: stored, source: 'storage', stale: true };
  });
}

/** GETs a manifest with the client's credentials, verifies it, stores it. */
async function fetchManifest(
  ctx: PullContext,
  client: ClientRequest,
  name: string,
  reference: string,
  expected: Digest | undefined,
): Promise<ManifestAnswer> {
  const target: AccessTarget = { kind: 'manifest', name, reference };
  const res = await ctx.upstream.request({
    method: 'GET',
    path: `/v2/${name}/manifests/${reference}`,
    headers: { authorization: client.credential, accept: client.accept },
  });
  if (!res.ok) return { ok: false, error: unavailable(res.reason) };
  if (res.status !== 200) {
    if (res.status === 404) ctx.notFound.remember(client.credential, target);
    ctx.authorizer.refused(client.credential, target, res.status);
    const body = await readCapped(res.body, 64 * 1024).catch(() => undefined);
    return { ok: false, error: refusal(res.status, res.headers, target, body) };
  }
  let bytes: Buffer;
  try {
    bytes = await readCapped(res.body, MAX_MANIFEST_BYTES);
  } catch (err) {
    const message =
      err instanceof TooLargeError
        ? `the upstream manifest is larger than ${MAX_MANIFEST_BYTES} bytes`
        : 'the upstream manifest transfer failed';
    return { ok: false, error: ociError(502, 'MANIFEST_INVALID', message, { repository: name, reference }) };
  }
  const algorithm = expected?.algorithm ?? 'sha256';
  const hex = digestOf(algorithm, bytes);
  const announced = header(res.headers, 'docker-content-digest');
  if ((expected && hex !== expected.hex) || (announced && announced.startsWith(`${algorithm}:`) && announced !== `${algorithm}:${hex}`)) {
    client.log.warn('upstream manifest does not match its digest; not cached', { repository: name, reference });
    return {
      ok: false,
      error: ociError(502, 'MANIFEST_INVALID', 'the upstream sent a manifest whose bytes do not match its digest', {
        repository: name,
        reference,
      }),
    };
  }
  const digest = expected ?? ({ algorithm, hex, text: `${algorithm}:${hex}` } as Digest);
  const manifest: StoredManifest = {
    digest,
    mediaType: header(res.headers, 'content-type') ?? 'application/vnd.oci.image.manifest.v1+json',
    bytes,
  };
  ctx.authorizer.allow(client.credential, target);
  await ctx.manifests.writeManifest(manifest).then(
    (stored) => ctx.events.emit('stored', stored),
    (err) => storageFailed(ctx, client, 'write', err),
  );
  return { ok: true, manifest, source: 'upstream' };
}

async function readStored(ctx: PullContext, digest: Digest): Promise<StoredManifest | undefined> {
  return ctx.manifests.readManifest(digest).catch((err) => {
    ctx.log.error('storage read of a manifest failed; asking the upstream', { digest: digest.text, reason: (err as Error).message });
    ctx.events.emit('storageError', { operation: 'read' });
    return undefined;
  });
}

function storageFailed(ctx: PullContext, client: ClientRequest, operation: string, err: unknown): void {
  client.log.error('storage write failed; the answer is served but not cached', { operation, reason: (err as Error).message });
  ctx.events.emit('storageError', { operation });
}

/** Runs `work` once for concurrent identical requests of one client. */
function shared(
  ctx: PullContext,
  client: ClientRequest,
  name: string,
  reference: string,
  work: () => Promise<ManifestAnswer>,
): Promise<ManifestAnswer> {
  let map = inFlight.get(ctx);
  if (!map) inFlight.set(ctx, (map = new Map()));
  const key = createHash('sha256')
    .update(JSON.stringify([client.credential ?? '', name, reference, client.accept ?? '']))
    .digest('hex');
  const existing = map.get(key);
  if (existing) return existing;
  const running = work().finally(() => map.delete(key));
  map.set(key, running);
  return running;
}

/** Whether a client sending `accept` takes `mediaType` (no Accept, or a wildcard, takes anything). */
export function acceptable(accept: string | undefined, mediaType: string): boolean {
  if (!accept) return true;
  const types = accept.split(',').map((t) => t.split(';')[0].trim().toLowerCase());
  return types.includes('*/*') || types.includes(mediaType.split(';')[0].trim().toLowerCase());
}
