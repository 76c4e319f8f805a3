import { OpenAPIHono, z } from '@hono/zod-openapi';
import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, type Client } from '@temporalio/client';
import {
  addonReconcileScheduleId,
  AddonRequestSchema,
  addonStates,
  matchesSelector,
  RolloutRequestSchema,
  rolloutWorkflowId,
  sameValues,
  type AddonRecord,
  type CatalogAddon,
  type RolloutReport,
} from '../../domain/addon.js';
import type { Config } from '../../domain/config.js';
import { newOperation as newOperationRecord, searchAttributes, type OperationRecord } from '../../domain/operation.js';
import { AddonCatalog } from '../../store/catalog.js';
import { abortRolloutSignal, addonSteps, pauseRolloutSignal, reconcileSteps, removeAddonSteps, resumeRolloutSignal, rolloutProgressQuery, rolloutSteps, type ReconcileAddonsInput, type RolloutAddonInput } from '../../workflows/addon.js';
import type { ApiDeps } from '../deps.js';
import { Problem } from '../problem.js';
import { apiRoute, OperationSchema, problem, problemResponses, refuseNul } from '../schemas.js';
import { accepted, activeCluster, mustGetCluster, newOperationId, startClusterOperation, startFinishingFirst } from './clusters.js';
import { storedView } from './operations.js';

const NameParam = z.object({ name: z.string().min(1).max(63).openapi({ param: { name: 'name', in: 'path' }, example: 'logging' }) });
const ClusterAddonParams = z.object({
  id: z.string().min(1).max(63).openapi({ param: { name: 'id', in: 'path' }, example: 'prod-eu-1' }),
  name: z.string().min(1).max(63).openapi({ param: { name: 'name', in: 'path' }, example: 'logging' }),
});
const RolloutParams = NameParam.extend({ rollout: z.string().min(1).max(100).openapi({ param: { name: 'rollout', in: 'path' }, example: 'op-mfx2k1a9c3d4e5f6' }) });

const CatalogAddonSchema = z
  .object({
    name: z.string(),
    title: z.string(),
    description: z.string(),
    namespace: z.string(),
    release: z.string(),
    versions: z.array(z.object({ version: z.string(), appVersion: z.string() })),
    latest: z.string(),
    valuesSchema: z.record(z.string(), z.unknown()),
  })
  .openapi('CatalogAddon');

const AddonSchema = z
  .object({
    name: z.string(),
    cluster: z.string(),
    version: z.string(),
    values: z.record(z.string(), z.unknown()),
    state: z.enum(addonStates),
    revision: z.number().int().nullable().openapi({ description: 'The Helm revision live, as Kumo made or verified it' }),
    message: z.string().nullable(),
    updatedAt: z.string(),
    links: z.object({ lastOperation: z.string().optional() }),
  })
  .openapi('Addon');

const RolloutSchema = z
  .object({
    id: z.string(),
    operation: OperationSchema,
    report: z.unknown().openapi({ description: 'Per wave and per cluster: status, revisions, messages' }),
    links: z.object({ self: z.string() }),
  })
  .openapi('Rollout');

const listCatalog = apiRoute({
  method: 'get',
  path: '/v1/addons',
  tags: ['add-ons'],
  summary: 'The add-on catalog: each add-on, its published versions and its values schema',
  responses: { 200: { description: 'The catalog', content: { 'application/json': { schema: z.object({ items: z.array(CatalogAddonSchema) }) } } } },
});

const getCatalogAddon = apiRoute({
  method: 'get',
  path: '/v1/addons/{name}',
  tags: ['add-ons'],
  summary: 'One add-on of the catalog',
  request: { params: NameParam },
  responses: { 200: { description: 'The add-on', content: { 'application/json': { schema: CatalogAddonSchema } } }, 404: problem('No such add-on') },
});

