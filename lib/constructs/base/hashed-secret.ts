/**
 * A `docker_secret` whose name carries a hash of its content. Swarm secrets are immutable, so new content must be a
 * new secret: with a new name and create_before_destroy, Terraform creates the new secret, updates the service to use
 * it (a rolling update) and only then deletes the old one, instead of failing on a secret still in use.
 */
import { Construct } from 'constructs';
import { Secret } from '@cdktf/provider-docker/lib/secret';
import { SecretSource } from './secret-source';
import { managedLabels } from './labels';

export interface HashedSecretProps {
  /** Name before the hash, e.g. "dtr-cache-asia-cache.key.pem". */
  readonly baseName: string;
  /** The content. */
  readonly source: SecretSource;
  /** Marks the secret (label dtr.cache.test-only=true) as test material. @default false */
  readonly testOnly?: boolean;
}

/** Creates the secret; its `name` is `<baseName>-<hash>`. */
export function hashedSecret(scope: Construct, id: string, props: HashedSecretProps): Secret {
  return new Secret(scope, id, {
    name: `${props.baseName}-${props.source.contentHash(scope)}`,
    data: props.source.base64(scope),
    labels: [...managedLabels(scope), ...(props.testOnly ? [{ label: 'dtr.cache.test-only', value: 'true' }] : [])],
    lifecycle: { createBeforeDestroy: true },
  });
}

/** A secret and the file name it gets under /run/secrets/ in the container. */
export interface SecretMount {
  /** The docker_secret. */
  readonly secret: Secret;
  /** File name under /run/secrets/ (or an absolute path) in the container. */
  readonly fileName: string;
}
