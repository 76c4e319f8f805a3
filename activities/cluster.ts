import { createHash } from 'node:crypto';
import { activityInfo, Context, heartbeat } from '@temporalio/activity';
import { kubeletVersionOf, type ClusterSpec, type ClusterState, type NodePoolRecord, type NodeRecord, type NodeRole } from '../domain/cluster.js';
import { ProviderError } from '../domain/errors.js';
import { newClusterOperation, type OperationFailure, type OperationKind, type OperationStatus, type StepRecord } from '../domain/operation.js';
import { isNodeReady, type Rancher, type RancherCluster, type RancherEtcdBackup, type RancherNode, type RancherNodePool } from '../providers/rancher.js';
import type { Kube } from '../providers/kube.js';
import type { SnapshotRecord, Store } from '../store/index.js';
import { classified } from './failure.js';

/** The ConfigMap each Kumo snapshot captures, naming the snapshot (see markSnapshot). */
export const snapshotMarker = { namespace: 'kube-system', name: 'kumo-snapshot-marker' } as const;

/** Labels and annotations on every Rancher object Kumo creates, so a retry can find its own work. */
export const kumoLabels = {
  cluster: 'kumo.io/cluster',
  managedBy: 'kumo.io/managed-by',
  operation: 'kumo.io/operation',
} as const;

export interface ClusterActivityDeps {
  rancher: Rancher;
  store: Store;
  /** A Kubernetes client for a cluster, by its Rancher id (kubeconfig fetched from Rancher, kept in memory). */
  kubeFor: (rancherId: string) => Promise<Kube>;
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
  /** The cluster's state afterwards, `removed` when its record goes (a cancelled create), null to leave it. */
  clusterState: ClusterState | 'removed' | null;
  /** The node pools as they now are (after a scale). */
  nodePools?: NodePoolRecord[];
}

/**
 * The steps of cluster operations, each idempotent: a retry (or a new worker after
 * a crash) looks up what an earlier attempt made before making anything.
 * @example const activities = createClusterActivities({ rancher, store, pollIntervalMs: 1000 });
 */
