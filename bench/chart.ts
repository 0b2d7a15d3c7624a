/**
 * The results table as an SVG bar chart, written by hand (no charting dependency): one group per row, a bar
 * for the reference, ours and the baseline, each row on its own scale (its largest value is a full bar), and
 * the target verdict beside our bar.
 */
import { formatNumber, ratio, Row } from './report';

const WIDTH = 1000;
const LABEL_WIDTH = 320;
const BAR_MAX = 400;
const LABEL_CHARS = 44;
const BAR_HEIGHT = 14;
const GAP = 4;
const COLORS = { reference: '#8c8c8c', ours: '#1f6feb', baseline: '#6fbf73' } as const;

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] ?? c);
}

interface Bar {
  readonly kind: keyof typeof COLORS;
  readonly label: string;
  readonly value: number;
}

function barsOf(row: Row): Bar[] {
  const bars: Bar[] = [];
  if (row.reference !== undefined && Number.isFinite(row.reference))
    bars.push({ kind: 'reference', label: 'distribution proxy', value: row.reference });
  if (row.ours !== undefined && Number.isFinite(row.ours)) bars.push({ kind: 'ours', label: 'ours', value: row.ours });
  if (row.baseline && Number.isFinite(row.baseline.value))
    bars.push({ kind: 'baseline', label: row.baseline.label, value: row.baseline.value });
  return bars;
}

/** Splits text into lines of at most `width` characters at spaces. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  return line ? [...lines, line] : lines;
}

/** An SVG document of the rows; `title` and `subtitle` go on top. */
export function renderChart(title: string, subtitle: string, rows: readonly Row[]): string {
  const parts: string[] = [];
  let y = 70;
  for (const row of rows) {
    const bars = barsOf(row);
    const direction = row.higherIsBetter ? 'higher is better' : 'lower is better';
    const lines = wrap(`${row.id}. ${row.measure}`, LABEL_CHARS);
    lines.forEach((line, i) => parts.push(`<text x="10" y="${y + 12 + i * 14}" class="label">${escapeXml(line)}</text>`));
    const ratioText = ratio(row) === '—' ? '' : ` · ours ÷ ref ${ratio(row)}`;
    parts.push(`<text x="10" y="${y + 13 + lines.length * 14}" class="unit">${escapeXml(`${row.unit}, ${direction}${ratioText}`)}</text>`);
    const groupHeight = Math.max(bars.length * (BAR_HEIGHT + GAP), lines.length * 14 + 16) + 18;
    const max = Math.max(...bars.map((b) => Math.abs(b.value)), Number.MIN_VALUE);
    bars.forEach((bar, i) => {
      const by = y + i * (BAR_HEIGHT + GAP);
      const width = Math.max(1, (Math.abs(bar.value) / max) * BAR_MAX);
      parts.push(`<rect x="${LABEL_WIDTH}" y="${by}" width="${width.toFixed(1)}" height="${BAR_HEIGHT}" fill="${COLORS[bar.kind]}"/>`);
      let text = `${formatNumber(bar.value)} ${bar.kind === 'baseline' ? `(${bar.label})` : ''}`;
      if (bar.kind === 'ours' && row.target) {
        const met = row.target.met(row);
        text += met === undefined ? '' : met ? ` ✓ ${row.target.text}` : ` ✗ ${row.target.text}`;
      }
      parts.push(`<text x="${LABEL_WIDTH + width + 6}" y="${by + BAR_HEIGHT - 3}" class="value">${escapeXml(text.trim())}</text>`);
    });
    if (bars.length === 0) parts.push(`<text x="${LABEL_WIDTH}" y="${y + 12}" class="value">not run (see latest.md)</text>`);
    y += groupHeight;
    parts.push(`<line x1="10" x2="${WIDTH - 10}" y1="${y - 8}" y2="${y - 8}" class="rule"/>`);
  }
  const legend = (Object.keys(COLORS) as (keyof typeof COLORS)[])
    .map((kind, i) => {
      const x = LABEL_WIDTH + i * 170;
      const name = kind === 'reference' ? 'distribution 2.8 proxy' : kind === 'ours' ? 'ours' : 'direct / raw baseline';
      return `<rect x="${x}" y="44" width="12" height="12" fill="${COLORS[kind]}"/><text x="${x + 16}" y="54" class="value">${name}</text>`;
    })
    .join('');
  const height = y + 10;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}">`,
    '<style>text{font-family:sans-serif;fill:#222}.title{font-size:16px;font-weight:bold}.label{font-size:12px}.unit{font-size:10px;fill:#666}.value{font-size:11px}.rule{stroke:#ddd}</style>',
    `<rect width="${WIDTH}" height="${height}" fill="#fff"/>`,
    `<text x="10" y="22" class="title">${escapeXml(title)}</text>`,
    `<text x="10" y="38" class="unit">${escapeXml(subtitle)}</text>`,
    legend,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}
