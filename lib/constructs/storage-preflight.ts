/**
 * A check, before the cache service rolls, that every cache node mounts the site's shared volume and sees what the
 * others write. The docker provider's docker_service has no job mode, so this is a `terraform_data` whose local-exec
 * runs one-shot tasks through the site's connection, one per node pinned by node ID, in two rounds: each node writes a probe file the way the cache commits a blob (write, fsync, rename), then each node that wrote
 * reads every other node's probe. A node whose job cannot mount the volume, write, or read another's probe fails
 * the deploy, named with the task's error and its output; the other nodes are listed as passing.
 *
 * A one-shot task is a replicated service of one replica with restart condition none, not a `replicated-job`: the
 * tasks of a job, and their containers, outlive `docker service rm` (moby/moby#42789, #44312; on the test engine,
 * 20.10.24, the exited containers stayed and kept the volume in use, so `docker volume rm` failed). A service's
 * task is removed with it.
 */
import { Construct } from 'constructs';
import { DataResource, ITerraformDependable } from 'cdktf';
import { ServiceTaskSpecContainerSpecMounts } from '@cdktf/provider-docker/lib/service';
import { SwarmConnection } from './base/swarm-connection';

export interface StoragePreflightProps {
  /** Node IDs or hostnames to check (the cache nodes). */
  readonly nodes: string[];
  /** The volume mount of the cache service, mounted the same way by the jobs. */
  readonly mount: ServiceTaskSpecContainerSpecMounts;
  /** An image with node in it (the cache image); the jobs run `node -e`. */
  readonly image: string;
  /** Prefix of the job names, e.g. dtr-cache-asia. */
  readonly namePrefix: string;
  /** How the Docker CLI reaches the swarm. @default SwarmConnection.localSocket() */
  readonly connection?: SwarmConnection;
  /** Seconds each round waits for its jobs to finish. @default 120 */
  readonly timeoutSeconds?: number;
  /** Resources that must exist first (the export being applied). @default none */
  readonly dependsOn?: ITerraformDependable[];
}

export class StoragePreflight extends Construct {
  /** The terraform_data resource (the service depends on it). */
  public readonly resource: DataResource;

  constructor(scope: Construct, id: string, props: StoragePreflightProps) {
    super(scope, id);
    const connection = props.connection ?? SwarmConnection.localSocket();
    const nodes = [...new Set(props.nodes)];
    this.resource = new DataResource(this, 'Check', {
      // Runs again when what it checks changes: the volume (its name carries the options' hash), the nodes, the image.
      triggersReplace: { volume: props.mount.source ?? '', nodes: nodes.join(','), image: props.image, host: connection.host },
      dependsOn: props.dependsOn,
      provisioners: [
        {
          type: 'local-exec',
          command: preflightCommand({ ...props, nodes }),
          environment: connection.environment(),
        },
      ],
    });
  }
}

/**
 * The job's program (node, no shell in the image): `write <dir> <self>` commits <dir>/<self> with write, fsync, close
 * and rename; `read <dir> <self> <others…>` checks each other node's probe. No single quotes and no `${`: the
 * program sits in a single-quoted shell word inside a Terraform string.
 */
export const PROBE_PROGRAM = [
  'const fs=require("fs"),path=require("path");',
  'const [mode,dir,self,...others]=process.argv.slice(1);',
  'const expected=(n)=>"dtr-cache preflight "+path.basename(dir)+" "+n+"\\n";',
  'if(mode==="write"){',
  // Runs of earlier deploys (kept so a slow reader still finds them) go after an hour.
  'const root=path.dirname(dir);fs.mkdirSync(dir,{recursive:true});',
  'for(const d of fs.readdirSync(root)){const f=path.join(root,d);try{if(Date.now()-fs.statSync(f).mtimeMs>3600000)fs.rmSync(f,{recursive:true,force:true})}catch(e){}}',
  'const tmp=path.join(dir,self+".tmp");const fd=fs.openSync(tmp,"w");fs.writeSync(fd,expected(self));fs.fsyncSync(fd);fs.closeSync(fd);',
  'fs.renameSync(tmp,path.join(dir,self));console.log("wrote "+path.join(dir,self));',
  '}else{',
  'const bad=[];for(const n of others){let got;try{got=fs.readFileSync(path.join(dir,n),"utf8")}catch(e){got=e.code}',
  'if(got!==expected(n))bad.push(n+" ("+(/^E[A-Z]+$/.test(got)?got:"unexpected content")+")")}',
  'if(bad.length){console.log("cannot read the probe of "+bad.join(", "));process.exit(3)}',
  'console.log("read the probes of "+others.join(", "))}',
].join('');

