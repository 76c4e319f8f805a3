import { OpenAPIHono, z } from '@hono/zod-openapi';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { randomBytes } from 'node:crypto';
import {
  ClusterSpecSchema,
  ReplaceNodeRequestSchema,
  RestoreRequestSchema,
  scaleRefusal,
  ScaleRequestSchema,
  SnapshotRequestSchema,
  SnapshotScheduleSchema,
  UpdateClusterSchema,
  type ClusterRecord,
  type ClusterState,
} from '../../domain/cluster.js';
import { newClusterOperation, searchAttributes, type OperationKind, type OperationRecord } from '../../domain/operation.js';
import {
  createClusterSteps,
  deleteClusterSteps,
  replaceNodeSteps,
  restoreSteps,
  scaleDownSteps,
  scaleUpSteps,
  snapshotSteps,
  updateClusterSteps,
  type CreateClusterInput,
} from '../../workflows/cluster.js';
import { ScheduleAlreadyRunning, ScheduleNotFoundError, ScheduleOverlapPolicy } from '@temporalio/client';
import type { ApiDeps } from '../deps.js';
import { fieldErrors, Problem } from '../problem.js';
import { apiRoute, ClusterSchema, OperationSchema, problem, problemResponses, refuseNul, SnapshotSchema } from '../schemas.js';
import { storedView } from './operations.js';

const IdParam = z.object({ id: z.string().min(1).max(63).openapi({ param: { name: 'id', in: 'path' }, example: 'prod-eu-1' }) });

const createRouteDef = apiRoute({
  method: 'post',
  path: '/v1/clusters',
  tags: ['clusters'],
  summary: 'Create a cluster through Rancher',
  description:
    'Validates the spec and starts the createCluster workflow; it does not wait. Follow the operation at the `Location` header.',
  request: {
    body: {
      required: true,
      content: {
        'application/json': {
          schema: ClusterSpecSchema,
          example: {
            name: 'prod-eu-1',
            kubernetesVersion: 'v1.30.6-rancher1-1',
            nodePools: [
              { name: 'control', roles: ['etcd', 'controlplane'], quantity: 3 },
              { name: 'workers', roles: ['worker'], quantity: 5 },
            ],
          },
        },
      },
    },
  },
  responses: {
    202: {
      description: 'Creation started',
      headers: z.object({ Location: z.string() }),
      content: { 'application/json': { schema: z.object({ cluster: ClusterSchema, operation: OperationSchema }) } },
    },
    ...problemResponses,
    409: problem('A cluster of that name exists, or an operation on it is running'),
    503: problem('Temporal cannot be reached; nothing was started'),
  },
});

const listRouteDef = apiRoute({
  method: 'get',
  path: '/v1/clusters',
  tags: ['clusters'],
  summary: 'List clusters',
  responses: { 200: { description: 'Every cluster Kumo manages', content: { 'application/json': { schema: z.object({ items: z.array(ClusterSchema) }) } } } },
});

const getRouteDef = apiRoute({
  method: 'get',
  path: '/v1/clusters/{id}',
  tags: ['clusters'],
  summary: 'Show a cluster: state, node pools, and its nodes as Rancher last reported them',
  request: { params: IdParam },
  responses: {
    200: { description: 'The cluster', content: { 'application/json': { schema: ClusterSchema } } },
    404: problem('No such cluster'),
  },
});

