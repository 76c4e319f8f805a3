import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../domain/config.js';
import { redactAmqpUrl } from '../providers/amqp.js';
import { startStack } from './stack.js';

/**
 * `npm start`: the whole embedded stack in one command. State lives in
 * KUMO_DATA_DIR (default .data/), so a second start finds everything again.
 */
async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const external = config.TEMPORAL_ADDRESS;
  // A RANCHER_URL set by the user means a real Rancher: no simulator then.
  const useSim = !process.env.RANCHER_URL;
  console.log('starting Kumo (embedded stack)…');
  const startedAt = Date.now();
  const stack = await startStack({
    dataDir: config.KUMO_DATA_DIR,
    apiPort: config.PORT,
    simPort: config.SIM_PORT,
    temporal: external
      ? { mode: 'external', address: external }
      : { mode: 'embedded', port: config.TEMPORAL_PORT, uiPort: config.TEMPORAL_UI_PORT, ui: true, persist: true },
    sim: useSim,
    // A fixed port: function images are referred to by registry host and digest, so it must not move between starts.
    registryPort: Number(process.env.KUMO_REGISTRY_PORT ?? 5001),
    rabbitmqPort: Number(process.env.KUMO_RABBITMQ_PORT ?? 5673),
    echo: process.env.KUMO_ECHO_LOGS === '1' ? process.stdout : undefined,
  });
  const lines = [
    '',
    'Kumo is up.',
    `  API            ${stack.apiUrl}`,
    `  API docs       ${stack.apiUrl}/docs   (OpenAPI: ${stack.apiUrl}/openapi.json)`,
    `  Temporal UI    ${stack.temporalUiUrl ?? '(external Temporal: use its own UI)'}`,
    `  Temporal       ${stack.temporalAddress}`,
    `  Chart repo     ${stack.chartRepoUrl}   (the add-on catalog)`,
    `  OCI registry   ${stack.registryUrl ?? '(none: install the docker-registry package for the Function Service)'}`,
    `  RabbitMQ       ${stack.amqpUrl ? `${redactAmqpUrl(stack.amqpUrl)}   (OpenStack notifications: queue ${config.KUMO_AMQP_QUEUE})` : '(none: the OpenStack event source is off; install rabbitmq-server or set KUMO_AMQP_URL)'}`,
    useSim ? `  Rancher (simulator) ${stack.simUrl}` : `  Rancher        ${config.RANCHER_URL}`,
    `  Data and logs  ${config.KUMO_DATA_DIR}/ (logs in ${config.KUMO_DATA_DIR}/logs/)`,
    '',
    ...adminTokenLines(config.KUMO_DATA_DIR, startedAt),
    `Try: export KUMO_TOKEN=$(cat ${config.KUMO_DATA_DIR}/admin-token)`,
    `     curl -s -XPOST ${stack.apiUrl}/v1/clusters -H "authorization: Bearer $KUMO_TOKEN" -H 'content-type: application/json' \\`,
    `       -d '{"name":"demo","kubernetesVersion":"v1.30.6-rancher1-1","nodePools":[{"name":"all","roles":["etcd","controlplane","worker"],"quantity":3}]}'`,
    'Press Ctrl-C to stop.',
  ];
  console.log(lines.join('\n'));

  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    console.log('\nstopping Kumo…');
    await stack.stop();
    console.log('stopped.');
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown());
  process.on('SIGTERM', () => void shutdown());
}

/**
 * The admin token the API made on this installation's first start: shown on the
 * terminal that first time only (never in a log file); later starts say where it is.
 */
function adminTokenLines(dataDir: string, startedAt: number): string[] {
  const file = join(dataDir, 'admin-token');
  if (!existsSync(file)) return ['  Admin token    (tokens exist already: create more with `kumo tokens create`)', ''];
  if (statSync(file).mtimeMs < startedAt) return [`  Admin token    in ${file}`, ''];
  return ['', `  Admin token    ${readFileSync(file, 'utf8').trim()}`, `                 (created on this first start; also in ${file}, readable by you only)`, ''];
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