/** The `--mount` value of `mount`: CSV, with the fields that hold commas (the NFS `o` option) quoted. */
export function mountFlag(mount: ServiceTaskSpecContainerSpecMounts): string {
  const fields = [`type=${mount.type}`, `source=${mount.source}`, `target=${mount.target}`];
  const v = mount.volumeOptions;
  if (v?.driverName) fields.push(`volume-driver=${v.driverName}`);
  for (const [key, value] of Object.entries(v?.driverOptions ?? {})) fields.push(`volume-opt=${key}=${value}`);
  for (const l of Array.isArray(v?.labels) ? v.labels : []) fields.push(`volume-label=${l.label}=${l.value}`);
  return fields.map((f) => (f.includes(',') ? `"${f}"` : f)).join(',');
}

/**
 * The local-exec: POSIX sh running the Docker CLI. Every loop is bounded by timeoutSeconds; the jobs are removed on
 * exit (trap), whatever the outcome. No `${` and no `%{`, which Terraform would interpolate.
 */
export function preflightCommand(props: StoragePreflightProps): string {
  const timeout = props.timeoutSeconds ?? 120;
  const dir = `${props.mount.target}/_preflight`;
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return [
    `set -u`,
    `run=$(date +%s)-$$; label=dtr.cache.preflight=$run; prefix=${q(`${props.namePrefix}-probe`)}`,
    `image=${q(props.image)}; mount=${q(mountFlag(props.mount))}; dir=${q(dir)}/$run`,
    `program=${q(PROBE_PROGRAM)}`,
    `passed=''; failures=''`,
    `cleanup() { docker service ls -q --filter "label=$label" | xargs -r docker service rm >/dev/null 2>&1; }`,
    `trap cleanup EXIT`,
    // start <service> <node> <args…>: a one-shot task on that node, mounting the volume as the service does; the image
    // as given (not resolved to a digest), as the cache service runs it.
    `start() { svc=$1; node=$2; shift 2`,
    `  id=$(docker node inspect --format '{{.ID}}' "$node" 2>&1) || { echo "not a node of this swarm: $id"; return 1; }`,
    `  docker service create --detach --quiet --name "$svc" --label "$label" --replicas 1 --restart-condition none \\`,
    `    --constraint "node.id==$id" --mount "$mount" --no-resolve-image --entrypoint node "$image" -e "$program" "$@" 2>&1 >/dev/null; }`,
    // outcome <service>: "ok", or the task's state, error and output once it has finished (or the round's time is up).
    `outcome() { state=''`,
    `  while [ "$(date +%s)" -lt "$deadline" ]; do`,
    `    state=$(docker service ps --no-trunc --format '{{.CurrentState}}: {{.Error}}' "$1" 2>&1 | head -n 1)`,
    `    case "$state" in Complete*) echo ok; return ;; Failed*|Rejected*|Shutdown*) break ;; esac`,
    `    sleep 1`,
    `  done`,
    `  [ "$(date +%s)" -lt "$deadline" ] || state="not finished after ${timeout} s ($state)"`,
    `  echo "$state $(docker service logs --raw "$1" 2>/dev/null | tail -n 3 | tr '\\n' ' ')"; }`,
    // round <phase> <nodes>: one job per node, then each one's outcome; ok nodes go to $ok, the others to $failures.
    `round() { phase=$1; shift; ok=''; n=0; started=''; deadline=$(( $(date +%s) + ${timeout} ))`,
    `  for node in "$@"; do n=$((n + 1)); svc="$prefix-$phase$n-$run"`,
    `    if [ "$phase" = write ]; then out=$(start "$svc" "$node" write "$dir" "$node"); else`,
    `      others=$(for o in "$@"; do [ "$o" = "$node" ] || printf '%s ' "$o"; done)`,
    `      out=$(start "$svc" "$node" read "$dir" "$node" $others); fi`,
    `    if [ $? -eq 0 ]; then started="$started $node=$svc"; else failures="$failures\\n  $node: $phase: $out"; fi`,
    `  done`,
    `  for pair in $started; do node=$(echo "$pair" | cut -d= -f1); out=$(outcome "$(echo "$pair" | cut -d= -f2)")`,
    `    if [ "$out" = ok ]; then ok="$ok $node"; else failures="$failures\\n  $node: $phase: $out"; fi`,
    `  done; }`,
    `round write ${props.nodes.join(' ')}`,
    `writers=$ok`,
    `case "$writers" in *' '*' '*) round read $writers; passed=$ok ;; *) passed=$writers ;; esac`,
    `if [ -n "$failures" ]; then`,
    `  [ -n "$passed" ] || passed=' none'`,
    `  printf 'storage preflight of %s failed on:%b\\npassed on:%s\\n' "$mount" "$failures" "$passed" >&2; exit 1`,
    `fi`,
    `echo "storage preflight passed on:$passed (mount, write, and each other node's probe read)"`,
  ].join('\n');
}
