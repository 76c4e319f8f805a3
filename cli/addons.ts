// kumo addons: the catalog, a cluster's add-ons, enable/disable, fleet rollouts, the reconcile.
import { exitCodes, seg } from './client.js';
import { integer, list, readJsonFile, setPath, str, usage, waitOption, type Command, type Context, type Flags, type Group, type OptionSpec } from './command.js';
import { afterStart, followOperation, type Operation } from './ops.js';
import { durationBetween, fields, json, relativeTime, table, timestamp } from './output.js';

interface CatalogAddon {
  name: string;
  title: string;
  description: string;
  namespace: string;
  release: string;
  versions: Array<{ version: string; appVersion: string }>;
  latest: string;
}

interface ClusterAddon {
  name: string;
  cluster: string;
  version: string;
  values: Record<string, unknown>;
  state: string;
  revision: number | null;
  message: string | null;
  updatedAt: string;
  links: { lastOperation?: string };
}

interface RolloutReport {
  addon: string;
  version: string;
  state: string;
  currentWave: number;
  waves: Array<{ index: number; clusters: string[]; status: string }>;
  clusters: Array<{ clusterId: string; wave: number; status: string; fromVersion: string; fromRevision: number | null; toRevision: number | null; operationId: string | null; message: string | null }>;
  failures: number;
  maxFailures: number;
  message: string | null;
}

interface Rollout {
  id: string;
  operation: Operation;
  report: RolloutReport | null;
  links: { self: string };
}

const valuesOptions: Record<string, OptionSpec> = {
  values: { type: 'string', arg: 'file.json', help: 'chart values as a JSON file ("-" for stdin)' },
  set: { type: 'string', multiple: true, arg: 'a.b=c', help: 'set one value (JSON when it parses: numbers, true, null…; else a string); repeatable, applied over --values' },
};

/** Chart values from --values and --set, or undefined when neither is given. */
function valuesOf(flags: Flags): Record<string, unknown> | undefined {
  const file = str(flags, 'values');
  const sets = list(flags, 'set');
  if (!file && !sets.length) return undefined;
  let values: Record<string, unknown> = {};
  if (file) {
    const parsed = readJsonFile(file, 'the values file');
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw usage(`the values file ${file} must hold a JSON object`);
    values = parsed as Record<string, unknown>;
  }
  for (const assignment of sets) setPath(values, assignment);
  return values;
}

/**
 * Wave sizes from "1,10%,100%": counts and percentages, cumulative.
 * @example parseWaves('1,10%,100%') // [1, '10%', '100%']
 */
export function parseWaves(text: string): Array<number | string> {
  return text.split(',').map((part) => {
    const wave = part.trim();
    if (/^\d+$/.test(wave)) return Number(wave);
    if (/^\d+%$/.test(wave)) return wave;
    throw usage(`--waves takes counts and percentages separated by commas (e.g. 1,10%,100%), got "${part}"`);
  });
}

function printRollout(ctx: Context, rollout: Rollout): void {
  const { painter } = ctx;
  const report = rollout.report;
  const op = rollout.operation;
  const now = Date.now();
  ctx.print(
    fields([
      ['Rollout', rollout.id],
      ['Add-on', report ? `${report.addon} → ${report.version}` : op.target],
      ['State', painter.state(report?.state ?? op.status)],
      ['Operation', `${painter.state(op.status)}${op.failure ? ` at ${op.failure.step} (${op.failure.type}): ${op.failure.message}` : ''}`],
      ['Wave', report ? `${report.currentWave}/${report.waves.length}` : null],
      ['Failures', report ? `${report.failures} (tolerated: ${report.maxFailures})` : null],
      ['Message', report?.message],
      ['Started', timestamp(op.startedAt, now)],
      ['Finished', timestamp(op.finishedAt, now)],
    ]),
  );
  if (!report) return;
  ctx.print('');
  ctx.print(painter.bold('Waves'));
  ctx.print(table(['WAVE', 'STATUS', 'CLUSTERS'], report.waves.map((wave) => [String(wave.index), painter.state(wave.status), wave.clusters.join(',')])));
  ctx.print('');
  ctx.print(painter.bold('Clusters'));
  ctx.print(
    table(
      ['CLUSTER', 'WAVE', 'STATUS', 'FROM', 'REVISION', 'OPERATION', 'MESSAGE'],
      report.clusters.map((cluster) => [
        cluster.clusterId,
        String(cluster.wave),
        painter.state(cluster.status),
        cluster.fromVersion || '-',
        `${cluster.fromRevision ?? '-'} → ${cluster.toRevision ?? '-'}`,
        cluster.operationId ?? '-',
        cluster.message ?? '',
      ]),
    ),
  );
}

