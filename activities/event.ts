import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { ProviderError } from '../domain/errors.js';
import {
  matchingBindings,
  pipelineStepNames,
  scheduledEvent,
  targetOf,
  type CloudEvent,
  type DeliveryStatus,
  type DeliveryTarget,
  type MatchedBinding,
  type PipelineStep,
  type RunPipelineInput,
} from '../domain/event.js';
import { eventKey as eventKeyOf } from '../domain/event-sources.js';
import { newOperation } from '../domain/operation.js';
import type { Store } from '../store/index.js';
import { classified } from './failure.js';

export interface EventActivityDeps {
  store: Store;
  /** How long a delivery waiting for a function's slot sleeps between tries. */
  slotPollMs?: number;
}

export interface InvokeFunctionInput {
  /** The delivery this invocation belongs to (a binding's, or a pipeline step's). */
  deliveryId: string;
  eventKey: string;
  binding: string | null;
  function: string;
  maxAttempts: number;
  /** The pipeline run's operation, for pipeline steps. */
  operationId: string | null;
  /** What the function receives: the event's data, or (a later pipeline step) the previous step's result. */
  body: { kind: 'event' } | { kind: 'value'; value: unknown; step: number };
}

export interface InvokeFunctionResult {
  result: unknown;
  invocationId: string | null;
  durationMs: number | null;
}

/** What the runtime answers (runtime/README.md). */
interface RuntimeAnswer {
  result?: unknown;
  invocationId?: string;
  durationMs?: number;
  error?: { type?: string; message?: string };
}

/** Extra time an invocation may take beyond the function's own timeout (queueing, a cold start). */
const invokeGraceMs = 15_000;

/**
 * The event side's activities: running a function for a delivery (within the
 * function's slot limit), settling deliveries and events, and turning a
 * schedule's firing into an event.
 */
