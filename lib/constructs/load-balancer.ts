/**
 * How clients reach a site's replicas: the swarm routing mesh, or an external load balancer (HAProxy or nginx) in
 * front of host-mode replicas, whose configuration the site renders. Both keep TLS end to end: the load balancer
 * passes TCP through, only the caches hold the certificate and key.
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
  readonly kind: ExternalLoadBalancerKind;
  /** haproxy.cfg, or dtr-cache-stream.conf for nginx (included at the top level of nginx.conf). */
  readonly fileName: string;
  readonly text: string;
}

export type LoadBalancerMode = 'routing-mesh' | 'external';

export class LoadBalancer {
  /** The swarm routing mesh: every node answers on the published port (default). */
  public static routingMesh(): LoadBalancer {
    return new LoadBalancer('routing-mesh', undefined);
  }

  /**
   * An external load balancer in front of the labelled nodes: replicas publish in host mode, and the site renders the
   * HAProxy or nginx stream configuration (output `<id>_load_balancer_config`).
   */
  public static external(options: ExternalLoadBalancerOptions): LoadBalancer {
    return new LoadBalancer('external', options);
  }

  private constructor(
    /** Which mode. */
    public readonly mode: LoadBalancerMode,
    private readonly external: ExternalLoadBalancerOptions | undefined,
  ) {}

  /** How the cache service publishes its port in this mode. */
  public get publishMode(): PublishMode {
    return this.mode === 'routing-mesh' ? PublishMode.INGRESS : PublishMode.HOST;
  }

  /** Problems with these options for `site`, as validation messages naming the field and the fix. */
  public problems(site: LoadBalancedSite): string[] {
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

  /** One line for summaries. */
  public describe(): string {
    return this.external ? `external ${this.external.kind} (host-mode publishing)` : 'routing mesh';
  }
}