const listClusterAddons = apiRoute({
  method: 'get',
  path: '/v1/clusters/{id}/addons',
  tags: ['add-ons'],
  summary: "A cluster's add-ons: version, values, state and live revision",
  request: { params: ClusterAddonParams.pick({ id: true }) },
  responses: { 200: { description: 'The add-ons', content: { 'application/json': { schema: z.object({ items: z.array(AddonSchema) }) } } }, 404: problem('No such cluster') },
});

const getClusterAddon = apiRoute({
  method: 'get',
  path: '/v1/clusters/{id}/addons/{name}',
  tags: ['add-ons'],
  summary: 'One add-on on a cluster',
  request: { params: ClusterAddonParams },
  responses: { 200: { description: 'The add-on', content: { 'application/json': { schema: AddonSchema } } }, 404: problem('No such cluster, or the add-on is not enabled on it') },
});

const putClusterAddon = apiRoute({
  method: 'put',
  path: '/v1/clusters/{id}/addons/{name}',
  tags: ['add-ons'],
  summary: 'Enable, reconfigure or upgrade an add-on on a cluster',
  description:
    "Values are checked against the chart's schema before anything runs. Starts an `addon.apply` operation: Helm upgrade --install, then a wait until the add-on is healthy; when it is not healthy in time it is rolled back to the revision that ran before (a first install is uninstalled). Asking for what already runs answers 200 and starts nothing.",
  request: { params: ClusterAddonParams, body: { required: true, content: { 'application/json': { schema: AddonRequestSchema, example: { version: '1.1.0', values: { output: { type: 'stdout' } } } } } } },
  responses: {
    200: { description: 'Already so; nothing to do', content: { 'application/json': { schema: z.object({ addon: AddonSchema, operation: z.null() }) } } },
    202: { description: 'Operation started', content: { 'application/json': { schema: z.object({ operation: OperationSchema }) } } },
    404: problem('No such cluster, add-on or version'),
    409: problem('Another operation runs on the cluster, or it is not active'),
    ...problemResponses,
    503: problem('Temporal cannot be reached; nothing was started'),
  },
});

const deleteClusterAddon = apiRoute({
  method: 'delete',
  path: '/v1/clusters/{id}/addons/{name}',
  tags: ['add-ons'],
  summary: 'Disable an add-on on a cluster (uninstall its release)',
  request: { params: ClusterAddonParams },
  responses: {
    202: { description: 'Operation started', content: { 'application/json': { schema: z.object({ operation: OperationSchema }) } } },
    404: problem('No such cluster, or the add-on is not enabled on it'),
    409: problem('Another operation runs on the cluster, or it is not active'),
    503: problem('Temporal cannot be reached; nothing was started'),
  },
});

const startRollout = apiRoute({
  method: 'post',
  path: '/v1/addons/{name}/rollouts',
  tags: ['add-ons'],
  summary: 'Roll an add-on version out across the fleet in waves',
  description:
    'Targets: the clusters with the add-on deployed that match the selector, in cluster id order. Waves are cumulative (a count or a percentage of the targets); each cluster is upgraded and must be healthy within `healthGate.timeoutSeconds` (or it is rolled back); after a wave, every cluster of it must still be healthy after `healthGate.soakSeconds`. More than `maxFailures` failures roll the failing wave back and stop the rollout; later waves are left untouched. One rollout per add-on at a time.',
  request: {
    params: NameParam,
    body: { required: true, content: { 'application/json': { schema: RolloutRequestSchema, example: { version: '1.1.0', waves: [1, '10%', '100%'], maxFailures: 0, healthGate: { soakSeconds: 60, timeoutSeconds: 300 } } } } },
  },
  responses: {
    202: { description: 'Rollout started', content: { 'application/json': { schema: RolloutSchema } } },
    404: problem('No such add-on or version'),
    409: problem('A rollout of this add-on is running'),
    ...problemResponses,
    503: problem('Temporal cannot be reached; nothing was started'),
  },
});

