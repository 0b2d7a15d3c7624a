/**
 * Real Terraform for the deploy tests: the `terraform` binary on PATH, with the kreuzwerker/docker provider replaced
 * by the test stand-in in test/terraform-provider-docker, run in a synthesized stack's directory. The CLI config
 * installs the stand-in as kreuzwerker/docker 3.6.2 from a local filesystem mirror, so `terraform init` runs as in
 * a user's `cdktf deploy` (dev_overrides would make init fail offline, and init is needed for the stack's backend). The stand-in's TypeScript is transpiled once per test process into node_modules/.cache, so the
 * provider Terraform starts (several times per command) loads in a fraction of a second.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import ts from 'typescript';
import { requireTool } from '../../harness/tools';

const ROOT = resolve(__dirname, '../..');
const SOURCE = join(ROOT, 'test/terraform-provider-docker');
const BUILD = join(ROOT, 'node_modules/.cache/terraform-provider-docker');

let cliConfig: string | undefined;

/** Writes through a temporary file and a rename: parallel test processes build the same files at once. */
function writeAtomically(file: string, content: string | Buffer, mode = 0o644): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, content, { mode });
  renameSync(tmp, file);
}

/** Builds the stand-in and returns the CLI config file that installs it. */
export function providerCliConfig(): string {
  if (cliConfig) return cliConfig;
  const bin = join(BUILD, 'mirror/registry.terraform.io/kreuzwerker/docker/3.6.2', `linux_${process.arch === 'arm64' ? 'arm64' : 'amd64'}`);
  mkdirSync(join(BUILD, 'proto'), { recursive: true });
  mkdirSync(bin, { recursive: true });
  for (const file of readdirSync(SOURCE)) {
    if (file.endsWith('.ts') && !file.endsWith('.test.ts') && file !== 'extract-schemas.ts') {
      const { outputText } = ts.transpileModule(readFileSync(join(SOURCE, file), 'utf8'), {
        compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
        fileName: file,
      });
      writeAtomically(join(BUILD, file.replace(/\.ts$/, '.js')), outputText);
    }
  }
  writeAtomically(join(BUILD, 'schemas.json'), readFileSync(join(SOURCE, 'schemas.json')));
  for (const file of readdirSync(join(SOURCE, 'proto')))
    writeAtomically(join(BUILD, 'proto', file), readFileSync(join(SOURCE, 'proto', file)));
  writeAtomically(
    join(bin, 'terraform-provider-docker_v3.6.2'),
    `#!/bin/sh\nexec "${process.execPath}" "${join(BUILD, 'main.js')}" "$@"\n`,
    0o755,
  );
  cliConfig = join(BUILD, 'terraform.rc');
  writeAtomically(
    cliConfig,
    `provider_installation {\n  filesystem_mirror {\n    path = "${join(BUILD, 'mirror')}"\n    include = ["kreuzwerker/docker"]\n  }\n  direct {\n    exclude = ["kreuzwerker/docker"]\n  }\n}\n`,
  );
  return cliConfig;
}

export interface TerraformRun {
  readonly args: string[];
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

export interface TerraformDeployOptions {
  /** Extra environment for Terraform, its provider and local-exec provisioners. */
  readonly env?: Record<string, string>;
  /** Where Terraform keeps state (local backend); `terraform.tfstate` in the stack directory by default. */
  readonly statePath?: string;
  readonly log?: (line: string) => void;
  /** Per command; 10 minutes by default. */
  readonly timeoutMs?: number;
}

/** Terraform in one synthesized stack directory (the folder of its cdk.tf.json). */
export class TerraformDeploy {
  private initialized = false;

  constructor(
    public stackDir: string,
    private readonly options: TerraformDeployOptions = {},
  ) {}

  get statePath(): string {
    return this.options.statePath ?? join(this.stackDir, 'terraform.tfstate');
  }

