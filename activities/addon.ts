import { parseAllDocuments } from 'yaml';
import { matchesSelector, type AddonRecord, type AddonState, type CatalogAddon } from '../domain/addon.js';
import { ProviderError } from '../domain/errors.js';
import { newOperation, type OperationFailure, type OperationKind, type OperationStatus, type StepRecord } from '../domain/operation.js';
import type { Helm, HelmRevision } from '../providers/helm.js';
import type { Kube, WorkloadKind, WorkloadStatus } from '../providers/kube.js';
import type { AddonCatalog } from '../store/catalog.js';
import type { Store } from '../store/index.js';
import { classified } from './failure.js';

export interface AddonActivityDeps {
  store: Store;
  catalog: AddonCatalog;
  /** Helm bound to one cluster (its kubeconfig fetched from Rancher, kept in memory only). */
  helmFor: (rancherId: string) => Promise<Helm>;
  kubeFor: (rancherId: string) => Promise<Kube>;
  /** The chart repository the catalog is published to; null when none is configured. */
  chartRepoUrl: string | null;
  /** A release left pending-* for longer than this is taken as abandoned by a dead Helm process. */
  stalePendingMs?: number;
}

/** Where a workload of an add-on stands, against what its manifest asks for. */
export interface AddonWorkload extends WorkloadStatus {
  exists: boolean;
  /** Replicas the manifest asks for (null for a DaemonSet). */
  wanted: number | null;
}

export type AddonProblem = 'missing' | 'not-deployed' | 'wrong-revision' | 'stopped' | 'unhealthy';

/** What Kumo finds of an add-on on a cluster. */
export interface AddonInspection {
  release: { revision: number; status: string; chart: string } | null;
  workloads: AddonWorkload[];
  problem: AddonProblem | null;
  healthy: boolean;
  /** One line for people: what is wrong, or "healthy: …". */
  summary: string;
}

export interface OpenOperationInput {
  id: string;
  kind: OperationKind;
  target: string;
  clusterId: string | null;
  steps: readonly string[];
  workflowId: string;
  runId: string;
  startedAt: string;
}

export interface UpgradeReleaseInput {
  operationId: string;
  rancherId: string;
  addon: string;
  version: string;
  values: Record<string, unknown>;
}

/** A managed add-on with where its cluster is. */
export interface ManagedAddon extends AddonRecord {
  rancherId: string;
}

const workloadKinds = new Set<WorkloadKind>(['Deployment', 'StatefulSet', 'DaemonSet']);

/** The description Kumo gives a Helm revision it makes, so a retry can find it. */
export function revisionKey(operationId: string): string {
  return `kumo ${operationId}`;
}

/**
 * The add-on steps. Each is idempotent: a Helm revision carries the operation's
 * key as its description, so a retried upgrade (or one after a worker crash)
 * finds the revision it made instead of making a second one.
 */
