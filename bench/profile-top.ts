/**
 * The top frames of a V8 .cpuprofile (as written by `node --cpu-prof`, e.g. `npm run bench -- --profile`):
 * self time per function, and total (inclusive) time for frames of our own code.
 * Usage: profile-top <file.cpuprofile> [count]
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly children?: readonly number[];
}

interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface Frame {
  readonly name: string;
  readonly selfMs: number;
  readonly totalMs: number;
}

const label = (n: ProfileNode) => {
  const file = n.callFrame.url.replace(/^file:\/\//, '').replace(/^.*\/(dist|node_modules)\//, '$1/');
  return `${n.callFrame.functionName || '(anonymous)'} ${file ? `${file}:${n.callFrame.lineNumber + 1}` : ''}`.trim();
};

/** Self and inclusive milliseconds per frame label, largest self time first. */
export function topFrames(profile: Profile): Frame[] {
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const totals = new Map<string, { self: number; total: number }>();
  // Inclusive time: a node's self time plus its subtree; a label counted once per path (recursion-safe).
  const visit = (node: ProfileNode, onPath: Set<string>): number => {
    let subtree = selfUs.get(node.id) ?? 0;
    const name = label(node);
    const first = !onPath.has(name);
    const path = first ? new Set(onPath).add(name) : onPath;
    for (const child of node.children ?? []) subtree += visit(byId.get(child)!, path);
    const entry = totals.get(name) ?? { self: 0, total: 0 };
    entry.self += selfUs.get(node.id) ?? 0;
    if (first) entry.total += subtree;
    totals.set(name, entry);
    return subtree;
  };
  const root = profile.nodes[0];
  if (root) visit(root, new Set());
  return [...totals.entries()]
    .map(([name, t]) => ({ name, selfMs: t.self / 1000, totalMs: t.total / 1000 }))
    .sort((a, b) => b.selfMs - a.selfMs);
}

if (require.main === module) {
  const [file, countText] = process.argv.slice(2);
  if (!file) {
    process.stderr.write('usage: profile-top <file.cpuprofile> [count]\n');
    process.exit(2);
  }
  const frames = topFrames(JSON.parse(readFileSync(file, 'utf8')) as Profile);
  const count = Number(countText ?? 25);
  const all = frames.reduce((sum, f) => sum + f.selfMs, 0);
  process.stdout.write(`total sampled ${all.toFixed(0)} ms\n\nself ms   self %  frame\n`);
  for (const f of frames.slice(0, count)) {
    process.stdout.write(`${f.selfMs.toFixed(0).padStart(7)}  ${((100 * f.selfMs) / all).toFixed(1).padStart(6)}%  ${f.name}\n`);
  }
  process.stdout.write(`\nour code by inclusive time (dist/):\ntotal ms  frame\n`);
  for (const f of frames
    .filter((x) => x.name.includes('dist/'))
    .sort((a, b) => b.totalMs - a.totalMs)
    .slice(0, count)) {
    process.stdout.write(`${f.totalMs.toFixed(0).padStart(8)}  ${f.name}\n`);
  }
}
