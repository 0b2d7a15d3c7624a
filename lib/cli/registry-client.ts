/**
 * A minimal client of the OCI distribution pull API, for warming a cache: manifests (buffered, they are small)
 * and blobs (streamed and discarded while their sha256 is checked). Handles Basic and Bearer challenges; a
 * token realm gets credentials only when `realmTrusted` allows it.
 */
import { createHash } from 'node:crypto';
import { Dispatcher, request } from 'undici';
import { parseChallenge, realmTrusted } from './challenge';
import { basicAuthorization, Credentials } from './credentials';
import { CommandError } from './errors';
import { unreachable } from './transport';

export const MANIFEST_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
] as const;

const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_REDIRECTS = 3;

export interface Manifest {
  readonly mediaType: string;
  readonly digest: string;
  readonly body: Buffer;
}

export interface RegistryClientOptions {
  readonly credentials?: Credentials;
  readonly dispatcher: Dispatcher;
  /** Hosts whose token realms may receive credentials (the cache and `--dtr`). */
  readonly trustedRealms: readonly URL[];
}

export class RegistryClient {
  /** Authorization header per repository, once a challenge was answered. */
  private readonly auth = new Map<string, string>();

  constructor(
    readonly base: URL,
    private readonly options: RegistryClientOptions,
  ) {}

  async manifest(repository: string, reference: string): Promise<Manifest> {
    const path = `/v2/${repository}/manifests/${reference}`;
    const res = await this.get(repository, path, { accept: MANIFEST_TYPES.join(', ') });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_MANIFEST_BYTES) {
        res.body.destroy();
        throw new CommandError(`manifest ${repository}:${reference} is larger than 4 MiB`);
      }
      chunks.push(chunk);
    }
    const body = Buffer.concat(chunks);
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    if (reference.startsWith('sha256:') && digest !== reference) {
      throw new CommandError(`manifest ${repository}@${reference}: content has digest ${digest}`);
    }
    const header = String(res.headers['content-type'] ?? '')
      .split(';')[0]
      .trim();
    let declared: string | undefined;
    try {
      declared = (JSON.parse(body.toString('utf8')) as { mediaType?: string }).mediaType;
    } catch {
      throw new CommandError(`manifest ${repository}:${reference} is not JSON (content-type ${header || 'none'})`);
    }
    return { mediaType: declared ?? header, digest, body };
  }

  /** Streams a blob to nowhere, calling `onBytes` per chunk; fails unless its size and sha256 match. */
  async blob(repository: string, digest: string, size: number, onBytes: (n: number) => void): Promise<void> {
    const res = await this.get(repository, `/v2/${repository}/blobs/${digest}`, {});
    const hash = createHash('sha256');
    let received = 0;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      hash.update(chunk);
      received += chunk.length;
      onBytes(chunk.length);
    }
    const actual = `sha256:${hash.digest('hex')}`;
    if (actual !== digest) throw new CommandError(`blob ${digest}: received ${received} bytes with digest ${actual}`);
    if (size >= 0 && received !== size) throw new CommandError(`blob ${digest}: received ${received} bytes, manifest says ${size}`);
  }

  /** GET with auth and bounded redirects; returns a 200 response with its body unread. */
  private async get(repository: string, path: string, headers: Record<string, string>): Promise<Dispatcher.ResponseData> {
    let url = new URL(path, this.base);
    let retriedAuth = false;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const sameOrigin = url.origin === this.base.origin;
      const authorization = sameOrigin ? this.auth.get(repository) : undefined;
      const res = await this.send(url, { ...headers, ...(authorization ? { authorization } : {}) });
      if (res.statusCode === 200) return res;
      const text = await res.body.text().catch(() => '');
      if (res.statusCode === 401 && sameOrigin && !retriedAuth) {
        retriedAuth = true;
        await this.authenticate(repository, res.headers['www-authenticate']);
        hop--; // the retry is not a redirect
        continue;
      }
      const location = res.headers.location;
      if ([301, 302, 303, 307, 308].includes(res.statusCode) && typeof location === 'string') {
        url = new URL(location, url); // credentials are not forwarded to another origin (sameOrigin above)
        continue;
      }
      throw new CommandError(`GET ${url.origin}${url.pathname}: ${res.statusCode}${ociMessage(text)}${this.hint(res.statusCode)}`);
    }
    throw new CommandError(`GET ${path}: more than ${MAX_REDIRECTS} redirects`);
  }

  private async authenticate(repository: string, header: string | string[] | undefined): Promise<void> {
    const challenge = parseChallenge(Array.isArray(header) ? header[0] : header);
    const { credentials } = this.options;
    if (challenge?.scheme === 'basic') {
      if (!credentials) throw new CommandError(`${this.base.origin} asks for credentials: pass --username and set DTR_PASSWORD`);
      this.auth.set(repository, basicAuthorization(credentials));
      return;
    }
    if (challenge?.scheme !== 'bearer' || !challenge.params.realm) {
      throw new CommandError(`${this.base.origin} answered 401 without a Basic or Bearer challenge`);
    }
    const realm = challenge.params.realm;
    if (!realmTrusted(realm, [this.base, ...this.options.trustedRealms])) {
      throw new CommandError(
        `${this.base.origin} sends credentials to token realm ${realm}, which is at neither the cache's nor --dtr's origin (scheme, host and port): refusing (pass --dtr <realm origin> if it is your DTR's)`,
      );
    }
    const tokenUrl = new URL(realm);
    if (challenge.params.service) tokenUrl.searchParams.set('service', challenge.params.service);
    tokenUrl.searchParams.set('scope', challenge.params.scope ?? `repository:${repository}:pull`);
    const res = await this.send(tokenUrl, credentials ? { authorization: basicAuthorization(credentials) } : {});
    const text = await res.body.text();
    if (res.statusCode !== 200) {
      const who = credentials ? `user "${credentials.username}"` : 'anonymous (no --username)';
      throw new CommandError(`token realm ${tokenUrl.origin}${tokenUrl.pathname}: ${res.statusCode} for ${who}`);
    }
    let token: unknown;
    try {
      const body = JSON.parse(text) as { token?: unknown; access_token?: unknown };
      token = body.token ?? body.access_token;
    } catch {
      /* reported below */
    }
    if (typeof token !== 'string' || !token)
      throw new CommandError(`token realm ${tokenUrl.origin}${tokenUrl.pathname}: no token in the answer`);
    this.auth.set(repository, `Bearer ${token}`);
  }

  private async send(url: URL, headers: Record<string, string>): Promise<Dispatcher.ResponseData> {
    try {
      return await request(url, { method: 'GET', headers, dispatcher: this.options.dispatcher });
    } catch (err) {
      throw unreachable(url, err);
    }
  }

  private hint(status: number): string {
    if (status === 401) return this.options.credentials ? ': credentials refused' : ': pass --username and set DTR_PASSWORD';
    if (status === 403) return ': access denied for this user';
    return '';
  }
}

/** OCI error JSON {"errors":[{"code","message"}]} as a short suffix. */
function ociMessage(text: string): string {
  try {
    const body = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
    const parts = (body.errors ?? []).map((e) => [e.code, e.message].filter(Boolean).join(' '));
    if (parts.length) return ` ${parts.join('; ')}`;
  } catch {
    /* not JSON */
  }
  return '';
}
