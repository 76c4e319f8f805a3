import { OpenAPIHono, z } from '@hono/zod-openapi';
import { ScheduleAlreadyRunning, ScheduleNotFoundError, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import type { Config } from '../../domain/config.js';
import { effectivePolicy, HealthPolicySchema, healthStatuses } from '../../domain/health.js';
import { clusterScope, fleetScope } from '../../store/health.js';
import type { ApiDeps } from '../deps.js';
import { Problem } from '../problem.js';
import { apiRoute, problem } from '../schemas.js';
import { mustGetCluster } from './clusters.js';

const CheckSchema = z.object({ status: z.enum(['ok', 'failing']), checks: z.record(z.string(), z.string()) });

const healthz = apiRoute({
  method: 'get',
  path: '/healthz',
  tags: ['health'],
  summary: 'The API process is alive',
  responses: { 200: { description: 'Alive', content: { 'application/json': { schema: z.object({ status: z.literal('ok') }) } } } },
});

const readyz = apiRoute({
  method: 'get',
  path: '/readyz',
  tags: ['health'],
  summary: 'Ready to serve: Temporal and the store both answer',
  responses: {
    200: { description: 'Ready', content: { 'application/json': { schema: CheckSchema } } },
    503: { description: 'Not ready; `checks` says what fails', content: { 'application/json': { schema: CheckSchema } } },
  },
});

export function healthRoutes(deps: ApiDeps) {
  const app = new OpenAPIHono();
  app.openapi(healthz, (c) => c.json({ status: 'ok' as const }, 200));
  app.openapi(readyz, async (c) => {
    const checks: Record<string, string> = {};
    const probe = async (name: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
        checks[name] = 'ok';
      } catch (err) {
        checks[name] = err instanceof Error ? err.message.split('\n')[0] ?? 'failed' : 'failed';
      }
    };
    await Promise.all([
      probe('store', () => deps.store.ping()),
      probe('temporal', () =>
        deps.temporal.withDeadline(Date.now() + 2000, () =>
          deps.temporal.workflowService.describeNamespace({ namespace: deps.config.TEMPORAL_NAMESPACE }),
        ),
      ),
    ]);
    const ok = Object.values(checks).every((value) => value === 'ok');
    return c.json({ status: ok ? ('ok' as const) : ('failing' as const), checks }, ok ? 200 : 503);
  });
  return app;
}

// ---------------------------------------------------------------------------
// Fleet health: sweeps, each cluster's checks and history, policies

const CheckStateSchema = z.object({
  value: z.union([z.literal(0), z.literal(1)]),
  reason: z.string(),
  since: z.string().openapi({ description: 'When the check last changed value' }),
  soft: z.boolean().openapi({ description: 'Shown, but never makes the cluster unhealthy (ComponentStatus)' }),
});

const ClusterHealthSchema = z
  .object({
    clusterId: z.string(),
    status: z.enum(healthStatuses),
    since: z.string().nullable(),
    observedAt: z.string().nullable(),
    checks: z.record(z.string(), CheckStateSchema),
    nodes: z.array(
      z.object({
        id: z.string(),
        hostname: z.string(),
        pool: z.string().nullable(),
        roles: z.array(z.string()),
        ready: z.string(),
        unhealthy: z.object({ reason: z.string(), since: z.string() }).nullable(),
      }),
    ),
    thresholds: z.array(
      z.object({ rule: z.string(), key: z.string(), labels: z.record(z.string(), z.string()), value: z.number(), pendingSince: z.string(), firingSince: z.string().nullable() }),
    ),
    thresholdErrors: z.record(z.string(), z.string()),
    autoscale: z.record(z.string(), z.object({ pressureSince: z.string().nullable(), lowSince: z.string().nullable(), lastScaleAt: z.string().nullable() })),
    remediation: z.object({ blockedSince: z.string().nullable() }),
    links: z.object({ self: z.string(), history: z.string(), policy: z.string() }),
  })
  .openapi('ClusterHealth');

const SweepSchema = z
  .object({ id: z.string(), startedAt: z.string(), finishedAt: z.string().nullable(), clusters: z.number().int(), summary: z.record(z.string(), z.unknown()).nullable() })
  .openapi('HealthSweep');

