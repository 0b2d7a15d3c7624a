/**
 * The NFS export a site keeps its content on: the server's `/etc/exports` line, the clients' mount options, and the
 * checks both get at synth. Pure values; `SharedStorage` reports the problems and warnings, mounts the volume and,
 * when asked, applies the line on the server (NfsExportApply).
 */
import { createHash } from 'node:crypto';

/** The export options of the DTR guide: read-write, root squashed, each write committed when it arrives. */
export const DEFAULT_EXPORT_OPTIONS = 'rw,root_squash,no_wdelay';

/**
 * The clients' mount options after addr=<server>. `hard`: I/O waits for a restarted server instead of failing half
 * way. `lookupcache=positive`: a name looked up and not found is not cached, so a blob another replica has just
 * committed (renamed into place) is found at the next lookup instead of after the attribute cache's expiry (up to
 * acdirmax, 60 s); found names are still cached and revalidated on open (close-to-open consistency).
 */
export const DEFAULT_MOUNT_OPTIONS = 'rw,nfsvers=4,hard,lookupcache=positive';

/** An export and how the nodes mount it. */
export interface NfsExportOptions {
  /** The NFS server's host name or address. */
  readonly server: string;
  /** The exported directory, absolute. @default "/dtr-cache" */
  readonly path?: string;
  /**
   * Who may mount it: host names, addresses, CIDRs (10.0.0.0/24), wildcards (*.example.com) or @netgroups. List the
   * cache nodes' addresses; "*" lets any host that reaches the server mount it, and draws a warning.
   * @default ["*"]
   */
  readonly clients?: string[];
  /** Export options, comma-separated; `rw` is required. @default "rw,root_squash,no_wdelay" */
  readonly exportOptions?: string;
  /** Client mount options after addr=<server>; `rw` is required. @default "rw,nfsvers=4,hard,lookupcache=positive" */
  readonly mountOptions?: string;
}

/** Host names, IPv4 and IPv6 addresses: what `addr=` takes without breaking the comma-separated option string. */
const SERVER =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$/;
/** An absolute path of safe characters: no blanks, quotes, commas, parentheses or `#`, which break the exports line. */
const PATH = /^\/(?:[A-Za-z0-9._+-]+\/?)*$/;
/** A client: host, wildcard, address, CIDR or @netgroup, without the blanks and parentheses that separate clients. */
const CLIENT = /^(?:\*|@?[A-Za-z0-9*?._:-]+(?:\/[0-9.]+)?)$/;
/** One option: a word, or word=value. */
const OPTION = /^[a-z_0-9]+(?:=[A-Za-z0-9_.:/@-]+)?$/;

/** Export options that work but weaken the site, with why. */
const RISKY_EXPORT_OPTIONS: Record<string, string> = {
  async:
    'the server acknowledges writes before they are on disk, so a server crash loses blobs the cache has already committed and serves as present',
  insecure: 'the server accepts requests from unprivileged ports, so any user on a client host can forge requests',
  no_root_squash: 'root in any container on any client becomes root on the export',
};
/** Mount options that work but weaken the site, with why. */
const RISKY_MOUNT_OPTIONS: Record<string, string> = {
  soft: 'a server that does not answer in time fails reads and writes with EIO half way, so pulls fail during a server restart instead of waiting for it',
};

export class NfsExport {
  /** The NFS server. */
  public readonly server: string;
  /** The exported directory. */
  public readonly path: string;
  /** Who may mount it. */
  public readonly clients: readonly string[];
  /** Export options. */
  public readonly exportOptions: string;
  /** Client mount options after addr=<server>. */
  public readonly mountOptions: string;

  constructor(options: NfsExportOptions) {
    this.server = options.server;
    this.path = options.path ?? '/dtr-cache';
    this.clients = [...(options.clients ?? ['*'])];
    this.exportOptions = options.exportOptions ?? DEFAULT_EXPORT_OPTIONS;
    this.mountOptions = options.mountOptions ?? DEFAULT_MOUNT_OPTIONS;
  }

