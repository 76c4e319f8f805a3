import { createRoute, z, type RouteConfig } from '@hono/zod-openapi';
import type { MiddlewareHandler } from 'hono';
import { failureTypes } from '../domain/errors.js';
import { clusterStates, nodeRoles } from '../domain/cluster.js';
import { operationStatuses } from '../domain/operation.js';
import { problemResponse } from './problem.js';

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
    reason: z.string().optional().openapi({ description: 'Why Kumo started it by itself (auto-heal, autoscaling), with the inputs of that decision' }),
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
  400: { description: 'The request is invalid; `errors` lists each wrong field (strings may not hold NUL characters)', content: { 'application/problem+json': { schema: ProblemSchema } } },
} as const;

export const problem = (description: string) => ({ description, content: { 'application/problem+json': { schema: ProblemSchema } } });

/** What the auth middleware answers on every /v1 route (api/auth.ts). */
export const authResponses = {
  401: {
    ...problem('No token, or the token is not known or was revoked'),
    headers: z.object({ 'WWW-Authenticate': z.string().openapi({ example: 'Bearer realm="kumo"' }) }),
  },
  403: problem("The token's role does not allow this (reads need viewer, changes operator, tokens admin)"),
} as const;

/** What the body guard answers on every /v1 POST, PUT and PATCH (api/app.ts). */
export const bodyResponses = {
  413: problem('The body is larger than 1 MiB'),
  415: problem('The body is not JSON: send it with Content-Type: application/json'),
} as const;

/** Where in a value (parameters, a JSON body) a string or a key holds NUL, if anywhere. */
export function nulPath(value: unknown, path: Array<string | number> = []): Array<string | number> | null {
  if (typeof value === 'string') return value.includes('\0') ? path : null;
  if (Array.isArray(value)) {
    for (const [index, item] of value.entries()) {
      const found = nulPath(item, [...path, index]);
      if (found) return found;
    }
  } else if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      if (key.includes('\0')) return [...path, key];
      const found = nulPath(item, [...path, key]);
      if (found) return found;
    }
  }
  return null;
}

/**
 * A zod refinement refusing NUL (U+0000) anywhere in a value. Kumo's text goes to
 * the store, to Temporal and on to Rancher and Helm; PostgreSQL refuses NUL in
 * text, so a NUL that got in would surface as a 500, or as an activity retried
 * without end. It is refused at the door instead, with a 400 naming the field.
 */
export function refuseNul(value: unknown, ctx: z.RefinementCtx): void {
  const path = nulPath(value);
  if (path) ctx.addIssue({ code: 'custom', message: 'must not contain NUL characters (U+0000)', path });
}

/**
 * `createRoute` plus the answers the middleware gives on the route's behalf, so
 * that the OpenAPI document lists every status the route can answer: 401 and 403
 * on /v1 (auth), 413 and 415 on /v1 writes (the body guard), and 400 on a route
 * that takes parameters or a body (their validation). Public routes (outside
 * /v1) say so with `security: []`. The route's own entries win.
 *
 * Its path and query parameters and its JSON body are also refused (400) when a
 * string in them holds NUL (see {@link refuseNul}); `rawBody` leaves the body as
 * sent (a function's event, passed on untouched). A required body must be there.
 */
export function apiRoute<P extends string, R extends Omit<RouteConfig, 'path'> & { path: P }>(config: R, options: { rawBody?: boolean } = {}): ReturnType<typeof createRoute<P, R>> {
  const v1 = config.path.startsWith('/v1/');
  const request = config.request ?? {};
  const takesInput = Boolean(request.params || request.query || request.body || request.headers);
  const writes = config.method === 'post' || config.method === 'put' || config.method === 'patch';
  const responses = {
    ...(takesInput || (v1 && writes) ? problemResponses : {}),
    ...(v1 ? authResponses : {}),
    ...(v1 && writes ? bodyResponses : {}),
    ...config.responses,
  };
  const media = request.body?.content['application/json'];
  const json = media && 'schema' in media ? media : undefined;
  const refined = {
    ...request,
    ...(request.params ? { params: request.params.superRefine(refuseNul) } : {}),
    ...(request.query ? { query: request.query.superRefine(refuseNul) } : {}),
    ...(request.body && json?.schema instanceof z.ZodType && !options.rawBody
      ? { body: { ...request.body, content: { ...request.body.content, 'application/json': { ...json, schema: json.schema.superRefine(refuseNul) } } } }
      : {}),
  };
  const middleware = [...(request.body?.required ? [requireBody] : []), ...(config.middleware ? [config.middleware].flat() : [])];
  return createRoute({
    ...config,
    ...(config.request ? { request: refined } : {}),
    ...(middleware.length ? { middleware } : {}),
    ...(v1 ? {} : { security: config.security ?? [] }),
    responses,
  });
}

/**
 * Refuses a request without a body where the route's body is required. Hono's
 * JSON validator reads a request with no Content-Type as `{}`, which a schema of
 * optional fields takes: an empty PUT of an add-on would have reset its values.
 */
const requireBody: MiddlewareHandler = async (c, next) => {
  // Hono keeps the text it read: the validator parses the same body afterwards.
  if (c.req.raw.body !== null && (await c.req.text()) !== '') return next();
  return problemResponse(c, 400, 'invalid-request', 'send a JSON body with Content-Type: application/json', {
    errors: [{ field: '(root)', in: 'body', message: 'a body is required' }],
  });
};

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
