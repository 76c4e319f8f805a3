import { defineQuery, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { ClusterCheckSummary, HealthActivities } from '../activities/health.js';
import { timeouts } from './timeouts.js';

const store = proxyActivities<Pick<HealthActivities, 'beginSweep' | 'finishSweep'>>(timeouts.store);
const checks = proxyActivities<Pick<HealthActivities, 'checkClusterHealth'>>(timeouts.healthCheck);

export interface SweepFleetInput {
  /** How many clusters are checked at once. */
  concurrency: number;
}

export interface SweepSummary {
  sweepId: string;
  clusters: number;
  healthy: number;
  degraded: number;
  unhealthy: number;
  unknown: number;
  skipped: number;
  /** Clusters whose check failed (after its retries): checked again next sweep. */
  failed: Array<{ clusterId: string; error: string }>;
  actions: Array<{ clusterId: string; kind: string; operationId?: string; refused?: string; reason: string }>;
  durationMs: number;
}

export const sweepProgressQuery = defineQuery<{ total: number; checked: number }>('sweepProgress');

/**
 * One sweep of the fleet, as the `kumo/health-sweep` Schedule starts it every
 * interval (overlap: skip). Fans out one check activity per cluster, at most
 * `concurrency` at a time; each check records its cluster's health, raises
 * its events and starts what its policy decides. A failed check is reported
 * and does not stop the sweep.
 */
export async function sweepFleet(input: SweepFleetInput): Promise<SweepSummary> {
  // The Schedule names runs to the second, so two sweeps triggered within one second share a workflow id: the run id tells them apart.
  const { workflowId, runId } = workflowInfo();
  const sweepId = `${workflowId}/${runId}`;
  const started = Date.now();
  const { clusterIds } = await store.beginSweep({ sweepId, startedAt: new Date(started).toISOString() });
  const results: ClusterCheckSummary[] = [];
  const failed: SweepSummary['failed'] = [];
  setHandler(sweepProgressQuery, () => ({ total: clusterIds.length, checked: results.length + failed.length }));

  const queue = [...clusterIds];
  const lane = async () => {
    for (let clusterId = queue.shift(); clusterId !== undefined; clusterId = queue.shift()) {
      try {
        results.push(await checks.checkClusterHealth({ clusterId }));
      } catch (err) {
        failed.push({ clusterId, error: err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err) });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(input.concurrency, clusterIds.length)) }, lane));

  const count = (status: ClusterCheckSummary['status']) => results.filter((result) => result.status === status).length;
  const summary: SweepSummary = {
    sweepId,
    clusters: clusterIds.length,
    healthy: count('healthy'),
    degraded: count('degraded'),
    unhealthy: count('unhealthy'),
    unknown: count('unknown') + failed.length,
    skipped: count('skipped'),
    failed,
    actions: results.flatMap((result) => result.actions.map((action) => ({ clusterId: result.clusterId, ...action }))),
    durationMs: Date.now() - started,
  };
  await store.finishSweep({ sweepId, finishedAt: new Date().toISOString(), summary: { ...summary } });
  return summary;
}
