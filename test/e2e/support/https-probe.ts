/** One HTTPS GET to a cache replica, verified against a test CA for the name clients use (SNI + certificate check). */
import { request } from 'node:https';

export interface ProbeTarget {
  /** Address the request goes to (a node's IP). */
  readonly address: string;
  readonly port: number;
  /** The host name the certificate must cover; also sent as SNI. */
  readonly servername: string;
  /** PEM of the CA that signed the certificate. */
  readonly ca: string | Buffer;
}

export interface ProbeResult {
  /** The HTTP status, or the error code (ECONNREFUSED, timeout…) when there was no answer. */
  readonly status: number | string;
  readonly body: string;
}

/** GET `path`, bounded by `timeoutMs`; never rejects. */
export function httpsGet(target: ProbeTarget, path: string, timeoutMs = 5000): Promise<ProbeResult> {
  return new Promise((done) => {
    const req = request(
      { host: target.address, port: target.port, path, servername: target.servername, ca: target.ca, agent: false, timeout: timeoutMs },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => done({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'timeout' })));
    req.on('error', (err: NodeJS.ErrnoException) => done({ status: err.code ?? err.message, body: '' }));
    req.end();
  });
}
