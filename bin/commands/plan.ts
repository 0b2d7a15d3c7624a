import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { readSynthOutput, renderDiff, renderSummary } from '../../lib/constructs/synth-summary';
import { UsageError } from '../../lib/cli/errors';
import { Command } from './command';

export const command: Command = {
  usage: `Usage: dtr-cache plan [--app <app.ts|app.js|cdktf.out dir>] [--out <dir>] [--base <cdktf.out dir>]

Synthesizes the app (a .ts or .js file that synthesizes when run, like the examples) into --out, or reads an
existing synth output directory, and prints a Markdown summary per datacenter stack: cache URL, replicas, nodes,
storage, port and mode, image, certificate subject and expiry, and warnings. With --base, also prints what
changed between the base synth output and this one. Needs no Terraform and no cloud access.

  --app   app file or synth output directory (default: cdktf.out)
  --out   where to synthesize an app file (default: cdktf.out)
  --base  a synth output directory to compare against

Exit 0 when printed, 1 when the app fails to synthesize, 2 on usage errors.`,
  async run(args) {
    const { values } = parseArgs({
      args: [...args],
      options: { app: { type: 'string' }, out: { type: 'string' }, base: { type: 'string' } },
    });
    const app = values.app ?? 'cdktf.out';
    if (!existsSync(app)) throw new UsageError(`--app ${app} does not exist; give an app file or a cdktf synth output directory`);
    let dir = app;
    if (!statSync(app).isDirectory()) {
      dir = values.out ?? 'cdktf.out';
      const failure = synthesize(app, dir);
      if (failure) {
        process.stderr.write(failure);
        return 1;
      }
    }
    if (values.base && !existsSync(join(values.base, 'manifest.json'))) {
      throw new UsageError(`--base ${values.base} is not a cdktf synth output directory (no manifest.json)`);
    }
    let head;
    try {
      head = readSynthOutput(dir);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    process.stdout.write(renderSummary(head));
    if (values.base) process.stdout.write(`\n${renderDiff(readSynthOutput(values.base), head)}`);
    if (dir !== app) process.stdout.write(`\n${nextSteps(dir)}`);
    return 0;
  },
};

/** What the synthesis wrote, and what to do with it. */
export function nextSteps(dir: string): string {
  const stacks = readdirSync(join(dir, 'stacks')).sort();
  return [
    '## Next',
    '',
    `Wrote ${stacks.map((s) => `${join(dir, 'stacks', s, 'cdk.tf.json')}`).join(', ')}.`,
    '',
    `- Fix the warnings above (TEST ONLY certificates, a placeholder or loopback image) for a real datacenter.`,
    `- Deploy one datacenter: \`cdktf deploy ${stacks[0] ?? '<stack>'}\` (cdktf-cli and Terraform, run in this folder, with`,
    '  the docker provider from the Terraform registry and the swarm reachable as its SwarmConnection says).',
    '- Then point users at the cache: docs/operations.md, "Registering the cache with DTR".',
    '',
  ].join('\n');
}

/**
 * Runs the app file in a child node process, as cdktf-cli does, with CDKTF_OUTDIR pointing at `out`; a .ts file runs
 * through ts-node. Writes to a fresh directory first so a failed synth leaves the previous output alone. Returns the
 * error text, or undefined on success.
 */
function synthesize(app: string, out: string): string | undefined {
  const staging = mkdtempSync(join(tmpdir(), 'dtr-cache-plan-'));
  try {
    const nodeArgs = app.endsWith('.ts') ? ['-r', 'ts-node/register/transpile-only', resolve(app)] : [resolve(app)];
    const child = spawnSync(process.execPath, nodeArgs, {
      env: { ...process.env, CDKTF_OUTDIR: staging },
      encoding: 'utf8',
      timeout: 120_000,
    });
    if (child.status !== 0 || !existsSync(join(staging, 'manifest.json'))) {
      const why = child.error ? child.error.message : errorText(child.stderr || child.stdout || '');
      return `dtr-cache plan: synthesizing ${app} failed:\n${why}\n`;
    }
    rmSync(out, { recursive: true, force: true });
    cpSync(staging, out, { recursive: true });
    return undefined;
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/**
 * The error of a failed synth without node's source excerpt and stack frames: from the first "Error:" line (cdktf's
 * validation list follows it), frames removed; at most 40 lines.
 */
export function errorText(stderr: string): string {
  const lines = stderr.split('\n');
  const start = lines.findIndex((l) => /^\w*Error\b.*:/.test(l));
  return lines
    .slice(Math.max(start, 0))
    .filter((l) => !/^\s+at /.test(l) && !/^\s*\{$|^\s*\}$|^\s+(code|requireStack):/.test(l))
    .join('\n')
    .trim()
    .split('\n')
    .slice(0, 40)
    .join('\n');
}
