import type { RunPipelineInput } from '../../domain/event.js';
import { startPipelineRun } from './events.js';
import { OpenAPIHono, z } from '@hono/zod-openapi';
import { WorkflowNotFoundError, type WorkflowExecutionDescription } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import { operationStatuses, retryableKinds, reusableResults, type OperationKind, type OperationRecord, type Progress, type Resume } from '../../domain/operation.js';
import { startClusterOperation } from './clusters.js';
import { newOperation, start } from './functions.js';
import { isValidCursor } from '../../store/index.js';
import type { ApiDeps } from '../deps.js';
import { Problem } from '../problem.js';
import { apiRoute, OperationSchema, problem, problemResponses } from '../schemas.js';

/** An operation as the API shows it: the store's record, brought up to date from Temporal while it runs. */
export type OperationView = z.infer<typeof OperationSchema>;

const IdParam = z.object({ id: z.string().min(1).max(100).openapi({ param: { name: 'id', in: 'path' }, example: 'op-mfx2k1a9c3d4e5f6' }) });

const listRoute = apiRoute({
  method: 'get',
  path: '/v1/operations',
  tags: ['operations'],
  summary: 'List operations, newest first',
  request: {
    query: z.object({
      kind: z.string().max(100).optional().openapi({ example: 'cluster.create' }),
      status: z.enum(operationStatuses).optional(),
      target: z.string().max(200).optional().openapi({ example: 'cluster/prod-eu-1' }),
      limit: z.coerce.number().int().min(1).max(200).default(50),
      cursor: z.string().max(500).optional().refine((value) => value === undefined || isValidCursor(value), 'not a cursor this API returned'),
    }),
  },
  responses: {
    200: {
      description: 'A page of operations',
      content: { 'application/json': { schema: z.object({ items: z.array(OperationSchema), nextCursor: z.string().nullable() }) } },
    },
    ...problemResponses,
  },
});

const getRoute = apiRoute({
  method: 'get',
  path: '/v1/operations/{id}',
  tags: ['operations'],
  summary: 'Show one operation: status, current step, steps, failure',
  request: { params: IdParam },
  responses: {
    200: { description: 'The operation', content: { 'application/json': { schema: OperationSchema } } },
    404: problem('No such operation'),
  },
});

const retryRoute = apiRoute({
  method: 'post',
  path: '/v1/operations/{id}/retry',
  tags: ['operations'],
  summary: 'Retry a failed operation from its failed step',
  description:
    'Starts a new operation of the same kind on the same target with the same input; the steps the failed one completed are not run again, their recorded results are reused (they show as skipped, `reusedFrom` naming the failed operation). Refused with 409 when the operation did not fail, when its kind cannot be retried (rollouts and reconciles: start a new one), or when its cluster or function changed since (another operation ran after it).',
  request: { params: IdParam },
  responses: {
    202: { description: 'The retry started', content: { 'application/json': { schema: z.object({ operation: OperationSchema }) } } },
    404: problem('No such operation'),
    409: problem('This operation cannot be retried now; the detail says why'),
    503: problem('Temporal cannot be reached; nothing was started'),
  },
});

const historyRoute = apiRoute({
  method: 'get',
  path: '/v1/operations/{id}/history',
  tags: ['operations'],
  summary: "The operation's Temporal workflow history (JSON, as `temporal workflow show --output json` prints it), for replay",
  request: { params: IdParam },
  responses: {
    200: { description: 'The history', content: { 'application/json': { schema: z.object({ events: z.array(z.unknown()) }).passthrough() } } },
    404: problem('No such operation, or Temporal no longer has its run'),
  },
});

const cancelRoute = apiRoute({
  method: 'post',
  path: '/v1/operations/{id}/cancel',
  tags: ['operations'],
  summary: 'Ask a running operation to stop; it cleans up and ends as cancelled',
  request: { params: IdParam },
  responses: {
    202: { description: 'Cancellation requested', content: { 'application/json': { schema: OperationSchema } } },
    404: problem('No such operation'),
    409: problem('The operation is not running'),
  },
});

