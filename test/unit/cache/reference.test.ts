import {
  blobKey,
  isValidName,
  isValidTag,
  manifestKey,
  migratedTagKey,
  parseDigest,
  parseRoute,
  tagKey,
} from '../../../lib/cache/reference';

const HEX = 'a'.repeat(64);

describe('repository names (OCI distribution grammar)', () => {
  it.each(['app', 'team/app', 'a/b/c/d', 'my-app', 'my--app', 'my_app', 'my__app', 'my.app', 'a0/b1', `${'a'.repeat(255)}`])(
    '%s is valid',
    (n) => expect(isValidName(n)).toBe(true),
  );
  it.each([
    '',
    'App',
    'team/App',
    '-app',
    'app-',
    'app_',
    'a___b',
    'a..b',
    'a/',
    '/a',
    'a//b',
    'a/../b',
    '..',
    'a b',
    'a%2fb',
    'a:b',
    'a'.repeat(256),
  ])('%j is invalid', (n) => expect(isValidName(n)).toBe(false));
});

describe('tags', () => {
  it.each(['latest', 'v1.2.3', '_x', 'A-b_c.d', 't'.repeat(128)])('%s is valid', (t) => expect(isValidTag(t)).toBe(true));
  it.each(['', '-x', '.x', 'a/b', 'a:b', 't'.repeat(129), 'ä'])('%j is invalid', (t) => expect(isValidTag(t)).toBe(false));
});

describe('digests', () => {
  it('accepts sha256 and sha512 with lowercase hex of the right length', () => {
    expect(parseDigest(`sha256:${HEX}`)).toEqual({ ok: true, value: { algorithm: 'sha256', hex: HEX, text: `sha256:${HEX}` } });
    expect(parseDigest(`sha512:${'0'.repeat(128)}`).ok).toBe(true);
  });
  it.each([
    `sha256:${HEX.toUpperCase()}`,
    `sha256:${HEX}0`,
    `sha256:${HEX.slice(1)}`,
    `md5:${'0'.repeat(32)}`,
    HEX,
    `sha512:${HEX}`,
    'sha256:',
    ':',
  ])('%s is DIGEST_INVALID', (d) => {
    const parsed = parseDigest(d);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.error).toMatchObject({ status: 400, code: 'DIGEST_INVALID' });
  });
});

describe('routes', () => {
  it('routes the pull API', () => {
    expect(parseRoute('GET', '/v2/')).toEqual({ ok: true, value: { kind: 'base' } });
    expect(parseRoute('HEAD', '/v2/team/app/manifests/v1')).toMatchObject({
      ok: true,
      value: { kind: 'manifest', name: 'team/app', reference: { kind: 'tag', tag: 'v1' } },
    });
    expect(parseRoute('GET', `/v2/team/app/manifests/sha256:${HEX}`)).toMatchObject({
      ok: true,
      value: { kind: 'manifest', reference: { kind: 'digest', digest: { hex: HEX } } },
    });
    expect(parseRoute('GET', `/v2/a/blobs/sha256:${HEX}`)).toMatchObject({ ok: true, value: { kind: 'blob', name: 'a' } });
    expect(parseRoute('GET', '/v2/a/b/tags/list')).toEqual({ ok: true, value: { kind: 'tags', name: 'a/b' } });
    // A repository may itself be called "manifests" or "blobs".
    expect(parseRoute('GET', '/v2/manifests/blobs/manifests/v1')).toMatchObject({ ok: true, value: { name: 'manifests/blobs' } });
  });

  it.each([
    ['POST', '/v2/a/blobs/uploads/', 405, 'UNSUPPORTED'],
    ['PUT', '/v2/a/manifests/v1', 405, 'UNSUPPORTED'],
    ['DELETE', `/v2/a/blobs/sha256:${HEX}`, 405, 'UNSUPPORTED'],
    ['OPTIONS', '/v2/', 405, 'UNSUPPORTED'],
    ['GET', '/v2/a/blobs/uploads', 405, 'UNSUPPORTED'],
    ['GET', '/v1/_ping', 404, 'NOT_FOUND'],
    ['GET', '/v2/a/tags/other', 404, 'NOT_FOUND'],
    ['GET', '/v2/A/manifests/v1', 400, 'NAME_INVALID'],
    ['GET', '/v2/a/manifests/v1:x', 400, 'DIGEST_INVALID'],
    ['GET', '/v2/a/manifests/.v1', 400, 'TAG_INVALID'],
  ])('%s %s → %i %s', (method, path, status, code) => {
    const route = parseRoute(method, path);
    expect(route.ok).toBe(false);
    if (!route.ok) expect(route.error).toMatchObject({ status, code });
  });

  it('clips echoed input in error messages', () => {
    const route = parseRoute('GET', `/v2/${'A'.repeat(10_000)}/manifests/v1`);
    expect(!route.ok && route.error.message.length).toBeLessThan(300);
  });
});

describe('storage keys', () => {
  it('are the documented layout', () => {
    const d = { algorithm: 'sha256' as const, hex: `ab${'c'.repeat(62)}`, text: '' };
    expect(blobKey(d)).toBe(`blobs/sha256/ab/${d.hex}/data`);
    expect(manifestKey(d)).toBe(`manifests/sha256/ab/${d.hex}/data`);
    expect(tagKey('team/app', 'v1')).toBe('tags/team/app/_tags/v1');
  });

  it('never give a tag and a repository of the same path one key or directory', () => {
    expect(tagKey('team/small', 'app')).toBe('tags/team/small/_tags/app');
    expect(tagKey('team/small/app', 'v1')).toBe('tags/team/small/app/_tags/v1');
    expect(tagKey('team/small/app', 'v1').startsWith(`${tagKey('team/small', 'app')}/`)).toBe(false);
  });

  it('map keys of the earlier tag layout to the current one, and leave current keys alone', () => {
    expect(migratedTagKey('tags/team/small/app')).toBe('tags/team/small/_tags/app');
    expect(migratedTagKey('tags/team/app/v1.2_x')).toBe('tags/team/app/_tags/v1.2_x');
    expect(migratedTagKey('tags/team/small/_tags/app')).toBeUndefined();
    expect(migratedTagKey('tags/_tags/app')).toBeUndefined();
    expect(migratedTagKey('tags/v1')).toBeUndefined();
    expect(migratedTagKey('tags/Team/v1')).toBeUndefined(); // not a repository name: not ours to move
  });
});
