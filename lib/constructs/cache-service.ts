/**
 * The cache as a swarm service: one replica per labelled node, config.yml and TLS material from swarm configs and
 * secrets, a healthcheck on the server's /healthz, and a rolling update that keeps the cache answering.
 */
import { Construct } from 'constructs';
import { ITerraformDependable, TerraformStack } from 'cdktf';
import { Service, ServiceTaskSpecContainerSpecMounts } from '@cdktf/provider-docker/lib/service';
import { z } from 'zod';
import { SecretMount } from './base/hashed-secret';
import { providerDuration } from './base/provider-duration';
import { check, goDuration, port, propsValidation } from './base/validation';
import { ConfigMount } from './cache-config';
import { managedLabels } from './base/labels';
import { ENGINE_SET_SERVICE_ATTRIBUTES } from './base/engine-set';

/**
 * The image's non-root user (the Dockerfile's USER 10001:10001): secrets are mode 0400, so they must be owned by the
 * user the server runs as, or it cannot read its own key.
 */
export const IMAGE_USER = { fileUid: '10001', fileGid: '10001' } as const;

/** How the published port reaches replicas. */
export enum PublishMode {
  /** The swarm routing mesh: every node answers on the port and forwards to a replica. */
  INGRESS = 'ingress',
  /** Each replica's node answers on the port itself, for an external load balancer in front of the nodes. */
  HOST = 'host',
}

export interface CacheServiceProps {
  /** The image to run, with its registry host. */
  readonly image: string;
  /** Where config.yml comes from (CacheConfig.mount). */
  readonly config: ConfigMount;
  /** Swarm secrets mounted under /run/secrets/. @default none */
  readonly secrets?: SecretMount[];
  /** Extra mounts (SharedStorage.mounts). @default none */
  readonly mounts?: ServiceTaskSpecContainerSpecMounts[];
  /** The swarm service name. @default "dtr-cache" */
  readonly name?: string;
  /** Number of replicas, at most one per labelled node. @default 1 */
  readonly replicas?: number;
  /** Placement constraints selecting the cache nodes (CacheNodes.placementConstraint). @default ["node.labels.dtr.cache == true"] */
  readonly placementConstraints?: string[];
  /** Add `node.role == worker`: replicas run on dedicated workers, never on managers. @default true */
  readonly workersOnly?: boolean;
  /** The published port. @default 443 */
  readonly port?: number;
  /** The port the server listens on in the container. @default 443 */
  readonly containerPort?: number;
  /** How the published port reaches replicas. @default PublishMode.INGRESS */
  readonly publishMode?: PublishMode;
  /**
   * Number of labelled nodes. With more nodes than replicas and the routing mesh, updates start the new replica before
   * stopping the old (start-first); otherwise one replica per node and a fixed host port force stop-first.
   * @default replicas
   */
  readonly nodeCount?: number;
  /** Whether the server speaks TLS on containerPort (the healthcheck's scheme). @default true */
  readonly tls?: boolean;
  /** Resources the service waits for (node labels). @default none */
  readonly dependsOn?: ITerraformDependable[];
  /** Overlay networks (IDs) the replicas join, e.g. the one a load-balancer service reaches them on. @default none */
  readonly networks?: string[];
  /** Publish `port` at all; false when only a load-balancer service on `networks` reaches the replicas. @default true */
  readonly publish?: boolean;
  /**
   * How long `cdktf deploy` waits for the service to converge (every replica running and healthy) after a create or an
   * update before it fails the deploy (Go duration). A create that does not converge deletes the service again (the
   * provider's converge_config); an update that fails its healthcheck is rolled back first.
   * @default 2 minutes per replica plus 1: a rolling update replaces one replica at a time (10s delay, 30s monitor,
   * up to 20s start period and 45s of failed healthchecks)
   */
  readonly convergeTimeout?: string;
  /**
   * How often the deploy checks whether the service converged (Go duration).
   * @default "7s" (the provider's)
   */
  readonly convergeInterval?: string;
}

/** The default converge timeout: 2 minutes per replica plus 1. */
export function defaultConvergeTimeout(replicas: number): string {
  return providerDuration(`${2 * replicas + 1}m`);
}

const propsSchema = z.object({
  replicas: z.number().int().min(1, { message: 'must be at least 1' }).optional(),
  port: port.optional(),
  containerPort: port.optional(),
  name: z
    .string()
    .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/, { message: 'must be a service name: letters, digits, dash, dot, underscore' })
    .optional(),
  convergeTimeout: goDuration.optional(),
  convergeInterval: goDuration.optional(),
});

export class CacheService extends Construct {
  /** The docker_service. */
  public readonly service: Service;
  /** The published port. */
  public readonly port: number;
  /** How the published port reaches replicas. */
  public readonly publishMode: PublishMode;
  /** Number of replicas. */
  public readonly replicas: number;
  /** Rolling update order: start-first when a spare node and the routing mesh allow it. */
  public readonly updateOrder: 'start-first' | 'stop-first';

