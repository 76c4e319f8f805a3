import {
  ApplicationFailure,
  CancellationScope,
  defineQuery,
  isCancellation,
  proxyActivities,
  setHandler,
} from '@temporalio/workflow';
import type { ClusterActivities } from '../activities/cluster.js';
import { ClusterSpecSchema, expectedNodeCount, type ClusterSpec } from '../domain/cluster.js';
import type { OperationFailure, Progress } from '../domain/operation.js';
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
  const steps = new Steps(createClusterSteps);
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
