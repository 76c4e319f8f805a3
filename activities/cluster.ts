import { activityInfo, Context, heartbeat } from '@temporalio/activity';
import type { ClusterSpec, ClusterState, NodePoolRecord, NodeRecord, NodeRole } from '../domain/cluster.js';
import { ProviderError } from '../domain/errors.js';
import type { OperationFailure, OperationStatus, StepRecord } from '../domain/operation.js';
import { isNodeReady, type Rancher, type RancherCluster, type RancherNode, type RancherNodePool } from '../providers/rancher.js';
import type { Store } from '../store/index.js';
import { classified } from './failure.js';

/** Labels and annotations on every Rancher object Kumo creates, so a retry can find its own work. */
export const kumoLabels = {
  cluster: 'kumo.io/cluster',
  managedBy: 'kumo.io/managed-by',
  operation: 'kumo.io/operation',
} as const;

export interface ClusterActivityDeps {
  rancher: Rancher;
  store: Store;
  /** How often long waits poll Rancher. */
  pollIntervalMs: number;
}

export interface CreateRancherClusterInput {
  operationId: string;
  clusterId: string;
  spec: ClusterSpec;
}

export interface RancherClusterRef {
  rancherId: string;
  apiEndpoint: string | null;
}

export interface WaitUntilActiveInput {
  operationId: string;
  clusterId: string;
  rancherId: string;
  expectedNodes: number;
  timeoutSeconds: number;
}

export interface FinishOperationInput {
  operationId: string;
  clusterId: string;
  status: OperationStatus;
  steps: StepRecord[];
  failure: OperationFailure | null;
  /** The cluster's state afterwards, or `removed` when its record goes (a cancelled create). */
  clusterState: ClusterState | 'removed';
}

/**
 * The steps of cluster operations, each idempotent: a retry (or a new worker after
 * a crash) looks up what an earlier attempt made before making anything.
 * @example const activities = createClusterActivities({ rancher, store, pollIntervalMs: 1000 });
 */
