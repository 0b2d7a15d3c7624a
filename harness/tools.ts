/**
 * Real components the tests and benchmarks need, and the one way they wait. A missing component fails the test
 * with what to install; nothing skips silently.
 */
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:net';

const INSTALL: Record<string, string> = {
  'docker-registry': 'apt-get install -y docker-registry (distribution 2.8), or run npm run test:all',
  skopeo: 'apt-get install -y skopeo, or run npm run test:all',
  docker: 'apt-get install -y docker.io, or run npm run test:all',
  dockerd: 'apt-get install -y docker.io, or run npm run test:all',
  ctr: 'apt-get install -y containerd, or run npm run test:all',
  openssl: 'apt-get install -y openssl',
  curl: 'apt-get install -y curl',
  sshd: 'apt-get install -y openssh-server, or run npm run test:all',
  'ssh-keygen': 'apt-get install -y openssh-client',
  ssh: 'apt-get install -y openssh-client',
  strace: 'apt-get install -y strace, or run npm run test:all',
  haproxy: 'apt-get install -y haproxy, or run npm run test:all',
  ip: 'apt-get install -y iproute2, or run npm run test:all',
  iptables: 'apt-get install -y iptables, or run npm run test:all',
  nsenter: 'apt-get install -y util-linux',
  unshare: 'apt-get install -y util-linux',
  terraform:
    'install Terraform 1.11 (not packaged by Debian): the linux_amd64 zip from https://releases.hashicorp.com/terraform/, unzipped into /usr/local/bin',
};

/** The absolute path of `tool`, or an Error telling how to install it. */
export function requireTool(tool: string): string {
  try {
    return execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(`${tool} is not installed: ${INSTALL[tool] ?? `install ${tool}`}`);
  }
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** Polls `check` every 50 ms until it resolves true, or throws after `timeoutMs` with `what` in the message. */
export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      lastError = err;
    }
    await sleep(50);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `check` every 50 ms until it holds or `timeoutMs` passed; resolves whether it held. The machine may be
 * busy, so no fixed sleep decides an assertion.
 */
export async function until(check: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
  return true;
}