export const createAddonActivities = ({ store, catalog, helmFor, kubeFor, chartRepoUrl, stalePendingMs = 120_000 }: AddonActivityDeps) => {
  const addonOf = (name: string): CatalogAddon => {
    const addon = catalog.find(name);
    if (!addon) throw new ProviderError('NotFound', `add-on ${name} is not in the catalog`);
    return addon;
  };

  async function inspect(rancherId: string, name: string, expectedRevision: number | null): Promise<AddonInspection> {
    const addon = addonOf(name);
    const helm = await helmFor(rancherId);
    const status = await helm.status(addon.release, addon.namespace);
    if (!status) return { release: null, workloads: [], problem: 'missing', healthy: false, summary: `release ${addon.release} is not installed` };
    const release = { revision: status.revision, status: status.status, chart: status.chart };
    if (status.status !== 'deployed') {
      return { release, workloads: [], problem: 'not-deployed', healthy: false, summary: `release ${addon.release} revision ${status.revision} is ${status.status}` };
    }
    const kube = await kubeFor(rancherId);
    const workloads: AddonWorkload[] = [];
    for (const item of workloadsOf(await helm.manifest(addon.release, addon.namespace), addon.namespace)) {
      const live = await kube.getWorkload(item.kind, item.namespace, item.name);
      workloads.push(live ? { ...live, exists: true, wanted: item.wanted } : { ...item, desired: item.wanted ?? 0, ready: 0, updated: false, exists: false });
    }
    const describe = (w: AddonWorkload) => `${w.kind} ${w.namespace}/${w.name}`;
    const stopped = workloads.filter((w) => !w.exists || (w.wanted !== null && w.wanted > 0 && w.desired === 0));
    const unready = workloads.filter((w) => w.exists && (!w.updated || w.ready < w.desired));
    let problem: AddonProblem | null = null;
    let summary = `healthy: revision ${status.revision}, ${workloads.map((w) => `${describe(w)} ${w.ready}/${w.desired}`).join(', ') || 'no workloads'}`;
    if (expectedRevision !== null && status.revision !== expectedRevision) {
      problem = 'wrong-revision';
      summary = `release ${addon.release} is at revision ${status.revision}, Kumo made revision ${expectedRevision}`;
    } else if (stopped.length) {
      problem = 'stopped';
      summary = stopped.map((w) => (w.exists ? `${describe(w)} scaled to 0 (wants ${w.wanted})` : `${describe(w)} is missing`)).join('; ');
    } else if (unready.length) {
      problem = 'unhealthy';
      summary = unready.map((w) => `${describe(w)}: ${w.ready}/${w.desired} ready${w.updated ? '' : ', rollout in progress'}`).join('; ');
    }
    return { release, workloads, problem, healthy: problem === null, summary };
  }

  return classified({
    /** Records an operation a workflow starts itself; a retry finds it recorded. */
    async openOperation(input: OpenOperationInput): Promise<void> {
      await store.openOperation(newOperation(input), input.clusterId);
    },

    /** Records how an add-on operation ended, and what it produced. */
    async closeOperation(input: { operationId: string; status: OperationStatus; steps: StepRecord[]; failure: OperationFailure | null; result?: unknown }): Promise<void> {
      if (input.result !== undefined) await store.setOperationResult(input.operationId, input.result);
      await store.closeOperation(input.operationId, input);
    },

    /** Progress of a long operation in words, and its live result so far. */
    async reportProgress(input: { operationId: string; detail: string; result?: unknown }): Promise<void> {
      await store.setOperationDetail(input.operationId, input.detail);
      if (input.result !== undefined) await store.setOperationResult(input.operationId, input.result);
    },

    /**
     * Writes an add-on's record. `version`/`values`/`revision` change only when given,
     * so a failed upgrade leaves the record naming what still runs.
     */
    async markAddon(input: {
      clusterId: string;
      name: string;
      state: AddonState;
      message: string | null;
      operationId: string;
      version?: string;
      values?: Record<string, unknown>;
      revision?: number | null;
      /** The version to record when there is no record yet (a first install under way). */
      versionIfNew?: string;
    }): Promise<void> {
      const current = await store.getAddon(input.clusterId, input.name);
      await store.putAddon({
        clusterId: input.clusterId,
        name: input.name,
        version: input.version ?? current?.version ?? input.versionIfNew ?? '',
        values: input.values ?? current?.values ?? {},
        state: input.state,
        revision: input.revision !== undefined ? input.revision : (current?.revision ?? null),
        message: input.message,
        lastOperationId: input.operationId,
        updatedAt: new Date().toISOString(),
      });
    },

    async forgetAddon(input: { clusterId: string; name: string }): Promise<void> {
      await store.deleteAddon(input.clusterId, input.name);
    },

    /**
     * `helm upgrade --install` of the catalog chart at a version, once per operation:
     * the revision it makes carries the operation's key. A release another Helm left
     * pending (its process died) is rolled back to its last good revision first, as
     * an operator would after checking its history; a recent one is waited for.
     */
    async upgradeRelease(input: UpgradeReleaseInput): Promise<{ revision: number; previousRevision: number | null }> {
      const addon = addonOf(input.addon);
      if (!addon.versions.some((v) => v.version === input.version)) throw new ProviderError('NotFound', `add-on ${addon.name} has no version ${input.version}`);
      if (!chartRepoUrl) throw new ProviderError('InvalidSpec', 'no chart repository is configured (KUMO_CHART_REPO_URL)');
      const helm = await helmFor(input.rancherId);
      const key = revisionKey(input.operationId);
      const current = await helm.status(addon.release, addon.namespace);
      if (current) {
        const history = await helm.history(addon.release, addon.namespace);
        const mine = history.find((entry) => entry.description === key);
        if (mine) return { revision: mine.revision, previousRevision: lastGoodBefore(history, mine.revision) };
        if (current.status.startsWith('pending-')) {
          const age = Date.now() - Date.parse(current.updated);
          if (!(age > stalePendingMs)) throw new ProviderError('Transient', `release ${addon.release} is ${current.status}: another Helm operation is in progress`);
          const good = lastGoodBefore(history, current.revision + 1);
          if (good === null) await helm.uninstall(addon.release, addon.namespace, 120);
          else await helm.rollback(addon.release, addon.namespace, good, 120);
        }
      }
      const before = current ? await helm.status(addon.release, addon.namespace) : null;
      const release = await helm.upgradeInstall({
        release: addon.release,
        namespace: addon.namespace,
        chart: addon.chart,
        repo: chartRepoUrl,
        version: input.version,
        values: input.values,
        description: key,
        wait: false,
        timeoutSeconds: 120,
      });
      return { revision: release.revision, previousRevision: before && before.status === 'deployed' ? before.revision : null };
    },

    /** Rolls a release back to a revision, once: a retry finds the rollback revision made after `failedRevision`. */
    async rollbackRelease(input: { rancherId: string; addon: string; toRevision: number; failedRevision: number }): Promise<{ revision: number }> {
      const addon = addonOf(input.addon);
      const helm = await helmFor(input.rancherId);
      const history = await helm.history(addon.release, addon.namespace);
      const done = history.find((entry) => entry.revision > input.failedRevision && entry.description === `Rollback to ${input.toRevision}`);
      if (done) return { revision: done.revision };
      await helm.rollback(addon.release, addon.namespace, input.toRevision, 120);
      const status = await helm.status(addon.release, addon.namespace);
      if (!status) throw new ProviderError('Transient', `release ${addon.release} vanished during its rollback`);
      return { revision: status.revision };
    },

    /** Uninstalls the add-on's release; an absent one is fine. */
    async uninstallRelease(input: { rancherId: string; addon: string }): Promise<void> {
      const addon = addonOf(input.addon);
      const helm = await helmFor(input.rancherId);
      await helm.uninstall(addon.release, addon.namespace, 120);
    },

    /** The add-on's release and workloads, and what is wrong with them if anything. */
    async inspectAddon(input: { rancherId: string; addon: string; expectedRevision?: number | null }): Promise<AddonInspection> {
      return inspect(input.rancherId, input.addon, input.expectedRevision ?? null);
    },

    /** `kubectl rollout restart` of the add-on's workloads that are not ready. */
    async restartAddon(input: { rancherId: string; addon: string; at: string }): Promise<{ restarted: string[] }> {
      const state = await inspect(input.rancherId, input.addon, null);
      const kube = await kubeFor(input.rancherId);
      const restarted: string[] = [];
      for (const w of state.workloads.filter((candidate) => candidate.exists && candidate.ready < candidate.desired)) {
        await kube.restartWorkload(w.kind, w.namespace, w.name, input.at);
        restarted.push(`${w.kind} ${w.namespace}/${w.name}`);
      }
      return { restarted };
    },

    /** Clusters a rollout may upgrade: the add-on enabled and deployed, the cluster reachable, the selector matching. */
    async listRolloutTargets(input: { addon: string; selector: { clusters?: string[]; labels?: Record<string, string> } }): Promise<ManagedAddon[]> {
      const clusters = new Map((await store.listClusters()).map((cluster) => [cluster.id, cluster]));
      const out: ManagedAddon[] = [];
      for (const record of await store.listAddons({ name: input.addon })) {
        const cluster = clusters.get(record.clusterId);
        if (!cluster?.rancherId || record.state !== 'deployed' || !matchesSelector(cluster, input.selector)) continue;
        out.push({ ...record, rancherId: cluster.rancherId });
      }
      return out;
    },

    /** Every add-on Kumo keeps deployed, on clusters that are active. */
    async listManagedAddons(): Promise<ManagedAddon[]> {
      const clusters = new Map((await store.listClusters()).map((cluster) => [cluster.id, cluster]));
      const out: ManagedAddon[] = [];
      for (const record of await store.listAddons()) {
        const cluster = clusters.get(record.clusterId);
        if (!cluster?.rancherId || cluster.state !== 'active' || record.state !== 'deployed' || record.revision === null) continue;
        out.push({ ...record, rancherId: cluster.rancherId });
      }
      return out;
    },
  }, { heartbeatEveryMs: 5_000 });
};

