/**
 * A load balancer the site deploys itself: an HAProxy service, from an image the user names, on an overlay network it
 * shares with the cache replicas, which then publish nothing. Its haproxy.cfg (rendered, a swarm config named by its
 * content hash so a change rolls the service) finds replicas through swarm DNS and passes TLS through.
 */
import { Construct } from 'constructs';
import { Config } from '@cdktf/provider-docker/lib/config';
import { Network } from '@cdktf/provider-docker/lib/network';
import { Service } from '@cdktf/provider-docker/lib/service';
import { base64Text, terraformText, textHash } from './base/secret-source';
import { providerDuration } from './base/provider-duration';
import { PublishMode } from './cache-service';
import { renderHaproxySwarmConfig } from './load-balancer-config';
import { managedLabels } from './base/labels';
import { ENGINE_SET_SERVICE_ATTRIBUTES } from './base/engine-set';

export interface LoadBalancerServiceProps {
  /** Names start with this, e.g. dtr-cache-asia. */
  readonly namePrefix: string;
  /** The HAProxy image, with its registry host (e.g. registry.example.com/haproxy:2.8). */
  readonly image: string;
  /** The cache service's name (its replicas are tasks.<name> on the network). */
  readonly cacheService: string;
  /** The cache host name: SNI and Host of the health checks. */
  readonly host: string;
  /** The published port. */
  readonly port: number;
  /** The port the replicas listen on. */
  readonly containerPort: number;
  /** The number of cache replicas (HAProxy keeps twice as many server slots, for rolling updates). */
  readonly cacheReplicas: number;
  /** Load balancer replicas. @default 1 */
  readonly replicas?: number;
  /** How the load balancer's port is published. @default PublishMode.INGRESS */
  readonly publishMode?: PublishMode;
  /** Where the image reads its configuration. @default "/usr/local/etc/haproxy/haproxy.cfg" (the haproxy image's) */
  readonly configPath?: string;
  /** How long the deploy waits for the load balancer to converge (Go duration, as CacheService's). @default "3m" */
  readonly convergeTimeout?: string;
  /** How often the deploy checks whether it converged (Go duration). @default "7s" (the provider's) */
  readonly convergeInterval?: string;
}

/** The port HAProxy listens on in its container: above 1024, since the haproxy image runs as a non-root user. */
export const LOAD_BALANCER_CONTAINER_PORT = 8443;

export class LoadBalancerService extends Construct {
  /** The overlay network the load balancer and the replicas share. */
  public readonly network: Network;
  /** haproxy.cfg as a swarm config. */
  public readonly config: Config;
  /** The load balancer's docker_service. */
  public readonly service: Service;
  /** The rendered haproxy.cfg. */
  public readonly text: string;

  constructor(scope: Construct, id: string, props: LoadBalancerServiceProps) {
    super(scope, id);
    const publishMode = props.publishMode ?? PublishMode.INGRESS;
    this.network = new Network(this, 'Network', {
      name: `${props.namePrefix}-lb`,
      driver: 'overlay',
      labels: managedLabels(this),
    });
    this.text = renderHaproxySwarmConfig({
      name: props.namePrefix,
      host: props.host,
      listen: `*:${LOAD_BALANCER_CONTAINER_PORT}`,
      service: props.cacheService,
      port: props.containerPort,
      slots: Math.max(2, props.cacheReplicas * 2),
    });
    const text = terraformText(this, 'Text', this.text);
    const configName = `${props.namePrefix}-haproxy-${textHash(text)}`;
    this.config = new Config(this, 'Config', {
      name: configName,
      data: base64Text(text),
      lifecycle: { createBeforeDestroy: true },
    });
    this.service = new Service(this, 'Service', {
      name: `${props.namePrefix}-lb`,
      labels: managedLabels(this),
      lifecycle: { ignoreChanges: [...ENGINE_SET_SERVICE_ATTRIBUTES] },
      mode: { replicated: { replicas: props.replicas ?? 1 } },
      taskSpec: {
        containerSpec: {
          image: props.image,
          configs: [
            {
              configId: this.config.id,
              configName,
              fileName: props.configPath ?? '/usr/local/etc/haproxy/haproxy.cfg',
              fileMode: 0o444,
            },
          ],
          // HAProxy's soft stop: stop accepting, let pulls in flight finish, then exit (as the caches drain on SIGTERM).
          stopSignal: 'SIGUSR1',
          stopGracePeriod: '40s',
        },
        networksAdvanced: [{ name: this.network.id }],
        // Host-mode load balancers on one port cannot share a node.
        placement: publishMode === PublishMode.HOST ? { maxReplicas: 1 } : undefined,
        // window 0s (unbounded) is the provider's default, stated: left unset it reads back as 0s, a change in every plan.
        restartPolicy: { condition: 'any', delay: '5s', window: '0s' },
      },
      updateConfig: {
        parallelism: 1,
        delay: '5s',
        failureAction: 'rollback',
        order: publishMode === PublishMode.HOST ? 'stop-first' : 'start-first',
      },
      convergeConfig: { timeout: providerDuration(props.convergeTimeout ?? '3m'), delay: providerDuration(props.convergeInterval ?? '7s') },
      endpointSpec: {
        mode: publishMode === PublishMode.HOST ? 'dnsrr' : 'vip',
        ports: [{ name: 'https', protocol: 'tcp', targetPort: LOAD_BALANCER_CONTAINER_PORT, publishedPort: props.port, publishMode }],
      },
    });
  }
}
