/**
 * The simulated Rancher's behaviour: validation, mutations, the pools'
 * quantity-keeping, and states derived from stored timestamps.
 */
import { randomUUID } from "node:crypto";
import { isPlainObject, NormanError, rfc3339 } from "./http.js";
import {
  noClusterFaults,
  noNodeFaults,
  randomId,
  type ClusterFaults,
  type NodeFaults,
  type SimData,
  type StoredCluster,
  type StoredKubeObject,
  type StoredNode,
  type StoredNodePool,
} from "./state.js";

/** Namespaces every cluster starts with. */
export const SYSTEM_NAMESPACES: readonly string[] = ["default", "kube-system", "kube-public", "cattle-system"];

/** Kubernetes versions the simulated Rancher offers, oldest first. */
export const SUPPORTED_K8S_VERSIONS: readonly string[] = [
  "v1.28.15-rancher1-1",
  "v1.29.10-rancher1-1",
  "v1.30.6-rancher1-1",
  "v1.31.2-rancher1-1",
];

/** Timing and limits; changeable at run time through `PUT /admin/settings`. */
export interface Settings {
  clusterProvisionMs: number;
  nodeBootMs: number;
  nodeRemoveMs: number;
  maxNodes: number;
  /** Time an etcd snapshot stays `activating`. */
  snapshotMs: number;
  /** Time an etcd restore keeps the cluster `updating`. */
  restoreMs: number;
  /** Kubernetes' node-monitor-grace-period: how long after the last heartbeat Ready turns Unknown. */
  nodeMonitorGraceMs: number;
  /** Time one node takes to upgrade its Kubernetes version. */
  nodeUpgradeMs: number;
  /** Time from the start of a workload's rollout (creation, new pod template or replica count) until it reports ready. */
  workloadReadyMs: number;
  /** How long a Knative Revision's first process may take to answer `GET /healthz` with 200 (unless its progress-deadline annotation says otherwise). */
  knativeProgressDeadlineMs: number;
}

/** Which faults the model asks about; the in-memory fault configuration answers. */
export interface FaultView {
  isNeverReady(hostname: string): boolean;
  failsUpgrade(hostname: string): boolean;
  /** Whether a container running `image` crash-loops in the cluster with this id and name. */
  crashLoops(clusterId: string, clusterName: string, image: string): boolean;
}

export type NodePhase = "provisioning" | "registering" | "active" | "removing";

export interface ClusterStatus {
  state: "provisioning" | "active" | "updating" | "removing" | "unavailable";
  transitioning: "yes" | "no" | "error";
  transitioningMessage: string;
  provisioned: boolean;
  ready: boolean;
}

/** Where a rolling upgrade stands: nodes `order[0..done)` are upgraded, `order[current]` is in its window (or stalled). */
export interface UpgradeProgress {
  done: number;
  current: number | null;
  stalled: boolean;
  complete: boolean;
}

/** A node as its kubelet and Kubernetes' node lifecycle controller would report it. */
export interface NodeHealth {
  /** Whether the Kubernetes Node object exists. */
  registered: boolean;
  registeredTS: number;
  ready: "True" | "False" | "Unknown";
  reason: string;
  message: string;
  heartbeatTS: number;
  transitionTS: number;
  /** When the pressure conditions went Unknown with the heartbeat, or null. */
  statusUnknownSince: number | null;
  /** spec.unschedulable as Kubernetes shows it: cordoned, or in (or stalled in) its upgrade. */
  unschedulable: boolean;
  upgrading: boolean;
  /** The Rancher version string the kubelet runs, e.g. "v1.30.6-rancher1-1". */
  kubeletVersion: string;
  unreachable: boolean;
}

/** "v1.30.6-rancher1-1" → "v1.30.6", what the cluster's API server would report. */
export function gitVersionOf(kubernetesVersion: string): string {
  return kubernetesVersion.replace(/-rancher.*$/, "");
}

const byHostname = (a: StoredNode, b: StoredNode): number => a.hostname.localeCompare(b.hostname, "en", { numeric: true });

const CLUSTER_NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const HOSTNAME_PREFIX_RE = /^[a-z0-9]([-a-z0-9]*)?$/;
const WAITING_FOR_NODES = "waiting for etcd and controlplane nodes to be registered";

function invalid(fieldName: string, message: string): NormanError {
  return new NormanError(422, "InvalidFormat", message, fieldName);
}

function missing(fieldName: string): NormanError {
  return new NormanError(422, "MissingRequired", `${fieldName} is required`, fieldName);
}

function notFound(kind: string, id: string): NormanError {
  return new NormanError(404, "NotFound", `${kind} ${id} not found`);
}

function requiredString(body: Record<string, unknown>, field: string): string {
  const value = body[field];
  if (value === undefined || value === null || value === "") throw missing(field);
  if (typeof value !== "string") throw invalid(field, `${field} must be a string`);
  return value;
}

function optionalString(body: Record<string, unknown>, field: string): string | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw invalid(field, `${field} must be a string`);
  return value;
}

function optionalBoolean(body: Record<string, unknown>, field: string): boolean | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "boolean") throw invalid(field, `${field} must be a boolean`);
  return value;
}

function optionalStringMap(body: Record<string, unknown>, field: string): Record<string, string> | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (!isPlainObject(value) || Object.values(value).some((v) => typeof v !== "string")) {
    throw invalid(field, `${field} must be an object whose values are strings`);
  }
  return { ...(value as Record<string, string>) };
}

function checkType(body: Record<string, unknown>, expected: string): void {
  if (body.type !== undefined && body.type !== expected) {
    throw invalid("type", `type must be "${expected}"`);
  }
}

/** Refuses a change to a field the simulator treats as fixed; an unchanged copy is fine (clients often PUT the whole object back). */
function unchanged(body: Record<string, unknown>, field: string, current: unknown): void {
  if (body[field] !== undefined && body[field] !== current) {
    throw invalid(field, `${field} cannot be changed`);
  }
}