export type AddonActivities = ReturnType<typeof createAddonActivities>;

/** The workloads a release's manifest holds, with the replicas it asks for. */
export function workloadsOf(manifest: string, defaultNamespace: string): Array<{ kind: WorkloadKind; namespace: string; name: string; wanted: number | null }> {
  const out: Array<{ kind: WorkloadKind; namespace: string; name: string; wanted: number | null }> = [];
  for (const doc of parseAllDocuments(manifest)) {
    const obj = doc.toJS() as { kind?: string; metadata?: { name?: string; namespace?: string }; spec?: { replicas?: number } } | null;
    if (!obj || !workloadKinds.has(obj.kind as WorkloadKind) || !obj.metadata?.name) continue;
    const kind = obj.kind as WorkloadKind;
    out.push({ kind, namespace: obj.metadata.namespace ?? defaultNamespace, name: obj.metadata.name, wanted: kind === 'DaemonSet' ? null : (obj.spec?.replicas ?? 1) });
  }
  return out;
}

/** The newest revision before `revision` that was live (deployed or superseded by a later one). */
function lastGoodBefore(history: HelmRevision[], revision: number): number | null {
  const good = history.filter((entry) => entry.revision < revision && (entry.status === 'deployed' || entry.status === 'superseded'));
  return good.length ? Math.max(...good.map((entry) => entry.revision)) : null;
}
