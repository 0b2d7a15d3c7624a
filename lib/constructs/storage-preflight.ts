/**
 * A check, before the cache service rolls, that every cache node mounts the site's shared volume and sees what the
 * others write. The docker provider's docker_service has no job mode, so this is a `terraform_data` whose local-exec
 * runs one-shot tasks through the site's connection, one per node pinned by node ID, in two rounds: each node writes
 * a probe file the way the cache commits a blob (write, fsync, rename), then each node that wrote reads every other
 * node's probe. A node whose task cannot mount the volume, write, or read another's probe fails the deploy, named
 * with the task's error and its output; the other nodes are listed as passing. On destroy, after the service, a
 * second resource removes the volume from every node the same way (a task with the node's engine socket).
 *
 * A one-shot task is a replicated service of one replica with restart condition none, not a `replicated-job`: the
 * tasks of a job, and their containers, outlive `docker service rm` (moby/moby#42789, #44312; on the test engine,
 * 20.10.24, the exited containers stayed and kept the volume in use, so `docker volume rm` failed). A service's
 * task is removed with it.
 */
import { Construct } from 'constructs';
import { DataResource, Fn, ITerraformDependable, Token } from 'cdktf';
import { ServiceTaskSpecContainerSpecMounts } from '@cdktf/provider-docker/lib/service';
import { SwarmConnection } from './base/swarm-connection';

export interface StoragePreflightProps {
  /** Node IDs or hostnames to check (the cache nodes); a list token (a Terraform variable) is joined at apply. */
  readonly nodes: string[];
  /** The volume mount of the cache service, mounted the same way by the tasks. */
  readonly mount: ServiceTaskSpecContainerSpecMounts;
  /** An image with node in it (the cache image); the tasks run `node -e`. */
  readonly image: string;
  /** Prefix of the task services' names, e.g. dtr-cache-asia. */
  readonly namePrefix: string;
  /** How the Docker CLI reaches the swarm. @default SwarmConnection.localSocket() */
  readonly connection?: SwarmConnection;
  /** Seconds each round waits for its tasks to finish. @default 120 */
  readonly timeoutSeconds?: number;
  /** Resources that must exist first (the export being applied). @default none */
  readonly dependsOn?: ITerraformDependable[];
  /** Remove the volume from every node on destroy. @default true */
  readonly removeVolumeOnDestroy?: boolean;
  /**
   * The engine socket on each node, bind-mounted into the removal task; Docker service templates such as
   * {{.Node.Hostname}} work here.
   * @default "/var/run/docker.sock"
   */
  readonly nodeDockerSocket?: string;
}

export class StoragePreflight extends Construct {
  /** The check (a terraform_data resource). */
  public readonly resource: DataResource;
  /** The check and the volume removal: the service depends on them, so it goes first on destroy. */
  public readonly resources: readonly DataResource[];

  constructor(scope: Construct, id: string, props: StoragePreflightProps) {
    super(scope, id);
    const connection = props.connection ?? SwarmConnection.localSocket();
    // The node names reach the scripts as the words of $NODES, never as shell code.
    const nodes = Token.isUnresolved(props.nodes) ? Fn.join(' ', props.nodes) : [...new Set(props.nodes)].join(' ');
    const environment = connection.environment(this);
    this.resource = new DataResource(this, 'Check', {
      // Runs again when what it checks changes: the volume (its name carries the options' hash), the nodes, the image.
      triggersReplace: { volume: props.mount.source ?? '', nodes, image: props.image, host: connection.host },
      dependsOn: props.dependsOn,
      provisioners: [
        {
          type: 'local-exec',
          command: preflightCommand(props),
          environment: { ...environment, NODES: nodes },
        },
      ],
    });
    const removal =
      (props.removeVolumeOnDestroy ?? true) &&
      new DataResource(this, 'VolumeRemoval', {
        input: { destroy: volumeRemovalCommand(props), environment, nodes },
        triggersReplace: { volume: props.mount.source ?? '', nodes, host: connection.host },
        // A new volume name (changed options) makes a new resource first; the old volume's removal runs after the
        // service has moved to the new one. Destroy-time provisioners may refer to self only: the command and environment
        // from state.
        lifecycle: { createBeforeDestroy: true },
        provisioners: [
          {
            type: 'local-exec',
            when: 'destroy',
            command: '${self.input.destroy}',
            environment: { ...SwarmConnection.fromSelfInput(environment), NODES: '${self.input.nodes}' },
          },
        ],
      });
    this.resources = removal ? [this.resource, removal] : [this.resource];
  }
}

