/**
 * Applies a site's NFS export on the NFS server over SSH: a `terraform_data` whose local-exec runs `ssh` from the
 * deploy machine. On create it makes the exported directory, gives it to the cache's user, writes
 * /etc/exports.d/<site>.exports (only when its content differs) and runs `exportfs -ra`; every step is idempotent, so
 * a repeated apply changes nothing. A change of server, path, clients or options replaces the resource: the old
 * file is removed from the old server (the destroy step reads the old values from state, `self`), then the new one
 * is written. Destroy removes the file and re-exports; the directory and the cached content in it stay.
 */
import { Construct } from 'constructs';
import { DataResource } from 'cdktf';
import { z } from 'zod';
import { port, propsValidation } from './base/validation';
import { NfsExport } from './nfs-export';

/** How the deploy machine reaches the NFS server. */
export interface NfsExportSshOptions {
  /** Host name or address for ssh. @default the export's server */
  readonly host?: string;
  /** SSH user: root, or a user who may run `sudo -n` without a password. @default "root" */
  readonly user?: string;
  /** SSH port. @default 22 */
  readonly port?: number;
  /** Private key file on the deploy machine. @default ssh's own (ssh-agent, ~/.ssh) */
  readonly identityFile?: string;
  /** More ssh options, e.g. ["-o", "UserKnownHostsFile=/etc/ssh/nfs_known_hosts"]. @default none */
  readonly sshOptions?: string[];
  /** Owner (uid:gid) of the exported directory: the cache image's user. @default "10001:10001" */
  readonly owner?: string;
}

export interface NfsExportApplyProps {
  /** The export to apply. */
  readonly export: NfsExport;
  /** The file under /etc/exports.d, without .exports, e.g. dtr-cache-asia. */
  readonly name: string;
  /** How to reach the server. */
  readonly ssh: NfsExportSshOptions;
}

const SAFE = /^[A-Za-z0-9@%+=:,./_-]+$/;
const propsSchema = z.object({
  name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, { message: 'must be lower-case letters, digits and dashes' }),
  ssh: z.object({
    host: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9.:-]*$/, { message: 'must be a host name or address' })
      .optional(),
    user: z
      .string()
      .regex(/^[a-z_][a-z0-9_.-]*$/, { message: 'must be a user name' })
      .optional(),
    port: port.optional(),
    identityFile: z.string().regex(SAFE, { message: 'must be a path without blanks or quotes' }).optional(),
    sshOptions: z.array(z.string().regex(SAFE, { message: 'must be an ssh argument without blanks or quotes' })).optional(),
    owner: z
      .string()
      .regex(/^[0-9]+:[0-9]+$/, { message: 'must be uid:gid, e.g. 10001:10001' })
      .optional(),
  }),
});

export class NfsExportApply extends Construct {
  /** The exports file written on the server. */
  public readonly file: string;
  /** The terraform_data resource (the preflight depends on it). */
  public readonly resource: DataResource;

  constructor(scope: Construct, id: string, props: NfsExportApplyProps) {
    super(scope, id);
    this.node.addValidation(propsValidation('NfsExportApply', propsSchema, props));
    this.file = `/etc/exports.d/${props.name}.exports`;
    const ssh = sshCommand(props.export.server, props.ssh);
    const owner = props.ssh.owner ?? '10001:10001';
    const apply = applyCommand(ssh, { path: props.export.path, line: props.export.line, file: this.file, owner });
    this.resource = new DataResource(this, 'Export', {
      input: { destroy: removeCommand(ssh, this.file) },
      triggersReplace: { ssh, file: this.file, line: props.export.line, owner },
      provisioners: [
        { type: 'local-exec', command: apply },
        // Destroy provisioners may refer to self only: the command of the instance being destroyed, from state.
        { type: 'local-exec', when: 'destroy', command: '${self.input.destroy}' },
      ],
    });
  }
}

/** `ssh … user@host <remote>`: batch mode (never a password prompt), root or `sudo -n`. */
export function sshCommand(server: string, o: NfsExportSshOptions): string {
  const user = o.user ?? 'root';
  return [
    'ssh -o BatchMode=yes',
    ...(o.port && o.port !== 22 ? [`-p ${o.port}`] : []),
    ...(o.identityFile ? [`-i ${o.identityFile}`] : []),
    ...(o.sshOptions ?? []),
    `${user}@${o.host ?? server}`,
    user === 'root' ? 'sh -s' : 'sudo -n sh -s',
  ].join(' ');
}

/** The script sent on stdin: values are validated at synth (no quotes or blanks in path; line quoted once). */
export function applyCommand(ssh: string, v: { path: string; line: string; file: string; owner: string }): string {
  return [
    `${ssh} <<'DTR_CACHE_EXPORT'`,
    'set -eu',
    `dir='${v.path}'; file='${v.file}'; line='${v.line}'`,
    'mkdir -p "$dir" /etc/exports.d',
    `chown ${v.owner} "$dir"`,
    'if [ "$(cat "$file" 2>/dev/null || true)" != "$line" ]; then printf \'%s\\n\' "$line" > "$file.tmp"; mv "$file.tmp" "$file"; echo "wrote $file: $line"; fi',
    'exportfs -ra',
    'DTR_CACHE_EXPORT',
  ].join('\n');
}

/** Removes the exports file and re-exports; the directory and its content stay. */
export function removeCommand(ssh: string, file: string): string {
  return [`${ssh} <<'DTR_CACHE_EXPORT'`, 'set -eu', `rm -f '${file}'`, 'exportfs -ra', 'DTR_CACHE_EXPORT'].join('\n');
}
