import { ActivityFailure, ApplicationFailure, CancellationScope, ChildWorkflowFailure, executeChild, isCancellation, ParentClosePolicy, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { AddonActivities } from '../activities/addon.js';
import type { EventActivities, InvokeFunctionInput } from '../activities/event.js';
import { nonRetryableFailureTypes } from '../domain/errors.js';
import { deliveryId, pipelineStepNames, type DeliveryPolicy, type MatchedBinding, type RunPipelineInput } from '../domain/event.js';
import { progressQuery } from './cluster.js';
import { describeFailure, newOperationId, Steps } from './steps.js';
import { timeouts } from './timeouts.js';

const events = proxyActivities<EventActivities>(timeouts.store);
const operations = proxyActivities<Pick<AddonActivities, 'closeOperation'>>(timeouts.store);

/**
 * The invocation activity with a binding's (or a pipeline step's) retry policy.
 * An attempt may wait for one of the function's slots, heartbeating: a worker
 * that dies is noticed within the heartbeat timeout and the attempt is retried.
 */
function invoke(policy: DeliveryPolicy, input: InvokeFunctionInput) {
  return proxyActivities<EventActivities>({
    startToCloseTimeout: '24h',
    heartbeatTimeout: '30s',
    retry: {
      maximumAttempts: policy.attempts,
      initialInterval: `${Math.round(policy.backoffSeconds * 1000)}ms`,
      backoffCoefficient: policy.backoffCoefficient,
      maximumInterval: `${Math.round(policy.maxBackoffSeconds * 1000)}ms`,
      nonRetryableErrorTypes: [...nonRetryableFailureTypes],
    },
  }).invokeFunction(input);
}

export interface DispatchEventInput {
  eventKey: string;
  /** The bindings the event matched when it arrived, with their targets and policies as they were then. */
  matched: MatchedBinding[];
}

export interface DeliveryOutcome {
  binding: string;
  status: 'succeeded' | 'dead-lettered';
  error?: string;
}

/**
 * Delivers one event to every binding it matched, at the same time: a function
 * is invoked under the binding's retry policy; a pipeline runs as a child
 * workflow (an operation of its own). A delivery whose attempts run out is
 * dead-lettered with its last error. The event's payload is never in this
 * workflow's history: activities read it from the store by key.
 */
export async function dispatchEvent(input: DispatchEventInput): Promise<{ status: 'delivered' | 'failed'; deliveries: DeliveryOutcome[] }> {
  const deliveries = await Promise.all(input.matched.map((match) => deliver(input.eventKey, match)));
  const { status } = await events.finishEvent({ eventKey: input.eventKey });
  return { status, deliveries };
}

/** Fired by a cron binding's Temporal Schedule: the firing becomes an event and is delivered to the binding. */
export async function scheduledEvent(input: { binding: string }): Promise<{ status: 'delivered' | 'failed' | 'unmatched'; deliveries: DeliveryOutcome[] }> {
  const info = workflowInfo();
  const { eventKey, matched } = await events.fireSchedule({ binding: input.binding, firingId: info.workflowId, firedAt: info.startTime.toISOString() });
  if (!matched.length) return { status: 'unmatched', deliveries: [] };
  return dispatchEvent({ eventKey, matched });
}

async function deliver(eventKey: string, match: MatchedBinding): Promise<DeliveryOutcome> {
  const id = deliveryId(eventKey, match.binding);
  if (match.target.kind === 'function') {
    await events.startDelivery({ id, eventKey, binding: match.binding, target: match.target, maxAttempts: match.policy.attempts });
    try {
      await invoke(match.policy, { deliveryId: id, eventKey, binding: match.binding, function: match.target.name, maxAttempts: match.policy.attempts, operationId: null, body: { kind: 'event' } });
      return { binding: match.binding, status: 'succeeded' };
    } catch (err) {
      if (isCancellation(err)) throw err;
      const error = rootError(err);
      await events.settleDelivery({ id, status: 'dead-lettered', error });
      return { binding: match.binding, status: 'dead-lettered', error: `${error.type}: ${error.message}` };
    }
  }

  const pipeline = match.target.name;
  const steps = await events.loadPipeline({ name: pipeline });
  const operationId = newOperationId();
  await events.startDelivery({ id, eventKey, binding: match.binding, target: match.target, maxAttempts: 1, operationId: steps ? operationId : null });
  if (!steps) {
    const error = { type: 'NotFound', message: `no pipeline named "${pipeline}"` };
    await events.settleDelivery({ id, status: 'dead-lettered', error });
    return { binding: match.binding, status: 'dead-lettered', error: `${error.type}: ${error.message}` };
  }
  try {
    await executeChild(runPipeline, {
      workflowId: pipelineRunWorkflowId(pipeline, eventKey),
      args: [{ operationId, pipeline, steps, eventKey, deliveryId: id, open: true, startedAt: new Date().toISOString() }],
      parentClosePolicy: ParentClosePolicy.ABANDON,
    });
    return { binding: match.binding, status: 'succeeded' };
  } catch (err) {
    if (isCancellation(err)) throw err;
    // The run settles its delivery itself; this only reports.
    const error = rootError(err);
    return { binding: match.binding, status: 'dead-lettered', error: `${error.type}: ${error.message}` };
  }
}

/** A pipeline run's workflow id: one run per pipeline and event. */
export function pipelineRunWorkflowId(pipeline: string, eventKey: string): string {
  return `pipeline/${pipeline}/${eventKey}`;
}


/**
 * Runs a pipeline: the event goes to the first function, each function's result
 * is the next one's input, and the last result is the run's output. Each step is
 * invoked under its own retry policy, and recorded step by step as an operation
 * (`pipeline.run`), so a failed run can be retried from the failed step with
 * `POST /v1/operations/{id}/retry`: the steps before it are not run again.
 */
export async function runPipeline(input: RunPipelineInput): Promise<{ output: unknown }> {
  const names = pipelineStepNames(input.steps);
  const steps = new Steps(names, input.resume);
  setHandler(progressQuery, () => steps.snapshot());
  if (input.open) {
    const info = workflowInfo();
    await events.openPipelineRun({ input, workflowId: info.workflowId, runId: info.runId });
  }
  try {
    let value: unknown = null;
    for (let i = 0; i < input.steps.length; i++) {
      const step = input.steps[i]!;
      const name = names[i]!;
      const previous = value;
      const output = await steps.run(name, async () => {
        const id = deliveryId(input.operationId, name);
        await events.startDelivery({ id, eventKey: input.eventKey, binding: null, target: { kind: 'function', name: step.function }, maxAttempts: step.policy.attempts, operationId: input.operationId });
        try {
          const answer = await invoke(step.policy, {
            deliveryId: id,
            eventKey: input.eventKey,
            binding: null,
            function: step.function,
            maxAttempts: step.policy.attempts,
            operationId: input.operationId,
            body: i === 0 ? { kind: 'event' } : { kind: 'value', value: previous, step: i + 1 },
          });
          return answer.result;
        } catch (err) {
          if (!isCancellation(err)) await events.settleDelivery({ id, status: 'dead-lettered', error: rootError(err) });
          throw err;
        }
      });
      value = output === undefined ? null : output;
    }
    await operations.closeOperation({ operationId: input.operationId, status: 'succeeded', steps: steps.snapshot().steps, failure: null, result: { output: value } });
    if (input.deliveryId) await events.settleDelivery({ id: input.deliveryId, status: 'succeeded', result: value, operationId: input.operationId, error: null });
    return { output: value };
  } catch (err) {
    const failure = describeFailure(steps.currentStep, err);
    await CancellationScope.nonCancellable(async () => {
      await operations.closeOperation({ operationId: input.operationId, status: isCancellation(err) ? 'cancelled' : 'failed', steps: steps.snapshot().steps, failure });
      if (input.deliveryId) {
        await events.settleDelivery({ id: input.deliveryId, status: 'dead-lettered', error: { type: failure.type, message: `${failure.step}: ${failure.message}` }, operationId: input.operationId });
      }
    });
    if (isCancellation(err)) throw err;
    throw ApplicationFailure.create({ type: failure.type, message: `${failure.step}: ${failure.message}`, nonRetryable: true, details: [failure] });
  }
}

/** The type and message of what made a delivery fail, as operators read it. */
function rootError(err: unknown): { type: string; message: string } {
  let cause: unknown = err;
  while ((cause instanceof ActivityFailure || cause instanceof ChildWorkflowFailure) && cause.cause) cause = cause.cause;
  if (cause instanceof ApplicationFailure) return { type: cause.type ?? 'Internal', message: cause.message };
  if (cause instanceof Error) return { type: cause.name === 'TimeoutFailure' ? 'Timeout' : 'Internal', message: cause.message };
  return { type: 'Internal', message: String(cause) };
}
