/**
 * One DTR cache per datacenter: labelled nodes, storage, TLS secrets, config.yml and the service, plus outputs that
 * `dtr-cache plan` summarizes. Usually one per TerraformStack, since each datacenter is its own swarm.
 */
import { Construct } from 'constructs';
import { Annotations, App, Fn, TerraformDataSource, TerraformOutput, TerraformResource, TerraformStack, Token } from 'cdktf';
import { DockerProvider } from '@cdktf/provider-docker/lib/provider';
import { z } from 'zod';
import { SwarmConnection } from './base/swarm-connection';
import { SecretSource } from './base/secret-source';
import { PortableLocalState } from './base/deploy-path';
import { setAccessLabel } from './base/labels';
import { check, propsValidation } from './base/validation';
import { CacheNodes } from './cache-nodes';
import { SharedStorage, StorageBackend } from './shared-storage';
import { CacheTls } from './cache-tls';
import { CacheConfig, CONFIG_PATHS, LogLevel } from './cache-config';
import { CacheImage, CacheImageProps } from './cache-image';
import { CacheService, PublishMode } from './cache-service';
import { LoadBalancer } from './load-balancer';
import { LoadBalancerService } from './load-balancer-service';
import { DtrRegistration } from './dtr-registration';
import { SiteSummary, siteSummaryText, SUMMARY_OUTPUT } from './synth-summary';
import { StoragePreflight } from './storage-preflight';
import { managedLabels } from './base/labels';
import { Network } from '@cdktf/provider-docker/lib/network';

/** Registering the site's cache with DTR on deploy. */
export interface SiteRegistrationOptions {
  /** The cache's name in DTR, e.g. region-asia. @default "dtr-cache-<datacenter>" */
  readonly name?: string;
  /** DTR base URL. @default the first upstream */
  readonly dtr?: string;
  /** PEM CA file of DTR on the deploy machine. @default the system trust store */
  readonly caFile?: string;
  /** Environment variable holding a DTR admin's user name. @default "DTR_USERNAME" */
  readonly usernameEnv?: string;
  /** Environment variable holding the password or access token. @default "DTR_PASSWORD" */
  readonly passwordEnv?: string;
  /** How the deploy machine runs the CLI. @default this package's own CLI, by its path (DtrRegistrationProps.cli) */
  readonly cli?: string;
}

/** TLS material of a site. */
export interface SiteTlsOptions {
  /** The cache certificate, PEM, intermediates appended. */
  readonly certificate: SecretSource;
  /** Its unencrypted PEM key. */
  readonly key: SecretSource;
  /** The DTR's CA, when not publicly trusted. @default none */
  readonly dtrCa?: SecretSource;
  /** Generated test certificates: marked TEST ONLY in secret names, outputs and summaries. @default false */
  readonly testOnly?: boolean;
}