export const createClusterActivities = ({ rancher, store, pollIntervalMs }: ClusterActivityDeps) =>
  classified({
    /** Creates the cluster in Rancher, or adopts the one an earlier attempt created. */
    async createRancherCluster({ operationId, clusterId, spec }: CreateRancherClusterInput): Promise<RancherClusterRef> {
      let cluster = await findOwnCluster(rancher, spec.name, clusterId);
      if (!cluster) {
        try {
          cluster = await rancher.createCluster({
            name: spec.name,
            kubernetesVersion: spec.kubernetesVersion,
            ...(spec.description ? { description: spec.description } : {}),
            labels: { ...spec.labels, [kumoLabels.cluster]: clusterId, [kumoLabels.managedBy]: 'kumo' },
            annotations: { [kumoLabels.operation]: operationId },
          });
        } catch (err) {
          // A lost response to an earlier create looks like "name taken": look again.
          if (!(err instanceof ProviderError && err.type === 'AlreadyExists')) throw err;
          cluster = await findOwnCluster(rancher, spec.name, clusterId);
          if (!cluster) throw err;
        }
      }
      const ref = { rancherId: cluster.id, apiEndpoint: cluster.apiEndpoint ?? null };
      await store.updateCluster(clusterId, { rancherId: ref.rancherId, rancherState: cluster.state, apiEndpoint: ref.apiEndpoint });
      return ref;
    },

    /** Creates each node pool the spec names, or brings an existing one to the asked quantity. */
    async createNodePools({ clusterId, rancherId, spec }: { clusterId: string; rancherId: string; spec: ClusterSpec }): Promise<NodePoolRecord[]> {
      const existing = await rancher.listNodePools(rancherId);
      const records: NodePoolRecord[] = [];
      for (const pool of spec.nodePools) {
        let found: RancherNodePool | undefined = existing.find((candidate) => candidate.name === pool.name);
        if (!found) {
          try {
            found = await rancher.createNodePool({
              clusterId: rancherId,
              name: pool.name,
              hostnamePrefix: hostnamePrefix(spec.name, pool.name),
              quantity: pool.quantity,
              etcd: pool.roles.includes('etcd'),
              controlPlane: pool.roles.includes('controlplane'),
              worker: pool.roles.includes('worker'),
              labels: { [kumoLabels.cluster]: clusterId, [kumoLabels.managedBy]: 'kumo' },
            });
          } catch (err) {
            if (!(err instanceof ProviderError && err.type === 'AlreadyExists')) throw err;
            found = (await rancher.listNodePools(rancherId)).find((candidate) => candidate.name === pool.name);
            if (!found) throw err;
          }
        } else if (found.quantity !== pool.quantity) {
          found = await rancher.updateNodePool(found.id, { quantity: pool.quantity });
        }
        records.push({ ...pool, rancherId: found.id });
      }
      await store.updateCluster(clusterId, { nodePools: records });
      return records;
    },

    /**
     * Waits until Rancher reports the cluster active and every expected node ready.
     * Heartbeats each poll; a retry after a crash simply polls again. Transient
     * poll errors are tolerated for a while, since the wait itself is what matters.
     */
    async waitUntilActive({ operationId, clusterId, rancherId, expectedNodes, timeoutSeconds }: WaitUntilActiveInput): Promise<{ nodes: number }> {
      const context = Context.current();
      const started = activityInfo().scheduledTimestampMs ?? Date.now();
      const deadline = started + timeoutSeconds * 1000;
      let lastDetail = '';
      let consecutiveErrors = 0;
      for (;;) {
        try {
          const [cluster, nodes, pools] = await Promise.all([rancher.getCluster(rancherId), rancher.listNodes(rancherId), rancher.listNodePools(rancherId)]);
          consecutiveErrors = 0;
          const inventory = toInventory(nodes, pools);
          const ready = inventory.filter((node) => node.ready).length;
          const detail = `cluster ${cluster.state}; ${ready}/${expectedNodes} nodes ready`;
          heartbeat({ detail });
          if (detail !== lastDetail) {
            lastDetail = detail;
            await store.setOperationDetail(operationId, detail);
            await store.updateCluster(clusterId, { rancherState: cluster.state, nodes: inventory });
          }
          if (cluster.state === 'active' && ready >= expectedNodes) return { nodes: ready };
          if (cluster.state === 'error') {
            throw new ProviderError('InvalidSpec', `Rancher put the cluster in state error: ${cluster.transitioningMessage ?? 'no message'}`);
          }
          if (Date.now() > deadline) {
            const waiting = inventory.filter((node) => !node.ready).map((node) => `${node.hostname} (${node.state})`);
            throw new ProviderError(
              'Timeout',
              `cluster not ready after ${timeoutSeconds} s: ${detail}${waiting.length ? `; not ready: ${waiting.slice(0, 10).join(', ')}` : ''}`,
            );
          }
        } catch (err) {
          if (!(err instanceof ProviderError) || !err.retryable) throw err;
          consecutiveErrors++;
          heartbeat({ detail: lastDetail, error: err.message });
          if (consecutiveErrors >= 10) throw err;
        }
        await context.sleep(pollIntervalMs);
      }
    },

    /** Reads what Rancher now holds and records it as the cluster's inventory. */
    async recordInventory({ clusterId, rancherId }: { clusterId: string; rancherId: string }): Promise<{ nodes: number }> {
      const [cluster, nodes, pools] = await Promise.all([rancher.getCluster(rancherId), rancher.listNodes(rancherId), rancher.listNodePools(rancherId)]);
      const inventory = toInventory(nodes, pools);
      await store.updateCluster(clusterId, { rancherState: cluster.state, apiEndpoint: cluster.apiEndpoint ?? null, nodes: inventory });
      return { nodes: inventory.length };
    },

    /** Removes a cluster from Rancher (compensation for a cancelled create). Absent already is fine. */
    async removeRancherCluster({ clusterId, name }: { clusterId: string; name: string }): Promise<void> {
      // Look Rancher up by name rather than trusting the store: a create whose
      // response was lost still left a cluster there, labelled as ours.
      const cluster = await findOwnCluster(rancher, name, clusterId).catch((err: unknown) => {
        if (err instanceof ProviderError && err.type === 'AlreadyExists') return null;
        throw err;
      });
      if (cluster) await rancher.deleteCluster(cluster.id);
    },

    /** Writes an operation's outcome and the cluster's resulting state to the store. */
    async finishOperation(input: FinishOperationInput): Promise<void> {
      const current = input.steps.find((step) => step.status === 'running' || step.status === 'failed' || step.status === 'cancelled');
      await store.finishOperation(input.operationId, {
        status: input.status,
        steps: input.steps,
        step: current?.name ?? null,
        failure: input.failure,
        finishedAt: input.status === 'running' ? null : new Date().toISOString(),
      });
      if (input.clusterState === 'removed') await store.deleteCluster(input.clusterId, input.operationId);
      else await store.updateCluster(input.clusterId, { state: input.clusterState });
    },
  });

export type ClusterActivities = ReturnType<typeof createClusterActivities>;

async function findOwnCluster(rancher: Rancher, name: string, clusterId: string): Promise<RancherCluster | null> {
  const cluster = await rancher.findClusterByName(name);
  if (!cluster) return null;
  if (cluster.labels?.[kumoLabels.cluster] !== clusterId) {
    throw new ProviderError('AlreadyExists', `Rancher already has a cluster named "${name}" (${cluster.id}) that Kumo did not create`);
  }
  return cluster;
}

/** Node hostnames are `<cluster>-<pool>-<n>`, shortened to stay a valid DNS label. */
function hostnamePrefix(cluster: string, pool: string): string {
  return `${cluster.slice(0, 24)}-${pool.slice(0, 20)}-`.replace(/-+/g, '-');
}

function toInventory(nodes: RancherNode[], pools: RancherNodePool[]): NodeRecord[] {
  const poolNames = new Map(pools.map((pool) => [pool.id, pool.name]));
  return nodes
    .filter((node) => node.state !== 'removing')
    .map((node) => {
      const roles: NodeRole[] = [];
      if (node.etcd) roles.push('etcd');
      if (node.controlPlane) roles.push('controlplane');
      if (node.worker) roles.push('worker');
      return {
        id: node.id,
        hostname: node.hostname ?? node.requestedHostname ?? node.nodeName ?? node.id,
        pool: (node.nodePoolId && poolNames.get(node.nodePoolId)) || '',
        roles,
        state: node.state,
        ready: isNodeReady(node),
      };
    })
    .sort((a, b) => a.hostname.localeCompare(b.hostname));
}
