/**
 * The cache image built from what a platform team installs: the `npm pack` tarball carries image/Dockerfile and the
 * lockfile beside the compiled dist/, so `docker build -f image/Dockerfile node_modules/dtr-cache-site` builds the
 * server without the TypeScript sources, and CacheImage's default build context is that installed package.
 *
 * Uses the shared test engine (run under flock /tmp/dtr-docker.lock) and its FROM-scratch node bases
 * (scripts/test-services.sh start builds them: no Docker Hub here). The image is removed afterwards.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PACKAGE, packAndInstall, run } from '../support/pack';
import { requireTool } from '../../harness/tools';

const pkg = PACKAGE;
const DOCKER_ENV = { ...process.env, DOCKER_HOST: 'unix:///run/dtr-cache-test/docker.sock', DOCKER_BUILDKIT: '0' };
const BASES = { BASE_IMAGE: '127.0.0.1:5000/dtr-cache-base:local', BUILD_IMAGE: '127.0.0.1:5000/dtr-cache-build-base:local' };
const TAG = `127.0.0.1:5000/dtr-cache:from-tarball-${process.pid}`;

describe('the image built from the installed npm package', () => {
  let dir = '';
  beforeAll(() => {
    requireTool('docker');
    dir = mkdtempSync(join(tmpdir(), 'dtr-cache-image-pack-'));
    for (const base of Object.values(BASES)) {
      if (!run('docker', ['images', '-q', base], dir, 30_000, DOCKER_ENV).trim()) {
        throw new Error(`${base} is missing from the test engine: run bash scripts/test-services.sh start (it builds it)`);
      }
    }
  });
  afterAll(() => {
    execFileSync('docker', ['rmi', '-f', TAG], { env: DOCKER_ENV, stdio: 'ignore' });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('packs image/Dockerfile and the lockfile, builds from node_modules/dtr-cache-site, and the image runs the CLI', () => {
    const { files, installed } = packAndInstall(dir);
    expect(files).toEqual(
      expect.arrayContaining(['image/Dockerfile', 'image/lockfile.json', 'dist/bin/dtr-cache.js', 'dist/lib/cache/index.js']),
    );

    // CacheImage's default context, from the installed constructs, is that directory.
    const { packageRoot } = require(join(installed, 'dist', 'lib', 'constructs', 'cache-image.js')) as { packageRoot: () => string };
    expect(resolve(packageRoot())).toBe(resolve(installed));

    // docker build from the installed package, on the test engine.
    const started = Date.now();
    const buildArgs = Object.entries(BASES).flatMap(([k, v]) => ['--build-arg', `${k}=${v}`]);
    run('docker', ['build', '-q', '-t', TAG, '-f', 'image/Dockerfile', ...buildArgs, '.'], installed, 600_000, DOCKER_ENV);
    const buildMs = Date.now() - started;
    const size = Number(run('docker', ['image', 'inspect', '--format', '{{.Size}}', TAG], dir, 30_000, DOCKER_ENV).trim());
    const version = run(
      'docker',
      ['run', '--rm', '--entrypoint', 'node', TAG, '/app/dist/bin/dtr-cache.js', '--version'],
      dir,
      60_000,
      DOCKER_ENV,
    );
    expect(version.trim()).toBe(pkg.version);
    // The server's modules load in the image (serve fails on the missing config, not on a missing module).
    const check = run(
      'docker',
      [
        'run',
        '--rm',
        '--entrypoint',
        'node',
        TAG,
        '-e',
        "require('/app/dist/lib/cache');require('/app/dist/lib/config');console.log('ok')",
      ],
      dir,
      60_000,
      DOCKER_ENV,
    );
    expect(check.trim()).toBe('ok');
    process.stdout.write(`image-from-tarball: built ${TAG} from the installed package in ${buildMs} ms, ${(size / 1e6).toFixed(1)} MB\n`);
  }, 900_000);
});
