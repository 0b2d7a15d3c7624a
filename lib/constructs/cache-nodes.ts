/**
 * The swarm nodes that run cache replicas, labelled so that the service's placement constraint selects them.
 *
 * The docker provider has no node resource, so two `terraform_data` per site set the labels with local-exec steps that
 * read everything they act on (label key, node list, swarm connection) from the resource's own `input` through `self`:
 * - `LabelOwner` (input: key and connection) has only a destroy step: it removes the site's labels from every node of
 *   its swarm that it owns (`<key>.owner=<its id>`). A change of key or connection replaces it, destroy first, and
 *   Terraform runs a replaced instance's destroy step with the OLD `self`: the old labels leave the old swarm.
 * - `Labels` (input: key, nodes, connection and the owner's id, all of it `triggers_replace`) has only a create step,
 *   so any change re-runs it: it labels exactly the listed nodes (`<key>=true`, `<key>.owner=<owner id>`) and removes
 *   `<key>` from every node of the swarm that carries it but is not listed. A listed node keeps its label through a
 *   change of the list, so its replica keeps running.
 * Neither is ever removed while the site exists (a removed `terraform_data` would lose its destroy step), and a
 * create_before_destroy replacement is not used: Terraform runs no destroy step for a deposed object.
 */
import { Construct } from 'constructs';
import { DataResource, Fn, Token } from 'cdktf';
import { z } from 'zod';
import { SwarmConnection } from './base/swarm-connection';
import { check, nodeName, propsValidation } from './base/validation';

export interface CacheNodesProps {
  /** Node IDs or hostnames of the swarm nodes to run replicas on (dedicated workers, one replica per node). */
  readonly nodes: string[];
  /**
   * How the Docker CLI reaches the swarm; the same object should configure the stack's docker provider.
   * @default SwarmConnection.localSocket()
   */
  readonly connection?: SwarmConnection;
  /**
   * The node label key; its value is always "true".
   * @default "dtr.cache"
   */
  readonly labelKey?: string;
}

const propsSchema = z.object({
  nodes: z.array(nodeName).min(1, { message: 'list at least one node ID or hostname to run the cache on' }),
  labelKey: z
    .string()
    .regex(/^[a-z0-9][a-z0-9._-]*$/, { message: 'must be a label key such as dtr.cache (lower-case letters, digits, dot, dash)' })
    .optional(),
});

export class CacheNodes extends Construct {
  /** The label key set to "true" on every node. */
  public readonly labelKey: string;
  /** The labelled nodes, in the order given. */
  public readonly nodes: readonly string[];
  /** The placement constraint selecting these nodes. */
  public readonly placementConstraint: string;
  /** The terraform_data that labels exactly the listed nodes on every change (the service depends on it). */
  public readonly labelStep: DataResource;
  /** The terraform_data whose destroy step removes the labels it owns. */
  public readonly labelOwner: DataResource;