export interface DtrCacheSiteProps {
  /** Datacenter name, lower case, used in names (dtr-cache-<datacenter>) and summaries, e.g. "asia". */
  readonly datacenter: string;
  /** The DTR (or next cache) URLs this cache fetches from, https://host[:port]. */
  readonly upstreams: string[];
  /** Host name clients pull from, e.g. cache.asia.example.com; the certificate must cover it. */
  readonly host: string;
  /** Swarm node IDs or hostnames to label and run replicas on. */
  readonly nodes: string[];
  /** TLS certificate, key and DTR CA. */
  readonly tls: SiteTlsOptions;
  /** The image to run. */
  readonly image: CacheImageProps;
  /** Where content is kept. @default StorageBackend.localFilesystem() (one replica only) */
  readonly storage?: StorageBackend;
  /** Number of replicas, one per node. @default the number of nodes with shared storage, else 1 */
  readonly replicas?: number;
  /** How the deploy reaches the swarm, for the provider and for local-exec. @default SwarmConnection.localSocket() */
  readonly connection?: SwarmConnection;
  /**
   * The docker provider every docker_* resource of the site uses; it must reach the same swarm as `connection`.
   * @default the stack's default docker provider when it points at the connection's host (an unset host counts as
   * the local socket); else a new one from `connection`: the stack's default when it has none, otherwise one aliased
   * by the site's ID (two sites on two swarms in one stack)
   */
  readonly provider?: DockerProvider;
  /** The published port. @default 443 */
  readonly port?: number;
  /**
   * How clients reach the replicas on `port`: the routing mesh, or host-mode publishing behind an external HAProxy or
   * nginx whose configuration the site renders (output `<id>_load_balancer_config`).
   * @default LoadBalancer.routingMesh()
   */
  readonly loadBalancer?: LoadBalancer;
  /** Run replicas only on worker nodes. @default true */
  readonly workersOnly?: boolean;
  /**
   * Cache server processes in each replica (`dtr-cache serve --workers`), all on one port, sharing the replica's store.
   * @default one per CPU the replica's container may use (the image's `--workers auto`)
   */
  readonly workerProcesses?: number;
  /** The node label key set to "true" on the nodes; sites sharing a swarm's nodes need their own. @default "dtr.cache" */
  readonly nodeLabel?: string;
  /** Remove content not pulled for this long (Go duration, e.g. "24h"). @default none: kept until evicted by size */
  readonly blobTtl?: string;
  /** log.level of the server. @default LogLevel.INFO */
  readonly logLevel?: LogLevel;
  /** The time certificate expiry is checked against. @default the time of synth */
  readonly now?: Date;
  /**
   * How long `cdktf deploy` waits for the cache service (and the load-balancer service) to converge, every replica
   * running and healthy, before it fails (Go duration, e.g. "10m").
   * @default 2 minutes per replica plus 1 (the load-balancer service: 3m)
   */
  readonly convergeTimeout?: string;
  /**
   * The MKE (UCP) collection of the site's services, secrets and networks: their `com.docker.ucp.access.label`,
   * e.g. "/Shared/dtr-cache".
   * @default none: MKE puts them in the deploying user's private collection
   */
  readonly accessLabel?: string;
  /** Register the cache with DTR on deploy and remove it on destroy (dtr-cache register). @default not registered */
  readonly registration?: SiteRegistrationOptions;
  /**
   * Before the service rolls, check from every node that the NFS volume mounts and that each node reads what another
   * wrote (StoragePreflight); a failing node fails the deploy. Only NFS storage has a volume to check.
   * @default true with NFS storage
   */
  readonly storagePreflight?: boolean;
}

/** Whether `value` is (or holds) a Terraform expression: known at apply only. */
const isToken = (value: unknown): boolean => Token.isUnresolved(value);

const httpsUrl = z.string().refine(
  (u) => {
    // An expression, or the element of a list expression (reported on the list).
    if (isToken(u) || u.startsWith('#{TfToken[')) return true;
    try {
      return new URL(u).protocol === 'https:';
    } catch {
      return false;
    }
  },
  { message: 'must be an https:// URL, e.g. https://dtr.us.example.com; the cache forwards users’ credentials to it' },
);

const propsSchema = z.object({
  datacenter: z.string().regex(/^[a-z0-9][a-z0-9-]{0,15}$/, {
    // Swarm object names are at most 64 characters: dtr-cache-<datacenter>-test-only-cache.cert.pem-<hash> must fit.
    message: 'must be 1 to 16 lower-case letters, digits and dashes, e.g. asia',
  }),
  upstreams: z
    .array(httpsUrl)
    .min(1, { message: 'list the DTR URL, e.g. ["https://dtr.us.example.com"]' })
    .refine((u) => !isToken(u), {
      message:
        'list the URLs (each may be a Terraform variable, e.g. [dtrUrl.stringValue]); a whole list variable cannot be written into config.yml',
    }),
  host: z.string().refine((h) => isToken(h) || /^[a-zA-Z0-9.-]+$/.test(h), {
    message: 'must be a host name without scheme or port, e.g. cache.asia.example.com',
  }),
});

