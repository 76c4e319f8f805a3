import { randomUUID } from 'node:crypto';
import { OpenAPIHono, z } from '@hono/zod-openapi';
import { ScheduleAlreadyRunning, ScheduleNotFoundError, ScheduleOverlapPolicy, WorkflowExecutionAlreadyStartedError, type ScheduleSpec as TemporalScheduleSpec } from '@temporalio/client';
import {
  BindingNameSchema,
  bindingScheduleId,
  BindingSpecSchema,
  CloudEventSchema,
  deliveryStatuses,
  eventFromBinary,
  eventStatuses,
  normalizeEvent,
  PipelineNameSchema,
  pipelineStepNames,
  pipelineSteps,
  PipelineSpecSchema,
  type BindingRecord,
  type CloudEvent,
  type DeliveryRecord,
  type EventRecord,
  type PipelineRecord,
  type PipelineStep,
  type RunPipelineInput,
  type ScheduleSpec,
} from '../../domain/event.js';
import { alertEvents, AlertmanagerPayloadSchema } from '../../domain/event-sources.js';
import { FunctionNameSchema } from '../../domain/function.js';
import { newOperation, searchAttributes, type OperationRecord, type Resume } from '../../domain/operation.js';
import { pipelineRunWorkflowId } from '../../workflows/event.js';
import type { Context } from 'hono';
import { principalOf } from '../auth.js';
import type { ApiDeps } from '../deps.js';
import { ingestEvent } from '../ingest.js';
import { Problem } from '../problem.js';
import { apiRoute, OperationSchema, problem } from '../schemas.js';
import { newOperationId } from './clusters.js';
import { storedView } from './operations.js';

const BindingParam = z.object({ name: BindingNameSchema.openapi({ param: { name: 'name', in: 'path' } }) });
const PipelineParam = z.object({ name: PipelineNameSchema.openapi({ param: { name: 'name', in: 'path' } }) });
const FunctionParam = z.object({ name: FunctionNameSchema.openapi({ param: { name: 'name', in: 'path' } }) });
const EventParam = z.object({ id: z.string().min(1).max(256).openapi({ param: { name: 'id', in: 'path' }, example: 'evt-3f1c9a0b2d4e5f60718293a4b5c6d7e8' }) });

const TargetSchema = z.object({ kind: z.enum(['function', 'pipeline']), name: z.string() });

const BindingSchema = BindingSpecSchema
  .safeExtend({
    createdAt: z.string(),
    scheduleId: z.string().nullable().openapi({ description: 'The Temporal Schedule of a cron binding' }),
    nextFirings: z.array(z.string()).optional().openapi({ description: 'The next times a cron binding fires (from its Temporal Schedule)' }),
    links: z.object({ self: z.string(), temporalSchedule: z.string().optional() }),
  })
  .openapi('Binding');

const PipelineSchema = z
  .object({
    name: z.string(),
    description: z.string().nullable(),
    steps: z.array(z.object({ function: z.string(), policy: z.object({ attempts: z.number(), backoffSeconds: z.number(), backoffCoefficient: z.number(), maxBackoffSeconds: z.number() }) })),
    createdAt: z.string(),
    updatedAt: z.string(),
    links: z.object({ self: z.string(), runs: z.string() }),
  })
  .openapi('Pipeline');

const DeliverySchema = z
  .object({
    id: z.string(),
    event: z.string(),
    binding: z.string().nullable(),
    target: TargetSchema,
    status: z.enum(deliveryStatuses).openapi({ description: '`waiting`: held until one of the function\'s event slots is free; `dead-lettered`: attempts ran out (lastError says why)' }),
    attempts: z.number().int(),
    maxAttempts: z.number().int(),
    lastError: z.object({ type: z.string(), message: z.string() }).nullable(),
    result: z.unknown(),
    invocationId: z.string().nullable(),
    operation: z.string().nullable(),
    startedAt: z.string(),
    finishedAt: z.string().nullable(),
    links: z.object({ event: z.string(), operation: z.string().optional() }),
  })
  .openapi('Delivery');

