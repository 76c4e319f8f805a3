// kumo health: the fleet's health, one cluster's checks and history, sweeps, policies.
import { exitCodes, seg } from './client.js';
import { integer, readJsonFile, str, usage, type Group } from './command.js';
import { fields, json, relativeTime, table, timestamp } from './output.js';

interface Sweep {
  id: string;
  startedAt: string;
  finishedAt: string | null;
  clusters: number;
  summary: { durationMs?: number; actions?: Array<{ clusterId: string; kind: string; operationId?: string; refused?: string }>; failed?: unknown[] } | null;
}

interface FleetHealth {
  clusters: number;
  healthy: number;
  degraded: number;
  unhealthy: number;
  unknown: number;
  notHealthy: Array<{ clusterId: string; status: string; since: string | null; failing: Array<{ check: string; reason: string }>; firing: string[] }>;
  lastSweep: Sweep | null;
  schedule: { id: string; intervalSeconds: number; nextRuns: string[]; paused: boolean } | null;
}

interface ClusterHealth {
  clusterId: string;
  status: string;
  since: string | null;
  observedAt: string | null;
  checks: Record<string, { value: 0 | 1; reason: string; since: string; soft: boolean }>;
  nodes: Array<{ hostname: string; ready: string; unhealthy: { reason: string; since: string } | null }>;
  thresholds: Array<{ key: string; value: number; pendingSince: string; firingSince: string | null }>;
  thresholdErrors: Record<string, string>;
  remediation: { blockedSince: string | null };
}

interface HistoryEntry {
  at: string;
  kind: string;
  name: string;
  value: string;
  detail: Record<string, unknown>;
}

const policyPath = (cluster: string | undefined) => (cluster ? `/v1/clusters/${seg(cluster)}/health/policy` : '/v1/health/policy');

