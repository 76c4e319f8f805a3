// kumo clusters: create, list, show, scale, replace a node, upgrade, snapshot, restore, delete.
import { exitCodes, seg } from './client.js';
import { integer, list, pairs, readJsonFile, str, usage, waitOption, type Context, type Flags, type Group } from './command.js';
import { afterStart, type Operation } from './ops.js';
import { fields, json, relativeTime, table, timestamp } from './output.js';

interface Node {
  id: string;
  hostname: string;
  pool: string;
  roles: string[];
  state: string;
  ready: boolean;
}

interface Cluster {
  id: string;
  name: string;
  kubernetesVersion: string;
  description?: string;
  labels: Record<string, string>;
  state: string;
  rancher: { id: string | null; state: string | null; apiEndpoint: string | null };
  nodePools: Array<{ name: string; roles: string[]; quantity: number; rancherId?: string }>;
  nodes: Node[];
  lastOperation: { id: string; href: string } | null;
  createdAt: string;
  updatedAt: string;
}

interface Snapshot {
  id: string;
  cluster: string;
  name: string;
  state: string;
  manual: boolean;
  operationId: string | null;
  createdAt: string;
}

const roleNames = ['etcd', 'controlplane', 'worker'];

/**
 * A node pool from `name:roles:quantity`, roles separated by commas or plus signs.
 * @example parsePool('all:etcd,controlplane,worker:1') // { name: 'all', roles: ['etcd', 'controlplane', 'worker'], quantity: 1 }
 */
export function parsePool(text: string): { name: string; roles: string[]; quantity: number } {
  const parts = text.split(':');
  if (parts.length !== 3 || !parts[0] || !parts[1] || !parts[2]) throw usage(`--pool takes name:roles:quantity (e.g. workers:worker:3), got "${text}"`);
  const roles = parts[1].split(/[,+]/).filter(Boolean);
  const unknown = roles.filter((role) => !roleNames.includes(role));
  if (unknown.length) throw usage(`--pool ${text}: unknown role ${unknown.join(', ')} (roles: ${roleNames.join(', ')})`);
  return { name: parts[0], roles, quantity: integer(parts[2], `--pool ${text}: the quantity`) as number };
}

/** The spec of `clusters create`: a file (-f), flags, or a file with flags overriding it. */
function createSpec(flags: Flags): Record<string, unknown> {
  const file = str(flags, 'file');
  const spec: Record<string, unknown> = {};
  if (file) {
    const parsed = readJsonFile(file, 'the cluster spec');
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw usage(`the cluster spec ${file} must be a JSON object`);
    Object.assign(spec, parsed);
  }
  const name = str(flags, 'name');
  const version = str(flags, 'version');
  const pools = list(flags, 'pool');
  const labels = list(flags, 'label');
  const description = str(flags, 'description');
  if (name) spec.name = name;
  if (version) spec.kubernetesVersion = version;
  if (pools.length) spec.nodePools = pools.map(parsePool);
  if (labels.length) spec.labels = { ...(spec.labels as Record<string, string> | undefined), ...pairs(labels, 'label') };
  if (description) spec.description = description;
  if (!file) {
    const missing = [!name && '--name', !version && '--version', !pools.length && '--pool'].filter(Boolean);
    if (missing.length) throw usage(`missing ${missing.join(', ')} (or give the whole spec with -f spec.json)`);
  }
  return spec;
}

/** Prints the answer of a command that started an operation, then follows it with --wait. */
function started(ctx: Context, body: { operation?: Operation | null }, flags: Flags, what: string): Promise<number> {
  return afterStart(ctx, body, body.operation, flags, what);
}

function nodesSummary(cluster: Cluster): string {
  const wanted = cluster.nodePools.reduce((sum, pool) => sum + pool.quantity, 0);
  const ready = cluster.nodes.filter((node) => node.ready).length;
  return `${ready}/${wanted}`;
}

