/**
 * Generates schemas.json from the Go source of kreuzwerker/terraform-provider-docker (internal/provider at tag
 * v3.6.2): the provider block, and the resources and data sources the stand-in serves, as the provider's
 * `schema.Schema` literals declare them. Run from the repository root with a checkout of the provider:
 *
 *   npx ts-node --transpile-only test/terraform-provider-docker/extract-schemas.ts PROVIDER_CHECKOUT/internal/provider
 *
 * It reads the literals (not the Go types), so a construct it does not know (a schema built by a function call)
 * stops the generation naming it.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FieldSchema, ResourceSchema, Schemas } from './schema';

const RESOURCES: Record<string, string> = {
  docker_service: 'resourceDockerService',
  docker_secret: 'resourceDockerSecret',
  docker_config: 'resourceDockerConfig',
  docker_network: 'resourceDockerNetwork',
  docker_volume: 'resourceDockerVolume',
  docker_image: 'resourceDockerImage',
  docker_registry_image: 'resourceDockerRegistryImage',
};

const DATA_SOURCES: Record<string, string> = {
  docker_registry_image: 'dataSourceDockerRegistryImage',
};

type Token = { kind: 'ident' | 'string' | 'number' | 'punct'; text: string };

function tokenize(src: string): Token[] {
  const tokens: Token[] = [];
  const re =
    /\s+|\/\/[^\n]*|\/\*[\s\S]*?\*\/|("(?:[^"\\]|\\.)*"|`[^`]*`|'(?:[^'\\]|\\.)+')|(0[xob][\da-fA-F_]+|\d[\d_.]*)|([A-Za-z_][\w.]*)|(:=|\.\.\.|&&|\|\||[{}()[\]:,&*=<>!+\-/%.;|^])/y;
  for (let at = 0; at < src.length; at = re.lastIndex) {
    const m = re.exec(src);
    if (!m) throw new Error(`cannot tokenize at ${src.slice(at, at + 40)}`);
    if (m[1]) tokens.push({ kind: 'string', text: /^[`']/.test(m[1]) ? m[1].slice(1, -1) : (JSON.parse(m[1]) as string) });
    else if (m[2]) tokens.push({ kind: 'number', text: m[2] });
    else if (m[3]) tokens.push({ kind: 'ident', text: m[3] });
    else if (m[4]) tokens.push({ kind: 'punct', text: m[4] });
  }
  return tokens;
}

class Parser {
  constructor(
    private readonly t: Token[],
    private readonly vars: Map<string, Token[]>,
    private pos = 0,
  ) {}

  private peek(): Token {
    return this.t[this.pos];
  }

  private next(): Token {
    return this.t[this.pos++];
  }

  private expect(text: string): void {
    const tok = this.next();
    if (tok?.text !== text) throw new Error(`expected ${text}, got ${tok?.text} near ${this.context()}`);
  }

  context(): string {
    return this.t
      .slice(Math.max(0, this.pos - 8), this.pos + 8)
      .map((x) => x.text)
      .join(' ');
  }

  /** The tokens of one expression, up to a `,` or closing bracket at depth 0. */
  expression(): Token[] {
    const out: Token[] = [];
    let depth = 0;
    for (;;) {
      const tok = this.peek();
      if (depth === 0 && (tok.text === ',' || tok.text === '}' || tok.text === ')')) return out;
      if (['{', '(', '['].includes(tok.text)) depth++;
      if (['}', ')', ']'].includes(tok.text)) depth--;
      out.push(this.next());
    }
  }

  /** `map[string]*schema.Schema{ "name": {...}, ... }` */
  schemaMap(): Record<string, FieldSchema> {
    for (const text of ['map', '[', 'string', ']', '*', 'schema.Schema', '{']) this.expect(text);
    const out: Record<string, FieldSchema> = {};
    while (this.peek().text !== '}') {
      const name = this.next();
      if (name.kind !== 'string') throw new Error(`expected an attribute name near ${this.context()}`);
      this.expect(':');
      out[name.text] = this.fieldValue(this.expression());
      if (this.peek().text === ',') this.next();
    }
    this.expect('}');
    return out;
  }

  private fieldValue(tokens: Token[]): FieldSchema {
    if (tokens.length === 1 && tokens[0].kind === 'ident') return this.fieldValue(this.variable(tokens[0].text, '&schema.Schema'));
    const body = tokens[0].text === '&' ? tokens.slice(2) : tokens;
    if (body[0].text === 'schema.Schema') body.shift();
    return new Parser(body, this.vars).field();
  }

  private variable(name: string, prefix: string): Token[] {
    const tokens = this.vars.get(name);
    if (!tokens) throw new Error(`unknown schema variable ${name}`);
    if (
      tokens
        .slice(0, 2)
        .map((x) => x.text)
        .join('') !== prefix
    )
      throw new Error(`${name} is not a ${prefix}`);
    return tokens;
  }

  /** `{ Type: schema.TypeString, Required: true, ... }` */
  private field(): FieldSchema {
    this.expect('{');
    const f: { -readonly [K in keyof FieldSchema]?: FieldSchema[K] } & Record<string, unknown> = {};
    while (this.peek().text !== '}') {
      const key = this.next().text;
      this.expect(':');
      const value = this.expression();
      if (this.peek().text === ',') this.next();
      const v = value.map((x) => x.text);
      switch (key) {
        case 'Type':
          f.type = (
            {
              'schema.TypeString': 'string',
              'schema.TypeInt': 'int',
              'schema.TypeBool': 'bool',
              'schema.TypeFloat': 'float',
              'schema.TypeList': 'list',
              'schema.TypeSet': 'set',
              'schema.TypeMap': 'map',
            } as const
          )[v[0]];
          if (!f.type) throw new Error(`unknown Type ${v[0]}`);
          break;
        case 'Required':
        case 'Optional':
        case 'Computed':
        case 'ForceNew':
        case 'Sensitive':
          f[key.charAt(0).toLowerCase() + key.slice(1)] = v[0] === 'true';
          break;
        case 'MaxItems':
        case 'MinItems':
          f[key === 'MaxItems' ? 'maxItems' : 'minItems'] = Number(v[0]);
          break;
        case 'Default':
          f.default = literal(value);
          break;
        case 'DefaultFunc':
          if (v[0] === 'schema.EnvDefaultFunc') f.envDefault = { name: value[2].text, value: literal(value.slice(4, -1)) };
          else f.defaultFunc = true; // a Go closure (the provider's host and ssh_opts): the stand-in reads the same env
          break;
        case 'Elem':
          if (v.length === 1) f.elem = { block: this.resource(this.variable(v[0], '&schema.Resource')) };
          else if (v[1] === 'schema.Resource') f.elem = { block: this.resource(value) };
          else if (v[1] === 'schema.Schema') f.elem = new Parser(value.slice(2), this.vars).field();
          else throw new Error(`unknown Elem ${v.join(' ')}`);
          break;
        case 'ConfigMode':
          throw new Error('ConfigMode is not handled');
        default: // Description, validators, ConflictsWith, Set, Deprecated: not part of the wire schema the stand-in checks
      }
    }
    this.expect('}');
    if (!f.type) throw new Error(`schema without Type near ${this.context()}`);
    return f as FieldSchema;
  }

  /** `&schema.Resource{ Schema: map[...]{...} }` */
  private resource(tokens: Token[]): Record<string, FieldSchema> {
    const p = new Parser(tokens, this.vars);
    for (const text of ['&', 'schema.Resource', '{']) p.expect(text);
    let schema: Record<string, FieldSchema> | undefined;
    while (p.peek().text !== '}') {
      const key = p.next().text;
      p.expect(':');
      if (key === 'Schema') schema = p.schemaMap();
      else p.expression();
      if (p.peek().text === ',') p.next();
    }
    if (!schema) throw new Error('resource without Schema');
    return schema;
  }

  /** The `&schema.Resource{...}` a function returns, or the provider's `Schema:`. */
  topResource(): { schema: Record<string, FieldSchema>; version: number; timeouts: string[] } {
    let schema: Record<string, FieldSchema> | undefined;
    let version = 0;
    const timeouts: string[] = [];
    this.expect('{');
    while (this.peek().text !== '}') {
      const key = this.next().text;
      this.expect(':');
      if (key === 'Schema') schema = this.schemaMap();
      else {
        const value = this.expression();
        if (key === 'SchemaVersion') version = Number(value[0].text);
        if (key === 'Timeouts')
          for (let i = 0; i < value.length - 1; i++)
            if (value[i + 1].text === ':' && /^[A-Z]/.test(value[i].text)) timeouts.push(value[i].text.toLowerCase());
      }
      if (this.peek().text === ',') this.next();
    }
    if (!schema) throw new Error('no Schema');
    return { schema, version, timeouts };
  }

  seek(...texts: string[]): void {
    for (; this.pos < this.t.length; this.pos++) if (texts.every((text, i) => this.t[this.pos + i]?.text === text)) return;
    throw new Error(`not found: ${texts.join(' ')}`);
  }

  skip(n: number): void {
    this.pos += n;
  }
}