export function operationRoutes(deps: ApiDeps) {
  const app = new OpenAPIHono();

  app.openapi(listRoute, async (c) => {
    const query = c.req.valid('query');
    const page = await deps.store.listOperations({
      limit: query.limit,
      ...(query.kind ? { kind: query.kind } : {}),
      ...(query.status ? { status: query.status } : {}),
      ...(query.target ? { target: query.target } : {}),
      ...(query.cursor ? { cursor: query.cursor } : {}),
    });
    const items = await Promise.all(page.items.map((operation) => viewOperation(deps, operation, { live: false })));
    return c.json({ items, nextCursor: page.nextCursor }, 200);
  });

  app.openapi(getRoute, async (c) => {
    const { id } = c.req.valid('param');
    return c.json(await viewOperation(deps, await mustGetOperation(deps, id), { live: true }), 200);
  });

  app.openapi(retryRoute, async (c) => {
    const { id } = c.req.valid('param');
    const failed = await viewOperation(deps, await mustGetOperation(deps, id), { live: false });
    const refuse = (kind: string, detail: string) => new Problem(409, kind, detail, { operation: `/v1/operations/${id}` });
    if (failed.status !== 'failed') throw refuse('not-failed', `operation ${id} is ${failed.status}; only a failed operation can be retried`);
    const workflowType = retryableKinds[failed.kind as OperationKind];
    if (!workflowType) throw refuse('not-retryable', `a ${failed.kind} operation cannot be retried from a step; start a new one`);
    const record = await deps.store.getOperation(id);
    if (!record || record.input === undefined) throw refuse('not-retryable', `operation ${id} was recorded without its input, so it cannot be retried`);
    const resume: Resume = { from: id, results: reusableResults(record.steps) };
    const input = record.input as Record<string, unknown>;
    const stepNames = record.steps.map((step) => step.name);
    let view: OperationView;
    if (record.target.startsWith('cluster/')) {
      const cluster = await deps.store.getCluster(record.target.slice('cluster/'.length));
      if (!cluster) throw refuse('changed-since', `the cluster of operation ${id} no longer exists`);
      if (cluster.lastOperationId !== id) throw refuse('changed-since', `cluster "${cluster.id}" changed since: operation ${cluster.lastOperationId ?? '(unknown)'} ran after ${id}`);
      const state = failed.kind === 'cluster.create' ? 'provisioning' : failed.kind === 'cluster.update' && input.kubernetesVersion !== undefined ? 'updating' : undefined;
      view = await startClusterOperation(deps, cluster, record.kind, workflowType, stepNames, (operationId) => [{ ...input, operationId, resume }], state, id);
    } else if (record.target.startsWith('function/')) {
      const name = record.target.slice('function/'.length);
      const fn = await deps.store.getFunction(name);
      if (!fn) throw refuse('changed-since', `function "${name}" no longer exists`);
      if (fn.lastOperationId !== id) throw refuse('changed-since', `function "${name}" changed since: operation ${fn.lastOperationId ?? '(unknown)'} ran after ${id}`);
      const operation = { ...newOperation(record.kind, name, stepNames), retryOf: id };
      const state = record.kind === 'function.delete' ? 'deleting' : 'deploying';
      if (!(await deps.store.saveFunction({ ...fn, state, updatedAt: new Date().toISOString() }, operation, { lastOperationId: id }))) {
        throw refuse('changed-since', `function "${name}" changed meanwhile; try again`);
      }
      await start(deps, operation, workflowType, { ...input, operationId: operation.id, resume });
      view = storedView(deps, (await deps.store.getOperation(operation.id)) ?? operation);
    } else if (record.target.startsWith('pipeline/')) {
      const run = input as unknown as RunPipelineInput;
      const operation = await startPipelineRun(deps, { pipeline: run.pipeline, steps: run.steps, eventKey: run.eventKey, deliveryId: run.deliveryId, retryOf: id, resume });
      view = storedView(deps, (await deps.store.getOperation(operation.id)) ?? operation);
    } else {
      throw refuse('not-retryable', `operations on ${record.target} cannot be retried`);
    }
    c.header('Location', view.links.self);
    return c.json({ operation: view }, 202);
  });

  app.openapi(historyRoute, async (c) => {
    const { id } = c.req.valid('param');
    const operation = await mustGetOperation(deps, id);
    if (!operation.runId) throw new Problem(404, 'not-found', `operation ${id} has no workflow run`);
    try {
      const history = await deps.temporal.workflow.getHandle(operation.workflowId, operation.runId).fetchHistory();
      return c.body(historyToJSON(history), 200, { 'content-type': 'application/json' }) as never;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) throw new Problem(404, 'not-found', `Temporal no longer has the run of operation ${id} (past the namespace's retention)`);
      throw err;
    }
  });

  app.openapi(cancelRoute, async (c) => {
    const { id } = c.req.valid('param');
    const operation = await viewOperation(deps, await mustGetOperation(deps, id), { live: false });
    if (operation.status !== 'running') {
      throw new Problem(409, 'not-running', `operation ${id} is ${operation.status}; only a running operation can be cancelled`);
    }
    await deps.temporal.workflow.getHandle(operation.workflowId, operation.runId ?? undefined).cancel();
    return c.json(operation, 202);
  });

  return app;
}

