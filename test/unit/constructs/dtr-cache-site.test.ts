import { X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireTool } from '../../../harness/tools';
import { TerraformStack, TerraformVariable, Testing } from 'cdktf';
import { DockerProvider } from '@cdktf/provider-docker/lib/provider';
import { DtrCacheSite, DtrCacheSiteProps, LoadBalancer, SecretSource, StorageBackend, SwarmConnection } from '../../../lib/constructs';
import { loadConfig } from '../../../lib/config';
import {
  annotations,
  asiaSiteProps,
  fixture,
  fixtureTls,
  newStack,
  NOW,
  onlyResource,
  resourcesOf,
  synth,
  synthesizedPath,
  synthesizedValue,
  TfJson,
  validationErrors,
} from './helpers';

const props: DtrCacheSiteProps = asiaSiteProps({ tls: { ...fixtureTls(), dtrCa: SecretSource.fromFile(fixture('dtr-ca.pem')) } });

function site(overrides: Partial<DtrCacheSiteProps> = {}) {
  const stack = newStack('dtr-cache-asia', false);
  const construct = new DtrCacheSite(stack, 'asia', { ...props, ...overrides });
  return { stack, construct };
}

describe('DtrCacheSite', () => {
  it('composes provider, node labels, TLS secrets, config and service, and passes validation', () => {
    const { stack, construct } = site();
    const json = synth(stack);
    expect(validationErrors(stack)).toEqual([]);
    expect(Object.keys(json.resource).sort()).toEqual([
      'docker_config',
      'docker_network',
      'docker_secret',
      'docker_service',
      'terraform_data',
    ]);
    // Two node labels, the storage preflight and the volume removal on destroy.
    expect(resourcesOf(json, 'terraform_data')).toHaveLength(4);
    expect(resourcesOf(json, 'docker_secret')).toHaveLength(3);
    expect(json.provider.docker).toEqual([{ host: 'unix:///var/run/docker.sock' }]);
    const service = onlyResource(json, 'docker_service');
    expect(service.name).toBe('dtr-cache-asia');
    expect(service.mode.replicated.replicas).toBe(2);
    expect(service.depends_on).toEqual([
      `terraform_data.${construct.nodes.labelStep.friendlyUniqueId}`,
      expect.stringMatching(/^terraform_data\.asia_StoragePreflight_Check_/),
      expect.stringMatching(/^terraform_data\.asia_StoragePreflight_VolumeRemoval_/),
    ]);
    expect(service.task_spec.container_spec.mounts[0].volume_options.driver_options.type).toBe('nfs');
    // Shared storage: the replicas share an overlay network and advertise their replica endpoint on it by task name.
    expect(onlyResource(json, 'docker_network')).toMatchObject({ name: 'dtr-cache-asia-replicas', driver: 'overlay' });
    expect(service.task_spec.networks_advanced).toEqual([{ name: `\${docker_network.${construct.replicaNetwork?.friendlyUniqueId}.id}` }]);
    // http.secret: a hash of the TLS key, taken at apply (the key never lands in the JSON).
    expect(service.task_spec.container_spec.env).toEqual({
      REGISTRY_HTTP_SECRET: `\${substr(sha256(join("\\n", ["dtr-cache http.secret", "dtr-cache-asia", file(${synthesizedPath(stack, fixture('cache.key.pem'))})])), 0, 32)}`,
      REGISTRY_HTTP_INTERNAL_ADVERTISE: '{{.Task.Name}}',
    });
    expect(service.task_spec.container_spec.secrets.map((s: { file_name: string }) => s.file_name).sort()).toEqual([
      '/run/secrets/cache.cert.pem',
      '/run/secrets/cache.key.pem',
      '/run/secrets/dtr.cert.pem',
    ]);
    expect(Testing.synth(stack)).not.toContain('PRIVATE KEY');
  });

  it('renders config.yml from the site settings, and the server parser accepts it', () => {
    const { stack } = site({ blobTtl: '24h', port: 8443 });
    const text = Buffer.from(onlyResource(synth(stack), 'docker_config').data, 'base64').toString();
    const result = loadConfig(text);
    if (!result.ok) throw new Error(result.errors.join('\n'));
    expect(result.config.http.host).toBe('https://cache.asia.example.com:8443');
    expect(result.config.http.addr).toBe('0.0.0.0:443');
    expect(result.config.middleware.registry[0].options).toMatchObject({
      upstreams: ['https://dtr.us.example.com'],
      cas: ['/run/secrets/dtr.cert.pem'],
      blobttl: 86_400_000,
    });
  });

  it('outputs cache URL, image, replicas, storage kind and a summary', () => {
    const { stack } = site();
    const out = synth(stack).output;
    expect(out.asia_cache_url.value).toBe('https://cache.asia.example.com');
    // The tag pinned to the digest the registry serves, read at plan time.
    expect(out.asia_image.value).toMatch(
      /^127\.0\.0\.1:5000\/dtr-cache:0\.1\.0@\$\{data\.docker_registry_image\.asia_Image_Digest_\w+\.sha256_digest\}$/,
    );
    expect(out.asia_replicas.value).toBe(2);
    expect(out.asia_storage_kind.value).toBe('nfs');
    expect(out.asia_nfs_export).toEqual({
      value: '/dtr-cache 10.20.0.0/24(rw,root_squash,no_wdelay)',
      description: '/etc/exports line on nfs.asia.example.com',
    });
    // What a platform team needs to find the site's swarm objects.
    const service = Object.keys(synth(stack).resource.docker_service)[0];
    expect(out.asia_service_name.value).toBe(`\${docker_service.${service}.name}`);
    expect(out.asia_service_id.value).toBe(`\${docker_service.${service}.id}`);
    expect(out.asia_secret_names.value).toEqual([
      expect.stringMatching(/^\$\{docker_secret\.asia_Tls_Certificate_\w+\.name\}$/),
      expect.stringMatching(/^\$\{docker_secret\.asia_Tls_Key_\w+\.name\}$/),
      expect.stringMatching(/^\$\{docker_secret\.asia_Tls_DtrCa_\w+\.name\}$/),
    ]);
    expect(out.asia_config_name.value).toMatch(/^dtr-cache-asia-config-[0-9a-f]{12}$/);
    expect(out.asia_node_label.value).toBe('dtr.cache=true');
    const cert = new X509Certificate(readFileSync(fixture('cache.cert.pem')));
    expect(JSON.parse(out.asia_summary.value)).toEqual({
      datacenter: 'asia',
      cacheUrl: 'https://cache.asia.example.com',
      upstreams: ['https://dtr.us.example.com'],
      replicas: 2,
      nodes: ['cache-asia-1', 'cache-asia-2'],
      storage: 'nfs',
      nfsExport: '/dtr-cache 10.20.0.0/24(rw,root_squash,no_wdelay)',
      port: 443,
      publishMode: 'ingress',
      image: '127.0.0.1:5000/dtr-cache:0.1.0',
      swarm: 'local-socket unix:///var/run/docker.sock',
      certificate: {
        subject: 'O=dtr-cache unit-test fixture, CN=cache.example.com',
        validTo: new Date(cert.validTo).toISOString(),
        selfSigned: true,
      },
      testOnly: false,
    });
  });

  it('marks test certificates as TEST ONLY in secret names and outputs', () => {
    const { stack } = site({ tls: { ...fixtureTls(), testOnly: true } });
    const json = synth(stack);
    for (const s of resourcesOf(json, 'docker_secret')) expect(s.name).toMatch(/^dtr-cache-asia-test-only-/);
    expect(json.output.asia_cache_url.description).toContain('TEST ONLY');
    expect(JSON.parse(json.output.asia_summary.value).testOnly).toBe(true);
  });

  it('host mode on a custom port', () => {
    const { stack } = site({ loadBalancer: LoadBalancer.external({ kind: 'haproxy' }), port: 8443 });
    const ports = onlyResource(synth(stack), 'docker_service').endpoint_spec.ports;
    expect(ports).toEqual([{ name: 'https', protocol: 'tcp', target_port: 443, published_port: 8443, publish_mode: 'host' }]);
  });

  describe('swarm connection: provider and local-exec point at the same swarm', () => {
    it('client bundle: provider host and PEM files read at deploy time; local-exec gets DOCKER_HOST/TLS/CERT_PATH', () => {
      const connection = SwarmConnection.clientBundle({ directory: '/etc/ucp/asia', host: 'tcp://ucp.asia.example.com:443' });
      const { stack } = site({ connection });
      const json = synth(stack);
      expect(json.provider.docker).toEqual([
        {
          host: 'tcp://ucp.asia.example.com:443',
          ca_material: `\${file(${synthesizedPath(stack, '/etc/ucp/asia/ca.pem')})}`,
          cert_material: `\${file(${synthesizedPath(stack, '/etc/ucp/asia/cert.pem')})}`,
          key_material: `\${file(${synthesizedPath(stack, '/etc/ucp/asia/key.pem')})}`,
        },
      ]);
      // The label steps and the volume removal hold it in input (the preflight check has it in its local-exec).
      for (const step of resourcesOf(json, 'terraform_data').filter((r) => r.input)) {
        expect(step.input.environment).toEqual({
          DOCKER_HOST: 'tcp://ucp.asia.example.com:443',
          DOCKER_TLS_VERIFY: '1',
          DOCKER_CERT_PATH: synthesizedValue(stack, '/etc/ucp/asia'),
        });
      }
    });

    it('ssh: provider host and ssh_opts; local-exec DOCKER_HOST is the same ssh:// URL', () => {
      const connection = SwarmConnection.ssh({
        user: 'ops',
        host: 'manager.asia.example.com',
        port: 2222,
        sshOpts: ['-o', 'StrictHostKeyChecking=yes'],
      });
      const { stack } = site({ connection });
      const json = synth(stack);
      expect(json.provider.docker).toEqual([
        { host: 'ssh://ops@manager.asia.example.com:2222', ssh_opts: ['-o', 'StrictHostKeyChecking=yes'] },
      ]);
      expect(resourcesOf(json, 'terraform_data')[0].input.environment).toEqual({ DOCKER_HOST: 'ssh://ops@manager.asia.example.com:2222' });
    });

    it("reuses the stack's default provider when it reaches the same swarm", () => {
      const stack = newStack('s', true);
      const asia = new DtrCacheSite(stack, 'asia', props);
      expect(synth(stack).provider.docker).toEqual([{}]);
      expect(asia.provider.node.path).toBe('s/docker');
      expect(onlyResource(synth(stack), 'docker_service').provider).toBeUndefined();
    });
  });

  describe('Terraform variables for host, upstreams, nodes and image', () => {
    const variables = (stack: TerraformStack) => ({
      host: new TerraformVariable(stack, 'cache_host', { type: 'string' }).stringValue,
      dtr: new TerraformVariable(stack, 'dtr_url', { type: 'string' }).stringValue,
      nodes: new TerraformVariable(stack, 'cache_nodes', { type: 'list(string)' }).listValue,
      image: new TerraformVariable(stack, 'cache_image', { type: 'string' }).stringValue,
    });

    it('synthesizes them as expressions, checks the rest, and says what is left to apply time', () => {
      const stack = newStack('vars', false);
      const v = variables(stack);
      const site = new DtrCacheSite(stack, 'asia', {
        ...props,
        host: v.host,
        upstreams: [v.dtr],
        nodes: v.nodes,
        replicas: 2,
        image: { reference: v.image },
      });
      expect(validationErrors(stack)).toEqual([]);
      expect(annotations(stack, 'info')).toContain(
        'DtrCacheSite: host (its format, and whether the certificate covers it); upstreams[0] (an https:// URL, checked by the cache when it starts); nodes (their names, and that there are as many as replicas); image.reference (its registry host): Terraform expressions, known at apply only; the rest was checked at synth',
      );
      const json = synth(stack);
      const service = onlyResource(json, 'docker_service');
      const digest = Object.keys(json.data.docker_registry_image)[0];
      expect(json.data.docker_registry_image[digest].name).toBe('${var.cache_image}');
      expect(service.task_spec.container_spec.image).toBe(
        `\${strcontains(var.cache_image, "@") ? var.cache_image : "\${var.cache_image}@\${data.docker_registry_image.${digest}.sha256_digest}"}`,
      );
      expect(service.mode.replicated.replicas).toBe(2);
      // config.yml holds the host and upstream: a local value (a template), encoded and named by Terraform.
      const config = onlyResource(json, 'docker_config');
      const local = /^\$\{base64encode\(local\.(\w+)\)\}$/.exec(config.data)?.[1] as string;
      expect(config.name).toBe(`dtr-cache-asia-config-\${substr(sha256(local.${local}), 0, 12)}`);
      expect(json.locals[local]).toContain('host: https://${var.cache_host}\n');
      expect(json.locals[local]).toContain('- ${var.dtr_url}\n');
      // Terraform renders it with the variables' values, and the server's parser accepts the result.
      requireTool('terraform');
      const dir = mkdtempSync(join(tmpdir(), 'dtr-cache-vars-'));
      try {
        writeFileSync(join(dir, 'main.tf.json'), JSON.stringify({ variable: json.variable, locals: json.locals }));
        const vars = [
          'cache_host=cache.asia.example.com',
          'dtr_url=https://dtr.us.example.com',
          'cache_nodes=["n1","n2"]',
          'cache_image=x',
        ];
        const out = execFileSync('terraform', [`-chdir=${dir}`, 'console', ...vars.flatMap((v) => ['-var', v])], {
          input: `local.${local}`,
          encoding: 'utf8',
          env: { ...process.env, CHECKPOINT_DISABLE: '1' },
        });
        const rendered = loadConfig(
          out
            .trim()
            .replace(/^<<EOT\n/, '')
            .replace(/\nEOT$/, ''),
        );
        if (!rendered.ok) throw new Error(rendered.errors.join('\n'));
        expect(rendered.config.http.host).toBe('https://cache.asia.example.com');
        expect(rendered.config.middleware.registry[0].options.upstreams).toEqual(['https://dtr.us.example.com']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      const labelStep = site.nodes.labelStep.friendlyUniqueId;
      const labels = json.resource.terraform_data[labelStep];
      expect(labels?.input.nodes).toBe('${join(" ", var.cache_nodes)}');
      expect(JSON.parse(json.output.asia_summary.value)).toMatchObject({
        cacheUrl: 'https://${var.cache_host}',
        nodes: [`\${terraform_data.${labelStep}.output.nodes}`],
        upstreams: ['${var.dtr_url}'],
      });
    });

    it('asks for replicas and a listable load balancer when the nodes are a variable; a list variable of upstreams is refused', () => {
      const stack = newStack('vars', false);
      const v = variables(stack);
      const upstreams = new TerraformVariable(stack, 'upstreams', { type: 'list(string)' }).listValue;
      new DtrCacheSite(stack, 'asia', { ...props, nodes: v.nodes, upstreams, loadBalancer: LoadBalancer.external({ kind: 'haproxy' }) });
      expect(validationErrors(stack)).toEqual([
        'DtrCacheSite: upstreams: list the URLs (each may be a Terraform variable, e.g. [dtrUrl.stringValue]); a whole list variable cannot be written into config.yml',
        'DtrCacheSite: replicas: nodes is a Terraform expression, so how many there are is known at apply only; set replicas',
        'DtrCacheSite: loadBalancer: the external load balancer configuration lists the nodes, which are a Terraform expression here; list the nodes, or use LoadBalancer.routingMesh() or LoadBalancer.service()',
      ]);
    });
  });

  describe('real clusters: MKE access labels, ignore_changes and warnings', () => {
    const bundle = SwarmConnection.clientBundle({ directory: '/etc/ucp/asia', host: 'tcp://ucp.asia.example.com:443' });

    it('puts every service, secret and network into the accessLabel collection', () => {
      const { stack } = site({
        accessLabel: '/Shared/dtr-cache',
        loadBalancer: LoadBalancer.service({ image: 'registry.example.com/haproxy:2.8' }),
      });
      const json = synth(stack);
      const labelled = ['docker_service', 'docker_secret', 'docker_network'].flatMap((t) => resourcesOf(json, t));
      expect(labelled).toHaveLength(6);
      for (const r of labelled) expect(r.labels).toContainEqual({ label: 'com.docker.ucp.access.label', value: '/Shared/dtr-cache' });
      expect(JSON.stringify(synth(site().stack))).not.toContain('com.docker.ucp.access.label');
    });

    it('through a client bundle (MKE), ignores the labels MKE stamps on services, secrets and networks', () => {
      const json = synth(site({ connection: bundle, port: 8443 }).stack);
      for (const r of resourcesOf(json, 'docker_secret')) expect(r.lifecycle.ignore_changes).toEqual(['labels']);
      // A service also ignores what the engine sets on its own (the image's platforms).
      for (const r of resourcesOf(json, 'docker_service'))
        expect(r.lifecycle.ignore_changes).toEqual(['task_spec[0].placement[0].platforms', 'labels']);
      // Secrets keep create_before_destroy.
      for (const r of resourcesOf(json, 'docker_secret')) expect(r.lifecycle.create_before_destroy).toBe(true);
      // Without MKE, the service's labels are the stack's.
      expect(onlyResource(synth(site({ port: 8443 }).stack), 'docker_service').lifecycle).toEqual({
        ignore_changes: ['task_spec[0].placement[0].platforms'],
      });
    });

    it('warns of TEST ONLY certificates, a loopback registry, 443 through the routing mesh on MKE, a label key shared on a swarm', () => {
      const { stack } = site({ tls: { ...fixtureTls(), testOnly: true }, connection: bundle });
      new DtrCacheSite(stack, 'europe', {
        ...props,
        datacenter: 'europe',
        host: 'cache.europe.example.com',
        port: 8443,
        connection: bundle,
        image: { reference: 'registry.example.com/infra/dtr-cache:0.1.0' },
      });
      expect(validationErrors(stack)).toEqual([]);
      expect(annotations(stack, 'warn')).toEqual([
        'DtrCacheSite: image: 127.0.0.1:5000/dtr-cache:0.1.0 is on a loopback registry, which each node resolves to itself: every node must run that registry; use a registry all nodes reach, e.g. registry.example.com/infra/dtr-cache',
        'DtrCacheSite: port: 443 through the routing mesh is taken on every node, and MKE/UCP managers serve their API and UI on 443; pick another port, or host mode (LoadBalancer.external) on workers only',
        'CacheTls: TEST ONLY certificates (self-signed, generated): clients will not trust them; give your own certificate and key for production',
        'DtrCacheSite: nodeLabel: dtr.cache is also the label of dtr-cache-asia/asia on the same swarm (tcp://ucp.asia.example.com:443); each site removes its label from the nodes it does not list, so give each site its own nodeLabel',
      ]);
    });
  });

  describe('two sites in one stack', () => {
    it('on one swarm: one default provider, and each site its own port', () => {
      const stack = newStack('two', false);
      new DtrCacheSite(stack, 'a', { ...props, datacenter: 'a' });
      new DtrCacheSite(stack, 'b', { ...props, datacenter: 'b' });
      expect(synth(stack).provider.docker).toEqual([{ host: 'unix:///var/run/docker.sock' }]);
      expect(validationErrors(stack)).toEqual([
        'CacheService: port: 443 is also published by two/b/Service on the same swarm; give each cache site on a swarm its own port',
        'CacheService: port: 443 is also published by two/a/Service on the same swarm; give each cache site on a swarm its own port',
      ]);
      const fixed = newStack('two', false);
      new DtrCacheSite(fixed, 'a', { ...props, datacenter: 'a' });
      new DtrCacheSite(fixed, 'b', { ...props, datacenter: 'b', port: 8443 });
      expect(validationErrors(fixed)).toEqual([]);
    });

    it('on two swarms: the second site gets a provider aliased by its ID, named on each of its docker resources', () => {
      const stack = newStack('two', false);
      new DtrCacheSite(stack, 'asia', props);
      const connection = SwarmConnection.ssh({ user: 'ops', host: 'manager.eu.example.com' });
      new DtrCacheSite(stack, 'europe', { ...props, datacenter: 'europe', host: 'cache.europe.example.com', connection });
      const json = synth(stack);
      expect(validationErrors(stack)).toEqual([]);
      expect(json.provider.docker).toEqual([
        { host: 'unix:///var/run/docker.sock' },
        { host: 'ssh://ops@manager.eu.example.com', alias: 'europe' },
      ]);
      const dockerResources = Object.entries(json.resource as Record<string, Record<string, TfJson>>)
        .filter(([type]) => type.startsWith('docker_'))
        .flatMap(([, byName]) => Object.entries(byName));
      expect(dockerResources.filter(([name]) => name.startsWith('europe_')).map(([, r]) => r.provider)).toEqual(
        expect.arrayContaining(['docker.europe']),
      );
      for (const [name, r] of dockerResources) expect(r.provider).toBe(name.startsWith('europe_') ? 'docker.europe' : undefined);
      // Each site reads its image's digest with its own provider (and that provider's registry_auth).
      const digests = Object.entries(json.data.docker_registry_image as Record<string, TfJson>).map(([name, d]) => [
        name.split('_')[0],
        d.provider,
      ]);
      expect(digests.sort()).toEqual([
        ['asia', undefined],
        ['europe', 'docker.europe'],
      ]);
      // Each site's label steps (and volume removal) reach its own swarm.
      const hosts = resourcesOf(json, 'terraform_data')
        .filter((r) => r.input)
        .map((r) => r.input.environment.DOCKER_HOST);
      expect(new Set(hosts)).toEqual(new Set(['unix:///var/run/docker.sock', 'ssh://ops@manager.eu.example.com']));
    });

    it('a given provider is used by every docker resource, and must reach the connection’s swarm', () => {
      const stack = newStack('s', false);
      const provider = new DockerProvider(stack, 'asia-docker', { alias: 'asia', host: 'unix:///var/run/docker.sock' });
      new DtrCacheSite(stack, 'asia', { ...props, provider });
      expect(onlyResource(synth(stack), 'docker_service').provider).toBe('docker.asia');
      expect(validationErrors(stack)).toEqual([]);
      const wrong = newStack('w', false);
      const other = new DockerProvider(wrong, 'other', { host: 'tcp://other.example.com:2376' });
      new DtrCacheSite(wrong, 'asia', { ...props, provider: other });
      expect(validationErrors(wrong)).toEqual([
        'DtrCacheSite: provider: reaches tcp://other.example.com:2376 but connection reaches unix:///var/run/docker.sock; the labels would be set on one swarm and the service created on another: give a provider from connection.providerConfig()',
      ]);
    });

    it('a second default provider added to the stack is an error', () => {
      const stack = newStack('s', false);
      new DtrCacheSite(stack, 'asia', props);
      new DockerProvider(stack, 'late', { host: 'unix:///var/run/docker.sock' });
      expect(validationErrors(stack)).toEqual([
        'DtrCacheSite: provider: the stack has 2 docker providers without an alias (s/asia/Provider, s/late); Terraform allows one: give the others an alias, or pass one as provider',
      ]);
    });

    it('output names keep dashes, so a-b and a_b do not collide; IDs that still would are an error', () => {
      const stack = newStack('s', false);
      new DtrCacheSite(stack, 'a-b', { ...props, datacenter: 'a' });
      new DtrCacheSite(stack, 'a_b', { ...props, datacenter: 'b', port: 8443 });
      expect(validationErrors(stack)).toEqual([]);
      const names = Object.keys(synth(stack).output).filter((n) => n.endsWith('_summary'));
      expect(names.sort()).toEqual(['a-b_summary', 'a_b_summary']);
      const clash = newStack('c', false);
      new DtrCacheSite(clash, 'a.b', { ...props, datacenter: 'a' });
      new DtrCacheSite(clash, 'a_b', { ...props, datacenter: 'b', port: 8443 });
      expect(validationErrors(clash)).toEqual([
        'DtrCacheSite: id: c/a.b and c/a_b both name their outputs a_b_*; give the sites IDs that differ in letters, digits, dashes or underscores',
        'DtrCacheSite: id: c/a_b and c/a.b both name their outputs a_b_*; give the sites IDs that differ in letters, digits, dashes or underscores',
      ]);
    });
  });

  describe('validation', () => {
    it('one mistake gives one message, naming the prop as the user wrote it', () => {
      const messages = (overrides: Partial<DtrCacheSiteProps>): string[] => validationErrors(site(overrides).stack);
      expect(messages({ nodes: [] })).toEqual(['CacheNodes: nodes: list at least one node ID or hostname to run the cache on']);
      expect(messages({ upstreams: ['dtr.us.example.com'] })).toEqual([
        'DtrCacheSite: upstreams.0: must be an https:// URL, e.g. https://dtr.us.example.com; the cache forwards users’ credentials to it',
      ]);
      expect(messages({ host: 'https://cache.asia.example.com' })).toEqual([
        'DtrCacheSite: host: must be a host name without scheme or port, e.g. cache.asia.example.com',
      ]);
      expect(messages({ blobTtl: '1 day' })).toEqual([
        'DtrCacheSite: blobTtl: is not a duration; write a Go duration such as 24h (units ns, us, ms, s, m, h)',
      ]);
      expect(messages({ replicas: 0 })).toEqual(['DtrCacheSite: replicas: must be a whole number of at least 1']);
      // A URL the site accepts but the config parser does not still gets the parser's message, under the prop's name.
      expect(messages({ upstreams: ['https://dtr.us.example.com/v2'] })).toEqual([
        'DtrCacheSite: upstreams[0]: must be scheme://host[:port] with scheme http or https and no path, e.g. https://dtr.example.com',
      ]);
    });

    it('replicas > 1 without shared storage', () => {
      const { stack } = site({ storage: undefined, replicas: 2 });
      expect(validationErrors(stack)).toEqual([
        'DtrCacheSite: replicas: 2 replicas need shared storage, and none is set; set storage to StorageBackend.nfs({ server }) or an object store (s3, azure, gcs, oss, swift), or set replicas: 1',
      ]);
    });

    it('the local filesystem with replicas > 1', () => {
      const { stack } = site({ storage: StorageBackend.localFilesystem(), replicas: 2 });
      expect(validationErrors(stack)).toEqual([
        'DtrCacheSite: storage: the local filesystem is per container, so 2 replicas would each cache their own copy and lose it on reschedule; use StorageBackend.nfs({ server }) or an object store, or set replicas: 1',
      ]);
    });

    it('defaults to one replica without shared storage, and to one per node with it', () => {
      expect(site({ storage: undefined }).construct.service.replicas).toBe(1);
      expect(site().construct.service.replicas).toBe(2);
    });

    it('more replicas than nodes', () => {
      const { stack } = site({ replicas: 3 });
      expect(validationErrors(stack)).toEqual([
        'DtrCacheSite: replicas: 3 replicas but 2 node(s); the service runs one replica per node, so list 3 nodes or lower replicas',
      ]);
    });

    it('an upstream DTR URL that is not https, and a bad datacenter name and host', () => {
      const { stack } = site({
        upstreams: ['http://dtr.us.example.com'],
        datacenter: 'Asia Pacific',
        host: 'https://cache.asia.example.com',
      });
      expect(validationErrors(stack)).toEqual(
        expect.arrayContaining([
          'DtrCacheSite: datacenter: must be 1 to 16 lower-case letters, digits and dashes, e.g. asia',
          'DtrCacheSite: upstreams.0: must be an https:// URL, e.g. https://dtr.us.example.com; the cache forwards users’ credentials to it',
          'DtrCacheSite: host: must be a host name without scheme or port, e.g. cache.asia.example.com',
        ]),
      );
    });

    it('a certificate that does not cover the cache host, and one that does not match its key', () => {
      const { stack } = site({ host: 'cache.example.org', tls: { ...fixtureTls(), key: SecretSource.fromFile(fixture('other.key.pem')) } });
      expect(validationErrors(stack)).toEqual([
        'CacheTls: key: does not match CacheTls: certificate (O=dtr-cache unit-test fixture, CN=cache.example.com); give the key the certificate was issued for',
        expect.stringMatching(
          /^CacheTls: certificate: does not cover the cache host cache\.example\.org \(.*\); issue a certificate with cache\.example\.org in its subjectAltName$/,
        ),
      ]);
    });

    it('an expired certificate fails; one expiring within 30 days warns', () => {
      const validTo = new Date(new X509Certificate(readFileSync(fixture('cache.cert.pem'))).validTo);
      const expired = site({ now: new Date(validTo.getTime() + 86_400_000) });
      expect(validationErrors(expired.stack)).toEqual([`CacheTls: certificate: expired on ${validTo.toISOString()}; renew it`]);
      const soon = site({
        now: new Date(validTo.getTime() - 20 * 86_400_000),
        image: { reference: 'registry.example.com/infra/dtr-cache:0.1.0' },
      });
      expect(validationErrors(soon.stack)).toEqual([]);
      expect(annotations(soon.stack, 'warn')).toEqual([
        `CacheTls: certificate: expires on ${validTo.toISOString()}, in 20 days; renew it soon`,
      ]);
    });
  });
});
