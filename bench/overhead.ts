import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { quietLogger } from '../scripts/stack.js';
import { Store } from '../store/index.js';
import { createBenchActivities } from './activities.js';

const workflowsPath = fileURLToPath(new URL('./workflows.ts', import.meta.url));

export interface OverheadRow {
  /** Steps (activities) per workflow. */
  n: number;
  samples: number;
  /** Median wall time, start → result, in milliseconds. */
  kumoMs: number;
  bareMs: number;
  ratio: number;
}


/**
 * Orchestration overhead: `kumoSteps(n)` (Kumo's bookkeeping around n no-op
 * steps) against `bareSteps(n)` (n no-op activities), both from bench/workflows.ts,
 * served by one in-process worker (so the same worker settings) on its own task
 * queue of the same dev server, interleaved with alternating order.
 */
export async function benchOverhead(options: { temporalAddress: string; dataDir: string; ns: number[]; samples: number; warmup: number }): Promise<OverheadRow[]> {
  try {
    // The SDK's own logs (worker state changes) stay out of the bench's output.
    Runtime.install({ logger: new DefaultLogger('WARN') });
  } catch {
    // Installed already.
  }
  const store = await Store.open(`sqlite:${join(options.dataDir, 'bench-overhead.db')}`);
  const nativeConnection = await NativeConnection.connect({ address: options.temporalAddress });
  const connection = await Connection.connect({ address: options.temporalAddress });
  const client = new Client({ connection });
  const taskQueue = `kumo-bench-overhead-${randomBytes(4).toString('hex')}`;
  const worker = await Worker.create({
    connection: nativeConnection,
    taskQueue,
    workflowBundle: await bundleWorkflowCode({ workflowsPath, logger: quietLogger }),
    activities: createBenchActivities(store),
  });
  const running = worker.run();
  let serial = 0;
  const once = async (type: 'kumoSteps' | 'bareSteps', n: number): Promise<number> => {
    const t = performance.now();
    const handle = await client.workflow.start(type, { taskQueue, workflowId: `bench-${type}-${n}-${serial++}`, args: [n] });
    await handle.result();
    return performance.now() - t;
  };
  try {
    // Warm both paths (bundle, JIT, prepared statements, connections) before measuring.
    for (let i = 0; i < options.warmup; i++) {
      await once('kumoSteps', 10);
      await once('bareSteps', 10);
    }
    const rows: OverheadRow[] = [];
    for (const n of options.ns) {
      const kumo: number[] = [];
      const bare: number[] = [];
      for (let i = 0; i < options.samples; i++) {
        // Alternate which goes first, so neither always runs on a machine the other just warmed or loaded.
        if (i % 2 === 0) {
          kumo.push(await once('kumoSteps', n));
          bare.push(await once('bareSteps', n));
        } else {
          bare.push(await once('bareSteps', n));
          kumo.push(await once('kumoSteps', n));
        }
      }
      const kumoMs = median(kumo);
      const bareMs = median(bare);
      rows.push({ n, samples: options.samples, kumoMs, bareMs, ratio: kumoMs / bareMs });
    }
    return rows;
  } finally {
    worker.shutdown();
    await running;
    await nativeConnection.close();
    await connection.close();
    await store.close();
  }
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}
