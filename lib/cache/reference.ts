/**
 * The OCI distribution spec's grammar for repository names, tags and digests, and the routing of a request
 * path onto the pull API. Pure functions: a path is turned into a typed route or a typed error before any
 * storage or upstream is touched, so a malformed name can never become a file name or an upstream URL.
 */
import { OciError, ociError } from './oci-error';

/** One path component of a repository name: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`. */
const NAME_COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const MAX_NAME = 255;

/** Hex length of each digest algorithm this cache can verify. */
export const DIGEST_ALGORITHMS = { sha256: 64, sha512: 128 } as const;
export type DigestAlgorithm = keyof typeof DIGEST_ALGORITHMS;

export interface Digest {
  readonly algorithm: DigestAlgorithm;
  /** Lowercase hex. */
  readonly hex: string;
  /** `sha256:<hex>` */
  readonly text: string;
}

export type Reference = { readonly kind: 'tag'; readonly tag: string } | { readonly kind: 'digest'; readonly digest: Digest };

export type Route =
  | { readonly kind: 'base' }
  | { readonly kind: 'manifest'; readonly name: string; readonly reference: Reference }
  | { readonly kind: 'blob'; readonly name: string; readonly digest: Digest }
  | { readonly kind: 'tags'; readonly name: string };

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: OciError };

export function isValidName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_NAME && name.split('/').every((c) => NAME_COMPONENT.test(c));
}

export function isValidTag(tag: string): boolean {
  return TAG.test(tag);
}

/** Parses `algorithm:hex`; only algorithms the cache can verify are accepted. */
export function parseDigest(text: string): Parsed<Digest> {
  const colon = text.indexOf(':');
  const algorithm = text.slice(0, colon);
  const hex = text.slice(colon + 1);
  const length = (DIGEST_ALGORITHMS as Record<string, number>)[algorithm];
  if (colon < 0 || length === undefined) {
    return fail(ociError(400, 'DIGEST_INVALID', `digest "${clip(text)}" must be sha256:<64 hex> or sha512:<128 hex>`));
  }
  if (hex.length !== length || !/^[0-9a-f]+$/.test(hex)) {
    return fail(ociError(400, 'DIGEST_INVALID', `digest "${clip(text)}" must be ${algorithm}: followed by ${length} lowercase hex digits`));
  }
  return { ok: true, value: { algorithm: algorithm as DigestAlgorithm, hex, text } };
}

const PUSH_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Routes a request of the pull API. `path` is the URL path without the query. Unknown paths under /v2/ are
 * 404s; push methods are 405 UNSUPPORTED (this is a read-only cache).
 */
export function parseRoute(method: string, path: string): Parsed<Route> {
  if (PUSH_METHODS.has(method)) {
    return fail(
      ociError(405, 'UNSUPPORTED', `${method} is not supported: this is a read-only pull-through cache; push to the upstream registry`),
    );
  }
  if (method !== 'GET' && method !== 'HEAD') {
    return fail(ociError(405, 'UNSUPPORTED', `${method} is not supported; use GET or HEAD`));
  }
  if (path === '/v2/' || path === '/v2') return { ok: true, value: { kind: 'base' } };
  if (!path.startsWith('/v2/')) return fail(ociError(404, 'NOT_FOUND', 'not a registry API path; the pull API lives under /v2/'));
  const rest = path.slice('/v2/'.length);
  const match = /^(.+)\/(manifests|blobs|tags)\/([^/]+)$/.exec(rest);
  if (!match) return fail(ociError(404, 'NOT_FOUND', 'unknown registry API path; expected /v2/<name>/manifests|blobs|tags/...'));
  const [, name, kind, last] = match;
  if (!isValidName(name)) {
    return fail(
      ociError(
        400,
        'NAME_INVALID',
        `repository name "${clip(name)}" is invalid: lowercase components [a-z0-9] joined by . _ __ or -, separated by /, at most ${MAX_NAME} characters`,
      ),
    );
  }
  switch (kind) {
    case 'manifests': {
      if (last.includes(':')) {
        const digest = parseDigest(last);
        return digest.ok ? { ok: true, value: { kind: 'manifest', name, reference: { kind: 'digest', digest: digest.value } } } : digest;
      }
      if (!isValidTag(last)) {
        return fail(ociError(400, 'TAG_INVALID', `tag "${clip(last)}" is invalid: [a-zA-Z0-9_] then up to 127 of [a-zA-Z0-9._-]`));
      }
      return { ok: true, value: { kind: 'manifest', name, reference: { kind: 'tag', tag: last } } };
    }
    case 'blobs': {
      if (last === 'uploads') return fail(ociError(405, 'UNSUPPORTED', 'blob uploads are not supported: push to the upstream registry'));
      const digest = parseDigest(last);
      return digest.ok ? { ok: true, value: { kind: 'blob', name, digest: digest.value } } : digest;
    }
    default:
      if (last !== 'list') return fail(ociError(404, 'NOT_FOUND', 'unknown registry API path; did you mean /v2/<name>/tags/list?'));
      return { ok: true, value: { kind: 'tags', name } };
  }
}