  /** The `/etc/exports` line: the path, then each client with the options, e.g. `/dtr-cache *(rw,root_squash,no_wdelay)`. */
  public get line(): string {
    return [this.path, ...this.clients.map((c) => `${c}(${this.exportOptions})`)].join(' ');
  }

  /** The local driver's `o` option: the server's address, then the mount options. */
  public get volumeOptions(): string {
    return `addr=${this.server},${this.mountOptions}`;
  }

  /** 12 hex digits of SHA-256 over server, path and mount options: part of the volume name, so a change makes a new volume. */
  public get hash(): string {
    return createHash('sha256')
      .update(JSON.stringify([this.server, this.path, this.mountOptions]))
      .digest('hex')
      .slice(0, 12);
  }

  /** What makes the export or the mount unusable, each naming the option and the fix; empty when fine. */
  public problems(): string[] {
    const out: string[] = [];
    const where = 'StorageBackend.nfs';
    if (!SERVER.test(this.server)) {
      out.push(
        `${where}: server: ${JSON.stringify(this.server)} must be a host name or an IP address (it goes into addr=<server>), e.g. nfs.asia.example.com`,
      );
    }
    if (!PATH.test(this.path) || this.path.split('/').some((s) => s === '.' || s === '..')) {
      out.push(
        `${where}: path: ${JSON.stringify(this.path)} must be an absolute path of letters, digits and . _ + - (no blanks, commas, quotes, parentheses or ..), e.g. /dtr-cache`,
      );
    }
    if (this.clients.length === 0) out.push(`${where}: clients: list at least one client, e.g. ["10.0.0.0/24"]`);
    for (const client of this.clients) {
      if (!CLIENT.test(client)) {
        out.push(
          `${where}: clients: ${JSON.stringify(client)} must be a host, address, CIDR, wildcard or @netgroup, without blanks or parentheses`,
        );
      }
    }
    out.push(...optionProblems(`${where}: exportOptions`, this.exportOptions));
    out.push(...optionProblems(`${where}: mountOptions`, this.mountOptions));
    if (splitOptions(this.mountOptions).some((o) => o.startsWith('addr='))) {
      out.push(`${where}: mountOptions: leave out addr=; it is set from server`);
    }
    return out;
  }

  /** What works but weakens the site, with the reason; empty when fine. */
  public warnings(): string[] {
    const out: string[] = [];
    if (this.clients.includes('*')) {
      out.push(
        `StorageBackend.nfs: clients: "*" exports ${this.path} to any host that reaches ${this.server}; list the cache nodes' addresses or CIDRs in clients`,
      );
    }
    for (const o of splitOptions(this.exportOptions)) {
      const why = RISKY_EXPORT_OPTIONS[o];
      if (why) out.push(`StorageBackend.nfs: exportOptions: ${o}: ${why}`);
    }
    for (const o of splitOptions(this.mountOptions)) {
      const why = RISKY_MOUNT_OPTIONS[o];
      if (why) out.push(`StorageBackend.nfs: mountOptions: ${o}: ${why}`);
    }
    return out;
  }
}

function splitOptions(options: string): string[] {
  return options.split(',');
}

/** Malformed options, and options that are not read-write (the cache writes everything it fetches). */
function optionProblems(where: string, options: string): string[] {
  const list = splitOptions(options);
  const bad = list.filter((o) => !OPTION.test(o));
  if (bad.length) {
    return [
      `${where}: ${bad.map((o) => JSON.stringify(o)).join(', ')} is not an option; give comma-separated options without blanks, e.g. rw,hard`,
    ];
  }
  if (list.includes('ro') || !list.includes('rw')) {
    return [
      `${where}: "${options}" must include rw and not ro: the cache writes every blob it fetches, and a read-only share fails every fill`,
    ];
  }
  return [];
}
