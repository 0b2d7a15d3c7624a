/**
 * JSON logs: one object per line on stdout, so `docker service logs` output can be parsed as is. Fields whose
 * name looks like a credential are dropped here once, so no caller can leak an Authorization value by mistake.
 */
import type { LOG_LEVELS } from '../config';

export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` (e.g. the request id) to every line. */
  child(fields: LogFields): Logger;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const SECRET_FIELD = /authorization|token|password|secret|cookie/i;

export function createLogger(
  level: LogLevel,
  write: (line: string) => void = (line) => process.stdout.write(line),
  base: LogFields = {},
): Logger {
  const emit = (at: LogLevel, msg: string, fields?: LogFields) => {
    if (RANK[at] < RANK[level]) return;
    const entry: LogFields = { time: new Date().toISOString(), level: at, msg };
    for (const [key, value] of Object.entries({ ...base, ...fields })) {
      if (!SECRET_FIELD.test(key)) entry[key] = value instanceof Error ? value.message : value;
    }
    write(`${JSON.stringify(entry)}\n`);
  };
  return {
    debug: (msg, fields) => emit('debug', msg, fields),
    info: (msg, fields) => emit('info', msg, fields),
    warn: (msg, fields) => emit('warn', msg, fields),
    error: (msg, fields) => emit('error', msg, fields),
    child: (fields) => createLogger(level, write, { ...base, ...fields }),
  };
}

/** A logger that writes nothing (library use, tests that do not look at logs). */
export const silentLogger: Logger = createLogger('error', () => undefined);