/** pause, resume and abort: the same call with another action. */
function control(action: 'pause' | 'resume' | 'abort'): Command {
  return {
    name: action,
    args: ['<addon>', '<id>'],
    summary: action === 'pause' ? 'pause a rollout: the clusters under way finish, no more start' : action === 'resume' ? 'resume a paused rollout' : 'abort a rollout after the clusters under way, leaving every cluster where it is',
    options: action === 'abort' ? { reason: { type: 'string', arg: 'text', help: 'why (kept in the report)' } } : {},
    async run(ctx, [addon, id], flags) {
      const reason = str(flags, 'reason');
      const { body } = await ctx.client.request<Rollout>('POST', `/v1/addons/${seg(addon!)}/rollouts/${seg(id!)}/${action}`, reason === undefined ? {} : { body: { reason } });
      if (ctx.output === 'json') ctx.print(json(body));
      else ctx.print(`rollout ${body.id}: ${action} requested (state: ${ctx.painter.state(body.report?.state ?? body.operation.status)})`);
      return exitCodes.ok;
    },
  };
}

export const addonsGroup: Group = {
  name: 'addons',
  aliases: ['addon'],
  summary: 'add-ons: the catalog, per cluster, fleet rollouts in waves, the reconcile',
  commands: [
    {
      name: 'ls',
      aliases: ['list', 'catalog'],
      summary: 'the add-on catalog: each add-on and its published versions',
      async run(ctx) {
        const body = await ctx.client.get<{ items: CatalogAddon[] }>('/v1/addons');
        if (ctx.output === 'json') {
          ctx.print(json(body));
          return exitCodes.ok;
        }
        ctx.print(
          table(
            ['NAME', 'LATEST', 'VERSIONS', 'NAMESPACE', 'TITLE'],
            body.items.map((addon) => [addon.name, addon.latest, addon.versions.map((v) => v.version).join(','), addon.namespace, addon.title]),
          ),
        );
        return exitCodes.ok;
      },
    },
    {
      name: 'cluster',
      args: ['<cluster>'],
      summary: "a cluster's add-ons: version, state, live Helm revision",
      async run(ctx, [cluster]) {
        const body = await ctx.client.get<{ items: ClusterAddon[] }>(`/v1/clusters/${seg(cluster!)}/addons`);
        if (ctx.output === 'json') {
          ctx.print(json(body));
          return exitCodes.ok;
        }
        if (!body.items.length) {
          ctx.note(`No add-ons on ${cluster}.`);
          return exitCodes.ok;
        }
        const now = Date.now();
        ctx.print(
          table(
            ['NAME', 'VERSION', 'STATE', 'REVISION', 'UPDATED', 'MESSAGE'],
            body.items.map((addon) => [addon.name, addon.version, ctx.painter.state(addon.state), addon.revision === null ? '-' : String(addon.revision), relativeTime(addon.updatedAt, now), addon.message ?? '']),
          ),
        );
        return exitCodes.ok;
      },
    },
    {
      name: 'enable',
      aliases: ['apply'],
      args: ['<cluster>', '<addon>'],
      summary: 'enable, reconfigure or upgrade an add-on on a cluster',
      description: "Values are checked against the chart's schema before anything runs (a 400 lists each field). When the add-on already runs so, nothing starts.",
      options: {
        version: { type: 'string', arg: 'V', help: 'the chart version (default: the current one, else the latest)' },
        ...valuesOptions,
        'health-timeout': { type: 'string', arg: 'S', help: 'roll back when not healthy within S seconds (default 300)' },
        ...waitOption,
      },
      examples: ['kumo addons enable prod-eu-1 logging --version 1.0.0 --set output.type=stdout --wait'],
      async run(ctx, [cluster, addon], flags) {
        const values = valuesOf(flags);
        const body = {
          version: str(flags, 'version'),
          ...(values ? { values } : {}),
          healthTimeoutSeconds: integer(str(flags, 'health-timeout'), '--health-timeout'),
        };
        const answer = await ctx.client.request<{ operation: Operation | null; addon?: ClusterAddon }>('PUT', `/v1/clusters/${seg(cluster!)}/addons/${seg(addon!)}`, { body });
        if (!answer.body.operation && ctx.output === 'table') {
          ctx.print(`${addon} ${answer.body.addon?.version ?? ''} already runs so on ${cluster}; nothing to do`);
          return exitCodes.ok;
        }
        return afterStart(ctx, answer.body, answer.body.operation, flags, `applying ${addon} on ${cluster}`);
      },
    },
    {
      name: 'disable',
      aliases: ['remove'],
      args: ['<cluster>', '<addon>'],
      summary: 'disable an add-on on a cluster (uninstall its release)',
      options: { ...waitOption },
      async run(ctx, [cluster, addon], flags) {
        const { body } = await ctx.client.request<{ operation: Operation }>('DELETE', `/v1/clusters/${seg(cluster!)}/addons/${seg(addon!)}`);
        return afterStart(ctx, body, body.operation, flags, `removing ${addon} from ${cluster}`);
      },
    },
    {
      name: 'rollout',
      args: ['<addon>'],
      summary: 'roll a version out across the fleet in waves, with health gates',
      description: 'Targets are the clusters with the add-on deployed that match --selector and --clusters. Waves are cumulative sizes; more than --max-failures failed clusters roll the failing wave back and stop.',
      options: {
        version: { type: 'string', arg: 'V', help: 'the chart version to roll out (required)' },
        waves: { type: 'string', arg: '1,10%,100%', help: 'cumulative wave sizes (default 1,25%,100%)' },
        'max-failures': { type: 'string', arg: 'N', help: 'cluster failures tolerated (default 0)' },
        'max-parallel': { type: 'string', arg: 'N', help: 'clusters upgraded at once within a wave (default 5)' },
        soak: { type: 'string', arg: 'S', help: 'seconds a wave must stay healthy before the next (default 30)' },
        'health-timeout': { type: 'string', arg: 'S', help: 'seconds each cluster has to become healthy (default 300)' },
        selector: { type: 'string', multiple: true, arg: 'k=v', help: 'only clusters with this label (repeatable)' },
        clusters: { type: 'string', arg: 'a,b', help: 'only these clusters' },
        ...valuesOptions,
        ...waitOption,
      },
      examples: ['kumo addons rollout logging --version 1.1.0 --waves 1,10%,100% --soak 60 --wait'],
      async run(ctx, [addon], flags) {
        const version = str(flags, 'version');
        if (!version) throw usage('missing --version');
        const labels = list(flags, 'selector');
        const clusters = str(flags, 'clusters');
        const labelMap: Record<string, string> = {};
        for (const pair of labels) {
          const at = pair.indexOf('=');
          if (at <= 0) throw usage(`--selector takes k=v, got "${pair}"`);
          labelMap[pair.slice(0, at)] = pair.slice(at + 1);
        }
        const soak = integer(str(flags, 'soak'), '--soak');
        const healthTimeout = integer(str(flags, 'health-timeout'), '--health-timeout');
        const waves = str(flags, 'waves');
        const values = valuesOf(flags);
        const body = {
          version,
          ...(values ? { values } : {}),
          ...(labels.length || clusters ? { selector: { ...(labels.length ? { labels: labelMap } : {}), ...(clusters ? { clusters: clusters.split(',').map((c) => c.trim()).filter(Boolean) } : {}) } } : {}),
          ...(waves ? { waves: parseWaves(waves) } : {}),
          maxFailures: integer(str(flags, 'max-failures'), '--max-failures'),
          maxParallel: integer(str(flags, 'max-parallel'), '--max-parallel'),
          ...(soak !== undefined || healthTimeout !== undefined ? { healthGate: { soakSeconds: soak, timeoutSeconds: healthTimeout } } : {}),
        };
        const { body: rollout } = await ctx.client.request<Rollout>('POST', `/v1/addons/${seg(addon!)}/rollouts`, { body });
        if (!flags.wait) {
          const code = await afterStart(ctx, rollout, rollout.operation, flags, `rollout of ${addon} ${version}`);
          if (ctx.output === 'table') ctx.print(ctx.painter.dim(`its report: kumo addons rollout-get ${addon} ${rollout.id}`));
          return code;
        }
        const code = await followOperation(ctx, rollout.operation.id);
        if (ctx.output === 'table') {
          ctx.print('');
          printRollout(ctx, await ctx.client.get<Rollout>(`/v1/addons/${seg(addon!)}/rollouts/${seg(rollout.id)}`));
        }
        return code;
      },
    },
    {
      name: 'rollouts',
      args: ['<addon>'],
      summary: "an add-on's rollouts, newest first",
      async run(ctx, [addon]) {
        const body = await ctx.client.get<{ items: Rollout[] }>(`/v1/addons/${seg(addon!)}/rollouts`);
        if (ctx.output === 'json') {
          ctx.print(json(body));
          return exitCodes.ok;
        }
        if (!body.items.length) {
          ctx.note(`No rollouts of ${addon}.`);
          return exitCodes.ok;
        }
        const now = Date.now();
        ctx.print(
          table(
            ['ID', 'VERSION', 'STATE', 'WAVE', 'FAILURES', 'CLUSTERS', 'STARTED', 'DURATION'],
            body.items.map((rollout) => [
              rollout.id,
              rollout.report?.version ?? '-',
              ctx.painter.state(rollout.report?.state ?? rollout.operation.status),
              rollout.report ? `${rollout.report.currentWave}/${rollout.report.waves.length}` : '-',
              rollout.report ? String(rollout.report.failures) : '-',
              rollout.report ? String(rollout.report.clusters.length) : '-',
              relativeTime(rollout.operation.startedAt, now),
              durationBetween(rollout.operation.startedAt, rollout.operation.finishedAt, now),
            ]),
          ),
        );
        return exitCodes.ok;
      },
    },
    {
      name: 'rollout-get',
      args: ['<addon>', '<id>'],
      summary: 'a rollout: per wave and per cluster, live while it runs',
      async run(ctx, [addon, id]) {
        const rollout = await ctx.client.get<Rollout>(`/v1/addons/${seg(addon!)}/rollouts/${seg(id!)}`);
        if (ctx.output === 'json') ctx.print(json(rollout));
        else printRollout(ctx, rollout);
        return exitCodes.ok;
      },
    },
    control('pause'),
    control('resume'),
    control('abort'),
    {
      name: 'reconcile',
      summary: 'run the add-on reconcile now: repair what is stopped, missing or changed by hand',
      options: { ...waitOption },
      async run(ctx, _args, flags) {
        const { body } = await ctx.client.request<{ operation: Operation }>('POST', '/v1/addons/reconcile');
        const code = await afterStart(ctx, body, body.operation, flags, 'add-on reconcile');
        if (flags.wait && ctx.output === 'table') {
          const op = await ctx.client.get<Operation>(`/v1/operations/${seg(body.operation.id)}`);
          if (op.result !== undefined && op.result !== null) ctx.print(json(op.result));
        }
        return code;
      },
    },
  ],
};
