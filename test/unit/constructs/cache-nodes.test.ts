import { execFile, execFileSync } from 'node:child_process';
import { CacheNodes, SwarmConnection } from '../../../lib/constructs';
import { RECONCILE_LABELS, REMOVE_OWNED_LABELS } from '../../../lib/constructs/cache-nodes';
import { requireTool } from '../../../harness/tools';
import { newStack, synth, synthesizedPath, synthesizedValue, validationErrors } from './helpers';

describe('CacheNodes', () => {
  it('labels the nodes with one reconciling step and one owner whose destroy step removes the labels', () => {
    const stack = newStack();
    const nodes = new CacheNodes(stack, 'Nodes', { nodes: ['worker-2', 'worker-1'] });
    const json = synth(stack);
    expect(nodes.placementConstraint).toBe('node.labels.dtr.cache == true');
    const data = json.resource.terraform_data;
    const owner = data[nodes.labelOwner.friendlyUniqueId];
    const step = data[nodes.labelStep.friendlyUniqueId];
    const socket = { DOCKER_HOST: 'unix:///var/run/docker.sock' };
    // Everything the steps act on is in input, read back through self: a replaced instance's destroy step acts on its
    // old values, and a change of any of them replaces the step.
    expect(owner.input).toEqual({ key: 'dtr.cache', environment: socket });
    expect(owner.triggers_replace).toEqual(owner.input);
    expect(owner.provisioner).toEqual([
      {
        'local-exec': {
          when: 'destroy',
          command: REMOVE_OWNED_LABELS,
          environment: { DOCKER_HOST: '${self.input.environment.DOCKER_HOST}', LABEL_KEY: '${self.input.key}', OWNER: '${self.id}' },
        },
      },
    ]);
    expect(step.input).toEqual({
      key: 'dtr.cache',
      environment: socket,
      nodes: 'worker-1 worker-2',
      owner: `\${terraform_data.${nodes.labelOwner.friendlyUniqueId}.id}`,
    });
    expect(step.triggers_replace).toEqual(step.input);
    expect(step.provisioner).toEqual([
      {
        'local-exec': {
          command: RECONCILE_LABELS,
          environment: {
            DOCKER_HOST: '${self.input.environment.DOCKER_HOST}',
            LABEL_KEY: '${self.input.key}',
            NODES: '${self.input.nodes}',
            OWNER: '${self.input.owner}',
          },
        },
      },
    ]);
    // No create_before_destroy: Terraform runs no destroy step for a deposed object.
    expect(owner.lifecycle).toBeUndefined();
    // Terraform would interpolate a dollar-brace in the commands.
    expect(RECONCILE_LABELS + REMOVE_OWNED_LABELS).not.toContain('${');
  });

  it('sorts the node list, so reordering it changes nothing', () => {
    const a = newStack();
    new CacheNodes(a, 'Nodes', { nodes: ['n1', 'n2'] });
    const b = newStack();
    new CacheNodes(b, 'Nodes', { nodes: ['n2', 'n1'] });
    expect(synth(a)).toEqual(synth(b));
  });

  it('puts the environment of the swarm connection in input (client bundle: TLS env, no key material)', () => {
    const stack = newStack();
    const nodes = new CacheNodes(stack, 'Nodes', {
      nodes: ['worker-1'],
      connection: SwarmConnection.clientBundle({ directory: '/etc/ucp-bundle', host: 'tcp://ucp.asia.example.com:443' }),
    });
    const step = synth(stack).resource.terraform_data[nodes.labelStep.friendlyUniqueId];
    expect(step.input.environment).toEqual({
      DOCKER_HOST: 'tcp://ucp.asia.example.com:443',
      DOCKER_TLS_VERIFY: '1',
      DOCKER_CERT_PATH: synthesizedValue(stack, '/etc/ucp-bundle'),
    });
    expect(step.provisioner[0]['local-exec'].environment).toMatchObject({
      DOCKER_HOST: '${self.input.environment.DOCKER_HOST}',
      DOCKER_TLS_VERIFY: '${self.input.environment.DOCKER_TLS_VERIFY}',
      DOCKER_CERT_PATH: '${self.input.environment.DOCKER_CERT_PATH}',
    });
  });

  it('rejects node names that are not node IDs or hostnames, duplicates and an empty list', () => {
    const stack = newStack();
    new CacheNodes(stack, 'Bad', { nodes: ['worker-1; rm -rf /'] });
    new CacheNodes(stack, 'Dupes', { nodes: ['w1', 'w1'] });
    new CacheNodes(stack, 'Empty', { nodes: [] });
    expect(validationErrors(stack)).toEqual([
      'CacheNodes: nodes.0: must be a swarm node ID or hostname (letters, digits, dot, dash, underscore)',
      'CacheNodes: nodes: w1 listed twice; list each node once (one replica per node)',
      'CacheNodes: nodes: list at least one node ID or hostname to run the cache on',
    ]);
  });

  describe('the scripts against the test swarm (scripts/test-services.sh start); with terraform: test/e2e/node-labels-terraform', () => {
    const socket = '/run/dtr-cache-test/docker.sock';
    // A label of its own, so that other tests' dtr.cache placement is not disturbed.
    const labelKey = 'dtr.cache.constructs-test';
    const dockerEnv = { ...process.env, DOCKER_HOST: `unix://${socket}` };
    let nodeId = '';
    const labels = (): Record<string, string> =>
      JSON.parse(
        execFileSync('docker', ['node', 'inspect', '--format', '{{json .Spec.Labels}}', nodeId], { env: dockerEnv, encoding: 'utf8' }),
      ) ?? {};
    /** The environment Terraform gives a step of the site (key, nodes, owner id). */
    const stepEnv = (key: string, owner: string) => ({ ...dockerEnv, LABEL_KEY: key, NODES: nodeId, OWNER: owner });

    beforeAll(() => {
      requireTool('docker');
      nodeId = execFileSync('docker', ['info', '-f', '{{.Swarm.NodeID}}'], { env: dockerEnv, encoding: 'utf8' }).trim();
      if (!nodeId) throw new Error(`no swarm at ${socket}: run bash scripts/test-services.sh start`);
    });

    afterAll(() => {
      const left = Object.keys(labels()).filter((k) => k.startsWith(labelKey));
      if (left.length) execFileSync('docker', ['node', 'update', ...left.flatMap((k) => ['--label-rm', k]), nodeId], { env: dockerEnv });
    });

    it('labels (twice without error), and the destroy step removes only what its owner set (twice without error)', () => {
      const run = (script: string, owner: string) =>
        execFileSync('/bin/sh', ['-c', script], { env: stepEnv(labelKey, owner), stdio: 'pipe' });
      run(RECONCILE_LABELS, 'owner-a');
      run(RECONCILE_LABELS, 'owner-a');
      expect(labels()).toMatchObject({ [labelKey]: 'true', [`${labelKey}.owner`]: 'owner-a' });
      run(REMOVE_OWNED_LABELS, 'owner-b');
      expect(labels()[labelKey]).toBe('true');
      run(REMOVE_OWNED_LABELS, 'owner-a');
      expect(labels()[labelKey]).toBeUndefined();
      expect(labels()[`${labelKey}.owner`]).toBeUndefined();
      run(REMOVE_OWNED_LABELS, 'owner-a');
    });

    it('labels one node from 8 concurrent deploys: the swarm refuses all but one write a round ("update out of sequence"), the others try again', async () => {
      const keys = Array.from({ length: 8 }, (_, i) => `${labelKey}.concurrent-${i}`);
      const runAll = (script: string) =>
        Promise.all(
          keys.map(
            (key) =>
              new Promise<string>((resolve, reject) =>
                execFile('/bin/sh', ['-c', script], { env: stepEnv(key, 'owner'), timeout: 60_000 }, (err, _out, stderr) =>
                  err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stderr),
                ),
              ),
          ),
        );
      await runAll(RECONCILE_LABELS);
      expect(keys.map((k) => labels()[k])).toEqual(keys.map(() => 'true'));
      await runAll(REMOVE_OWNED_LABELS);
      expect(keys.filter((k) => labels()[k] !== undefined)).toEqual([]);
    }, 120_000);

    it('fails the create step for a node that is not in the swarm', () => {
      expect(() =>
        execFileSync('/bin/sh', ['-c', RECONCILE_LABELS], { env: { ...stepEnv(labelKey, 'x'), NODES: 'no-such-node' }, stdio: 'pipe' }),
      ).toThrow(/no-such-node/);
    });
  });
});