function kubernetesVersionOf(body: Record<string, unknown>, required: boolean): string | undefined {
  const rke = body.rancherKubernetesEngineConfig;
  if (rke === undefined || rke === null) {
    if (required) throw missing("rancherKubernetesEngineConfig");
    return undefined;
  }
  if (!isPlainObject(rke)) throw invalid("rancherKubernetesEngineConfig", "rancherKubernetesEngineConfig must be an object");
  const field = "rancherKubernetesEngineConfig.kubernetesVersion";
  const version = rke.kubernetesVersion;
  if (version === undefined || version === null || version === "") {
    if (required) throw missing(field);
    return undefined;
  }
  if (typeof version !== "string" || !SUPPORTED_K8S_VERSIONS.includes(version)) {
    throw invalid(field, `kubernetesVersion ${JSON.stringify(version)} is not supported; supported versions: ${SUPPORTED_K8S_VERSIONS.join(", ")}`);
  }
  return version;
}

/** The simulated Rancher: owns the stored data and every rule about it. */
export class RancherModel {
  /** Set by every change so the server knows to write the state file. */
  dirty = false;
  /** Called after a stored change to a node that its Kubernetes Node object shows (watch events). */
  onNodeChange: ((node: StoredNode) => void) | null = null;

  constructor(
    public data: SimData,
    public settings: Settings,
    private readonly faults: FaultView,
  ) {}

  private isNeverReady(hostname: string): boolean {
    return this.faults.isNeverReady(hostname);
  }

  /** Whether a container running `image` in the cluster crash-loops (the `crashLoop` fault). */
  crashLoops(cluster: StoredCluster, image: string): boolean {
    return this.faults.crashLoops(cluster.id, cluster.name, image);
  }

  /** The next Kubernetes resourceVersion; one increasing counter for every cluster. */
  nextResourceVersion(): number {
    this.data.kubeResourceVersion += 1;
    this.dirty = true;
    return this.data.kubeResourceVersion;
  }

  /** Records a stored change to a node's Kubernetes view: new resourceVersion, watch event. */
  touchNode(node: StoredNode): void {
    node.kube.resourceVersion = this.nextResourceVersion();
    this.onNodeChange?.(node);
  }

  // ---- lookups -------------------------------------------------------------

  cluster(id: string): StoredCluster {
    const found = this.data.clusters.find((c) => c.id === id);
    if (!found) throw notFound("cluster", id);
    return found;
  }

  nodePool(id: string): StoredNodePool {
    const found = this.data.nodePools.find((p) => p.id === id);
    if (!found) throw notFound("nodePool", id);
    return found;
  }

  node(id: string): StoredNode {
    const found = this.data.nodes.find((n) => n.id === id);
    if (!found) throw notFound("node", id);
    return found;
  }

  /** The cluster's stored Kubernetes objects, created with the system namespaces on first use. */
  kubeObjects(cluster: StoredCluster): StoredKubeObject[] {
    const existing = Object.hasOwn(this.data.kube, cluster.id) ? this.data.kube[cluster.id] : undefined;
    if (existing !== undefined) return existing;
    const created = rfc3339(cluster.provisionedTS ?? cluster.createdTS);
    const objects: StoredKubeObject[] = SYSTEM_NAMESPACES.map((name) => ({
      key: "/namespaces",
      ns: "",
      name,
      obj: {
        apiVersion: "v1",
        kind: "Namespace",
        metadata: {
          name,
          uid: randomUUID(),
          resourceVersion: String(this.nextResourceVersion()),
          creationTimestamp: created,
          labels: { "kubernetes.io/metadata.name": name },
        },
        spec: { finalizers: ["kubernetes"] },
        status: { phase: "Active" },
      },
    }));
    this.data.kube[cluster.id] = objects;
    this.dirty = true;
    return objects;
  }

  /**
   * The cluster's nodes (being removed ones too), in stored order. Served from
   * an index by cluster, rebuilt whenever the node list is replaced or grows or
   * shrinks (nodes never move between clusters), so a fleet of thousands of
   * clusters is not scanned once per cluster.
   */
  nodesOfCluster(clusterId: string): StoredNode[] {
    const nodes = this.data.nodes;
    let index = this.nodeIndex;
    if (index === null || index.nodes !== nodes || index.length !== nodes.length) {
      const byCluster = new Map<string, StoredNode[]>();
      for (const node of nodes) {
        const list = byCluster.get(node.clusterId);
        if (list === undefined) byCluster.set(node.clusterId, [node]);
        else list.push(node);
      }
      index = { nodes, length: nodes.length, byCluster };
      this.nodeIndex = index;
    }
    return [...(index.byCluster.get(clusterId) ?? [])];
  }

  private nodeIndex: { nodes: StoredNode[]; length: number; byCluster: Map<string, StoredNode[]> } | null = null;

  // ---- derived state ---------------------------------------------------------

  /** When a node becomes (or became) ready; Infinity for nodes held back by a fault. */
  nodeReadyAt(node: StoredNode): number {
    if (this.isNeverReady(node.hostname)) return Infinity;
    const boot = this.settings.nodeBootMs;
    // Staggered by batch position so nodes of one scale-up register one by one, as real ones do.
    return node.createdTS + boot + node.batchIndex * (boot / 4);
  }

  nodePhase(node: StoredNode, now: number): NodePhase {
    if (node.removedTS !== null) return "removing";
    if (now < node.createdTS + this.settings.nodeBootMs / 2) return "provisioning";
    if (now < this.nodeReadyAt(node)) return "registering";
    return "active";
  }