const EventSchema = z
  .object({
    id: z.string().openapi({ description: "Kumo's id of the event (from its source and CloudEvent id)" }),
    cloudEvent: z.record(z.string(), z.unknown()),
    origin: z.string(),
    trace: z.record(z.string(), z.string()),
    status: z.enum(eventStatuses).openapi({ description: '`unmatched`: no binding matched (recorded, not retried); `dispatched`: deliveries running; `delivered` or `failed` when they ended' }),
    matched: z.array(z.object({ binding: z.string(), target: TargetSchema })),
    duplicates: z.number().int().openapi({ description: 'How many more times the same event arrived (each recognised, none dispatched again)' }),
    receivedAt: z.string(),
    finishedAt: z.string().nullable(),
    deliveries: z.array(DeliverySchema).optional(),
    links: z.object({ self: z.string(), temporal: z.string().optional() }),
  })
  .openapi('Event');

const Accepted = (description: string) => ({ description, content: { 'application/json': { schema: z.object({ event: EventSchema }) } } });

// ── routes ──

const createBindingRoute = apiRoute({
  method: 'post',
  path: '/v1/bindings',
  tags: ['events'],
  summary: 'Bind events (or a schedule) to a function or a pipeline',
  description:
    'An event binding matches by `source` (exact, or a prefix ending in `*`) and `filter` (type exact or prefix, attribute equality, conditions on the data). A cron binding (`schedule`) is a Temporal Schedule that fires the target with a `kumo.schedule.fired` event. Deliveries are retried by `delivery` and dead-lettered with the last error when the attempts run out.',
  request: { body: { required: true, content: { 'application/json': { schema: BindingSpecSchema } } } },
  responses: {
    201: { description: 'Created', content: { 'application/json': { schema: z.object({ binding: BindingSchema }) } } },
    409: problem('A binding of that name exists'),
    503: problem('Temporal cannot be reached (cron bindings); nothing was created'),
  },
});

const listBindingsRoute = apiRoute({
  method: 'get',
  path: '/v1/bindings',
  tags: ['events'],
  summary: 'List bindings',
  request: { query: z.object({ function: FunctionNameSchema.optional(), pipeline: PipelineNameSchema.optional() }) },
  responses: { 200: { description: 'Bindings by name', content: { 'application/json': { schema: z.object({ items: z.array(BindingSchema) }) } } } },
});

const getBindingRoute = apiRoute({
  method: 'get',
  path: '/v1/bindings/{name}',
  tags: ['events'],
  summary: 'Get a binding (a cron binding with its next firings)',
  request: { params: BindingParam },
  responses: { 200: { description: 'The binding', content: { 'application/json': { schema: BindingSchema } } }, 404: problem('No such binding') },
});

const deleteBindingRoute = apiRoute({
  method: 'delete',
  path: '/v1/bindings/{name}',
  tags: ['events'],
  summary: 'Delete a binding (and the Temporal Schedule of a cron binding)',
  description: 'Deliveries already running finish; no new event is matched to it.',
  request: { params: BindingParam },
  responses: { 204: { description: 'Deleted' }, 404: problem('No such binding'), 503: problem('Temporal cannot be reached; nothing was deleted') },
});

const createPipelineRoute = apiRoute({
  method: 'post',
  path: '/v1/pipelines',
  tags: ['events'],
  summary: 'Create a pipeline of functions',
  description: "Each step's result is the next step's input. Each step is retried on its own (`delivery`, or the step's `attempts`); a run is an operation (`pipeline.run`) inspectable step by step and retryable from its failed step.",
  request: { body: { required: true, content: { 'application/json': { schema: PipelineSpecSchema } } } },
  responses: {
    201: { description: 'Created', content: { 'application/json': { schema: z.object({ pipeline: PipelineSchema }) } } },
    409: problem('A pipeline of that name exists (PUT replaces it)'),
  },
});

const putPipelineRoute = apiRoute({
  method: 'put',
  path: '/v1/pipelines/{name}',
  tags: ['events'],
  summary: 'Create or replace a pipeline',
  description: 'Runs already started keep the steps they started with.',
  request: { params: PipelineParam, body: { required: true, content: { 'application/json': { schema: PipelineSpecSchema } } } },
  responses: {
    200: { description: 'Replaced', content: { 'application/json': { schema: z.object({ pipeline: PipelineSchema }) } } },
    201: { description: 'Created', content: { 'application/json': { schema: z.object({ pipeline: PipelineSchema }) } } },
  },
});

