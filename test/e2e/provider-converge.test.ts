/**
 * The docker provider stand-in's converge_config under real terraform, on the shared test swarm: without it, apply
 * returns once the service is created, however its tasks fare (kreuzwerker/docker 3.6.2 waits for nothing); with
 * it, apply waits for the tasks and fails when they never run, removing the service as the provider does.
 * The image is one no registry serves (127.0.0.1:1), so the tasks never start.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { terraformDeploy } from '../support/terraform';
import { requireTool } from '../../harness/tools';
import { Engine, serviceTasks, TEST_DOCKER_SOCK } from '../terraform-provider-docker/engine';

jest.setTimeout(180_000);

const work = mkdtempSync(join(tmpdir(), 'dtr-provider-converge-'));
const engine = new Engine();
const NAME = `dtr-converge-test-${process.pid}`;

function stack(dir: string, converge?: Record<string, string>): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'main.tf.json'),
    JSON.stringify({
      terraform: { required_providers: { docker: { source: 'kreuzwerker/docker', version: '3.6.2' } } },
      provider: { docker: [{ host: `unix://${TEST_DOCKER_SOCK}` }] },
      resource: {
        docker_service: {
          s: {
            name: NAME,
            task_spec: { container_spec: { image: '127.0.0.1:1/dtr-never:1' }, restart_policy: { condition: 'none' } },
            ...(converge ? { converge_config: converge } : {}),
          },
        },
      },
    }),
  );
  return dir;
}

afterAll(async () => {
  await engine.request('DELETE', `/services/${NAME}`).catch(() => undefined);
  await engine.close();
  rmSync(work, { recursive: true, force: true });
});

test('without converge_config apply waits for nothing; with it, apply fails when the tasks never run', async () => {
  requireTool('terraform');
  const detached = terraformDeploy(stack(join(work, 'detached')));
  const applied = await detached.apply();
  console.log(`provider converge: apply without converge_config in ${applied.ms} ms`);
  const tasks = await serviceTasks(engine, NAME);
  expect(tasks.filter((t) => t.Status.State === 'running')).toEqual([]);
  expect(await engine.find(`/services/${NAME}`)).toBeDefined();
  await detached.destroy();

  const converging = terraformDeploy(stack(join(work, 'converging'), { delay: '1s', timeout: '10s' }));
  await converging.init();
  const failed = await converging.run(['apply', '-input=false', '-no-color', '-auto-approve']);
  console.log(`provider converge: apply with converge_config (timeout 10s) exited ${failed.status} in ${failed.ms} ms`);
  expect(failed.status).toBe(1);
  expect(failed.stderr).toMatch(/Service with ID \(\w+\) did not converge after 10s/);
  expect(failed.ms).toBeGreaterThanOrEqual(10_000);
  expect(await engine.find(`/services/${NAME}`)).toBeUndefined();
  expect(Object.keys(await converging.state())).toEqual([]);
});