  /**
   * The moment the cluster met the conditions for `active`, or null if it has
   * not (yet): ready etcd and control-plane nodes, and the provisioning time over.
   */
  private clusterReadyAt(cluster: StoredCluster, now: number): number | null {
    let etcd = Infinity;
    let controlPlane = Infinity;
    for (const node of this.nodesOfCluster(cluster.id)) {
      if (node.removedTS !== null) continue;
      const readyAt = this.nodeReadyAt(node);
      if (readyAt > now) continue;
      if (node.etcd) etcd = Math.min(etcd, readyAt);
      if (node.controlPlane) controlPlane = Math.min(controlPlane, readyAt);
    }
    if (etcd === Infinity || controlPlane === Infinity) return null;
    const at = Math.max(cluster.createdTS + this.settings.clusterProvisionMs, etcd, controlPlane);
    return at <= now ? at : null;
  }

  private hasReadyControlNodes(cluster: StoredCluster, now: number): boolean {
    const live = this.nodesOfCluster(cluster.id).filter((n) => this.nodePhase(n, now) === "active");
    return live.some((n) => n.etcd) && live.some((n) => n.controlPlane);
  }

  isProvisioned(cluster: StoredCluster, now: number): boolean {
    return cluster.provisionedTS !== null || this.clusterReadyAt(cluster, now) !== null;
  }

  /** Whether an etcd restore is still running (forever under the restoreStuck fault). */
  restoring(cluster: StoredCluster, now: number): boolean {
    if (cluster.restore === null) return false;
    return cluster.faults.restoreStuck !== null || now < cluster.restore.startedTS + this.settings.restoreMs;
  }

  clusterStatus(cluster: StoredCluster, now: number): ClusterStatus {
    if (cluster.removedTS !== null) {
      return { state: "removing", transitioning: "yes", transitioningMessage: "removing cluster", provisioned: cluster.provisionedTS !== null, ready: false };
    }
    const provisioned = this.isProvisioned(cluster, now);
    if (!provisioned) {
      return { state: "provisioning", transitioning: "yes", transitioningMessage: WAITING_FOR_NODES, provisioned: false, ready: false };
    }
    if (cluster.faults.agentDisconnected !== null) {
      return { state: "unavailable", transitioning: "error", transitioningMessage: "Cluster agent is not connected", provisioned: true, ready: false };
    }
    if (cluster.restore !== null && this.restoring(cluster, now)) {
      return { state: "updating", transitioning: "yes", transitioningMessage: `restoring etcd snapshot ${cluster.restore.backupName}`, provisioned: true, ready: false };
    }
    if (!this.hasReadyControlNodes(cluster, now)) {
      // Once provisioned a cluster that loses its control nodes is degraded, not new again.
      return { state: "updating", transitioning: "yes", transitioningMessage: WAITING_FOR_NODES, provisioned: true, ready: false };
    }
    const up = cluster.upgrade;
    const progress = this.upgradeProgress(cluster, now);
    if (up !== null && progress !== null && !progress.complete) {
      const current = progress.current === null ? undefined : this.data.nodes.find((n) => n.id === up.order[progress.current ?? -1]);
      const hostname = current?.hostname ?? "(removed node)";
      if (progress.stalled) {
        return {
          state: "updating",
          transitioning: "error",
          transitioningMessage: `upgrade to ${up.toVersion} stalled: node ${hostname} did not become ready after its upgrade`,
          provisioned: true,
          ready: true,
        };
      }
      return {
        state: "updating",
        transitioning: "yes",
        transitioningMessage: `upgrading Kubernetes to ${up.toVersion}: node ${hostname} (${progress.done + 1} of ${up.order.length})`,
        provisioned: true,
        ready: true,
      };
    }
    return { state: "active", transitioning: "no", transitioningMessage: "", provisioned: true, ready: true };
  }

  /**
   * Why the cluster's Kubernetes API cannot be reached through the Rancher
   * proxy right now, or null when it can.
   */
  kubeUnavailable(cluster: StoredCluster, now: number): string | null {
    if (cluster.removedTS !== null) return `cluster ${cluster.id} is being removed`;
    if (!this.isProvisioned(cluster, now)) return `cluster ${cluster.id} is still provisioning; its API server is not available yet`;
    if (cluster.faults.agentDisconnected !== null) return `cluster agent of ${cluster.id} is not connected`;
    if (cluster.faults.apiServerDown !== null) return `the API server of cluster ${cluster.id} is not responding`;
    if (this.restoring(cluster, now)) return `the API server of cluster ${cluster.id} is restarting while an etcd snapshot is restored`;
    if (!this.hasReadyControlNodes(cluster, now)) return `cluster ${cluster.id} has no ready etcd and control-plane nodes`;
    return null;
  }

  // ---- Kubernetes versions and upgrades -----------------------------------------

  upgradeProgress(cluster: StoredCluster, now: number): UpgradeProgress | null {
    const up = cluster.upgrade;
    if (up === null) return null;
    if (up.failedIndex !== null) return { done: up.failedIndex, current: up.failedIndex, stalled: true, complete: false };
    const ms = Math.max(1, this.settings.nodeUpgradeMs);
    const slot = Math.max(0, Math.floor((now - up.startedTS) / ms));
    const finished = Math.min(slot, up.order.length);
    for (let i = 0; i < finished; i++) {
      const node = this.data.nodes.find((n) => n.id === up.order[i]);
      if (node !== undefined && node.removedTS === null && this.faults.failsUpgrade(node.hostname)) {
        return { done: i, current: i, stalled: true, complete: false };
      }
    }
    if (slot >= up.order.length) return { done: up.order.length, current: null, stalled: false, complete: true };
    return { done: slot, current: slot, stalled: false, complete: false };
  }

  /** The Rancher version string a node's kubelet runs now. */
  nodeVersion(node: StoredNode, now: number): string {
    const cluster = this.data.clusters.find((c) => c.id === node.clusterId);
    const up = cluster?.upgrade ?? null;
    if (cluster === undefined || up === null) return node.version;
    const index = up.order.indexOf(node.id);
    if (index < 0) return node.version;
    const progress = this.upgradeProgress(cluster, now);
    if (progress === null) return node.version;
    if (index < progress.done || (progress.stalled && index === progress.current)) return up.toVersion;
    return node.version;
  }

