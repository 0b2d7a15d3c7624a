/**
 * The real `terraform` binary on a stack that holds only Terraform built-ins (terraform_data with local-exec), which
 * need no provider download.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TerraformStack, Testing } from 'cdktf';
import { requireTool } from '../../../harness/tools';

/** Synthesizes a stack built by `build` into `dir`/main.tf.json, the working directory Terraform runs in. */
export function writeStack(dir: string, build: (stack: TerraformStack) => void): void {
  const stack = new TerraformStack(Testing.app(), 'stack');
  build(stack);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'main.tf.json'), Testing.synth(stack));
}

/** `terraform <args>` in `dir` (at most 5 minutes), without colour or prompts; the caller checks the status. */
export function terraform(dir: string, ...args: string[]): { status: number | null; out: string } {
  const r = spawnSync(requireTool('terraform'), [`-chdir=${dir}`, ...args, '-input=false', '-no-color'], {
    env: { ...process.env, CHECKPOINT_DISABLE: '1', TF_IN_AUTOMATION: '1' },
    encoding: 'utf8',
    timeout: 300_000,
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}${r.error ? String(r.error) : ''}` };
}
