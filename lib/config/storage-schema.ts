/**
 * The `storage` section of config.yml: exactly one driver, configured with the same keys as the registry's
 * storage drivers (distribution v2.7, the DTR-era registry, plus `forcepathstyle` from v3), so an operator
 * can copy a working registry `storage` block into the cache unchanged.
 */
import { z } from 'zod';
import { bool, optionalBool, optionalSize, str, registryOnly } from './fields';

export const filesystemSchema = z
  .object({
    rootdirectory: str('set it to the directory that holds cached content, e.g. /var/lib/registry').prefault('/var/lib/registry'),
    maxthreads: registryOnly,
  })
  .strict();

export const s3Schema = z
  .object({
    region: str('set it to the bucket region, e.g. us-east-1 (any value for an S3-compatible server)'),
    bucket: str('set it to the name of an existing bucket'),
    accesskey: str(
      'set it to the access key id, or remove both accesskey and secretkey to use the default AWS credential chain',
    ).optional(),
    secretkey: str(
      'set it to the secret access key, or remove both accesskey and secretkey to use the default AWS credential chain',
    ).optional(),
    sessiontoken: str('set it to an STS session token, or remove it').optional(),
    regionendpoint: str('set it to the endpoint URL of an S3-compatible server, e.g. https://minio.example:9000').optional(),
    forcepathstyle: optionalBool('forcepathstyle'),
    secure: optionalBool('secure'),
    skipverify: optionalBool('skipverify'),
    encrypt: optionalBool('encrypt'),
    keyid: str('set it to the KMS key id used when encrypt is true').optional(),
    v4auth: optionalBool('v4auth'),
    chunksize: optionalSize('chunksize', 5 * 1024 * 1024),
    multipartcopychunksize: optionalSize('multipartcopychunksize', 5 * 1024 * 1024),
    multipartcopymaxconcurrency: z.number().int().positive().optional(),
    multipartcopythresholdsize: optionalSize('multipartcopythresholdsize', 0),
    rootdirectory: str('set it to a key prefix inside the bucket, e.g. /dtr-cache').optional(),
    storageclass: z.enum(['STANDARD', 'REDUCED_REDUNDANCY', 'STANDARD_IA', 'INTELLIGENT_TIERING', 'NONE']).optional(),
    objectacl: str('set it to a canned ACL such as private').optional(),
    useragent: str('set it to a User-Agent string').optional(),
    usedualstack: optionalBool('usedualstack'),
    accelerate: optionalBool('accelerate'),
  })
  .strict()
  .refine((s) => (s.accesskey === undefined) === (s.secretkey === undefined), {
    message: 'accesskey and secretkey go together; set both, or remove both to use the default AWS credential chain',
    path: ['accesskey'],
  });

export const azureSchema = z
  .object({
    accountname: str('set it to the storage account name'),
    accountkey: str('set it to the storage account key (base64)'),
    container: str('set it to the blob container name, e.g. dtr-cache'),
    realm: str('set it to the storage endpoint suffix, e.g. core.windows.net').prefault('core.windows.net'),
    serviceurl: str('set it to the blob service URL, e.g. http://127.0.0.1:10000/devstoreaccount1 for azurite').optional(),
    rootdirectory: str('set it to a blob name prefix, e.g. /dtr-cache').optional(),
  })
  .strict();

export const gcsSchema = z
  .object({
    bucket: str('set it to the name of an existing bucket'),
    keyfile: str('set it to the path of a service account JSON key file').optional(),
    credentials: z.record(z.string(), z.unknown()).optional(),
    rootdirectory: str('set it to an object name prefix, e.g. /dtr-cache').optional(),
    chunksize: optionalSize('chunksize', 256 * 1024).refine((n) => n === undefined || n % (256 * 1024) === 0, {
      message: 'must be a multiple of 256 KiB (262144 bytes)',
    }),
    maxconcurrency: z.number().int().positive().optional(),
    endpoint: str('set it to the JSON API endpoint of a GCS-compatible server, or remove it').optional(),
  })
  .strict()
  .refine((g) => !(g.keyfile && g.credentials), {
    message: 'keyfile and credentials are alternatives; keep one of them',
    path: ['keyfile'],
  });