export class DtrCacheSite extends Construct {
  /** The datacenter name. */
  public readonly datacenter: string;
  /** https://host[:port]: what users pull from. */
  public readonly cacheUrl: string;
  /** The labelled swarm nodes. */
  public readonly nodes: CacheNodes;
  /** Where content is kept. */
  public readonly storage: SharedStorage;
  /** The TLS secrets. */
  public readonly tls: CacheTls;
  /** config.yml as a swarm config (or secret). */
  public readonly config: CacheConfig;
  /** The image the service runs. */
  public readonly image: CacheImage;
  /** The swarm service. */
  public readonly service: CacheService;
  /** How provider and local-exec reach the swarm. */
  public readonly connection: SwarmConnection;
  /** The docker provider of the site's resources. */
  public readonly provider: DockerProvider;
  /** The load-balancer service, with LoadBalancer.service(). */
  public readonly loadBalancerService: LoadBalancerService | undefined;
  /** The DTR registration, when requested. */
  public readonly registration: DtrRegistration | undefined;
  /** The storage preflight, with NFS storage. */
  public readonly storagePreflight: StoragePreflight | undefined;
  /**
   * The overlay network the replicas share, with shared storage: a cold blob crosses the WAN once per site because
   * each replica streams from the one fetching it, over this network (the load-balancer service's, when there is one).
   */
  public readonly replicaNetwork: Network | undefined;

