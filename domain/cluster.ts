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

export const clusterStates = ['provisioning', 'active', 'failed', 'deleting'] as const;
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
