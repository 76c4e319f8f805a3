import { serve } from '@hono/node-server';
import { Client, Connection } from '@temporalio/client';
import { ConfigError, loadConfig } from '../domain/config.js';
import { Store } from '../store/index.js';
import { ensureSearchAttributes } from '../workers/temporal.js';
import { ensureAdminToken } from './auth.js';
import { createApp } from './app.js';
import { apiLog } from './metrics.js';
import { ensureAddonReconcileSchedule } from './routes/addons.js';
import { ensureHealthSweepSchedule } from './routes/health.js';

const log = apiLog();

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const store = await Store.open(config.DATABASE_URL);
  const address = config.TEMPORAL_ADDRESS ?? `127.0.0.1:${config.TEMPORAL_PORT}`;
  // Lazy: the API starts (and /readyz says why it is not ready) even while Temporal is down.
  const connection = Connection.lazy({ address });
  const temporal = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
  const bootstrap = await ensureAdminToken(store, config);
  if (bootstrap.created) {
    log.info({ file: bootstrap.file }, `no token existed: created the admin token "admin"${bootstrap.file ? ` (its secret is in ${bootstrap.file})` : ' (from KUMO_ADMIN_TOKEN)'}`);
  }
  const app = createApp({ store, temporal, config });
  // Workflows the API starts carry Kumo's search attributes, which Temporal
  // refuses until they are registered. Register them as soon as Temporal
  // answers, without holding up start-up (readyz tells whether Temporal is there).
  registerSearchAttributes(connection, config.TEMPORAL_NAMESPACE)
    .then(() => Promise.all([ensureAddonReconcileSchedule(temporal, config), ensureHealthSweepSchedule(temporal, config)]))
    .catch((err) => log.error({ err }, `schedules: ${err instanceof Error ? err.message : String(err)}`));
  const server = serve({ fetch: app.fetch, port: config.PORT, hostname: config.HOST }, (info) => {
    log.info({ host: config.HOST, port: info.port }, `kumo api listening on http://${config.HOST}:${info.port}`);
  });
  const stop = () => {
    server.close(() => {
      void connection.close().finally(() => store.close().finally(() => process.exit(0)));
    });
    // Open keep-alive connections must not hold shutdown forever.
    setTimeout(() => process.exit(0), 3000).unref();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

async function registerSearchAttributes(connection: Connection, namespace: string): Promise<void> {
  for (let delay = 500; ; delay = Math.min(delay * 2, 10_000)) {
    try {
      await ensureSearchAttributes(connection, namespace);
      return;
    } catch {
      await new Promise((done) => setTimeout(done, delay).unref());
    }
  }
}

main().catch((err) => {
  // A configuration mistake is the user's to fix: say what, without a stack trace.
  if (err instanceof ConfigError) log.fatal(err.message);
  else log.fatal({ err }, `the API could not start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