export const createClusterActivities = ({ rancher, store, kubeFor, pollIntervalMs }: ClusterActivityDeps) =>
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
      const errors = transientPollErrors();
      for (;;) {
        try {
          const [cluster, nodes, pools] = await Promise.all([rancher.getCluster(rancherId), rancher.listNodes(rancherId), rancher.listNodePools(rancherId)]);
          errors.cleared();
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
          errors.failed(err, lastDetail);
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

    /**
     * Applies settings in Rancher (Kumo's own labels kept), then records them.
     * Setting the same values again changes nothing, so a retry is harmless.
     */
    async updateClusterSettings(input: { clusterId: string; rancherId: string; kubernetesVersion?: string; description?: string; labels?: Record<string, string>; maxUnavailable: number }): Promise<void> {
      const labels = input.labels ? { ...input.labels, [kumoLabels.cluster]: input.clusterId, [kumoLabels.managedBy]: 'kumo' } : undefined;
      const current = await rancher.getCluster(input.rancherId);
      const sameVersion = input.kubernetesVersion === undefined || current.rancherKubernetesEngineConfig?.kubernetesVersion === input.kubernetesVersion;
      await rancher.updateCluster(input.rancherId, {
        ...(sameVersion ? {} : { kubernetesVersion: input.kubernetesVersion, maxUnavailableWorker: input.maxUnavailable }),
        ...(input.description !== undefined ? { description: input.description } : {}),
        ...(labels ? { labels } : {}),
      });
      await store.updateCluster(input.clusterId, {
        ...(input.description !== undefined ? { description: input.description } : {}),
        ...(input.labels ? { labels: input.labels } : {}),
      });
    },

    /**
     * Follows Rancher's rolling upgrade node by node through the Kubernetes API
     * until every node runs `kubernetesVersion` and is Ready. A node that stays
     * not Ready past `nodeTimeoutSeconds` stops the wait with a Timeout naming it
     * (Rancher's rollout stalls there too, leaving later nodes untouched).
     * Progress survives a worker crash through the heartbeat details.
     */
    async waitForUpgrade(input: { operationId: string; clusterId: string; rancherId: string; kubernetesVersion: string; nodeTimeoutSeconds: number }): Promise<{ upgraded: string[] }> {
      const context = Context.current();
      const target = kubeletVersionOf(input.kubernetesVersion);
      const previous = activityInfo().heartbeatDetails as { notReadySince?: Record<string, number> } | undefined;
      const notReadySince: Record<string, number> = { ...(previous?.notReadySince ?? {}) };
      let lastDetail = '';
      for (;;) {
        const kube = await kubeFor(input.rancherId);
        const [cluster, nodes] = await Promise.all([rancher.getCluster(input.rancherId), kube.listNodes()]);
        const upgraded = nodes.filter((node) => node.kubeletVersion === target && node.ready === 'True').map((node) => node.name);
        const now = Date.now();
        for (const node of nodes) {
          if (node.ready === 'True') delete notReadySince[node.name];
          else notReadySince[node.name] ??= now;
        }
        const stuck = Object.entries(notReadySince).find(([, since]) => now - since > input.nodeTimeoutSeconds * 1000);
        if (stuck) {
          throw new ProviderError(
            'Timeout',
            `node ${stuck[0]} did not come back Ready within ${input.nodeTimeoutSeconds} s of its upgrade; the upgrade stopped there with ${upgraded.length}/${nodes.length} nodes on ${target}`,
          );
        }
        const upgrading = nodes.filter((node) => node.ready !== 'True').map((node) => node.name);
        const detail = `${upgraded.length}/${nodes.length} nodes on ${target}${upgrading.length ? `; upgrading ${upgrading.join(', ')}` : ''}`;
        heartbeat({ notReadySince, detail });
        if (detail !== lastDetail) {
          lastDetail = detail;
          await store.setOperationDetail(input.operationId, detail);
        }
        if (upgraded.length === nodes.length && nodes.length > 0 && cluster.state === 'active') {
          await store.updateCluster(input.clusterId, { kubernetesVersion: input.kubernetesVersion });
          return { upgraded };
        }
        await context.sleep(pollIntervalMs);
      }
    },

    /** A pool's current quantity in Rancher. */
    async poolQuantity({ rancherId, poolRancherId }: { rancherId: string; poolRancherId: string }): Promise<number> {
      const pools = await rancher.listNodePools(rancherId);
      const pool = pools.find((candidate) => candidate.id === poolRancherId);
      if (!pool) throw new ProviderError('NotFound', `Rancher has no node pool ${poolRancherId}`);
      return pool.quantity;
    },

    /** How many nodes the cluster's pools keep (the sum of their quantities). */
    async nodeCount({ rancherId }: { rancherId: string }): Promise<number> {
      return (await rancher.listNodePools(rancherId)).reduce((sum, pool) => sum + pool.quantity, 0);
    },

    /** Sets a pool's quantity (the same value twice is a no-op). */
    async setPoolQuantity({ poolRancherId, quantity }: { poolRancherId: string; quantity: number }): Promise<void> {
      await rancher.updateNodePool(poolRancherId, { quantity });
    },

    /**
     * The nodes a scale-down removes: the newest of the pool (highest hostname
     * index), the ones Rancher takes away when the quantity drops.
     */
    async selectNodesToRemove({ rancherId, poolRancherId, count }: { rancherId: string; poolRancherId: string; count: number }): Promise<NodeRef[]> {
      const nodes = (await rancher.listNodes(rancherId)).filter((node) => node.nodePoolId === poolRancherId && node.state !== 'removing');
      return nodes
        .map(toNodeRef)
        .sort((a, b) => hostnameIndex(b.hostname) - hostnameIndex(a.hostname))
        .slice(0, count);
    },

    /** Cordons (or uncordons) nodes through the Kubernetes API; nodes Kubernetes does not know are skipped. */
    async setUnschedulable({ rancherId, hostnames, unschedulable }: { rancherId: string; hostnames: string[]; unschedulable: boolean }): Promise<void> {
      const kube = await kubeFor(rancherId);
      for (const hostname of hostnames) {
        if (await kube.getNode(hostname)) await kube.setUnschedulable(hostname, unschedulable);
      }
    },

    /**
     * Evicts every pod of a node (DaemonSet pods stay), as `kubectl drain` does:
     * evictions honour PodDisruptionBudgets, a blocked one is retried until the
     * timeout, which ends in a Timeout failure naming the pods still there.
     */
    async drainNode({ operationId, rancherId, hostname, timeoutSeconds }: { operationId: string; rancherId: string; hostname: string; timeoutSeconds: number }): Promise<{ evicted: number }> {
      const context = Context.current();
      const kube = await kubeFor(rancherId);
      const deadline = Date.now() + timeoutSeconds * 1000;
      let evicted = 0;
      for (;;) {
        const pods = await kube.listEvictablePods(hostname);
        if (pods.length === 0) return { evicted };
        const blocked: string[] = [];
        for (const pod of pods) {
          const outcome = await kube.evictPod(pod.namespace, pod.name);
          if (outcome === 'evicted') evicted++;
          if (outcome === 'blocked') blocked.push(`${pod.namespace}/${pod.name}`);
        }
        const detail = `draining ${hostname}: ${evicted} evicted${blocked.length ? `, ${blocked.length} blocked by a PodDisruptionBudget` : ''}`;
        heartbeat({ detail });
        await store.setOperationDetail(operationId, detail);
        if (Date.now() > deadline) {
          const why = blocked.length
            ? `eviction blocked by a PodDisruptionBudget for ${blocked.slice(0, 10).join(', ')}`
            : `pods still on the node: ${pods.slice(0, 10).map((pod) => `${pod.namespace}/${pod.name}`).join(', ')}`;
          throw new ProviderError('Timeout', `drain of ${hostname} did not finish in ${timeoutSeconds} s: ${why}`);
        }
        await context.sleep(pollIntervalMs);
      }
    },

    /** What Kumo needs to know of a node before replacing it. */
    async describeNode({ rancherId, nodeId }: { rancherId: string; nodeId: string }): Promise<NodeRef & { reachable: boolean }> {
      const node = await rancher.getNode(nodeId);
      if (!node || node.clusterId !== rancherId) throw new ProviderError('NotFound', `Rancher has no node ${nodeId} in this cluster`);
      const kube = await kubeFor(rancherId);
      const kubeNode = await kube.getNode(toNodeRef(node).hostname).catch(() => null);
      // A node whose kubelet answers can be drained; one that does not would hang the drain.
      const reachable = node.state !== 'unavailable' && kubeNode?.ready === 'True';
      return { ...toNodeRef(node), reachable };
    },

    /** Deletes a node in Rancher, once: a retry finds it gone or already being removed. */
    async deleteNode({ nodeId }: { nodeId: string }): Promise<void> {
      const node = await rancher.getNode(nodeId);
      if (!node || node.state === 'removing') return;
      await rancher.deleteNode(nodeId);
    },

    /**
     * Waits until a pool has `quantity` ready nodes, none of them one of `goneNodeIds`,
     * and those are gone from Rancher. Heartbeats each poll; transient poll errors
     * are tolerated for a while, as in waitUntilActive.
     */
    async waitForPool(input: { operationId: string; clusterId: string; rancherId: string; poolRancherId: string; quantity: number; goneNodeIds: string[]; timeoutSeconds: number }): Promise<{ nodes: string[] }> {
      const context = Context.current();
      const deadline = Date.now() + input.timeoutSeconds * 1000;
      let lastDetail = '';
      const errors = transientPollErrors();
      for (;;) {
        let nodes: RancherNode[];
        let pools: RancherNodePool[];
        try {
          [nodes, pools] = await Promise.all([rancher.listNodes(input.rancherId), rancher.listNodePools(input.rancherId)]);
          errors.cleared();
        } catch (err) {
          errors.failed(err, lastDetail);
          await context.sleep(pollIntervalMs);
          continue;
        }
        const inPool = nodes.filter((node) => node.nodePoolId === input.poolRancherId);
        const live = inPool.filter((node) => node.state !== 'removing');
        const ready = live.filter((node) => isNodeReady(node) && !input.goneNodeIds.includes(node.id));
        const lingering = inPool.filter((node) => input.goneNodeIds.includes(node.id));
        const detail = `${ready.length}/${input.quantity} nodes ready in the pool${lingering.length ? `; ${lingering.length} being removed` : ''}`;
        heartbeat({ detail });
        if (detail !== lastDetail) {
          lastDetail = detail;
          await store.setOperationDetail(input.operationId, detail);
          await store.updateCluster(input.clusterId, { nodes: toInventory(nodes, pools) });
        }
        if (ready.length === input.quantity && live.length === input.quantity && lingering.length === 0) return { nodes: ready.map((node) => toNodeRef(node).hostname) };
        if (Date.now() > deadline) {
          const waiting = live.filter((node) => !isNodeReady(node)).map((node) => `${toNodeRef(node).hostname} (${node.state})`);
          throw new ProviderError('Timeout', `pool not settled after ${input.timeoutSeconds} s: ${detail}${waiting.length ? `; not ready: ${waiting.join(', ')}` : ''}`);
        }
        await context.sleep(pollIntervalMs);
      }
    },

    /**
     * Waits until the cluster is healthy: Rancher says active, the API server's
     * /livez answers, every node is Ready in Kubernetes.
     */
    async waitUntilHealthy({ operationId, rancherId, timeoutSeconds }: { operationId: string; rancherId: string; timeoutSeconds: number }): Promise<void> {
      const context = Context.current();
      const deadline = Date.now() + timeoutSeconds * 1000;
      for (;;) {
        const problems: string[] = [];
        const cluster = await rancher.getCluster(rancherId);
        if (cluster.state !== 'active') problems.push(`cluster ${cluster.state}`);
        const kube = await kubeFor(rancherId);
        if (!(await kube.livez())) problems.push('API server not live');
        else {
          const notReady = (await kube.listNodes()).filter((node) => node.ready !== 'True').map((node) => node.name);
          if (notReady.length) problems.push(`not ready: ${notReady.join(', ')}`);
        }
        const detail = problems.length ? `waiting for health: ${problems.join('; ')}` : 'healthy';
        heartbeat({ detail });
        if (problems.length === 0) return;
        if (Date.now() > deadline) throw new ProviderError('Timeout', `cluster not healthy after ${timeoutSeconds} s: ${problems.join('; ')}`);
        await store.setOperationDetail(operationId, detail);
        await context.sleep(pollIntervalMs);
      }
    },

    /** Deletes the cluster in Rancher (absent already is fine). */
    async deleteRancherCluster({ rancherId }: { rancherId: string | null }): Promise<void> {
      if (rancherId) await rancher.deleteCluster(rancherId);
    },

    /** Waits until Rancher no longer lists the cluster. */
    async waitUntilGone({ rancherId, timeoutSeconds }: { rancherId: string | null; timeoutSeconds: number }): Promise<void> {
      if (!rancherId) return;
      const context = Context.current();
      const deadline = Date.now() + timeoutSeconds * 1000;
      for (;;) {
        let cluster: RancherCluster | null;
        try {
          cluster = await rancher.getCluster(rancherId);
        } catch (err) {
          if (err instanceof ProviderError && err.type === 'NotFound') return;
          throw err;
        }
        heartbeat({ detail: `cluster ${cluster.state}` });
        if (Date.now() > deadline) throw new ProviderError('Timeout', `cluster still in Rancher after ${timeoutSeconds} s (state ${cluster.state})`);
        await context.sleep(pollIntervalMs);
      }
    },

    /** Forgets a deleted cluster: its record and its snapshots. Its operations stay, for the audit trail. */
    async removeClusterRecord({ clusterId }: { clusterId: string }): Promise<void> {
      await store.removeCluster(clusterId);
    },

    /**
     * Writes the marker a snapshot will capture (ConfigMap kube-system/kumo-snapshot-marker
     * naming it), so a restore can check that this snapshot's state is what came back.
     */
    async markSnapshot({ rancherId, name }: { rancherId: string; name: string }): Promise<void> {
      const kube = await kubeFor(rancherId);
      await kube.putConfigMap(snapshotMarker.namespace, snapshotMarker.name, { snapshot: name });
    },

    /**
     * Checks after a restore that the cluster holds the state the snapshot captured:
     * the marker written just before it was taken must name it. Snapshots Kumo
     * did not take have no marker to check, and say so.
     */
    async verifyRestored({ rancherId, snapshotName }: { rancherId: string; snapshotName: string }): Promise<{ verified: boolean; detail: string }> {
      if (!snapshotName.startsWith('kumo-')) return { verified: false, detail: 'snapshot not taken by Kumo: no marker to check' };
      const kube = await kubeFor(rancherId);
      const marker = await kube.getConfigMap(snapshotMarker.namespace, snapshotMarker.name);
      if (marker?.snapshot !== snapshotName) {
        throw new ProviderError(
          'VerificationFailed',
          `the cluster does not hold the state of snapshot ${snapshotName}: its marker names ${marker?.snapshot ?? 'nothing'}`,
        );
      }
      return { verified: true, detail: `marker of ${snapshotName} is back` };
    },

    /** Takes an etcd snapshot named after the operation, or finds the one an earlier attempt took. */
    async takeSnapshot({ clusterId, rancherId, name }: { clusterId: string; rancherId: string; name: string }): Promise<{ id: string; name: string }> {
      const existing = (await rancher.listEtcdBackups(rancherId)).find((backup) => backup.name === name);
      if (existing) return { id: existing.id, name };
      try {
        const backup = await rancher.createEtcdBackup(rancherId, name, { [kumoLabels.cluster]: clusterId, [kumoLabels.managedBy]: 'kumo' });
        return { id: backup.id, name };
      } catch (err) {
        if (!(err instanceof ProviderError && err.type === 'AlreadyExists')) throw err;
        const again = (await rancher.listEtcdBackups(rancherId)).find((backup) => backup.name === name);
        if (!again) throw err;
        return { id: again.id, name };
      }
    },

    /** Waits until a snapshot is complete. */
    async waitForSnapshot({ backupId, timeoutSeconds }: { backupId: string; timeoutSeconds: number }): Promise<void> {
      const context = Context.current();
      const deadline = Date.now() + timeoutSeconds * 1000;
      for (;;) {
        const backup = await rancher.getEtcdBackup(backupId);
        if (!backup) throw new ProviderError('NotFound', `snapshot ${backupId} disappeared from Rancher`);
        heartbeat({ detail: `snapshot ${backup.state}` });
        if (backup.state === 'active') return;
        if (backup.state === 'error' || backup.state === 'failed') throw new ProviderError('Internal', `Rancher reports snapshot ${backup.name} as ${backup.state}`);
        if (Date.now() > deadline) throw new ProviderError('Timeout', `snapshot ${backup.name} not complete after ${timeoutSeconds} s (state ${backup.state})`);
        await context.sleep(pollIntervalMs);
      }
    },

    /**
     * Deletes the oldest of the snapshots Kumo took beyond `retention`, then
     * records what Rancher lists. Snapshots someone else took are left alone.
     */
    async pruneSnapshots({ clusterId, rancherId, retention }: { clusterId: string; rancherId: string; retention: number | null }): Promise<{ deleted: string[] }> {
      const backups = await rancher.listEtcdBackups(rancherId);
      const ours = backups
        .filter((backup) => backup.labels?.[kumoLabels.cluster] === clusterId && backup.state === 'active')
        .sort((a, b) => (b.created ?? '').localeCompare(a.created ?? '') || b.name.localeCompare(a.name));
      const doomed = retention === null ? [] : ours.slice(retention);
      for (const backup of doomed) await rancher.deleteEtcdBackup(backup.id);
      const kept = backups.filter((backup) => !doomed.includes(backup));
      await store.replaceSnapshots(clusterId, kept.map((backup) => toSnapshotRecord(clusterId, backup)));
      return { deleted: doomed.map((backup) => backup.name) };
    },

    /**
     * Checks a snapshot before a restore: Rancher has it, it belongs to this
     * cluster and it is complete. (Rancher loops forever on a missing one.)
     */
    async verifySnapshot({ rancherId, snapshotId }: { rancherId: string; snapshotId: string }): Promise<{ name: string }> {
      const backup = await rancher.getEtcdBackup(snapshotId);
      if (!backup) throw new ProviderError('NotFound', `Rancher has no snapshot ${snapshotId}`);
      if (backup.clusterId !== rancherId) throw new ProviderError('InvalidSpec', `snapshot ${snapshotId} belongs to another cluster`);
      if (backup.state !== 'active') throw new ProviderError('InvalidSpec', `snapshot ${backup.name} is ${backup.state}, not complete`);
      return { name: backup.name };
    },

    /** Starts Rancher's restore, unless a restore of this snapshot is already under way (a retried call). */
    async startRestore({ rancherId, snapshotId, snapshotName }: { rancherId: string; snapshotId: string; snapshotName: string }): Promise<void> {
      const cluster = await rancher.getCluster(rancherId);
      if (cluster.state === 'updating' && (cluster.transitioningMessage ?? '').includes(snapshotName)) return;
      await rancher.restoreFromEtcdBackup(rancherId, snapshotId);
    },

    /**
     * Records an operation for a run a Temporal Schedule started (no API call
     * recorded it). Idempotent: the operation id derives from the workflow id.
     */
    async beginScheduledOperation(input: { clusterId: string; kind: OperationKind; workflowId: string; runId: string; steps: string[] }): Promise<{ operationId: string; rancherId: string } | { skipped: string }> {
      const cluster = await store.getCluster(input.clusterId);
      if (!cluster || !cluster.rancherId) return { skipped: `cluster ${input.clusterId} does not exist` };
      if (cluster.state !== 'active') return { skipped: `cluster ${input.clusterId} is ${cluster.state}` };
      const operationId = `op-sched-${createHash('sha256').update(input.workflowId).digest('hex').slice(0, 16)}`;
      if (!(await store.getOperation(operationId))) {
        const operation = newClusterOperation({
          id: operationId,
          kind: input.kind,
          clusterId: input.clusterId,
          steps: input.steps,
          startedAt: new Date().toISOString(),
          workflowId: input.workflowId,
          runId: input.runId,
        });
        await store.startOperation(operation, input.clusterId);
      }
      return { operationId, rancherId: cluster.rancherId };
    },

    /** Writes an operation's outcome and the cluster's resulting state to the store. */
    async finishOperation(input: FinishOperationInput): Promise<void> {
      await store.closeOperation(input.operationId, input);
      if (input.clusterState === 'removed') await store.deleteCluster(input.clusterId, input.operationId);
      else if (input.clusterState !== null || input.nodePools) {
        await store.updateCluster(input.clusterId, {
          ...(input.clusterState !== null ? { state: input.clusterState } : {}),
          ...(input.nodePools ? { nodePools: input.nodePools } : {}),
        });
      }
    },
  });