export const createEventActivities = ({ store, slotPollMs = 250 }: EventActivityDeps) => {
  const events = store.events;

  /** Holds one of the function's slots for this delivery, waiting (heartbeating) while all are taken. */
  const takeSlot = async (input: InvokeFunctionInput, limit: number, ttlSeconds: number): Promise<void> => {
    const ctx = Context.current();
    let waiting = false;
    for (;;) {
      if (await events.acquireSlot(input.function, input.deliveryId, limit, ttlSeconds)) return;
      if (!waiting) {
        waiting = true;
        await events.updateDelivery(input.deliveryId, { status: 'waiting' });
      }
      ctx.heartbeat({ waitingForSlot: true });
      await ctx.sleep(slotPollMs);
    }
  };

  return classified({
    /**
     * Invokes a function with an event (or a pipeline step's input) and records
     * the outcome on the delivery. Retryable failures (the handler raised, a
     * timeout, the function not ready or unreachable) are retried by the
     * binding's policy; the last one dead-letters the delivery with its error.
     */
    async invokeFunction(input: InvokeFunctionInput): Promise<InvokeFunctionResult> {
      const ctx = Context.current();
      const attempt = ctx.info.attempt;
      const record = await events.getEvent(input.eventKey);
      if (!record) throw new ProviderError('NotFound', `event ${input.eventKey} is not in the store`);
      const fn = await store.getFunction(input.function);
      const fail = async (type: string, message: string, retryable: boolean): Promise<never> => {
        const last = !retryable || attempt >= input.maxAttempts;
        await events.updateDelivery(input.deliveryId, {
          status: last ? 'dead-lettered' : 'retrying',
          attempts: attempt,
          lastError: { type, message },
          ...(last ? { finishedAt: new Date().toISOString() } : {}),
        });
        throw ApplicationFailure.create({ type: retryable ? 'Transient' : type === 'NotFound' ? 'NotFound' : 'InvalidSpec', message: `${type}: ${message}`, nonRetryable: !retryable, details: [{ attempt }] });
      };
      if (!fn) return fail('NotFound', `no function named "${input.function}"`, false);
      if (!fn.url) return fail('NotReady', `function "${input.function}" has no Ready revision yet (${fn.state})`, true);

      const limit = fn.settings.eventConcurrency ?? 0;
      const timeoutMs = fn.settings.timeoutSeconds * 1000 + invokeGraceMs;
      if (limit > 0) await takeSlot(input, limit, Math.ceil(timeoutMs / 1000) + 30);
      const beat = setInterval(() => ctx.heartbeat({ invoking: true }), 5_000);
      try {
        await events.updateDelivery(input.deliveryId, { status: 'running', attempts: attempt });
        const headers = cloudEventHeaders(record.event, input.body.kind === 'value' ? input.body.step : null);
        const body = input.body.kind === 'event' ? record.event.data : input.body.value;
        let response: Response;
        try {
          response = await fetch(fn.url, {
            method: 'POST',
            headers: { ...headers, 'content-type': 'application/json', 'x-request-id': `${input.deliveryId}#${attempt}` },
            body: JSON.stringify(body ?? null),
            signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), ctx.cancellationSignal]),
          });
        } catch (err) {
          if (ctx.cancellationSignal.aborted) throw err;
          return await fail('Unreachable', `function "${input.function}" did not answer: ${err instanceof Error ? err.message : String(err)}`, true);
        }
        const text = await response.text();
        let answer: RuntimeAnswer = {};
        try {
          answer = JSON.parse(text) as RuntimeAnswer;
        } catch {
          // Not the runtime's JSON (a proxy's error page): classified by its status below.
        }
        if (response.status === 200) {
          const result: InvokeFunctionResult = { result: answer.result ?? null, invocationId: answer.invocationId ?? null, durationMs: answer.durationMs ?? null };
          await events.updateDelivery(input.deliveryId, { status: 'succeeded', attempts: attempt, lastError: null, result: result.result, invocationId: result.invocationId, finishedAt: new Date().toISOString() });
          return result;
        }
        const type = answer.error?.type ?? `HTTP ${response.status}`;
        const message = answer.error?.message ?? (text.slice(0, 300) || `status ${response.status}`);
        // 400 is the runtime refusing the event itself: sending it again cannot help.
        return await fail(type, message, response.status !== 400);
      } finally {
        clearInterval(beat);
        if (limit > 0) await events.releaseSlot(input.function, input.deliveryId);
      }
    },

    /** Records a delivery as it starts (idempotent). */
    async startDelivery(input: { id: string; eventKey: string; binding: string | null; target: DeliveryTarget; maxAttempts: number; operationId?: string | null }): Promise<void> {
      await events.startDelivery({ ...input, startedAt: new Date().toISOString() });
    },

    /**
     * Settles a delivery whose last attempt the workflow saw fail (a worker that
     * died mid-attempt never recorded it), or a pipeline delivery's outcome.
     */
    async settleDelivery(input: { id: string; status: DeliveryStatus; error?: { type: string; message: string } | null; result?: unknown; operationId?: string | null }): Promise<void> {
      const current = await events.getDelivery(input.id);
      if (!current || (current.finishedAt && current.status === input.status)) return;
      await events.updateDelivery(input.id, {
        status: input.status,
        ...(input.error !== undefined ? { lastError: input.error } : {}),
        ...(input.result !== undefined ? { result: input.result } : {}),
        ...(input.operationId !== undefined ? { operationId: input.operationId } : {}),
        finishedAt: new Date().toISOString(),
      });
    },

    /** A pipeline's steps, or null when there is no such pipeline. */
    async loadPipeline(input: { name: string }): Promise<PipelineStep[] | null> {
      return (await events.getPipeline(input.name))?.steps ?? null;
    },

    /** Records a pipeline run a dispatch started as an operation, with its input (so it can be retried); a retry finds it recorded. */
    async openPipelineRun(input: { input: RunPipelineInput; workflowId: string; runId: string }): Promise<void> {
      const run = input.input;
      const operation = newOperation({
        id: run.operationId,
        kind: 'pipeline.run',
        target: `pipeline/${run.pipeline}`,
        steps: pipelineStepNames(run.steps),
        startedAt: run.startedAt,
        workflowId: input.workflowId,
        runId: input.runId,
      });
      await store.openOperation(operation, null);
      const { resume: _resume, open: _open, ...kept } = run;
      await store.setOperationInput(run.operationId, kept, null);
    },

    /** Records how an event's deliveries ended: delivered when every one succeeded, else failed. */
    async finishEvent(input: { eventKey: string }): Promise<{ status: 'delivered' | 'failed' }> {
      const deliveries = (await events.deliveriesOf(input.eventKey)).filter((d) => d.binding !== null);
      const status = deliveries.every((d) => d.status === 'succeeded') ? 'delivered' : 'failed';
      await events.finishEvent(input.eventKey, status, new Date().toISOString());
      return { status };
    },

    /**
     * Turns a schedule's firing into an event (its id is the firing's workflow id,
     * so a retry records it once) and returns the delivery it gets: the cron
     * binding's own, or none when the binding was deleted meanwhile.
     */
    async fireSchedule(input: { binding: string; firingId: string; firedAt: string }): Promise<{ eventKey: string; matched: MatchedBinding[] }> {
      const binding = await events.getBinding(input.binding);
      const event = scheduledEvent(input.binding, input.firingId, input.firedAt, binding?.schedule?.data);
      const key = eventKeyOf(event.source, event.id);
      const { record } = await events.receiveEvent({ key, event, origin: 'schedule', trace: { schedule: input.binding, firing: input.firingId }, receivedAt: new Date().toISOString() });
      if (record.status !== 'received') return { eventKey: key, matched: record.matched };
      const matched: MatchedBinding[] = binding ? matchingBindings([binding], event).map((b) => ({ binding: b.name, target: targetOf(b), policy: b.delivery })) : [];
      await events.setEventMatched(key, matched.length ? 'dispatched' : 'unmatched', matched, matched.length ? null : new Date().toISOString());
      return { eventKey: key, matched };
    },
  });
};

export type EventActivities = ReturnType<typeof createEventActivities>;

/** The CloudEvents binary-mode headers of an event (pipeline steps after the first carry their step number). */
export function cloudEventHeaders(event: CloudEvent, step: number | null): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(event)) {
    if (name === 'data' || name === 'datacontenttype' || value === undefined || value === null) continue;
    headers[`ce-${name}`] = encodeHeaderValue(String(value));
  }
  if (step !== null) headers['ce-kumostep'] = String(step);
  return headers;
}

/** CloudEvents' HTTP binding: percent-encode space-less printable ASCII's exceptions (%, ", controls, non-ASCII). */
function encodeHeaderValue(value: string): string {
  return value.replace(/[^\x20-\x7e]|[%"]/gu, (c) => encodeURIComponent(c));
}