export function clusterRoutes(deps: ApiDeps) {
  const app = new OpenAPIHono();

  app.openapi(createRouteDef, async (c) => {
    const spec = c.req.valid('json');
    const now = new Date().toISOString();
    const operationId = newOperationId();
    const cluster: ClusterRecord = {
      id: spec.name,
      name: spec.name,
      kubernetesVersion: spec.kubernetesVersion,
      ...(spec.description ? { description: spec.description } : {}),
      labels: spec.labels ?? {},
      state: 'provisioning',
      rancherId: null,
      rancherState: null,
      apiEndpoint: null,
      nodePools: spec.nodePools,
      nodes: [],
      lastOperationId: operationId,
      createdAt: now,
      updatedAt: now,
    };
    const operation = newClusterOperation({ id: operationId, kind: 'cluster.create', clusterId: spec.name, steps: createClusterSteps, startedAt: now });

    const recorded = await deps.store.createCluster(cluster, operation);
    if (!recorded.created) {
      const running = recorded.existing.lastOperationId;
      throw new Problem(409, 'conflict', `a cluster named "${spec.name}" already exists (state ${recorded.existing.state})`, {
        cluster: `/v1/clusters/${spec.name}`,
        ...(running ? { operation: `/v1/operations/${running}` } : {}),
      });
    }

    const input: CreateClusterInput = {
      operationId,
      clusterId: spec.name,
      spec,
      readyTimeoutSeconds: deps.config.KUMO_CLUSTER_READY_TIMEOUT_S,
    };
    let runId: string;
    try {
      // Bounded: with Temporal down the client would otherwise retry for long.
      const handle = await startOperationWorkflow(deps, 'createCluster', operation, [input]);
      runId = handle.firstExecutionRunId;
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        await deps.store.forgetClusterCreation(spec.name, operationId, recorded.previous);
        throw new Problem(409, 'operation-running', `another operation is running on cluster "${spec.name}"`);
      }
      // A timeout is ambiguous: the start may have reached Temporal. Keep the
      // records if our run exists, so a running workflow never loses its operation.
      const started = await startedRunOf(deps, operation.workflowId, operationId);
      if (!started) {
        await deps.store.forgetClusterCreation(spec.name, operationId, recorded.previous);
        throw new Problem(503, 'temporal-unavailable', `the operation could not be started, Temporal did not answer: ${err instanceof Error ? err.message : String(err)}`);
      }
      runId = started;
    }
    await deps.store.setOperationRun(operationId, runId);
    await deps.store.setOperationInput(operationId, input);
    // Just started: the store's view is exact, no need to ask Temporal.
    const view = storedView(deps, { ...operation, runId });
    c.header('Location', view.links.self);
    return c.json({ cluster: toClusterView(cluster), operation: view }, 202);
  });

  app.openapi(listRouteDef, async (c) => {
    const clusters = await deps.store.listClusters();
    return c.json({ items: clusters.map(toClusterView) }, 200);
  });

  app.openapi(getRouteDef, async (c) => {
    const { id } = c.req.valid('param');
    const cluster = await deps.store.getCluster(id);
    if (!cluster) throw new Problem(404, 'not-found', `no cluster named "${id}"`);
    return c.json(toClusterView(cluster), 200);
  });

  return app;
}

/** How long starting a workflow may take before the API answers 503. */
const startDeadlineMs = 5000;

/** The run id of the workflow `workflowId` if it is the one started for `operationId`. */
export async function startedRunOf(deps: ApiDeps, workflowId: string, operationId: string): Promise<string | null> {
  try {
    const description = await deps.temporal.withDeadline(Date.now() + 2000, () => deps.temporal.workflow.getHandle(workflowId).describe());
    const id = description.searchAttributes[searchAttributes.operationId]?.[0];
    return id === operationId ? description.runId : null;
  } catch {
    return null;
  }
}

/** A cluster as the API shows it. */
export function toClusterView(cluster: ClusterRecord): z.infer<typeof ClusterSchema> {
  return {
    id: cluster.id,
    name: cluster.name,
    kubernetesVersion: cluster.kubernetesVersion,
    ...(cluster.description ? { description: cluster.description } : {}),
    labels: cluster.labels,
    state: cluster.state,
    rancher: { id: cluster.rancherId, state: cluster.rancherState, apiEndpoint: cluster.apiEndpoint },
    nodePools: cluster.nodePools,
    nodes: cluster.nodes,
    lastOperation: cluster.lastOperationId ? { id: cluster.lastOperationId, href: `/v1/operations/${cluster.lastOperationId}` } : null,
    createdAt: cluster.createdAt,
    updatedAt: cluster.updatedAt,
  };
}

/** Operation ids sort by creation time and do not collide: `op-<time36><random hex>`. */
export function newOperationId(): string {
  return `op-${Date.now().toString(36)}${randomBytes(5).toString('hex')}`;
}

// ---------------------------------------------------------------------------
// Day-2 operations: each starts one workflow under the cluster's mutation id.
// ---------------------------------------------------------------------------

