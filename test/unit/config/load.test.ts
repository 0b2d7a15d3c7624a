import { loadConfig, parseDuration, parseSize, renderConfig } from '../../../lib/config';

const DTR_CACHE_CONFIG = `
version: 0.1
log:
  level: info
storage:
  delete:
    enabled: true
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: 0.0.0.0:443
  secret: generate-random-secret
  host: https://cache.example.com
  tls:
    certificate: /run/secrets/cache.cert.pem
    key: /run/secrets/cache.key.pem
middleware:
  registry:
      - name: downstream
        options:
          blobttl: 24h
          upstreams:
            - https://dtr.example.com
          cas:
            - /run/secrets/dtr.cert.pem
`;

describe('loadConfig', () => {
  it('accepts the DTR cache config.yml from the documentation, with defaults for our options', () => {
    const result = loadConfig(DTR_CACHE_CONFIG);
    if (!result.ok) throw new Error(result.errors.join('\n'));
    const options = result.config.middleware.registry[0].options;
    expect(options.blobttl).toBe(86_400_000);
    expect(options.upstreams).toEqual(['https://dtr.example.com']);
    expect(options.authttl).toBe(60_000);
    expect(result.config.storage.filesystem?.rootdirectory).toBe('/var/lib/registry');
    expect(result.warnings).toEqual([]);
  });

  it('applies REGISTRY_* environment overrides and names them in errors', () => {
    const ok = loadConfig(DTR_CACHE_CONFIG, { REGISTRY_HTTP_ADDR: ':5000', REGISTRY_LOG_LEVEL: 'debug', PATH: '/bin' });
    expect(ok.ok && ok.config.http.addr).toBe(':5000');
    expect(ok.ok && ok.config.log.level).toBe('debug');
    const bad = loadConfig(DTR_CACHE_CONFIG, { REGISTRY_HTTP_ADDR: 'nowhere' });
    expect(bad.ok).toBe(false);
    expect(!bad.ok && bad.errors).toEqual([
      'config.yml: http.addr (from environment variable REGISTRY_HTTP_ADDR): must be host:port, e.g. 0.0.0.0:443 or :5000',
    ]);
  });

  it('warns about registry keys it ignores, and rejects keys the registry does not know', () => {
    const warned = loadConfig(DTR_CACHE_CONFIG.replace('http:\n', 'http:\n  prefix: /x\n'));
    expect(warned.ok && warned.warnings).toEqual([
      'config.yml: http.prefix is a registry option this cache does not use; it is ignored (remove it to silence this warning)',
    ]);
    const typo = loadConfig(DTR_CACHE_CONFIG.replace('rootdirectory:', 'rootdir:'));
    expect(!typo.ok && typo.errors[0]).toMatch(/^config\.yml: storage\.filesystem: unknown key rootdir; check the spelling/);
  });

  it('names the YAML path and the fix for each error', () => {
    const result = loadConfig(
      'version: 0.1\nstorage: {s3: {bucket: b}}\nmiddleware: {registry: [{name: downstream, options: {blobttl: 1 day}}]}',
    );
    expect(!result.ok && result.errors).toEqual([
      'config.yml: storage.s3.region: is required; set it to the bucket region, e.g. us-east-1 (any value for an S3-compatible server)',
      'config.yml: middleware.registry[0].options.upstreams: is required; list the DTR (or next cache) URLs, e.g. upstreams: [https://dtr.example.com]',
      'config.yml: middleware.registry[0].options.blobttl: is not a duration; write a Go duration such as 24h (units ns, us, ms, s, m, h)',
    ]);
  });

  it('names the integrity and outage settings in their errors (verifyage, scrubrate, authstale)', () => {
    const result = loadConfig(
      'version: 0.1\nstorage: {filesystem: {rootdirectory: /r}}\nmiddleware: {registry: [{name: downstream, options: ' +
        '{upstreams: [https://dtr.example.com], verifyage: often, scrubrate: fast, authstale: 1 hour}}]}',
    );
    expect(!result.ok && result.errors).toEqual([
      'config.yml: middleware.registry[0].options.authstale: is not a duration; write a Go duration such as 24h (units ns, us, ms, s, m, h)',
      'config.yml: middleware.registry[0].options.verifyage: is not a duration; write a Go duration such as 24h (units ns, us, ms, s, m, h)',
      'config.yml: middleware.registry[0].options.scrubrate: scrubrate must be a size of at least 0 bytes, e.g. 5242880 or 10MiB',
    ]);
    const ok = loadConfig(
      'version: 0.1\nstorage: {filesystem: {rootdirectory: /r}}\nmiddleware: {registry: [{name: downstream, options: {upstreams: [https://dtr.example.com]}}]}',
    );
    if (!ok.ok) throw new Error(ok.errors.join('\n'));
    expect(ok.config.middleware.registry[0].options).toMatchObject({
      verifyage: 86_400_000,
      scrubrate: 8 * 1024 * 1024,
      authstale: 86_400_000,
    });
  });

  it('requires exactly one storage driver and storage.delete for blobttl', () => {
    const none = loadConfig('version: 0.1\nstorage: {}\nmiddleware: {registry: [{name: downstream, options: {upstreams: [https://d]}}]}');
    expect(!none.ok && none.errors[0]).toMatch(/choose one storage driver: add one of filesystem, s3, azure, gcs, oss, swift/);
    const two = loadConfig(
      'version: 0.1\nstorage: {filesystem: {}, azure: {accountname: a, accountkey: k, container: c}}\nmiddleware: {registry: [{name: downstream, options: {upstreams: [https://d]}}]}',
    );
    expect(!two.ok && two.errors[0]).toMatch(/exactly one storage driver is allowed, found filesystem and azure/);
    const ttl = loadConfig(DTR_CACHE_CONFIG.replace('enabled: true', 'enabled: false'));
    expect(!ttl.ok && ttl.errors[0]).toMatch(/^config\.yml: storage\.delete\.enabled: must be true when .*blobttl is set/);
  });

  it('reads the DTR 2.2 upstream shape', () => {
    const result = loadConfig(
      'version: 0.1\nstorage: {filesystem: {}}\nmiddleware: {registry: [{name: downstream, options: {upstreams: [{originhost: "https://dtr", upstreamhosts: ["https://dtr-a:443", "https://dtr-b"]}]}}]}',
    );
    expect(result.ok && result.config.middleware.registry[0].options.upstreams).toEqual(['https://dtr-a', 'https://dtr-b']);
  });

  it('reports YAML syntax errors with the line', () => {
    const result = loadConfig('version: 0.1\nstorage: [\n');
    expect(!result.ok && result.errors[0]).toMatch(/^config\.yml: not valid YAML at line \d+/);
  });

  it('renders only configs the server accepts', () => {
    expect(() =>
      renderConfig({
        version: '0.1',
        storage: { filesystem: {} },
        middleware: { registry: [{ name: 'downstream', options: { upstreams: ['ftp://x'] } }] },
      }),
    ).toThrow(/middleware\.registry\[0\]\.options\.upstreams\[0\]: must be scheme:\/\/host\[:port\]/);
    const text = renderConfig({
      version: '0.1',
      storage: { filesystem: {} },
      middleware: { registry: [{ name: 'downstream', options: { upstreams: ['https://dtr'] } }] },
    });
    expect(loadConfig(text).ok).toBe(true);
  });
});

describe('durations and sizes', () => {
  it.each([
    ['24h', 86_400_000],
    ['1h30m', 5_400_000],
    ['250ms', 250],
    ['1000000', 1],
    [0, 0],
  ])('parseDuration(%p) = %p ms', (text, ms) => expect(parseDuration(text)).toBe(ms));
  it.each(['1 day', 'h', '5x', ''])('parseDuration(%p) is undefined', (text) => expect(parseDuration(text)).toBeUndefined());
  it('parses sizes with SI and binary units', () => {
    expect(parseSize('10MiB')).toBe(10 * 1024 * 1024);
    expect(parseSize('2GB')).toBe(2e9);
    expect(parseSize(512)).toBe(512);
    expect(parseSize('lots')).toBeUndefined();
  });
});
