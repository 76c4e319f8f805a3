import { Client, Connection } from '@temporalio/client';
import { makeTelemetryFilterString, NativeConnection, Runtime } from '@temporalio/worker';
import { ConfigError, loadConfig } from '../domain/config.js';
import { createLogger } from '../domain/log.js';
import { Store } from '../store/index.js';
import { temporalLogger } from './logging.js';
import { ensureSearchAttributes } from './temporal.js';
import { createKumoWorker } from './worker.js';

const log = createLogger({ service: 'worker', level: process.env.KUMO_LOG_LEVEL });

/** `KUMO_WORKER_METRICS_ADDRESS`: an IP and port, e.g. 127.0.0.1:9464 or [::]:9464 (the SDK binds an IP, not a host name). */
function metricsAddress(env: Record<string, string | undefined>): string | undefined {
  const value = env.KUMO_WORKER_METRICS_ADDRESS?.trim();
  if (!value) return undefined;
  if (!/^(\d{1,3}(\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]):\d{1,5}$/.test(value)) {
    throw new ConfigError(`Invalid configuration:\n  KUMO_WORKER_METRICS_ADDRESS: must be IP:port, e.g. 127.0.0.1:9464 (got "${value}")`);
  }
  return value;
}

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const bindAddress = metricsAddress(process.env);
  // Before any connection: the SDK's logs (its own, the workflows' and the
  // activities', and the core's forwarded ones) go through pino, and its
  // metrics (temporal_*) to a Prometheus endpoint when an address is set.
  Runtime.install({
    logger: temporalLogger(log),
    telemetryOptions: {
      logging: { filter: makeTelemetryFilterString({ core: 'WARN', other: 'ERROR' }), forward: {} },
      ...(bindAddress ? { metrics: { prometheus: { bindAddress } } } : {}),
    },
  });
  const address = config.TEMPORAL_ADDRESS ?? `127.0.0.1:${config.TEMPORAL_PORT}`;
  const connection = await NativeConnection.connect({ address });
  await ensureSearchAttributes(connection, config.TEMPORAL_NAMESPACE);
  const store = await Store.open(config.DATABASE_URL);
  const clientConnection = await Connection.connect({ address });
  const temporal = new Client({ connection: clientConnection, namespace: config.TEMPORAL_NAMESPACE });
  const bundlePath = process.env.KUMO_WORKFLOW_BUNDLE;
  const worker = await createKumoWorker({
    connection,
    temporal,
    config,
    store,
    ...(bundlePath ? { workflowBundle: { codePath: bundlePath } } : {}),
  });
  if (bindAddress) log.info({ metricsAddress: bindAddress }, `worker metrics on http://${bindAddress}/metrics`);
  // The SDK's runtime shuts the worker down gracefully on SIGINT and SIGTERM.
  log.info({ taskQueue: config.TEMPORAL_TASK_QUEUE, temporal: address }, `kumo worker ready on task queue ${config.TEMPORAL_TASK_QUEUE} (temporal ${address})`);
  await worker.run();
  await store.close();
  await clientConnection.close();
  await connection.close();
  log.info('kumo worker stopped');
}

main().catch((err) => {
  // A configuration mistake is the user's to fix: say what, without a stack trace.
  if (err instanceof ConfigError) log.fatal(err.message);
  else log.fatal({ err }, `the worker stopped: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
