import { z } from '@hono/zod-openapi';
import { failureTypes } from '../domain/errors.js';
import { clusterStates, nodeRoles } from '../domain/cluster.js';
import { operationStatuses } from '../domain/operation.js';

/** Response schemas for the OpenAPI document (requests use the domain's schemas). */

export const ProblemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    instance: z.string().optional(),
    errors: z.array(z.object({ field: z.string(), in: z.enum(['body', 'query', 'path', 'header']), message: z.string() })).optional(),
  })
  .openapi('Problem');

export const StepSchema = z.object({
  name: z.string(),
  status: z.enum(['pending', 'running', 'succeeded', 'failed', 'cancelled', 'skipped']),
  startedAt: z.string().optional(),
  finishedAt: z.string().optional(),
  detail: z.string().optional(),
  result: z.unknown().optional().openapi({ description: 'What the step produced; a retry reuses it instead of running the step again' }),
  reusedFrom: z.string().optional().openapi({ description: 'The operation whose result this retry reused' }),
});

export const OperationSchema = z
  .object({
    id: z.string(),
    kind: z.string(),
    target: z.string(),
    status: z.enum(operationStatuses),
    step: z.string().nullable(),
    detail: z.string().optional(),
    steps: z.array(StepSchema),
    startedAt: z.string(),
    finishedAt: z.string().nullable(),
    failure: z
      .object({ step: z.string(), type: z.enum(failureTypes), message: z.string(), attempts: z.number().int() })
      .nullable(),
    attempt: z.number().int().optional().openapi({ description: 'Attempt of the running step (1 = first try)' }),
    lastError: z.string().optional().openapi({ description: 'Last error of the running step, while it is retried' }),
    workflowId: z.string(),
    runId: z.string().nullable(),
    result: z.unknown().optional().openapi({ description: "What the operation produced: a rollout's report, a reconcile's repairs" }),
    input: z.unknown().optional().openapi({ description: 'The workflow input it was started with (fields named like secrets are redacted)' }),
    retryOf: z.string().optional().openapi({ description: 'The failed operation this one retries' }),
    links: z.object({ self: z.string(), temporalUI: z.string().optional() }),
  })
  .openapi('Operation');

export const NodeSchema = z.object({
  id: z.string(),
  hostname: z.string(),
  pool: z.string(),
  roles: z.array(z.enum(nodeRoles)),
  state: z.string(),
  ready: z.boolean(),
});

export const ClusterSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    kubernetesVersion: z.string(),
    description: z.string().optional(),
    labels: z.record(z.string(), z.string()),
    state: z.enum(clusterStates),
    rancher: z.object({ id: z.string().nullable(), state: z.string().nullable(), apiEndpoint: z.string().nullable() }),
    nodePools: z.array(z.object({ name: z.string(), roles: z.array(z.enum(nodeRoles)), quantity: z.number().int(), rancherId: z.string().optional() })),
    nodes: z.array(NodeSchema),
    lastOperation: z.object({ id: z.string(), href: z.string() }).nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi('Cluster');

/** The answers every endpoint may give besides its own. */
export const problemResponses = {
  400: { description: 'The request is invalid; `errors` lists each wrong field', content: { 'application/problem+json': { schema: ProblemSchema } } },
} as const;

export const problem = (description: string) => ({ description, content: { 'application/problem+json': { schema: ProblemSchema } } });

export const SnapshotSchema = z
  .object({
    id: z.string(),
    cluster: z.string(),
    name: z.string(),
    state: z.string(),
    manual: z.boolean(),
    operationId: z.string().nullable(),
    createdAt: z.string(),
  })
  .openapi('Snapshot');
