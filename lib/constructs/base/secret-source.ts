/**
 * Where a piece of sensitive text (a private key, a storage password) comes from. A file is read by Terraform at
 * deploy time, so the synthesized JSON holds only its path (relative to the stack's directory, see deploy-path); text
 * given inline lands in the synthesized JSON and in Terraform state, which is why its factory is named `fromPlainText`.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Construct, IConstruct } from 'constructs';
import { Fn, TerraformLocal, Token } from 'cdktf';
import { deployPath } from './deploy-path';

export class SecretSource {
  /**
   * Text read from `path` by Terraform at deploy time (`file()`, `filebase64()`): only the path is synthesized.
   * A relative path is resolved against the current directory at synth; the JSON holds it relative to the directory
   * Terraform runs in (cdktf.out/stacks/<stack>), so it applies from any checkout with the same layout.
   */
  public static fromFile(path: string): SecretSource {
    return new SecretSource(resolve(path), undefined);
  }

  /** Text given inline. It lands in the synthesized JSON and in Terraform state: use it for tests and public material only. */
  public static fromPlainText(text: string): SecretSource {
    return new SecretSource(undefined, text);
  }

  private constructor(
    /** Absolute path of the file, when read from a file. */
    public readonly path: string | undefined,
    private readonly text: string | undefined,
  ) {}

  /** Whether the content is only referenced (true) or embedded in the synthesized JSON (false). */
  public get isFile(): boolean {
    return this.path !== undefined;
  }

  /** The content as base64, for docker_secret/docker_config `data` in `scope`'s stack: `filebase64(path)` for files. */
  public base64(scope: IConstruct): string {
    return this.path !== undefined ? Fn.filebase64(deployPath(scope, this.path)) : Buffer.from(this.text ?? '', 'utf8').toString('base64');
  }

  /** The content as text in `scope`'s stack: `file(path)` for files (read at deploy time). */
  public plain(scope: IConstruct): string {
    return this.path !== undefined ? Fn.file(deployPath(scope, this.path)) : (this.text ?? '');
  }

  /**
   * The content, read now, for synth-time checks (certificate validity, key match). Undefined when the file does not
   * exist on the synthesizing machine (e.g. a CI plan without secrets); the checks are then reported as skipped.
   */
  public readAtSynth(): string | undefined {
    if (this.path === undefined) return this.text;
    return existsSync(this.path) ? readFileSync(this.path, 'utf8') : undefined;
  }

  /**
   * A short content hash for resource names, so that new content gets a new name. For a file, a Terraform expression
   * over the bytes Terraform reads at apply (the same bytes that become the content: a file changed between synth and
   * apply cannot give a name that does not match it); for inline text, computed at synth.
   */
  public contentHash(scope: IConstruct): string {
    return this.path !== undefined ? Fn.substr(Fn.filesha256(deployPath(scope, this.path)), 0, HASH_LENGTH) : shortHash(this.text ?? '');
  }
}

const HASH_LENGTH = 12;

/** First 12 hex digits of the sha256 of `parts` (joined with NUL so that ["ab","c"] and ["a","bc"] differ). */
export function shortHash(...parts: readonly string[]): string {
  return createHash('sha256').update(parts.join('\0')).digest('hex').slice(0, HASH_LENGTH);
}

/**
 * `text` as base64 for a docker_config or docker_secret `data`: encoded at synth, or by Terraform (`base64encode`) when
 * the text holds Terraform expressions (a host given as a variable).
 */
export function base64Text(text: string): string {
  return Token.isUnresolved(text) ? Fn.base64encode(text) : Buffer.from(text, 'utf8').toString('base64');
}

/** A short hash of `text` for names: at synth, or by Terraform (`sha256`) when the text holds Terraform expressions. */
export function textHash(text: string): string {
  return Token.isUnresolved(text) ? Fn.substr(Fn.sha256(text), 0, HASH_LENGTH) : shortHash(text);
}

/**
 * `text` for use in Terraform functions: itself, or, when it holds Terraform expressions (a host variable in a
 * rendered file), a reference to a local value holding it as a template (function arguments cannot carry its quotes and
 * newlines, and Fn.rawString would not evaluate the expressions).
 */
export function terraformText(scope: IConstruct, id: string, text: string): string {
  return Token.isUnresolved(text) ? new TerraformLocal(scope as Construct, id, text).asString : text;
}
