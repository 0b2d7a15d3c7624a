/** The JSON log lines: their shape, the level threshold, credential-looking fields dropped, Errors as messages. */
import { createLogger } from '../../../lib/cache/log';

function capture(level: 'debug' | 'info' | 'warn' | 'error' = 'debug') {
  const lines: string[] = [];
  return { lines, log: createLogger(level, (line) => void lines.push(line)) };
}

test('one JSON object a line: time, level, msg, then the child fields and the line fields in order', () => {
  const { lines, log } = capture();
  log.child({ requestId: 'r1' }).info('request', { method: 'GET', status: 200, nothing: undefined });
  expect(lines).toHaveLength(1);
  expect(lines[0].endsWith('}\n')).toBe(true);
  const entry = JSON.parse(lines[0]);
  expect(Object.keys(entry)).toEqual(['time', 'level', 'msg', 'requestId', 'method', 'status']);
  expect(entry).toMatchObject({ level: 'info', msg: 'request', requestId: 'r1', method: 'GET', status: 200 });
  expect(new Date(entry.time).toISOString()).toBe(entry.time);
});

test('lines below the level are not written', () => {
  const { lines, log } = capture('warn');
  log.debug('d');
  log.info('i');
  log.child({ a: 1 }).info('i');
  log.warn('w');
  log.error('e');
  expect(lines.map((l) => JSON.parse(l).msg)).toEqual(['w', 'e']);
});

test('fields whose name looks like a credential are dropped, in a line and in a child', () => {
  const { lines, log } = capture();
  const child = log.child({ Authorization: 'Bearer a', user: 'alice', sessionCookie: 'c' });
  child.warn('upstream refused', { proxyAuthorization: 'Basic b', token: 't', password: 'p', clientSecret: 's', status: 401 });
  expect(JSON.parse(lines[0])).toEqual({ time: expect.any(String), level: 'warn', msg: 'upstream refused', user: 'alice', status: 401 });
  expect(lines[0]).not.toMatch(/Bearer|Basic|"t"|"p"|"s"|"c"/);
});

test('an Error is written as its message', () => {
  const { lines, log } = capture();
  log.child({ cause: new Error('first') }).error('failed', { reason: new Error('disk full') });
  expect(JSON.parse(lines[0])).toMatchObject({ cause: 'first', reason: 'disk full' });
});

test('a line field takes the place of a child field or a line key of the same name, as in one object', () => {
  const { lines, log } = capture();
  const child = log.child({ requestId: 'r1', stage: 'open' });
  child.info('step', { stage: 'read', n: 1 });
  child.info('step', { msg: 'replaced', 2: 'two' });
  expect(lines.map((l) => l.replace(/"time":"[^"]+"/, '"time":"T"'))).toEqual([
    '{"time":"T","level":"info","msg":"step","requestId":"r1","stage":"read","n":1}\n',
    '{"2":"two","time":"T","level":"info","msg":"replaced","requestId":"r1","stage":"open"}\n',
  ]);
});
