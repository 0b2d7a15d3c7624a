/**
 * What the sweeper's holder knows of a shard's content without listing it: the shard's index, and the changes
 * reported since it was written.
 *
 * - `ShardIndex`: key → size and last access of each blob and manifest of one shard, kept in the store as one
 *   object `_sweeper/index/<xx>` (gzip of `<key> <size> <lastAccess ms>` lines: about 40 bytes an entry). The
 *   holder writes it when it processes the shard; a pass reads it instead of listing the shard.
 * - `ChangeLog`: fills (key, size) and accesses (key, time) by key, the latest of each kept, bounded in entries.
 *   Every replica keeps one of its own fills and hits and writes it as one report object per renewal period
 *   (`encodeReport`); the holder merges the reports into its own log of changes not yet in an index (kept in the
 *   store as `_sweeper/pending`), and applies a shard's changes when it processes the shard (`applyChanges`).
 *
 * The index is a lower bound of each entry's last access (a lost report leaves it older than the truth), never
 * newer: the driver's `lastAccess` decides every eviction (sweeper.ts stats an entry before deleting it).
 */
import { promisify } from 'node:util';
import { gunzip as gunzipCallback, gzip as gzipCallback } from 'node:zlib';
import { readCapped } from './relay';
import { writeSmall, type StorageDriver } from './storage';

export interface IndexEntry {
  size: number;
  lastAccess: number;
}

export type ShardIndex = Map<string, IndexEntry>;

/** A change to one key: a fill (`size` known), an access (`size` undefined) or a removal (`gone`), at `at`. */
export interface Change {
  size?: number;
  at: number;
  gone?: boolean;
}

const INDEX_PREFIX = '_sweeper/index/';
/** Largest index read back (a shard of 1,000,000 entries is about 40 MB of lines, 40 MB compressed at most). */
const MAX_INDEX_BYTES = 64 * 1024 * 1024;

// On libuv's threadpool: (de)compressing a shard's index takes several ms, which the event loop spends on hits instead.
const gzip = promisify(gzipCallback);
const gunzip = promisify(gunzipCallback);

export function indexKey(shard: number): string {
  return `${INDEX_PREFIX}${shard.toString(16).padStart(2, '0')}`;
}

export function encodeIndex(index: ShardIndex): Promise<Buffer> {
  const lines: string[] = [];
  for (const [key, { size, lastAccess }] of index) lines.push(`${key} ${size} ${lastAccess}\n`);
  return gzip(lines.join(''));
}

/** The index in `data`; rejects when it is not one (the caller lists the shard instead). */
export async function decodeIndex(data: Buffer): Promise<ShardIndex> {
  const index: ShardIndex = new Map();
  for (const line of (await gunzip(data)).toString('utf8').split('\n')) {
    if (line === '') continue;
    const [key, size, lastAccess] = line.split(' ');
    const entry = { size: Number(size), lastAccess: Number(lastAccess) };
    if (!key || !Number.isFinite(entry.size) || !Number.isFinite(entry.lastAccess)) throw new Error(`malformed index line: ${line}`);
    index.set(key, entry);
  }
  return index;
}

/** The shard's index, or undefined if there is none. Throws when it cannot be read or decoded. */
export async function readIndex(storage: StorageDriver, shard: number): Promise<ShardIndex | undefined> {
  const stream = await storage.read(indexKey(shard));
  return stream ? decodeIndex(await readCapped(stream, MAX_INDEX_BYTES)) : undefined;
}

export async function writeIndex(storage: StorageDriver, shard: number, index: ShardIndex): Promise<void> {
  return writeSmall(storage, indexKey(shard), await encodeIndex(index));
}

/**
 * Applies `changes` to `index`, the latest by time winning: a fill adds its key (or sets its size), an access
 * raises its last access, a removal drops it unless it was accessed after. Returns the keys accessed that the
 * index does not hold (their size is unknown: the caller stats them).
 */
export function applyChanges(index: ShardIndex, changes: Iterable<[string, Change]>): string[] {
  const unknown: string[] = [];
  for (const [key, change] of changes) {
    const entry = index.get(key);
    if (change.gone) {
      if (entry && entry.lastAccess <= change.at) index.delete(key);
    } else if (entry) {
      entry.lastAccess = Math.max(entry.lastAccess, change.at);
      if (change.size !== undefined) entry.size = change.size;
    } else if (change.size !== undefined) index.set(key, { size: change.size, lastAccess: change.at });
    else unknown.push(key);
  }
  return unknown;
}

/** Changes by key, the latest kept; at most `maxKeys` keys (a change beyond is dropped and `dropped` counts it). */
export class ChangeLog {
  private changes = new Map<string, Change>();
  dropped = 0;

  constructor(private readonly maxKeys: number) {}

  get size(): number {
    return this.changes.size;
  }

  add(key: string, change: Change): void {
    const known = this.changes.get(key);
    if (!known) {
      if (this.changes.size >= this.maxKeys) this.dropped++;
      else this.changes.set(key, { ...change });
      return;
    }
    if (change.at >= known.at) {
      known.at = change.at;
      known.gone = change.gone;
    }
    if (change.size !== undefined && !change.gone) known.size = change.size;
  }

  /** Adds every change of `other` (e.g. a report read from the store). */
  addAll(other: Iterable<[string, Change]>): void {
    for (const [key, change] of other) this.add(key, change);
  }

  /** Removes and returns the changes whose key `belongs`. */
  take(belongs: (key: string) => boolean = () => true): [string, Change][] {
    const taken: [string, Change][] = [];
    for (const entry of this.changes) if (belongs(entry[0])) taken.push(entry);
    for (const [key] of taken) this.changes.delete(key);
    return taken;
  }

  entries(): IterableIterator<[string, Change]> {
    return this.changes.entries();
  }
}

/** A report or the pending log as stored: `[key, size or null, at, gone 0/1]` per key, JSON. */
export function encodeChanges(changes: Iterable<[string, Change]>): Buffer {
  const rows: [string, number | null, number, number][] = [];
  for (const [key, c] of changes) rows.push([key, c.size ?? null, c.at, c.gone ? 1 : 0]);
  return Buffer.from(JSON.stringify({ changes: rows }));
}

/** The changes in a stored report or pending log; [] for anything else (a report of older code, garbage). */
export function decodeChanges(data: Buffer): [string, Change][] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data.toString('utf8'));
  } catch {
    return [];
  }
  const rows = (parsed as { changes?: unknown })?.changes;
  if (!Array.isArray(rows)) return [];
  const out: [string, Change][] = [];
  for (const row of rows) {
    if (!Array.isArray(row) || typeof row[0] !== 'string' || typeof row[2] !== 'number') continue;
    const change: Change = { at: row[2] };
    if (typeof row[1] === 'number') change.size = row[1];
    if (row[3] === 1) change.gone = true;
    out.push([row[0], change]);
  }
  return out;
}
