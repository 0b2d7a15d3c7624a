/**
 * JSON logs: one object per line on stdout, so `docker service logs` output can be parsed as is: `time`, `level`,
 * `msg`, then the logger's fields (a child's, e.g. the request id) and the line's. Fields whose name looks like a
 * credential are dropped here once, so no caller can leak an Authorization value by mistake; an Error is written
 * as its message. A child renders its own fields once, so a request's lines cost only their own fields.
 * Why not pino: bench/results/logging.md.
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
/** Keys a field cannot simply be appended after: the line's own, and integer-like ones (objects order them first). */
const PLACED_KEY = /^(time|level|msg|\d+)$/;

export function createLogger(
  level: LogLevel,
  write: (line: string) => void = (line) => process.stdout.write(line),
  base: LogFields = {},
): Logger {
  // The base's fields as JSON members, rendered once; undefined when a key must be placed (then each line merges).
  const baseJson = Object.keys(base).some((key) => PLACED_KEY.test(key)) ? undefined : members(base);
  const emit = (at: LogLevel, msg: string, fields?: LogFields) => {
    if (RANK[at] < RANK[level]) return;
    const time = new Date().toISOString();
    const appendable =
      baseJson !== undefined &&
      (fields === undefined || Object.keys(fields).every((key) => !PLACED_KEY.test(key) && !Object.hasOwn(base, key)));
    write(
      appendable
        ? `{"time":"${time}","level":"${at}","msg":${JSON.stringify(msg)}${baseJson}${fields ? members(fields) : ''}}\n`
        : `${JSON.stringify(entry(time, at, msg, { ...base, ...fields }))}\n`,
    );
  };
  return {
    debug: (msg, fields) => emit('debug', msg, fields),
    info: (msg, fields) => emit('info', msg, fields),
    warn: (msg, fields) => emit('warn', msg, fields),
    error: (msg, fields) => emit('error', msg, fields),
    child: (fields) => createLogger(level, write, { ...base, ...fields }),
  };
}

/** `fields` as JSON object members, each with a leading comma: secrets dropped, Errors as their message. */
function members(fields: LogFields): string {
  let out = '';
  for (const key of Object.keys(fields)) {
    if (SECRET_FIELD.test(key)) continue;
    const value = fields[key];
    const json = JSON.stringify(value instanceof Error ? value.message : value);
    if (json !== undefined) out += `,${JSON.stringify(key)}:${json}`;
  }
  return out;
}

/** The line as one object, where a field takes the place of a line key or of a logger's field. */
function entry(time: string, at: LogLevel, msg: string, fields: LogFields): LogFields {
  const line: LogFields = { time, level: at, msg };
  for (const [key, value] of Object.entries(fields)) {
    if (!SECRET_FIELD.test(key)) line[key] = value instanceof Error ? value.message : value;
  }
  return line;
}

/** A logger that writes nothing (library use, tests that do not look at logs). */
export const silentLogger: Logger = createLogger('error', () => undefined);
