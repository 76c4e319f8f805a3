import { createHash } from 'node:crypto';
import { Context } from '@temporalio/activity';
import type { NodeRole } from '../domain/cluster.js';
import type { CloudEvent } from '../domain/event.js';
import {
  effectivePolicy,
  evaluateHealth,
  pendingPodsQuery,
  poolCpuRequestQuery,
  remediationKey,
  thresholdQuery,
  type ClusterHealth,
  type ClusterObservation,
  type EffectivePolicy,
  type HistoryEntry,
  type NodeObservation,
  type PoolObservation,
  type Probe,
  type Sample,
} from '../domain/health.js';
import type { Kube } from '../providers/kube.js';
import { toNodeRef } from './cluster.js';
import { dialTcp, endpointAddress } from '../providers/net.js';
import { prometheusViaKube, type PrometheusService } from '../providers/prometheus.js';
import type { Rancher, RancherCluster } from '../providers/rancher.js';
import { clusterScope, fleetScope } from '../store/health.js';
import type { Store } from '../store/index.js';

/** An operation Kumo starts by itself; it goes through the same path (and refusals) as the API's. */
export type AutoOperation =
  | { kind: 'replaceNode'; clusterId: string; nodeId: string; reason: string; operationId: string }
  | { kind: 'scale'; clusterId: string; pool: string; quantity: number; drainTimeoutSeconds: number; reason: string };

/** Started (its operation id), or refused with why (`busy`: another operation runs on the cluster). */
export type AutoOperationResult = { operationId: string } | { refused: string; busy: boolean };

export interface HealthActivityDeps {
  store: Store;
  rancher: Rancher;
  kubeFor: (rancherId: string) => Promise<Kube>;
  prometheus: PrometheusService;
  /** Bound on each probe (TCP dial, HTTP GET). */
  probeTimeoutMs: number;
  /** How long history and sweeps are kept. */
  retentionDays: number;
  /** Hands a health event to Kumo's event path (recorded, matched against bindings, dispatched). */
  ingest: (event: CloudEvent) => Promise<void>;
  /** Starts a replacement or a scaling under the cluster's mutation id, as the API does. */
  startOperation: (operation: AutoOperation) => Promise<AutoOperationResult>;
  /** Posts an event to a webhook; failures are the caller's to log (best effort). */
  postWebhook?: (url: string, event: CloudEvent) => Promise<void>;
}

/** What one cluster's check concluded, as the sweep reports it. */
export interface ClusterCheckSummary {
  clusterId: string;
  status: ClusterHealth['status'] | 'skipped';
  changed: boolean;
  events: number;
  actions: Array<{ kind: 'replaceNode' | 'scale'; operationId?: string; refused?: string; reason: string }>;
  note?: string;
}

/** Cluster states whose health is checked; only `active` and `failed` clusters are remediated or scaled. */
const checkedStates = new Set(['active', 'failed', 'updating']);

