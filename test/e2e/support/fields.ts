/**
 * A strict reader of one synthesized block: every field must be taken by the translation, and `done()` throws
 * naming any field left over, so a field the applier does not understand can never be dropped silently.
 */
import { parseDuration } from '../../../lib/config';
import type { Value } from './expressions';

export class Fields {
  private readonly used = new Set<string>();
  private readonly obj: Record<string, Value>;

  constructor(
    value: Value | undefined,
    readonly where: string,
  ) {
    if (value !== undefined && value !== null && (typeof value !== 'object' || Array.isArray(value))) {
      throw new Error(`${where}: expected a block (object), got ${JSON.stringify(value)}`);
    }
    this.obj = (value ?? {}) as Record<string, Value>;
  }

  has(key: string): boolean {
    const v = this.obj[key];
    return v !== undefined && v !== null;
  }

  /** The raw value, marked as understood. */
  raw(key: string): Value | undefined {
    this.used.add(key);
    const v = this.obj[key];
    return v === null ? undefined : v;
  }

  /** Marks fields as understood without reading them (e.g. Terraform meta-arguments the caller handles). */
  ignore(...keys: string[]): void {
    for (const k of keys) this.used.add(k);
  }

  str(key: string): string | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw this.error(key, `expected a string, got ${JSON.stringify(v)}`);
    return v;
  }

  requiredStr(key: string): string {
    const v = this.str(key);
    if (v === undefined) throw this.error(key, 'is required');
    return v;
  }

  num(key: string): number | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    const n = typeof v === 'string' && /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number') throw this.error(key, `expected a number, got ${JSON.stringify(v)}`);
    return n;
  }

  bool(key: string): boolean | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (v === 'true' || v === 'false') return v === 'true';
    if (typeof v !== 'boolean') throw this.error(key, `expected a boolean, got ${JSON.stringify(v)}`);
    return v;
  }

  strings(key: string): string[] | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string'))
      throw this.error(key, `expected a list of strings, got ${JSON.stringify(v)}`);
    return v as string[];
  }

  stringMap(key: string): Record<string, string> | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (v === null || typeof v !== 'object' || Array.isArray(v) || Object.values(v).some((x) => typeof x !== 'string')) {
      throw this.error(key, `expected a map of strings, got ${JSON.stringify(v)}`);
    }
    return v as Record<string, string>;
  }

  /** A Go duration string (`10s`, `1m30s`) as nanoseconds, as the Engine API wants. */
  durationNs(key: string): number | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    const ms = typeof v === 'string' || typeof v === 'number' ? parseDuration(v) : undefined;
    if (ms === undefined) throw this.error(key, `expected a Go duration such as 10s, got ${JSON.stringify(v)}`);
    return Math.round(ms * 1e6);
  }

  /** A block of which Terraform allows at most one: synthesized as an object or a one-element list. */
  block(key: string): Fields | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (Array.isArray(v)) {
      if (v.length === 0) return undefined;
      if (v.length > 1) throw this.error(key, `allows one block, got ${v.length}`);
      return new Fields(v[0], `${this.where}.${key}`);
    }
    return new Fields(v, `${this.where}.${key}`);
  }

  /** A repeatable block: a list (or a single object). */
  blocks(key: string): Fields[] {
    const v = this.raw(key);
    if (v === undefined) return [];
    const list = Array.isArray(v) ? v : [v];
    return list.map((item, i) => new Fields(item, `${this.where}.${key}[${i}]`));
  }

  /** Terraform's `labels { label, value }` blocks as a map. */
  labels(key: string): Record<string, string> | undefined {
    const list = this.blocks(key);
    if (list.length === 0) return undefined;
    return Object.fromEntries(
      list.map((l) => {
        const entry: [string, string] = [l.requiredStr('label'), l.requiredStr('value')];
        l.done();
        return entry;
      }),
    );
  }

  /** Throws naming every field not taken. Call once the translation has read everything it understands. */
  done(): void {
    const left = Object.keys(this.obj).filter((k) => !this.used.has(k) && this.obj[k] !== null && this.obj[k] !== undefined);
    if (left.length > 0) {
      throw new Error(
        `${this.where}: the applier does not understand ${left.map((k) => `"${k}"`).join(', ')}; ` +
          'teach test/e2e/support/translate.ts what it means rather than deploying something else than was synthesized',
      );
    }
  }

  error(key: string, message: string): Error {
    return new Error(`${this.where}.${key}: ${message}`);
  }
}

/** Drops undefined members (and empty objects), so specs sent to the engine carry only what was synthesized. */
export function compact<T extends Record<string, unknown>>(obj: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(obj).filter(
      ([, v]) => v !== undefined && !(v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0),
    ),
  ) as Partial<T>;
}
