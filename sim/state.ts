/**
 * Stored records of the Rancher simulator and their JSON persistence.
 *
 * Only facts are stored (what was asked for, and when); every state a client
 * sees is derived from these timestamps at read time, so a restarted simulator
 * carries on exactly where the old one stopped without any timers.
 */
import { randomInt } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

/** A cluster as the simulator stores it. */
export interface StoredCluster {
  id: string;
  uuid: string;
  name: string;
  description: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  kubernetesVersion: string;
  createdTS: number;
  /** Set by DELETE; the record is purged once nodeRemoveMs has passed. */
  removedTS: number | null;
  /**
   * When the cluster first met the "active" conditions. Kept so a provisioned
   * cluster does not fall back to `provisioning` when its nodes are replaced.
   */
  provisionedTS: number | null;
  /** Faults set through `PUT /admin/clusters/<id>/faults`; persisted. */
  faults: ClusterFaults;
  /** Prometheus instant-query answers set through `PUT /admin/clusters/<id>/prometheus`; persisted. */
  prometheus: PrometheusQueries;
  /** The Kubernetes upgrade in progress (or stalled), if any. */
  upgrade: StoredUpgrade | null;
  /** The etcd restore in progress, if any; cleared once it finished. */
  restore: StoredRestore | null;
}

/** Cluster faults; each is the time it was switched on, or null. */
export interface ClusterFaults {
  apiServerDown: number | null;
  agentDisconnected: number | null;
  restoreStuck: number | null;
  /** `/readyz` fails its etcd check (500) while everything else works. */
  apiServerNotReady: number | null;
  /** ComponentStatus `etcd-0` reports Healthy False. */
  componentsUnhealthy: number | null;
}

/** One series of an instant-query answer: its labels and its value. */
export interface PrometheusSample {
  metric: Record<string, string>;
  value: number;
}

/** The answers a cluster's Prometheus gives, by exact PromQL expression. */
export type PrometheusQueries = Record<string, PrometheusSample[]>;

/**
 * A rolling Kubernetes upgrade: node `order[i]` is upgraded during
 * `[startedTS + i * nodeUpgradeMs, startedTS + (i + 1) * nodeUpgradeMs)`.
 */
export interface StoredUpgrade {
  fromVersion: string;
  toVersion: string;
  startedTS: number;
  /** Node ids, etcd/control-plane nodes first, then workers, each group by hostname. */
  order: string[];
  /** How many of `order` are etcd/control-plane nodes; the API server runs the new version once they are done. */
  controlCount: number;
  /** Index in `order` of the node the upgrade stalled at (failUpgradeNodes), or null. */
  failedIndex: number | null;
}

export interface StoredRestore {
  backupId: string;
  backupName: string;
  startedTS: number;
}

/** A node pool as the simulator stores it. */
export interface StoredNodePool {
  id: string;
  uuid: string;
  clusterId: string;
  name: string;
  hostnamePrefix: string;
  quantity: number;
  controlPlane: boolean;
  etcd: boolean;
  worker: boolean;
  nodeTemplateId: string | null;
  drainBeforeDelete: boolean;
  deleteNotReadyAfterSecs: number;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  createdTS: number;
  removedTS: number | null;
  /** Next hostname number; only ever grows so hostnames are never reused. */
  nextIndex: number;
}

/** A node as the simulator stores it. */
export interface StoredNode {
  id: string;
  uuid: string;
  clusterId: string;
  nodePoolId: string;
  hostname: string;
  /** The number in the hostname. */
  index: number;
  /** Position within the batch the pool created it in; staggers registration. */
  batchIndex: number;
  createdTS: number;
  removedTS: number | null;
  unschedulable: boolean;
  controlPlane: boolean;
  etcd: boolean;
  worker: boolean;
  ipAddress: string;
  /** Kubernetes version the kubelet runs outside an upgrade of its cluster. */
  version: string;
  /** Faults set through `PUT /admin/nodes/<id>/faults`; persisted. */
  faults: NodeFaults;
  /** When faults were last cleared; the Ready condition's transition time after that. */
  faultsClearedTS: number | null;
  /** The Kubernetes Node object's own facts. */
  kube: StoredNodeKube;
}

/** Node faults; each is the time it was switched on, or null. */
export interface NodeFaults {
  notReady: number | null;
  kubeletStopped: number | null;
  unreachable: number | null;
}

/** What the Kubernetes side stores about a node beyond its Rancher record. */
export interface StoredNodeKube {
  uid: string;
  /** When the Node object (re-)registered; null means when the Rancher node became active. */
  registeredTS: number | null;
  /** Labels, annotations and taints once written through the Kubernetes API; null means the kubelet's defaults. */
  labels: Record<string, string> | null;
  annotations: Record<string, string> | null;
  taints: Record<string, unknown>[] | null;
  resourceVersion: number;
  /** When the node last became Ready after an upgrade. */
  readySinceTS: number | null;
}

/** One stored Kubernetes object of a downstream cluster. */
export interface StoredKubeObject {
  /** `<group>/<plural>`, "" for the core group, e.g. "/pods" or "apps/deployments". */
  key: string;
  /** Namespace, "" for cluster-scoped objects. */
  ns: string;
  name: string;
  obj: Record<string, unknown>;
  /** A Deployment's, ReplicaSet's, StatefulSet's or DaemonSet's rollout bookkeeping; never served. */
  rollout?: StoredRollout;
}

