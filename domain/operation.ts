import type { FailureType } from './errors.js';

export const operationStatuses = ['running', 'succeeded', 'failed', 'cancelled'] as const;
export type OperationStatus = (typeof operationStatuses)[number];

export const operationKinds = [
  'cluster.create',
  'cluster.scale',
  'cluster.replaceNode',
  'cluster.update',
  'cluster.delete',
  'cluster.snapshot',
  'cluster.restore',
  'addon.apply',
  'addon.remove',
  'addon.rollout',
  'addon.reconcile',
  'addon.repair',
  'addon.rollback',
  'function.deploy',
  'function.delete',
  'pipeline.run',
] as const;
export type OperationKind = (typeof operationKinds)[number];

export type StepStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'skipped';

/** One step of an operation, as the workflow reports it. */
export interface StepRecord {
  name: string;
  status: StepStatus;
  startedAt?: string;
  finishedAt?: string;
  /** Free-form progress of a long step, e.g. "3/5 nodes active". */
  detail?: string;
  /** What the step produced (JSON; null for nothing), kept so a retry can reuse it instead of running the step again. */
  result?: unknown;
  /** Set when a retry reused this step's result from the operation it retried. */
  reusedFrom?: string;
}

/**
 * Given to a workflow that retries a failed operation: the results of the steps
 * that operation completed, by step name. Those steps are not run again.
 */
export interface Resume {
  from: string;
  results: Record<string, unknown>;
}

/** The workflow type of each operation kind that can be retried from its failed step. */
export const retryableKinds: Partial<Record<OperationKind, string>> = {
  'cluster.create': 'createCluster',
  'cluster.scale': 'scaleNodePool',
  'cluster.replaceNode': 'replaceNode',
  'cluster.update': 'updateCluster',
  'cluster.delete': 'deleteCluster',
  'cluster.snapshot': 'takeSnapshot',
  'cluster.restore': 'restoreFromSnapshot',
  'addon.apply': 'applyAddon',
  'addon.remove': 'removeAddon',
  'function.deploy': 'deployFunction',
  'function.delete': 'deleteFunction',
  'pipeline.run': 'runPipeline',
};

/** The results a retry of an operation with these steps may reuse: every step that succeeded and recorded one. */
export function reusableResults(steps: StepRecord[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const step of steps) {
    if ((step.status === 'succeeded' || (step.status === 'skipped' && step.reusedFrom)) && step.result !== undefined) out[step.name] = step.result;
  }
  return out;
}

/** Why an operation failed: the step, the classified type, the message and the attempts made. */
export interface OperationFailure {
  step: string;
  type: FailureType;
  message: string;
  attempts: number;
}

/** The progress a workflow exposes through its `progress` query. */
export interface Progress {
  step: string | null;
  steps: StepRecord[];
}

/** An operation as the store keeps it and the API returns it. */
export interface OperationRecord {
  id: string;
  kind: OperationKind;
  /** What it acts on, e.g. `cluster/prod-eu-1`. */
  target: string;
  status: OperationStatus;
  step: string | null;
  /** Progress of the running step in words, when it reports any. */
  detail?: string;
  steps: StepRecord[];
  startedAt: string;
  finishedAt: string | null;
  failure: OperationFailure | null;
  workflowId: string;
  runId: string | null;
  /** What the operation produced, when it reports more than its steps (a rollout's report, a reconcile's repairs). */
  result?: unknown;
  /** The workflow's input (never holding a secret), kept so the operation can be retried. */
  input?: unknown;
  /** The operation this one retries. */
  retryOf?: string;
  /** Why Kumo started it by itself (auto-heal, autoscaling), with the inputs of that decision. */
  reason?: string;
}

/**
 * The workflow id under which every mutating operation on one cluster runs.
 * Temporal refuses a second running workflow with the same id, which is how
 * Kumo keeps one mutating operation per cluster at a time.
 */
export function clusterMutationWorkflowId(clusterId: string): string {
  return `cluster/${clusterId}/mutation`;
}

/** Search attributes Kumo sets on every workflow it starts (registered at start-up). */
export const searchAttributes = {
  operationId: 'KumoOperationId',
  kind: 'KumoKind',
  target: 'KumoTarget',
} as const;

/** A new running operation, every step pending. */
export function newOperation(input: { id: string; kind: OperationKind; target: string; steps: readonly string[]; startedAt: string; workflowId: string; runId?: string | null }): OperationRecord {
  return {
    id: input.id,
    kind: input.kind,
    target: input.target,
    status: 'running',
    step: null,
    steps: input.steps.map((name) => ({ name, status: 'pending' as const })),
    startedAt: input.startedAt,
    finishedAt: null,
    failure: null,
    workflowId: input.workflowId,
    runId: input.runId ?? null,
  };
}

/**
 * A new running operation on a cluster, every step pending.
 * @example const op = newClusterOperation({ id, kind: 'cluster.scale', clusterId: 'prod', steps: scaleUpSteps, startedAt });
 */
export function newClusterOperation(input: {
  id: string;
  kind: OperationKind;
  clusterId: string;
  steps: readonly string[];
  startedAt: string;
  workflowId?: string;
  runId?: string | null;
}): OperationRecord {
  return newOperation({ ...input, target: `cluster/${input.clusterId}`, workflowId: input.workflowId ?? clusterMutationWorkflowId(input.clusterId) });
}