const listRollouts = apiRoute({
  method: 'get',
  path: '/v1/addons/{name}/rollouts',
  tags: ['add-ons'],
  summary: "An add-on's rollouts, newest first",
  request: { params: NameParam },
  responses: { 200: { description: 'Rollouts', content: { 'application/json': { schema: z.object({ items: z.array(RolloutSchema) }) } } }, 404: problem('No such add-on') },
});

const getRollout = apiRoute({
  method: 'get',
  path: '/v1/addons/{name}/rollouts/{rollout}',
  tags: ['add-ons'],
  summary: 'A rollout: live per-cluster progress while it runs, its report afterwards',
  request: { params: RolloutParams },
  responses: { 200: { description: 'The rollout', content: { 'application/json': { schema: RolloutSchema } } }, 404: problem('No such rollout') },
});

const controlRollout = apiRoute({
  method: 'post',
  path: '/v1/addons/{name}/rollouts/{rollout}/{action}',
  tags: ['add-ons'],
  summary: 'Pause, resume or abort a running rollout',
  description:
    'pause: no further cluster starts (those under way finish); resume: go on; abort: stop after the clusters under way, leaving every cluster where it is (a failed cluster was already rolled back). Body for abort: `{ "reason": "..." }` (optional).',
  request: { params: RolloutParams.extend({ action: z.enum(['pause', 'resume', 'abort']).openapi({ param: { name: 'action', in: 'path' } }) }) },
  responses: {
    202: { description: 'Signalled; the report reflects it at once', content: { 'application/json': { schema: RolloutSchema } } },
    404: problem('No such rollout'),
    409: problem('The rollout is over'),
  },
});

const runReconcile = apiRoute({
  method: 'post',
  path: '/v1/addons/reconcile',
  tags: ['add-ons'],
  summary: 'Run the add-on reconcile now (it also runs on a Temporal Schedule)',
  description: 'Checks every managed add-on and repairs what is stopped, missing, not deployed or at a revision Kumo did not make. The report is the operation\'s `result`.',
  responses: {
    202: { description: 'Reconcile started', content: { 'application/json': { schema: z.object({ operation: OperationSchema }) } } },
    ...problemResponses,
    503: problem('Temporal cannot be reached; nothing was started'),
  },
});