export const createHealthActivities = (deps: HealthActivityDeps) => {
  const { store, rancher, kubeFor, probeTimeoutMs } = deps;

  return {
    /** Records a sweep's start and returns the clusters to check. */
    async beginSweep(input: { sweepId: string; startedAt: string }): Promise<{ clusterIds: string[] }> {
      const clusters = await store.listClusters();
      const clusterIds = clusters.filter((cluster) => cluster.rancherId && checkedStates.has(cluster.state)).map((cluster) => cluster.id);
      await store.health.startSweep(input.sweepId, input.startedAt, clusterIds.length);
      return { clusterIds };
    },

    /**
     * Checks one cluster, records what changed, raises its events, and starts
     * what the policy decides (one replacement or one scaling at most).
     * Probe failures are results, not errors: only Kumo's own store failing
     * fails the activity (and it is retried).
     */
    async checkClusterHealth(input: { clusterId: string }): Promise<ClusterCheckSummary> {
      const cluster = await store.getCluster(input.clusterId);
      if (!cluster?.rancherId || !checkedStates.has(cluster.state)) {
        return { clusterId: input.clusterId, status: 'skipped', changed: false, events: 0, actions: [], note: cluster ? `cluster is ${cluster.state}` : 'cluster is gone' };
      }
      const [fleet, own, prev] = await Promise.all([store.health.getPolicy(fleetScope), store.health.getPolicy(clusterScope(cluster.id)), store.health.getHealth(cluster.id)]);
      const policy = effectivePolicy(fleet, own);
      let running: string | null = null;
      if (cluster.state !== 'active' && cluster.state !== 'failed') running = `the cluster is ${cluster.state}`;
      else if (cluster.lastOperationId) {
        const last = await store.getOperation(cluster.lastOperationId);
        // A record that never got its run (its start was cut short) holds nothing: Temporal's lock is what counts.
        const started = last?.runId !== null || Date.now() - Date.parse(last.startedAt) < 30_000;
        if (last?.status === 'running' && started) running = last.id;
      }
      const obs = await observe(cluster.rancherId, cluster.nodePools, policy, running);
      const evaluation = evaluateHealth(cluster.id, prev?.health ?? null, obs, policy);
      beat('evaluated');

      // Events first: if what follows fails, the retry sees the same changes and raises them again (the same ids).
      for (const event of evaluation.events) {
        await deps.ingest(event);
        beat('events');
      }
      await notify(policy, evaluation.events);
      const summary: ClusterCheckSummary = {
        clusterId: cluster.id,
        status: evaluation.health.status,
        changed: prev?.health.status !== evaluation.health.status,
        events: evaluation.events.length,
        actions: [],
      };
      if (!(await store.health.saveHealth(evaluation.health, prev?.version ?? null, evaluation.history))) {
        return { ...summary, note: 'another check wrote this cluster meanwhile; nothing was done' };
      }

      const { remediation, scale } = evaluation;
      if (remediation.action === 'replace') {
        // The operation's id is derived from the node: a node is replaced at most once, and a check retried
        // after a crash finds the operation its first attempt started instead of starting another.
        const key = remediationKey(cluster.id, remediation.node.id);
        const operationId = `op-${createHash('sha256').update(key).digest('hex').slice(0, 18)}`;
        const claimed = await store.health.claimAction(key, cluster.id, obs.at);
        const earlier = claimed ? null : await store.health.getAction(key);
        // A claim with its operation recorded is done; one without it was cut short (or refused): start, or find, that operation.
        if (!earlier?.operationId) {
          const result = await deps.startOperation({ kind: 'replaceNode', clusterId: cluster.id, nodeId: remediation.node.id, reason: remediation.reason, operationId });
          if ('operationId' in result) {
            await store.health.setActionOperation(key, result.operationId);
            await store.health.addHistory(cluster.id, [{ at: obs.at, kind: 'remediation', name: remediation.node.hostname, value: 'replace', detail: { operation: result.operationId, reason: remediation.reason } }]);
            summary.actions.push({ kind: 'replaceNode', operationId: result.operationId, reason: remediation.reason });
          } else {
            await store.health.releaseAction(key);
            summary.actions.push({ kind: 'replaceNode', refused: result.refused, reason: remediation.reason });
          }
        }
      }
      if (scale) {
        const result = await deps.startOperation({ kind: 'scale', clusterId: cluster.id, pool: scale.pool, quantity: scale.to, drainTimeoutSeconds: scale.drainTimeoutSeconds, reason: scale.reason });
        const entry: HistoryEntry = { at: obs.at, kind: 'autoscale', name: scale.pool, value: `${scale.from}->${scale.to}`, detail: { reason: scale.reason, inputs: scale.inputs } };
        if ('operationId' in result) {
          await store.health.addHistory(cluster.id, [{ ...entry, value: `${entry.value} started`, detail: { ...entry.detail, operation: result.operationId } }]);
          summary.actions.push({ kind: 'scale', operationId: result.operationId, reason: scale.reason });
        } else {
          // Not started: forget the decision so the pressure (or the calm) keeps counting from where it was.
          const current = await store.health.getHealth(cluster.id);
          if (current) {
            const before = prev?.health.autoscale[scale.pool];
            const autoscale = { ...current.health.autoscale, [scale.pool]: before ?? { pressureSince: null, lowSince: null, lastScaleAt: null } };
            await store.health.saveHealth({ ...current.health, autoscale }, current.version, [{ ...entry, value: `${entry.value} refused`, detail: { ...entry.detail, refused: result.refused } }]);
          }
          summary.actions.push({ kind: 'scale', refused: result.refused, reason: scale.reason });
        }
      }
      return summary;
    },

    /** Records how a sweep went and prunes history past the retention. */
    async finishSweep(input: { sweepId: string; finishedAt: string; summary: Record<string, unknown> }): Promise<void> {
      await store.health.finishSweep(input.sweepId, input.finishedAt, input.summary);
      const before = new Date(Date.parse(input.finishedAt) - deps.retentionDays * 86_400_000).toISOString();
      const clusters = await store.listClusters();
      await store.health.prune(before, clusters.map((cluster) => cluster.id));
    },
  };

  /** Everything one sweep looks at for one cluster, each probe bounded and none throwing. */
  async function observe(rancherId: string, pools: Array<{ name: string; rancherId?: string | null; roles: NodeRole[] }>, policy: EffectivePolicy, runningOperation: string | null): Promise<ClusterObservation> {
    const at = new Date().toISOString();
    const failed = (reason: string): Probe => ({ ok: false, reason });
    const rancherCluster = await settle(rancher.getCluster(rancherId));
    beat('rancher');
    const kube = await settle(kubeFor(rancherId));
    beat('kubeconfig');
    if (!kube.ok) {
      const reason = `no client for the cluster's API: ${kube.error}`;
      return { at, livez: failed(reason), readyz: failed(reason), agent: await agentProbe(rancherCluster), components: failed(reason), nodes: null, samples: {}, pools: [], runningOperation };
    }
    const api = kube.value;
    const [livez, readyz, agent, components, nodes] = await Promise.all([
      httpProbe(api, '/livez'),
      httpProbe(api, '/readyz'),
      agentProbe(rancherCluster),
      componentsProbe(api),
      nodesOf(api, rancherId, new Map(pools.map((pool) => [pool.rancherId ?? '', pool.name]))),
    ]);
    beat('probes');
    const samples: ClusterObservation['samples'] = {};
    const poolObservations: PoolObservation[] = [];
    if (livez.ok) {
      const prometheus = prometheusViaKube(api, deps.prometheus);
      const ask = async (expr: string): Promise<Sample[] | { error: string }> => {
        const answer = await settle(prometheus.query(expr), probeTimeoutMs);
        return answer.ok ? answer.value : { error: answer.error };
      };
      await Promise.all(
        policy.thresholds.filter((rule) => rule.enabled).map(async (rule) => {
          samples[rule.name] = await ask(thresholdQuery(rule));
        }),
      );
      beat('thresholds');
      // Only worker-only pools grow and shrink by usage (a fleet policy may name a pool that is more elsewhere).
      const scaled = pools.filter((pool) => policy.autoscale[pool.name] && pool.rancherId && pool.roles.length === 1 && pool.roles[0] === 'worker');
      if (scaled.length) {
        const live = await settle(rancher.listNodePools(rancherId));
        const pending = await ask(pendingPodsQuery);
        const pendingPods = Array.isArray(pending) ? pending.reduce((sum, sample) => sum + sample.value, 0) : null;
        for (const pool of scaled) {
          const rancherPool = live.ok ? live.value.find((candidate) => candidate.id === pool.rancherId) : undefined;
          if (!rancherPool) continue;
          const cpu = await ask(poolCpuRequestQuery(rancherPool.hostnamePrefix));
          beat(`pool ${pool.name}`);
          poolObservations.push({
            name: pool.name,
            rancherId: rancherPool.id,
            quantity: rancherPool.quantity,
            roles: pool.roles,
            pendingPods,
            cpuRequestPercent: Array.isArray(cpu) && cpu[0] ? cpu[0].value : null,
          });
        }
      }
    }
    return { at, livez, readyz, agent, components, nodes, samples, pools: poolObservations, runningOperation };
  }

  async function httpProbe(api: Kube, path: string): Promise<Probe> {
    const answer = await settle(api.get(path), probeTimeoutMs);
    if (!answer.ok) return { ok: false, reason: `${path}: ${answer.error}` };
    if (answer.value.status === 200) return { ok: true, reason: `${path} ok` };
    const failing = answer.value.body
      .split('\n')
      .filter((line) => line.startsWith('[-]'))
      .join('; ');
    const text = failing || answer.value.body.trim().split('\n')[0]?.slice(0, 200) || '';
    return { ok: false, reason: `${path} answered ${answer.value.status}${text ? `: ${text}` : ''}` };
  }

  async function agentProbe(cluster: Settled<RancherCluster>): Promise<Probe> {
    if (!cluster.ok) return { ok: false, reason: `Rancher did not describe the cluster: ${cluster.error}` };
    const address = cluster.value.apiEndpoint ? endpointAddress(cluster.value.apiEndpoint) : null;
    if (!address) return { ok: false, reason: 'Rancher shows no endpoint for the cluster' };
    const dial = await dialTcp(address.host, address.port, probeTimeoutMs);
    const rancherSays = cluster.value.state === 'unavailable' && cluster.value.transitioningMessage ? ` (Rancher: ${cluster.value.transitioningMessage})` : '';
    return { ok: dial.ok, reason: `${dial.reason}${rancherSays}` };
  }

  async function componentsProbe(api: Kube): Promise<Probe> {
    const answer = await settle(api.componentStatuses(), probeTimeoutMs);
    if (!answer.ok) return { ok: false, reason: `componentstatuses: ${answer.error}` };
    const sick = answer.value.filter((component) => !component.healthy);
    if (!sick.length) return { ok: true, reason: `${answer.value.length} components healthy` };
    return { ok: false, reason: sick.map((component) => `${component.name}: ${component.message || 'unhealthy'}`).join('; ') };
  }

  /** Rancher's nodes joined with the cluster's Kubernetes nodes (by hostname); null when either list fails. */
  async function nodesOf(api: Kube, rancherId: string, pools: Map<string, string>): Promise<NodeObservation[] | null> {
    const [rancherNodes, kubeNodes] = await Promise.all([settle(rancher.listNodes(rancherId), probeTimeoutMs), settle(api.listNodes(), probeTimeoutMs)]);
    if (!rancherNodes.ok || !kubeNodes.ok) return null;
    const byName = new Map(kubeNodes.value.map((node) => [node.name, node]));
    return rancherNodes.value
      .filter((node) => node.state !== 'removing')
      .map((node) => {
        const { hostname, roles } = toNodeRef(node);
        const kubeNode = byName.get(hostname) ?? (node.nodeName ? byName.get(node.nodeName) : undefined);
        return {
          id: node.id,
          hostname,
          pool: pools.get(node.nodePoolId ?? '') ?? null,
          roles,
          rancherState: node.state,
          created: node.created ?? null,
          kube: kubeNode ? { conditions: kubeNode.conditions, lastHeartbeat: kubeNode.lastHeartbeat } : null,
        };
      });
  }

  async function notify(policy: EffectivePolicy, events: CloudEvent[]): Promise<void> {
    if (!deps.postWebhook || !policy.webhooks.length || !events.length) return;
    for (const url of policy.webhooks) {
      for (const event of events) {
        try {
          await deps.postWebhook(url, event);
        } catch (err) {
          Context.current().log.warn('health webhook failed', { url: new URL(url).origin, type: event.type, error: err instanceof Error ? err.message : String(err) });
        }
      }
    }
  }
};

export type HealthActivities = ReturnType<typeof createHealthActivities>;

/**
 * Tells Temporal the check is alive between its bounded phases, so a check on
 * a worker that died is retried within the heartbeat timeout rather than at
 * the end of its start-to-close timeout.
 */
function beat(phase: string): void {
  Context.current().heartbeat(phase);
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: string };

/** A probe's outcome, never thrown; with `timeoutMs`, no answer in time is a failure too. */
async function settle<T>(pending: Promise<T>, timeoutMs?: number): Promise<Settled<T>> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const bounded =
      timeoutMs === undefined
        ? pending
        : Promise.race([pending, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)))]);
    return { ok: true, value: await bounded };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message.split('\n')[0]! : String(err) };
  } finally {
    clearTimeout(timer);
  }
}
