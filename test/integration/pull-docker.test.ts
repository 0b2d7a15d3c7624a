/**
 * Real engines pull through the cache: `docker pull` on the test dockerd, and containerd's `ctr` on the
 * containerd that dockerd runs. Loopback registries are plain-HTTP trusted by default. Pulled images are
 * removed afterwards.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { startCache, type TestCache } from '../support/cache-server';
import { makeImage, makeIndex, pushImage, type TestImage } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';
import { requireTool, sleep } from '../../harness/tools';

const run = promisify(execFile);
const DOCKER_HOST = 'unix:///run/dtr-cache-test/docker.sock';
const CONTAINERD = '/run/dtr-cache-test/exec/containerd/containerd.sock';
const settleLog = () => sleep(400);

describe('engines pull through the cache', () => {
  let upstream: TestRegistry;
  let cache: TestCache;
  const images: Record<string, TestImage> = {
    'team/docker': makeImage({ layerSizes: [2048, 500_000] }),
    'team/oci': makeImage({ format: 'oci', layerSizes: [8192] }),
    'team/multi': makeIndex(['amd64', 'arm64'], 'oci'),
  };
  const pulled: string[] = [];

  const docker = (...args: string[]) =>
    run(requireTool('/usr/bin/docker'), args, { env: { ...process.env, DOCKER_HOST }, timeout: 90_000 }).then((r) => r.stdout);

  beforeAll(async () => {
    if (!existsSync(DOCKER_HOST.slice('unix://'.length))) {
      throw new Error(`no test dockerd at ${DOCKER_HOST}: run bash scripts/test-services.sh start (as root)`);
    }
    upstream = await TestRegistry.start();
    for (const [repo, image] of Object.entries(images)) await pushImage(upstream.url, repo, 'v1', image);
    cache = await startCache([upstream.url]);
  });

  afterAll(async () => {
    for (const ref of pulled) await docker('rmi', '-f', ref).catch(() => undefined);
    await cache?.stop();
    await upstream?.stop();
  });

  describe('docker pull', () => {
    it.each(['team/docker', 'team/oci', 'team/multi'])(
      '%s: same digest as upstream; a re-pull makes no upstream blob GET',
      async (repo) => {
        const ref = `${cache.host}/${repo}:v1`;
        pulled.push(ref);
        upstream.clearLog();
        const out = await docker('pull', ref);
        expect(out).toContain(`Digest: ${images[repo].digest}`);
        const repoDigests = JSON.parse(await docker('image', 'inspect', '--format', '{{json .RepoDigests}}', ref)) as string[];
        expect(repoDigests).toContain(`${cache.host}/${repo}@${images[repo].digest}`);
        await settleLog();
        expect(upstream.blobGets().length).toBeGreaterThan(0);

        await docker('rmi', '-f', ref);
        upstream.clearLog();
        const again = await docker('pull', ref);
        expect(again).toContain(`Digest: ${images[repo].digest}`);
        await settleLog();
        expect(upstream.blobGets()).toEqual([]);
      },
    );
  });

  describe('containerd ctr', () => {
    const ns = `dtr-cache-test-${process.pid}`;
    const ctr = (...args: string[]) => run(requireTool('ctr'), ['--address', CONTAINERD, '--namespace', ns, ...args], { timeout: 90_000 });

    afterAll(async () => {
      const refs = await ctr('images', 'ls', '-q').then(
        (r) => r.stdout.split('\n').filter(Boolean),
        () => [],
      );
      if (refs.length) await ctr('images', 'rm', ...refs).catch(() => undefined);
      await ctr('content', 'prune', 'references').catch(() => undefined);
      await run(requireTool('ctr'), ['--address', CONTAINERD, 'namespaces', 'rm', ns]).catch(() => undefined);
    });

    it('ctr images pull --plain-http of an index and an OCI image: the upstream digests', async () => {
      if (!existsSync(CONTAINERD)) throw new Error(`no containerd at ${CONTAINERD}: run bash scripts/test-services.sh start (as root)`);
      for (const repo of ['team/multi', 'team/oci']) {
        const ref = `${cache.host}/${repo}:v1`;
        await ctr('images', 'pull', '--plain-http', ref);
        const listed = (await ctr('images', 'ls')).stdout;
        const line = listed.split('\n').find((l) => l.startsWith(`${ref} `));
        expect(line).toContain(images[repo].digest);
      }
    });
  });
});