  /** The version the cluster's API server runs: the new one once every etcd/control-plane node is upgraded. */
  apiServerVersion(cluster: StoredCluster, now: number): string {
    const up = cluster.upgrade;
    const progress = this.upgradeProgress(cluster, now);
    if (up === null || progress === null) return cluster.kubernetesVersion;
    return progress.done >= up.controlCount ? up.toVersion : up.fromVersion;
  }

  /** Starts a rolling upgrade (or, before provisioning, just sets the version every node will come up with). */
  private startUpgrade(cluster: StoredCluster, toVersion: string, now: number): void {
    const nodes = this.nodesOfCluster(cluster.id).filter((n) => n.removedTS === null);
    if (!this.isProvisioned(cluster, now)) {
      cluster.kubernetesVersion = toVersion;
      cluster.upgrade = null;
      for (const node of nodes) node.version = toVersion;
      return;
    }
    const fromVersion = this.apiServerVersion(cluster, now);
    // An upgrade already under way is cut short where it stands.
    for (const node of nodes) node.version = this.nodeVersion(node, now);
    cluster.kubernetesVersion = toVersion;
    const registered = nodes.filter((n) => this.nodePhase(n, now) === "active" && n.version !== toVersion);
    // Nodes still booting register with the new version straight away.
    for (const node of nodes) if (!registered.includes(node)) node.version = toVersion;
    const control = registered.filter((n) => n.etcd || n.controlPlane).sort(byHostname);
    const workers = registered.filter((n) => !n.etcd && !n.controlPlane).sort(byHostname);
    const order = [...control, ...workers].map((n) => n.id);
    cluster.upgrade = order.length === 0 ? null : { fromVersion, toVersion, startedTS: now, order, controlCount: control.length, failedIndex: null };
  }

  /** Records upgrade stalls and completions as facts, dated where they happened. */
  private reconcileUpgrade(cluster: StoredCluster, now: number): void {
    const up = cluster.upgrade;
    if (up === null) return;
    const ms = Math.max(1, this.settings.nodeUpgradeMs);
    if (up.failedIndex !== null) {
      const node = this.data.nodes.find((n) => n.id === up.order[up.failedIndex ?? -1]);
      if (node === undefined || node.removedTS !== null || !this.faults.failsUpgrade(node.hostname)) {
        // The fault was cleared (or the node is gone): the stalled node's upgrade is retried from now.
        up.startedTS = now - up.failedIndex * ms;
        up.failedIndex = null;
        this.dirty = true;
      }
      return;
    }
    const progress = this.upgradeProgress(cluster, now);
    if (progress === null) return;
    if (progress.stalled) {
      up.failedIndex = progress.current;
      this.dirty = true;
    } else if (progress.complete) {
      up.order.forEach((id, i) => {
        const node = this.data.nodes.find((n) => n.id === id);
        if (node === undefined) return;
        node.version = up.toVersion;
        node.kube.readySinceTS = up.startedTS + (i + 1) * ms;
      });
      cluster.upgrade = null;
      this.dirty = true;
    }
  }

  // ---- node health ------------------------------------------------------------------

  nodeHealth(node: StoredNode, now: number): NodeHealth {
    const phase = this.nodePhase(node, now);
    const registeredTS = node.kube.registeredTS ?? this.nodeReadyAt(node);
    const registered = phase === "active" && now >= registeredTS;
    const kubeletVersion = this.nodeVersion(node, now);

    let upgrading = false;
    let failed = false;
    let windowStart = 0;
    let upgradedAt = 0;
    let target = "";
    const cluster = this.data.clusters.find((c) => c.id === node.clusterId);
    const up = cluster?.upgrade ?? null;
    if (cluster !== undefined && up !== null) {
      const index = up.order.indexOf(node.id);
      const progress = this.upgradeProgress(cluster, now);
      if (index >= 0 && progress !== null) {
        const ms = Math.max(1, this.settings.nodeUpgradeMs);
        windowStart = up.startedTS + index * ms;
        target = gitVersionOf(up.toVersion);
        if (progress.stalled && index === progress.current) failed = true;
        else if (!progress.complete && index === progress.current) upgrading = true;
        else if (index < progress.done) upgradedAt = windowStart + ms;
      }
    }

    let ready: NodeHealth["ready"] = "True";
    let reason = "KubeletReady";
    let message = "kubelet is posting ready status";
    let transitionTS = Math.max(registeredTS, node.kube.readySinceTS ?? 0, node.faultsClearedTS ?? 0, upgradedAt);
    if (failed) {
      ready = "False";
      reason = "KubeletNotReady";
      message = `kubelet did not become ready after the upgrade to ${target}`;
      transitionTS = windowStart;
    } else if (upgrading) {
      ready = "False";
      reason = "Upgrading";
      message = `upgrading the kubelet to ${target}`;
      transitionTS = windowStart;
    } else if (node.faults.notReady !== null) {
      ready = "False";
      reason = "KubeletNotReady";
      message = "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized";
      transitionTS = node.faults.notReady;
    }

    let heartbeatTS = now;
    let statusUnknownSince: number | null = null;
    const stopped = [node.faults.kubeletStopped, node.faults.unreachable].filter((t): t is number => t !== null);
    if (stopped.length > 0) {
      heartbeatTS = Math.min(now, Math.max(registeredTS, Math.min(...stopped)));
      const unknownAt = heartbeatTS + this.settings.nodeMonitorGraceMs;
      if (now >= unknownAt) {
        ready = "Unknown";
        reason = "NodeStatusUnknown";
        message = "Kubelet stopped posting node status.";
        transitionTS = unknownAt;
        statusUnknownSince = unknownAt;
      }
    }
    return {
      registered,
      registeredTS,
      ready,
      reason,
      message,
      heartbeatTS,
      transitionTS: Math.min(transitionTS, now),
      statusUnknownSince,
      unschedulable: node.unschedulable || upgrading || failed,
      upgrading: upgrading || failed,
      kubeletVersion,
      unreachable: node.faults.unreachable !== null,
    };
  }

