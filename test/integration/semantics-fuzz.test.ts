/**
 * A bounded, seeded fuzz of the cache's HTTP surface over raw sockets (so nothing normalizes the requests on the
 * way): malformed paths, names and digests, odd methods, Range headers, hostile headers and huge heads.
 * Malformed requests must get a 4xx; nothing may get a 5xx or crash the cache; a valid Range must return exactly
 * the right bytes; no file may appear outside the storage root, or outside its four top-level folders.
 * Set FUZZ_SEED to replay a run; FUZZ_CASES to change the count.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCache, type TestCache } from '../support/cache-server';
import { makeImage, pushImage } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed);
const CASES = Number(process.env.FUZZ_CASES ?? 3000);
const CONCURRENCY = 8;

/** mulberry32: small, seeded, good enough to pick cases. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}

/** One request over a fresh socket, exactly as given; bounded by 15 s. */
function raw(port: number, head: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(new Error('no answer within 15 s')), 15_000);
    socket.on('data', (c) => chunks.push(c));
    let socketError = '';
    // EPIPE/ECONNRESET after the server answered a huge head: judged by what arrived.
    socket.on('error', (err: NodeJS.ErrnoException) => (socketError ||= err.code ?? err.message));
    socket.on('close', () => {
      clearTimeout(timer);
      let data = Buffer.concat(chunks);
      // Skip interim answers (100 Continue): the final status is what counts.
      while (/^HTTP\/1\.[01] 1\d\d/.test(data.subarray(0, 20).toString('latin1')) && data.indexOf('\r\n\r\n') >= 0) {
        data = data.subarray(data.indexOf('\r\n\r\n') + 4);
      }
      const end = data.indexOf('\r\n\r\n');
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(data.subarray(0, 20).toString('latin1'));
      if (!match || end < 0)
        return reject(
          new Error(
            `no HTTP answer (${data.length} bytes${socketError ? `, ${socketError}` : ''}) to ${JSON.stringify(head.slice(0, 200))}`,
          ),
        );
      const headers: Record<string, string> = {};
      for (const line of data.subarray(0, end).toString('latin1').split('\r\n').slice(1)) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ status: Number(match[1]), headers, body: data.subarray(end + 4) });
    });
    socket.write(head);
  });
}

