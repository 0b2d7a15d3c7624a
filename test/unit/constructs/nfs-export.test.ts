/**
 * The NFS export model: the rendered /etc/exports line, the checks at synth, the hashed volume name, and the SSH
 * apply step as synthesized. No NFS client or server runs here (the kernel has neither); the apply step runs against
 * a real sshd in test/e2e/nfs-export-ssh.test.ts, the preflight on a swarm in test/e2e/storage-preflight.test.ts.
 */
import { TerraformStack } from 'cdktf';
import { NfsExport, SharedStorage, StorageBackend } from '../../../lib/constructs';
import { annotations, newStack, resourcesOf, synth, validationErrors } from './helpers';

const storage = (options: Parameters<typeof StorageBackend.nfs>[0]) =>
  new SharedStorage(newStack(), 'Storage', { backend: StorageBackend.nfs(options), namePrefix: 'dtr-cache-asia' });

describe('NfsExport', () => {
  it('renders the DTR guide line by default: /dtr-cache *(rw,root_squash,no_wdelay)', () => {
    const e = new NfsExport({ server: 'nfs.asia.example.com' });
    expect(e.line).toBe('/dtr-cache *(rw,root_squash,no_wdelay)');
    expect(e.volumeOptions).toBe('addr=nfs.asia.example.com,rw,nfsvers=4,hard,lookupcache=positive');
    expect(e.problems()).toEqual([]);
  });

  it('renders one client entry per client, each with the options', () => {
    const e = new NfsExport({
      server: '10.0.0.10',
      path: '/srv/dtr-cache',
      clients: ['10.0.1.0/24', 'cache-*.asia.example.com', '@cachenodes'],
      exportOptions: 'rw,sync,root_squash,no_wdelay,sec=sys',
    });
    expect(e.line).toBe(
      '/srv/dtr-cache 10.0.1.0/24(rw,sync,root_squash,no_wdelay,sec=sys) cache-*.asia.example.com(rw,sync,root_squash,no_wdelay,sec=sys) @cachenodes(rw,sync,root_squash,no_wdelay,sec=sys)',
    );
    expect(e.problems()).toEqual([]);
    expect(e.warnings()).toEqual([]);
  });

  it('accepts IPv6 servers and rejects what would break addr= or the exports line, naming the option and the fix', () => {
    expect(new NfsExport({ server: 'fd00::10' }).problems()).toEqual([]);
    expect(
      new NfsExport({
        server: 'nfs.example.com,soft',
        path: 'dtr-cache',
        clients: ['10.0.0.0/24 *'],
        exportOptions: 'rw, root_squash',
        mountOptions: 'ro,soft',
      }).problems(),
    ).toEqual([
      'StorageBackend.nfs: server: "nfs.example.com,soft" must be a host name or an IP address (it goes into addr=<server>), e.g. nfs.asia.example.com',
      'StorageBackend.nfs: path: "dtr-cache" must be an absolute path of letters, digits and . _ + - (no blanks, commas, quotes, parentheses or ..), e.g. /dtr-cache',
      'StorageBackend.nfs: clients: "10.0.0.0/24 *" must be a host, address, CIDR, wildcard or @netgroup, without blanks or parentheses',
      'StorageBackend.nfs: exportOptions: " root_squash" is not an option; give comma-separated options without blanks, e.g. rw,hard',
      'StorageBackend.nfs: mountOptions: "ro,soft" must include rw and not ro: the cache writes every blob it fetches, and a read-only share fails every fill',
    ]);
    expect(new NfsExport({ server: 'n', path: '/a/../etc' }).problems()).toHaveLength(1);
    expect(new NfsExport({ server: 'n', path: '/a b' }).problems()).toHaveLength(1);
    expect(new NfsExport({ server: 'n', clients: [] }).problems()).toEqual([
      'StorageBackend.nfs: clients: list at least one client, e.g. ["10.0.0.0/24"]',
    ]);
    expect(new NfsExport({ server: 'n', exportOptions: 'root_squash' }).problems()).toEqual([
      'StorageBackend.nfs: exportOptions: "root_squash" must include rw and not ro: the cache writes every blob it fetches, and a read-only share fails every fill',
    ]);
    expect(new NfsExport({ server: 'n', mountOptions: 'rw,addr=10.0.0.1' }).problems()).toEqual([
      'StorageBackend.nfs: mountOptions: leave out addr=; it is set from server',
    ]);
  });

  it('warns about *, async, insecure, no_root_squash and soft, with the reason', () => {
    const e = new NfsExport({ server: 'nfs', exportOptions: 'rw,async,insecure,no_root_squash', mountOptions: 'rw,soft' });
    expect(e.problems()).toEqual([]);
    const warnings = e.warnings();
    expect(warnings.map((w) => w.split(':').slice(0, 3).join(':'))).toEqual([
      'StorageBackend.nfs: clients: "*" exports /dtr-cache to any host that reaches nfs; list the cache nodes\' addresses or CIDRs in clients',
      'StorageBackend.nfs: exportOptions: async',
      'StorageBackend.nfs: exportOptions: insecure',
      'StorageBackend.nfs: exportOptions: no_root_squash',
      'StorageBackend.nfs: mountOptions: soft',
    ]);
    expect(warnings[1]).toContain('a server crash loses blobs the cache has already committed');
    expect(warnings[4]).toContain('fails reads and writes with EIO half way');
  });

  it('hashes server, path and mount options into the volume name, so a change reaches every node', () => {
    const base = storage({ server: 'nfs-a' }).mounts[0].source;
    expect(base).toMatch(/^dtr-cache-asia-nfs-[0-9a-f]{12}$/);
    expect(storage({ server: 'nfs-a' }).mounts[0].source).toBe(base);
    for (const changed of [
      { server: 'nfs-b' },
      { server: 'nfs-a', path: '/other' },
      { server: 'nfs-a', mountOptions: 'rw,nfsvers=3,hard' },
    ]) {
      expect(storage(changed).mounts[0].source).not.toBe(base);
    }
    // Export-side settings do not change how nodes mount it.
    expect(storage({ server: 'nfs-a', clients: ['10.0.0.0/24'] }).mounts[0].source).toBe(base);
  });
});

