import type { AutoOperation, AutoOperationResult } from '../activities/health.js';
import type { CloudEvent } from '../domain/event.js';
import type { ApiDeps } from './deps.js';
import { ingestEvent } from './ingest.js';
import { Problem } from './problem.js';
import { clusterMutationWorkflowId } from '../domain/operation.js';
import { activeCluster, startedRunOf, startReplaceNode, startScale } from './routes/clusters.js';

/** How long auto-heal gives a drain (a node that does not answer is not drained at all). */
const autoHealDrainTimeoutSeconds = 300;

/**
 * Starts an operation Kumo decided on by itself (auto-heal, autoscaling) through
 * the very path the API's routes take: the same refusals (cluster not active,
 * unsafe quantity, etcd quorum) and the same one-operation-per-cluster rule.
 * A refusal is an answer, not an error: the next sweep decides again.
 */
export async function startAutoOperation(deps: ApiDeps, operation: AutoOperation): Promise<AutoOperationResult> {
  if (operation.kind === 'replaceNode') {
    // Its id is derived from the node: an earlier attempt (a check retried after a crash) may have got this far.
    const earlier = await deps.store.getOperation(operation.operationId);
    if (earlier?.runId) return { operationId: earlier.id };
    if (earlier) {
      // Recorded, but the start was not seen through: it happened (find its run) or it did not (start it now).
      const runId = await startedRunOf(deps, clusterMutationWorkflowId(operation.clusterId), earlier.id);
      if (runId) {
        await deps.store.setOperationRun(earlier.id, runId);
        return { operationId: earlier.id };
      }
      await deps.store.forgetOperation(earlier.id, operation.clusterId, null);
    }
  }
  try {
    const cluster = await activeCluster(deps, operation.clusterId);
    const view =
      operation.kind === 'replaceNode'
        ? await startReplaceNode(deps, cluster, operation.nodeId, { skipDrain: false, drainTimeoutSeconds: autoHealDrainTimeoutSeconds }, operation.reason, operation.operationId)
        : await startScale(deps, cluster, operation.pool, operation.quantity, operation.drainTimeoutSeconds, operation.reason);
    return { operationId: view.id };
  } catch (err) {
    if (err instanceof Problem && err.status < 500) return { refused: err.detail, busy: err.status === 409 };
    throw err;
  }
}

/** Hands a health event to the event path, as any other source's. */
export async function ingestHealthEvent(deps: ApiDeps, event: CloudEvent): Promise<void> {
  await ingestEvent(deps, { event, origin: 'health', trace: {} });
}

/** Posts a health event to a webhook in structured mode, bounded in time; a non-2xx answer is an error. */
export async function postHealthWebhook(url: string, event: CloudEvent): Promise<void> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/cloudevents+json' },
    body: JSON.stringify(event),
    signal: AbortSignal.timeout(5000),
  });
  await response.body?.cancel();
  if (!response.ok) throw new Error(`answered ${response.status}`);
}