describe(`HTTP surface fuzz (seed ${SEED}, ${CASES} cases)`, () => {
  let upstream: TestRegistry;
  let cache: TestCache;
  let parent: string;
  const image = makeImage({ layerSizes: [70_000] });
  const layer = image.blobs[1];

  beforeAll(async () => {
    upstream = await TestRegistry.start();
    await pushImage(upstream.url, 'team/app', 'v1', image);
    parent = mkdtempSync(join(tmpdir(), 'dtr-cache-fuzz-'));
    mkdirSync(join(parent, 'store'));
    cache = await startCache([upstream.url], {}, join(parent, 'store'));
    // Warm: the layer is then served from storage, where Range handling matters most.
    expect((await fetch(`${cache.url}/v2/team/app/blobs/${layer.digest}`).then((r) => r.arrayBuffer())).byteLength).toBe(layer.data.length);
  });
  afterAll(async () => {
    await cache?.stop();
    await upstream?.stop();
    if (parent) rmSync(parent, { recursive: true, force: true });
  });

  it('answers every malformed request with a 4xx, never a 5xx, and stays whole', async () => {
    const rnd = prng(SEED);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
    const int = (n: number) => Math.floor(rnd() * n);
    const hexChars = (n: number, alphabet = '0123456789abcdef') => Array.from({ length: n }, () => pick([...alphabet])).join('');
    const nasty = [
      '..',
      '%2e%2e',
      '%2E%2E',
      '.',
      '',
      '%2f',
      '%00',
      '%0a',
      'A',
      'UP',
      '-x',
      'x-',
      '__x',
      'é',
      '%c3%a9',
      '~',
      ';',
      '*',
      'x'.repeat(300),
      '\\',
      '%5c..',
    ];
    const segment = () => (rnd() < 0.5 ? pick(nasty) : pick(['team', 'app', 'a', 'b0', 'x.y', 'x__y']) + (rnd() < 0.5 ? pick(nasty) : ''));
    const badDigest = () =>
      pick([
        () => `sha256:${hexChars(int(70))}`,
        () => `sha256:${hexChars(64, '0123456789ABCDEF')}`,
        () => `sha512:${hexChars(64)}`,
        () => `${pick(['md5', 'SHA256', 'sha1', '', 'sha256+b64'])}:${hexChars(64)}`,
        () => `sha256:${hexChars(63)}g`,
        () => `sha256${hexChars(64)}`,
        () => `sha256:${hexChars(64)}/../../${hexChars(4)}`,
        () => `sha256:..%2f..%2f${hexChars(10)}`,
      ])();

    type Case = { kind: string; head: string; range?: { start: number; end: number } | 'any' };
    const request = (method: string, path: string, headers: string[] = []) =>
      `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers.map((h) => `${h}\r\n`).join('')}Connection: close\r\n\r\n`;
    const size = layer.data.length;
    const generators: (() => Case)[] = [
      // Paths that are not the pull API, or names outside the grammar.
      () => {
        // Never empty: /v2/ alone is the valid API root.
        const name = Array.from({ length: 1 + int(4) }, segment).join('/') || '%00';
        const tail = pick(['manifests/v1', `blobs/${layer.digest}`, 'tags/list', 'manifests/', 'blobs/', 'manifests/../../x']);
        return {
          kind: 'path',
          head: request(pick(['GET', 'HEAD']), pick([`/v2/${name}/${tail}`, `/${name}`, `/v2/${name}`, `//v2//${name}/${tail}`])),
        };
      },
      // Digests that are not sha256/sha512 hex.
      () => ({ kind: 'digest', head: request('GET', `/v2/team/app/${pick(['blobs', 'manifests'])}/${badDigest()}`) }),
      // Tags outside the grammar.
      () => ({
        kind: 'tag',
        head: request('GET', `/v2/team/app/manifests/${pick(['.v1', '-v1', 'v'.repeat(129), 'v1..', 'a%2fb', 'v1%00', ':v1', '..'])}`),
      }),
      // Methods of the push API, or nonsense.
      () => ({
        kind: 'method',
        head: request(
          pick(['PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'PROPFIND', 'FOO']),
          pick(['/v2/', `/v2/team/app/blobs/uploads/`, '/v2/team/app/manifests/v1']),
        ),
      }),
      // Not HTTP at all.
      () => ({
        kind: 'garbage',
        head: pick(['GET\r\n\r\n', 'GET / HTTP/9.9\r\n\r\n', '\x00\x01\x02\r\n\r\n', 'GET /v2/ HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n']),
      }),
      // Huge heads: Node refuses more than 16 KiB.
      () => ({
        kind: 'huge',
        head: pick([
          request('GET', `/v2/team/app/manifests/v1`, [`X-Big: ${'a'.repeat(17_000 + int(80_000))}`]),
          request(
            'GET',
            `/v2/team/app/manifests/v1`,
            Array.from({ length: 2000 }, (_, i) => `X-H${i}: ${hexChars(8)}`),
          ),
          request('GET', `/v2/${'a/'.repeat(9000)}manifests/v1`),
        ]),
      }),
      // Ranges on a stored blob: valid ones must return exactly those bytes; invalid ones a 4xx or the whole blob.
      () => {
        const a = int(size + 100) - 10;
        const b = int(size + 100) - 10;
        const spec = pick([
          `bytes=${a}-${b}`,
          `bytes=${a}-`,
          `bytes=-${b}`,
          `bytes=${a}-${b},${b}-${a}`,
          `items=${a}-${b}`,
          `bytes=${a}`,
          `bytes=x-y`,
          `bytes=${'9'.repeat(30)}-`,
        ]);
        const valid = /^bytes=\d+-\d+$/.test(spec) && a >= 0 && b >= a && a < size;
        return {
          kind: 'range',
          head: request('GET', `/v2/team/app/blobs/${layer.digest}`, [`Range: ${spec}`]),
          range: valid ? { start: a, end: Math.min(b, size - 1) } : 'any',
        };
      },
      // Hostile headers on a valid request: must not turn into a 5xx.
      () => ({
        kind: 'headers',
        head: request('GET', pick(['/v2/team/app/manifests/v1', `/v2/team/app/blobs/${layer.digest}`]), [
          pick([
            `Accept: ${hexChars(int(500), 'abc/+;,= *')}`,
            `Authorization: ${pick(['Bearer', 'Basic !!!', 'Bearer ' + hexChars(4000)])}`,
            'Accept: */*',
            'Content-Length: 5',
            'Transfer-Encoding: chunked',
          ]),
          pick([
            `X-Forwarded-For: ${hexChars(20)}`,
            'Connection: keep-alive, Upgrade',
            'Expect: 100-continue',
            `If-None-Match: "${hexChars(64)}"`,
          ]),
        ]),
      }),
    ];

    const failures: string[] = [];
    const counts: Record<string, Record<string, number>> = {};
    const cases = Array.from({ length: CASES }, () => pick(generators)());
    let next = 0;
    const started = Date.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < cases.length && Date.now() - started < 240_000) {
          const c = cases[next++];
          let answer: Answer;
          try {
            answer = await raw(cache.server.port, c.head);
          } catch (err) {
            failures.push(`${c.kind}: ${(err as Error).message}`);
            continue;
          }
          (counts[c.kind] ??= {})[answer.status] = ((counts[c.kind] ??= {})[answer.status] ?? 0) + 1;
          const line = `${c.kind} → ${answer.status}: ${JSON.stringify(c.head.slice(0, 160))}`;
          if (answer.status >= 500) failures.push(line);
          else if (c.kind === 'range') {
            if (c.range !== 'any' && c.range) {
              const want = layer.data.subarray(c.range.start, c.range.end + 1);
              if (answer.status !== 206 || !answer.body.equals(want)) failures.push(`${line} (wrong bytes)`);
            }
          } else if (c.kind !== 'headers' && (answer.status < 400 || answer.status >= 500)) failures.push(line);
        }
      }),
    );
    process.stdout.write(
      `fuzz seed ${SEED}: ${next} cases in ${Date.now() - started} ms; statuses ${JSON.stringify(counts)}; ${failures.length} failures, first: ${failures.slice(0, 3).join(' | ')}\n`,
    );
    expect(next).toBe(CASES);
    expect(failures.slice(0, 20)).toEqual([]);

    // Still whole: alive, and pulls the exact image.
    expect((await fetch(`${cache.url}/healthz`)).status).toBe(200);
    const manifest = await fetch(`${cache.url}/v2/team/app/manifests/v1`, { headers: { accept: image.mediaType } });
    expect(
      createHash('sha256')
        .update(Buffer.from(await manifest.arrayBuffer()))
        .digest('hex'),
    ).toBe(image.digest.slice(7));
    expect(cache.logs.filter((l) => l.msg === 'request failed')).toEqual([]);

    // Nothing outside the storage root, nothing outside its six folders, and no tag or key escaping them.
    expect(readdirSync(parent)).toEqual(['store']);
    const folders = ['blobs', 'manifests', 'tags', 'tagrefs', '_uploads', '_migrations'];
    expect(readdirSync(join(parent, 'store')).filter((e) => !folders.includes(e))).toEqual([]);
    const walk = (d: string): string[] =>
      readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)]));
    const stored = walk(join(parent, 'store')).map((f) => f.slice(join(parent, 'store').length + 1));
    expect(
      stored.filter(
        (f) =>
          !/^(blobs|manifests)\/sha256\/[0-9a-f]{2}\/[0-9a-f]{64}\/data$|^tags\/[a-z0-9._/-]+\/[A-Za-z0-9_][A-Za-z0-9._-]*$|^tagrefs\/sha256\/[0-9a-f]{2}\/[0-9a-f]{64}\/[a-z0-9._/-]+\/_tags\/[A-Za-z0-9_][A-Za-z0-9._-]*$|^_uploads\/|^_migrations\/tag-layout$/.test(
            f,
          ),
      ),
    ).toEqual([]);
  });
});