  /** Runs terraform; resolves with its exit status and output (it does not throw on a non-zero status). */
  run(args: string[]): Promise<TerraformRun> {
    const terraform = requireTool('terraform');
    const env = {
      ...process.env,
      ...this.options.env,
      TF_CLI_CONFIG_FILE: providerCliConfig(),
      CHECKPOINT_DISABLE: '1',
      TF_IN_AUTOMATION: '1',
    };
    const started = Date.now();
    return new Promise((done, fail) => {
      const child = spawn(terraform, args, { cwd: this.stackDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => child.kill('SIGTERM'), this.options.timeoutMs ?? 600_000);
      child.on('error', fail);
      child.on('close', (status) => {
        clearTimeout(timer);
        const run = { args, status, stdout, stderr, ms: Date.now() - started };
        this.options.log?.(`terraform ${args.join(' ')} -> ${status} in ${run.ms} ms`);
        done(run);
      });
    });
  }

  /** Runs terraform and throws with its output unless it exits 0. */
  async must(args: string[]): Promise<TerraformRun> {
    const run = await this.run(args);
    if (run.status !== 0)
      throw new Error(`terraform ${args.join(' ')} in ${this.stackDir} exited ${run.status}:\n${run.stderr}${run.stdout}`);
    return run;
  }

  /** `terraform init` with the state in statePath (the stack's local backend path replaced). */
  async init(): Promise<TerraformRun> {
    const run = await this.must(['init', '-input=false', '-no-color', `-backend-config=path=${this.statePath}`, '-reconfigure']);
    this.initialized = true;
    return run;
  }

  /** Moves to another synthesized directory of the same stack (e.g. a re-synth with new inputs), same state. */
  async switchTo(stackDir: string): Promise<void> {
    this.stackDir = stackDir;
    this.initialized = false;
  }

  private async ready(): Promise<void> {
    if (!this.initialized) await this.init();
  }

  async apply(): Promise<TerraformRun> {
    await this.ready();
    return this.must(['apply', '-input=false', '-no-color', '-auto-approve']);
  }

  /** `terraform plan -detailed-exitcode`: status 0 no changes, 2 changes, 1 error. */
  async plan(): Promise<TerraformRun> {
    await this.ready();
    const run = await this.run(['plan', '-input=false', '-no-color', '-detailed-exitcode']);
    if (run.status !== 0 && run.status !== 2) throw new Error(`terraform plan failed (${run.status}):\n${run.stderr}${run.stdout}`);
    return run;
  }

  async destroy(): Promise<TerraformRun> {
    await this.ready();
    return this.must(['destroy', '-input=false', '-no-color', '-auto-approve']);
  }

  /** The stack's outputs, by name. */
  async outputs(): Promise<Record<string, unknown>> {
    const run = await this.must(['output', '-json']);
    return Object.fromEntries(Object.entries(JSON.parse(run.stdout) as Record<string, { value: unknown }>).map(([k, v]) => [k, v.value]));
  }

  /** The managed resources in state: address -> attributes. */
  async state(): Promise<Record<string, Record<string, unknown>>> {
    const run = await this.must(['show', '-json']);
    const doc = JSON.parse(run.stdout) as {
      values?: { root_module?: { resources?: { address: string; values: Record<string, unknown> }[] } };
    };
    return Object.fromEntries((doc.values?.root_module?.resources ?? []).map((r) => [r.address, r.values]));
  }
}

/**
 * The lines of a plan (or apply, destroy) that show a change (`#` resource headers, `~`, `+`, `-`, "forces
 * replacement") and its summaries ("Plan:", "No changes.", "Apply complete!", "Destroy complete!").
 */
export function planLines(run: TerraformRun): string[] {
  return run.stdout
    .split('\n')
    .filter((l) => /^\s*(#|~|\+|-|-\/\+|\+\/-)\s|forces replacement|^Plan:|^No changes|^(Apply|Destroy) complete/.test(l))
    .filter((l) => !/^\s*# \(\d+ unchanged/.test(l))
    .map((l) => l.trimEnd());
}

export function terraformDeploy(stackDir: string, options?: TerraformDeployOptions): TerraformDeploy {
  return new TerraformDeploy(stackDir, options);
}