  constructor(scope: Construct, id: string, props: CacheServiceProps) {
    super(scope, id);
    this.node.addValidation(propsValidation('CacheService', propsSchema, props));
    this.port = props.port ?? 443;
    this.publishMode = props.publishMode ?? PublishMode.INGRESS;
    this.replicas = props.replicas ?? 1;
    const containerPort = props.containerPort ?? 443;
    const constraints = [...(props.placementConstraints ?? ['node.labels.dtr.cache == true'])];
    if (props.workersOnly ?? true) constraints.push('node.role == worker');
    this.updateOrder =
      this.publishMode === PublishMode.INGRESS && (props.nodeCount ?? this.replicas) > this.replicas ? 'start-first' : 'stop-first';
    this.node.addValidation(check(() => this.portConflicts()));

    // Every duration is written as the provider reads it back (its shortDur): anything else is a change in every plan.
    const update = { parallelism: 1, delay: '10s', failureAction: 'rollback', monitor: '30s', order: this.updateOrder };
    this.service = new Service(this, 'Service', {
      name: props.name ?? 'dtr-cache',
      labels: managedLabels(this),
      dependsOn: props.dependsOn,
      lifecycle: { ignoreChanges: [...ENGINE_SET_SERVICE_ATTRIBUTES] },
      mode: { replicated: { replicas: this.replicas } },
      taskSpec: {
        containerSpec: {
          image: props.image,
          configs:
            props.config.kind === 'config'
              ? [{ configId: props.config.id, configName: props.config.name, fileName: props.config.fileName, fileMode: 0o444 }]
              : undefined,
          secrets: [
            ...(props.config.kind === 'secret'
              ? [
                  {
                    secretId: props.config.id,
                    secretName: props.config.name,
                    fileName: props.config.fileName,
                    fileMode: 0o400,
                    ...IMAGE_USER,
                  },
                ]
              : []),
            ...(props.secrets ?? []).map((s) => ({
              secretId: s.secret.id,
              secretName: s.secret.name,
              fileName: `/run/secrets/${s.fileName}`,
              fileMode: 0o400,
              ...IMAGE_USER,
            })),
          ],
          mounts: props.mounts,
          healthcheck: {
            test: ['CMD', 'node', '-e', healthcheckScript(containerPort, props.tls ?? true)],
            interval: '15s',
            timeout: '5s',
            retries: 3,
            startPeriod: '20s',
          },
          stopGracePeriod: '40s',
        },
        networksAdvanced: props.networks?.map((name) => ({ name })),
        placement: { constraints, maxReplicas: 1 },
        restartPolicy: { condition: 'on-failure', delay: '5s', window: '2m' },
      },
      updateConfig: update,
      // Deploy fails when tasks never run or never pass their healthcheck, instead of reporting success.
      convergeConfig: {
        timeout: providerDuration(props.convergeTimeout ?? defaultConvergeTimeout(this.replicas)),
        delay: providerDuration(props.convergeInterval ?? '7s'),
      },
      rollbackConfig: { ...update, failureAction: 'pause' },
      endpointSpec: {
        // Host-mode publishing needs no virtual IP; dnsrr also works where IPVS is missing.
        mode: this.publishMode === PublishMode.HOST || props.publish === false ? 'dnsrr' : 'vip',
        ports:
          props.publish === false
            ? undefined
            : [{ name: 'https', protocol: 'tcp', targetPort: containerPort, publishedPort: this.port, publishMode: this.publishMode }],
      },
    });
  }

  /** Other cache services in the same stack publishing the same port on the same swarm (provider). */
  private portConflicts(): string[] {
    const others = TerraformStack.of(this)
      .node.findAll()
      .filter(
        (c): c is CacheService =>
          c instanceof CacheService && c !== this && c.port === this.port && c.service.provider === this.service.provider,
      );
    return others.map(
      (o) =>
        `CacheService: port: ${this.port} is also published by ${o.node.path} on the same swarm; give each cache site on a swarm its own port`,
    );
  }
}

/**
 * A GET of /healthz with node itself: the image has no shell or curl. The certificate is not verified, since the
 * check runs against 127.0.0.1, which the certificate does not name.
 */
export function healthcheckScript(containerPort: number, tls: boolean): string {
  const mod = tls ? 'https' : 'http';
  return (
    `const r=require('${mod}').get({host:'127.0.0.1',port:${containerPort},path:'/healthz',rejectUnauthorized:false,timeout:4000},` +
    `(s)=>{s.resume();process.exit(s.statusCode===200?0:1)});r.on('error',()=>process.exit(1));r.on('timeout',()=>process.exit(1))`
  );
}