const ClusterParam = IdParam;
const PoolParam = z.object({
  id: z.string().min(1).max(63).openapi({ param: { name: 'id', in: 'path' }, example: 'prod-eu-1' }),
  pool: z.string().min(1).max(63).openapi({ param: { name: 'pool', in: 'path' }, example: 'workers' }),
});
const NodeParam = z.object({
  id: z.string().min(1).max(63).openapi({ param: { name: 'id', in: 'path' }, example: 'prod-eu-1' }),
  node: z.string().min(1).max(200).openapi({ param: { name: 'node', in: 'path' }, description: 'Node id or hostname' }),
});
const OperationStarted = {
  202: { description: 'Started; follow the operation', content: { 'application/json': { schema: z.object({ operation: OperationSchema }) } } },
  ...problemResponses,
  404: problem('No such cluster, pool or node'),
  409: problem('Another operation runs on this cluster, or its state does not allow this'),
  503: problem('Temporal cannot be reached; nothing was started'),
};
const json = <T extends z.ZodType>(schema: T) => ({ body: { required: true, content: { 'application/json': { schema } } } });

const scaleRoute = apiRoute({
  method: 'post',
  path: '/v1/clusters/{id}/nodepools/{pool}/scale',
  tags: ['clusters'],
  summary: 'Scale a node pool: add nodes (wait until Ready) or remove them (cordon, drain, delete)',
  request: { params: PoolParam, ...json(ScaleRequestSchema) },
  responses: OperationStarted,
});
const replaceRoute = apiRoute({
  method: 'post',
  path: '/v1/clusters/{id}/nodes/{node}/replace',
  tags: ['clusters'],
  summary: 'Replace a broken node: cordon, drain (skipped when it does not answer), delete, wait for the replacement',
  request: { params: NodeParam, body: { required: false, content: { 'application/json': { schema: ReplaceNodeRequestSchema } } } },
  responses: OperationStarted,
});
const updateRoute = apiRoute({
  method: 'patch',
  path: '/v1/clusters/{id}',
  tags: ['clusters'],
  summary: 'Update settings, or upgrade the Kubernetes version (control plane first, then workers; stops at the first node that does not come back Ready)',
  request: { params: ClusterParam, ...json(UpdateClusterSchema) },
  responses: OperationStarted,
});
const deleteRoute = apiRoute({
  method: 'delete',
  path: '/v1/clusters/{id}',
  tags: ['clusters'],
  summary: 'Delete a cluster with its node pools',
  request: { params: ClusterParam },
  responses: OperationStarted,
});
const snapshotRoute = apiRoute({
  method: 'post',
  path: '/v1/clusters/{id}/snapshots',
  tags: ['snapshots'],
  summary: 'Take an etcd snapshot now',
  request: { params: ClusterParam, body: { required: false, content: { 'application/json': { schema: SnapshotRequestSchema } } } },
  responses: OperationStarted,
});
const listSnapshotsRoute = apiRoute({
  method: 'get',
  path: '/v1/clusters/{id}/snapshots',
  tags: ['snapshots'],
  summary: "A cluster's etcd snapshots, newest first (as Rancher last listed them)",
  request: { params: ClusterParam },
  responses: {
    200: { description: 'Snapshots', content: { 'application/json': { schema: z.object({ items: z.array(SnapshotSchema) }) } } },
    404: problem('No such cluster'),
  },
});
const restoreRoute = apiRoute({
  method: 'post',
  path: '/v1/clusters/{id}/restore',
  tags: ['snapshots'],
  summary: 'Restore the whole cluster from one of its etcd snapshots',
  request: { params: ClusterParam, ...json(RestoreRequestSchema) },
  responses: OperationStarted,
});
const ScheduleSchema = z
  .object({ cron: z.string(), retention: z.number().int(), paused: z.boolean(), scheduleId: z.string(), nextRuns: z.array(z.string()) })
  .openapi('SnapshotSchedule');
