/**
 * The package as a platform team gets it: `npm pack` of a copy of the sources (prepack builds it, and the build never
 * writes the shared checkout's dist/), installed into a fresh app. Dependencies of the tarball resolve from the npm
 * cache first (--prefer-offline), then from the registry.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
/** What the package is built from. */
const SOURCES = ['package.json', 'package-lock.json', 'tsconfig.json', 'README.md', 'CHANGELOG.md', 'Dockerfile', 'image', 'lib', 'bin'];

/** This package's package.json. */
export const PACKAGE = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };

/** Runs a command to completion in `cwd`, returning its stdout; throws with its output on failure. */
export function run(cmd: string, args: string[], cwd: string, timeoutMs: number, env = process.env): string {
  try {
    return execFileSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed in ${cwd}: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
  }
}

export interface PackedPackage {
  /** The files in the tarball. */
  readonly files: string[];
  /** The app the tarball was installed into (package.json, node_modules). */
  readonly app: string;
  /** The installed package: <app>/node_modules/dtr-cache-site. */
  readonly installed: string;
}

/** Packs the package under `dir` and installs the tarball into `dir`/app. */
export function packAndInstall(dir: string): PackedPackage {
  const src = join(dir, 'src');
  mkdirSync(src);
  for (const entry of SOURCES) {
    if (existsSync(join(ROOT, entry))) cpSync(join(ROOT, entry), join(src, entry), { recursive: true });
  }
  // node_modules linked for the build's compiler and types.
  symlinkSync(join(ROOT, 'node_modules'), join(src, 'node_modules'), 'dir');
  const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', dir], src, 180_000)) as Array<{
    filename: string;
    files: Array<{ path: string }>;
  }>;
  const app = join(dir, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'site-app', version: '1.0.0', private: true }));
  run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', join(dir, packed[0].filename)], app, 240_000);
  return { files: packed[0].files.map((f) => f.path), app, installed: join(app, 'node_modules', PACKAGE.name) };
}