export const ossSchema = z
  .object({
    accesskeyid: str('set it to the OSS AccessKey ID'),
    accesskeysecret: str('set it to the OSS AccessKey secret'),
    region: str('set it to the OSS region, e.g. oss-cn-beijing'),
    bucket: str('set it to the name of an existing bucket'),
    endpoint: str('set it to the OSS endpoint host, or remove it to derive it from region').optional(),
    internal: bool('internal').optional(),
    encrypt: bool('encrypt').optional(),
    secure: bool('secure').optional(),
    chunksize: optionalSize('chunksize', 5 * 1024 * 1024),
    rootdirectory: str('set it to an object name prefix, e.g. /dtr-cache').optional(),
  })
  .strict();

export const swiftSchema = z
  .object({
    authurl: str('set it to the Keystone or tempauth URL, e.g. https://keystone.example:5000/v3'),
    username: str('set it to the Swift user name'),
    password: str('set it to the Swift password'),
    container: str('set it to the container name, e.g. dtr-cache'),
    region: str('set it to the Swift region name').optional(),
    tenant: str('set it to the tenant (project) name').optional(),
    tenantid: str('set it to the tenant (project) id').optional(),
    domain: str('set it to the Keystone v3 domain name').optional(),
    domainid: str('set it to the Keystone v3 domain id').optional(),
    tenantdomain: str('set it to the tenant domain name').optional(),
    tenantdomainid: str('set it to the tenant domain id').optional(),
    trustid: str('set it to a Keystone trust id').optional(),
    authversion: z.union([z.literal(1), z.literal(2), z.literal(3)]).optional(),
    prefix: str('set it to an object name prefix, e.g. /dtr-cache (swift reads prefix, not rootdirectory)').optional(),
    endpointtype: z.enum(['public', 'internal', 'admin']).optional(),
    insecureskipverify: optionalBool('insecureskipverify'),
    chunksize: optionalSize('chunksize', 1),
    secretkey: registryOnly,
    accesskey: registryOnly,
    tempurlcontainerkey: registryOnly,
    tempurlmethods: registryOnly,
  })
  .strict();

/** Driver name → schema of its options. */
export const STORAGE_DRIVERS = {
  filesystem: filesystemSchema,
  s3: s3Schema,
  azure: azureSchema,
  gcs: gcsSchema,
  oss: ossSchema,
  swift: swiftSchema,
} as const;

export type StorageKind = keyof typeof STORAGE_DRIVERS;
export const STORAGE_KINDS = Object.keys(STORAGE_DRIVERS) as StorageKind[];

export type FilesystemOptions = z.output<typeof filesystemSchema>;
export type S3Options = z.output<typeof s3Schema>;
export type AzureOptions = z.output<typeof azureSchema>;
export type GcsOptions = z.output<typeof gcsSchema>;
export type OssOptions = z.output<typeof ossSchema>;
export type SwiftOptions = z.output<typeof swiftSchema>;

/** The one storage driver a config selects, with its validated options. */
export type StorageSelection =
  | { kind: 'filesystem'; options: FilesystemOptions }
  | { kind: 's3'; options: S3Options }
  | { kind: 'azure'; options: AzureOptions }
  | { kind: 'gcs'; options: GcsOptions }
  | { kind: 'oss'; options: OssOptions }
  | { kind: 'swift'; options: SwiftOptions };

export const storageSchema = z
  .object(
    {
      filesystem: filesystemSchema.optional(),
      s3: s3Schema.optional(),
      azure: azureSchema.optional(),
      gcs: gcsSchema.optional(),
      oss: ossSchema.optional(),
      swift: swiftSchema.optional(),
      inmemory: registryOnly,
      delete: z
        .object({ enabled: bool('enabled').prefault(false) })
        .strict()
        .optional(),
      redirect: z
        .object({ disable: bool('disable').prefault(true) })
        .strict()
        .optional(),
      cache: registryOnly,
      maintenance: registryOnly,
    },
    {
      error: (i) =>
        i.input === undefined
          ? `is required; add storage: { filesystem: { rootdirectory: /var/lib/registry } } or another driver`
          : 'must be a mapping with one driver',
    },
  )
  .strict()
  .superRefine((s, ctx) => {
    const chosen = STORAGE_KINDS.filter((k) => s[k] !== undefined);
    if (chosen.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message:
          chosen.length === 0
            ? `choose one storage driver: add one of ${STORAGE_KINDS.join(', ')} under storage`
            : `exactly one storage driver is allowed, found ${chosen.join(' and ')}; keep one`,
      });
    }
  });

/** The selected driver of a validated `storage` section. */
export function selectStorage(storage: z.output<typeof storageSchema>): StorageSelection {
  const kind = STORAGE_KINDS.find((k) => storage[k] !== undefined) as StorageKind;
  return { kind, options: storage[kind] } as StorageSelection;
}