const putScheduleRoute = apiRoute({
  method: 'put',
  path: '/v1/clusters/{id}/snapshot-schedule',
  tags: ['snapshots'],
  summary: 'Create or change the periodic snapshot schedule (a Temporal Schedule; `paused` pauses it)',
  request: { params: ClusterParam, ...json(SnapshotScheduleSchema) },
  responses: {
    200: { description: 'The schedule', content: { 'application/json': { schema: ScheduleSchema } } },
    ...problemResponses,
    404: problem('No such cluster'),
  },
});
const getScheduleRoute = apiRoute({
  method: 'get',
  path: '/v1/clusters/{id}/snapshot-schedule',
  tags: ['snapshots'],
  summary: 'Show the snapshot schedule',
  request: { params: ClusterParam },
  responses: {
    200: { description: 'The schedule', content: { 'application/json': { schema: ScheduleSchema } } },
    404: problem('No such cluster, or it has no schedule'),
  },
});
const deleteScheduleRoute = apiRoute({
  method: 'delete',
  path: '/v1/clusters/{id}/snapshot-schedule',
  tags: ['snapshots'],
  summary: 'Remove the snapshot schedule (snapshots already taken stay)',
  request: { params: ClusterParam },
  responses: { 204: { description: 'Removed' }, 404: problem('No such cluster, or it has no schedule') },
});

