/**
 * A minimal Docker Engine API client (used by the provider stand-in, and by tests to inspect what it did) over the unix socket (undici Client with socketPath), or over TCP with TLS
 * client authentication as a client bundle gives it. Errors carry the engine's own message and the request that failed.
 */
import { Client } from 'undici';

export const TEST_DOCKER_SOCK = process.env.DTR_TEST_DOCKER_SOCK ?? '/run/dtr-cache-test/docker.sock';

/** A Docker API endpoint on TCP with --tlsverify: DOCKER_HOST=tcp://host:port and the bundle's PEM contents. */
export interface EngineTlsEndpoint {
  readonly host: string;
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

export class EngineError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class Engine {
  private readonly client: Client;

  constructor(
    readonly socketPath = TEST_DOCKER_SOCK,
    tls?: EngineTlsEndpoint,
  ) {
    const timeouts = { headersTimeout: 120_000, bodyTimeout: 120_000 };
    this.client = tls
      ? new Client(`https://${new URL(tls.host).host}`, { ...timeouts, connect: { ca: tls.ca, cert: tls.cert, key: tls.key } })
      : new Client('http://docker', { socketPath, ...timeouts });
  }

  /** An engine at a provider `host`: unix:///path, or tcp://host:port with the TLS client material. */
  static at(host: string, tls?: Omit<EngineTlsEndpoint, 'host'>): Engine {
    if (host.startsWith('unix://')) return new Engine(host.slice('unix://'.length));
    if (host.startsWith('tcp://') && tls) return new Engine(undefined, { host, ...tls });
    throw new Error(`host ${host}: the stand-in reaches engines on unix:// sockets, or tcp:// with ca/cert/key_material`);
  }

  async request<T = unknown>(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<T> {
    const text = await this.requestText(method, path, body, headers);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** The response body as text (e.g. the JSON lines of an image pull). */
  async requestText(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<string> {
    const res = await this.client.request({
      method,
      path: `/v1.41${path}`,
      headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.body.text();
    if (res.statusCode >= 400) {
      let message = text;
      try {
        message = (JSON.parse(text) as { message?: string }).message ?? text;
      } catch {
        /* not JSON: keep the text */
      }
      throw new EngineError(res.statusCode, `${method} ${path}: ${res.statusCode} ${message.trim()}`);
    }
    return text;
  }

  /** Like request, but a 404 gives undefined. */
  async find<T>(path: string): Promise<T | undefined> {
    try {
      return await this.request<T>('GET', path);
    } catch (err) {
      if (err instanceof EngineError && err.status === 404) return undefined;
      throw err;
    }
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

export interface TaskSummary {
  ID: string;
  NodeID?: string;
  DesiredState: string;
  Status: { State: string; Err?: string; Message?: string; ContainerStatus?: { ContainerID?: string } };
  Spec: { ContainerSpec?: { Secrets?: { SecretName?: string }[] } };
}

/** The service's tasks (all desired states). */
export function serviceTasks(engine: Engine, serviceName: string): Promise<TaskSummary[]> {
  return engine.request<TaskSummary[]>('GET', `/tasks?filters=${encodeURIComponent(JSON.stringify({ service: [serviceName] }))}`);
}