const listPipelinesRoute = apiRoute({
  method: 'get',
  path: '/v1/pipelines',
  tags: ['events'],
  summary: 'List pipelines',
  responses: { 200: { description: 'Pipelines by name', content: { 'application/json': { schema: z.object({ items: z.array(PipelineSchema) }) } } } },
});

const getPipelineRoute = apiRoute({
  method: 'get',
  path: '/v1/pipelines/{name}',
  tags: ['events'],
  summary: 'Get a pipeline',
  request: { params: PipelineParam },
  responses: { 200: { description: 'The pipeline', content: { 'application/json': { schema: PipelineSchema } } }, 404: problem('No such pipeline') },
});

const deletePipelineRoute = apiRoute({
  method: 'delete',
  path: '/v1/pipelines/{name}',
  tags: ['events'],
  summary: 'Delete a pipeline',
  request: { params: PipelineParam },
  responses: { 204: { description: 'Deleted' }, 404: problem('No such pipeline'), 409: problem('Bindings still deliver to it') },
});

const runPipelineRoute = apiRoute(
  {
    method: 'post',
    path: '/v1/pipelines/{name}/runs',
    tags: ['events'],
    summary: 'Run a pipeline with this input',
    description: 'The body (JSON, optional) is the first step\'s input. Answers with the run\'s operation; `GET /v1/operations/{id}` shows it step by step, with each step\'s output.',
    request: { params: PipelineParam, body: { required: false, content: { 'application/json': { schema: z.unknown(), example: { instance: 'vm-1' } } } } },
    responses: {
      202: { description: 'Started', content: { 'application/json': { schema: z.object({ operation: OperationSchema }) } } },
      404: problem('No such pipeline'),
      503: problem('Temporal cannot be reached; nothing was started'),
    },
  },
  { rawBody: true },
);

const postEventRoute = apiRoute(
  {
    method: 'post',
    path: '/v1/events',
    tags: ['events'],
    summary: 'Publish a CloudEvent (structured or binary mode)',
    description:
      'Structured mode: the body is the CloudEvent (`Content-Type: application/cloudevents+json`, or application/json). Binary mode: the attributes are `ce-*` headers (`ce-specversion`, `ce-id`, `ce-source`, `ce-type`, …) and the body is the data, of any content type. The event is recorded and dispatched to every matching binding before the answer (202). The same source and id again answers 200 with the first event: nothing is dispatched twice.',
    // Plain OpenAPI schemas, not zod ones: the handler reads the body itself (binary mode takes any content type).
    request: {
      body: {
        required: true,
        content: {
          'application/cloudevents+json': { schema: { $ref: '#/components/schemas/CloudEvent' } },
          'application/json': { schema: { $ref: '#/components/schemas/CloudEvent' } },
          '*/*': { schema: { description: 'Binary mode: the data, with the attributes in ce-* headers' } },
        },
      },
    },
    responses: {
      200: Accepted('Seen before (same source and id): the first event, not dispatched again'),
      202: Accepted('Recorded and dispatched (or recorded as unmatched)'),
      503: problem('Temporal cannot be reached: the event is recorded, not yet dispatched; send it again'),
    },
  },
  { rawBody: true },
);

const alertmanagerRoute = apiRoute({
  method: 'post',
  path: '/v1/events/alertmanager',
  tags: ['events'],
  summary: "Receive Prometheus Alertmanager's webhook",
  description:
    'Each alert becomes a CloudEvent: type `prometheus.alert.firing` or `prometheus.alert.resolved`, source `alertmanager/<receiver>`, subject the alertname, data the alert with its labels and annotations. A repeated notification of an alert in the same state is recognised and not dispatched again. Configure Alertmanager with `webhook_configs: [{ url: <kumo>/v1/events/alertmanager, http_config: { authorization: { credentials: <token> } } }]`.',
  request: { body: { required: true, content: { 'application/json': { schema: AlertmanagerPayloadSchema } } } },
  responses: {
    202: { description: 'Each alert recorded and dispatched', content: { 'application/json': { schema: z.object({ events: z.array(EventSchema) }) } } },
    503: problem('Temporal cannot be reached; send it again'),
  },
});

