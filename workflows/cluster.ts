import {
  ApplicationFailure,
  CancellationScope,
  defineQuery,
  isCancellation,
  patched,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { ClusterActivities } from '../activities/cluster.js';
import { ClusterSpecSchema, expectedNodeCount, type ClusterSpec, type ClusterState, type NodePoolRecord } from '../domain/cluster.js';
import type { OperationFailure, Progress, Resume } from '../domain/operation.js';
import { describeFailure, Steps } from './steps.js';
import { timeouts } from './timeouts.js';

/** The live steps of any Kumo operation workflow. */
export const progressQuery = defineQuery<Progress>('progress');

export interface CreateClusterInput {
  operationId: string;
  clusterId: string;
  spec: ClusterSpec;
  /** How long the cluster may take to become active with every node ready. */
  readyTimeoutSeconds: number;
  /** A retry of a failed create: the steps it completed are not run again. */
  resume?: Resume;
}

export interface CreateClusterResult {
  rancherId: string;
  nodes: number;
}

export const createClusterSteps = ['validate', 'createRancherCluster', 'createNodePools', 'waitUntilActive', 'recordInventory'] as const;

const rancher = proxyActivities<ClusterActivities>(timeouts.rancherCall);
const store = proxyActivities<ClusterActivities>(timeouts.store);

/**
 * Creates a Kubernetes cluster through Rancher: validate the spec, create the
 * cluster and its node pools (finding, not repeating, what an earlier attempt
 * made), wait until it is active with every node ready, record the inventory.
 *
 * Cancelling it removes what it made in Rancher, so the name is free again.
 * A failure keeps what exists for inspection; creating the same name again
 * adopts it.
 */
export async function createCluster(input: CreateClusterInput): Promise<CreateClusterResult> {
  const steps = new Steps(createClusterSteps, input.resume);
  setHandler(progressQuery, () => steps.snapshot());
  const { waitUntilActive } = proxyActivities<ClusterActivities>(timeouts.rancherWait(input.readyTimeoutSeconds));

  try {
    const spec = await steps.run('validate', async () => {
      const parsed = ClusterSpecSchema.safeParse(input.spec);
      if (!parsed.success) {
        const fields = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`).join('; ');
        throw ApplicationFailure.create({ type: 'InvalidSpec', message: fields, nonRetryable: true });
      }
      return parsed.data;
    });
    const { rancherId } = await steps.run('createRancherCluster', () =>
      rancher.createRancherCluster({ operationId: input.operationId, clusterId: input.clusterId, spec }),
    );
    await steps.run('createNodePools', () => rancher.createNodePools({ clusterId: input.clusterId, rancherId, spec }));
    await steps.run('waitUntilActive', () =>
      waitUntilActive({
        operationId: input.operationId,
        clusterId: input.clusterId,
        rancherId,
        expectedNodes: expectedNodeCount(spec),
        timeoutSeconds: input.readyTimeoutSeconds,
      }),
    );
    const { nodes } = await steps.run('recordInventory', () => rancher.recordInventory({ clusterId: input.clusterId, rancherId }));
    await store.finishOperation({
      operationId: input.operationId,
      clusterId: input.clusterId,
      status: 'succeeded',
      steps: steps.snapshot().steps,
      failure: null,
      clusterState: 'active',
    });
    return { rancherId, nodes };
  } catch (err) {
    const failure = describeFailure(steps.currentStep, err);
    if (isCancellation(err)) {
      await CancellationScope.nonCancellable(async () => {
        await rancher.removeRancherCluster({ clusterId: input.clusterId, name: input.spec.name });
        await store.finishOperation({
          operationId: input.operationId,
          clusterId: input.clusterId,
          status: 'cancelled',
          steps: steps.snapshot().steps,
          failure,
          clusterState: 'removed',
        });
      });
      throw err;
    }
    await store.finishOperation({
      operationId: input.operationId,
      clusterId: input.clusterId,
      status: 'failed',
      steps: steps.snapshot().steps,
      failure,
      clusterState: 'failed',
    });
    throw operationFailed(failure, err);
  }
}

/** Ends the workflow as failed with the operation's failure type, so the Temporal UI shows the same reason. */
function operationFailed(failure: OperationFailure, cause: unknown): ApplicationFailure {
  return ApplicationFailure.create({
    type: failure.type,
    message: `${failure.step}: ${failure.message}`,
    nonRetryable: true,
    details: [failure],
    ...(cause instanceof Error ? { cause } : {}),
  });
}

// ---------------------------------------------------------------------------
// Day-2 operations. Each runs under the cluster's mutation workflow id, so
// Temporal itself keeps them one at a time per cluster.
// ---------------------------------------------------------------------------

/** What every day-2 operation on an existing cluster is given. */
interface ClusterOperationInput {
  operationId: string;
  clusterId: string;
  rancherId: string;
  /** A retry of a failed operation: the steps it completed are not run again. */
  resume?: Resume;
}

export interface ScaleNodePoolInput extends ClusterOperationInput {
  pool: string;
  poolRancherId: string;
  from: number;
  to: number;
  drainTimeoutSeconds: number;
  readyTimeoutSeconds: number;
  /** The cluster's pools with the new quantity, recorded on success. */
  nodePools: NodePoolRecord[];
}

export const scaleUpSteps = ['setQuantity', 'waitForNodes', 'recordInventory'] as const;
export const scaleDownSteps = ['selectNodes', 'cordon', 'drain', 'setQuantity', 'waitForRemoval', 'recordInventory'] as const;

/**
 * Scales a node pool. Up: raise the quantity and wait until the new nodes are
 * Ready. Down: pick the newest nodes, cordon and drain them (honouring
 * PodDisruptionBudgets, with a timeout), then lower the quantity and wait until
 * they are gone. Cancelled before the quantity changes, it uncordons what it
 * cordoned, so the cluster is as it was.
 */
export async function scaleNodePool(input: ScaleNodePoolInput): Promise<{ nodes: number }> {
  const up = input.to >= input.from;
  const steps = new Steps(up ? scaleUpSteps : scaleDownSteps, input.resume);
  setHandler(progressQuery, () => steps.snapshot());
  const wait = proxyActivities<ClusterActivities>(timeouts.rancherWait(input.readyTimeoutSeconds));
  const drainer = proxyActivities<ClusterActivities>(timeouts.rancherWait(input.drainTimeoutSeconds));
  let cordoned: string[] = [];
  let quantityChanged = false;

  return runOperation(input, steps, {
    onSuccess: { clusterState: 'active', nodePools: input.nodePools },
    async onCancel() {
      if (!quantityChanged && cordoned.length) {
        await rancher.setUnschedulable({ rancherId: input.rancherId, hostnames: cordoned, unschedulable: false });
      }
    },
    async body() {
      let gone: string[] = [];
      if (!up) {
        const doomed = await steps.run('selectNodes', () =>
          rancher.selectNodesToRemove({ rancherId: input.rancherId, poolRancherId: input.poolRancherId, count: input.from - input.to }),
        );
        gone = doomed.map((node) => node.id);
        const hostnames = doomed.map((node) => node.hostname);
        await steps.run('cordon', async () => {
          cordoned = hostnames;
          await rancher.setUnschedulable({ rancherId: input.rancherId, hostnames, unschedulable: true });
        });
        await steps.run('drain', async () => {
          for (const hostname of hostnames) {
            await drainer.drainNode({ operationId: input.operationId, rancherId: input.rancherId, hostname, timeoutSeconds: input.drainTimeoutSeconds });
          }
        });
      }
      await steps.run('setQuantity', async () => {
        await rancher.setPoolQuantity({ poolRancherId: input.poolRancherId, quantity: input.to });
        quantityChanged = true;
      });
      await steps.run(up ? 'waitForNodes' : 'waitForRemoval', () =>
        wait.waitForPool({
          operationId: input.operationId,
          clusterId: input.clusterId,
          rancherId: input.rancherId,
          poolRancherId: input.poolRancherId,
          quantity: input.to,
          goneNodeIds: gone,
          timeoutSeconds: input.readyTimeoutSeconds,
        }),
      );
      return steps.run('recordInventory', () => rancher.recordInventory({ clusterId: input.clusterId, rancherId: input.rancherId }));
    },
  });
}

export interface ReplaceNodeInput extends ClusterOperationInput {
  nodeId: string;
  skipDrain: boolean;
  drainTimeoutSeconds: number;
  readyTimeoutSeconds: number;
}

export const replaceNodeSteps = ['inspect', 'cordon', 'drain', 'deleteNode', 'waitForReplacement', 'verifyHealth', 'recordInventory'] as const;

/**
 * Replaces a broken node in one call: cordon and drain it (skipping both when
 * it no longer answers, as an operator would), delete it in Rancher, wait for
 * its pool to bring a replacement to Ready, and check the cluster is healthy.
 * The node is deleted once; the replacement is the pool's, so there is never
 * a second one. Cancelled before the delete, it uncordons the node.
 */
export async function replaceNode(input: ReplaceNodeInput): Promise<{ replacedBy: string[] }> {
  const steps = new Steps(replaceNodeSteps, input.resume);
  setHandler(progressQuery, () => steps.snapshot());
  const wait = proxyActivities<ClusterActivities>(timeouts.rancherWait(input.readyTimeoutSeconds));
  const drainer = proxyActivities<ClusterActivities>(timeouts.rancherWait(input.drainTimeoutSeconds));
  let cordoned: string | null = null;
  let deleted = false;

  return runOperation(input, steps, {
    onSuccess: { clusterState: 'active' },
    async onCancel() {
      if (!deleted && cordoned) await rancher.setUnschedulable({ rancherId: input.rancherId, hostnames: [cordoned], unschedulable: false });
    },
    async body() {
      const node = await steps.run('inspect', () => rancher.describeNode({ rancherId: input.rancherId, nodeId: input.nodeId }));
      if (!node.poolRancherId) {
        throw ApplicationFailure.create({ type: 'InvalidSpec', message: `node ${node.hostname} belongs to no node pool, so nothing would replace it`, nonRetryable: true });
      }
      if (input.skipDrain || !node.reachable) {
        const why = input.skipDrain ? 'skipped on request' : 'the node does not answer';
        steps.skip('cordon', why);
        steps.skip('drain', why);
      } else {
        await steps.run('cordon', async () => {
          cordoned = node.hostname;
          await rancher.setUnschedulable({ rancherId: input.rancherId, hostnames: [node.hostname], unschedulable: true });
        });
        await steps.run('drain', () =>
          drainer.drainNode({ operationId: input.operationId, rancherId: input.rancherId, hostname: node.hostname, timeoutSeconds: input.drainTimeoutSeconds }),
        );
      }
      await steps.run('deleteNode', async () => {
        deleted = true;
        await rancher.deleteNode({ nodeId: input.nodeId });
      });
      const poolRancherId = node.poolRancherId;
      const { nodes } = await steps.run('waitForReplacement', async () => {
        const quantity = await rancher.poolQuantity({ rancherId: input.rancherId, poolRancherId });
        return wait.waitForPool({
          operationId: input.operationId,
          clusterId: input.clusterId,
          rancherId: input.rancherId,
          poolRancherId,
          quantity,
          goneNodeIds: [input.nodeId],
          timeoutSeconds: input.readyTimeoutSeconds,
        });
      });
      await steps.run('verifyHealth', () => wait.waitUntilHealthy({ operationId: input.operationId, rancherId: input.rancherId, timeoutSeconds: input.readyTimeoutSeconds }));
      await steps.run('recordInventory', () => rancher.recordInventory({ clusterId: input.clusterId, rancherId: input.rancherId }));
      return { replacedBy: nodes };
    },
  });
}

export interface UpdateClusterInput extends ClusterOperationInput {
  kubernetesVersion?: string;
  description?: string;
  labels?: Record<string, string>;
  maxUnavailable: number;
  nodeTimeoutSeconds: number;
  readyTimeoutSeconds: number;
}

export const updateClusterSteps = ['updateSettings', 'waitForUpgrade', 'verifyHealth', 'recordInventory'] as const;

/**
 * Updates a cluster's settings and, with a new Kubernetes version, upgrades it:
 * Rancher rolls the control plane first, then the workers (`maxUnavailable` at
 * a time); Kumo follows node by node and stops with the name of the first node
 * that does not come back Ready. Cancelling stops the following, not Rancher's
 * rollout, which would otherwise leave nodes half-way: the operation says so.
 */
export async function updateCluster(input: UpdateClusterInput): Promise<void> {
  const steps = new Steps(updateClusterSteps, input.resume);
  setHandler(progressQuery, () => steps.snapshot());
  const wait = proxyActivities<ClusterActivities>(timeouts.rancherWait(input.readyTimeoutSeconds));
  await runOperation(input, steps, {
    onSuccess: { clusterState: 'active' },
    // A stalled or abandoned upgrade leaves nodes on two versions: flag the cluster.
    ...(input.kubernetesVersion ? { onFailure: 'failed' as const } : {}),
    async body() {
      await steps.run('updateSettings', () =>
        rancher.updateClusterSettings({
          clusterId: input.clusterId,
          rancherId: input.rancherId,
          maxUnavailable: input.maxUnavailable,
          ...(input.kubernetesVersion ? { kubernetesVersion: input.kubernetesVersion } : {}),
          ...(input.description !== undefined ? { description: input.description } : {}),
          ...(input.labels ? { labels: input.labels } : {}),
        }),
      );
      const version = input.kubernetesVersion;
      if (!version) {
        steps.skip('waitForUpgrade', 'no version change');
        steps.skip('verifyHealth', 'no version change');
      } else {
        await steps.run('waitForUpgrade', () =>
          wait.waitForUpgrade({
            operationId: input.operationId,
            clusterId: input.clusterId,
            rancherId: input.rancherId,
            kubernetesVersion: version,
            nodeTimeoutSeconds: input.nodeTimeoutSeconds,
          }),
        );
        await steps.run('verifyHealth', () => wait.waitUntilHealthy({ operationId: input.operationId, rancherId: input.rancherId, timeoutSeconds: input.readyTimeoutSeconds }));
      }
      await steps.run('recordInventory', () => rancher.recordInventory({ clusterId: input.clusterId, rancherId: input.rancherId }));
    },
  });
}

export interface DeleteClusterInput extends Omit<ClusterOperationInput, 'rancherId'> {
  rancherId: string | null;
  timeoutSeconds: number;
}

export const deleteClusterSteps = ['deleteRancherCluster', 'waitUntilGone', 'removeRecord'] as const;

/** Deletes a cluster with its node pools in Rancher, then forgets it (its operations stay, for the audit trail). */
export async function deleteCluster(input: DeleteClusterInput): Promise<void> {
  const steps = new Steps(deleteClusterSteps, input.resume);
  setHandler(progressQuery, () => steps.snapshot());
  const wait = proxyActivities<ClusterActivities>(timeouts.rancherWait(input.timeoutSeconds));
  await runOperation(input, steps, {
    onSuccess: { clusterState: 'removed' },
    onFailure: 'failed',
    async body() {
      await steps.run('deleteRancherCluster', () => rancher.deleteRancherCluster({ rancherId: input.rancherId }));
      await steps.run('waitUntilGone', () => wait.waitUntilGone({ rancherId: input.rancherId, timeoutSeconds: input.timeoutSeconds }));
      await steps.run('removeRecord', () => store.removeClusterRecord({ clusterId: input.clusterId }));
    },
  });
}

export interface SnapshotInput extends ClusterOperationInput {
  /** Keep only this many of Kumo's snapshots (oldest pruned first); null keeps all. */
  retention: number | null;
}

export const snapshotSteps = ['markSnapshot', 'takeSnapshot', 'waitForSnapshot', 'prune'] as const;

/** Takes an etcd snapshot now (named after the operation, so a retry finds it), then prunes to the retention. */
export async function takeSnapshot(input: SnapshotInput): Promise<{ snapshot: string; pruned: string[] }> {
  const steps = new Steps(snapshotSteps, input.resume);
  setHandler(progressQuery, () => steps.snapshot());
  const wait = proxyActivities<ClusterActivities>(timeouts.rancherWait(600));
  return runOperation(input, steps, {
    onSuccess: { clusterState: null },
    async body() {
      const name = `kumo-${input.operationId}`;
      // Runs started before the marker existed replay without it.
      if (patched('snapshot-marker')) {
        await steps.run('markSnapshot', () => rancher.markSnapshot({ rancherId: input.rancherId, name }));
      } else {
        steps.skip('markSnapshot', 'started before snapshot markers');
      }
      const backup = await steps.run('takeSnapshot', () => rancher.takeSnapshot({ clusterId: input.clusterId, rancherId: input.rancherId, name }));
      await steps.run('waitForSnapshot', () => wait.waitForSnapshot({ backupId: backup.id, timeoutSeconds: 600 }));
      const { deleted } = await steps.run('prune', () => rancher.pruneSnapshots({ clusterId: input.clusterId, rancherId: input.rancherId, retention: input.retention }));
      return { snapshot: backup.id, pruned: deleted };
    },
  });
}

export interface RestoreInput extends ClusterOperationInput {
  snapshotId: string;
  readyTimeoutSeconds: number;
}

export const restoreSteps = ['verifySnapshot', 'startRestore', 'waitUntilActive', 'verifyHealth', 'verifyRestored', 'recordInventory'] as const;

/**
 * Restores the whole cluster from an etcd snapshot: check the snapshot exists,
 * belongs to this cluster and is complete; start Rancher's restore; wait (with
 * a timeout) until the cluster is active again and healthy; then check that the
 * marker the snapshot captured is back, i.e. the state is the snapshot's. A restore stuck in
 * Rancher ends as a Timeout failure, never a silent loop.
 */
export async function restoreFromSnapshot(input: RestoreInput): Promise<void> {
  const steps = new Steps(restoreSteps, input.resume);
  setHandler(progressQuery, () => steps.snapshot());
  const wait = proxyActivities<ClusterActivities>(timeouts.rancherWait(input.readyTimeoutSeconds));
  await runOperation(input, steps, {
    onSuccess: { clusterState: 'active' },
    onFailure: 'failed',
    async body() {
      const { name } = await steps.run('verifySnapshot', () => rancher.verifySnapshot({ rancherId: input.rancherId, snapshotId: input.snapshotId }));
      await steps.run('startRestore', () => rancher.startRestore({ rancherId: input.rancherId, snapshotId: input.snapshotId, snapshotName: name }));
      const expected = await rancher.nodeCount({ rancherId: input.rancherId });
      await steps.run('waitUntilActive', () =>
        wait.waitUntilActive({
          operationId: input.operationId,
          clusterId: input.clusterId,
          rancherId: input.rancherId,
          expectedNodes: expected,
          timeoutSeconds: input.readyTimeoutSeconds,
        }),
      );
      await steps.run('verifyHealth', () => wait.waitUntilHealthy({ operationId: input.operationId, rancherId: input.rancherId, timeoutSeconds: input.readyTimeoutSeconds }));
      // Runs started before restores were verified replay without it.
      if (patched('restore-verify-marker')) {
        const check = await steps.run('verifyRestored', () => rancher.verifyRestored({ rancherId: input.rancherId, snapshotName: name }));
        if (!check.verified) steps.skip('verifyRestored', check.detail);
      } else {
        steps.skip('verifyRestored', 'started before restores were verified');
      }
      await steps.run('recordInventory', () => rancher.recordInventory({ clusterId: input.clusterId, rancherId: input.rancherId }));
    },
  });
}

/**
 * Runs an operation's body and records how it ended. On cancellation, `onCancel`
 * runs first (outside the cancelled scope) to leave the cluster consistent.
 */
async function runOperation<T>(
  input: { operationId: string; clusterId: string },
  steps: Steps,
  options: {
    body: () => Promise<T>;
    onSuccess: { clusterState: ClusterState | 'removed' | null; nodePools?: NodePoolRecord[] };
    /** The cluster's state after a failure or a cancellation (default: unchanged). */
    onFailure?: ClusterState;
    onCancel?: () => Promise<void>;
  },
): Promise<T> {
  try {
    const result = await options.body();
    await store.finishOperation({
      operationId: input.operationId,
      clusterId: input.clusterId,
      status: 'succeeded',
      steps: steps.snapshot().steps,
      failure: null,
      ...options.onSuccess,
    });
    return result;
  } catch (err) {
    const failure = describeFailure(steps.currentStep, err);
    if (isCancellation(err)) {
      await CancellationScope.nonCancellable(async () => {
        await options.onCancel?.();
        await store.finishOperation({
          operationId: input.operationId,
          clusterId: input.clusterId,
          status: 'cancelled',
          steps: steps.snapshot().steps,
          failure,
          clusterState: options.onFailure ?? null,
        });
      });
      throw err;
    }
    await store.finishOperation({
      operationId: input.operationId,
      clusterId: input.clusterId,
      status: 'failed',
      steps: steps.snapshot().steps,
      failure,
      clusterState: options.onFailure ?? null,
    });
    throw operationFailed(failure, err);
  }
}

export interface ScheduledSnapshotInput {
  clusterId: string;
  retention: number;
}

/**
 * What a cluster's snapshot schedule (a Temporal Schedule) starts: records an
 * operation for the run, then takes a snapshot and prunes to the retention.
 * A cluster that is gone or not active is skipped, and says so.
 */
export async function scheduledSnapshot(input: ScheduledSnapshotInput): Promise<{ snapshot: string; pruned: string[] } | { skipped: string }> {
  const info = workflowInfo();
  const begun = await store.beginScheduledOperation({
    clusterId: input.clusterId,
    kind: 'cluster.snapshot',
    workflowId: info.workflowId,
    runId: info.runId,
    steps: [...snapshotSteps],
  });
  if ('skipped' in begun) return begun;
  return takeSnapshot({ operationId: begun.operationId, clusterId: input.clusterId, rancherId: begun.rancherId, retention: input.retention });
}
