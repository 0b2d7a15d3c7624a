/**
 * The subset of Terraform's expression language that cdktf synthesizes for our constructs: `${...}` templates
 * holding references (`docker_secret.cert.id`, `self.input.node`, `var.x[0]`), string and number literals, and
 * calls of the functions in FUNCTIONS. Anything else (operators, conditionals, for-expressions, unknown
 * functions) throws, so the applier never deploys a guess of what was synthesized.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';

export type Value = string | number | boolean | null | Value[] | { [key: string]: Value };

/** Resolves a reference path such as ["docker_secret", "cert", "id"]; throws if it cannot. */
export type Resolver = (path: readonly (string | number)[]) => Value;

export interface EvalContext {
  readonly resolve: Resolver;
  /** Directory relative file paths (filebase64, file) are read from: the stack's synth directory. */
  readonly baseDir: string;
}

const FUNCTIONS: Record<string, (ctx: EvalContext, args: Value[]) => Value> = {
  base64encode: (_, [s]) => Buffer.from(asString(s, 'base64encode'), 'utf8').toString('base64'),
  base64decode: (_, [s]) => Buffer.from(asString(s, 'base64decode'), 'base64').toString('utf8'),
  filebase64: (ctx, [p]) => readFileSync(filePath(ctx, p, 'filebase64')).toString('base64'),
  file: (ctx, [p]) => readFileSync(filePath(ctx, p, 'file'), 'utf8'),
  sha256: (_, [s]) => createHash('sha256').update(asString(s, 'sha256'), 'utf8').digest('hex'),
  filesha256: (ctx, [p]) =>
    createHash('sha256')
      .update(readFileSync(filePath(ctx, p, 'filesha256')))
      .digest('hex'),
  jsonencode: (_, [v]) => JSON.stringify(v),
  join: (_, [sep, list]) =>
    asList(list, 'join')
      .map((v) => asString(v, 'join'))
      .join(asString(sep, 'join')),
  tostring: (_, [v]) => (typeof v === 'number' || typeof v === 'boolean' ? String(v) : asString(v, 'tostring')),
  substr: (_, [s, offset, length]) => asString(s, 'substr').substr(Number(offset), Number(length) < 0 ? undefined : Number(length)),
  // The secret splice of CacheConfig: replace(config, placeholder, jsonencode(trimspace(file(path)))).
  replace: (_, [s, search, replacement]) => {
    const what = asString(search, 'replace');
    // Terraform reads /…/ as a regular expression, whose syntax (RE2) the applier does not reproduce.
    if (what.length > 1 && what.startsWith('/') && what.endsWith('/'))
      throw new Error(`replace() with a regular expression ${what} is not supported`);
    return asString(s, 'replace').split(what).join(asString(replacement, 'replace'));
  },
  trimspace: (_, [s]) => asString(s, 'trimspace').trim(),
};

/** Function names the evaluator knows (for error messages and tests). */
export const KNOWN_FUNCTIONS = Object.keys(FUNCTIONS);

/** Evaluates every `${...}` template in a JSON value, recursively. A string that is one whole template keeps its value's type. */
export function evaluate(value: unknown, ctx: EvalContext, where: string): Value {
  if (typeof value === 'string') return evaluateTemplate(value, ctx, where);
  if (Array.isArray(value)) return value.map((v, i) => evaluate(v, ctx, `${where}[${i}]`));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, evaluate(v, ctx, `${where}.${k}`)]));
  }
  if (value === undefined) throw new Error(`${where}: undefined value`);
  return value as Value;
}

/** Reference paths (first two or three segments) a JSON value's templates use: for dependency ordering. */
export function references(value: unknown): string[][] {
  const found: string[][] = [];
  const visit = (v: unknown) => {
    if (typeof v === 'string') {
      for (const expr of templateParts(v, '(references)').filter((p): p is { expr: string } => typeof p !== 'string')) {
        collectRefs(new Parser(expr.expr, '(references)').parseAll(), found);
      }
    } else if (Array.isArray(v)) v.forEach(visit);
    else if (v && typeof v === 'object') Object.values(v).forEach(visit);
  };
  visit(value);
  return found;
}

export function evaluateTemplate(text: string, ctx: EvalContext, where: string): Value {
  const parts = templateParts(text, where);
  const evalPart = (p: string | { expr: string }) =>
    typeof p === 'string' ? p : evalNode(new Parser(p.expr, where).parseAll(), ctx, where);
  if (parts.length === 1 && typeof parts[0] !== 'string') return evalPart(parts[0]);
  return parts
    .map((p) => {
      const v = evalPart(p);
      if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return String(v);
      throw new Error(`${where}: cannot interpolate a ${Array.isArray(v) ? 'list' : typeof v} into a string`);
    })
    .join('');
}

/** Splits `a${x}b$${literal}` into literal text and expressions; `$${` is Terraform's escape for a literal `${`. */
function templateParts(text: string, where: string): (string | { expr: string })[] {
  const parts: (string | { expr: string })[] = [];
  let literal = '';
  let i = 0;
  while (i < text.length) {
    if (text.startsWith('$${', i)) {
      literal += '${';
      i += 3;
    } else if (text.startsWith('%{', i)) {
      throw new Error(`${where}: template directives (%{...}) are not supported: ${JSON.stringify(text)}`);
    } else if (text.startsWith('${', i)) {
      const end = matchingBrace(text, i + 2, where);
      if (literal) parts.push(literal);
      literal = '';
      parts.push({ expr: text.slice(i + 2, end) });
      i = end + 1;
    } else {
      literal += text[i++];
    }
  }
  if (literal || parts.length === 0) parts.push(literal);
  return parts;
}

