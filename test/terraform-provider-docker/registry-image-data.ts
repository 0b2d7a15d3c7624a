/**
 * The `docker_registry_image` data source as kreuzwerker/docker 3.6.2 reads it (data_source_docker_registry_image.go
 * and authentication_helpers.go): the digest of `name` from the registry's manifest endpoint over HTTP, with the
 * provider's registry_auth credentials for the registry (basic auth, or a bearer token from the realm the registry
 * names), never through the Docker engine.
 */
import { Agent, fetch, Response } from 'undici';
import { createHash } from 'node:crypto';
import type { ProviderContext } from './resources';
import type { ObjectValue } from './values';

interface PullOptions {
  readonly registry: string;
  readonly repository: string;
  readonly tag: string;
}

/** parseImageOptions (resource_docker_image_funcs.go): registry, repository and tag (a digest wins over a tag). */
export function parseImageOptions(image: string): PullOptions {
  let registry = '';
  let repository = image;
  let tag = '';
  const firstSlash = image.indexOf('/');
  const prefix = firstSlash === -1 ? '' : image.slice(0, firstSlash);
  if ((image.match(/\//g) ?? []).length > 1 || (firstSlash !== -1 && (/[.:]/.test(prefix) || prefix === 'localhost'))) registry = prefix;
  const tagIndex = image.slice(registry.length).indexOf(':');
  if (tagIndex !== -1) {
    repository = image.slice(0, registry.length + tagIndex);
    tag = image.slice(registry.length + tagIndex + 1);
    const digestIndex = tag.indexOf('@');
    if (digestIndex !== -1) tag = tag.slice(digestIndex + 1);
  }
  if (tag === '') tag = 'latest';
  if (registry === '') {
    registry = 'registry-1.docker.io';
    if (!repository.includes('/')) repository = `library/${repository}`;
  } else {
    repository = repository.replace(`${registry}/`, '');
  }
  return { registry, repository, tag };
}

const isEcrPublic = (registry: string) => registry === 'public.ecr.aws';
const isEcr = (registry: string) => isEcrPublic(registry) || /^.*?dkr\.ecr\..*?\.amazonaws\.com$/.test(registry);
const isAzureCr = (registry: string) => /^.*\.azurecr\.io$/.test(registry);
const b64 = (s: string) => Buffer.from(s).toString('base64');

/** normalizeECRPasswordForHTTPUsage */
function ecrPassword(password: string): string {
  if (password.startsWith('ey')) return b64(`AWS:${password}`);
  if (password.startsWith('AWS:')) return b64(password);
  return password;
}

interface RegistryRequest {
  method: 'HEAD' | 'GET';
  readonly url: string;
  readonly headers: Record<string, string>;
}

/** getImageDigest's arguments: the registry host, its address with protocol, repository, tag and credentials. */
interface DigestTarget {
  readonly registry: string;
  readonly registryWithProtocol: string;
  readonly image: string;
  readonly tag: string;
  readonly username: string;
  readonly password: string;
}

/** setupHTTPRequestForRegistry with setupHTTPHeadersForRegistryRequests. */
function registryRequest(method: 'HEAD' | 'GET', target: DigestTarget, fallback: boolean): RegistryRequest {
  const { registry, registryWithProtocol, image, tag, username, password } = target;
  const headers: Record<string, string> = {};
  if (username !== '') {
    if (registry !== 'ghcr.io' && !isEcr(registry) && !isAzureCr(registry) && registry !== 'gcr.io')
      headers.authorization = `Basic ${b64(`${username}:${password}`)}`;
    else if (isEcrPublic(registry)) headers.authorization = `Bearer ${ecrPassword(password)}`;
    else if (isEcr(registry)) headers.authorization = `Basic ${ecrPassword(password)}`;
    else headers.authorization = `Bearer ${b64(password)}`;
  }
  // Go adds four Accept lines; one line listing them is the same to a registry (RFC 9110, distribution splits on
  // commas). The fallback (registries without schema 2, like old gcr.io) sets the one v1 type instead.
  headers.accept = fallback
    ? 'application/vnd.docker.distribution.manifest.v1+prettyjws'
    : [
        'application/vnd.docker.distribution.manifest.v2+json',
        'application/vnd.docker.distribution.manifest.list.v2+json',
        'application/vnd.oci.image.manifest.v1+json',
        'application/vnd.oci.image.index.v1+json',
      ].join(', ');
  return { method, url: `${registryWithProtocol}/v2/${image}/manifests/${tag}`, headers };
}

/** parseAuthHeader: the key/value pairs of a `WWW-Authenticate: Bearer …` challenge. */
export function parseAuthHeader(header: string): Record<string, string> {
  if (!header.startsWith('Bearer')) throw new Error("missing or invalid www-authenticate header, does not start with 'Bearer'");
  const rest = header.split(' ').slice(1).join(' ');
  const opts: Record<string, string> = {};
  for (const part of rest.match(/\w+=".*?"|\w+[^\s"]+?/g) ?? []) {
    const eq = part.indexOf('=');
    opts[eq === -1 ? part : part.slice(0, eq)] = eq === -1 ? '' : part.slice(eq + 1).replace(/^[", ]+|[", ]+$/g, '');
  }
  return opts;
}

/** Go's resp.Status: "404 Not Found". */
const status = (res: Response) => `${res.status} ${res.statusText}`;

/** getAuthToken: a token from the challenge's realm, with basic auth when there is a username. */
async function authToken(
  auth: Record<string, string>,
  username: string,
  password: string,
  fallbackScope: string,
  dispatcher: Agent,
): Promise<string> {
  // url.Values.Encode: keys sorted, query-escaped.
  const params = new URLSearchParams({ scope: auth.scope || fallbackScope, service: auth.service ?? '' });
  let res: Response;
  try {
    res = await fetch(`${auth.realm ?? ''}?${params.toString()}`, {
      dispatcher,
      headers: username !== '' ? { authorization: `Basic ${b64(`${username}:${password}`)}` } : {},
    });
  } catch (err) {
    throw new Error(`Error during registry request: ${(err as Error).message}`);
  }
  if (res.status !== 200) throw new Error(`Got bad response from registry: ${status(res)}`);
  let token: { token?: string; access_token?: string };
  try {
    token = (await res.json()) as typeof token;
  } catch (err) {
    throw new Error(`Error parsing OAuth token response: ${(err as Error).message}`);
  }
  if (token.token) return token.token;
  if (token.access_token) return token.access_token;
  throw new Error('Error unsupported OAuth response');
}

/** getDigestFromResponse: Docker-Content-Digest, else the sha256 of the body (which a HEAD response does not have). */
async function digestFromResponse(res: Response): Promise<string> {
  const header = res.headers.get('docker-content-digest');
  if (header) return header;
  const body = Buffer.from(await res.arrayBuffer());
  if (body.length === 0) throw new Error('Error reading registry response body: %!s(<nil>)');
  return `sha256:${createHash('sha256').update(body).digest('hex')}`;
}

async function send(req: RegistryRequest, dispatcher: Agent, message: string): Promise<Response> {
  try {
    return await fetch(req.url, { method: req.method, headers: req.headers, dispatcher });
  } catch (err) {
    // fetch reports "fetch failed"; the socket's or TLS's own error is its cause.
    const cause = (err as Error).cause;
    throw new Error(`${message}: ${cause instanceof Error ? cause.message : (err as Error).message}`);
  }
}

/** doDigestRequest */
async function digestRequest(req: RegistryRequest, dispatcher: Agent): Promise<Response> {
  const res = await send(req, dispatcher, 'error during registry request');
  if (res.status !== 200) throw new Error(`Got bad response from registry: ${status(res)}`);
  return res;
}

/**
 * getImageDigest: HEAD the manifest (basic auth when credentials are given); on 401, a bearer token for the
 * challenge's scope, then HEAD again, and GET when the HEAD answer has no digest header.
 */
async function imageDigest(target: DigestTarget, insecureSkipVerify: boolean, fallback: boolean): Promise<string> {
  const { registryWithProtocol, image, username, password } = target;
  // buildHttpClientForRegistry: certificate checks off only with insecure_skip_verify, and only for https.
  const dispatcher = new Agent({
    connect: { rejectUnauthorized: !(registryWithProtocol.startsWith('https://') && insecureSkipVerify) },
  });
  try {
    const req = registryRequest('HEAD', target, fallback);
    const res = await send(req, dispatcher, 'Error during registry request');
    if (res.status === 200) return await digestFromResponse(res);
    if (res.status !== 401) throw new Error(`Got bad response from registry: ${status(res)}`);
    let auth: Record<string, string>;
    try {
      auth = parseAuthHeader(res.headers.get('www-authenticate') ?? '');
    } catch {
      throw new Error(`bad credentials: ${status(res)}`);
    }
    const token = await authToken(auth, username, password, `repository:${image}:push,pull`, dispatcher);
    req.headers.authorization = `Bearer ${token}`;
    const digest = await digestFromResponse(await digestRequest(req, dispatcher)).catch(() => undefined);
    if (digest) return digest;
    req.method = 'GET';
    return await digestFromResponse(await digestRequest(req, dispatcher));
  } finally {
    // A body left unread (a GET answered with the digest header) must not hold the connection open.
    await dispatcher.destroy();
  }
}

/**
 * dataSourceDockerRegistryImageRead: the registry_auth of the image's registry, or anonymous over https; the v2
 * Accept types first, the v1 fallback on any error.
 */
export async function readRegistryImage(ctx: ProviderContext, config: ObjectValue): Promise<ObjectValue> {
  const name = String(config.name);
  const pull = parseImageOptions(name);
  // getAuthConfigForRegistry, or the defaults for a registry without registry_auth.
  const auth = ctx.auths[pull.registry] ?? { username: '', password: '', serveraddress: `https://${pull.registry}` };
  const insecure = config.insecure_skip_verify === true;
  const target: DigestTarget = {
    registry: pull.registry,
    registryWithProtocol: auth.serveraddress ?? '',
    image: pull.repository,
    tag: pull.tag,
    username: auth.username ?? '',
    password: auth.password ?? '',
  };
  const attempt = (fallback: boolean) => imageDigest(target, insecure, fallback);
  let digest: string;
  try {
    digest = await attempt(false);
  } catch {
    try {
      digest = await attempt(true);
    } catch (err) {
      throw new Error(
        `Got error when attempting to fetch image version ${pull.repository}:${pull.tag} from registry: ${(err as Error).message}`,
      );
    }
  }
  return { id: digest, name, insecure_skip_verify: insecure, sha256_digest: digest };
}