async function mustGetOperation(deps: ApiDeps, id: string): Promise<OperationRecord> {
  const operation = await deps.store.getOperation(id);
  if (!operation) throw new Problem(404, 'not-found', `no operation with id "${id}"`);
  return operation;
}

/**
 * Builds the API view of an operation. A running one is checked against Temporal:
 * if its workflow has closed without telling the store (terminated from the UI,
 * say), the store is corrected; with `live`, the current steps come from the
 * workflow's progress query and the running step's attempt and last error from
 * its pending activity.
 */
export async function viewOperation(deps: ApiDeps, operation: OperationRecord, { live }: { live: boolean }): Promise<OperationView> {
  let view = storedView(deps, operation);
  if (operation.status !== 'running') return view;

  const handle = deps.temporal.workflow.getHandle(operation.workflowId, operation.runId ?? undefined);
  let description: WorkflowExecutionDescription;
  try {
    description = await deps.temporal.withDeadline(Date.now() + 3000, () => handle.describe());
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return reconcileClosed(deps, view, 'TERMINATED');
    return view; // Temporal unreachable: the store's view is the best there is.
  }
  const closedAs = description.status.name;
  if (closedAs !== 'RUNNING') return reconcileClosed(deps, view, closedAs);
  if (!live) return view;

  try {
    const progress = await deps.temporal.withDeadline(Date.now() + 3000, () => handle.query<Progress>('progress'));
    view = { ...view, step: progress.step, steps: progress.steps };
  } catch {
    // No worker is polling right now: keep the last recorded steps.
  }
  const pending = description.raw.pendingActivities?.[0];
  if (pending) {
    const attempt = Number(pending.attempt ?? 1);
    view = { ...view, attempt, ...(attempt > 1 && pending.lastFailure?.message ? { lastError: pending.lastFailure.message } : {}) };
  }
  return view;
}

/** An operation as the store has it, with its links; no call to Temporal. */
export function storedView(deps: ApiDeps, operation: OperationRecord): OperationView {
  return {
    ...operation,
    ...(operation.input !== undefined ? { input: redact(operation.input) } : {}),
    links: {
      self: `/v1/operations/${operation.id}`,
      ...(deps.config.TEMPORAL_UI_URL ? { temporalUI: temporalUiLink(deps, operation) } : {}),
    },
  };
}

/** A copy with every field named like a secret replaced (inputs hold none by design; this is the second line of defence). */
export function redact(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redact);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, /token|password|secret|kubeconfig|credential/i.test(key) ? '[redacted]' : redact(inner)]));
  }
  return value;
}

/**
 * The workflow closed but the store still says running: the workflow did not get
 * to record its end (terminated, timed out, or the store write is still queued).
 * Re-read the store once; if it is still running, record what Temporal says.
 */
async function reconcileClosed(deps: ApiDeps, view: OperationView, closedAs: string): Promise<OperationView> {
  const fresh = await deps.store.getOperation(view.id);
  if (fresh && fresh.status !== 'running') return { ...view, ...fresh };
  if (closedAs === 'COMPLETED') return view; // its final store write is in flight
  const status = closedAs === 'CANCELLED' ? 'cancelled' : 'failed';
  const failure = {
    step: view.step ?? 'unknown',
    type: closedAs === 'CANCELLED' ? ('Cancelled' as const) : closedAs === 'TIMED_OUT' ? ('Timeout' as const) : ('Internal' as const),
    message: `the workflow ended as ${closedAs.toLowerCase()} outside Kumo`,
    attempts: 1,
  };
  const finishedAt = new Date().toISOString();
  await deps.store.finishOperation(view.id, { status, steps: view.steps, step: view.step, failure, finishedAt });
  if (view.target.startsWith('cluster/')) await deps.store.failClusterOf(view.target.slice('cluster/'.length), view.id);
  return { ...view, status, failure, finishedAt };
}

function temporalUiLink(deps: ApiDeps, operation: OperationRecord): string {
  const base = (deps.config.TEMPORAL_UI_URL ?? '').replace(/\/+$/, '');
  const ns = encodeURIComponent(deps.config.TEMPORAL_NAMESPACE);
  const wf = encodeURIComponent(operation.workflowId);
  return operation.runId ? `${base}/namespaces/${ns}/workflows/${wf}/${operation.runId}/history` : `${base}/namespaces/${ns}/workflows/${wf}`;
}