describe('SharedStorage with NFS', () => {
  it('reports the export problems as validation errors and its warnings as annotations', () => {
    const s = storage({ server: 'nfs a', exportOptions: 'rw,async' });
    expect(validationErrors(s)).toEqual([expect.stringMatching(/^StorageBackend\.nfs: server: "nfs a" must be a host name/)]);
    expect(annotations(s, 'warn')).toEqual([
      expect.stringMatching(/^StorageBackend\.nfs: clients: "\*" exports/),
      expect.stringMatching(/^StorageBackend\.nfs: exportOptions: async: /),
    ]);
  });

  it('without applyOverSsh, no resource: the export is the output line to apply by hand', () => {
    const s = storage({ server: 'nfs', clients: ['10.0.0.0/24'] });
    expect(s.nfsExportApply).toBeUndefined();
    expect(annotations(s, 'warn')).toEqual([]);
  });

  it('with applyOverSsh: a terraform_data that writes the exports file over ssh and removes it on destroy', () => {
    const s = storage({
      server: 'nfs.asia.example.com',
      clients: ['10.0.1.0/24'],
      applyOverSsh: { user: 'deploy', port: 2222, identityFile: '/keys/nfs', sshOptions: ['-o', 'StrictHostKeyChecking=yes'] },
    });
    expect(validationErrors(s)).toEqual([]);
    expect(s.nfsExportApply?.file).toBe('/etc/exports.d/dtr-cache-asia.exports');
    const [resource] = resourcesOf(synth(TerraformStack.of(s)), 'terraform_data');
    const ssh = 'ssh -o BatchMode=yes -p 2222 -i /keys/nfs -o StrictHostKeyChecking=yes deploy@nfs.asia.example.com sudo -n sh -s';
    expect(resource.triggers_replace).toEqual({
      ssh,
      file: '/etc/exports.d/dtr-cache-asia.exports',
      line: '/dtr-cache 10.0.1.0/24(rw,root_squash,no_wdelay)',
      owner: '10001:10001',
    });
    const [create, destroy] = resource.provisioner;
    expect(create['local-exec'].command).toBe(
      [
        `${ssh} <<'DTR_CACHE_EXPORT'`,
        'set -eu',
        "dir='/dtr-cache'; file='/etc/exports.d/dtr-cache-asia.exports'; line='/dtr-cache 10.0.1.0/24(rw,root_squash,no_wdelay)'",
        'mkdir -p "$dir" /etc/exports.d',
        'chown 10001:10001 "$dir"',
        `if [ "$(cat "$file" 2>/dev/null || true)" != "$line" ]; then printf '%s\\n' "$line" > "$file.tmp"; mv "$file.tmp" "$file"; echo "wrote $file: $line"; fi`,
        'exportfs -ra',
        'DTR_CACHE_EXPORT',
      ].join('\n'),
    );
    // The destroy step runs the command recorded in state: after a change, the old file on the old server goes.
    expect(destroy['local-exec']).toEqual({ command: '${self.input.destroy}', when: 'destroy' });
    expect(resource.input.destroy).toBe(
      `${ssh} <<'DTR_CACHE_EXPORT'\nset -eu\nrm -f '/etc/exports.d/dtr-cache-asia.exports'\nexportfs -ra\nDTR_CACHE_EXPORT`,
    );
  });

  it('rejects ssh options that would break the command', () => {
    const s = storage({
      server: 'nfs',
      clients: ['10.0.0.0/24'],
      applyOverSsh: { user: 'Root Admin', sshOptions: ['-o', 'a b'], owner: '10001' },
    });
    expect(validationErrors(s).sort()).toEqual([
      'NfsExportApply: ssh.owner: must be uid:gid, e.g. 10001:10001',
      'NfsExportApply: ssh.sshOptions.1: must be an ssh argument without blanks or quotes',
      'NfsExportApply: ssh.user: must be a user name',
    ]);
  });
});
