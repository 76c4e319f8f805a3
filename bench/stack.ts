import { startStack, type Stack, type StackOptions } from '../scripts/stack.js';
import { freePort } from '../scripts/tools.js';

/**
 * The embedded stack as every benchmark runs it: free ports, a Temporal dev
 * server without persistence and without its UI, in `dataDir`; the rest
 * (simulator, worker, broker, environment) as the benchmark asks.
 */
export async function startBenchStack(dataDir: string, options: Pick<StackOptions, 'sim' | 'worker' | 'rabbitmqPort' | 'env'>): Promise<Stack> {
  return startStack({
    dataDir,
    apiPort: await freePort(),
    simPort: await freePort(),
    temporal: { mode: 'embedded', port: await freePort(), uiPort: 0, ui: false, persist: false },
    ...options,
  });
}