/** Storage key of a verified blob (kept exactly: the sweeper and other replicas depend on it). */
export function blobKey(digest: Digest): string {
  return `blobs/${digest.algorithm}/${digest.hex.slice(0, 2)}/${digest.hex}/data`;
}

/** Storage key of a verified manifest, stored with its media type. */
export function manifestKey(digest: Digest): string {
  return `manifests/${digest.algorithm}/${digest.hex.slice(0, 2)}/${digest.hex}/data`;
}

/**
 * Storage key of a tag record (digest, mediaType, checkedAt): `tags/<repository>/_tags/<tag>`. No repository path
 * component starts with `_`, so the tags of `team/small` (`tags/team/small/_tags/app`) and the repository
 * `team/small/app` (`tags/team/small/app/_tags/…`) never share a key or a directory (distribution keeps
 * `_manifests/tags/` for the same reason).
 */
export function tagKey(name: string, tag: string): string {
  return `tags/${name}/${TAGS_DIR}/${tag}`;
}

const TAGS_DIR = '_tags';

/**
 * Back-reference from a manifest to a tag record naming it: `tagrefs/<alg>/<xx>/<hex>/<repository>/_tags/<tag>`,
 * an empty object written with the record (manifest-store.ts). The sweeper, evicting a manifest, lists the
 * manifest's `tagRefsPrefix` and removes exactly the tags that still name it (sweep-run.ts), instead of reading every
 * tag of the store.
 */
export function tagRefKey(digest: Digest, name: string, tag: string): string {
  return `tagrefs/${digest.algorithm}/${digest.hex.slice(0, 2)}/${digest.hex}/${tagKey(name, tag).slice('tags/'.length)}`;
}

/** `manifests/<alg>/<xx>/<hex>/data` → `tagrefs/<alg>/<xx>/<hex>/`: where the back-references of its tags are. */
export function tagRefsPrefix(manifestStorageKey: string): string {
  return `tagrefs/${manifestStorageKey.slice('manifests/'.length, -'data'.length)}`;
}

/** The tag record key a back-reference names (`tagrefs/<alg>/<xx>/<hex>/` stripped, `tags/` put back). */
export function tagKeyOfRef(refKey: string): string {
  return `tags/${refKey.split('/').slice(4).join('/')}`;
}

/** A key of the earlier layout, `tags/<repository>/<tag>`: the key it has now, or undefined for a current key. */
export function migratedTagKey(key: string): string | undefined {
  const parts = key.split('/');
  if (parts.length < 3 || parts[0] !== 'tags' || parts[parts.length - 2] === TAGS_DIR) return undefined;
  const name = parts.slice(1, -1).join('/');
  const tag = parts[parts.length - 1];
  return isValidName(name) && isValidTag(tag) ? tagKey(name, tag) : undefined;
}

function fail(error: OciError): { ok: false; error: OciError } {
  return { ok: false, error };
}

/** Echoed input is cut short so a huge path cannot blow up an error body or a log line. */
function clip(text: string): string {
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}
