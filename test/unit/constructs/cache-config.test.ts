import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CacheConfig, SecretSource, SharedStorage, StorageBackend } from '../../../lib/constructs';
import { loadConfig } from '../../../lib/config';
import { newStack, onlyResource, synth, synthesizedPath, validationErrors } from './helpers';

const base = {
  upstreams: ['https://dtr.us.example.com'],
  host: 'https://cache.asia.example.com',
  containerPort: 443,
  storage: { filesystem: { rootdirectory: '/var/lib/registry' } },
  tls: { certificate: '/run/secrets/cache.cert.pem', key: '/run/secrets/cache.key.pem' },
  cas: ['/run/secrets/dtr.cert.pem'],
  blobTtl: '24h',
};

describe('CacheConfig', () => {
  it('synthesizes a docker_config whose content the server config parser accepts, with the site settings', () => {
    const stack = newStack();
    new CacheConfig(stack, 'Config', { ...base, namePrefix: 'dtr-cache-asia' });
    const resource = onlyResource(synth(stack), 'docker_config');
    expect(resource.name).toMatch(/^dtr-cache-asia-config-[0-9a-f]{12}$/);
    expect(resource.lifecycle).toEqual({ create_before_destroy: true });
    const text = Buffer.from(resource.data, 'base64').toString('utf8');
    const result = loadConfig(text, {}, 'synthesized docker_config');
    if (!result.ok) throw new Error(result.errors.join('\n'));
    expect(result.warnings).toEqual([]);
    const c = result.config;
    expect(c.http.addr).toBe('0.0.0.0:443');
    expect(c.http.host).toBe('https://cache.asia.example.com');
    expect(c.http.tls).toEqual({ certificate: '/run/secrets/cache.cert.pem', key: '/run/secrets/cache.key.pem' });
    expect(c.http.secret).toMatch(/^[0-9a-f]{12}$/);
    expect(c.storage.filesystem).toEqual({ rootdirectory: '/var/lib/registry' });
    expect(c.storage.delete).toEqual({ enabled: true });
    const options = c.middleware.registry[0].options;
    expect(options.upstreams).toEqual(['https://dtr.us.example.com']);
    expect(options.cas).toEqual(['/run/secrets/dtr.cert.pem']);
    expect(options.blobttl).toBe(86_400_000);
  });

  it('the same settings give the same name; a change gives a new one (a rolling update)', () => {
    const name = (props: typeof base): string => {
      const stack = newStack();
      new CacheConfig(stack, 'Config', props);
      return onlyResource(synth(stack), 'docker_config').name;
    };
    expect(name(base)).toBe(name({ ...base }));
    expect(name(base)).not.toBe(name({ ...base, blobTtl: '48h' }));
  });

  it('http.secret is identical for every replica and defaults to a value derived from the site, not random', () => {
    const a = new CacheConfig(newStack(), 'C', base);
    const b = new CacheConfig(newStack(), 'C', base);
    expect(a.text).toBe(b.text);
    expect(new CacheConfig(newStack(), 'C', { ...base, httpSecret: 'given' }).text).toContain('secret: given');
  });

  it('reports invalid settings with the YAML path and fix from the shared schema', () => {
    const stack = newStack();
    new CacheConfig(stack, 'Config', { ...base, upstreams: ['https://dtr.example.com/v2'], blobTtl: 'a day' });
    expect(validationErrors(stack)).toEqual([
      'CacheConfig: config.yml: middleware.registry[0].options.upstreams[0]: must be scheme://host[:port] with scheme http or https and no path, e.g. https://dtr.example.com',
      'CacheConfig: config.yml: middleware.registry[0].options.blobttl: is not a duration; write a Go duration such as 24h (units ns, us, ms, s, m, h)',
    ]);
  });

  describe('with secret storage values', () => {
    let dir = '';
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'cache-config-test-'));
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('is a docker_secret, not a docker_config; the JSON holds the file path and a placeholder, never the value', () => {
      const keyFile = join(dir, 's3-secret');
      const secretValue = 'wJalr"XUtn: FEMI/K7MDENG #bPxRfiCY';
      writeFileSync(keyFile, `${secretValue}\n`);
      const stack = newStack();
      const storage = new SharedStorage(stack, 'Storage', {
        backend: StorageBackend.s3({ region: 'eu-west-1', bucket: 'b', accessKey: 'AKIA', secretKey: SecretSource.fromFile(keyFile) }),
      });
      const config = new CacheConfig(stack, 'Config', {
        ...base,
        storage: storage.storageSection,
        secretValues: [...storage.secretValues],
      });
      const json = synth(stack);
      expect(json.resource.docker_config).toBeUndefined();
      const secret = onlyResource(json, 'docker_secret');
      expect(JSON.stringify(json)).not.toContain('wJalr');
      expect(secret.data).toContain(`file(${synthesizedPath(stack, keyFile)})`);
      expect(secret.data).toContain('DTR_CACHE_SECRET_STORAGE_S3_SECRETKEY');
      expect(secret.lifecycle).toEqual({ create_before_destroy: true });
      expect(config.mount).toMatchObject({ kind: 'secret', fileName: '/config.yml' });

      // What Terraform's replace(…, jsonencode(trimspace(file(…)))) produces (terraform-functions.test.ts evaluates
      // the synthesized expression itself): the JSON-quoted value is a valid YAML string.
      const spliced = config.text.replace('DTR_CACHE_SECRET_STORAGE_S3_SECRETKEY', JSON.stringify(secretValue));
      const result = loadConfig(spliced);
      if (!result.ok) throw new Error(result.errors.join('\n'));
      expect(result.config.storage.s3?.secretkey).toBe(secretValue);
    });
  });
});