/** The add-on catalog, a cluster's add-ons, fleet rollouts and the reconcile. */
export function addonRoutes(deps: ApiDeps & { catalog?: AddonCatalog }) {
  const app = new OpenAPIHono();
  const catalog = deps.catalog ?? AddonCatalog.load(deps.config.KUMO_CHARTS_DIR);
  const mustFind = (name: string): CatalogAddon => {
    const addon = catalog.find(name);
    if (!addon) throw new Problem(404, 'not-found', `no add-on named "${name}" in the catalog (see GET /v1/addons)`);
    return addon;
  };
  const mustHaveVersion = (addon: CatalogAddon, version: string) => {
    if (!addon.versions.some((v) => v.version === version)) {
      throw new Problem(404, 'not-found', `add-on "${addon.name}" has no version ${version}; published: ${addon.versions.map((v) => v.version).join(', ')}`);
    }
  };
  const checkValues = (addon: CatalogAddon, values: Record<string, unknown>) => {
    const errors = catalog.validate(addon.name, values);
    if (errors.length) {
      throw new Problem(400, 'invalid-request', `values refused by the ${addon.name} chart's schema: ${errors.map((e) => `${e.field} ${e.message}`).join('; ')}`, {
        errors: errors.map((e) => ({ ...e, in: 'body' as const })),
      });
    }
  };
  const catalogView = (addon: CatalogAddon): z.infer<typeof CatalogAddonSchema> => ({
    name: addon.name,
    title: addon.title,
    description: addon.description,
    namespace: addon.namespace,
    release: addon.release,
    versions: addon.versions,
    latest: catalog.latest(addon),
    valuesSchema: addon.valuesSchema,
  });

  app.openapi(listCatalog, (c) => c.json({ items: catalog.addons.map(catalogView) }, 200));
  app.openapi(getCatalogAddon, (c) => c.json(catalogView(mustFind(c.req.valid('param').name)), 200));

  app.openapi(listClusterAddons, async (c) => {
    const { id } = c.req.valid('param');
    await mustGetCluster(deps, id);
    return c.json({ items: (await deps.store.listAddons({ clusterId: id })).map(addonView) }, 200);
  });

  app.openapi(getClusterAddon, async (c) => {
    const { id, name } = c.req.valid('param');
    await mustGetCluster(deps, id);
    const record = await deps.store.getAddon(id, name);
    if (!record) throw new Problem(404, 'not-found', `add-on "${name}" is not enabled on cluster "${id}"`);
    return c.json(addonView(record), 200);
  });

  app.openapi(putClusterAddon, async (c) => {
    const { id, name } = c.req.valid('param');
    const request = c.req.valid('json');
    const addon = mustFind(name);
    const cluster = await activeCluster(deps, id);
    const current = await deps.store.getAddon(id, name);
    const version = request.version ?? (current?.version || catalog.latest(addon));
    mustHaveVersion(addon, version);
    checkValues(addon, request.values);
    if (current && current.state === 'deployed' && current.version === version && sameValues(current.values, request.values)) {
      return c.json({ addon: addonView(current), operation: null }, 200);
    }
    const operation = await startClusterOperation(deps, cluster, 'addon.apply', 'applyAddon', addonSteps.apply, (operationId) => [
      {
        operationId,
        clusterId: id,
        rancherId: cluster.rancherId,
        addon: name,
        version,
        values: request.values,
        mode: 'apply',
        rollbackOnFailure: true,
        healthTimeoutSeconds: request.healthTimeoutSeconds,
        pollSeconds: deps.config.KUMO_ADDON_POLL_S,
      },
    ]);
    return accepted(c, operation);
  });

  app.openapi(deleteClusterAddon, async (c) => {
    const { id, name } = c.req.valid('param');
    const cluster = await mustGetCluster(deps, id);
    if (!(await deps.store.getAddon(id, name))) throw new Problem(404, 'not-found', `add-on "${name}" is not enabled on cluster "${id}"`);
    const active = await activeCluster(deps, cluster.id);
    const operation = await startClusterOperation(deps, active, 'addon.remove', 'removeAddon', removeAddonSteps, (operationId) => [
      { operationId, clusterId: id, rancherId: active.rancherId, addon: name },
    ]);
    return accepted(c, operation);
  });

  app.openapi(startRollout, async (c) => {
    const { name } = c.req.valid('param');
    const request = c.req.valid('json');
    const addon = mustFind(name);
    mustHaveVersion(addon, request.version);
    if (request.values) checkValues(addon, request.values);
    const clusters = new Map((await deps.store.listClusters()).map((cluster) => [cluster.id, cluster]));
    const targets = (await deps.store.listAddons({ name })).filter((record) => {
      const cluster = clusters.get(record.clusterId);
      return cluster && record.state === 'deployed' && matchesSelector(cluster, request.selector);
    });
    if (!targets.length) {
      const message = `no cluster with ${name} deployed matches the selector`;
      throw new Problem(400, 'invalid-request', message, { errors: [{ field: 'selector', in: 'body', message }] });
    }
    const operation = newOperation('addon.rollout', `addon/${name}`, rolloutWorkflowId(name), rolloutSteps);
    await deps.store.openOperation(operation, null);
    const input: RolloutAddonInput = {
      operationId: operation.id,
      addon: name,
      version: request.version,
      values: request.values ?? null,
      selector: request.selector,
      waves: request.waves,
      maxFailures: request.maxFailures,
      maxParallel: request.maxParallel,
      healthGate: request.healthGate,
      pollSeconds: deps.config.KUMO_ADDON_POLL_S,
    };
    try {
      const handle = await startFinishingFirst(deps, operation.workflowId, () =>
        deps.temporal.workflow.start('rolloutAddon', {
          taskQueue: deps.config.TEMPORAL_TASK_QUEUE,
          workflowId: operation.workflowId,
          args: [input],
          workflowIdConflictPolicy: 'FAIL',
          workflowIdReusePolicy: 'ALLOW_DUPLICATE',
          searchAttributes: tags(operation),
        }),
      );
      await deps.store.setOperationRun(operation.id, handle.firstExecutionRunId);
    } catch (err) {
      await deps.store.forgetOperation(operation.id, '', null);
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        const running = await runningRollout(deps, name);
        throw new Problem(409, 'rollout-running', `a rollout of ${name} is running${running ? ` (${running})` : ''}; pause, resume or abort it first`, {
          ...(running ? { rollout: `/v1/addons/${name}/rollouts/${running}` } : {}),
        });
      }
      throw new Problem(503, 'temporal-unavailable', `the rollout could not be started, Temporal did not answer: ${err instanceof Error ? err.message : String(err)}`);
    }
    const view = await rolloutView(deps, name, (await deps.store.getOperation(operation.id)) ?? operation);
    c.header('Location', `/v1/addons/${name}/rollouts/${operation.id}`);
    return c.json(view, 202);
  });

  app.openapi(listRollouts, async (c) => {
    const { name } = c.req.valid('param');
    mustFind(name);
    const page = await deps.store.listOperations({ kind: 'addon.rollout', target: `addon/${name}`, limit: 50 });
    return c.json({ items: await Promise.all(page.items.map((operation) => rolloutView(deps, name, operation))) }, 200);
  });

  app.openapi(getRollout, async (c) => {
    const { name, rollout } = c.req.valid('param');
    return c.json(await rolloutView(deps, name, await mustGetRollout(deps, name, rollout)), 200);
  });

  app.openapi(controlRollout, async (c) => {
    const { name, rollout, action } = c.req.valid('param');
    const operation = await mustGetRollout(deps, name, rollout);
    if (operation.status !== 'running' || !operation.runId) throw new Problem(409, 'rollout-over', `rollout ${rollout} is ${operation.status}; only a running rollout can be ${action}d`);
    let reason: string | undefined;
    if (action === 'abort') {
      const text = await c.req.text();
      if (text.trim()) {
        const body = (() => {
          try {
            return JSON.parse(text) as unknown;
          } catch {
            throw new Problem(400, 'invalid-request', 'the body is not valid JSON', { errors: [{ field: '(root)', in: 'body', message: 'not valid JSON' }] });
          }
        })();
        const parsed = z.object({ reason: z.string().max(500).optional() }).strict().superRefine(refuseNul).safeParse(body);
        if (!parsed.success) throw new Problem(400, 'invalid-request', 'the body may only hold a reason (a string)', { errors: [{ field: 'reason', in: 'body', message: 'a string of at most 500 characters, without NUL' }] });
        reason = parsed.data.reason;
      }
    }
    const handle = deps.temporal.workflow.getHandle(operation.workflowId, operation.runId);
    try {
      if (action === 'pause') await handle.signal(pauseRolloutSignal);
      else if (action === 'resume') await handle.signal(resumeRolloutSignal);
      else await handle.signal(abortRolloutSignal, reason === undefined ? {} : { reason });
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) throw new Problem(409, 'rollout-over', `rollout ${rollout} is no longer running`);
      throw err;
    }
    return c.json(await rolloutView(deps, name, operation), 202);
  });

  app.openapi(runReconcile, async (c) => {
    const operation = newOperation('addon.reconcile', 'fleet/addons', `addons/reconcile/manual-${Date.now().toString(36)}`, reconcileSteps);
    await deps.store.openOperation(operation, null);
    try {
      const handle = await deps.temporal.withDeadline(Date.now() + 5000, () =>
        deps.temporal.workflow.start('reconcileAddons', {
          taskQueue: deps.config.TEMPORAL_TASK_QUEUE,
          workflowId: operation.workflowId,
          args: [{ ...reconcileInput(deps.config), operationId: operation.id } satisfies ReconcileAddonsInput],
          searchAttributes: tags(operation),
        }),
      );
      await deps.store.setOperationRun(operation.id, handle.firstExecutionRunId);
    } catch (err) {
      await deps.store.forgetOperation(operation.id, '', null);
      throw new Problem(503, 'temporal-unavailable', `the reconcile could not be started: ${err instanceof Error ? err.message : String(err)}`);
    }
    return accepted(c, storedView(deps, (await deps.store.getOperation(operation.id)) ?? operation));
  });

  return app;
}