const FleetHealthSchema = z
  .object({
    clusters: z.number().int(),
    healthy: z.number().int(),
    degraded: z.number().int(),
    unhealthy: z.number().int(),
    unknown: z.number().int(),
    notHealthy: z.array(z.object({ clusterId: z.string(), status: z.enum(healthStatuses), since: z.string().nullable(), failing: z.array(z.object({ check: z.string(), reason: z.string() })), firing: z.array(z.string()) })),
    lastSweep: SweepSchema.nullable(),
    schedule: z.object({ id: z.string(), intervalSeconds: z.number().int(), nextRuns: z.array(z.string()), paused: z.boolean() }).nullable(),
  })
  .openapi('FleetHealth');

const HistoryEntrySchema = z
  .object({ id: z.string(), at: z.string(), kind: z.string(), name: z.string(), value: z.string(), detail: z.record(z.string(), z.unknown()) })
  .openapi('HealthHistoryEntry');

const PolicyViewSchema = z
  .object({
    policy: HealthPolicySchema.openapi({ description: 'What was set at this level ({} when nothing)' }),
    effective: z.record(z.string(), z.unknown()).openapi({ description: 'What applies: the defaults, then the fleet policy, then the cluster policy' }),
  })
  .openapi('HealthPolicyView');

const HealthClusterParam = z.object({ id: z.string().min(1).max(63).openapi({ param: { name: 'id', in: 'path' }, example: 'prod-eu-1' }) });
const policyBody = { body: { required: true, content: { 'application/json': { schema: HealthPolicySchema } } } };

const fleetHealthRoute = apiRoute({
  method: 'get',
  path: '/v1/health',
  tags: ['health'],
  summary: "The fleet's health: how many clusters are healthy, which are not and why, the last sweep",
  responses: { 200: { description: 'Fleet summary', content: { 'application/json': { schema: FleetHealthSchema } } } },
});

const triggerSweepRoute = apiRoute({
  method: 'post',
  path: '/v1/health/sweeps',
  tags: ['health'],
  summary: 'Run a sweep now (skipped while one runs)',
  responses: { 202: { description: 'Triggered', content: { 'application/json': { schema: z.object({ schedule: z.string(), triggeredAt: z.string() }) } } }, 503: problem('Temporal did not answer') },
});

const listSweepsRoute = apiRoute({
  method: 'get',
  path: '/v1/health/sweeps',
  tags: ['health'],
  summary: 'The latest sweeps, newest first, with what each found and did',
  request: { query: z.object({ limit: z.coerce.number().int().min(1).max(200).default(20) }) },
  responses: { 200: { description: 'Sweeps', content: { 'application/json': { schema: z.object({ items: z.array(SweepSchema) }) } } } },
});

const getFleetPolicyRoute = apiRoute({
  method: 'get',
  path: '/v1/health/policy',
  tags: ['health'],
  summary: "The fleet's health policy (thresholds, auto-heal, autoscaling, webhooks) and what it makes effective",
  responses: { 200: { description: 'Policy', content: { 'application/json': { schema: PolicyViewSchema } } } },
});

const putFleetPolicyRoute = apiRoute({
  method: 'put',
  path: '/v1/health/policy',
  tags: ['health'],
  summary: "Sets the fleet's health policy (replaces it; clusters' own policies still override it field by field)",
  request: policyBody,
  responses: { 200: { description: 'Set', content: { 'application/json': { schema: PolicyViewSchema } } } },
});

const clusterHealthRoute = apiRoute({
  method: 'get',
  path: '/v1/clusters/{id}/health',
  tags: ['health'],
  summary: "A cluster's health: each check with its value, reason and since when; nodes; thresholds; autoscaling state",
  request: { params: HealthClusterParam },
  responses: { 200: { description: 'Health', content: { 'application/json': { schema: ClusterHealthSchema } } }, 404: problem('No such cluster') },
});

const clusterHistoryRoute = apiRoute({
  method: 'get',
  path: '/v1/clusters/{id}/health/history',
  tags: ['health'],
  summary: "A cluster's health history, newest first: changes of checks, status, nodes and thresholds, and auto-heal and autoscaling decisions with their inputs",
  request: {
    params: HealthClusterParam,
    query: z.object({
      kind: z.enum(['status', 'check', 'node', 'threshold', 'remediation', 'autoscale']).optional(),
      since: z.string().datetime({ offset: true }).optional(),
      limit: z.coerce.number().int().min(1).max(1000).default(100),
    }),
  },
  responses: { 200: { description: 'History', content: { 'application/json': { schema: z.object({ items: z.array(HistoryEntrySchema) }) } } }, 404: problem('No such cluster') },
});