  /**
   * Brings stored facts up to date with the clock: purges what finished
   * removing, removes nodes a pool gave up on, keeps pool quantities and
   * records when clusters got provisioned. Run before every request, which is
   * what makes the simulator timer-free.
   */
  reconcile(now: number): void {
    const gone = (removedTS: number | null): boolean => removedTS !== null && now >= removedTS + this.settings.nodeRemoveMs;
    // This runs before every request, so with a fleet of thousands of clusters it only scans for what can
    // have changed, and replaces a list only when something goes (unchanged ones keep their identity, and
    // the node index). New data (start, load, reset) is checked in full once.
    const keep = <T>(list: T[], wanted: (item: T) => boolean): T[] => {
      const kept = list.filter(wanted);
      if (kept.length === list.length) return list;
      this.dirty = true;
      return kept;
    };
    const fresh = this.reconciled !== this.data;
    this.reconciled = this.data;
    const clustersBefore = this.data.clusters;
    this.data.clusters = keep(clustersBefore, (c) => !gone(c.removedTS));
    const clustersPurged = fresh || this.data.clusters !== clustersBefore;
    const clusterIds = clustersPurged ? new Set(this.data.clusters.map((c) => c.id)) : null;
    const poolsBefore = this.data.nodePools;
    if (clusterIds !== null) this.data.nodePools = keep(poolsBefore, (p) => !gone(p.removedTS) && clusterIds.has(p.clusterId));
    else if (poolsBefore.some((p) => gone(p.removedTS))) this.data.nodePools = keep(poolsBefore, (p) => !gone(p.removedTS));
    // One pass over the nodes (the per-request cost at fleet scale): whether any finished removing, and how many live.
    let nodesGone = false;
    let live = 0;
    const countLive = (): void => {
      live = 0;
      for (const node of this.data.nodes) {
        if (node.removedTS === null) live += 1;
        else if (gone(node.removedTS)) nodesGone = true;
      }
    };
    countLive();
    if (clustersPurged || this.data.nodePools !== poolsBefore || nodesGone) {
      const poolIds = new Set(this.data.nodePools.map((p) => p.id));
      this.data.nodes = keep(this.data.nodes, (n) => !gone(n.removedTS) && poolIds.has(n.nodePoolId));
      countLive();
    }

    // Every change to a pool's nodes keeps its quantity itself (createNodePool, updateNodePool, deleteNode);
    // pools are looked at one by one only for new data, when the live nodes do not add up to the pools'
    // quantities, or when a pool gives up on nodes that never become ready.
    let wanted = 0;
    for (const pool of this.data.nodePools) if (pool.removedTS === null) wanted += pool.quantity;
    const checkAll = fresh || live !== wanted;
    for (const pool of this.data.nodePools) {
      if (pool.removedTS !== null) continue;
      if (pool.deleteNotReadyAfterSecs > 0) this.dropNotReadyNodes(pool, now);
      else if (!checkAll) continue;
      this.keepQuantity(pool, now);
    }

    for (const cluster of this.data.clusters) {
      if (cluster.removedTS !== null) continue;
      if (cluster.provisionedTS === null) {
        const at = this.clusterReadyAt(cluster, now);
        if (at !== null) {
          cluster.provisionedTS = at;
          this.dirty = true;
        }
      }
      if (cluster.restore !== null && !this.restoring(cluster, now)) {
        cluster.restore = null;
        this.dirty = true;
      }
      this.reconcileUpgrade(cluster, now);
    }

    // A purged cluster takes its Kubernetes objects and etcd snapshots with it.
    if (clusterIds === null) return;
    for (const id of Object.keys(this.data.kube)) {
      if (!clusterIds.has(id)) {
        delete this.data.kube[id];
        this.dirty = true;
      }
    }
    const backups = this.data.etcdBackups.length;
    this.data.etcdBackups = this.data.etcdBackups.filter((b) => clusterIds.has(b.clusterId));
    if (this.data.etcdBackups.length !== backups) this.dirty = true;
  }

  /** The data the last reconcile looked at; other data (after a reset) is checked in full. */
  private reconciled: SimData | null = null;

  /**
   * Rancher's deleteNotReadyAfterSecs: a node still not ready that long after
   * it should have been is deleted (and then replaced). Dated at the deadline,
   * not at whenever somebody happened to look.
   */
  private dropNotReadyNodes(pool: StoredNodePool, now: number): void {
    for (const node of this.data.nodes) {
      if (node.nodePoolId !== pool.id || node.removedTS !== null || !this.isNeverReady(node.hostname)) continue;
      const boot = this.settings.nodeBootMs;
      const deadline = node.createdTS + boot + node.batchIndex * (boot / 4) + pool.deleteNotReadyAfterSecs * 1000;
      if (now >= deadline) {
        node.removedTS = deadline;
        this.dirty = true;
      }
    }
  }

  /** Makes the pool's live node count equal its quantity: new nodes get the next hostnames, surplus goes highest index first. */
  private keepQuantity(pool: StoredNodePool, now: number): void {
    if (pool.removedTS !== null) return;
    const live = this.data.nodes.filter((n) => n.nodePoolId === pool.id && n.removedTS === null);
    if (live.length < pool.quantity) {
      const missingCount = pool.quantity - live.length;
      for (let batchIndex = 0; batchIndex < missingCount; batchIndex++) this.createNode(pool, batchIndex, now);
      this.dirty = true;
    } else if (live.length > pool.quantity) {
      live.sort((a, b) => b.index - a.index);
      for (const node of live.slice(0, live.length - pool.quantity)) node.removedTS = now;
      this.dirty = true;
    }
  }

