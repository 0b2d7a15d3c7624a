/**
 * A WAN link emulator in user space (tc netem is not available here): a TCP proxy on loopback in front of one
 * target port that adds latency (half the round trip each way, and one round trip to open a connection) and
 * limits bandwidth, shared by every connection through it (one bottleneck queue per direction, served in the order
 * chunks arrive), per connection, or both. It counts the bytes that crossed it each way, so a benchmark can tell how
 * much of a blob went over the WAN.
 *
 * A chunk starts across the link when the link (and its connection's share) is free and arrives one-way-delay
 * later. The bottleneck has a buffer of `queueMs` of transfer time: a connection reads nothing more while more than
 * that is queued ahead of it, so TCP backpressure reaches the sender as on a real bottleneck, and a timer that fires
 * late on a loaded machine leaves the link busy with what is queued instead of idle (without a buffer the link lost
 * each timer's lateness: 64 MiB took 2.7 s instead of 2.0 at 32 MiB/s while two caches loaded both cores,
 * bench/results/wan-phases.md). Not emulated: loss, TCP slow start, and reordering.
 *
 * Used by the benchmarks (bench/wan-workers.ts) and, per connection only, by the tests' throttle proxy.
 */
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export interface WanLinkOptions {
  readonly targetPort: number;
  /** @default 127.0.0.1 */
  readonly targetHost?: string;
  /** Where the link listens. @default 127.0.0.1 */
  readonly listenHost?: string;
  /** Round-trip time added, in ms. @default 0 */
  readonly rttMs?: number;
  /** Bytes per second shared by all connections, each direction. @default unlimited */
  readonly sharedBytesPerSecond?: number;
  /** Bytes per second of each connection, each direction. @default unlimited */
  readonly perConnectionBytesPerSecond?: number;
  /** The bottleneck's buffer, as ms of transfer queued ahead of a connection before it is paused. @default 20 */
  readonly queueMs?: number;
}

export interface WanLink {
  readonly url: string;
  readonly port: number;
  /** Bytes per second of each connection; changes apply to the next chunk. */
  perConnectionBytesPerSecond: number;
  /** Bytes that crossed target → client, and client → target, so far. */
  readonly bytesDown: number;
  readonly bytesUp: number;
  stop(): Promise<void>;
}

/** One direction of the link: when its shared queue is free again (ms, performance clock). */
class Direction {
  busyUntil = 0;
  bytes = 0;
}

export async function startWanLink(options: WanLinkOptions): Promise<WanLink> {
  const oneWayMs = (options.rttMs ?? 0) / 2;
  const shared = options.sharedBytesPerSecond ?? Infinity;
  const queueMs = options.queueMs ?? 20;
  const down = new Direction();
  const up = new Direction();
  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  };
  const link: WanLink = {
    url: '',
    port: 0,
    perConnectionBytesPerSecond: options.perConnectionBytesPerSecond ?? Infinity,
    get bytesDown() {
      return down.bytes;
    },
    get bytesUp() {
      return up.bytes;
    },
    stop: async () => undefined,
  };

  /** Forwards from → to across `direction`, in order; `connBusyUntil` is this connection's own share of the link. */
  const forward = (from: Socket, to: Socket, direction: Direction) => {
    let connBusyUntil = 0;
    // Chunks (and finally the end, as null) in the order they arrive at the far side.
    const inFlight: { readonly chunk: Buffer | null; readonly at: number }[] = [];
    let timer: NodeJS.Timeout | undefined;
    const pump = () => {
      timer = undefined;
      const now = performance.now();
      while (inFlight.length > 0 && inFlight[0].at <= now) {
        const { chunk } = inFlight.shift()!;
        if (to.destroyed) return;
        if (chunk) to.write(chunk);
        else to.end();
      }
      if (inFlight.length > 0) timer = setTimeout(pump, inFlight[0].at - now);
    };
    const send = (chunk: Buffer | null, at: number) => {
      inFlight.push({ chunk, at });
      if (!timer) pump();
    };
    from.on('data', (chunk: Buffer) => {
      const now = performance.now();
      const start = Math.max(now, direction.busyUntil, connBusyUntil);
      direction.busyUntil = start + (chunk.length / shared) * 1000;
      connBusyUntil = start + (chunk.length / link.perConnectionBytesPerSecond) * 1000;
      direction.bytes += chunk.length;
      send(chunk, start + oneWayMs);
      const free = Math.max(direction.busyUntil, connBusyUntil) - now - queueMs;
      if (free > 0) {
        from.pause();
        setTimeout(() => from.resume(), free);
      }
    });
    // The end follows the last chunk across the link.
    from.on('end', () => send(null, Math.max(performance.now(), direction.busyUntil, connBusyUntil) + oneWayMs));
  };

  const server: Server = createServer((client) => {
    track(client);
    client.pause();
    const kill = () => {
      client.destroy();
      target?.destroy();
    };
    let target: Socket | undefined;
    // Opening a connection costs a round trip before the client's first bytes can go.
    setTimeout(() => {
      if (client.destroyed) return;
      target = connect(options.targetPort, options.targetHost ?? '127.0.0.1');
      track(target);
      forward(client, target, up);
      forward(target, client, down);
      target.on('error', kill);
      client.resume();
    }, oneWayMs * 2);
    client.on('error', kill);
    client.on('close', kill);
  });
  await new Promise<void>((resolve) => server.listen(0, options.listenHost ?? '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(link, {
    url: `http://${options.listenHost ?? '127.0.0.1'}:${port}`,
    port,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
}