const getClusterPolicyRoute = apiRoute({
  method: 'get',
  path: '/v1/clusters/{id}/health/policy',
  tags: ['health'],
  summary: "A cluster's own health policy and the effective one",
  request: { params: HealthClusterParam },
  responses: { 200: { description: 'Policy', content: { 'application/json': { schema: PolicyViewSchema } } }, 404: problem('No such cluster') },
});

const putClusterPolicyRoute = apiRoute({
  method: 'put',
  path: '/v1/clusters/{id}/health/policy',
  tags: ['health'],
  summary: "Sets a cluster's own health policy (overrides the fleet's field by field; autoscaled pools must exist)",
  request: { params: HealthClusterParam, ...policyBody },
  responses: { 200: { description: 'Set', content: { 'application/json': { schema: PolicyViewSchema } } }, 404: problem('No such cluster') },
});

const deleteClusterPolicyRoute = apiRoute({
  method: 'delete',
  path: '/v1/clusters/{id}/health/policy',
  tags: ['health'],
  summary: "Removes a cluster's own health policy (the fleet's applies)",
  request: { params: HealthClusterParam },
  responses: { 204: { description: 'Removed' }, 404: problem('No such cluster, or it has no policy of its own') },
});

/** The Temporal Schedule of the fleet health sweep. */
export const healthSweepScheduleId = 'health/sweep';

