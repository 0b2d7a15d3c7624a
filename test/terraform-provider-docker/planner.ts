/**
 * Planning as terraform-plugin-sdk v2 does it for kreuzwerker/docker's resources (none has a CustomizeDiff or a
 * DiffSuppressFunc on the resources served here):
 * - a configured value is planned as written; an unset one takes its Default (or its environment default);
 * - an unset computed value keeps the prior state's, or is unknown when creating;
 * - an unset optional value that the prior state holds as its zero value (0, "", false, empty) stays: the SDK does
 *   not tell unset from zero;
 * - a changed ForceNew attribute anywhere (inside a set: an element added or removed that has one; on a block
 *   list: a change of its count) replaces the resource, and the replacement is planned as a create.
 * Nested blocks are lists (sets) of objects; Terraform's own null for an absent block is the empty list.
 */
import { blockOf, FieldSchema, isBlock, isSingle } from './schema';
import { canonical, ObjectValue, UNKNOWN, Value } from './values';

export type Path = (string | number)[];

export interface Plan {
  readonly planned: ObjectValue;
  readonly requiresReplace: Path[];
}

export function planResource(attrs: Record<string, FieldSchema>, prior: ObjectValue | null, config: ObjectValue): Plan {
  const planned = planObject(attrs, config, prior);
  if (!prior) return { planned, requiresReplace: [] };
  const requiresReplace: Path[] = [];
  forceNewChanges(attrs, planned, prior, [], requiresReplace);
  if (requiresReplace.length === 0) return { planned, requiresReplace };
  return { planned: planObject(attrs, config, null), requiresReplace };
}

function planObject(attrs: Record<string, FieldSchema>, config: ObjectValue | null, prior: ObjectValue | null): ObjectValue {
  const out: ObjectValue = {};
  for (const [key, f] of Object.entries(attrs)) out[key] = planField(f, config?.[key] ?? null, prior ? (prior[key] ?? null) : undefined);
  return out;
}

/** `prior` is undefined when the resource is being created (null: it exists and the value is unset). */
function planField(f: FieldSchema, config: Value, prior: Value | undefined): Value {
  if (config === UNKNOWN) return UNKNOWN;
  if (isBlock(f)) {
    const block = blockOf(f)!;
    if (isSingle(f)) return config === null ? null : planObject(block, config as ObjectValue, (prior as ObjectValue) ?? null);
    const items = (config as ObjectValue[] | null) ?? [];
    if (items.length === 0 && f.computed) return prior === undefined ? UNKNOWN : (prior ?? []);
    const priorItems = Array.isArray(prior) ? (prior as ObjectValue[]) : [];
    return items.map((item, i) => {
      if ((item as Value) === UNKNOWN) return UNKNOWN;
      const match = f.type === 'list' ? priorItems[i] : priorItems.find((p) => sameConfigured(block, item, p));
      return planObject(block, item, match ?? null);
    });
  }
  if (config !== null) return config;
  const fallback = f.default ?? (f.envDefault ? (process.env[f.envDefault.name] ?? f.envDefault.value) : undefined);
  if (fallback !== undefined) return fallback;
  if (f.computed) return prior === undefined ? UNKNOWN : prior;
  return prior !== undefined && isZero(prior) ? prior : null;
}

/** Whether a prior set element is the one configured: equal in every attribute the configuration sets. */
function sameConfigured(block: Record<string, FieldSchema>, config: ObjectValue, prior: ObjectValue): boolean {
  return Object.entries(block).every(
    ([k, f]) => config[k] === null || config[k] === undefined || (!isBlock(f) && equal(f, config[k], prior[k])) || isBlock(f),
  );
}

function isZero(v: Value): boolean {
  return (
    v === null ||
    v === 0 ||
    v === '' ||
    v === false ||
    (Array.isArray(v) && v.length === 0) ||
    (typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0)
  );
}