export const healthGroup: Group = {
  name: 'health',
  summary: "the fleet's health: summary, a cluster's checks and history, sweeps, policies",
  commands: [
    {
      name: 'summary',
      aliases: ['fleet'],
      summary: 'how many clusters are healthy, which are not and why, the last sweep',
      async run(ctx) {
        const fleet = await ctx.client.get<FleetHealth>('/v1/health');
        if (ctx.output === 'json') {
          ctx.print(json(fleet));
          return exitCodes.ok;
        }
        const now = Date.now();
        const sweep = fleet.lastSweep;
        ctx.print(
          fields([
            ['Clusters', fleet.clusters],
            ['Healthy', fleet.healthy],
            ['Degraded', fleet.degraded || null],
            ['Unhealthy', fleet.unhealthy || null],
            ['Unknown', fleet.unknown || null],
            ['Last sweep', sweep ? `${timestamp(sweep.startedAt, now)}${sweep.summary?.durationMs !== undefined ? ` (${(sweep.summary.durationMs / 1000).toFixed(1)} s)` : ' (running)'}` : 'none yet'],
            ['Schedule', fleet.schedule ? `${fleet.schedule.id} every ${fleet.schedule.intervalSeconds} s${fleet.schedule.paused ? ' (paused)' : ''}` : null],
          ]),
        );
        if (fleet.notHealthy.length) {
          ctx.print('');
          ctx.print(
            table(
              ['CLUSTER', 'STATUS', 'SINCE', 'WHY'],
              fleet.notHealthy.map((entry) => [
                entry.clusterId,
                ctx.painter.state(entry.status),
                relativeTime(entry.since, now),
                [...entry.failing.map((failing) => `${failing.check}: ${failing.reason}`), ...entry.firing].join('; ').slice(0, 120) || '-',
              ]),
            ),
          );
        }
        return exitCodes.ok;
      },
    },
    {
      name: 'get',
      aliases: ['show', 'cluster'],
      args: ['<cluster>'],
      summary: "a cluster's checks (0/1, why, since when), unhealthy nodes and thresholds",
      async run(ctx, [cluster]) {
        const health = await ctx.client.get<ClusterHealth>(`/v1/clusters/${seg(cluster!)}/health`);
        if (ctx.output === 'json') {
          ctx.print(json(health));
          return exitCodes.ok;
        }
        const now = Date.now();
        ctx.print(fields([['Cluster', health.clusterId], ['Status', ctx.painter.state(health.status)], ['Since', timestamp(health.since, now)], ['Observed', timestamp(health.observedAt, now)], ['Remediation blocked', timestamp(health.remediation.blockedSince, now)]]));
        ctx.print('');
        ctx.print(
          table(
            ['CHECK', 'VALUE', 'SINCE', 'REASON'],
            Object.entries(health.checks).map(([name, check]) => [`${name}${check.soft ? ' (soft)' : ''}`, String(check.value), relativeTime(check.since, now), check.reason]),
          ),
        );
        const sick = health.nodes.filter((node) => node.unhealthy);
        if (sick.length) {
          ctx.print('');
          ctx.print(table(['NODE', 'READY', 'UNHEALTHY SINCE', 'WHY'], sick.map((node) => [node.hostname, node.ready, relativeTime(node.unhealthy!.since, now), node.unhealthy!.reason])));
        }
        if (health.thresholds.length) {
          ctx.print('');
          ctx.print(table(['THRESHOLD', 'VALUE', 'STATE', 'SINCE'], health.thresholds.map((state) => [state.key, String(state.value), state.firingSince ? 'firing' : 'pending', relativeTime(state.firingSince ?? state.pendingSince, now)])));
        }
        for (const [rule, error] of Object.entries(health.thresholdErrors)) ctx.note(ctx.painter.dim(`${rule}: ${error}`));
        return exitCodes.ok;
      },
    },
    {
      name: 'history',
      args: ['<cluster>'],
      summary: "a cluster's health changes and auto-heal and autoscaling decisions, newest first",
      options: {
        kind: { type: 'string', arg: 'K', help: 'only entries of this kind (status, check, node, threshold, remediation, autoscale)' },
        limit: { type: 'string', arg: 'N', help: 'show at most N entries (default 50)' },
      },
      async run(ctx, [cluster], flags) {
        const limit = integer(str(flags, 'limit'), '--limit') ?? 50;
        if (limit < 1) throw usage('--limit must be at least 1');
        const query = new URLSearchParams({ limit: String(limit) });
        const kind = str(flags, 'kind');
        if (kind) query.set('kind', kind);
        const { items } = await ctx.client.get<{ items: HistoryEntry[] }>(`/v1/clusters/${seg(cluster!)}/health/history?${query}`);
        if (ctx.output === 'json') {
          ctx.print(json({ items }));
          return exitCodes.ok;
        }
        const now = Date.now();
        ctx.print(table(['AT', 'KIND', 'NAME', 'VALUE', 'DETAIL'], items.map((entry) => [relativeTime(entry.at, now), entry.kind, entry.name, entry.value, String(entry.detail.reason ?? entry.detail.operation ?? '').slice(0, 100)])));
        return exitCodes.ok;
      },
    },
    {
      name: 'sweep',
      summary: 'run a sweep now (skipped while one runs)',
      async run(ctx) {
        const { body } = await ctx.client.request<{ schedule: string; triggeredAt: string }>('POST', '/v1/health/sweeps');
        if (ctx.output === 'json') ctx.print(json(body));
        else ctx.print(`sweep triggered on schedule ${body.schedule}; see 'kumo health sweeps'`);
        return exitCodes.ok;
      },
    },
    {
      name: 'sweeps',
      summary: 'the latest sweeps: when, how long, what they started',
      async run(ctx) {
        const { items } = await ctx.client.get<{ items: Sweep[] }>('/v1/health/sweeps?limit=20');
        if (ctx.output === 'json') {
          ctx.print(json({ items }));
          return exitCodes.ok;
        }
        const now = Date.now();
        ctx.print(
          table(
            ['STARTED', 'CLUSTERS', 'DURATION', 'ACTIONS', 'FAILED CHECKS'],
            items.map((sweep) => [
              relativeTime(sweep.startedAt, now),
              String(sweep.clusters),
              sweep.summary?.durationMs === undefined ? 'running' : `${(sweep.summary.durationMs / 1000).toFixed(1)} s`,
              (sweep.summary?.actions ?? []).map((action) => `${action.clusterId}:${action.kind}${action.operationId ? ` ${action.operationId}` : ' refused'}`).join(', ') || '-',
              String(sweep.summary?.failed?.length ?? 0),
            ]),
          ),
        );
        return exitCodes.ok;
      },
    },
    {
      name: 'policy',
      args: ['[cluster]'],
      summary: "show the fleet's (or a cluster's) health policy and the effective one",
      async run(ctx, [cluster]) {
        ctx.print(json(await ctx.client.get(policyPath(cluster))));
        return exitCodes.ok;
      },
    },
    {
      name: 'set-policy',
      args: ['[cluster]'],
      summary: "replace the fleet's (or a cluster's) health policy with a JSON file",
      options: { file: { type: 'string', short: 'f', arg: 'file.json', help: 'the policy ("-" for stdin)' } },
      examples: ['kumo health set-policy prod-eu-1 -f policy.json', 'kumo health set-policy -f fleet-policy.json'],
      async run(ctx, [cluster], flags) {
        const file = str(flags, 'file');
        if (!file) throw usage('--file is required');
        const { body } = await ctx.client.request('PUT', policyPath(cluster), { body: readJsonFile(file, 'the policy') });
        ctx.print(json(body));
        return exitCodes.ok;
      },
    },
  ],
};