/** Routes of the day-2 operations, mounted beside {@link clusterRoutes}. */
export function clusterOperationRoutes(deps: ApiDeps) {
  const app = new OpenAPIHono();

  app.openapi(scaleRoute, async (c) => {
    const { id, pool } = c.req.valid('param');
    const request = c.req.valid('json');
    const cluster = await activeCluster(deps, id);
    return accepted(c, await startScale(deps, cluster, pool, request.quantity, request.drainTimeoutSeconds));
  });

  app.openapi(replaceRoute, async (c) => {
    const { id, node } = c.req.valid('param');
    const request = parseBody(ReplaceNodeRequestSchema, await optionalJson(c));
    const cluster = await activeCluster(deps, id);
    return accepted(c, await startReplaceNode(deps, cluster, node, { skipDrain: request.skipDrain ?? false, drainTimeoutSeconds: request.drainTimeoutSeconds }));
  });

  app.openapi(updateRoute, async (c) => {
    const { id } = c.req.valid('param');
    const update = c.req.valid('json');
    const cluster = await activeCluster(deps, id);
    if (update.kubernetesVersion !== undefined) {
      const order = compareVersions(update.kubernetesVersion, cluster.kubernetesVersion);
      const refuse = (message: string) => new Problem(400, 'invalid-request', message, { errors: [{ field: 'kubernetesVersion', in: 'body', message }] });
      if (order < 0) throw refuse(`${update.kubernetesVersion} is older than ${cluster.kubernetesVersion}; downgrades are not supported (restore a snapshot instead)`);
      if (order === 0 && update.description === undefined && update.labels === undefined) throw refuse(`the cluster already runs ${cluster.kubernetesVersion}`);
    }
    const upgrade = update.kubernetesVersion !== undefined && update.kubernetesVersion !== cluster.kubernetesVersion;
    const operation = await startClusterOperation(deps, cluster, 'cluster.update', 'updateCluster', updateClusterSteps, (operationId) => [
      {
        operationId,
        clusterId: id,
        rancherId: cluster.rancherId,
        ...(upgrade ? { kubernetesVersion: update.kubernetesVersion } : {}),
        ...(update.description !== undefined ? { description: update.description } : {}),
        ...(update.labels ? { labels: update.labels } : {}),
        maxUnavailable: update.maxUnavailable,
        nodeTimeoutSeconds: update.nodeTimeoutSeconds,
        readyTimeoutSeconds: deps.config.KUMO_CLUSTER_READY_TIMEOUT_S,
      },
    ], upgrade ? 'updating' : undefined);
    return accepted(c, operation);
  });

  app.openapi(deleteRoute, async (c) => {
    const { id } = c.req.valid('param');
    const cluster = await mustGetCluster(deps, id);
    const operation = await startClusterOperation(deps, cluster, 'cluster.delete', 'deleteCluster', deleteClusterSteps, (operationId) => [
      { operationId, clusterId: id, rancherId: cluster.rancherId, timeoutSeconds: 600 },
    ], 'deleting');
    return accepted(c, operation);
  });

  app.openapi(snapshotRoute, async (c) => {
    const { id } = c.req.valid('param');
    const request = parseBody(SnapshotRequestSchema, await optionalJson(c));
    const cluster = await activeCluster(deps, id);
    const operation = await startClusterOperation(deps, cluster, 'cluster.snapshot', 'takeSnapshot', snapshotSteps, (operationId) => [
      { operationId, clusterId: id, rancherId: cluster.rancherId, retention: request.retention ?? null },
    ]);
    return accepted(c, operation);
  });

  app.openapi(listSnapshotsRoute, async (c) => {
    const { id } = c.req.valid('param');
    await mustGetCluster(deps, id);
    const snapshots = await deps.store.listSnapshots(id);
    return c.json({ items: snapshots.map((snapshot) => ({ ...snapshot, cluster: snapshot.clusterId })) }, 200);
  });

  app.openapi(restoreRoute, async (c) => {
    const { id } = c.req.valid('param');
    const { snapshot } = c.req.valid('json');
    const cluster = await activeCluster(deps, id);
    const known = (await deps.store.getSnapshot(snapshot)) ?? (await deps.store.listSnapshots(id)).find((candidate) => candidate.name === snapshot) ?? null;
    if (!known) {
      throw new Problem(400, 'invalid-request', `cluster "${id}" has no snapshot "${snapshot}"`, { errors: [{ field: 'snapshot', in: 'body', message: 'no such snapshot of this cluster' }] });
    }
    if (known.clusterId !== id) {
      throw new Problem(400, 'invalid-request', `snapshot "${snapshot}" belongs to cluster "${known.clusterId}", not "${id}"`, {
        errors: [{ field: 'snapshot', in: 'body', message: 'a snapshot of another cluster' }],
      });
    }
    const operation = await startClusterOperation(deps, cluster, 'cluster.restore', 'restoreFromSnapshot', restoreSteps, (operationId) => [
      { operationId, clusterId: id, rancherId: cluster.rancherId, snapshotId: known.id, readyTimeoutSeconds: deps.config.KUMO_CLUSTER_READY_TIMEOUT_S },
    ], 'updating');
    return accepted(c, operation);
  });

  app.openapi(putScheduleRoute, async (c) => {
    const { id } = c.req.valid('param');
    const schedule = c.req.valid('json');
    await mustGetCluster(deps, id);
    const scheduleId = snapshotScheduleId(id);
    const options = {
      spec: { cronExpressions: [schedule.cron] },
      action: {
        type: 'startWorkflow' as const,
        workflowType: 'scheduledSnapshot',
        workflowId: `cluster/${id}/scheduled-snapshot`,
        taskQueue: deps.config.TEMPORAL_TASK_QUEUE,
        args: [{ clusterId: id, retention: schedule.retention }],
      },
      // A snapshot still running when the next is due: skip, never pile up.
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '10 minutes' },
    };
    try {
      await deps.temporal.schedule.create({ scheduleId, ...options, state: { paused: schedule.paused, note: cronNote(schedule.cron) } });
    } catch (err) {
      if (!(err instanceof ScheduleAlreadyRunning)) throw err;
      const handle = deps.temporal.schedule.getHandle(scheduleId);
      await handle.update((previous) => ({ ...previous, ...options, state: { ...previous.state, paused: schedule.paused, note: cronNote(schedule.cron) } }));
    }
    return c.json(await describeSchedule(deps, id), 200);
  });

  app.openapi(getScheduleRoute, async (c) => {
    const { id } = c.req.valid('param');
    await mustGetCluster(deps, id);
    return c.json(await describeSchedule(deps, id), 200);
  });

  app.openapi(deleteScheduleRoute, async (c) => {
    const { id } = c.req.valid('param');
    await mustGetCluster(deps, id);
    try {
      await deps.temporal.schedule.getHandle(snapshotScheduleId(id)).delete();
    } catch (err) {
      if (err instanceof ScheduleNotFoundError) throw new Problem(404, 'not-found', `cluster "${id}" has no snapshot schedule`);
      throw err;
    }
    return c.body(null, 204);
  });

  return app;
}

