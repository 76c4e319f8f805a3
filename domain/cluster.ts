import { z } from 'zod';

/**
 * A DNS-1123 label, the rule Rancher and Kubernetes apply to cluster names:
 * lower-case letters, digits and '-', starting and ending with a letter or digit.
 */
const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export const nodeRoles = ['etcd', 'controlplane', 'worker'] as const;
export type NodeRole = (typeof nodeRoles)[number];

/** Kubernetes versions as Rancher names them: RKE1 (`-rancherN-N`), RKE2, K3s. */
const kubernetesVersion = /^v\d+\.\d+\.\d+(-rancher\d+-\d+|\+rke2r\d+|\+k3s\d+)?$/;

export const NodePoolSpecSchema = z
  .object({
    name: z
      .string()
      .min(1)
      .max(40)
      .regex(dnsLabel, 'must be lower-case letters, digits and "-", starting and ending with a letter or digit'),
    roles: z
      .array(z.enum(nodeRoles))
      .min(1, 'a node pool needs at least one role')
      .refine((roles) => new Set(roles).size === roles.length, 'roles must not repeat'),
    quantity: z.number().int('must be a whole number').min(1, 'must be at least 1').max(500),
  })
  .strict();
export type NodePoolSpec = z.infer<typeof NodePoolSpecSchema>;

/** What a user asks for when creating a cluster (`POST /v1/clusters`). */
export const ClusterSpecSchema = z
  .object({
    name: z
      .string()
      .min(1)
      .max(63)
      .regex(dnsLabel, 'must be lower-case letters, digits and "-", starting and ending with a letter or digit'),
    kubernetesVersion: z
      .string()
      .regex(kubernetesVersion, 'must look like v1.30.6-rancher1-1, v1.30.6+rke2r1 or v1.30.6+k3s1'),
    description: z.string().max(500).optional(),
    labels: z
      .record(z.string().max(63), z.string().max(63))
      .optional(),
    nodePools: z.array(NodePoolSpecSchema).min(1).max(20),
  })
  .strict()
  .superRefine((spec, ctx) => {
    const seen = new Set<string>();
    spec.nodePools.forEach((pool, i) => {
      if (seen.has(pool.name)) {
        ctx.addIssue({ code: 'custom', path: ['nodePools', i, 'name'], message: `duplicate node pool name "${pool.name}"` });
      }
      seen.add(pool.name);
    });
    for (const role of nodeRoles) {
      if (!spec.nodePools.some((pool) => pool.roles.includes(role))) {
        ctx.addIssue({ code: 'custom', path: ['nodePools'], message: `no node pool has the "${role}" role; a cluster needs etcd, controlplane and worker nodes` });
      }
    }
    const total = spec.nodePools.reduce((sum, pool) => sum + pool.quantity, 0);
    if (total > 1000) {
      ctx.addIssue({ code: 'custom', path: ['nodePools'], message: `a cluster may have at most 1000 nodes (asked for ${total})` });
    }
  });
export type ClusterSpec = z.infer<typeof ClusterSpecSchema>;

export const clusterStates = ['provisioning', 'active', 'updating', 'failed', 'deleting'] as const;
export type ClusterState = (typeof clusterStates)[number];

/** A node as Rancher last reported it. */
export interface NodeRecord {
  id: string;
  hostname: string;
  pool: string;
  roles: NodeRole[];
  state: string;
  ready: boolean;
}

/** A node pool with Rancher's id once it exists. */
export interface NodePoolRecord extends NodePoolSpec {
  rancherId?: string;
}

/** A cluster as Kumo knows it: the desired spec, Rancher's ids and the last inventory. */
export interface ClusterRecord {
  id: string;
  name: string;
  kubernetesVersion: string;
  description?: string;
  labels: Record<string, string>;
  state: ClusterState;
  rancherId: string | null;
  rancherState: string | null;
  apiEndpoint: string | null;
  nodePools: NodePoolRecord[];
  nodes: NodeRecord[];
  lastOperationId: string | null;
  createdAt: string;
  updatedAt: string;
}

/** Total nodes a spec asks for. */
export function expectedNodeCount(spec: Pick<ClusterSpec, 'nodePools'>): number {
  return spec.nodePools.reduce((sum, pool) => sum + pool.quantity, 0);
}

/** `POST /v1/clusters/{id}/nodepools/{pool}/scale`. */
export const ScaleRequestSchema = z
  .object({
    quantity: z.number().int('must be a whole number').min(0, 'must not be negative').max(500),
    /** How long draining one node may take before the scale-down stops. */
    drainTimeoutSeconds: z.number().int().min(1).max(3600).default(300),
  })
  .strict();
export type ScaleRequest = z.infer<typeof ScaleRequestSchema>;

/** `POST /v1/clusters/{id}/nodes/{node}/replace`. */
export const ReplaceNodeRequestSchema = z
  .object({
    /** Skip draining; the default is to drain a node that still answers and skip one that does not. */
    skipDrain: z.boolean().optional(),
    drainTimeoutSeconds: z.number().int().min(1).max(3600).default(300),
  })
  .strict();
