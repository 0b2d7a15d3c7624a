/**
 * The site summary: DtrCacheSite writes it as its `<site>_summary` output (siteSummaryText), and `dtr-cache plan`
 * reads it back from a cdktf synth output directory (manifest.json + stacks/<name>/cdk.tf.json) with the stack's
 * warnings. Pure functions over files: no Terraform and no cloud access, so a CI job can post the result on a pull
 * request.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface SiteSummary {
  /** Datacenter name. */
  readonly datacenter: string;
  /** URL users pull from. */
  readonly cacheUrl: string;
  /** DTR (or next cache) URLs. */
  readonly upstreams: string[];
  /** Number of replicas. */
  readonly replicas: number;
  /** Labelled nodes. */
  readonly nodes: string[];
  /** Storage kind (nfs, s3, filesystem (container-local), ...). */
  readonly storage: string;
  /** The /etc/exports line, with NFS storage (absent in summaries of older synths). */
  readonly nfsExport?: string | null;
  /** Published port. */
  readonly port: number;
  /** ingress or host. */
  readonly publishMode: string;
  /** Image reference (as given, or the build name). */
  readonly image: string;
  /** How the deploy reaches the swarm. */
  readonly swarm: string;
  /** Certificate subject and expiry; null when not readable at synth. */
  readonly certificate: { subject: string; validTo: string; selfSigned: boolean } | null;
  /** Whether the certificates are generated TEST ONLY ones. */
  readonly testOnly: boolean;
}

/** Name of the site output that carries the summary, after the site's output prefix and an underscore. */
export const SUMMARY_OUTPUT = 'summary';

/** The summary as the text of the site's `summary` output. */
export function siteSummaryText(summary: SiteSummary): string {
  return JSON.stringify(summary);
}

/** The summary from the text of a site's `summary` output. */
export function parseSiteSummary(text: string): SiteSummary {
  return JSON.parse(text) as SiteSummary;
}

export interface StackSummary {
  /** Stack name. */
  readonly stack: string;
  /** Cache sites in the stack. */
  readonly sites: SiteSummary[];
  /** Warning and error annotations of the stack. */
  readonly warnings: string[];
  /** Resource address (type.name) → its JSON without cdktf metadata, for diffs. */
  readonly resources: Record<string, string>;
}

interface Manifest {
  stacks: Record<string, { synthesizedStackPath: string; annotations?: { level: string; message: string }[] }>;
}

/** Every stack of a synth output directory, sorted by name. Throws with the path when it is not one. */
export function readSynthOutput(dir: string): StackSummary[] {
  const manifestPath = join(dir, 'manifest.json');
  if (!existsSync(manifestPath)) throw new Error(`${dir} is not a cdktf synth output: ${manifestPath} is missing`);
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest;
  return Object.entries(manifest.stacks)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([stack, entry]) => {
      const json = JSON.parse(readFileSync(join(dir, entry.synthesizedStackPath), 'utf8')) as {
        output?: Record<string, { value: unknown }>;
        resource?: Record<string, Record<string, Record<string, unknown>>>;
      };
      const sites = Object.entries(json.output ?? {})
        .filter(([name, o]) => name.endsWith(`_${SUMMARY_OUTPUT}`) && typeof o.value === 'string')
        .map(([, o]) => parseSiteSummary(o.value as string));
      const warnings = (entry.annotations ?? [])
        .filter((a) => a.level === '@cdktf/warn' || a.level === '@cdktf/error')
        .map((a) => `${a.level === '@cdktf/error' ? 'error: ' : ''}${a.message}`);
      const resources: Record<string, string> = {};
      for (const [type, byName] of Object.entries(json.resource ?? {})) {
        for (const [name, body] of Object.entries(byName)) {
          const { '//': _metadata, ...rest } = body;
          resources[`${type}.${name}`] = JSON.stringify(rest);
        }
      }
      return { stack, sites, warnings, resources };
    });
}

/** Markdown: one section per stack, one table per site. */
export function renderSummary(stacks: readonly StackSummary[]): string {
  const out: string[] = ['# DTR cache plan', ''];
  for (const s of stacks) {
    out.push(`## Stack \`${s.stack}\``, '');
    if (s.sites.length === 0) out.push('No DtrCacheSite in this stack.', '');
    for (const site of s.sites) {
      out.push(`### ${site.datacenter}${site.testOnly ? ' (TEST ONLY certificates)' : ''}`, '', '| | |', '|---|---|');
      for (const [label, value] of siteRows(site)) out.push(`| ${label} | ${value} |`);
      out.push('');
    }
    out.push(s.warnings.length ? '**Warnings**' : '**Warnings:** none', ...s.warnings.map((w) => `- ${w}`), '');
  }
  return out.join('\n');
}

function siteRows(site: SiteSummary): [string, string][] {
  const cert = site.certificate;
  return [
    ['Cache URL', site.cacheUrl],
    ['Upstreams', site.upstreams.join(', ')],
    ['Replicas', String(site.replicas)],
    ['Nodes', site.nodes.join(', ')],
    ['Storage', site.storage],
    ...(site.nfsExport ? [['NFS export', `\`${site.nfsExport}\``] as [string, string]] : []),
    ['Port', `${site.port}/tcp (${site.publishMode === 'host' ? 'host mode, for an external load balancer' : 'routing mesh'})`],
    ['Image', `\`${site.image}\``],
    ['Swarm', site.swarm],
    [
      'Certificate',
      cert
        ? `${cert.subject}, expires ${cert.validTo.slice(0, 10)}${site.testOnly ? ' — **TEST ONLY, self-signed**' : cert.selfSigned ? ' (self-signed)' : ''}`
        : 'not readable at synth',
    ],
  ];
}

/** Markdown of what changed from `base` to `head`: stacks added/removed, site fields, resources. */
export function renderDiff(base: readonly StackSummary[], head: readonly StackSummary[]): string {
  const out: string[] = ['# Changes against base', ''];
  const baseBy = new Map(base.map((s) => [s.stack, s]));
  const headBy = new Map(head.map((s) => [s.stack, s]));
  let changed = false;
  for (const name of [...new Set([...baseBy.keys(), ...headBy.keys()])].sort()) {
    const b = baseBy.get(name);
    const h = headBy.get(name);
    if (!b || !h) {
      out.push(`- Stack \`${name}\` ${b ? 'removed' : 'added'}`);
      changed = true;
      continue;
    }
    const lines: string[] = [];
    const bSites = new Map(b.sites.map((s) => [s.datacenter, s]));
    for (const site of h.sites) {
      const before = bSites.get(site.datacenter);
      if (!before) {
        lines.push(`- site ${site.datacenter} added`);
        continue;
      }
      const beforeRows = new Map(siteRows(before));
      for (const [label, value] of siteRows(site)) {
        if (beforeRows.get(label) !== value) lines.push(`- ${site.datacenter}: ${label}: ${beforeRows.get(label)} → ${value}`);
      }
    }
    for (const site of b.sites) if (!h.sites.some((s) => s.datacenter === site.datacenter)) lines.push(`- site ${site.datacenter} removed`);
    for (const address of [...new Set([...Object.keys(b.resources), ...Object.keys(h.resources)])].sort()) {
      const was = b.resources[address];
      const now = h.resources[address];
      if (was === now) continue;
      lines.push(`- \`${address}\` ${was === undefined ? 'added' : now === undefined ? 'removed' : 'changed'}`);
    }
    if (lines.length) {
      out.push(`## Stack \`${name}\``, '', ...lines, '');
      changed = true;
    }
  }
  if (!changed) out.push('No changes.', '');
  return out.join('\n');
}
