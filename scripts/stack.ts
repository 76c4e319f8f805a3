import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { join, resolve } from 'node:path';
import { Connection } from '@temporalio/client';
import { bundleWorkflowCode } from '@temporalio/worker';
import { writeFile } from 'node:fs/promises';
import { ensureSearchAttributes } from '../workers/temporal.js';
import { workflowsPath } from '../workers/worker.js';
import { startChartRepo, type ChartRepo } from './chart-repo.js';
import { packageCharts } from './package-charts.js';
import { rabbitmqBinary, startRabbitMQ, type RabbitMQServer } from './rabbitmq.js';
import { registryBinary, startRegistry, type RegistryServer } from './registry.js';
import { projectRoot, temporalCli } from './tools.js';

/**
 * Starts Kumo's whole embedded stack as separate processes — the real Temporal
 * dev server, the Rancher simulator, the worker and the API — exactly as
 * `npm start` runs it. Tests use it too, so they exercise the same start path.
 */
export interface StackOptions {
  /** Folder for databases, simulator state and logs. */
  dataDir: string;
  apiPort: number;
  simPort: number;
  /** Embedded Temporal (persisted to `dataDir/temporal.db` when `persist`), or an existing server. */
  temporal: { mode: 'embedded'; port: number; uiPort: number; ui: boolean; persist: boolean } | { mode: 'external'; address: string };
  /** Start the simulator (skip when RANCHER_URL points at a real Rancher). */
  sim: boolean;
  /** Extra environment for every Kumo process (config overrides, simulator timing). */
  env?: Record<string, string>;
  /** Start a worker at once (default true); benchmarks of start latency leave it out. */
  worker?: boolean;
  /** Port of the embedded OCI registry (default: a free one). */
  registryPort?: number;
  /** Port of the embedded RabbitMQ (default: a free one); `false` runs none (the OpenStack event source is off unless KUMO_AMQP_URL is set). */
  rabbitmqPort?: number | false;
  /** Echo process output to this stream with a name prefix (else only to log files). */
  echo?: NodeJS.WritableStream;
}

export interface Stack {
  apiUrl: string;
  simUrl: string;
  temporalAddress: string;
  temporalUiUrl: string | null;
  /** The chart repository the add-on catalog is served from (the packaged charts/, or KUMO_CHART_REPO_URL). */
  chartRepoUrl: string;
  /** The OCI registry function images are pushed to; null when none could be started (the Function Service is off). */
  registryUrl: string | null;
  /** The RabbitMQ the OpenStack event source consumes (the embedded broker's, or KUMO_AMQP_URL); null when the source is off. */
  amqpUrl: string | null;
  /** The embedded broker, when the stack runs one (tests restart it). */
  rabbitmq: RabbitMQServer | null;
  /** The environment the Kumo processes run with. */
  env: Record<string, string>;
  /** Starts a(nother) worker process and waits until it polls. */
  startWorker(): Promise<ChildProcess>;
  /** The current worker process. */
  worker(): ChildProcess | null;
  /** Kills the current worker with SIGKILL, as a crash would. */
  killWorker(): Promise<void>;
  /** Kills the embedded Temporal dev server with SIGKILL and starts it again with the same arguments (same port, same SQLite file); resolves once it answers. */
  restartTemporal(): Promise<void>;
  stop(): Promise<void>;
}

interface Managed {
  name: string;
  child: ChildProcess;
  log: WriteStream;
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const dataDir = resolve(options.dataDir);
  const logDir = join(dataDir, 'logs');
  mkdirSync(logDir, { recursive: true });
  const running: Managed[] = [];
  let currentWorker: Managed | null = null;

