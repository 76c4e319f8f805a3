import { loadConfig } from '../domain/config.js';
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
  const stack = await startStack({
    dataDir: config.KUMO_DATA_DIR,
    apiPort: config.PORT,
    simPort: config.SIM_PORT,
    temporal: external
      ? { mode: 'external', address: external }
      : { mode: 'embedded', port: config.TEMPORAL_PORT, uiPort: config.TEMPORAL_UI_PORT, ui: true, persist: true },
    sim: useSim,
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
    useSim ? `  Rancher (simulator) ${stack.simUrl}` : `  Rancher        ${config.RANCHER_URL}`,
    `  Data and logs  ${config.KUMO_DATA_DIR}/ (logs in ${config.KUMO_DATA_DIR}/logs/)`,
    '',
    `Try: curl -s -XPOST ${stack.apiUrl}/v1/clusters -H 'content-type: application/json' \\`,
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

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