function printCluster(ctx: Context, cluster: Cluster): void {
  const { painter } = ctx;
  const now = Date.now();
  ctx.print(
    fields([
      ['Name', cluster.name],
      ['State', painter.state(cluster.state)],
      ['Kubernetes', cluster.kubernetesVersion],
      ['Description', cluster.description],
      ['Labels', Object.entries(cluster.labels).map(([key, value]) => `${key}=${value}`).join(', ') || null],
      ['Rancher', cluster.rancher.id ? `${cluster.rancher.id} (${cluster.rancher.state ?? 'unknown'})` : null],
      ['API endpoint', cluster.rancher.apiEndpoint],
      ['Nodes ready', nodesSummary(cluster)],
      ['Last operation', cluster.lastOperation ? `${cluster.lastOperation.id} (kumo ops get ${cluster.lastOperation.id})` : null],
      ['Created', timestamp(cluster.createdAt, now)],
      ['Updated', timestamp(cluster.updatedAt, now)],
    ]),
  );
  ctx.print('');
  ctx.print(painter.bold('Node pools'));
  ctx.print(table(['NAME', 'ROLES', 'QUANTITY'], cluster.nodePools.map((pool) => [pool.name, pool.roles.join(','), String(pool.quantity)])));
  ctx.print('');
  ctx.print(painter.bold('Nodes'));
  if (!cluster.nodes.length) ctx.print(painter.dim('(none reported yet)'));
  else
    ctx.print(
      table(
        ['HOSTNAME', 'POOL', 'ROLES', 'STATE', 'READY', 'ID'],
        cluster.nodes.map((node) => [node.hostname, node.pool, node.roles.join(','), painter.state(node.state), painter.state(node.ready ? 'true' : 'false'), node.id]),
      ),
    );
}

