/**
 * The swarm nodes that run cache replicas, labelled so that the service's placement constraint selects them.
 * The docker provider has no node resource, so each node is a `terraform_data` whose local-exec runs
 * `docker node update --label-add` on create and `--label-rm` on destroy: removing a node from the list removes
 * its label on the next deploy.
 */
import { Construct } from 'constructs';
import { DataResource } from 'cdktf';
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
  /** The terraform_data resources, one per node (the service depends on them). */
  public readonly labels: readonly DataResource[];

  constructor(scope: Construct, id: string, props: CacheNodesProps) {
    super(scope, id);
    this.node.addValidation(propsValidation('CacheNodes', propsSchema, props));
    this.node.addValidation(
      check(() => {
        const seen = new Set<string>();
        const dupes = props.nodes.filter((n) => seen.size === seen.add(n).size);
        return dupes.length ? [`CacheNodes: nodes: ${dupes.join(', ')} listed twice; list each node once (one replica per node)`] : [];
      }),
    );
    this.labelKey = props.labelKey ?? 'dtr.cache';
    this.nodes = [...props.nodes];
    this.placementConstraint = `node.labels.${this.labelKey} == true`;
    const connection = props.connection ?? SwarmConnection.localSocket();
    const environment = connection.environment();
    // One resource per node, with a construct ID derived from the node name: adding or removing a node touches only
    // that node's resource, and reordering the list changes nothing.
    this.labels = [...new Set(props.nodes)].map(
      (node) =>
        new DataResource(this, `Label-${node}`, {
          input: { node, label: `${this.labelKey}=true` },
          triggersReplace: { node, label: this.labelKey, host: connection.host },
          provisioners: [
            { type: 'local-exec', command: labelAddCommand(node, this.labelKey), environment },
            { type: 'local-exec', when: 'destroy', command: labelRemoveCommand(node, this.labelKey), environment },
          ],
        }),
    );
  }
}

/** Idempotent: adding a label that is already there succeeds. */
export function labelAddCommand(node: string, key: string): string {
  return retryingNodeUpdate(`docker node update --label-add ${key}=true ${node}`);
}

/**
 * Idempotent: `--label-rm` fails on a label that is not set, so it runs only when the node has it; a node that has
 * left the swarm has nothing to remove. A failing `docker node update` still fails the destroy.
 */
export function labelRemoveCommand(node: string, key: string): string {
  const has = `docker node inspect --format '{{index .Spec.Labels "${key}"}}' ${node} 2>/dev/null | grep -qx true`;
  return `if ${has}; then ${retryingNodeUpdate(`docker node update --label-rm ${key} ${node}`)}; fi`;
}

/**
 * `update` (a `docker node update`), tried again up to 10 times a second apart while the swarm answers "update out
 * of sequence": its optimistic concurrency refusing a write made against a node version that another writer (a
 * second site or deploy labelling the same node, an operator) has just changed. Of 8 concurrent plain updates of
 * one node, 7 fail that way; every round lets at least one through, so 10 writers of one node all succeed. Any
 * other failure fails at once, with the CLI's message. POSIX sh, as Terraform's local-exec runs it; no `${`, which
 * Terraform would interpolate.
 */
function retryingNodeUpdate(update: string): string {
  return (
    `for attempt in 1 2 3 4 5 6 7 8 9 10; do out=$(${update} 2>&1) && { echo "$out"; exit 0; }; ` +
    `case "$out" in *"update out of sequence"*) sleep 1 ;; *) break ;; esac; done; echo "$out" >&2; exit 1`
  );
}
