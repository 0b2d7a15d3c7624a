import { CacheConfig, SecretSource, SharedStorage, StorageBackend } from '../../../lib/constructs';
import { loadConfig } from '../../../lib/config';
import { newStack, resourcesOf, synth } from './helpers';

describe('SharedStorage', () => {
  it('NFS: a local-driver volume with NFS options, mounted at the filesystem rootdirectory on every node', () => {
    const stack = newStack();
    const storage = new SharedStorage(stack, 'Storage', {
      backend: StorageBackend.nfs({ server: '10.0.0.10' }),
      namePrefix: 'dtr-cache-asia',
    });
    expect(storage.backend.shared).toBe(true);
    expect(storage.backend.label).toBe('nfs');
    expect(storage.storageSection).toEqual({ filesystem: { rootdirectory: '/var/lib/registry' } });
    expect(storage.mounts).toEqual([
      {
        type: 'volume',
        source: expect.stringMatching(/^dtr-cache-asia-nfs-[0-9a-f]{12}$/),
        target: '/var/lib/registry',
        volumeOptions: {
          driverName: 'local',
          driverOptions: { type: 'nfs', o: 'addr=10.0.0.10,rw,nfsvers=4,hard,lookupcache=positive', device: ':/dtr-cache' },
          labels: [{ label: 'dtr.cache.managed-by', value: 'dtr-cache-site' }],
        },
      },
    ]);
    // No swarm object of its own: each node creates the volume when a replica starts there.
    expect(synth(stack).resource).toBeUndefined();
  });

  it('NFS: custom export path, mount options and rootdirectory', () => {
    const storage = new SharedStorage(newStack(), 'S', {
      backend: StorageBackend.nfs({
        server: 'nfs.example.com',
        path: '/exports/cache',
        mountOptions: 'rw,nfsvers=3',
        rootDirectory: '/data',
      }),
    });
    expect(storage.mounts[0].volumeOptions?.driverOptions).toEqual({
      type: 'nfs',
      o: 'addr=nfs.example.com,rw,nfsvers=3',
      device: ':/exports/cache',
    });
    expect(storage.mounts[0].target).toBe('/data');
    expect(storage.storageSection).toEqual({ filesystem: { rootdirectory: '/data' } });
  });

  it('local filesystem: container-local, not shared, no mounts', () => {
    const storage = new SharedStorage(newStack(), 'S', { backend: StorageBackend.localFilesystem() });
    expect(storage.backend.shared).toBe(false);
    expect(storage.backend.label).toBe('filesystem (container-local)');
    expect(storage.mounts).toEqual([]);
  });

  it('S3: options in the storage section, the secret key only as a placeholder spliced in at deploy time', () => {
    const storage = new SharedStorage(newStack(), 'S', {
      backend: StorageBackend.s3({ region: 'eu-west-1', bucket: 'b', accessKey: 'AKIA', secretKey: SecretSource.fromFile('/etc/s3-key') }),
    });
    expect(storage.storageSection).toEqual({
      s3: { region: 'eu-west-1', bucket: 'b', accesskey: 'AKIA', secretkey: 'DTR_CACHE_SECRET_STORAGE_S3_SECRETKEY' },
    });
    expect(storage.secretValues.map((s) => [s.placeholder, s.source.path])).toEqual([
      ['DTR_CACHE_SECRET_STORAGE_S3_SECRETKEY', '/etc/s3-key'],
    ]);
  });

  it('Azure: serviceUrl (azurite, private endpoints) becomes serviceurl; unset, the server derives it from the realm', () => {
    const key = SecretSource.fromFile('/etc/azure-key');
    const custom = new SharedStorage(newStack(), 'S', {
      backend: StorageBackend.azure({ accountName: 'a', accountKey: key, container: 'c', serviceUrl: 'http://10.0.0.5:10000/a' }),
    });
    expect(custom.storageSection).toEqual({
      azure: {
        accountname: 'a',
        container: 'c',
        serviceurl: 'http://10.0.0.5:10000/a',
        accountkey: 'DTR_CACHE_SECRET_STORAGE_AZURE_ACCOUNTKEY',
      },
    });
    const plain = new SharedStorage(newStack(), 'S', {
      backend: StorageBackend.azure({ accountName: 'a', accountKey: key, container: 'c' }),
    });
    expect(plain.storageSection.azure).not.toHaveProperty('serviceurl');
  });

  it('each object store renders a storage section the server schema accepts', () => {
    const secret = SecretSource.fromFile('/etc/secret');
    const backends = [
      StorageBackend.s3({ region: 'us-east-1', bucket: 'b' }),
      StorageBackend.azure({ accountName: 'acct', accountKey: secret, container: 'c', serviceUrl: 'http://127.0.0.1:10000/acct' }),
      StorageBackend.gcs({ bucket: 'b', keyFile: secret }),
      StorageBackend.oss({ accessKeyId: 'id', accessKeySecret: secret, region: 'oss-cn-beijing', bucket: 'b' }),
      StorageBackend.swift({ authUrl: 'https://keystone.example:5000/v3', username: 'u', password: secret, container: 'c' }),
    ];
    for (const backend of backends) {
      const stack = newStack();
      const storage = new SharedStorage(stack, 'S', { backend });
      const config = new CacheConfig(stack, 'C', {
        upstreams: ['https://dtr.example.com'],
        host: 'https://cache.example.com',
        containerPort: 443,
        storage: storage.storageSection,
        secretValues: [...storage.secretValues],
      });
      const result = loadConfig(config.text);
      expect(result.ok ? result.config.storage[backend.driver] : result.errors).toBeDefined();
      expect(result.ok).toBe(true);
    }
  });

  it('GCS: the key file becomes a hash-named swarm secret, referenced by keyfile', () => {
    const stack = newStack();
    const storage = new SharedStorage(stack, 'S', {
      backend: StorageBackend.gcs({ bucket: 'b', keyFile: SecretSource.fromPlainText('{"type":"service_account"}') }),
    });
    expect(storage.storageSection).toEqual({ gcs: { bucket: 'b', keyfile: '/run/secrets/gcs-key.json' } });
    const [secret] = resourcesOf(synth(stack), 'docker_secret');
    expect(secret.name).toMatch(/^dtr-cache-gcs-key\.json-[0-9a-f]{12}$/);
    expect(secret.lifecycle).toEqual({ create_before_destroy: true });
    expect(storage.secrets[0].fileName).toBe('gcs-key.json');
  });
});
