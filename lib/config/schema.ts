/**
 * The one schema of the cache's config.yml. The server parses with it and the constructs render through it,
 * so whatever a site synthesizes is a config the server accepts.
 *
 * The shape is the DTR content cache's (a registry config.yml with a `downstream` registry middleware);
 * options this cache adds live beside `blobttl`, `upstreams` and `cas`, each with a default.
 *
 * A default is written once, as config.yml would write it (`.prefault('8MiB')`, `durationDefault('30s')`,
 * `.prefault({})` for a section whose fields have their own), and parsed like a written value.
 */
import { z } from 'zod';
import { bool, duration, durationDefault, optionalSize, registryOnly, size, str } from './fields';
import { storageSchema } from './storage-schema';

const upstreamUrl = z
  .string({ error: 'must be a URL string such as https://dtr.example.com' })
  .refine(
    (u) => {
      try {
        const url = new URL(u);
        return (url.protocol === 'https:' || url.protocol === 'http:') && (url.pathname === '/' || url.pathname === '');
      } catch {
        return false;
      }
    },
    { message: 'must be scheme://host[:port] with scheme http or https and no path, e.g. https://dtr.example.com' },
  )
  .transform((u) => new URL(u).origin);

/** DTR 2.2 wrote upstreams as `[{originhost, upstreamhosts: [...]}]`; its upstream hosts are used in order. */
const legacyUpstream = z
  .object({ originhost: upstreamUrl, upstreamhosts: z.array(upstreamUrl).min(1) })
  .strict()
  .transform((u) => u.upstreamhosts);

export const downstreamOptionsSchema = z
  .object({
    upstreams: z
      .array(
        z.union([upstreamUrl, legacyUpstream], {
          error: 'must be scheme://host[:port] with scheme http or https and no path, e.g. https://dtr.example.com',
        }),
        {
          error: 'is required; list the DTR (or next cache) URLs, e.g. upstreams: [https://dtr.example.com]',
        },
      )
      .min(1, { message: 'needs at least one URL, e.g. upstreams: [https://dtr.example.com]' })
      .transform((list) => [...new Set(list.flat())]),
    cas: z
      .array(
        str('list absolute paths of PEM CA files').refine((p) => p.startsWith('/'), { message: 'must be an absolute path to a PEM file' }),
      )
      .prefault([]),
    /** Content not pulled within this window is removed. Unset: kept until the size bound evicts it. */
    blobttl: duration('24h').optional(),
    /** How long a tag → digest answer is trusted before the upstream is asked again. */
    tagttl: durationDefault('30s'),
    /** How long the last known tag is served, with a Warning header, while the upstream is down. */
    maxstale: durationDefault('24h'),
    /**
     * How long a client's earlier authorization is reused while the upstream is unreachable (or answers 5xx), so
     * cached images keep pulling through an outage. A 401/403 of the upstream to the credential voids it at once.
     */
    authstale: durationDefault('24h'),
    /** How long a client's authorization, checked with the upstream, is remembered (at most a minute). */
    authttl: durationDefault('60s').refine((ms) => ms <= 60_000, {
      message: 'must be at most 60s, so a revoked user loses access within a minute',
    }),
    /** Upstream 404s are remembered this long, so a storm of bad pulls is not sent upstream. */
    notfoundttl: durationDefault('10s'),
    /** After this many consecutive connection failures the upstream is assumed offline... */
    offlineafter: z.number().int().positive().prefault(3),
    /** ...for this long: cached content and stale tags are then served without waiting on timeouts. */
    offlineperiod: durationDefault('30s'),
    /** Connect and response-header timeout of upstream requests. */
    upstreamtimeout: durationDefault('30s'),
    /** Upper bound of one blob fill, including when every client has gone. */
    filltimeout: durationDefault('30m'),
    /** Optional bound of the bytes stored; least recently used content is evicted above it. */
    maxsize: optionalSize('maxsize', 1),
    /** How often the eviction sweeper runs (and the pause between two passes of the scrub). */
    sweepinterval: durationDefault('10m'),
    /**
     * A stored blob is digest-checked on its first read after start, and again once its last check (a fill, a
     * read, the scrub) is older than this.
     */
    verifyage: durationDefault('24h'),
    /** Bytes per second the background scrub reads to verify stored blobs; 0 turns it off. */
    scrubrate: size('scrubrate', 0).prefault('8MiB'),
  })
  .strict();

const downstreamMiddleware = z
  .object({
    name: z.literal('downstream', { error: 'the cache reads one registry middleware, named downstream' }),
    options: downstreamOptionsSchema,
    disabled: bool('disabled').optional(),
  })
  .strict();

