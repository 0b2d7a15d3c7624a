/**
 * How clients reach a site's replicas: the swarm routing mesh, an external load balancer (HAProxy or nginx) in front
 * of host-mode replicas, whose configuration the site renders, or an HAProxy service the site deploys itself. All keep
 * TLS end to end: the load balancer passes TCP through, only the caches hold the certificate and key.
 */
import { PublishMode } from './cache-service';
import { LoadBalancerBackend, renderHaproxyConfig, renderNginxStreamConfig } from './load-balancer-config';

/** The external load balancers whose configuration a site renders. */
export type ExternalLoadBalancerKind = 'haproxy' | 'nginx';

/** Options of an external load balancer in front of host-mode replicas. */
export interface ExternalLoadBalancerOptions {
  /** Which configuration to render. */
  readonly kind: ExternalLoadBalancerKind;
  /**
   * Addresses (host names or IPs) the load balancer reaches the labelled nodes at, one per node.
   * @default the site's nodes as given (use host names there, or list addresses here when nodes are IDs)
   */
  readonly nodeAddresses?: string[];
  /**
   * Where the load balancer listens, e.g. "*:443" or "10.0.0.5:443".
   * @default "*:443"
   */
  readonly listen?: string;
}

/** Options of a load-balancer service the site deploys (LoadBalancerService). */
export interface ServiceLoadBalancerOptions {
  /** An HAProxy image with its registry host, e.g. registry.example.com/library/haproxy:2.8. */
  readonly image: string;
  /** Load balancer replicas. @default 1 */
  readonly replicas?: number;
  /** How its port is published: the routing mesh, or host mode on the nodes it runs on. @default PublishMode.INGRESS */
  readonly publishMode?: PublishMode;
  /** Where the image reads haproxy.cfg. @default "/usr/local/etc/haproxy/haproxy.cfg" */
  readonly configPath?: string;
}

/** What a site tells its load balancer about itself. */
export interface LoadBalancedSite {
  /** Name of the frontend/upstream, e.g. dtr-cache-asia. */
  readonly name: string;
  /** Host name clients pull from. */
  readonly host: string;
  /** The published port. */
  readonly port: number;
  /** The labelled nodes as given to the site. */
  readonly nodes: readonly string[];
}

/** A rendered load balancer configuration, with the file name it is usually installed under. */
export interface RenderedLoadBalancerConfig {
  /** Which load balancer the text configures. */
  readonly kind: ExternalLoadBalancerKind;
  /** haproxy.cfg, or dtr-cache-stream.conf for nginx (included at the top level of nginx.conf). */
  readonly fileName: string;
  /** The configuration file's content. */
  readonly text: string;
}

export type LoadBalancerMode = 'routing-mesh' | 'external' | 'service';

export class LoadBalancer {
  /** The swarm routing mesh: every node answers on the published port (default). */
  public static routingMesh(): LoadBalancer {
    return new LoadBalancer('routing-mesh', undefined, undefined);
  }

  /**
   * An external load balancer in front of the labelled nodes: replicas publish in host mode, and the site renders the
   * HAProxy or nginx stream configuration (output `<id>_load_balancer_config`).
   */
  public static external(options: ExternalLoadBalancerOptions): LoadBalancer {
    return new LoadBalancer('external', options, undefined);
  }

  /**
   * An HAProxy service deployed by the site from `image`, on an overlay network shared with the replicas, which then
   * publish nothing; its haproxy.cfg is a swarm config (and output `<id>_load_balancer_config`).
   */
  public static service(options: ServiceLoadBalancerOptions): LoadBalancer {
    return new LoadBalancer('service', undefined, options);
  }

  private constructor(
    /** Which mode. */
    public readonly mode: LoadBalancerMode,
    private readonly external: ExternalLoadBalancerOptions | undefined,
    /** The load-balancer service's options, in mode service. */
    public readonly serviceOptions: ServiceLoadBalancerOptions | undefined,
  ) {}

  /** How the site's port is published: by the cache service, or in mode service by the load balancer's. */
  public get publishMode(): PublishMode {
    if (this.serviceOptions) return this.serviceOptions.publishMode ?? PublishMode.INGRESS;
    return this.mode === 'routing-mesh' ? PublishMode.INGRESS : PublishMode.HOST;
  }

  /** Problems with these options for `site`, as validation messages naming the field and the fix. */
  public problems(site: LoadBalancedSite): string[] {
    const svc = this.serviceOptions;
    if (svc) {
      const problems: string[] = [];
      // Without a registry host the engine would ask Docker Hub, which a datacenter's swarm may not reach.
      if (!/^[^/]*[.:][^/]*\/|^localhost\//.test(svc.image)) {
        problems.push(
          `DtrCacheSite: loadBalancer.image: "${svc.image}" has no registry host; name it in full, e.g. registry.example.com/library/haproxy:2.8`,
        );
      }
      if (svc.replicas !== undefined && (!Number.isInteger(svc.replicas) || svc.replicas < 1)) {
        problems.push('DtrCacheSite: loadBalancer.replicas: must be a whole number of at least 1');
      }
      return problems;
    }
    const ext = this.external;
    if (!ext) return [];
    const problems: string[] = [];
    if (ext.kind !== 'haproxy' && ext.kind !== 'nginx') {
      problems.push(`DtrCacheSite: loadBalancer.kind: "${String(ext.kind)}" is not known; use "haproxy" or "nginx"`);
    }
    if (ext.nodeAddresses !== undefined && ext.nodeAddresses.length !== site.nodes.length) {
      problems.push(
        `DtrCacheSite: loadBalancer.nodeAddresses: ${ext.nodeAddresses.length} address(es) for ${site.nodes.length} node(s); list one address per node, in the order of nodes`,
      );
    }
    for (const a of ext.nodeAddresses ?? []) {
      if (!/^[A-Za-z0-9.:-]+$/.test(a)) {
        problems.push(
          `DtrCacheSite: loadBalancer.nodeAddresses: "${a}" is not a host name or IP address, e.g. 10.0.0.11 or node1.asia.example.com`,
        );
      }
    }
    if (ext.listen !== undefined && !/^(\*|[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):\d{1,5}$/.test(ext.listen)) {
      problems.push(`DtrCacheSite: loadBalancer.listen: "${ext.listen}" must be address:port, e.g. *:443 or 10.0.0.5:443`);
    }
    return problems;
  }

  /** The external load balancer's configuration for `site`; undefined with the routing mesh. */
  public render(site: LoadBalancedSite): RenderedLoadBalancerConfig | undefined {
    const ext = this.external;
    if (!ext) return undefined;
    const backends: LoadBalancerBackend[] = (ext.nodeAddresses ?? site.nodes).map((address) => ({ address, port: site.port }));
    const options = { name: site.name, host: site.host, listen: ext.listen ?? '*:443', backends };
    return ext.kind === 'nginx'
      ? { kind: 'nginx', fileName: 'dtr-cache-stream.conf', text: renderNginxStreamConfig(options) }
      : { kind: 'haproxy', fileName: 'haproxy.cfg', text: renderHaproxyConfig(options) };
  }
}
