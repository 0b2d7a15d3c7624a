/**
 * A token-protected upstream, the way DTR protects its registry: distribution 2.8 with `auth: token`, behind the
 * token issuer in test/fixtures. Tests get the registry (with its access log), the issuer, and helpers that
 * perform the client side of the token flow.
 */
import { AclEntry, TokenIssuer } from '../fixtures/token-issuer';
import { pushImage, TestImage } from '../../harness/images';
import { TestRegistry } from '../../harness/registry';

export interface TokenRegistry {
  readonly registry: TestRegistry;
  readonly issuer: TokenIssuer;
  /** `Authorization` header value for `user` (undefined: anonymous) and `repo` with `actions`, via the issuer. */
  bearer(user: string | undefined, repo: string, actions?: string): string;
  /** Pushes `image` as `repo:tag` with a push token (the pusher needs no ACL entry). */
  push(repo: string, tag: string, image: TestImage): Promise<void>;
  stop(): Promise<void>;
}

export interface TokenRegistryOptions {
  readonly users: Readonly<Record<string, string>>;
  readonly acl: readonly AclEntry[];
  readonly port?: number;
}

/**
 * The access the auth tests share: alice pulls team/app, bob pulls other/*, anyone pulls public/base, so each test
 * has a right user, a user with a token for another repository, and anonymous access where the upstream allows it.
 */
export const TEAM_ACCESS: TokenRegistryOptions = {
  users: { alice: 'alice-pw', bob: 'bob-pw' },
  acl: [
    { who: 'alice', repo: 'team/app', actions: ['pull'] },
    { who: 'bob', repo: 'other/*', actions: ['pull'] },
    { who: 'anonymous', repo: 'public/base', actions: ['pull'] },
  ],
};

export async function startTokenRegistry(options: TokenRegistryOptions): Promise<TokenRegistry> {
  const issuer = await TokenIssuer.start({ users: options.users, acl: options.acl });
  let registry: TestRegistry;
  try {
    registry = await TestRegistry.start({
      port: options.port,
      extra: {
        auth: { token: { realm: issuer.realm, service: issuer.service, issuer: issuer.issuer, rootcertbundle: issuer.rootCertBundle } },
      },
    });
  } catch (err) {
    await issuer.stop();
    throw err;
  }
  const bearer = (user: string | undefined, repo: string, actions = 'pull') =>
    `Bearer ${issuer.tokenFor(user, [`repository:${repo}:${actions}`])}`;
  return {
    registry,
    issuer,
    bearer,
    push: (repo, tag, image) =>
      pushImage(registry.url, repo, tag, image, {
        authorization: `Bearer ${issuer.mint('pusher', [{ type: 'repository', name: repo, actions: ['pull', 'push'] }])}`,
      }),
    stop: async () => {
      await registry.stop();
      await issuer.stop();
    },
  };
}
