/**
 * The benchmarks' WAN link emulator (bench/wan-link.ts) on loopback: bytes arrive intact and in order, counted;
 * no transfer beats the link's round trip or its shared bandwidth (lower bounds only: a loaded machine may be
 * slower, never faster).
 */
import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { startWanLink, type WanLink } from '../../bench/wan-link';

const MiB = 1024 * 1024;
const payload = randomBytes(2 * MiB);
const hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Connects through the link, sends one byte, reads to the end: first-byte and total times, and the bytes. */
function fetchThrough(link: WanLink): Promise<{ firstMs: number; totalMs: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let firstMs = 0;
    const chunks: Buffer[] = [];
    const socket = connect(link.port, '127.0.0.1', () => socket.write('g'));
    socket.on('data', (c: Buffer) => {
      if (chunks.length === 0) firstMs = performance.now() - started;
      chunks.push(c);
    });
    socket.on('end', () => resolve({ firstMs, totalMs: performance.now() - started, body: Buffer.concat(chunks) }));
    socket.on('error', reject);
  });
}

describe('WAN link emulator', () => {
  let target: Server;
  let port = 0;
  beforeAll(async () => {
    // Answers the first byte a client sends with the whole payload, then closes.
    target = createServer((s) => s.once('data', () => s.end(payload)));
    await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
    port = (target.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => target.close(() => r())));

  it('adds the round trip and shares its bandwidth between connections, counting the bytes', async () => {
    const link = await startWanLink({ targetPort: port, rttMs: 100, sharedBytesPerSecond: 8 * MiB });
    try {
      const results = await Promise.all([fetchThrough(link), fetchThrough(link)]);
      for (const r of results) {
        expect(hex(r.body)).toBe(hex(payload));
        // Connect (one round trip), then the request out and the answer back (another).
        expect(r.firstMs).toBeGreaterThanOrEqual(195);
      }
      // 4 MiB over a shared 8 MiB/s: at least half a second of transfer after the two round trips.
      expect(Math.max(...results.map((r) => r.totalMs))).toBeGreaterThanOrEqual(195 + 490);
      expect(link.bytesDown).toBe(2 * payload.length);
      expect(link.bytesUp).toBe(2);
    } finally {
      await link.stop();
    }
  });

  it('limits each connection to its own rate, changeable while it runs', async () => {
    const link = await startWanLink({ targetPort: port, perConnectionBytesPerSecond: 4 * MiB });
    try {
      const [a, b] = await Promise.all([fetchThrough(link), fetchThrough(link)]);
      // Each connection has its own 4 MiB/s: 2 MiB in no less than half a second, both at once.
      for (const r of [a, b]) {
        expect(hex(r.body)).toBe(hex(payload));
        expect(r.totalMs).toBeGreaterThanOrEqual(450);
      }
      link.perConnectionBytesPerSecond = 16 * MiB;
      expect(hex((await fetchThrough(link)).body)).toBe(hex(payload));
    } finally {
      await link.stop();
    }
  });
});