/** Orders two Kubernetes versions by their numbers (`v1.30.6-rancher1-1` < `v1.31.2-rancher1-1`). */
function compareVersions(a: string, b: string): number {
  const numbers = (version: string) => (version.match(/\d+/g) ?? []).map(Number);
  const [x, y] = [numbers(a), numbers(b)];
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const diff = (x[i] ?? 0) - (y[i] ?? 0);
    if (diff !== 0) return Math.sign(diff);
  }
  return 0;
}

/** The Temporal Schedule id of a cluster's snapshot schedule. */
export function snapshotScheduleId(clusterId: string): string {
  return `cluster/${clusterId}/snapshots`;
}

async function describeSchedule(deps: ApiDeps, clusterId: string): Promise<z.infer<typeof ScheduleSchema>> {
  try {
    const description = await deps.temporal.schedule.getHandle(snapshotScheduleId(clusterId)).describe();
    const action = description.action as { args?: Array<{ retention?: number }> };
    return {
      scheduleId: description.scheduleId,
      cron: cronFromNote(description.state.note),
      retention: action.args?.[0]?.retention ?? 0,
      paused: description.state.paused,
      nextRuns: description.info.nextActionTimes.slice(0, 3).map((time) => time.toISOString()),
    };
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) throw new Problem(404, 'not-found', `cluster "${clusterId}" has no snapshot schedule`);
    throw err;
  }
}

/**
 * Temporal turns a cron string into calendar specs and does not give it back,
 * so the schedule's note keeps the expression the user gave.
 */
function cronNote(cron: string): string {
  return `etcd snapshots by Kumo; cron: ${cron}`;
}

function cronFromNote(note: string | undefined): string {
  return /cron: (.+)$/.exec(note ?? '')?.[1] ?? '';
}

/**
 * Scales a pool of an active cluster: refuses a no-op or an unsafe quantity
 * (400), else starts `scaleNodePool` under the cluster's mutation id. The API's
 * route and the autoscaler (with its `reason`) both come through here.
 */
export async function startScale(
  deps: ApiDeps,
  cluster: ClusterRecord & { rancherId: string },
  pool: string,
  quantity: number,
  drainTimeoutSeconds: number,
  reason?: string,
): Promise<ReturnType<typeof storedView>> {
  const current = cluster.nodePools.find((candidate) => candidate.name === pool);
  if (!current?.rancherId) throw new Problem(404, 'not-found', `cluster "${cluster.id}" has no node pool "${pool}"`);
  if (current.quantity === quantity) {
    throw new Problem(400, 'invalid-request', `pool "${pool}" already has ${quantity} nodes`, {
      errors: [{ field: 'quantity', in: 'body', message: `already ${quantity}` }],
    });
  }
  const refusal = scaleRefusal(cluster, pool, quantity);
  if (refusal) throw new Problem(400, 'invalid-request', refusal, { errors: [{ field: 'quantity', in: 'body', message: refusal }] });
  const up = quantity > current.quantity;
  const poolRancherId = current.rancherId;
  return startClusterOperation(
    deps,
    cluster,
    'cluster.scale',
    'scaleNodePool',
    up ? scaleUpSteps : scaleDownSteps,
    (operationId) => [
      {
        operationId,
        clusterId: cluster.id,
        rancherId: cluster.rancherId,
        pool,
        poolRancherId,
        from: current.quantity,
        to: quantity,
        drainTimeoutSeconds,
        readyTimeoutSeconds: deps.config.KUMO_CLUSTER_READY_TIMEOUT_S,
        nodePools: cluster.nodePools.map((candidate) => (candidate.name === pool ? { ...candidate, quantity } : candidate)),
      },
    ],
    undefined,
    null,
    reason,
  );
}

/**
 * Replaces a node (by Rancher id or hostname) of an active cluster, refusing
 * with 409 when that would cost etcd its quorum. The API's route and auto-heal
 * (with its `reason`) both come through here.
 */