  constructor(scope: Construct, id: string, props: CacheNodesProps) {
    super(scope, id);
    const nodesAreToken = Token.isUnresolved(props.nodes);
    if (!nodesAreToken) {
      this.node.addValidation(propsValidation('CacheNodes', propsSchema, props));
      this.node.addValidation(
        check(() => {
          const seen = new Set<string>();
          const dupes = props.nodes.filter((n) => seen.size === seen.add(n).size);
          return dupes.length ? [`CacheNodes: nodes: ${dupes.join(', ')} listed twice; list each node once (one replica per node)`] : [];
        }),
      );
    }
    this.labelKey = props.labelKey ?? 'dtr.cache';
    this.nodes = [...props.nodes];
    this.placementConstraint = `node.labels.${this.labelKey} == true`;
    const connection = props.connection ?? SwarmConnection.localSocket();
    const environment = connection.environment(this);
    // Sorted: reordering the list changes nothing. A token list (a Terraform variable) is joined at apply time; the
    // script reads it word by word, so node names never reach the shell unquoted as code.
    const nodes = nodesAreToken ? Fn.join(' ', props.nodes) : [...new Set(props.nodes)].sort().join(' ');
    const fromSelf = SwarmConnection.fromSelfInput(environment);
    const ownerInput = { key: this.labelKey, environment };
    this.labelOwner = new DataResource(this, 'LabelOwner', {
      input: ownerInput,
      triggersReplace: ownerInput,
      provisioners: [
        {
          type: 'local-exec',
          when: 'destroy',
          command: REMOVE_OWNED_LABELS,
          environment: { ...fromSelf, LABEL_KEY: '${self.input.key}', OWNER: '${self.id}' },
        },
      ],
    });
    const input = { ...ownerInput, nodes, owner: this.labelOwner.id };
    this.labelStep = new DataResource(this, 'Labels', {
      input,
      triggersReplace: input,
      provisioners: [
        {
          type: 'local-exec',
          command: RECONCILE_LABELS,
          environment: { ...fromSelf, LABEL_KEY: '${self.input.key}', NODES: '${self.input.nodes}', OWNER: '${self.input.owner}' },
        },
      ],
    });
  }
}

/**
 * `update <docker node update arguments>`: tried again up to 10 times a second apart while the swarm answers "update
 * out of sequence": its optimistic concurrency refusing a write made against a node version that another writer (a
 * second site or deploy labelling the same node, an operator) has just changed. Of 8 concurrent plain updates of one
 * node, 7 fail that way; every round lets at least one through, so 10 writers of one node all succeed. Any other
 * failure fails at once, with the CLI's message.
 *
 * `unlabel <node ID>`: removes `$LABEL_KEY` and `$LABEL_KEY.owner`, whichever the node has (`--label-rm` of a label
 * that is not set fails).
 *
 * POSIX sh, as Terraform's local-exec runs it; no dollar-brace, which Terraform would interpolate.
 */
const SCRIPT_FUNCTIONS =
  'update() { for attempt in 1 2 3 4 5 6 7 8 9 10; do out=$(docker node update "$@" 2>&1) && { echo "$out"; return 0; }; ' +
  'case "$out" in *"update out of sequence"*) sleep 1 ;; *) break ;; esac; done; echo "$out" >&2; return 1; }\n' +
  'unlabel() { rm=""; for k in "$LABEL_KEY" "$LABEL_KEY.owner"; do ' +
  'v=$(docker node inspect --format "{{index .Spec.Labels \\"$k\\"}}" "$1") || return 1; ' +
  '[ -n "$v" ] && rm="$rm --label-rm $k"; done; [ -z "$rm" ] || update $rm "$1"; }\n';

/**
 * The create step: resolves every listed name to its node ID (failing on a node not in the swarm), labels those
 * nodes, then unlabels every node carrying `$LABEL_KEY` that is not listed.
 */
export const RECONCILE_LABELS =
  SCRIPT_FUNCTIONS +
  'listed=""; for n in $NODES; do id=$(docker node inspect --format "{{.ID}}" "$n") || exit 1; listed="$listed $id"; done\n' +
  'for id in $listed; do update --label-add "$LABEL_KEY=true" --label-add "$LABEL_KEY.owner=$OWNER" "$id" || exit 1; done\n' +
  'carrying=$(docker node ls --quiet --filter "node.label=$LABEL_KEY") || exit 1\n' +
  'for id in $carrying; do case " $listed " in *" $id "*) ;; *) unlabel "$id" || exit 1 ;; esac; done\n';

/** The destroy step: unlabels the nodes this instance owns (a node that left the swarm has nothing to remove). */
export const REMOVE_OWNED_LABELS =
  SCRIPT_FUNCTIONS +
  'owned=$(docker node ls --quiet --filter "node.label=$LABEL_KEY.owner=$OWNER") || exit 1\n' +
  'for id in $owned; do unlabel "$id" || exit 1; done\n';
