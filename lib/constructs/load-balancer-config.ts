/**
 * Configuration text for an external load balancer in front of host-mode cache replicas: HAProxy and nginx `stream`,
 * both TCP passthrough, so TLS stays end to end (the caches hold the certificate; the load balancer never sees keys
 * or plain traffic). Pure functions: same input, same text.
 */

/** One cache replica as the load balancer reaches it: a labelled node and the port the cache publishes there. */
export interface LoadBalancerBackend {
  /** Node host name or address. */
  readonly address: string;
  /** The host-mode published port on that node. */
  readonly port: number;
}

export interface LoadBalancerConfigOptions {
  /** Name of the frontend/upstream, e.g. dtr-cache-asia. */
  readonly name: string;
  /** The cache host name clients use: sent as SNI and Host in health checks, so the cache answers as in production. */
  readonly host: string;
  /** Where the load balancer listens, e.g. "*:443" or "127.0.0.1:8443". */
  readonly listen: string;
  /** The replicas. */
  readonly backends: readonly LoadBalancerBackend[];
  /** Path of the readiness check. @default "/readyz" */
  readonly healthPath?: string;
}

/** Seconds between health checks, failures before a replica is taken out, successes before it is put back. */
const CHECK = { interSeconds: 2, fall: 2, rise: 2 } as const;

/** A name HAProxy and nginx accept for a server or upstream: letters, digits, dash, underscore, dot. */
function configName(value: string): string {
  return value.replace(/[^A-Za-z0-9_.-]/g, '_');
}

/** `host:port`, with brackets for an IPv6 address. */
function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/**
 * haproxy.cfg: a TCP frontend and a backend whose servers get an HTTPS GET of the readiness path as health check
 * (check-ssl on the check only; traffic itself passes through untouched).
 */
export function renderHaproxyConfig(options: LoadBalancerConfigOptions): string {
  const servers = options.backends.map((b, i) => `  server ${configName(`replica-${i + 1}-${b.address}`)} ${hostPort(b.address, b.port)}`);
  return haproxyConfig(options, [], servers);
}

/** Options of HAProxy run as a swarm service next to the replicas, finding them through swarm DNS. */
export interface SwarmHaproxyConfigOptions extends Omit<LoadBalancerConfigOptions, 'backends'> {
  /** The cache service's name: `tasks.<service>` resolves to every replica on the shared overlay network. */
  readonly service: string;
  /** The port the replicas listen on inside their containers. */
  readonly port: number;
  /** Server slots HAProxy keeps for replicas (at least the replica count, with room for a rolling update). */
  readonly slots: number;
}

/**
 * haproxy.cfg for a load-balancer service on the replicas' overlay network: servers come and go with the tasks, found
 * through the swarm's embedded DNS (127.0.0.11) by `server-template`; same checks and passthrough as the external one.
 */
export function renderHaproxySwarmConfig(options: SwarmHaproxyConfigOptions): string {
  const resolvers = [
    // Swarm's embedded DNS; short holds so a rescheduled replica is found within seconds.
    'resolvers swarm',
    '  nameserver dns 127.0.0.11:53',
    '  resolve_retries 3',
    '  timeout resolve 1s',
    '  timeout retry 1s',
    '  hold valid 5s',
    '  hold nx 5s',
    '  hold other 5s',
    '',
  ];
  const servers = [
    // init-addr none: HAProxy starts (all servers down) before any replica exists and picks them up as DNS answers.
    `  server-template replica- ${options.slots} tasks.${options.service}:${options.port} resolvers swarm init-addr none`,
  ];
  return haproxyConfig(options, resolvers, servers);
}

function haproxyConfig(options: Omit<LoadBalancerConfigOptions, 'backends'>, sections: string[], servers: string[]): string {
  const name = configName(options.name);
  const path = options.healthPath ?? '/readyz';
  return [
    `# ${options.name}: TCP passthrough to the cache replicas; TLS ends at the caches.`,
    'global',
    '  maxconn 4096',
    '',
    ...sections,
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    // Idle timeouts: a slow client reading a large layer keeps its connection as long as bytes flow.
    '  timeout client 10m',
    '  timeout server 10m',
    '',
    `frontend ${name}`,
    `  bind ${options.listen}`,
    `  default_backend ${name}-replicas`,
    '',
    `backend ${name}-replicas`,
    '  balance leastconn',
    '  option httpchk',
    `  http-check send meth GET uri ${path} ver HTTP/1.1 hdr Host ${options.host}`,
    '  http-check expect status 200',
    // The check goes to a node address the certificate does not name, so it is not verified: it only asks
    // whether the replica is ready. Clients still verify the certificate end to end.
    `  default-server check check-ssl check-sni ${options.host} verify none inter ${CHECK.interSeconds}s fall ${CHECK.fall} rise ${CHECK.rise}`,
    // A replica marked down drops its sessions so clients reconnect to a live one.
    '  option redispatch',
    '  retries 2',
    ...servers,
    '',
  ].join('\n');
}

/**
 * An nginx `stream { }` block (top level of nginx.conf, needs the stream module). Open-source nginx has no active
 * health checks in stream: a replica that refuses or fails connections is taken out for fail_timeout (passive). The
 * readiness path is named in a comment for NGINX Plus users, whose `health_check` can use it.
 */
export function renderNginxStreamConfig(options: LoadBalancerConfigOptions): string {
  const name = configName(options.name).replace(/[.-]/g, '_');
  const path = options.healthPath ?? '/readyz';
  const servers = options.backends.map((b) => `    server ${hostPort(b.address, b.port)} max_fails=${CHECK.fall} fail_timeout=10s;`);
  return [
    `# ${options.name}: TCP passthrough to the cache replicas; TLS ends at the caches.`,
    `# Replicas answer GET https://${options.host}${path} with 200 when ready (for active checks, e.g. NGINX Plus).`,
    'stream {',
    `  upstream ${name} {`,
    '    least_conn;',
    ...servers,
    '  }',
    '  server {',
    `    listen ${options.listen};`,
    `    proxy_pass ${name};`,
    '    proxy_connect_timeout 5s;',
    '    proxy_timeout 10m;',
    '    proxy_next_upstream on;',
    '  }',
    '}',
    '',
  ].join('\n');
}