  constructor(scope: Construct, id: string, props: DtrCacheSiteProps) {
    super(scope, id);
    this.node.addValidation(propsValidation('DtrCacheSite', propsSchema, props));
    // Props the site itself finds wrong: the constructs it feeds them to do not report them a second time.
    const invalid = new Set(propsSchema.safeParse(props).error?.issues.map((i) => String(i.path[0])) ?? []);
    const prefix = `dtr-cache-${props.datacenter}`;
    const backend = props.storage ?? StorageBackend.localFilesystem();
    const nodesAreToken = isToken(props.nodes);
    const replicas = props.replicas ?? (backend.shared && !nodesAreToken ? Math.max(1, props.nodes.length) : 1);
    const port = props.port ?? 443;
    const loadBalancer = props.loadBalancer ?? LoadBalancer.routingMesh();
    const publishMode = loadBalancer.publishMode;
    const balanced = { name: prefix, host: props.host, port, nodes: nodesAreToken ? [] : props.nodes };
    this.datacenter = props.datacenter;
    this.cacheUrl = `https://${props.host}${port === 443 ? '' : `:${port}`}`;
    this.connection = props.connection ?? SwarmConnection.localSocket();
    this.node.addValidation(check(() => replicaProblems(props, backend, replicas)));
    this.node.addValidation(check(() => tokenProblems(props, loadBalancer)));
    const atApply = applyTimeChecks(props);
    if (atApply.length) {
      Annotations.of(this).addInfo(
        `DtrCacheSite: ${atApply.join('; ')}: Terraform expressions, known at apply only; the rest was checked at synth`,
      );
    }
    this.node.addValidation(check(() => loadBalancer.problems(balanced)));

    const outputPrefix = logicalName(id);
    PortableLocalState.addTo(this);
    if (props.accessLabel !== undefined) setAccessLabel(this, props.accessLabel);
    this.provider = props.provider ?? siteProvider(this, this.connection, outputPrefix);
    this.node.addValidation(check(() => providerProblems(this)));
    this.node.addValidation(check(() => outputPrefixProblems(this, outputPrefix)));
    this.nodes = new CacheNodes(this, 'Nodes', { nodes: props.nodes, connection: this.connection, labelKey: props.nodeLabel });
    this.storage = new SharedStorage(this, 'Storage', { backend, namePrefix: prefix });
    const testOnly = props.tls.testOnly ?? false;
    this.tls = new CacheTls(this, 'Tls', {
      certificate: props.tls.certificate,
      key: props.tls.key,
      dtrCa: props.tls.dtrCa,
      host: isToken(props.host) || invalid.has('host') ? undefined : props.host,
      namePrefix: testOnly ? `${prefix}-test-only` : prefix,
      testOnly,
      now: props.now,
    });
    this.config = this.cacheConfig(props, prefix, invalid);
    this.image = new CacheImage(this, 'Image', props.image);
    const lbOptions = loadBalancer.serviceOptions;
    this.loadBalancerService = lbOptions
      ? new LoadBalancerService(this, 'LoadBalancer', {
          ...lbOptions,
          namePrefix: prefix,
          cacheService: prefix,
          host: props.host,
          port,
          containerPort: 443,
          cacheReplicas: replicas,
          convergeTimeout: props.convergeTimeout,
        })
      : undefined;
    this.replicaNetwork =
      this.loadBalancerService?.network ??
      (backend.shared
        ? new Network(this, 'ReplicaNetwork', { name: `${prefix}-replicas`, driver: 'overlay', labels: managedLabels(this) })
        : undefined);
    const volume = this.storage.mounts[0];
    this.storagePreflight =
      volume && (props.storagePreflight ?? true)
        ? new StoragePreflight(this, 'StoragePreflight', {
            nodes: props.nodes,
            mount: volume,
            image: this.image.imageRef,
            namePrefix: prefix,
            connection: this.connection,
            dependsOn: this.storage.nfsExportApply ? [this.storage.nfsExportApply.resource] : undefined,
          })
        : undefined;
    this.service = new CacheService(this, 'Service', {
      name: prefix,
      image: this.image.imageRef,
      config: this.config.mount,
      secrets: [...this.tls.secrets, ...this.storage.secrets],
      mounts: [...this.storage.mounts],
      // A bad count is reported once, by the site.
      replicas: Number.isInteger(replicas) && replicas >= 1 ? replicas : 1,
      placementConstraints: [this.nodes.placementConstraint],
      workersOnly: props.workersOnly,
      workerProcesses: props.workerProcesses,
      port,
      containerPort: 443,
      publishMode,
      nodeCount: props.nodes.length,
      dependsOn: [this.nodes.labelStep, ...(this.storagePreflight?.resources ?? [])],
      // With a load-balancer service, replicas are reached on its overlay network only.
      networks: this.replicaNetwork ? [this.replicaNetwork.id] : undefined,
      // Derived at apply from the TLS key, which only the deployer holds (config.yml's default is a hash of the site's
      // name and host, which anyone can compute); a rotated key gives a new one.
      httpSecret: Fn.substr(Fn.sha256(Fn.join('\n', ['dtr-cache http.secret', prefix, props.tls.key.plain(this)])), 0, 32),
      publish: this.loadBalancerService === undefined,
      convergeTimeout: props.convergeTimeout,
    });

    const reg = props.registration;
    this.registration = reg
      ? new DtrRegistration(this, 'Registration', {
          ...reg,
          dtr: reg.dtr ?? props.upstreams[0],
          name: reg.name ?? prefix,
          cacheUrl: this.cacheUrl,
          service: this.service.service,
        })
      : undefined;

    const lbConfig = this.loadBalancerService
      ? { kind: 'haproxy', fileName: 'haproxy.cfg (swarm config of the load-balancer service)', text: this.loadBalancerService.text }
      : nodesAreToken
        ? undefined
        : loadBalancer.render(balanced);
    this.addOutputs(outputPrefix, this.summary(props, replicas, port, publishMode), lbConfig);
    this.nameProvider(props.provider !== undefined);
    for (const warning of siteWarnings(this, props, port, publishMode)) Annotations.of(this).addWarning(warning);
  }

  /** The summary `dtr-cache plan` reads (see synth-summary.ts). */
  private summary(props: DtrCacheSiteProps, replicas: number, port: number, publishMode: PublishMode): SiteSummary {
    const cert = this.tls.certificateInfo;
    return {
      datacenter: props.datacenter,
      cacheUrl: this.cacheUrl,
      upstreams: props.upstreams,
      replicas,
      // A node list expression as the label step's space-separated copy (an expression without quotes, which the
      // JSON text could not hold).
      nodes: isToken(props.nodes) ? [this.nodes.labelStep.getStringAttribute('output.nodes')] : props.nodes,
      storage: this.storage.backend.label,
      nfsExport: this.storage.backend.nfsMount?.export.line ?? null,
      port,
      publishMode,
      image: this.image.displayName,
      swarm: this.connection.describe(),
      certificate: cert ? { subject: cert.subject, validTo: cert.validTo, selfSigned: cert.selfSigned } : null,
      testOnly: this.tls.testOnly,
    };
  }

