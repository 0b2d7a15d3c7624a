/**
 * Where the cache keeps content. Three families:
 * - NFS (shared): a volume of the local driver with NFS options, declared on the service's mount so that every node
 *   creates it when a replica starts there. (A `docker_volume` resource would exist only on the node the provider talks
 *   to, a manager, not on the workers that run replicas.) The cache sees it as a filesystem at its rootdirectory. The
 *   volume's name ends in a hash of server, path and mount options: Docker keeps an existing volume of a name with
 *   the options it was created with, so a changed option must make a new name to reach every node. The export
 *   itself (NfsExport) is checked at synth, rendered as an /etc/exports line, and applied over SSH on request.
 * - Object storage (shared): s3, azure, gcs, oss, swift, rendered into config.yml's `storage` section with the same keys
 *   as the registry's drivers. Secret values (keys, passwords) never go into the plain `docker_config`: when a backend
 *   has any, the whole config.yml is delivered as a swarm secret instead (see CacheConfig), with each secret value read
 *   from its file by Terraform at deploy time. A GCS key file becomes its own swarm secret, referenced by `keyfile`.
 * - Local filesystem (not shared): inside the container, lost when a replica is rescheduled; one replica only.
 */
import { Construct } from 'constructs';
import { Annotations } from 'cdktf';
import { ServiceTaskSpecContainerSpecMounts } from '@cdktf/provider-docker/lib/service';
import { StorageKind } from '../config';
import { SecretSource } from './base/secret-source';
import { hashedSecret, SecretMount } from './base/hashed-secret';
import { check } from './base/validation';
import { NfsExport, NfsExportOptions } from './nfs-export';
import { NfsExportApply, NfsExportSshOptions } from './nfs-export-apply';

/** Options of NFS storage: the export (server, path, clients, export and mount options) and where it is mounted. */
export interface NfsStorageOptions extends NfsExportOptions {
  /**
   * Apply the export on the server over SSH at deploy (directory, owner, /etc/exports.d/<site>.exports, exportfs -ra),
   * and remove it on destroy.
   * @default not applied: export the line of output `<site>_nfs_export` on the server yourself
   */
  readonly applyOverSsh?: NfsExportSshOptions;
  /**
   * Where the volume is mounted in the container (the filesystem driver's rootdirectory).
   * @default "/var/lib/registry"
   */
  readonly rootDirectory?: string;
}

/** Options of the container-local filesystem. */
export interface LocalFilesystemOptions {
  /** Directory in the container that holds cached content. @default "/var/lib/registry" */
  readonly rootDirectory?: string;
}

/** Options of S3 (or an S3-compatible server). */
export interface S3StorageOptions {
  /** Bucket region, e.g. us-east-1 (any value for an S3-compatible server). */
  readonly region: string;
  /** Name of an existing bucket. */
  readonly bucket: string;
  /** Access key id. @default the default AWS credential chain (with secretKey unset) */
  readonly accessKey?: string;
  /** Secret access key. @default the default AWS credential chain (with accessKey unset) */
  readonly secretKey?: SecretSource;
  /** Endpoint of an S3-compatible server. @default AWS */
  readonly regionEndpoint?: string;
  /** Path-style addressing, for S3-compatible servers. @default false */
  readonly forcePathStyle?: boolean;
  /** Key prefix inside the bucket. @default "/" */
  readonly rootDirectory?: string;
}

/** Options of Azure Blob Storage. */
export interface AzureStorageOptions {
  /** Storage account name. */
  readonly accountName: string;
  /** Storage account key; kept out of the plain config. */
  readonly accountKey: SecretSource;
  /** Blob container name. */
  readonly container: string;
  /** Storage endpoint suffix. @default "core.windows.net" */
  readonly realm?: string;
  /** Blob service URL, for azurite or a private endpoint, e.g. http://10.0.0.5:10000/devstoreaccount1. @default https://<accountName>.blob.<realm> */
  readonly serviceUrl?: string;
  /** Blob name prefix. @default none */
  readonly rootDirectory?: string;
}

/** Options of Google Cloud Storage. */
export interface GcsStorageOptions {
  /** Name of an existing bucket. */
  readonly bucket: string;
  /** Service account JSON key; mounted as a swarm secret. @default the instance's default credentials */
  readonly keyFile?: SecretSource;
  /** Object name prefix. @default none */
  readonly rootDirectory?: string;
}

/** Options of Alibaba Cloud OSS. */
export interface OssStorageOptions {
  /** OSS AccessKey ID. */
  readonly accessKeyId: string;
  /** OSS AccessKey secret; kept out of the plain config. */
  readonly accessKeySecret: SecretSource;
  /** OSS region, e.g. oss-cn-beijing. */
  readonly region: string;
  /** Name of an existing bucket. */
  readonly bucket: string;
  /** OSS endpoint host. @default derived from region */
  readonly endpoint?: string;
  /** Object name prefix. @default none */
  readonly rootDirectory?: string;
}

