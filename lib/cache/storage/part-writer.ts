/**
 * A Writable that cuts a byte stream into fixed-size parts and hands each to `sendPart` as soon as it is full,
 * with at most `concurrency` parts in flight. The bytes held at once are bounded by (concurrency + 1) × partSize,
 * whatever the object's size: this is how the object-store drivers stream multipart/block uploads without ever
 * holding a whole blob. The last, short part (the tail) is given to `finish` when the stream ends, so each
 * backend decides whether it is one more part (S3, Azure) or the bytes that finalize the upload at commit (GCS).
 */
import { Writable } from 'node:stream';

export interface PartSink {
  readonly partSize: number;
  readonly concurrency: number;
  /** Uploads part `index` (0-based, all but the tail exactly partSize bytes). */
  sendPart(part: Buffer, index: number): Promise<void>;
  /** Called once after every full part was sent, with the remaining bytes (possibly empty) and the part count so far. */
  finish(tail: Buffer, partsSent: number): Promise<void>;
}

export function partWriter(sink: PartSink): Writable {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let index = 0;
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;

  const launch = (part: Buffer) => {
    const p = sink.sendPart(part, index++).then(
      () => void inFlight.delete(p),
      (err) => {
        inFlight.delete(p);
        failure ??= err;
      },
    );
    inFlight.add(p);
  };

  const takePart = (): Buffer => {
    const all = pending.length === 1 ? pending[0] : Buffer.concat(pending, pendingBytes);
    const part = all.subarray(0, sink.partSize);
    const rest = all.subarray(sink.partSize);
    pending = rest.length > 0 ? [Buffer.from(rest)] : [];
    pendingBytes = rest.length;
    return Buffer.from(part); // a copy, so the part does not pin the caller's larger buffer
  };

  return new Writable({
    highWaterMark: 64 * 1024,
    write(chunk: Buffer, _encoding, callback) {
      if (failure) return callback(asError(failure));
      pending.push(chunk);
      pendingBytes += chunk.length;
      (async () => {
        while (pendingBytes >= sink.partSize) {
          while (inFlight.size >= sink.concurrency) await Promise.race(inFlight);
          if (failure) throw failure;
          launch(takePart());
        }
      })().then(
        () => callback(),
        (err) => callback(asError(err)),
      );
    },
    final(callback) {
      (async () => {
        await Promise.all(inFlight);
        if (failure) throw failure;
        const tail = pending.length === 0 ? Buffer.alloc(0) : Buffer.concat(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
        await sink.finish(tail, index);
      })().then(
        () => callback(),
        (err) => callback(asError(err)),
      );
    },
    destroy(err, callback) {
      pending = [];
      pendingBytes = 0;
      // Parts already in flight finish or fail on their own; the driver's abort() discards them.
      callback(err);
    },
  });
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
