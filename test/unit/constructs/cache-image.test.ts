import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireTool } from '../../../harness/tools';
import { TerraformOutput, TerraformStack, TerraformVariable } from 'cdktf';
import { CacheImage } from '../../../lib/constructs';
import { packageRoot } from '../../../lib/constructs/cache-image';
import { newStack, onlyResource, synth, synthesizedValue, TfJson, validationErrors } from './helpers';

/** The synthesized JSON with the image the service would run as output `ref`. */
function synthRef(stack: TerraformStack, image: CacheImage): TfJson {
  new TerraformOutput(stack, 'ref', { value: image.imageRef });
  return synth(stack);
}

/** The single data source of `type`, metadata removed, with its Terraform name. */
function onlyDataSource(json: TfJson, type: string): { name: string; body: TfJson } {
  const all = Object.entries((json.data?.[type] ?? {}) as Record<string, TfJson>);
  if (all.length !== 1) throw new Error(`expected one data.${type}, found ${all.length}`);
  const { '//': _m, ...body } = all[0][1];
  return { name: all[0][0], body };
}

describe('CacheImage', () => {
  it('pins a tag to the digest the registry serves, read at plan time (docker_registry_image data source)', () => {
    const stack = newStack();
    const image = new CacheImage(stack, 'Image', { reference: '127.0.0.1:5000/dtr-cache:0.1.0' });
    const json = synthRef(stack, image);
    const digest = onlyDataSource(json, 'docker_registry_image');
    expect(digest.body).toEqual({ name: '127.0.0.1:5000/dtr-cache:0.1.0' });
    // name:tag@digest: the tag stays readable; the engine and the provider's Read keep the string as sent.
    expect(json.output.ref.value).toBe(`127.0.0.1:5000/dtr-cache:0.1.0@\${data.docker_registry_image.${digest.name}.sha256_digest}`);
    expect(image.registryDigest).toBeDefined();
    expect(image.displayName).toBe('127.0.0.1:5000/dtr-cache:0.1.0');
    expect(json.resource).toBeUndefined();
    expect(validationErrors(stack)).toEqual([]);
  });

  it('pins a reference without a tag (the registry serves latest) to name@digest', () => {
    const stack = newStack();
    const image = new CacheImage(stack, 'Image', { reference: 'registry.example.com/infra/dtr-cache' });
    const json = synthRef(stack, image);
    const digest = onlyDataSource(json, 'docker_registry_image');
    expect(json.output.ref.value).toBe(`registry.example.com/infra/dtr-cache@\${data.docker_registry_image.${digest.name}.sha256_digest}`);
  });

  it('runs a reference with a digest as is, reading nothing', () => {
    const stack = newStack();
    const ref = `127.0.0.1:5000/dtr-cache:0.1.0@sha256:${'a'.repeat(64)}`;
    const image = new CacheImage(stack, 'Image', { reference: ref });
    const json = synthRef(stack, image);
    expect(json.output.ref.value).toBe(ref);
    expect(json.data).toBeUndefined();
    expect(image.registryDigest).toBeUndefined();
    expect(validationErrors(stack)).toEqual([]);
  });

  it('with resolveDigest false, runs the tag as given, reading nothing', () => {
    const stack = newStack();
    const image = new CacheImage(stack, 'Image', { reference: '127.0.0.1:5000/dtr-cache:0.1.0', resolveDigest: false });
    const json = synthRef(stack, image);
    expect(json.output.ref.value).toBe('127.0.0.1:5000/dtr-cache:0.1.0');
    expect(json.data).toBeUndefined();
    expect(json.resource).toBeUndefined();
    expect(validationErrors(stack)).toEqual([]);
  });

  it('a reference given as a Terraform expression is read, and pinned unless it holds a digest when resolved', () => {
    const stack = newStack();
    const reference = new TerraformVariable(stack, 'cache_image', { type: 'string' }).stringValue;
    const image = new CacheImage(stack, 'Image', { reference });
    const json = synthRef(stack, image);
    const digest = onlyDataSource(json, 'docker_registry_image');
    expect(digest.body).toEqual({ name: '${var.cache_image}' });
    expect(json.output.ref.value).toBe(
      `\${strcontains(var.cache_image, "@") ? var.cache_image : "\${var.cache_image}@\${data.docker_registry_image.${digest.name}.sha256_digest}"}`,
    );
    expect(image.displayName).toBe(reference);
    expect(validationErrors(stack)).toEqual([]);
    // Terraform evaluates it (the digest the data source would read stands in as a local): a tag is pinned, a
    // reference with a digest kept.
    const dir = mkdtempSync(join(tmpdir(), 'cache-image-expr-'));
    try {
      const value = String(json.output.ref.value).replace(`data.docker_registry_image.${digest.name}.sha256_digest`, 'local.digest');
      const digestValue = `sha256:${'b'.repeat(64)}`;
      writeFileSync(join(dir, 'main.tf.json'), JSON.stringify({ variable: json.variable, locals: { digest: digestValue, ref: value } }));
      const evaluate = (ref: string) =>
        execFileSync(requireTool('terraform'), [`-chdir=${dir}`, 'console', '-var', `cache_image=${ref}`], {
          input: 'local.ref',
          encoding: 'utf8',
        }).trim();
      expect(evaluate('127.0.0.1:5000/dtr-cache:1')).toBe(`"127.0.0.1:5000/dtr-cache:1@${digestValue}"`);
      expect(evaluate(`127.0.0.1:5000/dtr-cache:1@sha256:${'c'.repeat(64)}`)).toBe(`"127.0.0.1:5000/dtr-cache:1@sha256:${'c'.repeat(64)}"`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('builds from the Dockerfile, pushes, and runs the pushed digest', () => {
    const stack = newStack();
    const image = new CacheImage(stack, 'Image', {
      build: { name: 'registry.asia.example.com/infra/dtr-cache:0.1.0', context: '/src/dtr-cache-site' },
    });
    const json = synth(stack);
    const built = onlyResource(json, 'docker_image');
    expect(built.name).toBe('registry.asia.example.com/infra/dtr-cache:0.1.0');
    expect(built.build).toMatchObject({ context: '/src/dtr-cache-site', dockerfile: 'Dockerfile' });
    const pushed = onlyResource(json, 'docker_registry_image');
    expect(pushed.name).toMatch(/^\$\{docker_image\.Image_.*\.name\}$/);
    expect(pushed.keep_remotely).toBe(true);
    expect(pushed.triggers).toEqual({ image: expect.stringMatching(/^\$\{docker_image\.Image_.*\.image_id\}$/) });
    expect(image.imageRef).toMatch(/^registry\.asia\.example\.com\/infra\/dtr-cache@\$\{TfToken\[TOKEN\.\d+\]\}$/);
  });

  it('without a context, builds from the installed package (image/Dockerfile), addressed from the stack directory', () => {
    const stack = newStack();
    new CacheImage(stack, 'Image', { build: { name: 'registry.example.com/infra/dtr-cache:0.1.0', buildArgs: { BASE_IMAGE: 'b' } } });
    const built = onlyResource(synth(stack), 'docker_image');
    // From source, the package root is this repository's.
    expect(packageRoot()).toBe(join(__dirname, '..', '..', '..'));
    expect(built.build).toEqual({
      context: synthesizedValue(stack, packageRoot()),
      dockerfile: 'image/Dockerfile',
      build_args: { BASE_IMAGE: 'b' },
    });
    expect(validationErrors(stack)).toEqual([]);
  });

  it('rejects a reference without a registry host, neither or both of reference and build, and resolveDigest with build', () => {
    const stack = newStack();
    new CacheImage(stack, 'Bare', { reference: 'dtr-cache:1' });
    new CacheImage(stack, 'Neither', {});
    new CacheImage(stack, 'Both', { reference: '127.0.0.1:5000/a:1', build: { name: '127.0.0.1:5000/a:1', context: '.' } });
    new CacheImage(stack, 'BuiltResolved', { build: { name: '127.0.0.1:5000/a:1', context: '.' }, resolveDigest: false });
    expect(validationErrors(stack)).toEqual([
      'CacheImage: reference: must name its registry host, e.g. 127.0.0.1:5000/dtr-cache:0.1.0 (a bare name would be pulled from Docker Hub)',
      'CacheImage: (props): give exactly one of reference (a prebuilt image) or build (from the Dockerfile)',
      'CacheImage: (props): give exactly one of reference (a prebuilt image) or build (from the Dockerfile)',
      'CacheImage: resolveDigest: applies to reference only (a built image always runs by the digest of its push)',
    ]);
  });
});
