/**
 * A Writable that cuts a byte stream into fixed-size parts and hands each to `sendPart` as soon as it is full,
 * with at most `concurrency` parts in flight. The bytes held at once are bounded by (concurrency + 1) × partSize,
 * whatever the object's size: this is how the object-store drivers stream multipart/block uploads without ever
 * holding a whole blob. Bytes are copied once, into the part being filled, so little garbage piles up between
 * collections. The last, short part (the tail) is given to `finish` when the stream ends, so each backend
 * decides whether it is one more part (S3, Azure) or the bytes that finalize the upload at commit.
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
  let part: Buffer | undefined;
  let filled = 0;
  let index = 0;
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;

  const launch = (full: Buffer) => {
    const p = sink.sendPart(full, index++).then(
      () => void inFlight.delete(p),
      (err) => {
        inFlight.delete(p);
        failure ??= err;
      },
    );
    inFlight.add(p);
  };

  const fill = async (chunk: Buffer) => {
    let offset = 0;
    while (offset < chunk.length) {
      if (!part) {
        while (inFlight.size >= sink.concurrency) await Promise.race(inFlight);
        if (failure) throw failure;
        part = Buffer.allocUnsafe(sink.partSize);
        filled = 0;
      }
      const n = chunk.copy(part, filled, offset);
      filled += n;
      offset += n;
      if (filled === sink.partSize) {
        launch(part);
        part = undefined;
      }
    }
  };

  return new Writable({
    highWaterMark: 64 * 1024,
    write(chunk: Buffer, _encoding, callback) {
      if (failure) return callback(asError(failure));
      fill(chunk).then(
        () => callback(),
        (err) => callback(asError(err)),
      );
    },
    final(callback) {
      (async () => {
        await Promise.all(inFlight);
        if (failure) throw failure;
        const tail = part ? part.subarray(0, filled) : Buffer.alloc(0);
        part = undefined;
        await sink.finish(tail, index);
      })().then(
        () => callback(),
        (err) => callback(asError(err)),
      );
    },
    destroy(err, callback) {
      part = undefined;
      // Parts already in flight finish or fail on their own; the driver's abort() discards them.
      callback(err);
    },
  });
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
