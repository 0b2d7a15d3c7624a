/**
 * Deploy-time expressions, evaluated by Terraform itself (`terraform console`, no providers needed): the secret
 * config splice and the file-based secret data. cdktf synth cannot evaluate them, so this is where they are proven.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TerraformStack } from 'cdktf';
import { stackDirectory } from '../../../lib/constructs/base/deploy-path';
import { CacheConfig, CacheTls, SecretSource, SharedStorage, StorageBackend } from '../../../lib/constructs';
import { loadConfig } from '../../../lib/config';
import { requireTool } from '../../../harness/tools';
import { fixture, newStack, NOW, onlyResource, resourceNamed, synth } from './helpers';

describe('deploy-time expressions under terraform console', () => {
  let dir = '';
  beforeAll(() => {
    requireTool('terraform');
    dir = mkdtempSync(join(tmpdir(), 'tf-functions-test-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /**
   * Evaluates a synthesized "${…}" string that yields base64 in the directory Terraform runs in for `stack` (file paths
   * are relative to it), and decodes it.
   */
  const evaluateBase64 = (stack: TerraformStack, interpolation: string): string => {
    const expression = /^\$\{([\s\S]*)\}$/.exec(interpolation)?.[1];
    if (!expression) throw new Error(`not an interpolation: ${interpolation.slice(0, 80)}`);
    const cwd = stackDirectory(stack);
    mkdirSync(cwd, { recursive: true });
    writeFileSync(join(cwd, 'main.tf.json'), '{}');
    const out = execFileSync('terraform', [`-chdir=${cwd}`, 'console'], { input: expression, encoding: 'utf8', timeout: 30_000 }).trim();
    return Buffer.from(JSON.parse(out) as string, 'base64').toString('utf8');
  };

  it('splices each secret value into config.yml, JSON-quoted, and the server parser reads it back', () => {
    const secretFile = join(dir, 'secret');
    const value = 'wJalr"XUtn: FEMI/K7MDENG #bPx${notinterpolated}';
    writeFileSync(secretFile, `${value}\n`);
    const stack = newStack();
    const storage = new SharedStorage(stack, 'Storage', {
      backend: StorageBackend.swift({
        authUrl: 'https://keystone.example:5000/v3',
        username: 'cache',
        password: SecretSource.fromFile(secretFile),
        container: 'dtr-cache',
      }),
    });
    new CacheConfig(stack, 'Config', {
      upstreams: ['https://dtr.example.com'],
      host: 'https://cache.example.com',
      containerPort: 443,
      storage: storage.storageSection,
      secretValues: [...storage.secretValues],
    });
    const text = evaluateBase64(stack, onlyResource(synth(stack), 'docker_secret').data);
    const result = loadConfig(text);
    if (!result.ok) throw new Error(result.errors.join('\n'));
    expect(result.config.storage.swift?.password).toBe(value);
    expect(result.config.storage.swift?.username).toBe('cache');
  });

  it('filebase64 of a TLS key file yields the file', () => {
    const stack = newStack();
    new CacheTls(stack, 'Tls', {
      certificate: SecretSource.fromFile(fixture('cache.cert.pem')),
      key: SecretSource.fromFile(fixture('cache.key.pem')),
      now: NOW,
    });
    const key = resourceNamed(synth(stack), 'docker_secret', /key/);
    expect(evaluateBase64(stack, key.data)).toBe(readFileSync(fixture('cache.key.pem'), 'utf8'));
  });
});
