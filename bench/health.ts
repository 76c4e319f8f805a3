import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newClusterOperation } from '../domain/operation.js';
import type { Stack } from '../scripts/stack.js';
import { Store } from '../store/index.js';
import { seedFleet, type FleetSize } from './fleet.js';
import { startBenchStack } from './stack.js';

export interface SweepBench extends FleetSize {
  /** The Schedule's interval the sweep must fit in. */
  intervalSeconds: number;
  concurrency: number;
  /** Each measured sweep's duration, as the sweep workflow recorded it (first check scheduled to last finished). */
  sweepsMs: number[];
  medianMs: number;
  maxMs: number;
  /** Clusters whose check failed in any measured sweep (should be 0). */
  failedChecks: number;
}

/**
 * The fleet health sweep over the seed's fleet: the simulator seeded with
 * `size`, each seeded cluster recorded in Kumo's store as an active cluster,
 * then whole sweeps triggered through the `health/sweep` Schedule (as an
 * operator's "sweep now" does) and timed by the sweep's own record. Each
 * cluster's check is the real one: /livez, /readyz, a TCP dial of its
 * endpoint, ComponentStatus, Rancher's and Kubernetes' node lists, and the
 * default thresholds' Prometheus queries (answered 404: the seeded clusters
 * have no monitoring add-on, which costs the same round trip).
 */
export async function benchSweep(size: FleetSize, options: { sweeps: number; concurrency: number; intervalSeconds: number }): Promise<SweepBench> {
  const dataDir = mkdtempSync(join(tmpdir(), 'kumo-bench-health-'));
  const token = `kumo_bench_${Date.now().toString(16)}_health_sweep`;
  let stack: Stack | null = null;
  try {
    stack = await startBenchStack(dataDir, {
      sim: true,
      env: { KUMO_ADMIN_TOKEN: token, KUMO_HEALTH_SWEEP_INTERVAL_S: '3600', KUMO_HEALTH_CONCURRENCY: String(options.concurrency) },
    });
    await seedFleet(stack.simUrl, size);
    const store = await Store.open(stack.env.DATABASE_URL!);
    try {
      await importSeededClusters(stack.simUrl, store);
      const api = async (path: string, method = 'GET') => {
        const response = await fetch(`${stack!.apiUrl}${path}`, { method, headers: { authorization: `Bearer ${token}` } });
        if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
        return response.json() as Promise<any>;
      };
      const sweep = async () => {
        const known = new Set((await store.health.listSweeps(50)).map((record) => record.id));
        await api('/v1/health/sweeps', 'POST');
        const deadline = Date.now() + 10 * 60_000;
        for (;;) {
          const done = (await store.health.listSweeps(50)).find((record) => !known.has(record.id) && record.finishedAt);
          if (done) return done;
          if (Date.now() > deadline) throw new Error('a sweep did not finish within 10 minutes');
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
      };
      await sweep(); // warm-up: kubeconfigs minted and cached, connections opened, JIT
      const sweepsMs: number[] = [];
      let failedChecks = 0;
      for (let i = 0; i < options.sweeps; i++) {
        const record = await sweep();
        const summary = record.summary as { durationMs: number; clusters: number; failed: unknown[] };
        if (summary.clusters !== size.clusters) throw new Error(`the sweep checked ${summary.clusters} clusters, seeded ${size.clusters}`);
        sweepsMs.push(summary.durationMs);
        failedChecks += summary.failed.length;
      }
      const sorted = [...sweepsMs].sort((a, b) => a - b);
      return {
        ...size,
        intervalSeconds: options.intervalSeconds,
        concurrency: options.concurrency,
        sweepsMs,
        medianMs: sorted[Math.floor(sorted.length / 2)] ?? NaN,
        maxMs: sorted[sorted.length - 1] ?? NaN,
        failedChecks,
      };
    } finally {
      await store.close();
    }
  } finally {
    await stack?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Records each of the simulator's clusters in Kumo's store as an active cluster it manages. */
async function importSeededClusters(simUrl: string, store: Store): Promise<void> {
  const state = (await (await fetch(`${simUrl}/admin/state`)).json()) as { clusters: Array<{ id: string; name: string; removed?: boolean }> };
  const now = new Date().toISOString();
  for (const seeded of state.clusters) {
    const operation = { ...newClusterOperation({ id: `op-import-${seeded.id}`, kind: 'cluster.create', clusterId: seeded.name, steps: [], startedAt: now }), status: 'succeeded' as const, finishedAt: now };
    await store.createCluster(
      { id: seeded.name, name: seeded.name, kubernetesVersion: 'v1.30.6-rancher1-1', labels: {}, state: 'active', rancherId: seeded.id, rancherState: 'active', apiEndpoint: null, nodePools: [], nodes: [], lastOperationId: null, createdAt: now, updatedAt: now },
      operation,
    );
  }
}
