// The bench worker's own workflow bundle (bench/overhead.ts): not part of Kumo's workflows/.
import { defineQuery, isCancellation, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Progress } from '../domain/operation.js';
import { describeFailure, Steps } from '../workflows/steps.js';
import { timeouts } from '../workflows/timeouts.js';
import type { BenchActivities } from './activities.js';

// Both workflows call their activities with the same preset, so the only difference is Kumo's bookkeeping.
const activities = proxyActivities<BenchActivities>(timeouts.store);

/** Bare Temporal: `n` no-op activities in sequence, nothing else. */
export async function bareSteps(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await activities.noop();
}

/** The live steps, under the query name every Kumo operation workflow answers. */
const progressQuery = defineQuery<Progress>('progress');

/**
 * What a Kumo operation does around `n` no-op steps: the operation recorded in
 * the store when it opens, each step run through `Steps` (state, timestamps,
 * result), the `progress` query, and the outcome written to the store at the
 * end — as the add-on reconcile, which opens its own operation, does.
 */
export async function kumoSteps(n: number): Promise<void> {
  const names = Array.from({ length: n }, (_, i) => `step-${i + 1}`);
  const steps = new Steps(names);
  setHandler(progressQuery, () => steps.snapshot());
  const info = workflowInfo();
  const operationId = `op-${info.workflowId}`;
  await activities.openOperation({
    id: operationId,
    kind: 'addon.reconcile',
    target: `bench/${n}`,
    clusterId: null,
    steps: names,
    workflowId: info.workflowId,
    runId: info.runId,
    startedAt: new Date().toISOString(),
  });
  try {
    for (const name of names) await steps.run(name, () => activities.stepNoop({ step: name }));
    await activities.closeOperation({ operationId, status: 'succeeded', steps: steps.snapshot().steps, failure: null });
  } catch (err) {
    const failure = describeFailure(steps.currentStep, err);
    await activities.closeOperation({ operationId, status: isCancellation(err) ? 'cancelled' : 'failed', steps: steps.snapshot().steps, failure });
    throw err;
  }
}
