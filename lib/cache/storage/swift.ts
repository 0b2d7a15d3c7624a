/**
 * OpenStack Swift over undici (no maintained Node SDK), configured with the registry's swift driver keys.
 * Auth: v1 (tempauth / swauth: `authurl` answering X-Storage-Url and X-Auth-Token) or Keystone v3 (password
 * auth scoped to `tenant`/`tenantid`, storage URL from the catalog's object-store endpoint in `region`);
 * the token is renewed once on a 401.
 *
 * Atomicity: a write streams one PUT to a temp object `<prefix>_uploads/<uuid>`; `commit()` makes the final
 * object with a server-side COPY and deletes the temp one, so the final name only ever holds a whole payload.
 * One PUT caps an object at the cluster's max_file_size (5 GiB by default), far above a layer's size.
 * Access times: access marker objects (see object-store.ts): container listings do not show object metadata.
 */
import { randomUUID } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { Agent, Dispatcher, request } from 'undici';
import type { SwiftOptions } from '../../config';
import type { ByteRange } from './driver';
import { Bucket, BucketUpload, ObjectStoreDriver, RawObject, rootPrefix } from './object-store';

interface Session {
  readonly storageUrl: string;
  readonly token: string;
}

/** Which auth protocol `authurl` speaks: `authversion` when set, else from the URL's version suffix. */
export function swiftAuthVersion(options: Pick<SwiftOptions, 'authurl' | 'authversion'>): 1 | 2 | 3 {
  if (options.authversion) return options.authversion;
  if (/\/v3\/?$/.test(options.authurl)) return 3;
  if (/\/v2\.0\/?$/.test(options.authurl)) return 2;
  return 1;
}

export class SwiftBucket implements Bucket {
  private session?: Promise<Session>;
  private readonly dispatcher: Dispatcher;

  constructor(
    private readonly options: SwiftOptions,
    private readonly uploads: string,
  ) {
    this.dispatcher = new Agent(options.insecureskipverify ? { connect: { rejectUnauthorized: false } } : {});
  }

  private async authenticate(): Promise<Session> {
    const o = this.options;
    const version = swiftAuthVersion(o);
    let session: Session;
    if (version === 1) {
      const user = o.tenant ? `${o.tenant}:${o.username}` : o.username;
      const res = await request(o.authurl, { dispatcher: this.dispatcher, headers: { 'x-auth-user': user, 'x-auth-key': o.password } });
      await res.body.dump();
      const storageUrl = header(res.headers, 'x-storage-url');
      const token = header(res.headers, 'x-auth-token');
      if (res.statusCode !== 200 || !storageUrl || !token) throw new Error(`swift v1 auth at ${o.authurl} answered ${res.statusCode}`);
      session = { storageUrl, token };
    } else if (version === 3) {
      session = await this.keystoneV3();
    } else {
      throw new Error('storage.swift.authversion: Keystone v2 is not supported; use a v3 authurl (…/v3) or v1 tempauth');
    }
    // As the registry does, create the container when it is missing (PUT is idempotent).
    const res = await request(`${session.storageUrl}/${encodeURIComponent(o.container)}`, {
      method: 'PUT',
      dispatcher: this.dispatcher,
      headers: { 'x-auth-token': session.token },
    });
    await res.body.dump();
    if (res.statusCode >= 300) throw new Error(`creating container ${o.container}: ${res.statusCode}`);
    return session;
  }