  private createNode(pool: StoredNodePool, batchIndex: number, now: number): void {
    const index = pool.nextIndex;
    pool.nextIndex += 1;
    const n = this.data.ipCounter;
    this.data.ipCounter += 1;
    const uuid = randomUUID();
    const cluster = this.data.clusters.find((c) => c.id === pool.clusterId);
    this.data.nodes.push({
      id: this.uniqueId(`${pool.clusterId}:m-`, (id) => this.data.nodes.some((x) => x.id === id)),
      uuid,
      clusterId: pool.clusterId,
      nodePoolId: pool.id,
      hostname: `${pool.hostnamePrefix}${index}`,
      index,
      batchIndex,
      createdTS: now,
      removedTS: null,
      unschedulable: false,
      controlPlane: pool.controlPlane,
      etcd: pool.etcd,
      worker: pool.worker,
      ipAddress: `10.42.${Math.floor(n / 254) % 256}.${(n % 254) + 1}`,
      // A node added during an upgrade comes up with the new version.
      version: cluster?.kubernetesVersion ?? "",
      faults: noNodeFaults(),
      faultsClearedTS: null,
      kube: { uid: uuid, registeredTS: null, labels: null, annotations: null, taints: null, resourceVersion: this.nextResourceVersion(), readySinceTS: null },
    });
  }

  private uniqueId(prefix: string, taken: (id: string) => boolean): string {
    for (;;) {
      const id = prefix + randomId(5);
      if (!taken(id)) return id;
    }
  }

  // ---- clusters ----------------------------------------------------------------

  createCluster(body: Record<string, unknown>, now: number): StoredCluster {
    checkType(body, "cluster");
    const name = requiredString(body, "name");
    if (name.length > 63 || !CLUSTER_NAME_RE.test(name)) {
      throw invalid("name", `name ${JSON.stringify(name)} must be at most 63 characters of lowercase letters, digits and '-', starting and ending with a letter or digit`);
    }
    if (this.data.clusters.some((c) => c.removedTS === null && c.name === name)) {
      throw new NormanError(422, "NotUnique", `cluster name ${JSON.stringify(name)} is already in use`, "name");
    }
    const kubernetesVersion = kubernetesVersionOf(body, true) as string;
    const cluster: StoredCluster = {
      id: this.uniqueId("c-", (id) => this.data.clusters.some((c) => c.id === id)),
      uuid: randomUUID(),
      name,
      description: optionalString(body, "description") ?? "",
      labels: optionalStringMap(body, "labels") ?? {},
      annotations: optionalStringMap(body, "annotations") ?? {},
      kubernetesVersion,
      createdTS: now,
      removedTS: null,
      provisionedTS: null,
      faults: noClusterFaults(),
      prometheus: {},
      upgrade: null,
      restore: null,
    };
    this.data.clusters.push(cluster);
    this.dirty = true;
    return cluster;
  }

  updateCluster(id: string, body: Record<string, unknown>, now: number): StoredCluster {
    const cluster = this.cluster(id);
    if (cluster.removedTS !== null) throw new NormanError(409, "Conflict", `cluster ${id} is being removed`);
    checkType(body, "cluster");
    unchanged(body, "name", cluster.name);
    // Validate everything before changing anything, so a 422 leaves the cluster as it was.
    const description = optionalString(body, "description");
    const labels = optionalStringMap(body, "labels");
    const annotations = optionalStringMap(body, "annotations");
    const version = kubernetesVersionOf(body, false);
    if (description !== undefined) cluster.description = description;
    if (labels !== undefined) cluster.labels = labels;
    if (annotations !== undefined) cluster.annotations = annotations;
    if (version !== undefined && version !== cluster.kubernetesVersion) this.startUpgrade(cluster, version, now);
    this.dirty = true;
    return cluster;
  }

  deleteCluster(id: string, now: number): StoredCluster {
    const cluster = this.cluster(id);
    if (cluster.removedTS !== null) return cluster;
    cluster.removedTS = now;
    for (const pool of this.data.nodePools) if (pool.clusterId === id && pool.removedTS === null) pool.removedTS = now;
    for (const node of this.data.nodes) if (node.clusterId === id && node.removedTS === null) node.removedTS = now;
    this.dirty = true;
    return cluster;
  }

  // ---- node pools ------------------------------------------------------------------

  private checkQuota(quantity: number, exceptPoolId: string | null): void {
    let total = quantity;
    for (const pool of this.data.nodePools) {
      if (pool.removedTS === null && pool.id !== exceptPoolId) total += pool.quantity;
    }
    if (total > this.settings.maxNodes) {
      throw new NormanError(403, "PermissionDenied", `node quota exceeded: this would make ${total} nodes, the quota is ${this.settings.maxNodes}`);
    }
  }

