import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type { Config } from '../domain/config.js';
import { eventKey } from '../domain/event-sources.js';
import { dispatchWorkflowId, matchingBindings, targetOf, type CloudEvent, type EventOrigin, type EventRecord, type MatchedBinding } from '../domain/event.js';
import type { Store } from '../store/index.js';

export interface IngestDeps {
  store: Store;
  temporal: Client;
  config: Pick<Config, 'TEMPORAL_TASK_QUEUE'>;
}

export interface Ingested {
  record: EventRecord;
  /** The same event (source and id) arrived before and was handed over then: nothing was started now. */
  duplicate: boolean;
}

/**
 * Takes an event in, from any source: records it, matches it against the
 * bindings, and hands it to Temporal as a `dispatchEvent` workflow whose id is
 * derived from the event's source and id. When this resolves, the event is
 * durable (in the store and, if anything matched, in Temporal), so a source may
 * acknowledge it. A second arrival of the same event is recognised twice over:
 * by its record, and by Temporal refusing a second workflow of the same id.
 * An event that matches no binding is recorded as `unmatched` and goes nowhere.
 */
export async function ingestEvent(deps: IngestDeps, input: { event: CloudEvent; origin: EventOrigin; trace: Record<string, string>; receivedAt?: string }): Promise<Ingested> {
  const events = deps.store.events;
  const key = eventKey(input.event.source, input.event.id);
  const receivedAt = input.receivedAt ?? new Date().toISOString();
  const { isNew, record } = await events.receiveEvent({ key, event: input.event, origin: input.origin, trace: input.trace, receivedAt });
  // An earlier arrival still `received` was recorded but maybe not handed over (a crash in between): finish its hand-over.
  if (!isNew && record.status !== 'received') return { record, duplicate: true };

  const bindings = (await events.listBindings()).filter((binding) => !binding.schedule);
  const matched: MatchedBinding[] = matchingBindings(bindings, record.event).map((binding) => ({ binding: binding.name, target: targetOf(binding), policy: binding.delivery }));
  if (!matched.length) {
    await events.setEventMatched(key, 'unmatched', [], new Date().toISOString());
    return { record: { ...record, status: 'unmatched', matched: [], finishedAt: new Date().toISOString() }, duplicate: !isNew };
  }
  await events.setEventMatched(key, 'received', matched);
  try {
    await deps.temporal.workflow.start('dispatchEvent', {
      taskQueue: deps.config.TEMPORAL_TASK_QUEUE,
      workflowId: dispatchWorkflowId(key),
      args: [{ eventKey: key, matched }],
      workflowIdConflictPolicy: 'FAIL',
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
    });
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
  }
  await events.markDispatched(key);
  return { record: { ...record, status: 'dispatched', matched }, duplicate: !isNew };
}