  private async keystoneV3(): Promise<Session> {
    const o = this.options;
    const domain = o.domainid ? { id: o.domainid } : { name: o.domain ?? 'Default' };
    const projectDomain = o.tenantdomainid ? { id: o.tenantdomainid } : o.tenantdomain ? { name: o.tenantdomain } : domain;
    const scope = o.trustid
      ? { 'OS-TRUST:trust': { id: o.trustid } }
      : o.tenantid
        ? { project: { id: o.tenantid } }
        : o.tenant
          ? { project: { name: o.tenant, domain: projectDomain } }
          : undefined;
    const res = await request(`${o.authurl.replace(/\/$/, '')}/auth/tokens`, {
      method: 'POST',
      dispatcher: this.dispatcher,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        auth: {
          identity: { methods: ['password'], password: { user: { name: o.username, domain, password: o.password } } },
          ...(scope ? { scope } : {}),
        },
      }),
    });
    const body = (await res.body.json().catch(() => ({}))) as KeystoneToken;
    const token = header(res.headers, 'x-subject-token');
    if (res.statusCode !== 201 || !token) throw new Error(`keystone v3 auth at ${o.authurl} answered ${res.statusCode}`);
    const storageUrl = objectStoreEndpoint(body, o.region, o.endpointtype ?? 'public');
    if (!storageUrl)
      throw new Error(`keystone catalog has no object-store ${o.endpointtype ?? 'public'} endpoint in region ${o.region ?? '(any)'}`);
    return { storageUrl, token };
  }

  /** One request to the object `name` (or the container, for ''), authenticating first and once more on a 401. */
  private async call(
    method: Dispatcher.HttpMethod,
    name: string,
    init: { headers?: Record<string, string>; body?: Buffer | Readable; query?: string } = {},
  ) {
    for (let attempt = 0; ; attempt++) {
      this.session ??= this.authenticate();
      const session = await this.session.catch((err) => {
        this.session = undefined;
        throw err;
      });
      const path = name === '' ? '' : `/${name.split('/').map(encodeURIComponent).join('/')}`;
      const res = await request(`${session.storageUrl}/${encodeURIComponent(this.options.container)}${path}${init.query ?? ''}`, {
        method,
        dispatcher: this.dispatcher,
        headers: { ...init.headers, 'x-auth-token': session.token },
        body: init.body,
      });
      // A streamed body cannot be sent twice; a token rarely expires mid-upload and the caller then retries the write.
      if (res.statusCode === 401 && attempt === 0 && !(init.body instanceof Readable)) {
        await res.body.dump();
        this.session = undefined;
        continue;
      }
      return res;
    }
  }

  private async expect(res: Dispatcher.ResponseData, ok: number[], what: string): Promise<void> {
    if (ok.includes(res.statusCode)) return void (await res.body.dump());
    const text = (await res.body.text().catch(() => '')).slice(0, 200);
    throw new Error(`swift ${what}: ${res.statusCode} ${text}`);
  }

  async head(name: string): Promise<RawObject | undefined> {
    const res = await this.call('HEAD', name);
    await res.body.dump();
    if (res.statusCode === 404) return undefined;
    if (res.statusCode >= 300) throw new Error(`swift HEAD ${name}: ${res.statusCode}`);
    return {
      name,
      size: Number(header(res.headers, 'content-length') ?? 0),
      modified: new Date(header(res.headers, 'last-modified') ?? 0),
    };
  }

  async get(name: string, range?: ByteRange): Promise<Readable | undefined> {
    const res = await this.call('GET', name, { headers: range ? { range: `bytes=${range.start}-${range.end}` } : {} });
    if (res.statusCode === 404) return void (await res.body.dump());
    if (res.statusCode !== 200 && res.statusCode !== 206) await this.expect(res, [200, 206], `GET ${name}`);
    return res.body;
  }

  async upload(name: string): Promise<BucketUpload> {
    const temp = `${this.uploads}${randomUUID()}`;
    const stream = new PassThrough({ highWaterMark: 1024 * 1024 });
    // The PUT runs while bytes arrive; chunked transfer encoding, so the size need not be known.
    const put = this.call('PUT', temp, { body: stream, headers: { 'content-type': 'application/octet-stream' } }).then((res) =>
      this.expect(res, [201], `PUT ${temp}`),
    );
    put.catch((err) => stream.destroy(err)); // a failed PUT fails the writer's pipeline instead of hanging it
    return {
      stream,
      complete: async () => {
        await put;
        const source = `/${encodeURIComponent(this.options.container)}/${temp.split('/').map(encodeURIComponent).join('/')}`;
        await this.expect(
          await this.call('PUT', name, { headers: { 'x-copy-from': source, 'content-length': '0' } }),
          [201],
          `COPY to ${name}`,
        );
        await this.remove(temp);
      },
      abort: async () => {
        stream.destroy();
        await put.catch(() => undefined);
        await this.remove(temp);
      },
    };
  }

  async put(name: string, body: Buffer): Promise<void> {
    await this.expect(await this.call('PUT', name, { body }), [201], `PUT ${name}`);
  }

  /** If-None-Match: * on PUT: 412 when the object exists. */
  async create(name: string, body: Buffer): Promise<boolean> {
    const res = await this.call('PUT', name, { body, headers: { 'if-none-match': '*' } });
    if (res.statusCode === 412) {
      await res.body.dump();
      return false;
    }
    await this.expect(res, [201], `PUT ${name}`);
    return true;
  }

  async remove(name: string): Promise<void> {
    await this.expect(await this.call('DELETE', name), [204, 404], `DELETE ${name}`);
  }

  async *list(prefix: string): AsyncIterable<RawObject> {
    let marker = '';
    for (let page = 0; page < 1_000_000; page++) {
      const query = `?format=json&limit=10000&prefix=${encodeURIComponent(prefix)}&marker=${encodeURIComponent(marker)}`;
      const res = await this.call('GET', '', { query });
      if (res.statusCode === 204 || res.statusCode === 404) return void (await res.body.dump());
      if (res.statusCode !== 200) await this.expect(res, [200], `list ${prefix}`);
      const items = (await res.body.json()) as { name: string; bytes: number; last_modified: string }[];
      for (const item of items) yield { name: item.name, size: item.bytes, modified: new Date(`${item.last_modified}Z`) };
      if (items.length < 10000) return;
      marker = items[items.length - 1].name;
    }
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }

  async removeStaleUploads(_prefix: string, olderThanMs: number): Promise<number> {
    let removed = 0;
    for await (const o of this.list(this.uploads)) {
      if (Date.now() - o.modified.getTime() < olderThanMs) continue;
      await this.remove(o.name);
      removed++;
    }
    return removed;
  }
}

export function createSwiftDriver(options: SwiftOptions): ObjectStoreDriver {
  const root = rootPrefix(options.prefix);
  return new ObjectStoreDriver('swift', new SwiftBucket(options, `${root}_uploads/`), root);
}

interface KeystoneToken {
  token?: { catalog?: { type: string; endpoints: { interface: string; region?: string; region_id?: string; url: string }[] }[] };
}

/** The object-store URL of a Keystone v3 token's catalog for `region` and `iface`. Pure, for tests. */
export function objectStoreEndpoint(body: KeystoneToken, region: string | undefined, iface: string): string | undefined {
  const service = body.token?.catalog?.find((s) => s.type === 'object-store');
  const endpoint = service?.endpoints.find((e) => e.interface === iface && (!region || e.region === region || e.region_id === region));
  return endpoint?.url.replace(/\/$/, '');
}

function header(headers: Dispatcher.ResponseData['headers'], name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}
