import { startChartRepo } from './chart-repo.js';
import { packagedChartsDir } from './package-charts.js';

/**
 * Serves the packaged add-on catalog as a chart repository, for deployments
 * without a chart repository of their own (docker-compose's `kumo-charts`).
 *
 *   CHARTS_DIR (default .tools/charts), CHARTS_HOST (default 0.0.0.0), CHARTS_PORT (default 8879)
 */
const port = Number(process.env.CHARTS_PORT ?? 8879);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error('CHARTS_PORT must be a port between 1 and 65535');
  process.exit(1);
}
const repo = await startChartRepo({ dir: process.env.CHARTS_DIR ?? packagedChartsDir, port, host: process.env.CHARTS_HOST ?? '0.0.0.0' });
console.log(`kumo chart repository listening on ${repo.url}`);
const stop = () => void repo.close().finally(() => process.exit(0));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