export type ReplaceNodeRequest = z.infer<typeof ReplaceNodeRequestSchema>;

/** `POST /v1/clusters/{id}/restore`. */
export const RestoreRequestSchema = z.object({ snapshot: z.string().min(1).max(200) }).strict();

/** `POST /v1/clusters/{id}/snapshots`. */
export const SnapshotRequestSchema = z.object({ retention: z.number().int().min(1).max(100).optional() }).strict();

/** `PUT /v1/clusters/{id}/snapshot-schedule`. */
export const SnapshotScheduleSchema = z
  .object({
    cron: z.string().refine(isValidCron, 'must be a 5-field cron expression such as "0 */6 * * *" (minute hour day-of-month month day-of-week)'),
    retention: z.number().int().min(1).max(100),
    paused: z.boolean().default(false),
  })
  .strict();
export type SnapshotSchedule = z.infer<typeof SnapshotScheduleSchema>;

const cronFields: Array<[min: number, max: number]> = [
  [0, 59],
  [0, 23],
  [1, 31],
  [1, 12],
  [0, 7],
];

/**
 * Whether a standard 5-field cron expression is well formed: each field `*`,
 * a number, a range `a-b`, a list `a,b`, each with an optional step `/n`,
 * within the field's bounds. (Temporal would refuse a bad one only when the
 * schedule is created; checking here gives a 400 that names the field.)
 */
export function isValidCron(expression: string): boolean {
  const fields = expression.trim().split(/\s+/);
  if (fields.length !== 5) return false;
  return fields.every((field, i) => {
    const [min, max] = cronFields[i] ?? [0, 0];
    return field.split(',').every((part) => {
      const match = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(part);
      if (!match) return false;
      const [, , from, to, step] = match;
      if (step !== undefined && Number(step) < 1) return false;
      if (from === undefined) return true;
      const a = Number(from);
      const b = to === undefined ? a : Number(to);
      return a >= min && b <= max && a <= b;
    });
  });
}

/** The smallest etcd membership that still has quorum with `members` members. */
export function etcdQuorum(members: number): number {
  return Math.floor(members / 2) + 1;
}

/**
 * Why scaling a pool to `quantity` is refused, or null when it is safe: the
 * cluster keeps at least one control-plane node, one etcd node, and never drops
 * below the etcd quorum of its current membership in one step.
 */
export function scaleRefusal(cluster: { nodePools: Array<{ name: string; roles: NodeRole[]; quantity: number }> }, poolName: string, quantity: number): string | null {
  const pool = cluster.nodePools.find((candidate) => candidate.name === poolName);
  if (!pool) return `no node pool named "${poolName}"`;
  const count = (role: NodeRole, pools: Array<{ roles: NodeRole[]; quantity: number }>) =>
    pools.filter((candidate) => candidate.roles.includes(role)).reduce((sum, candidate) => sum + candidate.quantity, 0);
  const after = cluster.nodePools.map((candidate) => (candidate.name === poolName ? { ...candidate, quantity } : candidate));
  if (pool.roles.includes('controlplane') && count('controlplane', after) < 1) return 'the cluster would have no control-plane node';
  if (pool.roles.includes('etcd')) {
    const now = count('etcd', cluster.nodePools);
    const then = count('etcd', after);
    if (then < 1) return 'the cluster would have no etcd node';
    if (then < now && then < etcdQuorum(now)) {
      return `removing ${now - then} of ${now} etcd members at once would lose quorum (${etcdQuorum(now)} needed); scale down in smaller steps`;
    }
  }
  if (pool.roles.includes('worker') && count('worker', after) < 1) return 'the cluster would have no worker node';
  return null;
}

/** `PATCH /v1/clusters/{id}`: settings, and the Kubernetes version (an upgrade). */
export const UpdateClusterSchema = z
  .object({
    kubernetesVersion: ClusterSpecSchema.shape.kubernetesVersion.optional(),
    description: z.string().max(500).optional(),
    labels: z.record(z.string().max(63), z.string().max(63)).optional(),
    /** Worker nodes Rancher may upgrade at once (control-plane nodes go one at a time). */
    maxUnavailable: z.number().int().min(1).max(100).default(1),
    /** How long one node may take to come back Ready after its upgrade. */
    nodeTimeoutSeconds: z.number().int().min(10).max(7200).default(900),
  })
  .strict()
  .refine((update) => update.kubernetesVersion !== undefined || update.description !== undefined || update.labels !== undefined, {
    message: 'give at least one of kubernetesVersion, description, labels',
  });
export type UpdateCluster = z.infer<typeof UpdateClusterSchema>;

/** The version a kubelet reports for a Rancher version name (`v1.30.6-rancher1-1` → `v1.30.6`). */
export function kubeletVersionOf(kubernetesVersion: string): string {
  return kubernetesVersion.replace(/-rancher.*$/, '');
}
