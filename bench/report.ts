/**
 * Benchmark results as rows (reference, ours, baseline, target) and their Markdown rendering. Pure: the
 * numbers come in, the table goes out, so the targets are judged the same way wherever they are read.
 */

export interface Row {
  readonly id: string;
  /** What was measured, with its unit. */
  readonly measure: string;
  readonly unit: string;
  readonly higherIsBetter: boolean;
  /** distribution 2.8 in proxy mode. */
  readonly reference?: number;
  readonly ours?: number;
  /** The practical limit or the direct pull, when the row has one. */
  readonly baseline?: { readonly label: string; readonly value: number };
  readonly target?: Target;
}

export interface Target {
  readonly text: string;
  /** undefined when a figure it needs is missing. */
  readonly met: (row: Row) => boolean | undefined;
}

const known = (...values: (number | undefined)[]) => values.every((v) => v !== undefined && Number.isFinite(v));

/** Warm throughput: ≥ 1.2× the reference and ≥ 0.5× the raw baseline. */
export const throughputTarget: Target = {
  text: '≥ 1.2× ref and ≥ 0.5× raw',
  met: (r) =>
    known(r.ours, r.reference, r.baseline?.value) ? r.ours! >= 1.2 * r.reference! && r.ours! >= 0.5 * r.baseline!.value : undefined,
};

/** Cold total time: ≤ 1.10× the direct pull. */
export const coldTotalTarget: Target = {
  text: '≤ 1.10× direct',
  met: (r) => (known(r.ours, r.baseline?.value) ? r.ours! <= 1.1 * r.baseline!.value : undefined),
};

/** Cold time to first byte: within 5 ms of the direct pull. */
export const ttfbTarget: Target = {
  text: '≤ direct + 5 ms',
  met: (r) => (known(r.ours, r.baseline?.value) ? r.ours! <= r.baseline!.value + 5 : undefined),
};

export const oneFetchTarget: Target = { text: 'exactly 1', met: (r) => (known(r.ours) ? r.ours === 1 : undefined) };

export const rssTarget: Target = { text: '≤ 150 MiB', met: (r) => (known(r.ours) ? r.ours! <= 150 : undefined) };

export const manifestP99Target: Target = { text: '≤ 5 ms', met: (r) => (known(r.ours) ? r.ours! <= 5 : undefined) };

export interface RunInfo {
  readonly date: string;
  readonly commit: string;
  readonly nproc: number;
  readonly node: string;
  readonly cpu: string;
  readonly mode: string;
  readonly durationS: number;
  readonly notes: readonly string[];
}

export function formatNumber(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return '—';
  if (Number.isInteger(value)) return String(value);
  const abs = Math.abs(value);
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/** ours ÷ reference, as "1.53×". */
export function ratio(row: Row): string {
  if (!known(row.ours, row.reference) || row.reference === 0) return '—';
  return `${(row.ours! / row.reference!).toFixed(2)}×`;
}

function metText(row: Row): string {
  if (!row.target) return '';
  const met = row.target.met(row);
  return met === undefined ? 'not run' : met ? 'yes' : '**no**';
}

/** The whole results file: run facts, the table, and the notes. */
export function renderMarkdown(info: RunInfo, rows: readonly Row[], failures: readonly string[]): string {
  const head = '| # | measure | distribution 2.8 proxy | ours | ours ÷ ref | baseline | target | met? |';
  const rule = '|---|---|---:|---:|---:|---:|---|---|';
  const lines = rows.map((r) => {
    const baseline = r.baseline ? `${formatNumber(r.baseline.value)} (${r.baseline.label})` : '';
    const measure = `${r.measure} (${r.unit}, ${r.higherIsBetter ? 'higher' : 'lower'} is better)`;
    return `| ${r.id} | ${measure} | ${formatNumber(r.reference)} | ${formatNumber(r.ours)} | ${ratio(r)} | ${baseline} | ${r.target?.text ?? ''} | ${metText(r)} |`;
  });
  return [
    '# DTR cache benchmark: ours vs distribution 2.8 proxy',
    '',
    `- date: ${info.date}`,
    `- commit: ${info.commit}`,
    `- machine: nproc ${info.nproc}, ${info.cpu}, node ${info.node}`,
    `- mode: ${info.mode}; whole run ${info.durationS.toFixed(0)} s`,
    '',
    head,
    rule,
    ...lines,
    '',
    ...(failures.length ? ['## Failed steps (their figures are shown as —)', '', ...failures.map((f) => `- ${f}`), ''] : []),
    '## How it was measured',
    '',
    ...info.notes.map((n) => `- ${n}`),
    '',
  ].join('\n');
}

/** The middle value, or the mean of the two middle ones. */
export const median = (values: readonly number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