  /** config.yml of the site; props the site reports itself (`invalid`) are not reported again by CacheConfig. */
  private cacheConfig(props: DtrCacheSiteProps, prefix: string, invalid: ReadonlySet<string>): CacheConfig {
    return new CacheConfig(this, 'Config', {
      upstreams: props.upstreams,
      host: this.cacheUrl,
      containerPort: 443,
      storage: this.storage.storageSection,
      secretValues: [...this.storage.secretValues],
      tls: { certificate: this.tls.certificatePath, key: this.tls.keyPath },
      cas: this.tls.dtrCaPath ? [this.tls.dtrCaPath] : [],
      blobTtl: props.blobTtl,
      logLevel: props.logLevel,
      namePrefix: prefix,
      propNames: {
        [CONFIG_PATHS.upstreams]: invalid.has('upstreams') ? undefined : 'DtrCacheSite: upstreams',
        [CONFIG_PATHS.host]: invalid.has('host') ? undefined : 'DtrCacheSite: host',
        [CONFIG_PATHS.blobTtl]: 'DtrCacheSite: blobTtl',
        [CONFIG_PATHS.logLevel]: 'DtrCacheSite: logLevel',
      },
    });
  }

  /** Names the site's provider on its docker resources and data sources where needed, and keeps MKE's labels out of every plan. */
  private nameProvider(providerGiven: boolean): void {
    const dockerElements = this.node
      .findAll()
      .filter(
        (c): c is TerraformResource | TerraformDataSource =>
          (c instanceof TerraformResource || c instanceof TerraformDataSource) && c.terraformResourceType.startsWith('docker_'),
      );
    const dockerResources = dockerElements.filter((c): c is TerraformResource => c instanceof TerraformResource);
    // An aliased or given provider is named on every docker resource and data source (the image's digest is read with
    // the registry_auth of the site's provider); the stack's default provider needs no naming.
    if (this.provider.alias !== undefined || providerGiven) {
      for (const r of dockerElements) r.provider = this.provider;
    }
    // MKE stamps labels of its own (owner, collection) on services, secrets and networks; without ignore_changes every
    // plan would undo them (and replace the secrets, whose labels force a new one). A client bundle means MKE (UCP).
    if (this.connection.kind === 'client-bundle') {
      for (const r of dockerResources.filter((d) => MKE_LABELLED.includes(d.terraformResourceType))) {
        r.lifecycle = { ...r.lifecycle, ignoreChanges: [...((r.lifecycle?.ignoreChanges as string[] | undefined) ?? []), 'labels'] };
      }
    }
  }

