/**
 * The cache image the service runs: a given reference, or built (`docker_image` with a build block) and pushed
 * (`docker_registry_image`) to a registry every swarm node can pull from: by default from the installed dtr-cache-site
 * package (its image/Dockerfile, compiled dist/ and lockfile), or from a context given. A built image is referenced by
 * digest, so a rebuild rolls the service and every node runs the same bytes.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Construct } from 'constructs';
import { Token } from 'cdktf';
import { Image } from '@cdktf/provider-docker/lib/image';
import { RegistryImage } from '@cdktf/provider-docker/lib/registry-image';
import { z } from 'zod';
import { deployPath } from './base/deploy-path';
import { propsValidation } from './base/validation';

/** Build options. */
export interface CacheImageBuildOptions {
  /** Repository and tag to push to, with a registry host, e.g. registry.asia.example.com/infra/dtr-cache:0.1.0. */
  readonly name: string;
  /**
   * Build context (a directory, e.g. a checkout of this repository with its Dockerfile).
   * @default the installed dtr-cache-site package, with its image/Dockerfile
   */
  readonly context?: string;
  /** Dockerfile path relative to context. @default "image/Dockerfile" without context, else "Dockerfile" */
  readonly dockerfile?: string;
  /** Build arguments, e.g. BASE_IMAGE for a node base image from your registry. @default none */
  readonly buildArgs?: Record<string, string>;
  /** Source files whose change triggers a rebuild (e.g. the repo's git commit). @default none: rebuild when name changes */
  readonly triggers?: Record<string, string>;
}

export interface CacheImageProps {
  /** A prebuilt image reference with a registry host, e.g. 127.0.0.1:5000/dtr-cache:0.1.0. Exclusive with build. @default none */
  readonly reference?: string;
  /** Build and push from the Dockerfile. Exclusive with reference. @default none */
  readonly build?: CacheImageBuildOptions;
}

/** An image reference that names its registry host (a dot, a colon or localhost before the first slash). */
const withRegistryHost = z.string().refine((ref) => Token.isUnresolved(ref) || /^([^/]*[.:][^/]*|localhost)\//.test(ref), {
  message: 'must name its registry host, e.g. 127.0.0.1:5000/dtr-cache:0.1.0 (a bare name would be pulled from Docker Hub)',
});

const propsSchema = z
  .object({
    reference: withRegistryHost.optional(),
    build: z
      .object({ name: withRegistryHost, context: z.string().min(1).optional(), dockerfile: z.string().optional() })
      .loose()
      .optional(),
  })
  .refine((p) => (p.reference === undefined) !== (p.build === undefined), {
    message: 'give exactly one of reference (a prebuilt image) or build (from the Dockerfile)',
  });

export class CacheImage extends Construct {
  /** What the service runs: the reference, or name@digest of the pushed image. */
  public readonly imageRef: string;
  /** The image name as given (reference or build name), for summaries. */
  public readonly displayName: string;
  /** Whether the image is built and pushed by this stack. */
  public readonly built: boolean;

  constructor(scope: Construct, id: string, props: CacheImageProps) {
    super(scope, id);
    this.node.addValidation(propsValidation('CacheImage', propsSchema, props));
    if (props.build) {
      const b = props.build;
      const image = new Image(this, 'Image', {
        name: b.name,
        buildAttribute: {
          // Relative to the stack's directory, like every path Terraform reads (portable synth).
          context: b.context ?? deployPath(this, packageRoot()),
          dockerfile: b.dockerfile ?? (b.context === undefined ? 'image/Dockerfile' : 'Dockerfile'),
          buildArgs: b.buildArgs,
        },
        triggers: b.triggers,
        keepLocally: true,
      });
      const pushed = new RegistryImage(this, 'Push', { name: image.name, keepRemotely: true, triggers: { image: image.imageId } });
      this.imageRef = `${b.name.replace(/:[^:/]+$/, '')}@${pushed.sha256Digest}`;
      this.displayName = b.name;
      this.built = true;
    } else {
      this.imageRef = props.reference ?? '';
      this.displayName = this.imageRef;
      this.built = false;
    }
  }
}

/** The root of the dtr-cache-site package these constructs come from (dist/lib/constructs or lib/constructs below it). */
export function packageRoot(): string {
  const candidates = [resolve(__dirname, '..', '..', '..'), resolve(__dirname, '..', '..')];
  return candidates.find((dir) => existsSync(join(dir, 'image', 'Dockerfile'))) ?? candidates[0];
}
