import { classified } from '../activities/failure.js';
import { newOperation, type OperationFailure, type OperationKind, type OperationStatus, type StepRecord } from '../domain/operation.js';
import type { Store } from '../store/index.js';

export interface OpenOperationInput {
  id: string;
  kind: OperationKind;
  target: string;
  clusterId: string | null;
  steps: string[];
  workflowId: string;
  runId: string;
  startedAt: string;
}

/**
 * The bench worker's activities. `noop` is what a bare Temporal workflow calls;
 * the others are wrapped by `classified` and write to a real store, as Kumo's
 * activities do (bodies as in activities/addon.ts `openOperation`/`closeOperation`).
 */
export function createBenchActivities(store: Store) {
  return {
    async noop(): Promise<null> {
      return null;
    },
    ...classified({
      async stepNoop(_input: { step: string }): Promise<null> {
        return null;
      },
      async openOperation(input: OpenOperationInput): Promise<void> {
        await store.openOperation(newOperation(input), input.clusterId);
      },
      async closeOperation(input: { operationId: string; status: OperationStatus; steps: StepRecord[]; failure: OperationFailure | null }): Promise<void> {
        const current = input.steps.find((step) => step.status === 'running' || step.status === 'failed' || step.status === 'cancelled');
        await store.finishOperation(input.operationId, {
          status: input.status,
          steps: input.steps,
          step: current?.name ?? null,
          failure: input.failure,
          finishedAt: input.status === 'running' ? null : new Date().toISOString(),
        });
      },
    }),
  };
}

export type BenchActivities = ReturnType<typeof createBenchActivities>;