  /** The site's Terraform outputs, named `<outputPrefix>_<name>`; `summary` is what `dtr-cache plan` reads. */
  private addOutputs(
    outputPrefix: string,
    summary: SiteSummary,
    lbConfig: { kind: string; fileName: string; text: string } | undefined,
  ): void {
    const outputs: Record<string, { value: string | number | boolean | string[]; description: string }> = {
      cache_url: { value: this.cacheUrl, description: 'URL users pull from' },
      image: { value: this.image.imageRef, description: 'image the service runs (pinned to its digest unless resolveDigest is false)' },
      replicas: { value: summary.replicas, description: 'number of cache replicas' },
      storage_kind: { value: summary.storage, description: 'where cached content is kept' },
      service_name: { value: this.service.service.name, description: 'swarm service of the cache (docker service ps <name>)' },
      service_id: { value: this.service.service.id, description: 'swarm service ID of the cache' },
      secret_names: {
        value: [...this.tls.secrets, ...this.storage.secrets].map((m) => m.secret.name),
        description: 'swarm secrets the service mounts (TLS material, storage key file)',
      },
      config_name: {
        value: this.config.mount.name,
        description: `swarm ${this.config.mount.kind} holding config.yml (a secret when it carries storage credentials)`,
      },
      node_label: { value: `${this.nodes.labelKey}=true`, description: 'node label that places the replicas' },
      [SUMMARY_OUTPUT]: { value: siteSummaryText(summary), description: 'site summary read by dtr-cache plan' },
    };
    const nfsExport = this.storage.backend.nfsMount?.export;
    if (nfsExport) {
      outputs.nfs_export = {
        value: nfsExport.line,
        description: `/etc/exports line on ${nfsExport.server}${this.storage.nfsExportApply ? ` (applied over SSH as ${this.storage.nfsExportApply.file})` : ''}`,
      };
    }
    if (lbConfig) {
      outputs.load_balancer_config = {
        value: lbConfig.text,
        description: `${lbConfig.kind} configuration (${lbConfig.fileName}), TCP passthrough`,
      };
    }
    for (const [name, { value, description }] of Object.entries(outputs)) {
      const output = new TerraformOutput(this, `Output-${name}`, {
        value,
        description: summary.testOnly && name === 'cache_url' ? `${description} (TEST ONLY certificates)` : description,
      });
      output.overrideLogicalId(`${outputPrefix}_${name}`);
    }
  }
}

/** Resource types MKE labels. */
const MKE_LABELLED = ['docker_service', 'docker_secret', 'docker_network'];

/** Settings that deploy but are probably not what production wants. */
function siteWarnings(site: DtrCacheSite, props: DtrCacheSiteProps, port: number, publishMode: PublishMode): string[] {
  const warnings: string[] = [];
  const image = props.image.reference ?? props.image.build?.name ?? '';
  if (!isToken(image) && /^(127\.[0-9.]+|localhost|\[::1\])(:[0-9]+)?\//.test(image)) {
    warnings.push(
      `DtrCacheSite: image: ${image} is on a loopback registry, which each node resolves to itself: every node must run that registry; use a registry all nodes reach, e.g. registry.example.com/infra/dtr-cache`,
    );
  }
  if (site.connection.kind === 'client-bundle' && port === 443 && publishMode === PublishMode.INGRESS) {
    warnings.push(
      'DtrCacheSite: port: 443 through the routing mesh is taken on every node, and MKE/UCP managers serve their API and UI on 443; pick another port, or host mode (LoadBalancer.external) on workers only',
    );
  }
  const sharing = App.of(site)
    .node.findAll()
    .filter(
      (c): c is DtrCacheSite =>
        c instanceof DtrCacheSite && c !== site && c.nodes.labelKey === site.nodes.labelKey && c.connection.host === site.connection.host,
    );
  for (const other of sharing) {
    warnings.push(
      `DtrCacheSite: nodeLabel: ${site.nodes.labelKey} is also the label of ${other.node.path} on the same swarm (${site.connection.host}); each site removes its label from the nodes it does not list, so give each site its own nodeLabel`,
    );
  }
  return warnings;
}

/** The host a docker provider block reaches: its own, or the provider's default, the local socket. */
function providerHost(provider: DockerProvider): string {
  return provider.host ?? 'unix:///var/run/docker.sock';
}

/** The stack's docker providers without an alias: Terraform allows one. */
function defaultProviders(scope: Construct): DockerProvider[] {
  return TerraformStack.of(scope)
    .node.findAll()
    .filter((c): c is DockerProvider => c instanceof DockerProvider && c.alias === undefined);
}

/** The stack's default provider when it reaches `connection`'s swarm; else a new one, aliased when a default exists. */
function siteProvider(site: Construct, connection: SwarmConnection, alias: string): DockerProvider {
  const existing = defaultProviders(site)[0];
  if (existing && providerHost(existing) === connection.host) return existing;
  return new DockerProvider(site, 'Provider', { ...connection.providerConfig(site), ...(existing ? { alias } : {}) });
}

