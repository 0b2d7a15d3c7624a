/**
 * The cache image the service runs: a given reference, or built from this repo's Dockerfile (`docker_image` with a
 * build block) and pushed (`docker_registry_image`) to a registry every swarm node can pull from. A built image is
 * referenced by digest, so a rebuild rolls the service and every node runs the same bytes.
 */
import { Construct } from 'constructs';
import { Token } from 'cdktf';
import { Image } from '@cdktf/provider-docker/lib/image';
import { RegistryImage } from '@cdktf/provider-docker/lib/registry-image';
import { z } from 'zod';
import { propsValidation } from './base/validation';

/** Build options. */
export interface CacheImageBuildOptions {
  /** Repository and tag to push to, with a registry host, e.g. registry.asia.example.com/infra/dtr-cache:0.1.0. */
  readonly name: string;
  /** Build context: this repository's root. */
  readonly context: string;
  /** Dockerfile path relative to context. @default "Dockerfile" */
  readonly dockerfile?: string;
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
      .object({ name: withRegistryHost, context: z.string().min(1), dockerfile: z.string().optional() })
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
        buildAttribute: { context: b.context, dockerfile: b.dockerfile ?? 'Dockerfile' },
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