/**
 * The probe task's program (node, no shell in the image): `write <dir> <self>` commits <dir>/<self> with write, fsync, close
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

/** A shell word: single-quoted. */
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The shell both local-execs share (POSIX sh running the Docker CLI). `start <service> <node> <args…>` creates a
 * one-shot task on that node with $flags, the image as given (not resolved to a digest, as the cache service runs it)
 * and `node -e "$program" <args…>`; `round <phase> <nodes…>` starts one task per node through the caller's `launch`,
 * then waits for each (until $deadline) and puts the nodes that completed in $ok, the others, with the task's state,
 * error and output, in $failures. Tasks are removed on exit, whatever the outcome. Every loop is bounded; no `${` and
 * no `%{`, which Terraform would interpolate.
 */
function taskRunner(o: { namePrefix: string; image: string; flags: string; program: string; timeout: number }): string[] {
  return [
    'set -u -f',
    `run=$(date +%s)-$$; label=dtr.cache.preflight=$run; prefix=${q(o.namePrefix)}`,
    `image=${q(o.image)}; flags=${q(o.flags)}; program=${q(o.program)}; failures=''`,
    `cleanup() { docker service ls -q --filter "label=$label" | xargs -r docker service rm >/dev/null 2>&1; }`,
    'trap cleanup EXIT',
    'start() { svc=$1; node=$2; shift 2',
    `  id=$(docker node inspect --format '{{.ID}}' "$node" 2>&1) || { echo "not a node of this swarm: $id"; return 1; }`,
    '  docker service create --detach --quiet --name "$svc" --label "$label" --replicas 1 --restart-condition none \\',
    '    --constraint "node.id==$id" --no-resolve-image $flags --entrypoint node "$image" -e "$program" "$@" 2>&1 >/dev/null; }',
    "outcome() { state=''",
    '  while [ "$(date +%s)" -lt "$deadline" ]; do',
    `    state=$(docker service ps --no-trunc --format '{{.CurrentState}}: {{.Error}}' "$1" 2>&1 | head -n 1)`,
    '    case "$state" in Complete*) echo ok; return ;; Failed*|Rejected*|Shutdown*) break ;; esac',
    '    sleep 1',
    '  done',
    `  [ "$(date +%s)" -lt "$deadline" ] || state="not finished after ${o.timeout} s ($state)"`,
    `  echo "$state $(docker service logs --raw "$1" 2>/dev/null | tail -n 3 | tr '\\n' ' ')"; }`,
    `round() { phase=$1; shift; ok=''; n=0; started=''; deadline=$(( $(date +%s) + ${o.timeout} ))`,
    '  for node in "$@"; do n=$((n + 1)); svc="$prefix-$phase$n-$run"',
    '    if out=$(launch "$phase" "$svc" "$node" "$@"); then started="$started $node=$svc"; else failures="$failures\\n  $node: $phase: $out"; fi',
    '  done',
    '  for pair in $started; do node=$(echo "$pair" | cut -d= -f1); out=$(outcome "$(echo "$pair" | cut -d= -f2)")',
    '    if [ "$out" = ok ]; then ok="$ok $node"; else failures="$failures\\n  $node: $phase: $out"; fi',
    '  done; }',
  ];
}

