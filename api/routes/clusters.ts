import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { randomBytes } from 'node:crypto';
import { ClusterSpecSchema, type ClusterRecord } from '../../domain/cluster.js';
import { clusterMutationWorkflowId, searchAttributes, type OperationRecord } from '../../domain/operation.js';
import { createClusterSteps, type CreateClusterInput } from '../../workflows/cluster.js';
import type { ApiDeps } from '../deps.js';
import { Problem } from '../problem.js';
import { ClusterSchema, OperationSchema, problem, problemResponses } from '../schemas.js';
import { storedView } from './operations.js';

const IdParam = z.object({ id: z.string().min(1).max(63).openapi({ param: { name: 'id', in: 'path' }, example: 'prod-eu-1' }) });

const createRouteDef = createRoute({
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

const listRouteDef = createRoute({
  method: 'get',
  path: '/v1/clusters',
  tags: ['clusters'],
  summary: 'List clusters',
  responses: { 200: { description: 'Every cluster Kumo manages', content: { 'application/json': { schema: z.object({ items: z.array(ClusterSchema) }) } } } },
});

const getRouteDef = createRoute({
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
    const workflowId = clusterMutationWorkflowId(spec.name);
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
    const operation: OperationRecord = {
      id: operationId,
      kind: 'cluster.create',
      target: `cluster/${spec.name}`,
      status: 'running',
      step: null,
      steps: createClusterSteps.map((name) => ({ name, status: 'pending' as const })),
      startedAt: now,
      finishedAt: null,
      failure: null,
      workflowId,
      runId: null,
    };

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
      const handle = await deps.temporal.withDeadline(Date.now() + startDeadlineMs, () =>
        deps.temporal.workflow.start('createCluster', {
          taskQueue: deps.config.TEMPORAL_TASK_QUEUE,
          workflowId,
          args: [input],
          // One mutating operation per cluster: Temporal refuses a second live
          // workflow with this id, and allows it again once the first has closed.
          workflowIdConflictPolicy: 'FAIL',
          workflowIdReusePolicy: 'ALLOW_DUPLICATE',
          searchAttributes: {
            [searchAttributes.operationId]: [operationId],
            [searchAttributes.kind]: ['cluster.create'],
            [searchAttributes.target]: [operation.target],
          },
        }),
      );
      runId = handle.firstExecutionRunId;
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        await deps.store.forgetClusterCreation(spec.name, operationId, recorded.previous);
        throw new Problem(409, 'operation-running', `another operation is running on cluster "${spec.name}"`);
      }
      // A timeout is ambiguous: the start may have reached Temporal. Keep the
      // records if our run exists, so a running workflow never loses its operation.
      const started = await startedRunOf(deps, workflowId, operationId);
      if (!started) {
        await deps.store.forgetClusterCreation(spec.name, operationId, recorded.previous);
        throw new Problem(503, 'temporal-unavailable', `the operation could not be started, Temporal did not answer: ${err instanceof Error ? err.message : String(err)}`);
      }
      runId = started;
    }
    await deps.store.setOperationRun(operationId, runId);
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
async function startedRunOf(deps: ApiDeps, workflowId: string, operationId: string): Promise<string | null> {
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
function newOperationId(): string {
  return `op-${Date.now().toString(36)}${randomBytes(5).toString('hex')}`;
}
