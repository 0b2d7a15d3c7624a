import { parseChallenge, realmTrusted } from '../../../lib/cli/challenge';
import { readCredentials } from '../../../lib/cli/credentials';
import { normalizeHost, sameHost } from '../../../lib/cli/dtr-api';
import { UsageError } from '../../../lib/cli/errors';
import { baseUrl, intFlag } from '../../../lib/cli/flags';
import { imageLines, parseImageRef, parsePlatform, platformMatches } from '../../../lib/cli/image-ref';

const cache = new URL('https://cache.example.com:8443');
const digest = `sha256:${'ab'.repeat(32)}`;

describe('parseImageRef', () => {
  it.each([
    ['team/app:v1', 'team/app', 'v1'],
    ['team/app', 'team/app', 'latest'],
    [`team/app@${digest}`, 'team/app', digest],
    [`team/app:v1@${digest}`, 'team/app', digest],
    ['cache.example.com:8443/team/app:v2', 'team/app', 'v2'],
    ['a/b/c-d_e.f:1.0-rc', 'a/b/c-d_e.f', '1.0-rc'],
  ])('%s → %s @ %s', (text, repository, reference) => {
    expect(parseImageRef(text, cache)).toEqual({ repository, reference, text });
  });

  it.each([
    ['other.example.com/team/app:v1', /names registry other\.example\.com, but warm pulls through --cache cache\.example\.com:8443/],
    ['Team/App:v1', /lowercase path components/],
    ['team/app@sha256:xyz', /digest must be sha256:/],
    ['team/app:bad!tag', /not a valid tag/],
  ])('rejects %s with a message naming the fix', (text, message) => {
    expect(() => parseImageRef(text, cache)).toThrow(UsageError);
    expect(() => parseImageRef(text, cache)).toThrow(message);
  });

  it('reads image lists with comments and blank lines', () => {
    expect(imageLines('# images\nteam/a:1\n\n  team/b:2  # pinned\r\n')).toEqual(['team/a:1', 'team/b:2']);
  });
});

describe('platforms', () => {
  it('parses os/arch[/variant] and matches variants only when asked', () => {
    expect(parsePlatform('linux/arm64/v8')).toEqual({ os: 'linux', architecture: 'arm64', variant: 'v8' });
    expect(platformMatches(parsePlatform('linux/arm64'), { os: 'linux', architecture: 'arm64', variant: 'v8' })).toBe(true);
    expect(platformMatches(parsePlatform('linux/arm64/v7'), { os: 'linux', architecture: 'arm64', variant: 'v8' })).toBe(false);
    expect(() => parsePlatform('amd64')).toThrow(/--platform "amd64" must be os\/arch/);
  });
});

describe('auth challenges and realm trust', () => {
  it('parses Bearer parameters with quoted commas and Basic', () => {
    const c = parseChallenge('Bearer realm="https://dtr.example.com/auth/token",service="dtr",scope="repository:a/b:pull,push"');
    expect(c).toEqual({
      scheme: 'bearer',
      params: { realm: 'https://dtr.example.com/auth/token', service: 'dtr', scope: 'repository:a/b:pull,push' },
    });
    expect(parseChallenge('Basic realm="registry"')?.scheme).toBe('basic');
    expect(parseChallenge('Negotiate abc')).toBeUndefined();
    expect(parseChallenge(undefined)).toBeUndefined();
  });

  it('sends credentials only to realms at the cache or DTR origin: scheme, host and port pinned', () => {
    const trusted = [new URL('https://cache.example.com'), new URL('https://dtr.example.com')];
    expect(realmTrusted('https://dtr.example.com/auth/token', trusted)).toBe(true);
    expect(realmTrusted('https://DTR.example.com:443/auth/token', trusted)).toBe(true);
    expect(realmTrusted('https://cache.example.com/token', trusted)).toBe(true);
    expect(realmTrusted('https://dtr.example.com:4443/auth/token', trusted)).toBe(false);
    expect(realmTrusted('https://dtr.example.com:4443/auth/token', [new URL('https://dtr.example.com:4443')])).toBe(true);
    expect(realmTrusted('https://cache.example.com:8443/token', trusted)).toBe(false);
    expect(realmTrusted('https://evil.example.net/token', trusted)).toBe(false);
    expect(realmTrusted('https://dtr.example.com.evil.net/token', trusted)).toBe(false);
    expect(realmTrusted('http://dtr.example.com/auth/token', trusted)).toBe(false);
    expect(realmTrusted('file:///etc/passwd', trusted)).toBe(false);
    expect(realmTrusted('not a url', trusted)).toBe(false);
  });
});

describe('flags and credentials', () => {
  it('validates base URLs and numbers with the flag name', () => {
    expect(baseUrl('--dtr', 'https://dtr.example.com/').origin).toBe('https://dtr.example.com');
    expect(() => baseUrl('--dtr', undefined)).toThrow('--dtr is required');
    expect(() => baseUrl('--dtr', 'dtr.example.com')).toThrow(/--dtr "dtr\.example\.com"/);
    expect(() => baseUrl('--cache', 'https://u:p@cache.example.com')).toThrow(/must not contain credentials/);
    expect(() => baseUrl('--cache', 'https://cache.example.com/v2')).toThrow(/without a path/);
    expect(intFlag('--concurrency', undefined, 4, 1, 64)).toBe(4);
    expect(() => intFlag('--concurrency', '0', 4, 1, 64)).toThrow('--concurrency must be a whole number from 1 to 64, got "0"');
  });

  it('reads credentials from the environment and never echoes the secret', () => {
    expect(readCredentials({}, {})).toBeUndefined();
    expect(readCredentials({}, { DTR_USERNAME: 'admin', DTR_PASSWORD: 's3cret' })).toEqual({ username: 'admin', password: 's3cret' });
    expect(readCredentials({ username: 'ci', 'password-env': 'CI_TOKEN' }, { CI_TOKEN: 'tok' })).toEqual({
      username: 'ci',
      password: 'tok',
    });
    expect(() => readCredentials({ 'password-env': 'MISSING' }, {})).toThrow('environment variable MISSING is not set');
    expect(() => readCredentials({ 'password-env': 'hunter2!' }, {})).toThrow(/NAME of an environment variable/);
    let message = '';
    try {
      readCredentials({}, { DTR_PASSWORD: 's3cret' });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/no user name/);
    expect(message).not.toContain('s3cret');
  });

  it('compares cache hosts without trailing slash, case or default port', () => {
    expect(sameHost('https://Cache.example.com:443/', 'https://cache.example.com')).toBe(true);
    expect(sameHost('https://cache.example.com:8443', 'https://cache.example.com')).toBe(false);
    expect(normalizeHost('http://c:80')).toBe('http://c');
  });
});
