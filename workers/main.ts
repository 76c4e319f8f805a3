import { NativeConnection } from '@temporalio/worker';
import { ConfigError, loadConfig } from '../domain/config.js';
import { Store } from '../store/index.js';
import { ensureSearchAttributes } from './temporal.js';
import { createKumoWorker } from './worker.js';

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const address = config.TEMPORAL_ADDRESS ?? `127.0.0.1:${config.TEMPORAL_PORT}`;
  const connection = await NativeConnection.connect({ address });
  await ensureSearchAttributes(connection, config.TEMPORAL_NAMESPACE);
  const store = await Store.open(config.DATABASE_URL);
  const bundlePath = process.env.KUMO_WORKFLOW_BUNDLE;
  const worker = await createKumoWorker({
    connection,
    config,
    store,
    ...(bundlePath ? { workflowBundle: { codePath: bundlePath } } : {}),
  });
  // The SDK's runtime shuts the worker down gracefully on SIGINT and SIGTERM.
  console.log(`kumo worker ready on task queue ${config.TEMPORAL_TASK_QUEUE} (temporal ${address})`);
  await worker.run();
  await store.close();
  await connection.close();
}

main().catch((err) => {
  // A configuration mistake is the user's to fix: say what, without a stack trace.
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
});
