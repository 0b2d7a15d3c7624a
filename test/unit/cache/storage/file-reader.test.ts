import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createServer, type AddressInfo, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { FileReader } from '../../../../lib/cache/storage/file-reader';

const KiB = 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const openFds = () => readdirSync('/proc/self/fd').length;

describe('FileReader: a stored file range, read on the event loop from the page cache', () => {
  let dir: string;
  let file: string;
  const content = randomBytes(5 * 1024 * KiB + 123);
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'dtr-cache-file-reader-'));
    file = join(dir, 'data');
    writeFileSync(file, content);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const reader = async (start?: number, end?: number, chunkSize = 64 * KiB) =>
    new FileReader(await open(file, 'r'), { start, end, chunkSize });

  it('streams the whole file and byte ranges exactly, in chunks of at most chunkSize', async () => {
    for (const [start, end] of [
      [undefined, undefined],
      [0, 0],
      [1000, 300 * KiB],
      [5 * 1024 * KiB, undefined],
    ] as const) {
      const chunks: Buffer[] = [];
      const r = await reader(start, end);
      r.on('data', (chunk: Buffer) => chunks.push(chunk)); // not for-await: read() joins what is buffered
      await once(r, 'end');
      const expected = content.subarray(start ?? 0, end === undefined ? undefined : end + 1);
      expect(sha(Buffer.concat(chunks))).toBe(sha(expected));
      expect(Math.max(...chunks.map((c) => c.length))).toBeLessThanOrEqual(64 * KiB);
    }
  });

  it('ends early, without an error, when the file is shorter than the range', async () => {
    let bytes = 0;
    for await (const chunk of await reader(content.length - 10, content.length + 1000)) bytes += (chunk as Buffer).length;
    expect(bytes).toBe(10);
  });

  it('sendTo writes the range through a socket with the right bytes, ends it, and closes the file', async () => {
    const received: Buffer[] = [];
    const server = createServer((s) => s.on('data', (d) => received.push(d)));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const fds = openFds();
      const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
      await once(socket, 'connect');
      const r = await reader(7, content.length - 8);
      let counted = 0;
      r.sendTo(socket, (n) => (counted += n));
      await Promise.all([once(socket, 'finish'), once(r, 'close')]);
      socket.destroy();
      await new Promise((ok) => setTimeout(ok, 100)); // the server reads what is left in loopback's buffer
      expect(sha(Buffer.concat(received))).toBe(sha(content.subarray(7, content.length - 7)));
      expect(counted).toBe(content.length - 14);
      expect(openFds()).toBe(fds);
    } finally {
      server.close();
    }
  });

  it('sendTo reuses its buffers once written: a slow writer sees at most two, each intact until its callback', async () => {
    const seen = new Set<ArrayBufferLike>();
    const hash = createHash('sha256');
    const slow = new Writable({
      highWaterMark: 16 * KiB,
      write(chunk: Buffer, _enc, callback) {
        seen.add(chunk.buffer);
        // The bytes are hashed when the write completes, as a socket copies them: a buffer reused early would show.
        setTimeout(() => {
          hash.update(chunk);
          callback();
        }, 1);
      },
    });
    const r = await reader();
    r.sendTo(slow, () => undefined);
    await once(slow, 'finish');
    expect(hash.digest('hex')).toBe(sha(content));
    expect(seen.size).toBeLessThanOrEqual(2);
  });

  it('sendTo with a check holds the last chunk back: sent when the check passes, withheld with an error when not', async () => {
    for (const pass of [true, false]) {
      const hash = createHash('sha256');
      const written: Buffer[] = [];
      const out = new Writable({
        write(chunk: Buffer, _enc, callback) {
          written.push(Buffer.from(chunk)); // a copy: the buffer is reused once written
          setImmediate(callback);
        },
      });
      const r = await reader();
      const failed = new Promise<Error | undefined>((resolve) => {
        r.once('error', resolve);
        r.once('close', () => resolve(undefined));
      });
      const outFinished = once(out, 'finish'); // before sending: it may finish before the reader closes
      r.sendTo(out, () => undefined, {
        update: (chunk) => hash.update(chunk),
        finish: () => (hash.digest('hex') === sha(content) && pass ? undefined : new Error('refused')),
      });
      const err = await failed;
      const sent = Buffer.concat(written);
      if (pass) {
        expect(err).toBeUndefined();
        await outFinished;
        expect(sha(sent)).toBe(sha(content));
      } else {
        expect(err?.message).toBe('refused');
        expect(out.writableEnded).toBe(false);
        // Everything but the last chunk (64 KiB reads: the file's last 123 bytes + 5 MiB % 64 KiB = 123 bytes).
        expect(sent.length).toBe(content.length - 123);
        expect(sent.equals(content.subarray(0, sent.length))).toBe(true);
      }
    }
  });

  it('a destroyed reader (the client left) stops sending and closes its file', async () => {
    const fds = openFds();
    let written = 0;
    const out = new Writable({
      write(chunk: Buffer, _enc, callback) {
        written += chunk.length;
        setTimeout(callback, 5);
      },
    });
    const r = await reader();
    r.sendTo(out, () => undefined);
    await new Promise((ok) => setTimeout(ok, 30));
    r.destroy();
    await once(r, 'close');
    const after = written;
    await new Promise((ok) => setTimeout(ok, 50));
    expect(written).toBe(after);
    expect(written).toBeLessThan(content.length);
    expect(out.writableEnded).toBe(false);
    expect(openFds()).toBe(fds);
  });
});