const tlsSchema = z
  .object({
    certificate: str('set it to the PEM certificate path, e.g. /run/secrets/cache.cert.pem'),
    key: str('set it to the unencrypted PEM key path, e.g. /run/secrets/cache.key.pem'),
    clientcas: z.array(z.string()).optional(),
    minimumtls: z.enum(['tls1.2', 'tls1.3']).optional(),
    ciphersuites: registryOnly,
    letsencrypt: registryOnly,
  })
  .strict();

const httpSchema = z
  .object({
    addr: str('set it to host:port, e.g. 0.0.0.0:443 or :5000')
      .refine((a) => /^(\[[0-9a-fA-F:.]+\]|[^:\s]*):\d{1,5}$/.test(a) && Number(a.slice(a.lastIndexOf(':') + 1)) <= 65535, {
        message: 'must be host:port, e.g. 0.0.0.0:443 or :5000',
      })
      .prefault(':5000'),
    net: z.literal('tcp', { error: 'only tcp is supported; remove net or set net: tcp' }).optional(),
    host: upstreamUrl.optional(),
    secret: str('set it to a random string, identical on every replica').optional(),
    /**
     * The replica endpoint (only with http.secret): where other replicas stream a blob this one is fetching from the
     * upstream, so a site fetches it once. `addr` is where it listens (port 0: a free one per process);
     * `advertise` is the host or host:port the others reach it at (default: addr's host, else this machine's
     * first non-loopback IPv4 address; the port is the listening one unless given).
     */
    internal: z
      .object({
        addr: str('set it to host:port, e.g. 0.0.0.0:0 (any free port) or 10.0.0.5:5002')
          .refine((a) => /^(\[[0-9a-fA-F:.]+\]|[^:\s]*):\d{1,5}$/.test(a) && Number(a.slice(a.lastIndexOf(':') + 1)) <= 65535, {
            message: 'must be host:port, e.g. 0.0.0.0:0 or 10.0.0.5:5002',
          })
          .default('0.0.0.0:0'),
        advertise: str('set it to the host or host:port other replicas reach this one at, e.g. 10.0.0.5').optional(),
      })
      .strict()
      .default({ addr: '0.0.0.0:0' }),
    prefix: registryOnly,
    relativeurls: registryOnly,
    draintimeout: durationDefault('30s'),
    tls: tlsSchema.optional(),
    debug: z
      .object({
        addr: str('set it to host:port for the debug and metrics listener, e.g. 127.0.0.1:5001'),
        prometheus: z
          .object({ enabled: bool('enabled').prefault(true), path: z.string().prefault('/metrics') })
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
    headers: z.record(z.string(), z.array(z.string())).optional(),
    http2: registryOnly,
  })
  .strict();

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;

export const configSchema = z
  .object({
    version: z
      .union([z.literal('0.1'), z.literal(0.1)], { error: 'must be 0.1, as in a registry config.yml' })
      .transform(() => '0.1' as const),
    log: z
      .object({
        level: z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` }).prefault('info'),
        formatter: z.enum(['text', 'json', 'logstash']).optional(),
        fields: registryOnly,
        accesslog: registryOnly,
        hooks: registryOnly,
      })
      .strict()
      .prefault({}),
    loglevel: registryOnly,
    storage: storageSchema,
    http: httpSchema.prefault({}),
    middleware: z
      .object(
        {
          registry: z
            .array(downstreamMiddleware)
            .length(1, { message: 'needs exactly one entry: { name: downstream, options: { upstreams: [...] } }' }),
          repository: registryOnly,
          storage: registryOnly,
        },
        {
          error: (i) =>
            i.input === undefined
              ? 'is required; add middleware: { registry: [{ name: downstream, options: { upstreams: [https://dtr.example.com] } }] }'
              : 'must be a mapping with a registry list',
        },
      )
      .strict(),
    auth: registryOnly,
    notifications: registryOnly,
    redis: registryOnly,
    health: registryOnly,
    proxy: registryOnly,
    validation: registryOnly,
    compatibility: registryOnly,
    reporting: registryOnly,
    catalog: registryOnly,
  })
  .strict()
  .superRefine((c, ctx) => {
    const options = c.middleware.registry[0].options;
    if (options.blobttl !== undefined && !c.storage.delete?.enabled) {
      ctx.addIssue({
        code: 'custom',
        path: ['storage', 'delete', 'enabled'],
        message:
          'must be true when middleware.registry[0].options.blobttl is set, as in the DTR cache; add storage: { delete: { enabled: true } }',
      });
    }
  });

/** config.yml as written (input side): what constructs build and render. */
export type CacheConfigInput = z.input<typeof configSchema>;
/** config.yml once validated, with defaults, durations in ms and sizes in bytes. */
export type CacheConfig = z.output<typeof configSchema>;
export type DownstreamOptions = z.output<typeof downstreamOptionsSchema>;