export type ClusterActivities = ReturnType<typeof createClusterActivities>;

/** A node by its Rancher id and hostname. */
export interface NodeRef {
  id: string;
  hostname: string;
  poolRancherId: string | null;
  roles: NodeRole[];
}

/** A Rancher node's id, hostname (or the best name it has), pool and Kubernetes roles. */
export function toNodeRef(node: RancherNode): NodeRef {
  const roles: NodeRole[] = [];
  if (node.etcd) roles.push('etcd');
  if (node.controlPlane) roles.push('controlplane');
  if (node.worker) roles.push('worker');
  return { id: node.id, hostname: node.hostname ?? node.requestedHostname ?? node.nodeName ?? node.id, poolRancherId: node.nodePoolId ?? null, roles };
}

/** The number at the end of a hostname (`prod-w-12` → 12), for picking the newest nodes. */
function hostnameIndex(hostname: string): number {
  const match = /(\d+)$/.exec(hostname);
  return match ? Number(match[1]) : 0;
}

function toSnapshotRecord(clusterId: string, backup: RancherEtcdBackup): SnapshotRecord {
  return {
    id: backup.id,
    clusterId,
    name: backup.name,
    state: backup.state,
    manual: backup.manual !== false,
    operationId: null,
    createdAt: backup.created ?? new Date(0).toISOString(),
  };
}

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
      const { hostname, roles } = toNodeRef(node);
      return {
        id: node.id,
        hostname,
        pool: (node.nodePoolId && poolNames.get(node.nodePoolId)) || '',
        roles,
        state: node.state,
        ready: isNodeReady(node),
      };
    })
    .sort((a, b) => a.hostname.localeCompare(b.hostname));
}

/**
 * Transient errors of a long wait's polls: each is heartbeated and the wait goes
 * on; a non-transient one, or the tenth in a row, ends the attempt (the
 * activity's retry policy takes over from there).
 */
function transientPollErrors(limit = 10) {
  let consecutive = 0;
  return {
    cleared(): void {
      consecutive = 0;
    },
    failed(err: unknown, lastDetail: string): void {
      if (!(err instanceof ProviderError) || !err.retryable) throw err;
      consecutive++;
      heartbeat({ detail: lastDetail, error: err.message });
      if (consecutive >= limit) throw err;
    },
  };
}