function literal(tokens: Token[]): string | number | boolean {
  const [tok] = tokens;
  if (tokens.length !== 1) throw new Error(`not a literal: ${tokens.map((x) => x.text).join(' ')}`);
  if (tok.kind === 'string') return tok.text;
  if (tok.text === 'true' || tok.text === 'false') return tok.text === 'true';
  if (tok.kind === 'number') return tok.text.startsWith('0o') ? parseInt(tok.text.slice(2), 8) : Number(tok.text);
  throw new Error(`not a literal: ${tok.text}`);
}

function main(dir: string): void {
  const files = readdirSync(dir).filter((f) => f.endsWith('.go') && !f.endsWith('_test.go'));
  const tokens = files.flatMap((f) => tokenize(readFileSync(join(dir, f), 'utf8')));
  // Package-level `var name = &schema.X{...}`.
  const vars = new Map<string, Token[]>();
  for (let i = 0; i < tokens.length - 3; i++) {
    if (tokens[i].text === 'var' && tokens[i + 2].text === '=' && tokens[i + 3].text === '&') {
      let j = i + 3;
      while (tokens[j].text !== '{') j++;
      for (let depth = 0; ; j++) {
        if (tokens[j].text === '{') depth++;
        if (tokens[j].text === '}' && --depth === 0) break;
      }
      vars.set(tokens[i + 1].text, tokens.slice(i + 3, j + 1));
    }
  }
  const resource = (fn: string): ResourceSchema => {
    const p = new Parser(tokens, vars);
    p.seek('func', fn, '(', ')', '*', 'schema.Resource', '{', 'return', '&', 'schema.Resource');
    p.skip(10);
    const r = p.topResource();
    return { version: r.version, timeouts: r.timeouts.length ? r.timeouts : undefined, attributes: r.schema };
  };
  const p = new Parser(tokens, vars);
  p.seek('p', ':=', '&', 'schema.Provider', '{', 'Schema', ':');
  p.skip(7);
  const out: Schemas = {
    source: 'kreuzwerker/terraform-provider-docker v3.6.2 internal/provider (generated by extract-schemas.ts)',
    provider: { version: 0, attributes: p.schemaMap() },
    resources: Object.fromEntries(Object.entries(RESOURCES).map(([type, fn]) => [type, resource(fn)])),
    dataSources: Object.fromEntries(Object.entries(DATA_SOURCES).map(([type, fn]) => [type, resource(fn)])),
  };
  writeFileSync(join(__dirname, 'schemas.json'), `${JSON.stringify(out, null, 1)}\n`);
}

main(process.argv[2] ?? '.');