export const clustersGroup: Group = {
  name: 'clusters',
  aliases: ['cluster', 'cl'],
  summary: 'managed Kubernetes clusters: create, scale, upgrade, snapshot, restore, delete',
  commands: [
    {
      name: 'ls',
      aliases: ['list'],
      summary: 'list clusters',
      async run(ctx) {
        const body = await ctx.client.get<{ items: Cluster[] }>('/v1/clusters');
        if (ctx.output === 'json') {
          ctx.print(json(body));
          return exitCodes.ok;
        }
        if (!body.items.length) {
          ctx.note('No clusters.');
          return exitCodes.ok;
        }
        const now = Date.now();
        ctx.print(
          table(
            ['NAME', 'STATE', 'VERSION', 'NODES', 'POOLS', 'LAST OPERATION', 'UPDATED'],
            body.items.map((cluster) => [
              cluster.name,
              ctx.painter.state(cluster.state),
              cluster.kubernetesVersion,
              nodesSummary(cluster),
              cluster.nodePools.map((pool) => `${pool.name}:${pool.quantity}`).join(','),
              cluster.lastOperation?.id ?? '-',
              relativeTime(cluster.updatedAt, now),
            ]),
          ),
        );
        return exitCodes.ok;
      },
    },
    {
      name: 'get',
      aliases: ['show'],
      args: ['<id>'],
      summary: 'show a cluster: state, node pools, nodes',
      async run(ctx, [id]) {
        const cluster = await ctx.client.get<Cluster>(`/v1/clusters/${seg(id!)}`);
        if (ctx.output === 'json') ctx.print(json(cluster));
        else printCluster(ctx, cluster);
        return exitCodes.ok;
      },
    },
    {
      name: 'create',
      summary: 'create a cluster through Rancher',
      description: 'Give the spec as a file (-f, "-" for stdin; the body of POST /v1/clusters) or with --name, --version and one --pool per node pool; flags override the file.',
      options: {
        file: { type: 'string', short: 'f', arg: 'spec.json', help: 'the cluster spec as JSON' },
        name: { type: 'string', arg: 'N', help: 'the cluster name' },
        version: { type: 'string', arg: 'V', help: 'the Kubernetes version, e.g. v1.30.6-rancher1-1' },
        pool: { type: 'string', multiple: true, arg: 'name:roles:qty', help: 'a node pool, roles separated by commas (repeat for more pools)' },
        label: { type: 'string', multiple: true, arg: 'k=v', help: 'a label (repeatable)' },
        description: { type: 'string', arg: 'text', help: 'a description' },
        ...waitOption,
      },
      examples: [
        'kumo clusters create --name demo --version v1.30.6-rancher1-1 --pool control:etcd,controlplane:3 --pool workers:worker:2 --wait',
        'kumo clusters create -f spec.json',
      ],
      async run(ctx, _args, flags) {
        const { body } = await ctx.client.request<{ cluster: Cluster; operation: Operation }>('POST', '/v1/clusters', { body: createSpec(flags) });
        return started(ctx, body, flags, `creating cluster ${body.cluster.name}`);
      },
    },
    {
      name: 'delete',
      aliases: ['rm'],
      args: ['<id>'],
      summary: 'delete a cluster with its node pools',
      options: { ...waitOption },
      async run(ctx, [id], flags) {
        const { body } = await ctx.client.request<{ operation: Operation }>('DELETE', `/v1/clusters/${seg(id!)}`);
        return started(ctx, body, flags, `deleting cluster ${id}`);
      },
    },
    {
      name: 'scale',
      args: ['<id>', '<pool>', '<quantity>'],
      summary: 'scale a node pool up (wait until Ready) or down (cordon, drain, delete the newest)',
      options: { 'drain-timeout': { type: 'string', arg: 'S', help: 'fail if a drain is still blocked after S seconds' }, ...waitOption },
      examples: ['kumo clusters scale prod-eu-1 workers 5 --wait'],
      async run(ctx, [id, pool, quantity], flags) {
        const body = { quantity: integer(quantity, '<quantity>'), drainTimeoutSeconds: integer(str(flags, 'drain-timeout'), '--drain-timeout') };
        const answer = await ctx.client.request<{ operation: Operation }>('POST', `/v1/clusters/${seg(id!)}/nodepools/${seg(pool!)}/scale`, { body });
        return started(ctx, answer.body, flags, `scaling ${id}/${pool} to ${quantity}`);
      },
    },
    {
      name: 'replace-node',
      args: ['<id>', '<node>'],
      summary: 'replace a broken node (by id or hostname): cordon, drain, delete, wait for its replacement',
      options: {
        'skip-drain': { type: 'boolean', help: 'do not cordon and drain (the node does not answer)' },
        'drain-timeout': { type: 'string', arg: 'S', help: 'fail if the drain is still blocked after S seconds' },
        ...waitOption,
      },
      async run(ctx, [id, node], flags) {
        const body = { ...(flags['skip-drain'] ? { skipDrain: true } : {}), drainTimeoutSeconds: integer(str(flags, 'drain-timeout'), '--drain-timeout') };
        const answer = await ctx.client.request<{ operation: Operation }>('POST', `/v1/clusters/${seg(id!)}/nodes/${seg(node!)}/replace`, { body });
        return started(ctx, answer.body, flags, `replacing node ${node} of ${id}`);
      },
    },
    {
      name: 'upgrade',
      args: ['<id>', '<version>'],
      summary: 'upgrade Kubernetes (control plane first, then the workers)',
      options: {
        'max-unavailable': { type: 'string', arg: 'N', help: 'workers upgraded at once' },
        'node-timeout': { type: 'string', arg: 'S', help: 'stop when a node is not Ready S seconds after its upgrade' },
        ...waitOption,
      },
      async run(ctx, [id, version], flags) {
        const body = {
          kubernetesVersion: version,
          maxUnavailable: integer(str(flags, 'max-unavailable'), '--max-unavailable'),
          nodeTimeoutSeconds: integer(str(flags, 'node-timeout'), '--node-timeout'),
        };
        const answer = await ctx.client.request<{ operation: Operation }>('PATCH', `/v1/clusters/${seg(id!)}`, { body });
        return started(ctx, answer.body, flags, `upgrading ${id} to ${version}`);
      },
    },
    {
      name: 'snapshot',
      args: ['<id>'],
      summary: 'take an etcd snapshot now',
      options: { retention: { type: 'string', arg: 'N', help: "then keep only the newest N of Kumo's snapshots" }, ...waitOption },
      async run(ctx, [id], flags) {
        const retention = integer(str(flags, 'retention'), '--retention');
        const answer = await ctx.client.request<{ operation: Operation }>('POST', `/v1/clusters/${seg(id!)}/snapshots`, { body: retention === undefined ? {} : { retention } });
        return started(ctx, answer.body, flags, `snapshot of ${id}`);
      },
    },
    {
      name: 'snapshots',
      args: ['<id>'],
      summary: "list a cluster's etcd snapshots, newest first",
      async run(ctx, [id]) {
        const body = await ctx.client.get<{ items: Snapshot[] }>(`/v1/clusters/${seg(id!)}/snapshots`);
        if (ctx.output === 'json') {
          ctx.print(json(body));
          return exitCodes.ok;
        }
        if (!body.items.length) {
          ctx.note(`No snapshots of ${id}.`);
          return exitCodes.ok;
        }
        const now = Date.now();
        ctx.print(
          table(
            ['NAME', 'STATE', 'MANUAL', 'OPERATION', 'CREATED', 'ID'],
            body.items.map((snapshot) => [snapshot.name, ctx.painter.state(snapshot.state), snapshot.manual ? 'yes' : 'no', snapshot.operationId ?? '-', relativeTime(snapshot.createdAt, now), snapshot.id]),
          ),
        );
        return exitCodes.ok;
      },
    },
    {
      name: 'restore',
      args: ['<id>', '<snapshot>'],
      summary: 'restore the whole cluster from one of its snapshots (by id or name)',
      options: { ...waitOption },
      async run(ctx, [id, snapshot], flags) {
        const answer = await ctx.client.request<{ operation: Operation }>('POST', `/v1/clusters/${seg(id!)}/restore`, { body: { snapshot } });
        return started(ctx, answer.body, flags, `restoring ${id} from ${snapshot}`);
      },
    },
  ],
};