export async function startReplaceNode(
  deps: ApiDeps,
  cluster: ClusterRecord & { rancherId: string },
  node: string,
  options: { skipDrain: boolean; drainTimeoutSeconds: number },
  reason?: string,
  operationId?: string,
): Promise<ReturnType<typeof storedView>> {
  const target = cluster.nodes.find((candidate) => candidate.id === node || candidate.hostname === node);
  if (!target) throw new Problem(404, 'not-found', `cluster "${cluster.id}" has no node "${node}"`);
  if (target.roles.includes('etcd')) {
    const etcd = cluster.nodes.filter((candidate) => candidate.roles.includes('etcd'));
    const othersReady = etcd.filter((candidate) => candidate.id !== target.id && candidate.ready).length;
    if (etcd.length === 1) {
      throw new Problem(409, 'quorum', `node ${target.hostname} is the cluster's only etcd member; replacing it would lose the cluster's state (restore from a snapshot instead)`);
    }
    if (othersReady < Math.floor(etcd.length / 2) + 1) {
      throw new Problem(409, 'quorum', `replacing ${target.hostname} now would leave ${othersReady} of ${etcd.length} etcd members ready, below quorum`);
    }
  }
  return startClusterOperation(
    deps,
    cluster,
    'cluster.replaceNode',
    'replaceNode',
    replaceNodeSteps,
    (operationId) => [
      {
        operationId,
        clusterId: cluster.id,
        rancherId: cluster.rancherId,
        nodeId: target.id,
        skipDrain: options.skipDrain,
        drainTimeoutSeconds: options.drainTimeoutSeconds,
        readyTimeoutSeconds: deps.config.KUMO_CLUSTER_READY_TIMEOUT_S,
      },
    ],
    undefined,
    null,
    reason,
    operationId,
  );
}

export async function mustGetCluster(deps: ApiDeps, id: string): Promise<ClusterRecord> {
  const cluster = await deps.store.getCluster(id);
  if (!cluster) throw new Problem(404, 'not-found', `no cluster named "${id}"`);
  return cluster;
}

/**
 * A cluster that exists in Rancher and is not in the middle of something: active,
 * or failed (the last operation failed; fixing it takes these very operations).
 */
export async function activeCluster(deps: ApiDeps, id: string): Promise<ClusterRecord & { rancherId: string }> {
  const cluster = await mustGetCluster(deps, id);
  if (!cluster.rancherId || (cluster.state !== 'active' && cluster.state !== 'failed')) {
    throw new Problem(409, 'cluster-not-active', `cluster "${id}" is ${cluster.state}; this needs an active cluster`, {
      ...(cluster.lastOperationId ? { operation: `/v1/operations/${cluster.lastOperationId}` } : {}),
    });
  }
  return cluster as ClusterRecord & { rancherId: string };
}

/** Validates an optional body read by hand, with the same 400 as the routes' own validation. */
export function parseBody<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  const parsed = schema.superRefine(refuseNul).safeParse(value);
  if (parsed.success) return parsed.data as z.infer<T>;
  const errors = fieldErrors(parsed.error, 'body');
  throw new Problem(400, 'invalid-request', `the request body is invalid: ${errors.map((e) => `${e.field}: ${e.message}`).join('; ')}`, { errors });
}

/** A JSON body that may be absent (an empty POST means the defaults). */
export async function optionalJson(c: { req: { text(): Promise<string> } }): Promise<unknown> {
  const text = await c.req.text();
  if (!text.trim()) return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new Problem(400, 'invalid-request', 'the body is not valid JSON', { errors: [{ field: '(root)', in: 'body', message: 'not valid JSON' }] });
  }
}

export function accepted(c: { header(name: string, value: string): void; json: (body: unknown, status: 202) => Response }, operation: ReturnType<typeof storedView>) {
  c.header('Location', operation.links.self);
  return c.json({ operation }, 202) as never;
}

/**
 * Records an operation and starts its workflow under the cluster's mutation id.
 * A running operation on the cluster makes Temporal refuse the start, which is
 * answered with 409 naming that operation; nothing is left recorded then.
 */