export function equal(f: FieldSchema, a: Value | undefined, b: Value | undefined): boolean {
  if (a === UNKNOWN || b === UNKNOWN) return false;
  const norm = (v: Value | undefined) =>
    v === undefined || v === null || (isBlock(f) && !isSingle(f) && Array.isArray(v) && v.length === 0) ? null : v;
  const x: Value = norm(a) as Value;
  const y: Value = norm(b) as Value;
  if (x === null || y === null) return x === y || (!isBlock(f) && isZero(x) && isZero(y));
  const block = blockOf(f);
  if (f.type === 'set') {
    const key = (v: Value) => (block ? canonical(normalizeObject(block, v as ObjectValue)) : canonical(v));
    return canonical((x as Value[]).map(key).sort() as unknown as Value) === canonical((y as Value[]).map(key).sort() as unknown as Value);
  }
  if (block && Array.isArray(x) && Array.isArray(y))
    return x.length === y.length && x.every((item, i) => objectsEqual(block, item as ObjectValue, y[i] as ObjectValue));
  if (block && isSingle(f)) return objectsEqual(block, x as ObjectValue, y as ObjectValue);
  return canonical(x) === canonical(y);
}

function objectsEqual(block: Record<string, FieldSchema>, a: ObjectValue, b: ObjectValue): boolean {
  return Object.entries(block).every(([k, f]) => equal(f, a?.[k], b?.[k]));
}

/** Sets inside set elements sorted, so elements compare by content. */
function normalizeObject(block: Record<string, FieldSchema>, v: ObjectValue): Value {
  if (!v || v === (UNKNOWN as unknown)) return v;
  return Object.fromEntries(
    Object.entries(block).map(([k, f]) => {
      const x = v[k] ?? null;
      if (f.type === 'set' && Array.isArray(x)) {
        const inner = blockOf(f);
        return [k, x.map((e) => (inner ? canonical(normalizeObject(inner, e as ObjectValue)) : canonical(e))).sort()];
      }
      if (isBlock(f) && Array.isArray(x)) return [k, x.map((e) => normalizeObject(blockOf(f)!, e as ObjectValue))];
      return [k, x];
    }),
  );
}

function hasForceNew(block: Record<string, FieldSchema>): boolean {
  return Object.values(block).some((f) => f.forceNew || (blockOf(f) !== undefined && hasForceNew(blockOf(f)!)));
}

function forceNewChanges(attrs: Record<string, FieldSchema>, planned: ObjectValue, prior: ObjectValue, path: Path, out: Path[]): void {
  for (const [key, f] of Object.entries(attrs)) {
    const a: Value = planned?.[key] ?? null;
    const b: Value = prior?.[key] ?? null;
    if (equal(f, a, b)) continue;
    const here = [...path, key];
    const block = blockOf(f);
    // ForceNew on a list or set of blocks covers its count (the SDK's "#" entry); its elements' attributes carry
    // their own ForceNew. On any other attribute it covers every change.
    const count = (v: Value) => (Array.isArray(v) ? v.length : 0);
    if (f.forceNew && (!block || a === UNKNOWN || count(a) !== count(b))) {
      out.push(here);
      continue;
    }
    if (!block || !hasForceNew(block)) continue;
    if (a === UNKNOWN) {
      out.push(here);
      continue;
    }
    if (isSingle(f)) forceNewChanges(block, a as ObjectValue, b as ObjectValue, here, out);
    else if (f.type === 'list') {
      const [xs, ys] = [(a as ObjectValue[]) ?? [], (b as ObjectValue[]) ?? []];
      for (let i = 0; i < Math.max(xs.length, ys.length); i++) {
        if (i >= xs.length || i >= ys.length) out.push([...here, i]);
        else forceNewChanges(block, xs[i], ys[i], [...here, i], out);
      }
    } else out.push(here); // a set element added or removed, and its elements carry ForceNew attributes
  }
}

/** Nested blocks that are null become empty lists, as Terraform represents absent blocks. */
export function normalizeBlocks(attrs: Record<string, FieldSchema>, value: ObjectValue): ObjectValue {
  const out: ObjectValue = {};
  for (const [key, f] of Object.entries(attrs)) {
    const v = value[key] ?? null;
    if (!isBlock(f) || v === UNKNOWN) out[key] = v;
    else if (isSingle(f)) out[key] = v === null ? null : normalizeBlocks(blockOf(f)!, v as ObjectValue);
    else out[key] = ((v as ObjectValue[] | null) ?? []).map((e) => (e === (UNKNOWN as unknown) ? e : normalizeBlocks(blockOf(f)!, e)));
  }
  return out;
}
