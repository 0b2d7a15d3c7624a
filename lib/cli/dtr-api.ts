/**
 * DTR's content caches API (DTR 2.2+): `GET /api/v0/content_caches` lists them with ids,
 * `POST /api/v0/content_caches` with {"name","host"} creates one, `DELETE /api/v0/content_caches/{id}` removes one.
 * No update endpoint is documented, so changing a cache's host is delete + create (see `ensureRegistered`).
 */
import { Dispatcher, request } from 'undici';
import { basicAuthorization, Credentials } from './credentials';
import { CommandError } from './errors';
import { unreachable } from './transport';

export interface ContentCache {
  readonly id: string;
  readonly name: string;
  readonly host: string;
}

export type RegisterAction = 'created' | 'unchanged' | 'replaced';

export class DtrApi {
  constructor(
    readonly dtr: URL,
    private readonly credentials: Credentials | undefined,
    private readonly dispatcher: Dispatcher,
  ) {}

  async list(): Promise<ContentCache[]> {
    const body = await this.call('GET', '/api/v0/content_caches', [200]);
    const items = Array.isArray(body) ? body : (body as { contentCaches?: unknown })?.contentCaches;
    if (!Array.isArray(items)) throw new CommandError(`${this.dtr.origin}: unexpected content caches listing (not a JSON array)`);
    return items.map(toContentCache).filter((c): c is ContentCache => c !== undefined);
  }

  async create(name: string, host: string): Promise<ContentCache> {
    const body = await this.call('POST', '/api/v0/content_caches', [200, 201], { name, host });
    return toContentCache(body) ?? { id: '?', name, host };
  }

  async remove(id: string): Promise<void> {
    await this.call('DELETE', `/api/v0/content_caches/${encodeURIComponent(id)}`, [200, 202, 204]);
  }

  private async call(method: 'GET' | 'POST' | 'DELETE', path: string, expected: number[], json?: unknown): Promise<unknown> {
    const url = new URL(path, this.dtr);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.credentials) headers.authorization = basicAuthorization(this.credentials);
    if (json !== undefined) headers['content-type'] = 'application/json';
    let res: Dispatcher.ResponseData;
    try {
      res = await request(url, {
        method,
        headers,
        body: json === undefined ? undefined : JSON.stringify(json),
        dispatcher: this.dispatcher,
      });
    } catch (err) {
      throw unreachable(this.dtr, err);
    }
    const text = await res.body.text();
    if (!expected.includes(res.statusCode)) throw this.refused(method, path, res.statusCode, text);
    if (!text) return undefined;
    try {
      return JSON.parse(text);
    } catch {
      throw new CommandError(`${method} ${this.dtr.origin}${path}: answer is not JSON (is --dtr really a DTR?)`);
    }
  }

  private refused(method: string, path: string, status: number, text: string): CommandError {
    const what = `${method} ${this.dtr.origin}${path}`;
    const user = this.credentials ? `user "${this.credentials.username}"` : 'anonymous access';
    if (status === 401) {
      return new CommandError(
        `${what}: 401 unauthorized for ${user}: check --username / DTR_USERNAME and the password or token in the --password-env variable`,
      );
    }
    if (status === 403) return new CommandError(`${what}: 403 forbidden for ${user}: content caches need a DTR admin account`);
    if (status === 404) return new CommandError(`${what}: 404: this DTR has no content caches API (needs DTR 2.2 or later)`);
    return new CommandError(`${what}: ${status}${dtrMessage(text)}`);
  }
}

/** Registers `name` → `host` so that running it again changes nothing, and a changed host replaces the entry. */
export async function ensureRegistered(api: DtrApi, name: string, host: string): Promise<{ action: RegisterAction; cache: ContentCache }> {
  const existing = (await api.list()).filter((c) => c.name === name);
  const same = existing.find((c) => sameHost(c.host, host));
  if (same && existing.length === 1) return { action: 'unchanged', cache: same };
  // No documented update endpoint: remove the stale entries, then create. Users' cache choice refers to the name.
  for (const stale of existing) await api.remove(stale.id);
  const cache = await api.create(name, host);
  return { action: existing.length > 0 ? 'replaced' : 'created', cache };
}

/** Removes every cache called `name`; returns the removed entries (none when it was not registered). */
export async function ensureRemoved(api: DtrApi, name: string): Promise<ContentCache[]> {
  const existing = (await api.list()).filter((c) => c.name === name);
  for (const cache of existing) await api.remove(cache.id);
  return existing;
}

/** Host URLs compare without a trailing slash and with scheme/host case folded. */
export function sameHost(a: string, b: string): boolean {
  return normalizeHost(a) === normalizeHost(b);
}

export function normalizeHost(host: string): string {
  try {
    const url = new URL(host);
    return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`;
  } catch {
    return host.replace(/\/+$/, '');
  }
}

function toContentCache(value: unknown): ContentCache | undefined {
  if (!value || typeof value !== 'object') return undefined;
  const v = value as Record<string, unknown>;
  if ((typeof v.id !== 'string' && typeof v.id !== 'number') || typeof v.name !== 'string' || typeof v.host !== 'string') return undefined;
  return { id: String(v.id), name: v.name, host: v.host };
}

/** DTR answers errors as {"errors":[{"code","message"}]}. */
function dtrMessage(text: string): string {
  try {
    const body = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
    const parts = (body.errors ?? []).map((e) => [e.code, e.message].filter(Boolean).join(': '));
    if (parts.length) return ` ${parts.join('; ')}`;
  } catch {
    /* not JSON: fall through */
  }
  return text ? ` ${text.slice(0, 200).trim()}` : '';
}