/** Where a workload's pretend rollout stands; its served status is derived from this and the clock. */
export interface StoredRollout {
  /** When the rollout started: creation, a new pod template or replica count, or a lifted crash loop. */
  startedTS: number;
  /** Ready replicas carried into the rollout (a pure scaling keeps those already ready, up to the new count). */
  baseReady: number;
  /** The phase the stored status shows ("progressing", "ready", "crashloop", with "/stalled" past a Deployment's deadline). */
  shown: string;
}

/** An etcd snapshot, with the Kubernetes objects and version it captured. */
export interface StoredEtcdBackup {
  id: string;
  uuid: string;
  name: string;
  clusterId: string;
  filename: string;
  manual: boolean;
  createdTS: number;
  kubernetesVersion: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  objects: StoredKubeObject[];
}

/** Everything the simulator persists. */
export interface SimData {
  clusters: StoredCluster[];
  nodePools: StoredNodePool[];
  nodes: StoredNode[];
  /** Counter behind the made-up node IP addresses. */
  ipCounter: number;
  /** Kubernetes objects per cluster id. */
  kube: Record<string, StoredKubeObject[]>;
  etcdBackups: StoredEtcdBackup[];
  /** The last Kubernetes resourceVersion handed out (one counter for all clusters). */
  kubeResourceVersion: number;
  /** Counter behind the made-up pod and service IP addresses. */
  kubeIpCounter: number;
}

const FILE_KIND = "kumo-rancher-simulator-state";
const FILE_VERSION = 2;

/** A fresh, empty state. */
export function emptyState(): SimData {
  return { clusters: [], nodePools: [], nodes: [], ipCounter: 0, kube: {}, etcdBackups: [], kubeResourceVersion: 0, kubeIpCounter: 0 };
}

export function noNodeFaults(): NodeFaults {
  return { notReady: null, kubeletStopped: null, unreachable: null };
}

export function noClusterFaults(): ClusterFaults {
  return { apiServerDown: null, agentDisconnected: null, restoreStuck: null, apiServerNotReady: null, componentsUnhealthy: null };
}

/** Fills in what older files (version 1 before the Kubernetes API existed, or before later fields) lack. */
function upgradeData(data: SimData): SimData {
  data.kube ??= {};
  data.etcdBackups ??= [];
  data.kubeResourceVersion ??= 0;
  data.kubeIpCounter ??= 0;
  for (const cluster of data.clusters) {
    // Faults added later are off in older files.
    cluster.faults = { ...noClusterFaults(), ...cluster.faults };
    cluster.prometheus ??= {};
    cluster.upgrade ??= null;
    cluster.restore ??= null;
  }
  for (const backup of data.etcdBackups) {
    backup.labels ??= {};
    backup.annotations ??= {};
  }
  for (const node of data.nodes) {
    node.version ??= data.clusters.find((c) => c.id === node.clusterId)?.kubernetesVersion ?? "";
    node.faults ??= noNodeFaults();
    node.faultsClearedTS ??= null;
    node.kube ??= { uid: node.uuid, registeredTS: null, labels: null, annotations: null, taints: null, resourceVersion: 0, readySinceTS: null };
  }
  return data;
}

/**
 * Reads the state file, or returns an empty state when it does not exist.
 * A file that exists but cannot be understood is an error rather than being
 * silently replaced, so a bad edit never wipes somebody's simulated clusters.
 */
export function loadState(file: string): SimData {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return emptyState();
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new Error(`rancher simulator state file ${file} is not valid JSON: ${(err as Error).message}`);
  }
  const problem = describeProblem(parsed);
  if (problem !== null) throw new Error(`rancher simulator state file ${file} is not usable: ${problem}`);
  return upgradeData((parsed as { data: SimData }).data);
}

function describeProblem(parsed: unknown): string | null {
  if (typeof parsed !== "object" || parsed === null) return "top level is not an object";
  const file = parsed as Record<string, unknown>;
  if (file.kind !== FILE_KIND) return `kind is not "${FILE_KIND}"`;
  if (file.version !== FILE_VERSION && file.version !== 1) return `unsupported version ${String(file.version)}`;
  const data = file.data as Record<string, unknown> | undefined;
  if (typeof data !== "object" || data === null) return "data is missing";
  for (const key of ["clusters", "nodePools", "nodes"]) {
    const list = data[key];
    if (!Array.isArray(list)) return `data.${key} is not an array`;
    for (const item of list) {
      if (typeof item !== "object" || item === null || typeof (item as { id?: unknown }).id !== "string") {
        return `data.${key} holds an entry without an id`;
      }
    }
  }
  if (typeof data.ipCounter !== "number") return "data.ipCounter is not a number";
  if (data.kube !== undefined && (typeof data.kube !== "object" || data.kube === null || Array.isArray(data.kube))) return "data.kube is not an object";
  if (data.etcdBackups !== undefined && !Array.isArray(data.etcdBackups)) return "data.etcdBackups is not an array";
  return null;
}

/**
 * Writes the whole state atomically: a reader (or a crash) sees either the
 * old file or the new one, never half of each.
 */
export function saveState(file: string, data: SimData): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${randomId(8)}.tmp`;
  const text = JSON.stringify({ kind: FILE_KIND, version: FILE_VERSION, savedAt: new Date().toISOString(), data });
  try {
    writeFileSync(tmp, text + "\n", "utf8");
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/** Random lowercase alphanumeric string, as Rancher uses in its ids. */
export function randomId(length: number): string {
  let out = "";
  for (let i = 0; i < length; i++) out += ALPHABET.charAt(randomInt(ALPHABET.length));
  return out;
}