/** The preflight's local-exec: a write round on every node of $NODES, then a read round on the nodes that wrote. */
export function preflightCommand(props: StoragePreflightProps): string {
  const timeout = props.timeoutSeconds ?? 120;
  const mount = mountFlag(props.mount);
  return [
    ...taskRunner({
      namePrefix: `${props.namePrefix}-probe`,
      image: props.image,
      flags: `--mount ${mount}`,
      program: PROBE_PROGRAM,
      timeout,
    }),
    `mount=${q(mount)}; dir=${q(`${props.mount.target}/_preflight`)}/$run`,
    // launch <phase> <service> <node> <all nodes…>
    'launch() { phase=$1; svc=$2; node=$3; shift 3',
    '  if [ "$phase" = write ]; then start "$svc" "$node" write "$dir" "$node"; return; fi',
    `  others=$(for o in "$@"; do [ "$o" = "$node" ] || printf '%s ' "$o"; done)`,
    '  start "$svc" "$node" read "$dir" "$node" $others; }',
    'round write $NODES',
    'writers=$ok',
    // unseen: the nodes whose probe every other node failed to read, i.e. whose volume is not the others' share.
    "unseen=''; unseen() { for x in $writers; do missed=yes",
    `  for y in $writers; do [ "$y" = "$x" ] || printf '%b' "$failures" | grep -q "^  $y: read: .* $x (" || { missed=no; break; }; done`,
    '  [ "$missed" = no ] || unseen="$unseen $x"; done; }',
    "case \"$writers\" in *' '*' '*) round read $writers; passed=$ok; unseen ;; *) passed=$writers ;; esac",
    'if [ -n "$failures" ]; then',
    '  [ -n "$passed" ] || passed=\' none\'',
    `  [ -z "$unseen" ] || failures="$failures\\nno other node read the probe of:$unseen (its volume is not the share the others mount)"`,
    `  printf 'storage preflight of %s failed on:%b\\npassed on:%s\\n' "$mount" "$failures" "$passed" >&2; exit 1`,
    'fi',
    `echo "storage preflight passed on:$passed (mount, write, and each other node's probe read)"`,
  ].join('\n');
}

/**
 * The removal task's program: DELETE /volumes/<name> on its node's engine socket, tried again every 2 s while the
 * engine answers 409 (a container of the removed service still holds it), until <seconds> have passed. Removed or
 * absent is success.
 */
export const REMOVE_PROGRAM = [
  'const http=require("http");const [name,seconds]=process.argv.slice(1);const end=Date.now()+Number(seconds)*1000;',
  'const del=()=>{const r=http.request({socketPath:"/var/run/docker.sock",method:"DELETE",path:"/volumes/"+encodeURIComponent(name)},(res)=>{res.resume();',
  'if(res.statusCode===204||res.statusCode===404){console.log(res.statusCode===204?"removed":"absent");process.exit(0)}',
  'if(res.statusCode===409&&Date.now()<end){setTimeout(del,2000);return}',
  'console.log("the engine answered "+res.statusCode+(res.statusCode===409?": the volume is still in use":""));process.exit(4)});',
  'r.on("error",(e)=>{console.log(e.message);process.exit(5)});r.end()};del();',
].join('');

/**
 * The removal's local-exec, run on destroy: one task per node of $NODES, as root with the node's engine socket, removes the
 * volume. A node where it fails (still in use, node gone) is reported and the volume left there; the destroy goes on.
 */
export function volumeRemovalCommand(props: StoragePreflightProps): string {
  const timeout = props.timeoutSeconds ?? 120;
  const socket = props.nodeDockerSocket ?? '/var/run/docker.sock';
  const volume = props.mount.source ?? '';
  return [
    ...taskRunner({
      namePrefix: `${props.namePrefix}-rmvol`,
      image: props.image,
      flags: `--user 0 --mount type=bind,source=${socket},target=/var/run/docker.sock`,
      program: REMOVE_PROGRAM,
      timeout: timeout + 30,
    }),
    `launch() { start "$2" "$3" ${q(volume)} ${timeout}; }`,
    'round remove $NODES',
    `[ -z "$ok" ] || echo "removed volume ${volume} on:$ok"`,
    `[ -z "$failures" ] || printf 'volume ${volume} left on (remove it there with docker volume rm):%b\\n' "$failures" >&2`,
    'exit 0',
  ].join('\n');
}
