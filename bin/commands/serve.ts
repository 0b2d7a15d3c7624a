import { parseArgs } from 'node:util';
import { readConfigFile } from './config-file';
import { UsageError } from '../../lib/cli/errors';
import { Command } from './command';

export const command: Command = {
  usage: `Usage: dtr-cache serve --config <config.yml> [--workers <n>|auto]

Runs the pull-through cache described by config.yml (REGISTRY_* environment overrides applied), in front of
middleware.registry[0].options.upstreams, and prints where it listens. Logs are JSON lines on stdout.
Exit 2 when the config is invalid (each error names its YAML path and the fix).

Options:
  --config <file>   the cache's config.yml (default /config.yml, as in the image)
  --workers <n>     processes serving on the same port (node:cluster), each a full cache; a crashed one is
                    replaced, /metrics sums them all, SIGTERM drains them all. auto (the default): the CPUs
                    this container may use (affinity and cgroup CPU quota). 1: a single process, no primary`,
  async run(args) {
    const { values, positionals } = parseArgs({
      args: [...args],
      allowPositionals: true,
      options: { config: { type: 'string', short: 'c' }, workers: { type: 'string', short: 'w' } },
    });
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}; pass the file with --config`);
    const workersFlag = values.workers ?? 'auto';
    if (workersFlag !== 'auto' && !/^[1-9]\d{0,2}$/.test(workersFlag)) {
      throw new UsageError(`--workers ${workersFlag}: give a whole number from 1, or auto (the CPUs this container may use)`);
    }
    const file = values.config ?? '/config.yml';
    const { default: cluster } = await import('node:cluster');
    const config = await readConfigFile(file);
    if (!config) {
      cluster.worker?.disconnect();
      return 2;
    }
    // Loaded here, not at the top, so `dtr-cache serve --help` does not load the server.
    const { usableCpus } = await import('../../lib/cache/cpus');
    const workers = workersFlag === 'auto' ? usableCpus() : Number(workersFlag);
    const upstreams = config.middleware.registry[0].options.upstreams.join(', ');
    const { createCacheServer } = await import('../../lib/cache/server');
    const { drainSwitch, onSignals } = await import('../../lib/cache/drain');
    const { createLogger } = await import('../../lib/cache/log');
    const pool = await import('../../lib/cache/cluster');
    const { workerSlotFromEnv } = await import('../../lib/cache/worker-slot');

    if (workers > 1 && cluster.isPrimary) {
      let started;
      try {
        started = await pool.startWorkerPool({ workers, drainTimeoutMs: config.http.draintimeout, log: createLogger(config.log.level) });
      } catch (err) {
        process.stderr.write(`dtr-cache serve: ${(err as Error).message}\n`);
        return 1;
      }
      process.stderr.write(`dtr-cache: serving ${started.url} with ${workers} workers (upstreams ${upstreams})\n`);
      return started.exited;
    }

    const inPool = cluster.isWorker;
    // A worker's IPC channel would keep it running: it leaves the pool when it is done, or when it cannot start.
    const leavePool = (code: number) => {
      if (inPool) cluster.worker?.disconnect();
      return code;
    };
    let server;
    try {
      const worker = workerSlotFromEnv();
      server = await createCacheServer(
        config,
        // Every log line of a worker says which one wrote it.
        inPool
          ? { worker, exposition: pool.workerExposition(), logger: createLogger(config.log.level, undefined, { worker: worker.index }) }
          : {},
      );
    } catch (err) {
      process.stderr.write(`dtr-cache serve: ${(err as Error).message}\n`);
      return leavePool(1);
    }
    // SIGTERM/SIGINT (or the primary's word): stop accepting, let responses and fills finish within
    // http.draintimeout, then exit 0. Installed before "serving" is printed, so a signal right after start is a
    // drain, not a kill.
    const running = server;
    const exited = new Promise<number>((resolve) => {
      const control = drainSwitch(running, config.http.draintimeout, (code) => {
        remove();
        resolve(code);
      });
      const remove = onSignals(control);
      if (inPool) pool.joinPool(running, control);
    });
    if (!inPool) process.stderr.write(`dtr-cache: serving ${server.url} (upstreams ${upstreams})\n`);
    return exited.then(leavePool);
  },
};