const listEventsRoute = apiRoute({
  method: 'get',
  path: '/v1/events',
  tags: ['events'],
  summary: 'List received events, newest first',
  request: {
    query: z.object({
      status: z.enum(eventStatuses).optional(),
      source: z.string().min(1).max(512).optional(),
      type: z.string().min(1).max(256).optional(),
      limit: z.coerce.number().int().min(1).max(500).default(50),
      cursor: z.string().regex(/^[^|]{1,64}\|evt-[0-9a-f]{32}$/, 'a cursor from a previous page').optional(),
    }),
  },
  responses: { 200: { description: 'A page of events', content: { 'application/json': { schema: z.object({ items: z.array(EventSchema), nextCursor: z.string().nullable() }) } } } },
});

const getEventRoute = apiRoute({
  method: 'get',
  path: '/v1/events/{id}',
  tags: ['events'],
  summary: 'An event: what it matched and what each delivery did',
  description: "`id` is Kumo's event id, or the CloudEvent's own id when only one event has it.",
  request: { params: EventParam },
  responses: {
    200: { description: 'The event with its deliveries', content: { 'application/json': { schema: EventSchema } } },
    404: problem('No such event'),
    409: problem('Several events (from different sources) have this CloudEvent id; use Kumo\'s id'),
  },
});

const invocationsRoute = apiRoute({
  method: 'get',
  path: '/v1/functions/{name}/invocations',
  tags: ['functions'],
  summary: "A function's invocations by events and pipelines, newest first",
  request: { params: FunctionParam, query: z.object({ status: z.enum(deliveryStatuses).optional(), limit: z.coerce.number().int().min(1).max(500).default(50) }) },
  responses: { 200: { description: 'Invocations', content: { 'application/json': { schema: z.object({ items: z.array(DeliverySchema) }) } } }, 404: problem('No such function') },
});