/** Options of OpenStack Swift. */
export interface SwiftStorageOptions {
  /** Keystone or tempauth URL. */
  readonly authUrl: string;
  /** Swift user name. */
  readonly username: string;
  /** Swift password; kept out of the plain config. */
  readonly password: SecretSource;
  /** Container name. */
  readonly container: string;
  /** Tenant (project) name. @default none */
  readonly tenant?: string;
  /** Keystone v3 domain name. @default none */
  readonly domain?: string;
  /** Swift region name. @default none */
  readonly region?: string;
  /** Object name prefix (Swift reads prefix, not rootdirectory). @default none */
  readonly prefix?: string;
}

/** NFS mount details of a backend. */
export interface NfsMount {
  /** The export. */
  readonly export: NfsExport;
  /** Mount point in the container. */
  readonly target: string;
  /** How to apply the export on the server, when requested. */
  readonly applyOverSsh?: NfsExportSshOptions;
}

/** What a storage choice is made of; the static factories of StorageBackend fill it in. */
export interface StorageBackendProps {
  /** The config.yml driver. */
  readonly driver: StorageKind;
  /** What summaries call it: nfs, s3, filesystem (container-local), … */
  readonly label: string;
  /** Whether every replica sees the same content (required for more than one replica). */
  readonly shared: boolean;
  /** Driver options without secrets. */
  readonly options: Readonly<Record<string, string | boolean>>;
  /** Driver option → secret value, kept out of the plain config. @default none */
  readonly secretOptions?: Readonly<Record<string, SecretSource>>;
  /** GCS key file, mounted as a swarm secret. @default none */
  readonly keyFile?: SecretSource;
  /** NFS mount details. @default none (not NFS) */
  readonly nfsMount?: NfsMount;
}

/** A storage choice; build one with the static factories. */
export class StorageBackend {
  public static localFilesystem(options: LocalFilesystemOptions = {}): StorageBackend {
    return new StorageBackend({
      driver: 'filesystem',
      label: 'filesystem (container-local)',
      shared: false,
      options: { rootdirectory: options.rootDirectory ?? DEFAULT_ROOT },
    });
  }

  public static nfs(options: NfsStorageOptions): StorageBackend {
    const rootdirectory = options.rootDirectory ?? DEFAULT_ROOT;
    return new StorageBackend({
      driver: 'filesystem',
      label: 'nfs',
      shared: true,
      options: { rootdirectory },
      nfsMount: { export: new NfsExport(options), target: rootdirectory, applyOverSsh: options.applyOverSsh },
    });
  }

  public static s3(o: S3StorageOptions): StorageBackend {
    return new StorageBackend({
      driver: 's3',
      label: 's3',
      shared: true,
      options: defined({
        region: o.region,
        bucket: o.bucket,
        accesskey: o.accessKey,
        regionendpoint: o.regionEndpoint,
        forcepathstyle: o.forcePathStyle,
        rootdirectory: o.rootDirectory,
      }),
      secretOptions: o.secretKey ? { secretkey: o.secretKey } : {},
    });
  }

  public static azure(o: AzureStorageOptions): StorageBackend {
    return new StorageBackend({
      driver: 'azure',
      label: 'azure',
      shared: true,
      options: defined({
        accountname: o.accountName,
        container: o.container,
        realm: o.realm,
        serviceurl: o.serviceUrl,
        rootdirectory: o.rootDirectory,
      }),
      secretOptions: { accountkey: o.accountKey },
    });
  }

  public static gcs(o: GcsStorageOptions): StorageBackend {
    return new StorageBackend({
      driver: 'gcs',
      label: 'gcs',
      shared: true,
      options: defined({ bucket: o.bucket, rootdirectory: o.rootDirectory }),
      keyFile: o.keyFile,
    });
  }

  public static oss(o: OssStorageOptions): StorageBackend {
    return new StorageBackend({
      driver: 'oss',
      label: 'oss',
      shared: true,
      options: defined({
        accesskeyid: o.accessKeyId,
        region: o.region,
        bucket: o.bucket,
        endpoint: o.endpoint,
        rootdirectory: o.rootDirectory,
      }),
      secretOptions: { accesskeysecret: o.accessKeySecret },
    });
  }

  public static swift(o: SwiftStorageOptions): StorageBackend {
    return new StorageBackend({
      driver: 'swift',
      label: 'swift',
      shared: true,
      options: defined({
        authurl: o.authUrl,
        username: o.username,
        container: o.container,
        tenant: o.tenant,
        domain: o.domain,
        region: o.region,
        prefix: o.prefix,
      }),
      secretOptions: { password: o.password },
    });
  }

