/**
 * Image references for `warm`: `repo/name:tag`, `repo/name@sha256:…` or `repo/name` (tag latest), pulled
 * through the cache. A leading registry host is accepted only when it is the cache itself.
 */
import { UsageError } from './errors';

export interface ImageRef {
  /** Repository path inside the registry, e.g. `engineering/api`. */
  readonly repository: string;
  /** A tag or a `sha256:` digest. */
  readonly reference: string;
  /** How the operator wrote it (for progress and the summary). */
  readonly text: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;

export function parseImageRef(text: string, cache: URL): ImageRef {
  const trimmed = text.trim();
  let name = trimmed;
  let reference: string | undefined;
  const at = name.indexOf('@');
  if (at >= 0) {
    reference = name.slice(at + 1);
    name = name.slice(0, at);
    if (!DIGEST.test(reference)) throw new UsageError(`image "${text}": digest must be sha256: and 64 lowercase hex digits`);
  }
  const lastSlash = name.lastIndexOf('/');
  const colon = name.lastIndexOf(':');
  if (colon > lastSlash) {
    const tag = name.slice(colon + 1);
    name = name.slice(0, colon);
    if (!TAG.test(tag)) throw new UsageError(`image "${text}": tag "${tag}" is not a valid tag ([A-Za-z0-9_.-], up to 128)`);
    reference ??= tag; // name:tag@digest pulls by digest, like docker
  }
  const parts = name.split('/');
  if (parts.length > 1 && (parts[0].includes('.') || parts[0].includes(':') || parts[0] === 'localhost')) {
    const host = parts.shift() as string;
    if (host.toLowerCase() !== cache.host.toLowerCase()) {
      throw new UsageError(
        `image "${text}" names registry ${host}, but warm pulls through --cache ${cache.host}: drop the host or fix --cache`,
      );
    }
  }
  if (parts.length === 0 || !parts.every((p) => COMPONENT.test(p))) {
    throw new UsageError(`image "${text}": repository "${parts.join('/')}" must be lowercase path components like team/app`);
  }
  return { repository: parts.join('/'), reference: reference ?? 'latest', text: trimmed };
}

/** Image lines of a --file list: one per line; blank lines and `#` comments are skipped. */
export function imageLines(content: string): string[] {
  return content
    .split(/\r?\n/)
    .map((line) => line.replace(/#.*/, '').trim())
    .filter((line) => line.length > 0);
}

export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
}

export function parsePlatform(text: string): Platform {
  const [os, architecture, variant, extra] = text.split('/');
  if (!os || !architecture || extra !== undefined) throw new UsageError(`--platform "${text}" must be os/arch[/variant], e.g. linux/amd64`);
  return { os, architecture, ...(variant ? { variant } : {}) };
}

export function formatPlatform(p: { os?: string; architecture?: string; variant?: string }): string {
  return [p.os ?? '?', p.architecture ?? '?', ...(p.variant ? [p.variant] : [])].join('/');
}

/** A variant in the filter must match; a filter without variant matches any variant. */
export function platformMatches(filter: Platform, p: { os?: string; architecture?: string; variant?: string }): boolean {
  return filter.os === p.os && filter.architecture === p.architecture && (!filter.variant || filter.variant === p.variant);
}
