/**
 * A zero-copy front for warm filesystem hits (a bench-only prototype, issue 20): nginx before our cache. A GET of
 * `/v2/<name>/blobs/sha256:<hex>` whose file is in the filesystem store is authorized by a HEAD of the same URI to
 * our cache (`auth_request`: our HEAD authorizes with the upstream exactly as the GET does, and answers 2xx only for
 * a client the upstream allows), then nginx sends the file itself: sendfile over plain HTTP, its OpenSSL over TLS.
 * Everything else goes to our cache unchanged: other routes and methods, a URI nginx would read differently from the
 * raw one (percent-encoding, dot segments, a query), a file not in the store (a miss: our cache fills it), and every
 * refusal or error of the HEAD (401, 403, 404, 416, 5xx): our cache then answers the GET itself, with its OCI error
 * body and WWW-Authenticate header, so the front never serves what our cache would refuse.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { freePort, requireTool, waitFor } from '../harness/tools';
import { atExit, spawnTracked, stopChild } from './processes';
import type { System, TlsFiles } from './systems';

export interface NginxFrontSetup {
  /** nginx's listening port on 127.0.0.1. */
  readonly port: number;
  /** Our cache's plain HTTP address, `127.0.0.1:<port>`. */
  readonly backend: string;
  /** Root of the filesystem store our cache writes (its `storage.filesystem.rootdirectory`). */
  readonly storeRoot: string;
  /** nginx's prefix: pid, error log and temp paths. */
  readonly dir: string;
  readonly workerProcesses: number;
  readonly tls?: TlsFiles;
  /** The workers' user, when nginx starts as root. */
  readonly user?: string;
}

/** A string for nginx's config, quoted (paths may hold spaces). */
const q = (s: string) => `"${s.replace(/["\\]/g, '\\$&')}"`;

/**
 * TLS as distribution (Go) negotiates it on AES hardware: the server's order, AES-128-GCM first (OpenSSL's default
 * follows the client, whose first choice is AES-256-GCM).
 */
const tlsDirectives = (tls: TlsFiles) => `    ssl_certificate ${q(tls.certificate)};
    ssl_certificate_key ${q(tls.key)};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
`;

/** nginx.conf of the front. Pure: the same setup gives the same text. */
export function nginxFrontConfig(s: NginxFrontSetup): string {
  // The path blobKey() gives the digest under the store root (lib/cache/reference.ts).
  const file = '/blobs/sha256/$xx/$xx$rest/data';
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${q(join(s.dir, t))};`);
  // Started by root, nginx would run its workers as nobody, who cannot read the store: keep them as its owner.
  const user = s.user ? `user ${s.user};\n` : '';
  return `${user}worker_processes ${s.workerProcesses};
pid ${q(join(s.dir, 'nginx.pid'))};
error_log ${q(join(s.dir, 'error.log'))} warn;
events { worker_connections 1024; }
http {
  access_log off;
${temp.join('\n')}
  sendfile on;
  tcp_nopush on;
  server_tokens off;
  upstream ours {
    server ${s.backend};
    keepalive 32;
  }
  server {
    listen 127.0.0.1:${s.port}${s.tls ? ' ssl' : ''};
${s.tls ? tlsDirectives(s.tls) : ''}    client_max_body_size 0;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_buffering off;
    proxy_request_buffering off;
    proxy_read_timeout 600s;

    location / {
      proxy_pass http://ours;
    }
    # Our cache answers the request itself, as the client sent it.
    location @ours {
      proxy_pass http://ours$request_uri;
    }
    # The authorization: our cache's HEAD of the same URI with the client's headers (Authorization, Range).
    location = /_front/authorize {
      internal;
      proxy_method HEAD;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_pass http://ours$request_uri;
    }
    location ~ "^/v2/.+/blobs/sha256:(?<xx>[0-9a-f]{2})(?<rest>[0-9a-f]{62})$" {
      error_page 418 = @ours;
      if ($request_method != GET) { return 418; }
      if ($request_uri != $uri) { return 418; }
      if (!-f ${q(s.storeRoot + file)}) { return 418; }
      auth_request /_front/authorize;
      # Any refusal or error, of the HEAD or of the file: our cache answers the GET (its status, body and headers).
      error_page 400 401 403 404 405 416 500 502 503 504 = @ours;
      root ${q(s.storeRoot)};
      try_files ${file} @ours;
      types { }
      default_type application/octet-stream;
      etag off;
      add_header Docker-Content-Digest "sha256:$xx$rest";
      add_header ETag "\\"sha256:$xx$rest\\"";
      add_header Cache-Control "max-age=31536000";
    }
  }
}
`;
}

/** nginx as the front of our cache at `backend`; stop() ends it and removes its directory. */
export async function startNginxFront(
  backend: string,
  storeRoot: string,
  setup: { readonly workerProcesses: number; readonly tls?: TlsFiles },
): Promise<System> {
  const bin = requireTool('nginx');
  const dir = mkdtempSync(join(tmpdir(), 'dtr-cache-bench-nginx-'));
  atExit(() => rmSync(dir, { recursive: true, force: true }));
  for (const t of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, t));
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  const user = process.getuid?.() === 0 ? userInfo().username : undefined;
  writeFileSync(conf, nginxFrontConfig({ port, backend, storeRoot, dir, user, ...setup }));
  // -e: nginx opens its compiled-in error log before reading the config; point it at the prefix too.
  const child = spawnTracked(bin, ['-p', dir, '-e', join(dir, 'error.log'), '-c', conf, '-g', 'daemon off;']);
  const url = `${setup.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const stop = async () => {
    // SIGTERM is nginx's fast shutdown: the master ends its workers before it exits.
    await stopChild(child, 10_000);
    rmSync(dir, { recursive: true, force: true });
  };
  const errors = () => {
    try {
      return readFileSync(join(dir, 'error.log'), 'utf8').slice(-800);
    } catch {
      return '';
    }
  };
  try {
    await waitFor(`nginx front on ${url}`, async () => {
      if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}: ${errors()}`);
      try {
        return readFileSync(join(dir, 'nginx.pid'), 'utf8').trim() === String(child.pid);
      } catch {
        return false;
      }
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { name: `nginx front (${setup.workerProcesses} worker${setup.workerProcesses > 1 ? 's' : ''})`, url, pid: child.pid, stop };
}
