/**
 * The cache image the service runs: a given reference, or built (`docker_image` with a build block) and pushed
 * (`docker_registry_image`) to a registry every swarm node can pull from: by default from the installed dtr-cache-site
 * package (its image/Dockerfile, compiled dist/ and lockfile), or from a context given. Either way the service runs
 * the image by digest, as kreuzwerker/docker asks: a given tag is resolved at plan time (the `docker_registry_image`
 * data source), a built image is pushed first. So a new push or a rebuild rolls the service, every node runs the same
 * bytes, and the plan after an apply has no changes.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Construct } from 'constructs';
import { Fn, Token } from 'cdktf';
import { DataDockerRegistryImage } from '@cdktf/provider-docker/lib/data-docker-registry-image';
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
  /**
   * Pin a `reference` without a digest to the digest its registry serves for the tag, read at plan time by the
   * provider's `docker_registry_image` data source: the service runs `name:tag@sha256:…`, and a new push under the
   * tag rolls it on the next apply. The machine running Terraform must reach the registry over https (http only
   * when the provider's `registry_auth` names the registry with `http://`); a private registry needs its credentials
   * in the provider's `registry_auth`. With false the tag runs as given, and when the registry served the image at
   * create, kreuzwerker/docker 3.6.2 stores the digest the Docker client pinned (`name:tag@sha256:…`): the first plan
   * after the apply then shows an in-place update of the service's image (the digest removed), which rolls the
   * service onto the bare tag. A reference with a digest runs as given either way. Only with reference.
   * @default true
   */
  readonly resolveDigest?: boolean;
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
    resolveDigest: z.boolean().optional(),
  })
  .refine((p) => (p.reference === undefined) !== (p.build === undefined), {
    message: 'give exactly one of reference (a prebuilt image) or build (from the Dockerfile)',
  })
  .refine((p) => p.build === undefined || p.resolveDigest === undefined, {
    message: 'applies to reference only (a built image always runs by the digest of its push)',
    path: ['resolveDigest'],
  });

export class CacheImage extends Construct {
  /**
   * What the service runs: the reference pinned to its digest (`name:tag@sha256:…`; as given when it has a digest or
   * resolveDigest is false), or name@digest of the pushed image.
   */
  public readonly imageRef: string;
  /** The image name as given (reference or build name), for summaries. */
  public readonly displayName: string;
  /** Whether the image is built and pushed by this stack. */
  public readonly built: boolean;
  /** The data source that reads the reference's digest; undefined for a built image, a digest given, or resolveDigest false. */
  public readonly registryDigest?: DataDockerRegistryImage;

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
      const reference = props.reference ?? '';
      this.displayName = reference;
      this.built = false;
      const unresolved = Token.isUnresolved(reference);
      if ((props.resolveDigest ?? true) && reference !== '' && (unresolved || !reference.includes('@'))) {
        this.registryDigest = new DataDockerRegistryImage(this, 'Digest', { name: reference });
        // The tag is kept (`name:tag@digest`, what the Docker CLI's own pinning makes): a reference with a digest is
        // sent as is (the Docker client's QueryRegistry leaves it unchanged), the engine stores that string, and the
        // provider's Read sets it back, so plan and state agree; the engine pulls by the digest, and the tag stays
        // readable in plans and `docker service ls`. It also needs no parsing, which a reference given as a Terraform
        // expression would not allow: such a reference is pinned unless it holds a digest when Terraform resolves it.
        const pinned = `${reference}@${this.registryDigest.sha256Digest}`;
        this.imageRef = unresolved ? Token.asString(Fn.conditional(Fn.strcontains(reference, '@'), reference, pinned)) : pinned;
      } else {
        this.imageRef = reference;
      }
    }
  }
}

/** The root of the dtr-cache-site package these constructs come from (dist/lib/constructs or lib/constructs below it). */
export function packageRoot(): string {
  const candidates = [resolve(__dirname, '..', '..', '..'), resolve(__dirname, '..', '..')];
  return candidates.find((dir) => existsSync(join(dir, 'image', 'Dockerfile'))) ?? candidates[0];
}