/** Creates the fleet health sweep Schedule, or brings its interval and concurrency up to date. Overlapping runs are skipped. */
export async function ensureHealthSweepSchedule(temporal: Client, config: Config): Promise<void> {
  const spec = { intervals: [{ every: `${config.KUMO_HEALTH_SWEEP_INTERVAL_S}s` as const }] };
  const action = {
    type: 'startWorkflow' as const,
    workflowType: 'sweepFleet',
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    workflowId: 'health/sweep/run',
    args: [{ concurrency: config.KUMO_HEALTH_CONCURRENCY }],
  };
  const policies = { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1m' as const };
  try {
    await temporal.schedule.create({ scheduleId: healthSweepScheduleId, spec, action, policies, state: { note: 'Kumo fleet health sweep' } });
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
    await temporal.schedule.getHandle(healthSweepScheduleId).update((previous) => ({ ...previous, spec, action, policies }));
  }
}

/** Routes of fleet health, beside the API's own /healthz and /readyz. */
export function fleetHealthRoutes(deps: ApiDeps) {
  const app = new OpenAPIHono();

  app.openapi(fleetHealthRoute, async (c) => {
    const clusters = await deps.store.listClusters();
    const healths = new Map((await deps.store.health.listHealth()).map((health) => [health.clusterId, health]));
    const counts = { healthy: 0, degraded: 0, unhealthy: 0, unknown: 0 };
    const notHealthy: z.infer<typeof FleetHealthSchema>['notHealthy'] = [];
    for (const cluster of clusters) {
      const health = healths.get(cluster.id);
      const status = health?.status ?? 'unknown';
      counts[status]++;
      if (status === 'healthy') continue;
      notHealthy.push({
        clusterId: cluster.id,
        status,
        since: health?.since ?? null,
        failing: health ? Object.entries(health.checks).filter(([, check]) => check.value === 0 && !check.soft).map(([check, state]) => ({ check, reason: state.reason })) : [],
        firing: health?.thresholds.filter((state) => state.firingSince).map((state) => state.key) ?? [],
      });
    }
    const [lastSweep] = await deps.store.health.listSweeps(1);
    let schedule: z.infer<typeof FleetHealthSchema>['schedule'] = null;
    try {
      const description = await deps.temporal.withDeadline(Date.now() + 2000, () => deps.temporal.schedule.getHandle(healthSweepScheduleId).describe());
      schedule = { id: healthSweepScheduleId, intervalSeconds: deps.config.KUMO_HEALTH_SWEEP_INTERVAL_S, nextRuns: description.info.nextActionTimes.slice(0, 3).map((time) => time.toISOString()), paused: description.state.paused };
    } catch {
      // Shown without its schedule while Temporal does not answer (or before the API created it).
    }
    return c.json({ clusters: clusters.length, ...counts, notHealthy, lastSweep: lastSweep ?? null, schedule }, 200);
  });

  app.openapi(triggerSweepRoute, async (c) => {
    try {
      await deps.temporal.withDeadline(Date.now() + 5000, async () => {
        try {
          await deps.temporal.schedule.getHandle(healthSweepScheduleId).trigger();
        } catch (err) {
          if (!(err instanceof ScheduleNotFoundError)) throw err;
          await ensureHealthSweepSchedule(deps.temporal, deps.config);
          await deps.temporal.schedule.getHandle(healthSweepScheduleId).trigger();
        }
      });
    } catch (err) {
      throw new Problem(503, 'temporal-unavailable', `the sweep could not be triggered, Temporal did not answer: ${err instanceof Error ? err.message : String(err)}`);
    }
    return c.json({ schedule: healthSweepScheduleId, triggeredAt: new Date().toISOString() }, 202);
  });

  app.openapi(listSweepsRoute, async (c) => {
    const { limit } = c.req.valid('query');
    return c.json({ items: await deps.store.health.listSweeps(limit) }, 200);
  });

  app.openapi(getFleetPolicyRoute, async (c) => {
    const policy = await deps.store.health.getPolicy(fleetScope);
    return c.json({ policy: policy ?? {}, effective: { ...effectivePolicy(policy, null) } }, 200);
  });

  app.openapi(putFleetPolicyRoute, async (c) => {
    const policy = c.req.valid('json');
    await deps.store.health.putPolicy(fleetScope, policy, new Date().toISOString());
    return c.json({ policy, effective: { ...effectivePolicy(policy, null) } }, 200);
  });

  app.openapi(clusterHealthRoute, async (c) => {
    const { id } = c.req.valid('param');
    await mustGetCluster(deps, id);
    const stored = await deps.store.health.getHealth(id);
    const links = { self: `/v1/clusters/${id}/health`, history: `/v1/clusters/${id}/health/history`, policy: `/v1/clusters/${id}/health/policy` };
    if (!stored) {
      return c.json({ clusterId: id, status: 'unknown' as const, since: null, observedAt: null, checks: {}, nodes: [], thresholds: [], thresholdErrors: {}, autoscale: {}, remediation: { blockedSince: null }, links }, 200);
    }
    return c.json({ ...stored.health, links }, 200);
  });

  app.openapi(clusterHistoryRoute, async (c) => {
    const { id } = c.req.valid('param');
    const query = c.req.valid('query');
    await mustGetCluster(deps, id);
    const items = await deps.store.health.listHistory(id, { limit: query.limit, ...(query.kind ? { kind: query.kind } : {}), ...(query.since ? { since: new Date(query.since).toISOString() } : {}) });
    return c.json({ items: items.map(({ clusterId: _cluster, ...entry }) => entry) }, 200);
  });

  app.openapi(getClusterPolicyRoute, async (c) => {
    const { id } = c.req.valid('param');
    await mustGetCluster(deps, id);
    const [fleet, own] = await Promise.all([deps.store.health.getPolicy(fleetScope), deps.store.health.getPolicy(clusterScope(id))]);
    return c.json({ policy: own ?? {}, effective: { ...effectivePolicy(fleet, own) } }, 200);
  });

  app.openapi(putClusterPolicyRoute, async (c) => {
    const { id } = c.req.valid('param');
    const policy = c.req.valid('json');
    const cluster = await mustGetCluster(deps, id);
    const errors = Object.keys(policy.autoscale ?? {}).flatMap((pool) => {
      const found = cluster.nodePools.find((candidate) => candidate.name === pool);
      if (!found) return [{ field: `autoscale.${pool}`, in: 'body', message: `cluster "${id}" has no node pool "${pool}"` }];
      if (!found.roles.includes('worker') || found.roles.includes('etcd') || found.roles.includes('controlplane')) {
        return [{ field: `autoscale.${pool}`, in: 'body', message: `pool "${pool}" is not a worker-only pool; only worker pools are autoscaled` }];
      }
      return [];
    });
    if (errors.length) throw new Problem(400, 'invalid-request', errors.map((error) => error.message).join('; '), { errors });
    await deps.store.health.putPolicy(clusterScope(id), policy, new Date().toISOString());
    const fleet = await deps.store.health.getPolicy(fleetScope);
    return c.json({ policy, effective: { ...effectivePolicy(fleet, policy) } }, 200);
  });

  app.openapi(deleteClusterPolicyRoute, async (c) => {
    const { id } = c.req.valid('param');
    await mustGetCluster(deps, id);
    if (!(await deps.store.health.deletePolicy(clusterScope(id)))) throw new Problem(404, 'not-found', `cluster "${id}" has no health policy of its own`);
    return c.body(null, 204);
  });

  return app;
}