function matchingBrace(text: string, from: number, where: string): number {
  let depth = 0;
  for (let i = from; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
    } else if (c === '{') depth++;
    else if (c === '}') {
      if (depth === 0) return i;
      depth--;
    }
  }
  throw new Error(`${where}: unterminated \${ in ${JSON.stringify(text)}`);
}

type Node =
  | { kind: 'literal'; value: Value }
  | { kind: 'ref'; path: (string | number)[] }
  | { kind: 'call'; name: string; args: Node[] }
  | { kind: 'template'; text: string };

class Parser {
  private pos = 0;
  constructor(
    private readonly src: string,
    private readonly where: string,
  ) {}

  parseAll(): Node {
    const node = this.parseExpr();
    this.skipSpace();
    if (this.pos !== this.src.length) this.fail(`unsupported syntax at "${this.src.slice(this.pos)}"`);
    return node;
  }

  private parseExpr(): Node {
    this.skipSpace();
    const c = this.src[this.pos];
    if (c === '"') return this.parseString();
    if (c !== undefined && /[0-9]/.test(c)) {
      const m = /^\d+(\.\d+)?/.exec(this.src.slice(this.pos)) as RegExpExecArray;
      this.pos += m[0].length;
      return { kind: 'literal', value: Number(m[0]) };
    }
    const ident = this.ident();
    if (ident === 'true' || ident === 'false') return { kind: 'literal', value: ident === 'true' };
    if (ident === 'null') return { kind: 'literal', value: null };
    this.skipSpace();
    if (this.src[this.pos] === '(') {
      this.pos++;
      const args: Node[] = [];
      this.skipSpace();
      while (this.src[this.pos] !== ')') {
        args.push(this.parseExpr());
        this.skipSpace();
        if (this.src[this.pos] === ',') this.pos++;
        else if (this.src[this.pos] !== ')') this.fail('expected , or ) in a function call');
        this.skipSpace();
      }
      this.pos++;
      if (!FUNCTIONS[ident]) this.fail(`unknown function ${ident}(); the applier knows ${KNOWN_FUNCTIONS.join(', ')}`);
      return { kind: 'call', name: ident, args };
    }
    const path: (string | number)[] = [ident];
    for (;;) {
      if (this.src[this.pos] === '.') {
        this.pos++;
        path.push(this.ident());
      } else if (this.src[this.pos] === '[') {
        this.pos++;
        const index = this.parseExpr();
        this.skipSpace();
        if (this.src[this.pos++] !== ']') this.fail('expected ]');
        if (index.kind !== 'literal' || (typeof index.value !== 'number' && typeof index.value !== 'string')) {
          this.fail('only literal indexes are supported');
        }
        path.push(index.value as string | number);
      } else break;
    }
    return { kind: 'ref', path };
  }

  private parseString(): Node {
    this.pos++;
    let raw = '';
    while (this.pos < this.src.length && this.src[this.pos] !== '"') {
      if (this.src[this.pos] === '\\') {
        const e = this.src[this.pos + 1];
        const map: Record<string, string> = { n: '\n', t: '\t', r: '\r', '"': '"', '\\': '\\' };
        if (!(e in map)) this.fail(`unsupported escape \\${e}`);
        raw += map[e];
        this.pos += 2;
      } else raw += this.src[this.pos++];
    }
    if (this.src[this.pos++] !== '"') this.fail('unterminated string');
    return raw.includes('${') ? { kind: 'template', text: raw } : { kind: 'literal', value: raw };
  }

  private ident(): string {
    const m = /^[A-Za-z_][A-Za-z0-9_-]*/.exec(this.src.slice(this.pos));
    if (!m) this.fail(`unsupported syntax at "${this.src.slice(this.pos)}"`);
    this.pos += m![0].length;
    return m![0];
  }

  private skipSpace(): void {
    while (/\s/.test(this.src[this.pos] ?? '')) this.pos++;
  }

  private fail(message: string): never {
    throw new Error(`${this.where}: in \${${this.src}}: ${message}`);
  }
}

function evalNode(node: Node, ctx: EvalContext, where: string): Value {
  switch (node.kind) {
    case 'literal':
      return node.value;
    case 'template':
      return evaluateTemplate(node.text, ctx, where);
    case 'ref':
      return ctx.resolve(node.path);
    case 'call':
      return FUNCTIONS[node.name](
        ctx,
        node.args.map((a) => evalNode(a, ctx, where)),
      );
  }
}

function collectRefs(node: Node, out: string[][]): void {
  if (node.kind === 'ref') out.push(node.path.slice(0, 3).map(String));
  else if (node.kind === 'call') node.args.forEach((a) => collectRefs(a, out));
  else if (node.kind === 'template') {
    for (const p of templateParts(node.text, '(references)'))
      if (typeof p !== 'string') collectRefs(new Parser(p.expr, '(references)').parseAll(), out);
  }
}

function asString(v: Value, fn: string): string {
  if (typeof v !== 'string') throw new Error(`${fn}() expects a string, got ${JSON.stringify(v)}`);
  return v;
}

function asList(v: Value, fn: string): Value[] {
  if (!Array.isArray(v)) throw new Error(`${fn}() expects a list, got ${JSON.stringify(v)}`);
  return v;
}

function filePath(ctx: EvalContext, p: Value, fn: string): string {
  const path = asString(p, fn);
  return isAbsolute(path) ? path : resolve(ctx.baseDir, path);
}
