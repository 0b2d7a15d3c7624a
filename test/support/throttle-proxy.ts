/**
 * A TCP proxy on loopback that limits each connection's download direction (target → client) to a byte rate:
 * a slow link to DTR, so tests can act while a fill is really in flight (kill the cache, send SIGTERM).
 */
import { connect, createServer, Server, Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface ThrottleProxy {
  readonly url: string;
  readonly port: number;
  /** Bytes per second per connection, target → client; change it at any time. */
  rate: number;
  stop(): Promise<void>;
}

/** `host`: where the proxy listens and its target is (default loopback; a bridge address for containers). */
export async function startThrottleProxy(targetPort: number, bytesPerSecond: number, host = '127.0.0.1'): Promise<ThrottleProxy> {
  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  };
  let proxy: ThrottleProxy;
  const server: Server = createServer((client) => {
    const target = connect(targetPort, host);
    track(client);
    track(target);
    client.pipe(target);
    target.on('data', (chunk: Buffer) => {
      client.write(chunk);
      target.pause();
      setTimeout(() => target.resume(), Math.ceil((chunk.length / proxy.rate) * 1000));
    });
    target.on('end', () => client.end());
    const kill = () => {
      client.destroy();
      target.destroy();
    };
    client.on('error', kill);
    target.on('error', kill);
    client.on('close', kill);
    target.on('close', () => client.end());
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as AddressInfo).port;
  proxy = {
    url: `http://${host}:${port}`,
    port,
    rate: bytesPerSecond,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return proxy;
}