  const launch = (name: string, command: string, args: readonly string[], env: Record<string, string>): Managed => {
    const log = createWriteStream(join(logDir, `${name}.log`), { flags: 'a' });
    const child = spawn(command, args, { cwd: projectRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const forward = (chunk: Buffer) => {
      log.write(chunk);
      if (options.echo) {
        for (const line of chunk.toString().split('\n')) if (line.trim()) options.echo.write(`[${name}] ${line}\n`);
      }
    };
    child.stdout?.on('data', forward);
    child.stderr?.on('data', forward);
    const managed = { name, child, log };
    running.push(managed);
    child.once('exit', () => {
      const index = running.indexOf(managed);
      if (index >= 0) running.splice(index, 1);
      log.end();
    });
    return managed;
  };

  const node = (file: string) => [process.execPath, ['--import', 'tsx', file]] as const;

  let chartRepo: ChartRepo | null = null;
  let registry: RegistryServer | null = null;
  let rabbitmq: RabbitMQServer | null = null;
  const stop = async () => {
    for (const managed of [...running].reverse()) await terminate(managed.child);
    await chartRepo?.close();
    await registry?.close();
    await rabbitmq?.close();
  };

  try {
    let temporalAddress: string;
    let temporalUiUrl: string | null = null;
    let temporalArgs: string[] | null = null;
    if (options.temporal.mode === 'embedded') {
      const t = options.temporal;
      temporalAddress = `127.0.0.1:${t.port}`;
      const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(t.port), '--log-level', 'warn', '--ui-disable-news-fetch'];
      if (t.persist) args.push('--db-filename', join(dataDir, 'temporal.db'));
      if (t.ui) {
        args.push('--ui-port', String(t.uiPort));
        temporalUiUrl = `http://127.0.0.1:${t.uiPort}`;
      } else {
        args.push('--headless');
      }
      launch('temporal', temporalCli(), args, {});
      temporalArgs = args;
    } else {
      temporalAddress = options.temporal.address;
    }
    await waitForTemporal(temporalAddress, running);

    // The add-on catalog: charts/ packaged by the setup, served as a chart repository on loopback.
    let chartRepoUrl = options.env?.KUMO_CHART_REPO_URL ?? process.env.KUMO_CHART_REPO_URL;
    if (!chartRepoUrl) {
      chartRepo = await startChartRepo({ dir: await packageCharts() });
      chartRepoUrl = chartRepo.url;
    }

    // The OCI registry for function images: Debian's docker-registry on loopback, when installed.
    let registryUrl = options.env?.KUMO_REGISTRY_URL ?? process.env.KUMO_REGISTRY_URL ?? null;
    if (!registryUrl) {
      if (registryBinary()) {
        registry = await startRegistry({ dataDir: join(dataDir, 'registry'), port: options.registryPort ?? 0 });
        registryUrl = registry.url;
      } else {
        console.warn('no OCI registry (the docker-registry package is not installed): the Function Service is off');
      }
    }

    // RabbitMQ for the OpenStack event source: Debian's rabbitmq-server on loopback, when installed.
    let amqpUrl = options.env?.KUMO_AMQP_URL ?? process.env.KUMO_AMQP_URL ?? null;
    if (!amqpUrl && options.rabbitmqPort !== false) {
      if (rabbitmqBinary()) {
        rabbitmq = await startRabbitMQ({ dataDir: join(dataDir, 'rabbitmq'), port: options.rabbitmqPort ?? 0 });
        amqpUrl = rabbitmq.url;
      } else {
        console.warn('no RabbitMQ (the rabbitmq-server package is not installed): the OpenStack event source is off');
      }
    }

    const simUrl = `http://127.0.0.1:${options.simPort}`;
    const env: Record<string, string> = {
      PORT: String(options.apiPort),
      TEMPORAL_ADDRESS: temporalAddress,
      DATABASE_URL: `sqlite:${join(dataDir, 'kumo.db')}`,
      KUMO_DATA_DIR: dataDir,
      RANCHER_URL: simUrl,
      SIM_PORT: String(options.simPort),
      SIM_STATE_FILE: join(dataDir, 'sim', 'rancher.json'),
      KUMO_CHART_REPO_URL: chartRepoUrl,
      KUMO_BUILD_CACHE_DIR: join(dataDir, 'build-cache'),
      ...(registryUrl ? { KUMO_REGISTRY_URL: registryUrl } : {}),
      ...(amqpUrl ? { KUMO_AMQP_URL: amqpUrl } : {}),
      ...(temporalUiUrl ? { TEMPORAL_UI_URL: temporalUiUrl } : {}),
      ...options.env,
    };
    if (options.sim) {
      const sim = launch('sim', ...node('sim/main.ts'), { ...env, SIM_TOKEN: env.RANCHER_TOKEN ?? 'kumo-sim-token' });
      await waitForLine(sim, /rancher simulator listening/, 30_000);
    }

    // Bundle the workflows once; every worker started from here (and after a
    // crash) loads the same bundle instead of running webpack again.
    const bundlePath = join(dataDir, 'workflow-bundle.js');
    const bundle = await bundleWorkflowCode({ workflowsPath, logger: quietLogger });
    await writeFile(bundlePath, bundle.code);
    env.KUMO_WORKFLOW_BUNDLE = bundlePath;

    let workerCount = 0;
    const startWorker = async () => {
      const managed = launch(workerCount++ === 0 ? 'worker' : `worker-${workerCount}`, ...node('workers/main.ts'), env);
      await waitForLine(managed, /kumo worker ready/, 60_000);
      currentWorker = managed;
      return managed.child;
    };
    if (options.worker !== false) await startWorker();

    const api = launch('api', ...node('api/main.ts'), env);
    await waitForLine(api, /kumo api listening/, 30_000);
    const apiUrl = `http://127.0.0.1:${options.apiPort}`;

    // The OpenStack event source, when there is a broker to consume from.
    if (amqpUrl) {
      const events = launch('events', ...node('workers/events.ts'), env);
      await waitForLine(events, /kumo events ready/, 30_000);
    }

    return {
      apiUrl,
      simUrl,
      temporalAddress,
      temporalUiUrl,
      chartRepoUrl,
      registryUrl,
      amqpUrl,
      rabbitmq,
      env,
      startWorker,
      worker: () => currentWorker?.child ?? null,
      async killWorker() {
        const child = currentWorker?.child;
        currentWorker = null;
        if (!child || child.exitCode !== null) return;
        const exited = new Promise((done) => child.once('exit', done));
        child.kill('SIGKILL');
        await exited;
      },
      async restartTemporal() {
        if (!temporalArgs) throw new Error('Temporal is external to this stack: there is nothing to restart');
        const current = running.find((managed) => managed.name === 'temporal');
        // Keep its place in `running`, so stop() still ends it after the worker and the API.
        const index = current ? running.indexOf(current) : 0;
        if (current && current.child.exitCode === null && current.child.signalCode === null) {
          const exited = new Promise((done) => current.child.once('exit', done));
          current.child.kill('SIGKILL');
          await exited;
        }
        const relaunched = launch('temporal', temporalCli(), temporalArgs, {});
        running.splice(running.indexOf(relaunched), 1);
        running.splice(Math.min(index, running.length), 0, relaunched);
        await waitForTemporal(temporalAddress, running);
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A logger for webpack's bundling of the workflows: warnings and errors only. */
export const quietLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: (message: string) => console.warn(message),
  error: (message: string) => console.error(message),
};

async function waitForTemporal(address: string, running: Managed[]): Promise<void> {
  const deadline = Date.now() + 60_000;
  let lastError: unknown;
  while (Date.now() < deadline) {
    const temporal = running.find((managed) => managed.name === 'temporal');
    if (temporal && temporal.child.exitCode !== null) throw new Error(`the Temporal dev server exited (${temporal.child.exitCode}); see its log`);
    try {
      const connection = await Connection.connect({ address, connectTimeout: 2000 });
      try {
        await connection.workflowService.describeNamespace({ namespace: 'default' });
        await ensureSearchAttributes(connection, 'default');
        return;
      } finally {
        await connection.close();
      }
    } catch (err) {
      lastError = err;
      await new Promise((done) => setTimeout(done, 300));
    }
  }
  throw new Error(`Temporal at ${address} did not answer within 60 s: ${String(lastError)}`);
}

function waitForLine(managed: Managed, pattern: RegExp, timeoutMs: number): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    let seen = '';
    const timer = setTimeout(() => finish(new Error(`${managed.name} did not become ready within ${timeoutMs} ms:\n${seen.slice(-2000)}`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      if (pattern.test(seen)) finish();
    };
    const onExit = (code: number | null) => finish(new Error(`${managed.name} exited (${code}) before it was ready:\n${seen.slice(-2000)}`));
    function finish(err?: Error) {
      clearTimeout(timer);
      managed.child.stdout?.off('data', onData);
      managed.child.stderr?.off('data', onData);
      managed.child.off('exit', onExit);
      if (err) reject(err);
      else resolvePromise();
    }
    managed.child.stdout?.on('data', onData);
    managed.child.stderr?.on('data', onData);
    managed.child.once('exit', onExit);
  });
}

/** SIGTERM, then SIGKILL after 10 s; resolves once the process has exited. */
export async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}