export async function startClusterOperation(
  deps: ApiDeps,
  cluster: ClusterRecord,
  kind: OperationKind,
  workflowType: string,
  steps: readonly string[],
  args: (operationId: string) => unknown[],
  stateWhileRunning?: ClusterState,
  retryOf: string | null = null,
  reason?: string,
  /** A given id (auto-heal derives one from the node, so a retried start finds the operation it made); else a new one. */
  givenOperationId?: string,
): Promise<ReturnType<typeof storedView>> {
  const operationId = givenOperationId ?? newOperationId();
  const workflowArgs = args(operationId);
  const operation = { ...newClusterOperation({ id: operationId, kind, clusterId: cluster.id, steps, startedAt: new Date().toISOString() }), ...(reason ? { reason } : {}) };
  if (!(await deps.store.startOperation(operation, cluster.id))) throw new Problem(404, 'not-found', `no cluster named "${cluster.id}"`);
  let runId: string;
  try {
    const handle = await startOperationWorkflow(deps, workflowType, operation, workflowArgs);
    runId = handle.firstExecutionRunId;
  } catch (err) {
    const started = err instanceof WorkflowExecutionAlreadyStartedError ? null : await startedRunOf(deps, operation.workflowId, operationId);
    if (!started) {
      await deps.store.forgetOperation(operationId, cluster.id, cluster.lastOperationId);
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        const running = await runningOperationOf(deps, operation.workflowId);
        throw new Problem(409, 'operation-running', `operation ${running ?? '(unknown)'} is running on cluster "${cluster.id}"; one mutating operation at a time`, {
          ...(running ? { operation: `/v1/operations/${running}` } : {}),
        });
      }
      throw new Problem(503, 'temporal-unavailable', `the operation could not be started, Temporal did not answer: ${err instanceof Error ? err.message : String(err)}`);
    }
    runId = started;
  }
  await deps.store.setOperationRun(operationId, runId);
  await deps.store.setOperationInput(operationId, workflowArgs[0], retryOf);
  if (stateWhileRunning) await deps.store.updateCluster(cluster.id, { state: stateWhileRunning });
  return storedView(deps, { ...operation, runId, ...(retryOf ? { retryOf } : {}) });
}

/**
 * Starts an operation's workflow under the cluster's mutation id, tagged with
 * Kumo's search attributes. One mutating operation per cluster: Temporal refuses
 * a second live workflow with this id, and allows it again once the first closed.
 */
function startOperationWorkflow(deps: ApiDeps, workflowType: string, operation: OperationRecord, args: unknown[]) {
  return startFinishingFirst(deps, operation.workflowId, () =>
    deps.temporal.workflow.start(workflowType, {
      taskQueue: deps.config.TEMPORAL_TASK_QUEUE,
      workflowId: operation.workflowId,
      args,
      workflowIdConflictPolicy: 'FAIL',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      searchAttributes: {
        [searchAttributes.operationId]: [operation.id],
        [searchAttributes.kind]: [operation.kind],
        [searchAttributes.target]: [operation.target],
      },
    }),
  );
}

/**
 * Starts a workflow under a cluster's mutation id. An operation records its end
 * in the store just before its workflow closes, so a client that saw it end
 * may come back while Temporal still holds the id for a moment: then wait for
 * that run to close (briefly) and start once more. A live operation is refused.
 */
export async function startFinishingFirst<T>(deps: ApiDeps, workflowId: string, start: () => Promise<T>): Promise<T> {
  const attempt = () => deps.temporal.withDeadline(Date.now() + startDeadlineMs, start);
  try {
    return await attempt();
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    const running = await runningOperationOf(deps, workflowId);
    const record = running ? await deps.store.getOperation(running) : null;
    if (!record || record.status === 'running') throw err;
    try {
      await deps.temporal.withDeadline(Date.now() + 5000, () => deps.temporal.workflow.getHandle(workflowId).result());
    } catch {
      // It closed as failed or cancelled (as its record says), or is slow to: try the start once more either way.
    }
    return attempt();
  }
}

/** The operation id of the workflow running under `workflowId`, if one runs. */
export async function runningOperationOf(deps: ApiDeps, workflowId: string): Promise<string | null> {
  try {
    const description = await deps.temporal.withDeadline(Date.now() + 2000, () => deps.temporal.workflow.getHandle(workflowId).describe());
    return (description.searchAttributes[searchAttributes.operationId]?.[0] as string | undefined) ?? null;
  } catch {
    return null;
  }
}