function providerProblems(site: DtrCacheSite): string[] {
  const problems: string[] = [];
  const defaults = defaultProviders(site);
  if (defaults.length > 1) {
    problems.push(
      `DtrCacheSite: provider: the stack has ${defaults.length} docker providers without an alias (${defaults.map((p) => p.node.path).join(', ')}); Terraform allows one: give the others an alias, or pass one as provider`,
    );
  }
  const host = site.provider.host;
  if (host !== undefined && !Token.isUnresolved(host) && host !== site.connection.host) {
    problems.push(
      `DtrCacheSite: provider: reaches ${host} but connection reaches ${site.connection.host}; the labels would be set on one swarm and the service created on another: give a provider from connection.providerConfig()`,
    );
  }
  return problems;
}

/** `id` as a Terraform output name prefix: letters, digits, underscores and dashes, not starting with a digit. */
function logicalName(id: string): string {
  const name = id.replace(/[^A-Za-z0-9_-]/g, '_');
  return /^[0-9]/.test(name) ? `_${name}` : name;
}

/** Another site of the stack whose outputs would carry the same names. */
function outputPrefixProblems(site: DtrCacheSite, prefix: string): string[] {
  const clashes = TerraformStack.of(site)
    .node.findAll()
    .filter((c): c is DtrCacheSite => c instanceof DtrCacheSite && c !== site && logicalName(c.node.id) === prefix);
  return clashes.map(
    (c) =>
      `DtrCacheSite: id: ${site.node.path} and ${c.node.path} both name their outputs ${prefix}_*; give the sites IDs that differ in letters, digits, dashes or underscores`,
  );
}

/** What is left to apply time, in words, for the props given as Terraform expressions. */
function applyTimeChecks(props: DtrCacheSiteProps): string[] {
  return [
    ...(isToken(props.host) ? ['host (its format, and whether the certificate covers it)'] : []),
    ...props.upstreams.flatMap((u, i) => (isToken(u) ? [`upstreams[${i}] (an https:// URL, checked by the cache when it starts)`] : [])),
    ...(isToken(props.nodes) ? ['nodes (their names, and that there are as many as replicas)'] : []),
    ...(isToken(props.image.reference) ? ['image.reference (its registry host)'] : []),
  ];
}

/** Props that a Terraform expression leaves undecidable where synth needs them. */
function tokenProblems(props: DtrCacheSiteProps, loadBalancer: LoadBalancer): string[] {
  if (!isToken(props.nodes)) return [];
  return [
    ...(props.replicas === undefined
      ? ['DtrCacheSite: replicas: nodes is a Terraform expression, so how many there are is known at apply only; set replicas']
      : []),
    ...(loadBalancer.mode === 'external'
      ? [
          'DtrCacheSite: loadBalancer: the external load balancer configuration lists the nodes, which are a Terraform expression here; list the nodes, or use LoadBalancer.routingMesh() or LoadBalancer.service()',
        ]
      : []),
  ];
}

function replicaProblems(props: DtrCacheSiteProps, backend: StorageBackend, replicas: number): string[] {
  const problems: string[] = [];
  if (replicas > 1 && !backend.shared) {
    problems.push(
      props.storage === undefined
        ? `DtrCacheSite: replicas: ${replicas} replicas need shared storage, and none is set; set storage to StorageBackend.nfs({ server }) or an object store (s3, azure, gcs, oss, swift), or set replicas: 1`
        : `DtrCacheSite: storage: the local filesystem is per container, so ${replicas} replicas would each cache their own copy and lose it on reschedule; use StorageBackend.nfs({ server }) or an object store, or set replicas: 1`,
    );
  }
  // An empty list is CacheNodes' to report.
  if (!isToken(props.nodes) && props.nodes.length > 0 && replicas > props.nodes.length) {
    problems.push(
      `DtrCacheSite: replicas: ${replicas} replicas but ${props.nodes.length} node(s); the service runs one replica per node, so list ${replicas} nodes or lower replicas`,
    );
  }
  if (!Number.isInteger(replicas) || replicas < 1) problems.push(`DtrCacheSite: replicas: must be a whole number of at least 1`);
  return problems;
}