  /** The config.yml driver. */
  public readonly driver: StorageKind;
  /** What summaries call it: nfs, s3, filesystem (container-local), … */
  public readonly label: string;
  /** Whether every replica sees the same content (required for more than one replica). */
  public readonly shared: boolean;
  /** Driver options without secrets. */
  public readonly options: Readonly<Record<string, string | boolean>>;
  /** Driver option → secret value, kept out of the plain config. */
  public readonly secretOptions: Readonly<Record<string, SecretSource>>;
  /** GCS key file, mounted as a swarm secret. */
  public readonly keyFile?: SecretSource;
  /** NFS mount details. */
  public readonly nfsMount?: NfsMount;

  private constructor(props: StorageBackendProps) {
    this.driver = props.driver;
    this.label = props.label;
    this.shared = props.shared;
    this.options = props.options;
    this.secretOptions = props.secretOptions ?? {};
    this.keyFile = props.keyFile;
    this.nfsMount = props.nfsMount;
  }
}

const DEFAULT_ROOT = '/var/lib/registry';
const GCS_KEY_FILE = 'gcs-key.json';

export interface SharedStorageProps {
  /** The storage choice. */
  readonly backend: StorageBackend;
  /**
   * Prefix of the names of swarm objects this construct creates.
   * @default "dtr-cache"
   */
  readonly namePrefix?: string;
}

/** A secret value to splice into config.yml at deploy time, in place of `placeholder`. */
export interface ConfigSecretValue {
  /** The text in config.yml that the value replaces. */
  readonly placeholder: string;
  /** Where the value comes from. */
  readonly source: SecretSource;
}

export class SharedStorage extends Construct {
  /** The storage choice. */
  public readonly backend: StorageBackend;
  /** The `storage` section of config.yml; secret values appear as placeholders (see secretValues). */
  public readonly storageSection: Record<string, unknown>;
  /** Secret values of the storage section, spliced in by CacheConfig at deploy time. */
  public readonly secretValues: readonly ConfigSecretValue[];
  /** Mounts the service needs (the NFS volume). */
  public readonly mounts: readonly ServiceTaskSpecContainerSpecMounts[];
  /** Secrets the service needs (the GCS key file). */
  public readonly secrets: readonly SecretMount[];
  /** The export being applied over SSH, when requested. */
  public readonly nfsExportApply: NfsExportApply | undefined;

  constructor(scope: Construct, id: string, props: SharedStorageProps) {
    super(scope, id);
    const backend = props.backend;
    const prefix = props.namePrefix ?? 'dtr-cache';
    this.backend = backend;
    const secretValues = Object.entries(backend.secretOptions).map(([key, source]) => ({
      key,
      placeholder: `DTR_CACHE_SECRET_STORAGE_${backend.driver}_${key}`.toUpperCase(),
      source,
    }));
    this.secretValues = secretValues.map(({ placeholder, source }) => ({ placeholder, source }));
    const driverOptions: Record<string, unknown> = { ...backend.options };
    for (const { key, placeholder } of secretValues) driverOptions[key] = placeholder;
    const secrets: SecretMount[] = [];
    if (backend.keyFile) {
      const secret = hashedSecret(this, 'GcsKeyFile', { baseName: `${prefix}-${GCS_KEY_FILE}`, source: backend.keyFile });
      secrets.push({ secret, fileName: GCS_KEY_FILE });
      driverOptions.keyfile = `/run/secrets/${GCS_KEY_FILE}`;
    }
    this.secrets = secrets;
    this.storageSection = { [backend.driver]: driverOptions };
    const nfs = backend.nfsMount;
    this.mounts = nfs
      ? [
          {
            type: 'volume',
            source: `${prefix}-nfs-${nfs.export.hash}`,
            target: nfs.target,
            volumeOptions: {
              driverName: 'local',
              driverOptions: { type: 'nfs', o: nfs.export.volumeOptions, device: `:${nfs.export.path}` },
              labels: [{ label: 'dtr.cache.managed-by', value: 'dtr-cache-site' }],
            },
          },
        ]
      : [];
    if (nfs) {
      this.node.addValidation(check(() => nfs.export.problems()));
      for (const warning of nfs.export.warnings()) Annotations.of(this).addWarning(warning);
    }
    this.nfsExportApply =
      nfs?.applyOverSsh && new NfsExportApply(this, 'NfsExport', { export: nfs.export, name: prefix, ssh: nfs.applyOverSsh });
  }
}

function defined<T extends Record<string, string | boolean | undefined>>(o: T): Record<string, string | boolean> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Record<string, string | boolean>;
}