  private quantityOf(body: Record<string, unknown>, required: boolean): number | undefined {
    const value = body.quantity;
    if (value === undefined || value === null) {
      if (required) throw missing("quantity");
      return undefined;
    }
    if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
      throw invalid("quantity", "quantity must be an integer of 0 or more");
    }
    return value;
  }

  private deleteNotReadyOf(body: Record<string, unknown>): number | undefined {
    const value = body.deleteNotReadyAfterSecs;
    if (value === undefined || value === null) return undefined;
    if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
      throw invalid("deleteNotReadyAfterSecs", "deleteNotReadyAfterSecs must be an integer of 0 or more");
    }
    return value;
  }

  private nodeTemplateIdOf(body: Record<string, unknown>): string | null | undefined {
    if (body.nodeTemplateId === null) return null;
    return optionalString(body, "nodeTemplateId");
  }

  createNodePool(body: Record<string, unknown>, now: number): StoredNodePool {
    checkType(body, "nodePool");
    const clusterId = requiredString(body, "clusterId");
    const cluster = this.data.clusters.find((c) => c.id === clusterId);
    if (!cluster) throw invalid("clusterId", `cluster not found: ${clusterId}`);
    if (cluster.removedTS !== null) throw new NormanError(409, "Conflict", `cluster ${clusterId} is being removed`);
    const name = requiredString(body, "name");
    if (name.length > 253) throw invalid("name", "name must be at most 253 characters");
    const livePools = this.data.nodePools.filter((p) => p.clusterId === clusterId && p.removedTS === null);
    if (livePools.some((p) => p.name === name)) {
      throw new NormanError(422, "NotUnique", `node pool name ${JSON.stringify(name)} is already in use in cluster ${clusterId}`, "name");
    }
    const hostnamePrefix = requiredString(body, "hostnamePrefix");
    if (hostnamePrefix.length > 50 || !HOSTNAME_PREFIX_RE.test(hostnamePrefix)) {
      throw invalid("hostnamePrefix", "hostnamePrefix must be at most 50 characters of lowercase letters, digits and '-', starting with a letter or digit");
    }
    // Two pools with one prefix would hand out the same hostnames.
    if (livePools.some((p) => p.hostnamePrefix === hostnamePrefix)) {
      throw new NormanError(422, "NotUnique", `hostnamePrefix ${JSON.stringify(hostnamePrefix)} is already used by another pool of cluster ${clusterId}`, "hostnamePrefix");
    }
    const quantity = this.quantityOf(body, true) as number;
    const controlPlane = optionalBoolean(body, "controlPlane") ?? false;
    const etcd = optionalBoolean(body, "etcd") ?? false;
    const worker = optionalBoolean(body, "worker") ?? false;
    if (!controlPlane && !etcd && !worker) {
      throw invalid("controlPlane", "at least one of controlPlane, etcd and worker must be true");
    }
    const nodeTemplateId = this.nodeTemplateIdOf(body) ?? null;
    const drainBeforeDelete = optionalBoolean(body, "drainBeforeDelete") ?? false;
    const deleteNotReadyAfterSecs = this.deleteNotReadyOf(body) ?? 0;
    const labels = optionalStringMap(body, "labels") ?? {};
    const annotations = optionalStringMap(body, "annotations") ?? {};
    this.checkQuota(quantity, null);

    const pool: StoredNodePool = {
      id: this.uniqueId(`${clusterId}:np-`, (id) => this.data.nodePools.some((p) => p.id === id)),
      uuid: randomUUID(),
      clusterId,
      name,
      hostnamePrefix,
      quantity,
      controlPlane,
      etcd,
      worker,
      nodeTemplateId,
      drainBeforeDelete,
      deleteNotReadyAfterSecs,
      labels,
      annotations,
      createdTS: now,
      removedTS: null,
      nextIndex: 1,
    };
    this.data.nodePools.push(pool);
    this.keepQuantity(pool, now);
    this.dirty = true;
    return pool;
  }

  updateNodePool(id: string, body: Record<string, unknown>, now: number): StoredNodePool {
    const pool = this.nodePool(id);
    if (pool.removedTS !== null) throw new NormanError(409, "Conflict", `node pool ${id} is being removed`);
    checkType(body, "nodePool");
    for (const field of ["clusterId", "name", "hostnamePrefix", "controlPlane", "etcd", "worker"] as const) {
      unchanged(body, field, pool[field]);
    }
    const quantity = this.quantityOf(body, false);
    const nodeTemplateId = this.nodeTemplateIdOf(body);
    const drainBeforeDelete = optionalBoolean(body, "drainBeforeDelete");
    const deleteNotReadyAfterSecs = this.deleteNotReadyOf(body);
    const labels = optionalStringMap(body, "labels");
    const annotations = optionalStringMap(body, "annotations");
    if (quantity !== undefined && quantity > pool.quantity) this.checkQuota(quantity, pool.id);

    if (quantity !== undefined) pool.quantity = quantity;
    if (nodeTemplateId !== undefined) pool.nodeTemplateId = nodeTemplateId;
    if (drainBeforeDelete !== undefined) pool.drainBeforeDelete = drainBeforeDelete;
    if (deleteNotReadyAfterSecs !== undefined) pool.deleteNotReadyAfterSecs = deleteNotReadyAfterSecs;
    if (labels !== undefined) pool.labels = labels;
    if (annotations !== undefined) pool.annotations = annotations;
    this.keepQuantity(pool, now);
    this.dirty = true;
    return pool;
  }

  deleteNodePool(id: string, now: number): StoredNodePool {
    const pool = this.nodePool(id);
    if (pool.removedTS !== null) return pool;
    pool.removedTS = now;
    for (const node of this.data.nodes) if (node.nodePoolId === id && node.removedTS === null) node.removedTS = now;
    this.dirty = true;
    return pool;
  }

  // ---- nodes ---------------------------------------------------------------------------

  deleteNode(id: string, now: number): StoredNode {
    const node = this.node(id);
    if (node.removedTS !== null) return node;
    node.removedTS = now;
    const pool = this.data.nodePools.find((p) => p.id === node.nodePoolId);
    // The pool still wants its quantity, so the replacement appears at once.
    if (pool) this.keepQuantity(pool, now);
    this.dirty = true;
    return node;
  }

  setUnschedulable(id: string, unschedulable: boolean, now: number): StoredNode {
    const node = this.node(id);
    const phase = this.nodePhase(node, now);
    if (phase !== "active") {
      throw new NormanError(409, "Conflict", `node ${id} is ${phase}; ${unschedulable ? "cordon" : "uncordon"} needs an active node`);
    }
    if (node.unschedulable !== unschedulable) {
      node.unschedulable = unschedulable;
      this.touchNode(node);
    }
    return node;
  }

  // ---- faults on nodes and clusters (persisted, unlike the /admin/faults configuration) -------------

  /** A node by id, or by hostname among nodes not being removed. */
  findNode(idOrHostname: string): StoredNode {
    const byId = this.data.nodes.find((n) => n.id === idOrHostname);
    if (byId !== undefined) return byId;
    const matches = this.data.nodes.filter((n) => n.hostname === idOrHostname && n.removedTS === null);
    if (matches.length > 1) throw new NormanError(409, "Conflict", `hostname ${idOrHostname} is used by ${matches.length} nodes; use the node id`);
    const found = matches[0];
    if (found === undefined) throw notFound("node", idOrHostname);
    return found;
  }

  /** Replaces a node's faults: true switches a fault on (keeping its start if it already was), anything else off. */
  setNodeFaults(node: StoredNode, wanted: Partial<Record<keyof NodeFaults, boolean>>, now: number): void {
    const next = noNodeFaults();
    let cleared = false;
    for (const key of Object.keys(next) as Array<keyof NodeFaults>) {
      next[key] = wanted[key] === true ? (node.faults[key] ?? now) : null;
      if (node.faults[key] !== null && next[key] === null) cleared = true;
    }
    node.faults = next;
    if (cleared) node.faultsClearedTS = now;
    this.touchNode(node);
  }

  setClusterFaults(cluster: StoredCluster, wanted: Partial<Record<keyof ClusterFaults, boolean>>, now: number): void {
    const next = noClusterFaults();
    for (const key of Object.keys(next) as Array<keyof ClusterFaults>) {
      next[key] = wanted[key] === true ? (cluster.faults[key] ?? now) : null;
    }
    cluster.faults = next;
    this.dirty = true;
  }

  // ---- bulk seeding (POST /admin/seed) ---------------------------------------------------

  /**
   * Adds `clusters` clusters that are already provisioned and active, each with
   * `pools` node pools holding `nodesPerCluster` registered, Ready nodes in all,
   * dated far enough in the past that no boot or provisioning window is open.
   * Skips the per-object validation, quota and id-collision scans of the /v3
   * routes (one set of taken ids instead), so a fleet of tens of thousands of
   * nodes is made in well under a second.
   */
  seed(
    spec: { clusters: number; nodesPerCluster: number; pools: number; kubernetesVersion: string; namePrefix: string },
    now: number,
  ): { clusters: Array<{ id: string; name: string }>; nodes: number } {
    const { nodesPerCluster, pools: poolCount, kubernetesVersion } = spec;
    // Old enough for every derived window (provisioning, boot, registration) to be over.
    const createdTS = now - 3_600_000 - this.settings.clusterProvisionMs - 2 * this.settings.nodeBootMs;
    const provisionedTS = createdTS + Math.max(this.settings.clusterProvisionMs, this.settings.nodeBootMs);
    const takenNames = new Set(this.data.clusters.filter((c) => c.removedTS === null).map((c) => c.name));
    const takenIds = new Set<string>([...this.data.clusters.map((c) => c.id), ...this.data.nodePools.map((p) => p.id), ...this.data.nodes.map((n) => n.id)]);
    const newId = (prefix: string): string => this.uniqueId(prefix, (id) => takenIds.has(id));
    // How the cluster's nodes are spread: a control pool (etcd + control plane, up to 3 nodes) and worker pools sharing the rest; one pool runs every role.
    const quantities: number[] = [];
    if (poolCount === 1) quantities.push(nodesPerCluster);
    else {
      const control = Math.min(3, Math.max(1, nodesPerCluster - (poolCount - 1)));
      quantities.push(control);
      const rest = nodesPerCluster - control;
      for (let i = 0; i < poolCount - 1; i++) quantities.push(Math.floor(rest / (poolCount - 1)) + (i < rest % (poolCount - 1) ? 1 : 0));
    }
    const made: Array<{ id: string; name: string }> = [];
    let serial = this.data.clusters.length;
    let nodeCount = 0;
    for (let c = 0; c < spec.clusters; c++) {
      let name = `${spec.namePrefix}${serial}`;
      while (takenNames.has(name)) name = `${spec.namePrefix}${++serial}`;
      serial += 1;
      takenNames.add(name);
      const clusterId = newId("c-");
      takenIds.add(clusterId);
      this.data.clusters.push({
        id: clusterId,
        uuid: randomUUID(),
        name,
        description: "seeded",
        labels: {},
        annotations: {},
        kubernetesVersion,
        createdTS,
        removedTS: null,
        provisionedTS,
        faults: noClusterFaults(),
        prometheus: {},
        upgrade: null,
        restore: null,
      });
      made.push({ id: clusterId, name });
      quantities.forEach((quantity, p) => {
        const control = poolCount > 1 && p === 0;
        const poolName = poolCount === 1 ? "all" : control ? "control" : `workers-${p}`;
        const poolId = newId(`${clusterId}:np-`);
        takenIds.add(poolId);
        const pool: StoredNodePool = {
          id: poolId,
          uuid: randomUUID(),
          clusterId,
          name: poolName,
          hostnamePrefix: `${name.slice(0, 30)}-${poolName}-`,
          quantity,
          controlPlane: poolCount === 1 || control,
          etcd: poolCount === 1 || control,
          worker: !control,
          nodeTemplateId: null,
          drainBeforeDelete: true,
          deleteNotReadyAfterSecs: 0,
          labels: {},
          annotations: {},
          createdTS,
          removedTS: null,
          nextIndex: quantity + 1,
        };
        this.data.nodePools.push(pool);
        for (let index = 1; index <= quantity; index++) {
          const nodeId = newId(`${clusterId}:m-`);
          takenIds.add(nodeId);
          const uuid = randomUUID();
          const n = this.data.ipCounter;
          this.data.ipCounter += 1;
          this.data.nodes.push({
            id: nodeId,
            uuid,
            clusterId,
            nodePoolId: poolId,
            hostname: `${pool.hostnamePrefix}${index}`,
            index,
            batchIndex: 0,
            createdTS,
            removedTS: null,
            unschedulable: false,
            controlPlane: pool.controlPlane,
            etcd: pool.etcd,
            worker: pool.worker,
            ipAddress: `10.42.${Math.floor(n / 254) % 256}.${(n % 254) + 1}`,
            version: kubernetesVersion,
            faults: noNodeFaults(),
            faultsClearedTS: null,
            kube: { uid: uuid, registeredTS: null, labels: null, annotations: null, taints: null, resourceVersion: this.nextResourceVersion(), readySinceTS: null },
          });
          nodeCount += 1;
        }
      });
    }
    this.dirty = true;
    return { clusters: made, nodes: nodeCount };
  }
}