/** Bindings, pipelines, events (HTTP and Alertmanager), deliveries. */
export function eventRoutes(deps: ApiDeps) {
  const app = new OpenAPIHono();
  app.openAPIRegistry.register('CloudEvent', CloudEventSchema);
  const events = deps.store.events;

  // ── bindings ──

  app.openapi(createBindingRoute, async (c) => {
    const spec = c.req.valid('json');
    if (spec.function !== undefined && !(await deps.store.getFunction(spec.function))) throw fieldProblem('function', `no function named "${spec.function}"`);
    if (spec.pipeline !== undefined && !(await events.getPipeline(spec.pipeline))) throw fieldProblem('pipeline', `no pipeline named "${spec.pipeline}"`);
    const createdAt = new Date().toISOString();
    if (!(await events.createBinding(spec, createdAt))) throw new Problem(409, 'already-exists', `a binding named "${spec.name}" exists`, { binding: `/v1/bindings/${spec.name}` });
    let record: BindingRecord = { ...spec, createdAt, scheduleId: null };
    if (spec.schedule) {
      try {
        record = { ...record, scheduleId: await createSchedule(deps, spec.name, spec.schedule) };
        await events.setBindingSchedule(spec.name, record.scheduleId);
      } catch (err) {
        await events.deleteBinding(spec.name);
        throw new Problem(503, 'temporal-unavailable', `the binding's schedule could not be created: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    c.header('Location', `/v1/bindings/${spec.name}`);
    return c.json({ binding: await bindingView(deps, record, false) }, 201);
  });

  app.openapi(listBindingsRoute, async (c) => {
    const query = c.req.valid('query');
    const items = await events.listBindings({ ...(query.function ? { function: query.function } : {}), ...(query.pipeline ? { pipeline: query.pipeline } : {}) });
    return c.json({ items: await Promise.all(items.map((b) => bindingView(deps, b, false))) }, 200);
  });

  app.openapi(getBindingRoute, async (c) => c.json(await bindingView(deps, await mustGetBinding(deps, c.req.valid('param').name), true), 200));

  app.openapi(deleteBindingRoute, async (c) => {
    const binding = await mustGetBinding(deps, c.req.valid('param').name);
    if (binding.scheduleId) {
      try {
        await deps.temporal.schedule.getHandle(binding.scheduleId).delete();
      } catch (err) {
        if (!(err instanceof ScheduleNotFoundError)) throw new Problem(503, 'temporal-unavailable', `the binding's schedule could not be deleted: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    await events.deleteBinding(binding.name);
    return c.body(null, 204);
  });

  // ── pipelines ──

  const savePipeline = async (spec: z.infer<typeof PipelineSpecSchema>, mode: 'create' | 'put'): Promise<{ record: PipelineRecord; existed: boolean }> => {
    const steps = pipelineSteps(spec);
    for (const [i, step] of steps.entries()) {
      if (!(await deps.store.getFunction(step.function))) throw fieldProblem(`steps.${i}`, `no function named "${step.function}"`);
    }
    const existing = await events.getPipeline(spec.name);
    if (existing && mode === 'create') throw new Problem(409, 'already-exists', `a pipeline named "${spec.name}" exists; PUT /v1/pipelines/${spec.name} replaces it`);
    const now = new Date().toISOString();
    const record: PipelineRecord = { name: spec.name, description: spec.description ?? null, steps, createdAt: existing?.createdAt ?? now, updatedAt: now };
    const existed = await events.putPipeline(record);
    return { record, existed };
  };

  app.openapi(createPipelineRoute, async (c) => {
    const { record } = await savePipeline(c.req.valid('json'), 'create');
    c.header('Location', `/v1/pipelines/${record.name}`);
    return c.json({ pipeline: pipelineView(record) }, 201);
  });

  app.openapi(putPipelineRoute, async (c) => {
    const { name } = c.req.valid('param');
    const spec = c.req.valid('json');
    if (spec.name !== name) throw fieldProblem('name', `the body names "${spec.name}", the path "${name}"`);
    const { record, existed } = await savePipeline(spec, 'put');
    return existed ? c.json({ pipeline: pipelineView(record) }, 200) : c.json({ pipeline: pipelineView(record) }, 201);
  });

  app.openapi(listPipelinesRoute, async (c) => c.json({ items: (await events.listPipelines()).map(pipelineView) }, 200));

  app.openapi(getPipelineRoute, async (c) => c.json(pipelineView(await mustGetPipeline(deps, c.req.valid('param').name)), 200));

  app.openapi(deletePipelineRoute, async (c) => {
    const pipeline = await mustGetPipeline(deps, c.req.valid('param').name);
    const users = await events.listBindings({ pipeline: pipeline.name });
    if (users.length) throw new Problem(409, 'in-use', `bindings deliver to pipeline "${pipeline.name}": ${users.map((b) => b.name).join(', ')}; delete them first`);
    await events.deletePipeline(pipeline.name);
    return c.body(null, 204);
  });

  app.openapi(runPipelineRoute, async (c) => {
    const pipeline = await mustGetPipeline(deps, c.req.valid('param').name);
    const text = await c.req.text();
    let data: unknown = null;
    if (text.trim() !== '') {
      try {
        data = JSON.parse(text);
      } catch {
        throw fieldProblem('(root)', 'the body is not JSON');
      }
    }
    if (/\u0000/.test(text)) throw fieldProblem('(root)', 'must not contain NUL characters (U+0000)');
    const receivedAt = new Date().toISOString();
    const event: CloudEvent = { specversion: '1.0', id: randomUUID(), source: `kumo/pipelines/${pipeline.name}`, type: 'kumo.pipeline.run', time: receivedAt, datacontenttype: 'application/json', data };
    const { record } = await ingestEvent(deps, { event, origin: 'http', trace: { api: 'POST /v1/pipelines/{name}/runs', actor: actorOf(c) }, receivedAt });
    const operation = await startPipelineRun(deps, { pipeline: pipeline.name, steps: pipeline.steps, eventKey: record.key, deliveryId: null });
    c.header('Location', `/v1/operations/${operation.id}`);
    return c.json({ operation: storedView(deps, (await deps.store.getOperation(operation.id)) ?? operation) }, 202);
  });

  // ── events ──

  app.openapi(postEventRoute, async (c) => {
    const receivedAt = new Date().toISOString();
    const headers = c.req.header();
    const text = await c.req.text();
    let event: CloudEvent;
    // The content type says structured mode (CloudEvents' HTTP binding), whatever ce-* headers come along.
    const structured = /^application\/cloudevents\+json\b/i.test(headers['content-type'] ?? '');
    if (!structured && headers['ce-specversion'] !== undefined) {
      const parsed = eventFromBinary(headers, text, receivedAt);
      if ('field' in parsed) throw fieldProblem(parsed.field, parsed.message, parsed.field === 'body' ? 'body' : 'header');
      event = parsed.event;
    } else {
      const type = headers['content-type'] ?? '';
      if (!/^application\/(cloudevents\+)?json\b/i.test(type)) {
        throw new Problem(415, 'unsupported-media-type', 'send a structured CloudEvent as application/cloudevents+json, or a binary one with ce-* headers', {
          errors: [{ field: 'content-type', in: 'header', message: `expected application/cloudevents+json or ce-specversion, got "${type || 'nothing'}"` }],
        });
      }
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        throw fieldProblem('(root)', 'the body is not JSON');
      }
      const parsed = CloudEventSchema.safeParse(body);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw fieldProblem(issue?.path.join('.') || '(root)', issue?.message ?? 'invalid');
      }
      event = normalizeEvent(parsed.data, receivedAt);
    }
    const ingested = await ingest(deps, event, 'http', { api: 'POST /v1/events', actor: actorOf(c) }, receivedAt);
    c.header('Location', `/v1/events/${ingested.record.key}`);
    return c.json({ event: eventView(deps, ingested.record, null) }, ingested.duplicate ? 200 : 202);
  });

  app.openapi(alertmanagerRoute, async (c) => {
    const payload = c.req.valid('json');
    const receivedAt = new Date().toISOString();
    const out: EventRecord[] = [];
    for (const event of alertEvents(payload, receivedAt)) {
      out.push((await ingest(deps, event, 'alertmanager', { receiver: payload.receiver, ...(payload.groupKey ? { groupKey: payload.groupKey.slice(0, 512) } : {}), actor: actorOf(c) }, receivedAt)).record);
    }
    return c.json({ events: out.map((record) => eventView(deps, record, null)) }, 202);
  });

  app.openapi(listEventsRoute, async (c) => {
    const query = c.req.valid('query');
    const page = await events.listEvents({
      limit: query.limit,
      ...(query.status ? { status: query.status } : {}),
      ...(query.source ? { source: query.source } : {}),
      ...(query.type ? { type: query.type } : {}),
      ...(query.cursor ? { cursor: query.cursor } : {}),
    });
    return c.json({ items: page.items.map((record) => eventView(deps, record, null)), nextCursor: page.nextCursor }, 200);
  });

  app.openapi(getEventRoute, async (c) => {
    const { id } = c.req.valid('param');
    let record = await events.getEvent(id);
    if (!record) {
      const found = await events.eventsWithId(id);
      if (found.length > 1) throw new Problem(409, 'ambiguous', `${found.length} events have the CloudEvent id "${id}" (from ${found.map((e) => e.event.source).join(', ')}); ask by Kumo's id`, { events: found.map((e) => `/v1/events/${e.key}`) });
      record = found[0] ?? null;
    }
    if (!record) throw new Problem(404, 'not-found', `no event "${id}"`);
    return c.json(eventView(deps, record, await events.deliveriesOf(record.key)), 200);
  });

  app.openapi(invocationsRoute, async (c) => {
    const { name } = c.req.valid('param');
    const query = c.req.valid('query');
    if (!(await deps.store.getFunction(name))) throw new Problem(404, 'not-found', `no function named "${name}"`);
    const items = await events.invocationsOf(name, { limit: query.limit, ...(query.status ? { status: query.status } : {}) });
    return c.json({ items: items.map(deliveryView) }, 200);
  });

  return app;
}

/** Hands an event to {@link ingestEvent}; Temporal being down is a 503 (the event is kept, and taken again when resent). */
async function ingest(deps: ApiDeps, event: CloudEvent, origin: 'http' | 'alertmanager', trace: Record<string, string>, receivedAt: string) {
  try {
    return await ingestEvent(deps, { event, origin, trace, receivedAt });
  } catch (err) {
    if (err instanceof Problem) throw err;
    throw new Problem(503, 'temporal-unavailable', `the event was recorded but could not be dispatched: ${err instanceof Error ? err.message : String(err)}; send it again`);
  }
}

/**
 * Starts a pipeline run as an operation the API records (a run from the API, or
 * a retry of a failed run): `resume` carries the outputs of the steps to reuse.
 */
export async function startPipelineRun(
  deps: ApiDeps,
  run: { pipeline: string; steps: PipelineStep[]; eventKey: string; deliveryId: string | null; retryOf?: string; resume?: Resume },
): Promise<OperationRecord> {
  const workflowId = pipelineRunWorkflowId(run.pipeline, run.eventKey);
  const operation: OperationRecord = {
    ...newOperation({ id: newOperationId(), kind: 'pipeline.run', target: `pipeline/${run.pipeline}`, steps: pipelineStepNames(run.steps), startedAt: new Date().toISOString(), workflowId }),
    ...(run.retryOf ? { retryOf: run.retryOf } : {}),
  };
  const input: RunPipelineInput = {
    operationId: operation.id,
    pipeline: run.pipeline,
    steps: run.steps,
    eventKey: run.eventKey,
    deliveryId: run.deliveryId,
    open: false,
    startedAt: operation.startedAt,
    ...(run.resume ? { resume: run.resume } : {}),
  };
  await deps.store.openOperation(operation, null);
  try {
    const handle = await deps.temporal.workflow.start('runPipeline', {
      taskQueue: deps.config.TEMPORAL_TASK_QUEUE,
      workflowId,
      args: [input],
      workflowIdConflictPolicy: 'FAIL',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      searchAttributes: { [searchAttributes.operationId]: [operation.id], [searchAttributes.kind]: [operation.kind], [searchAttributes.target]: [operation.target] },
    });
    await deps.store.setOperationRun(operation.id, handle.firstExecutionRunId);
    const { resume: _resume, ...kept } = input;
    await deps.store.setOperationInput(operation.id, kept, run.retryOf ?? null);
  } catch (err) {
    const failure = { step: 'start', type: 'Transient' as const, message: `the workflow could not be started: ${err instanceof Error ? err.message : String(err)}`, attempts: 1 };
    await deps.store.finishOperation(operation.id, { status: 'failed', steps: operation.steps, step: null, failure, finishedAt: new Date().toISOString() });
    if (err instanceof WorkflowExecutionAlreadyStartedError) throw new Problem(409, 'operation-running', `a run of pipeline "${run.pipeline}" for this event is running`);
    throw new Problem(503, 'temporal-unavailable', failure.message);
  }
  return operation;
}

const overlaps: Record<ScheduleSpec['overlap'], ScheduleOverlapPolicy> = {
  skip: ScheduleOverlapPolicy.SKIP,
  bufferOne: ScheduleOverlapPolicy.BUFFER_ONE,
  bufferAll: ScheduleOverlapPolicy.BUFFER_ALL,
  cancelOther: ScheduleOverlapPolicy.CANCEL_OTHER,
  terminateOther: ScheduleOverlapPolicy.TERMINATE_OTHER,
  allowAll: ScheduleOverlapPolicy.ALLOW_ALL,
};

/** A cron binding's Temporal Schedule; an existing one (a create retried after a crash) is brought up to date. */
async function createSchedule(deps: ApiDeps, binding: string, schedule: ScheduleSpec): Promise<string> {
  const scheduleId = bindingScheduleId(binding);
  const spec: TemporalScheduleSpec = schedule.cron
    ? { cronExpressions: [schedule.cron], timezone: schedule.timezone }
    : { intervals: [{ every: durationOf(schedule.every ?? '1m') }], timezone: schedule.timezone };
  const action = {
    type: 'startWorkflow' as const,
    workflowType: 'scheduledEvent',
    taskQueue: deps.config.TEMPORAL_TASK_QUEUE,
    workflowId: `binding/${binding}/fired`,
    args: [{ binding }],
  };
  const policies = { overlap: overlaps[schedule.overlap], catchupWindow: `${schedule.catchupWindowSeconds}s` as const };
  try {
    await deps.temporal.schedule.create({ scheduleId, spec, action, policies, state: { note: `Kumo cron binding "${binding}"` } });
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
    await deps.temporal.schedule.getHandle(scheduleId).update((previous) => ({ ...previous, spec, action, policies }));
  }
  return scheduleId;
}

function durationOf(every: string): `${number}${'s' | 'm' | 'h'}` {
  return every as `${number}${'s' | 'm' | 'h'}`;
}

async function bindingView(deps: ApiDeps, record: BindingRecord, live: boolean): Promise<z.infer<typeof BindingSchema>> {
  const { createdAt, scheduleId, ...spec } = record;
  const view: z.infer<typeof BindingSchema> = {
    ...spec,
    createdAt,
    scheduleId,
    links: { self: `/v1/bindings/${record.name}`, ...(scheduleId && deps.config.TEMPORAL_UI_URL ? { temporalSchedule: `${deps.config.TEMPORAL_UI_URL}/namespaces/${deps.config.TEMPORAL_NAMESPACE}/schedules/${encodeURIComponent(scheduleId)}` } : {}) },
  };
  if (live && scheduleId) {
    try {
      const description = await deps.temporal.withDeadline(Date.now() + 3000, () => deps.temporal.schedule.getHandle(scheduleId).describe());
      view.nextFirings = description.info.nextActionTimes.slice(0, 5).map((time) => time.toISOString());
    } catch {
      // The binding is still shown without its next firings when Temporal does not answer.
    }
  }
  return view;
}

function pipelineView(record: PipelineRecord): z.infer<typeof PipelineSchema> {
  return { ...record, links: { self: `/v1/pipelines/${record.name}`, runs: `/v1/operations?kind=pipeline.run&target=pipeline/${record.name}` } };
}

function eventView(deps: ApiDeps, record: EventRecord, deliveries: DeliveryRecord[] | null): z.infer<typeof EventSchema> {
  const temporal = record.matched.length && deps.config.TEMPORAL_UI_URL ? `${deps.config.TEMPORAL_UI_URL}/namespaces/${deps.config.TEMPORAL_NAMESPACE}/workflows/${encodeURIComponent(`event/${record.key}`)}` : undefined;
  return {
    id: record.key,
    cloudEvent: record.event,
    origin: record.origin,
    trace: record.trace,
    status: record.status,
    matched: record.matched.map((m) => ({ binding: m.binding, target: m.target })),
    duplicates: record.duplicates,
    receivedAt: record.receivedAt,
    finishedAt: record.finishedAt,
    ...(deliveries ? { deliveries: deliveries.map(deliveryView) } : {}),
    links: { self: `/v1/events/${record.key}`, ...(temporal && record.origin !== 'schedule' ? { temporal } : {}) },
  };
}

function deliveryView(record: DeliveryRecord): z.infer<typeof DeliverySchema> {
  return {
    id: record.id,
    event: record.eventKey,
    binding: record.binding,
    target: record.target,
    status: record.status,
    attempts: record.attempts,
    maxAttempts: record.maxAttempts,
    lastError: record.lastError,
    result: record.result,
    invocationId: record.invocationId,
    operation: record.operationId,
    startedAt: record.startedAt,
    finishedAt: record.finishedAt,
    links: { event: `/v1/events/${record.eventKey}`, ...(record.operationId ? { operation: `/v1/operations/${record.operationId}` } : {}) },
  };
}

async function mustGetBinding(deps: ApiDeps, name: string): Promise<BindingRecord> {
  const binding = await deps.store.events.getBinding(name);
  if (!binding) throw new Problem(404, 'not-found', `no binding named "${name}"`);
  return binding;
}

async function mustGetPipeline(deps: ApiDeps, name: string): Promise<PipelineRecord> {
  const pipeline = await deps.store.events.getPipeline(name);
  if (!pipeline) throw new Problem(404, 'not-found', `no pipeline named "${name}"`);
  return pipeline;
}

function fieldProblem(field: string, message: string, where: 'body' | 'header' = 'body'): Problem {
  return new Problem(400, 'invalid-request', `${field}: ${message}`, { errors: [{ field, in: where, message }] });
}

/** The token's name that sent a request (for an event's trace). */
function actorOf(c: Context): string {
  return principalOf(c)?.name ?? 'anonymous';
}