/** The reconcile's settings, shared by the Schedule and a run started by hand. */
function reconcileInput(config: Config): ReconcileAddonsInput {
  return { healthTimeoutSeconds: config.KUMO_ADDON_HEALTH_TIMEOUT_S, pollSeconds: config.KUMO_ADDON_POLL_S, maxParallel: 8 };
}

/**
 * Creates the add-on reconcile Schedule, or brings its interval up to date.
 * Overlapping runs are skipped: a slow reconcile is never doubled.
 */
export async function ensureAddonReconcileSchedule(temporal: Client, config: Config): Promise<void> {
  const spec = { intervals: [{ every: `${config.KUMO_ADDON_RECONCILE_INTERVAL_S}s` }] };
  const action = {
    type: 'startWorkflow' as const,
    workflowType: 'reconcileAddons',
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    workflowId: 'addons/reconcile/run',
    args: [reconcileInput(config)],
  };
  try {
    await temporal.schedule.create({ scheduleId: addonReconcileScheduleId, spec, action, policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1m' } });
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
    await temporal.schedule.getHandle(addonReconcileScheduleId).update((previous) => ({ ...previous, spec, action }));
  }
}

function newOperation(kind: OperationRecord['kind'], target: string, workflowId: string, steps: readonly string[]): OperationRecord {
  return newOperationRecord({ id: newOperationId(), kind, target, steps, startedAt: new Date().toISOString(), workflowId });
}

function tags(operation: OperationRecord) {
  return {
    [searchAttributes.operationId]: [operation.id],
    [searchAttributes.kind]: [operation.kind],
    [searchAttributes.target]: [operation.target],
  };
}

async function mustGetRollout(deps: ApiDeps, name: string, id: string): Promise<OperationRecord> {
  const operation = await deps.store.getOperation(id);
  if (!operation || operation.kind !== 'addon.rollout' || operation.target !== `addon/${name}`) throw new Problem(404, 'not-found', `no rollout ${id} of add-on "${name}"`);
  return operation;
}

async function runningRollout(deps: ApiDeps, name: string): Promise<string | null> {
  const page = await deps.store.listOperations({ kind: 'addon.rollout', target: `addon/${name}`, status: 'running', limit: 1 });
  return page.items[0]?.id ?? null;
}

/** A rollout: the live report from its workflow while it runs, the stored one afterwards. */
async function rolloutView(deps: ApiDeps, name: string, operation: OperationRecord) {
  let report = operation.result as RolloutReport | undefined;
  let current = operation;
  if (operation.status === 'running' && operation.runId) {
    try {
      report = await deps.temporal.withDeadline(Date.now() + 3000, () => deps.temporal.workflow.getHandle(operation.workflowId, operation.runId ?? undefined).query(rolloutProgressQuery));
    } catch {
      // Closed meanwhile, or Temporal is slow: the stored report (and status) will do.
      current = (await deps.store.getOperation(operation.id)) ?? operation;
      report = current.result as RolloutReport | undefined;
    }
  }
  const view = storedView(deps, current);
  return { id: operation.id, operation: view, report: report ?? null, links: { self: `/v1/addons/${name}/rollouts/${operation.id}` } };
}

function addonView(record: AddonRecord): z.infer<typeof AddonSchema> {
  return {
    name: record.name,
    cluster: record.clusterId,
    version: record.version,
    values: record.values,
    state: record.state,
    revision: record.revision,
    message: record.message,
    updatedAt: record.updatedAt,
    links: record.lastOperationId ? { lastOperation: `/v1/operations/${record.lastOperationId}` } : {},
  };
}
