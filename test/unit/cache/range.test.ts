import { contentRange, parseRange } from '../../../lib/cache/range';

describe('parseRange', () => {
  const size = 1000;
  it.each([
    [undefined, { kind: 'full' }],
    ['bytes=0-0', { kind: 'partial', range: { start: 0, end: 0 } }],
    ['bytes=0-999', { kind: 'partial', range: { start: 0, end: 999 } }],
    ['bytes=10-', { kind: 'partial', range: { start: 10, end: 999 } }],
    ['bytes=990-5000', { kind: 'partial', range: { start: 990, end: 999 } }],
    ['bytes=-100', { kind: 'partial', range: { start: 900, end: 999 } }],
    ['bytes=-5000', { kind: 'partial', range: { start: 0, end: 999 } }],
    [' Bytes = 5 - 6 ', { kind: 'partial', range: { start: 5, end: 6 } }],
    ['bytes=1000-', { kind: 'unsatisfiable' }],
    ['bytes=5000-6000', { kind: 'unsatisfiable' }],
    ['bytes=-0', { kind: 'unsatisfiable' }],
    ['bytes=0-1,5-6', { kind: 'full' }],
    ['items=0-1', { kind: 'full' }],
    ['bytes=6-5', { kind: 'full' }],
    ['bytes=-', { kind: 'full' }],
    ['bytes=abc', { kind: 'full' }],
    [`bytes=0-${'9'.repeat(40)}`, { kind: 'partial', range: { start: 0, end: 999 } }],
    [`bytes=${'9'.repeat(40)}-`, { kind: 'unsatisfiable' }],
  ])('%j', (header, expected) => expect(parseRange(header, size)).toEqual(expected));

  it('an empty blob satisfies no range', () => {
    expect(parseRange('bytes=0-', 0)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRange('bytes=-1', 0)).toEqual({ kind: 'unsatisfiable' });
  });

  it('formats Content-Range', () => expect(contentRange({ start: 5, end: 9 }, 10)).toBe('bytes 5-9/10'));
});
