import { execFile, execFileSync } from 'node:child_process';
import { CacheNodes, SwarmConnection } from '../../../lib/constructs';
import { requireTool } from '../../support/tools';
import { newStack, resourcesOf, synth, validationErrors } from './helpers';

describe('CacheNodes', () => {
  it('labels each node with a terraform_data whose local-exec adds the label and whose destroy step removes it', () => {
    const stack = newStack();
    const nodes = new CacheNodes(stack, 'Nodes', { nodes: ['worker-1', 'worker-2'] });
    const labels = resourcesOf(synth(stack), 'terraform_data');
    expect(labels).toHaveLength(2);
    expect(nodes.placementConstraint).toBe('node.labels.dtr.cache == true');
    const [first] = labels;
    expect(first.input).toEqual({ node: 'worker-1', label: 'dtr.cache=true' });
    expect(first.triggers_replace).toEqual({ node: 'worker-1', label: 'dtr.cache', host: 'unix:///var/run/docker.sock' });
    const [create, destroy] = first.provisioner.map((p: Record<string, unknown>) => p['local-exec']);
    expect(create.command).toContain('out=$(docker node update --label-add dtr.cache=true worker-1 2>&1)');
    expect(create.when).toBeUndefined();
    expect(destroy.when).toBe('destroy');
    expect(destroy.command).toContain('docker node update --label-rm dtr.cache worker-1');
    expect(create.environment).toEqual({ DOCKER_HOST: 'unix:///var/run/docker.sock' });
    expect(destroy.environment).toEqual(create.environment);
  });

  it('keys each node resource by the node name, so reordering the list changes nothing', () => {
    const a = newStack();
    new CacheNodes(a, 'Nodes', { nodes: ['n1', 'n2'] });
    const b = newStack();
    new CacheNodes(b, 'Nodes', { nodes: ['n2', 'n1'] });
    expect(Object.keys(synth(a).resource.terraform_data).sort()).toEqual(Object.keys(synth(b).resource.terraform_data).sort());
  });

  it('gives every local-exec the environment of the swarm connection (client bundle: TLS env, no key material)', () => {
    const stack = newStack();
    new CacheNodes(stack, 'Nodes', {
      nodes: ['worker-1'],
      connection: SwarmConnection.clientBundle({ directory: '/etc/ucp-bundle', host: 'tcp://ucp.asia.example.com:443' }),
    });
    const [label] = resourcesOf(synth(stack), 'terraform_data');
    for (const p of label.provisioner) {
      expect(p['local-exec'].environment).toEqual({
        DOCKER_HOST: 'tcp://ucp.asia.example.com:443',
        DOCKER_TLS_VERIFY: '1',
        DOCKER_CERT_PATH: '/etc/ucp-bundle',
      });
    }
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

  describe('against the test swarm (scripts/test-services.sh start)', () => {
    const socket = '/run/dtr-cache-test/docker.sock';
    // A label of its own, so that other tests' dtr.cache placement is not disturbed.
    const labelKey = 'dtr.cache.constructs-test';
    let nodeId = '';
    let create = { command: '', environment: {} as Record<string, string> };
    let destroy = { command: '', environment: {} as Record<string, string> };
    const labels = (): Record<string, string> =>
      JSON.parse(
        execFileSync('docker', ['node', 'inspect', '--format', '{{json .Spec.Labels}}', nodeId], {
          env: { ...process.env, DOCKER_HOST: `unix://${socket}` },
          encoding: 'utf8',
        }),
      ) ?? {};
    // Terraform runs a local-exec command with /bin/sh -c and the given environment added to its own.
    const runLikeTerraform = (p: { command: string; environment: Record<string, string> }): void => {
      execFileSync('/bin/sh', ['-c', p.command], { env: { ...process.env, ...p.environment }, stdio: 'pipe', timeout: 30_000 });
    };

    beforeAll(() => {
      requireTool('docker');
      nodeId = execFileSync('docker', ['info', '-f', '{{.Swarm.NodeID}}'], {
        env: { ...process.env, DOCKER_HOST: `unix://${socket}` },
        encoding: 'utf8',
      }).trim();
      if (!nodeId) throw new Error(`no swarm at ${socket}: run bash scripts/test-services.sh start`);
      const stack = newStack();
      new CacheNodes(stack, 'Nodes', { nodes: [nodeId], labelKey, connection: SwarmConnection.localSocket(socket) });
      const [label] = resourcesOf(synth(stack), 'terraform_data');
      [create, destroy] = label.provisioner.map((p: Record<string, typeof create>) => p['local-exec']);
    });

    afterAll(() => {
      if (nodeId && labels()[labelKey] !== undefined) runLikeTerraform(destroy);
    });

    it('adds the label (twice without error), and the destroy step removes it (twice without error)', () => {
      runLikeTerraform(create);
      runLikeTerraform(create);
      expect(labels()[labelKey]).toBe('true');
      runLikeTerraform(destroy);
      expect(labels()[labelKey]).toBeUndefined();
      runLikeTerraform(destroy);
      expect(labels()[labelKey]).toBeUndefined();
    });

    it('labels one node from 8 concurrent deploys: the swarm refuses all but one write a round ("update out of sequence"), the others try again', async () => {
      const keys = Array.from({ length: 8 }, (_, i) => `${labelKey}.concurrent-${i}`);
      const steps = keys.map((key) => {
        const stack = newStack();
        new CacheNodes(stack, 'Nodes', { nodes: [nodeId], labelKey: key, connection: SwarmConnection.localSocket(socket) });
        const [label] = resourcesOf(synth(stack), 'terraform_data');
        return label.provisioner.map((p: Record<string, typeof create>) => p['local-exec']) as [typeof create, typeof create];
      });
      const runAll = (which: 0 | 1) =>
        Promise.all(
          steps.map(
            (step) =>
              new Promise<string>((resolve, reject) =>
                execFile(
                  '/bin/sh',
                  ['-c', step[which].command],
                  { env: { ...process.env, ...step[which].environment }, timeout: 60_000 },
                  (err, _out, stderr) => (err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stderr)),
                ),
              ),
          ),
        );
      try {
        await runAll(0);
        expect(keys.map((k) => labels()[k])).toEqual(keys.map(() => 'true'));
        await runAll(1);
        expect(keys.filter((k) => labels()[k] !== undefined)).toEqual([]);
      } finally {
        const left = keys.filter((k) => labels()[k] !== undefined);
        if (left.length)
          runLikeTerraform({ ...create, command: `docker node update ${left.map((k) => `--label-rm ${k}`).join(' ')} ${nodeId}` });
      }
    }, 120_000);

    it('fails the create step for a node that is not in the swarm', () => {
      expect(() => runLikeTerraform({ ...create, command: create.command.replace(nodeId, 'no-such-node') })).toThrow();
    });
  });
});
