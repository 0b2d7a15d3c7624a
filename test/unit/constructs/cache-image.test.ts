import { join } from 'node:path';
import { CacheImage } from '../../../lib/constructs';
import { packageRoot } from '../../../lib/constructs/cache-image';
import { newStack, onlyResource, synth, synthesizedPath, synthesizedValue, validationErrors } from './helpers';

describe('CacheImage', () => {
  it('uses a given reference as is, creating nothing', () => {
    const stack = newStack();
    const image = new CacheImage(stack, 'Image', { reference: '127.0.0.1:5000/dtr-cache:0.1.0' });
    expect(image.imageRef).toBe('127.0.0.1:5000/dtr-cache:0.1.0');
    expect(synth(stack).resource).toBeUndefined();
    expect(validationErrors(stack)).toEqual([]);
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

  it('rejects a reference without a registry host, and neither or both of reference and build', () => {
    const stack = newStack();
    new CacheImage(stack, 'Bare', { reference: 'dtr-cache:1' });
    new CacheImage(stack, 'Neither', {});
    new CacheImage(stack, 'Both', { reference: '127.0.0.1:5000/a:1', build: { name: '127.0.0.1:5000/a:1', context: '.' } });
    expect(validationErrors(stack)).toEqual([
      'CacheImage: reference: must name its registry host, e.g. 127.0.0.1:5000/dtr-cache:0.1.0 (a bare name would be pulled from Docker Hub)',
      'CacheImage: (props): give exactly one of reference (a prebuilt image) or build (from the Dockerfile)',
      'CacheImage: (props): give exactly one of reference (a prebuilt image) or build (from the Dockerfile)',
    ]);
  });
});
