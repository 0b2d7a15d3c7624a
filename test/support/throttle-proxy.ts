/**
 * A TCP proxy on loopback that limits each connection's bandwidth to a byte rate: a slow link to DTR, so tests can
 * act while a fill is really in flight (kill the cache, send SIGTERM). The benchmarks' WAN link emulator
 * (bench/wan-link.ts) with a per-connection limit only: no latency, nothing shared.
 */
import { startWanLink } from '../../bench/wan-link';

export interface ThrottleProxy {
  readonly url: string;
  readonly port: number;
  /** Bytes per second per connection; change it at any time. */
  rate: number;
  stop(): Promise<void>;
}

/** `host`: where the proxy listens and its target is (default loopback; a bridge address for containers). */
export async function startThrottleProxy(targetPort: number, bytesPerSecond: number, host = '127.0.0.1'): Promise<ThrottleProxy> {
  const link = await startWanLink({ targetPort, targetHost: host, listenHost: host, perConnectionBytesPerSecond: bytesPerSecond });
  return {
    url: link.url,
    port: link.port,
    get rate() {
      return link.perConnectionBytesPerSecond;
    },
    set rate(value: number) {
      link.perConnectionBytesPerSecond = value;
    },
    stop: () => link.stop(),
  };
}
