/**
 * The storage preflight as synthesized: one terraform_data whose local-exec runs one-shot tasks through the site's
 * connection, before the service. It runs for real on a three-node swarm in test/e2e/storage-preflight.test.ts.
 */
import { mountFlag, preflightCommand, PROBE_PROGRAM, REMOVE_PROGRAM, SwarmConnection } from '../../../lib/constructs';
import { DtrCacheSite, StorageBackend } from '../../../lib/constructs';
import { asiaSiteProps, newStack, onlyResource, resourcesOf, synth } from './helpers';

/** The helpers' image reference pinned to the digest its registry serves (read at plan time). */
const PINNED = /^127\.0\.0\.1:5000\/dtr-cache:0\.1\.0@\$\{data\.docker_registry_image\.asia_Image_Digest_\w+\.sha256_digest\}$/;

describe('StoragePreflight', () => {
  it('mounts the volume as the service does: the NFS o= option quoted in the --mount CSV', () => {
    const stack = newStack('s', false);
    const site = new DtrCacheSite(stack, 'asia', asiaSiteProps());
    const mount = site.storage.mounts[0];
    expect(mountFlag(mount)).toBe(
      `type=volume,source=${mount.source},target=/var/lib/registry,volume-driver=local,volume-opt=type=nfs,` +
        '"volume-opt=o=addr=nfs.asia.example.com,rw,nfsvers=4,hard,lookupcache=positive",volume-opt=device=:/dtr-cache,' +
        'volume-label=dtr.cache.managed-by=dtr-cache-site',
    );
    const json = synth(stack);
    const check = resourcesOf(json, 'terraform_data').find((r) => r.triggers_replace.image);
    expect(check?.triggers_replace).toEqual({
      volume: mount.source,
      nodes: 'cache-asia-1 cache-asia-2',
      // The image the service runs: the tag pinned to its digest, so a new push under the tag checks again.
      image: expect.stringMatching(PINNED),
      host: 'unix:///var/run/docker.sock',
    });
    const exec = check?.provisioner[0]['local-exec'];
    expect(exec.environment).toEqual({ DOCKER_HOST: 'unix:///var/run/docker.sock', NODES: 'cache-asia-1 cache-asia-2' });
    expect(exec.command).toContain('round write $NODES');
    expect(onlyResource(json, 'docker_service').depends_on).toContain(
      `terraform_data.${Object.keys(json.resource.terraform_data).find((k) => k.startsWith('asia_StoragePreflight_Check_'))}`,
    );
  });

  it('removes the volume from every node on destroy, after the service, with the command recorded in state', () => {
    const stack = newStack('s', false);
    const site = new DtrCacheSite(stack, 'asia', asiaSiteProps());
    const volume = site.storage.mounts[0].source;
    const removal = resourcesOf(synth(stack), 'terraform_data').find((r) => r.lifecycle);
    expect(removal?.lifecycle).toEqual({ create_before_destroy: true });
    expect(removal?.triggers_replace).toEqual({ volume, nodes: 'cache-asia-1 cache-asia-2', host: 'unix:///var/run/docker.sock' });
    expect(removal?.provisioner).toEqual([
      {
        'local-exec': {
          when: 'destroy',
          command: '${self.input.destroy}',
          environment: { DOCKER_HOST: '${self.input.environment.DOCKER_HOST}', NODES: '${self.input.nodes}' },
        },
      },
    ]);
    const command: string = removal?.input.destroy;
    expect(command).toContain("flags='--user 0 --mount type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock'");
    expect(command).toContain(`launch() { start "$2" "$3" '${volume}' 120; }`);
    expect(removal?.input.environment).toEqual({ DOCKER_HOST: 'unix:///var/run/docker.sock' });
    expect(removal?.input.nodes).toBe('cache-asia-1 cache-asia-2');
    expect(command).toContain('round remove $NODES');
    // The one expression Terraform resolves in it is the image's digest (at plan, so state holds the command run).
    const image = /^image='([^']*)'/m.exec(command)?.[1] ?? '';
    expect(image).toMatch(PINNED);
    expect(command.replace(image, '')).not.toMatch(/[$%]\{/);
    expect(REMOVE_PROGRAM).not.toContain("'");
  });

  it('runs after the export is applied over SSH, when it is', () => {
    const stack = newStack('s', false);
    new DtrCacheSite(
      stack,
      'asia',
      asiaSiteProps({ storage: StorageBackend.nfs({ server: 'nfs', clients: ['10.0.0.0/24'], applyOverSsh: {} }) }),
    );
    const data = synth(stack).resource.terraform_data as Record<string, { depends_on?: string[] }>;
    const [check] = Object.entries(data).filter(([k]) => k.startsWith('asia_StoragePreflight_Check_'));
    expect(check[1].depends_on).toEqual([expect.stringMatching(/^terraform_data\.asia_Storage_NfsExport_[0-9A-F]{8}$/)]);
  });

  it('none for storage without a volume, or when turned off', () => {
    for (const props of [
      asiaSiteProps({ storage: StorageBackend.localFilesystem(), replicas: 1 }),
      asiaSiteProps({ storagePreflight: false }),
    ]) {
      const stack = newStack('s', false);
      new DtrCacheSite(stack, 'asia', props);
      expect(Object.keys(synth(stack).resource.terraform_data).filter((k) => k.includes('Preflight'))).toEqual([]);
    }
  });

  it('holds nothing Terraform would interpolate, and the probe program fits in a single-quoted shell word', () => {
    const command = preflightCommand({
      nodes: ['a', 'b'],
      image: '127.0.0.1:5000/dtr-cache:e2e',
      namePrefix: 'dtr-cache-x',
      connection: SwarmConnection.localSocket(),
      mount: { type: 'volume', source: 'v', target: '/var/lib/registry' },
    });
    expect(command).not.toMatch(/[$%]\{/);
    expect(PROBE_PROGRAM).not.toContain("'");
  });
});
