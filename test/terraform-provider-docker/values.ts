/**
 * Terraform values on the wire (cty's msgpack encoding, by the schema's implied type): objects as maps with every
 * attribute present (null when unset), lists and sets as arrays, numbers as integers or floats, unknown values as
 * msgpack extension 0 (Terraform also sends extension 12, an unknown with refinements). In JavaScript an unknown
 * value is the UNKNOWN symbol.
 */
import { decode, encode, ExtensionCodec, ExtData } from '@msgpack/msgpack';
import { CtyType } from './schema';

export const UNKNOWN = Symbol('unknown');
export type Value = null | string | number | boolean | typeof UNKNOWN | Value[] | { [key: string]: Value };
export type ObjectValue = { [key: string]: Value };

const codec = new ExtensionCodec();
for (const type of [0, 12]) codec.register({ type, encode: () => null, decode: () => UNKNOWN });

export function decodeValue(bytes: Uint8Array | undefined | null): Value {
  if (!bytes || bytes.length === 0) return null;
  return decode(bytes, { extensionCodec: codec, useBigInt64: false }) as Value;
}

/** Encodes `value` as cty type `type`: absent object attributes become null, so Terraform's decoder finds them all. */
export function encodeValue(value: Value, type: CtyType): Uint8Array {
  return encode(shape(value, type), { ignoreUndefined: false, forceFloat32: false });
}

function shape(value: Value | undefined, type: CtyType): unknown {
  if (value === UNKNOWN) return new ExtData(0, new Uint8Array([0]));
  if (value === null || value === undefined) return null;
  if (typeof type === 'string') {
    if (type === 'string') return typeof value === 'string' ? value : String(value);
    if (type === 'number') return typeof value === 'number' ? value : Number(value);
    if (type === 'bool') return typeof value === 'boolean' ? value : value === 'true';
    throw new Error(`cty type ${type} is not supported`);
  }
  const [kind, inner] = type;
  if (kind === 'list' || kind === 'set') return (value as Value[]).map((v) => shape(v, inner as CtyType));
  if (kind === 'map') return Object.fromEntries(Object.entries(value as ObjectValue).map(([k, v]) => [k, shape(v, inner as CtyType)]));
  if (kind === 'object') {
    const attrs = inner as Record<string, CtyType>;
    const obj = value as ObjectValue;
    return Object.fromEntries(Object.keys(attrs).map((k) => [k, shape(obj[k], attrs[k])]));
  }
  throw new Error(`cty type ${kind} is not supported`);
}

/** A stable JSON form for comparing values (sets compared as sorted lists). */
export function canonical(value: Value | undefined, set = false): string {
  if (value === UNKNOWN) return '"<unknown>"';
  if (value === undefined || value === null) return 'null';
  if (Array.isArray(value)) {
    const items = value.map((v) => canonical(v));
    return `[${(set ? items.sort() : items).join(',')}]`;
  }
  if (typeof value === 'object')
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`)
      .join(',')}}`;
  return JSON.stringify(value);
}
