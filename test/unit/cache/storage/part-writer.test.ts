import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { partWriter } from '../../../../lib/cache/storage/part-writer';
import { sleep } from '../../../../harness/tools';

describe('partWriter', () => {
  test('cuts the stream into full parts plus a tail, in order, with bounded parts in flight', async () => {
    const partSize = 100_000;
    const data = randomBytes(10 * partSize + 4321);
    const parts: Buffer[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    let tail: Buffer | undefined;
    const writer = partWriter({
      partSize,
      concurrency: 2,
      sendPart: async (part, index) => {
        maxInFlight = Math.max(maxInFlight, ++inFlight);
        await sleep(5 + (index % 3) * 5); // out-of-order completion
        parts[index] = part;
        inFlight--;
      },
      finish: async (rest, sent) => {
        expect(sent).toBe(10);
        tail = rest;
      },
    });
    // Uneven chunk sizes, so parts straddle chunk boundaries.
    const chunks: Buffer[] = [];
    for (let i = 0, n = 1; i < data.length; i += n, n = (n * 7919) % 65521 || 1) chunks.push(data.subarray(i, i + n));
    await pipeline(Readable.from(chunks), writer);
    expect(parts.every((p) => p.length === partSize)).toBe(true);
    expect(maxInFlight).toBeLessThanOrEqual(2);
    expect(Buffer.concat([...parts, tail!]).equals(data)).toBe(true);
  });

  test('a failed part fails the stream', async () => {
    const writer = partWriter({
      partSize: 10,
      concurrency: 1,
      sendPart: async () => {
        throw new Error('part refused');
      },
      finish: async () => undefined,
    });
    await expect(pipeline(Readable.from([Buffer.alloc(25), Buffer.alloc(25)]), writer)).rejects.toThrow('part refused');
  });
});
