// node -r ts-node/register/transpile-only bench/log-cost.ts [--requests=N]: the cost of the cache's per-request
// logging (a child logger with the request id, then one `request` line) with lib/cache/log.ts against pino
// configured to write the same fields, both into an in-memory sink (formatting cost, no I/O). Prints the median
// of 7 rounds in ns per request, the line lengths, and one line of each. pino is not a dependency of the project:
// install it for the run only (`npm install --no-save pino@10`). Bounded: at most 8 × 3 × N requests.
import { createLogger, type Logger } from '../lib/cache/log';

/** The credential-looking field names lib/cache/log.ts drops. */
const SECRET_FIELD = /authorization|token|password|secret|cookie/i;

type PinoLike = {
  child(bindings: Record<string, unknown>): PinoLike;
  info(fields: Record<string, unknown>, msg: string): void;
};

const requests = Number(process.argv.find((a) => a.startsWith('--requests='))?.split('=')[1] ?? 100_000);

function loadPino(): ((options: Record<string, unknown>, stream: { write(line: string): void }) => PinoLike) | undefined {
  try {
    return require('pino') as never;
  } catch {
    return undefined;
  }
}

/** One request's logging as lib/cache/server.ts does it. */
function ours(log: Logger, i: number): void {
  const reqLog = log.child({ requestId: (0x1000000000000000 + i).toString(16) });
  reqLog.info('request', { method: 'GET', path: '/v2/team/app/blobs/sha256:0123456789abcdef', status: 200, ms: i % 50 });
}

function theirs(log: PinoLike, i: number): void {
  const reqLog = log.child({ requestId: (0x1000000000000000 + i).toString(16) });
  reqLog.info({ method: 'GET', path: '/v2/team/app/blobs/sha256:0123456789abcdef', status: 200, ms: i % 50 }, 'request');
}

/** Median ns per request of each logger over 7 rounds, the loggers taking turns so that load elsewhere hits both. */
function measure(runs: readonly ((i: number) => void)[]): number[] {
  const times: number[][] = runs.map(() => []);
  for (let round = 0; round < 7; round++) {
    runs.forEach((run, k) => {
      const start = process.hrtime.bigint();
      for (let i = 0; i < requests; i++) run(i);
      times[k].push(Number(process.hrtime.bigint() - start) / requests);
    });
  }
  return times.map((t) => t.sort((a, b) => a - b)[3]);
}

const lines = new Map<string, { bytes: number; count: number; last: string }>();
const sinkFor = (name: string) => {
  const sink = { bytes: 0, count: 0, last: '' };
  lines.set(name, sink);
  return (line: string): void => {
    sink.bytes += line.length;
    sink.count++;
    sink.last = line;
  };
};
const bytesPerLine = (name: string): number => {
  const sink = lines.get(name)!;
  return Math.round(sink.bytes / Math.max(1, sink.count));
};

const oursLog = createLogger('info', sinkFor('ours'));
const runs: ((i: number) => void)[] = [(i) => ours(oursLog, i)];
const pino = loadPino();
if (pino) {
  const { stdTimeFunctions } = require('pino') as { stdTimeFunctions: { isoTime: () => string } };
  const pinoLog = pino(
    {
      level: 'info',
      base: undefined,
      messageKey: 'msg',
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label: string) => ({ level: label }) },
      // pino redacts by path, not by a pattern of field names: each name must be listed.
      redact: { paths: ['authorization', 'token', 'password', 'secret', 'cookie'], remove: true },
    },
    { write: sinkFor('pino') },
  );
  // pino with the cache's guarantee: every field whose name looks like a credential dropped, Errors as messages.
  const keep = (fields: Record<string, unknown> = {}): Record<string, unknown> => {
    const kept: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(fields)) {
      if (!SECRET_FIELD.test(key)) kept[key] = value instanceof Error ? value.message : value;
    }
    return kept;
  };
  const sameLog = pino(
    {
      level: 'info',
      base: undefined,
      messageKey: 'msg',
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label: string) => ({ level: label }), bindings: keep, log: keep },
    },
    { write: sinkFor('pino-same') },
  );
  runs.push(
    (i) => theirs(pinoLog, i),
    (i) => theirs(sameLog, i),
  );
  runs.forEach((run) => {
    for (let i = 0; i < requests; i++) run(i); // warm-up
  });
  const requestLines = [lines.get('ours')!.last, lines.get('pino')!.last];
  const secretFields = { authorization: 'Bearer secret', proxyAuthorization: 'Basic x', user: 'alice' };
  oursLog.info('redaction', secretFields);
  pinoLog.info(secretFields, 'redaction');
  sameLog.info(secretFields, 'redaction');
  const redactionLines = ['ours', 'pino', 'pino-same'].map((name) => lines.get(name)!.last);
  const [oursNs, pinoNs, sameNs] = measure(runs);
  console.log(`${requests} requests a round, 7 rounds taking turns; load average ${require('node:os').loadavg()[0].toFixed(1)}`);
  console.log('\n| logger | ns per request (median) | bytes per line |\n|---|---:|---:|');
  console.log(`| lib/cache/log.ts | ${oursNs.toFixed(0)} | ${bytesPerLine('ours')} |`);
  const version = (require('pino/package.json') as { version: string }).version;
  console.log(`| pino ${version}, redact paths | ${pinoNs.toFixed(0)} | ${bytesPerLine('pino')} |`);
  console.log(`| pino ${version}, the cache's field filter | ${sameNs.toFixed(0)} | ${bytesPerLine('pino-same')} |`);
  console.log(`\nrequest line, lib/cache/log.ts: ${requestLines[0].trim()}\nrequest line, pino:             ${requestLines[1].trim()}`);
  console.log(`\nredaction, lib/cache/log.ts:     ${redactionLines[0].trim()}`);
  console.log(`redaction, pino redact paths:   ${redactionLines[1].trim()}`);
  console.log(`redaction, pino + field filter: ${redactionLines[2].trim()}`);
} else {
  const [oursNs] = measure(runs);
  console.log(`| lib/cache/log.ts | ${oursNs.toFixed(0)} ns per request | ${bytesPerLine('ours')} bytes per line |`);
  console.log('pino is not installed: npm install --no-save pino@10');
}
