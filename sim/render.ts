/**
 * Turns stored records into the JSON resources Rancher's v3 (Norman) API
 * answers with, states derived for the moment of the request.
 */
import { rfc3339 } from "./http.js";
import { gitVersionOf, SUPPORTED_K8S_VERSIONS, type RancherModel } from "./model.js";
import type { StoredCluster, StoredEtcdBackup, StoredNode, StoredNodePool } from "./state.js";

export { gitVersionOf };

/** What every render needs: where links point and which moment states are derived for. */
export interface RenderContext {
  model: RancherModel;
  /** Base URL from the request's Host, e.g. `http://127.0.0.1:8090`. */
  base: string;
  /** HTTPS base URL of the Kubernetes proxy for this client, e.g. `https://127.0.0.1:8443`. */
  kubeBase: string;
  now: number;
  /**
   * The cluster's own API endpoint (`https://<host>:<port>`), as Rancher reports a
   * downstream cluster's address; undefined when it has none (then the proxy URL is shown).
   */
  apiEndpoint?: (cluster: StoredCluster) => string | undefined;
}

type Resource = Record<string, unknown>;

const CREATOR_ID = "user-admin";
const NODE_CPU = 4;
const NODE_MEMORY_GI = 16;
const NODE_PODS = 110;

function common(type: string, id: string, uuid: string, createdTS: number, removedTS: number | null): Resource {
  const out: Resource = {
    id,
    type,
    baseType: type,
    uuid,
    created: rfc3339(createdTS),
    createdTS,
    creatorId: CREATOR_ID,
  };
  if (removedTS !== null) out.removed = rfc3339(removedTS);
  return out;
}

function versionInfo(kubernetesVersion: string): Resource {
  const gitVersion = gitVersionOf(kubernetesVersion);
  const [major = "", minor = ""] = gitVersion.replace(/^v/, "").split(".");
  return { gitVersion, major, minor, platform: "linux/amd64" };
}

export function renderCluster(ctx: RenderContext, cluster: StoredCluster): Resource {
  const { model, base, now } = ctx;
  const status = model.clusterStatus(cluster, now);
  const self = `${base}/v3/clusters/${cluster.id}`;
  const nodes = model.nodesOfCluster(cluster.id);
  const activeNodes = nodes.filter((n) => model.nodePhase(n, now) === "active").length;
  const capacity = {
    cpu: String(activeNodes * NODE_CPU),
    memory: `${activeNodes * NODE_MEMORY_GI}Gi`,
    pods: String(activeNodes * NODE_PODS),
  };
  const out: Resource = {
    ...common("cluster", cluster.id, cluster.uuid, cluster.createdTS, cluster.removedTS),
    name: cluster.name,
    description: cluster.description,
    state: status.state,
    transitioning: status.transitioning,
    transitioningMessage: status.transitioningMessage,
    labels: { ...cluster.labels },
    annotations: { ...cluster.annotations },
    driver: "rancherKubernetesEngine",
    internal: false,
    apiEndpoint: ctx.apiEndpoint?.(cluster) ?? `${ctx.kubeBase}/k8s/clusters/${cluster.id}`,
    nodeCount: nodes.filter((n) => n.removedTS === null).length,
    rancherKubernetesEngineConfig: {
      type: "rancherKubernetesEngineConfig",
      kubernetesVersion: cluster.kubernetesVersion,
    },
    conditions: [
      {
        type: "Provisioned",
        status: status.provisioned ? "True" : "Unknown",
        lastUpdateTime: rfc3339(cluster.provisionedTS ?? cluster.createdTS),
      },
      status.state === "unavailable"
        ? { type: "Ready", status: "False", reason: "Unavailable", message: status.transitioningMessage, lastUpdateTime: rfc3339(cluster.faults.agentDisconnected ?? now) }
        : { type: "Ready", status: status.ready ? "True" : "Unknown", lastUpdateTime: rfc3339(now) },
    ],
    capacity,
    allocatable: capacity,
    links: {
      self,
      update: self,
      remove: self,
      nodePools: `${base}/v3/nodepools?clusterId=${cluster.id}`,
      nodes: `${base}/v3/nodes?clusterId=${cluster.id}`,
      etcdBackups: `${base}/v3/etcdbackups?clusterId=${cluster.id}`,
    },
    actions: clusterActions(self, status.state),
  };
  if (status.provisioned) out.version = versionInfo(model.apiServerVersion(cluster, now));
  return out;
}

function clusterActions(self: string, state: string): Record<string, string> {
  const actions: Record<string, string> = {};
  // A kubeconfig can be had whenever the cluster has an API server, also while
  // Rancher upgrades or restores it: that is when operators need one most.
  if (state === "active" || state === "updating" || state === "unavailable") {
    actions.generateKubeconfig = `${self}?action=generateKubeconfig`;
  }
  if (state === "active") {
    actions.backupEtcd = `${self}?action=backupEtcd`;
  }
  // Restoring is how a cluster stuck in a failed upgrade is brought back, so it is offered then too.
  if (state === "active" || state === "updating" || state === "unavailable") {
    actions.restoreFromEtcdBackup = `${self}?action=restoreFromEtcdBackup`;
  }
  return actions;
}

export function renderNodePool(ctx: RenderContext, pool: StoredNodePool): Resource {
  const { base } = ctx;
  const self = `${base}/v3/nodepools/${pool.id}`;
  const removing = pool.removedTS !== null;
  return {
    ...common("nodePool", pool.id, pool.uuid, pool.createdTS, pool.removedTS),
    name: pool.name,
    displayName: pool.name,
    state: removing ? "removing" : "active",
    transitioning: removing ? "yes" : "no",
    transitioningMessage: removing ? "removing node pool" : "",
    labels: { ...pool.labels },
    annotations: { ...pool.annotations },
    clusterId: pool.clusterId,
    namespaceId: pool.clusterId,
    hostnamePrefix: pool.hostnamePrefix,
    quantity: pool.quantity,
    controlPlane: pool.controlPlane,
    etcd: pool.etcd,
    worker: pool.worker,
    nodeTemplateId: pool.nodeTemplateId,
    drainBeforeDelete: pool.drainBeforeDelete,
    deleteNotReadyAfterSecs: pool.deleteNotReadyAfterSecs,
    links: {
      self,
      update: self,
      remove: self,
      cluster: `${base}/v3/clusters/${pool.clusterId}`,
      nodes: `${base}/v3/nodes?nodePoolId=${pool.id}`,
    },
    actions: {},
  };
}

export function renderNode(ctx: RenderContext, node: StoredNode): Resource {
  const { model, base, now } = ctx;
  const phase = model.nodePhase(node, now);
  const neverReady = phase === "registering" && model.nodeReadyAt(node) === Infinity;
  const health = model.nodeHealth(node, now);
  const kubeletVersion = gitVersionOf(health.kubeletVersion);
  const self = `${base}/v3/nodes/${node.id}`;

  let state: string = phase;
  let transitioning = phase === "active" ? "no" : "yes";
  let transitioningMessage = "";
  if (phase === "active" && health.unschedulable) state = "cordoned";
  if (phase === "active" && health.unreachable) {
    state = "unavailable";
    transitioning = "error";
    transitioningMessage = health.ready === "Unknown" ? health.message : "node is not reachable";
  }
  if (phase === "provisioning") transitioningMessage = "creating server";
  if (phase === "registering") transitioningMessage = "waiting to register with Kubernetes";
  if (phase === "removing") transitioningMessage = "removing node";

  const ready = phase === "active";
  // An active node mirrors its Kubernetes Ready condition.
  const readyCondition = ready
    ? {
        type: "Ready",
        status: health.ready,
        reason: health.reason,
        message: health.message,
        lastHeartbeatTime: rfc3339(health.heartbeatTS),
        lastTransitionTime: rfc3339(health.transitionTS),
      }
    : phase === "removing"
      ? { type: "Ready", status: "False", reason: "NodeShutdown", message: "node is being removed", lastHeartbeatTime: rfc3339(node.removedTS ?? now) }
      : {
          type: "Ready",
          status: "Unknown",
          reason: neverReady ? "NodeStatusUnknown" : "NodeRegistering",
          message: neverReady ? "Kubelet stopped posting node status." : "node has not registered yet",
          lastHeartbeatTime: rfc3339(node.createdTS),
        };

  const labels: Record<string, string> = {};
  if (phase === "active" || phase === "removing") {
    labels["kubernetes.io/hostname"] = node.hostname;
    if (node.controlPlane) labels["node-role.kubernetes.io/controlplane"] = "true";
    if (node.etcd) labels["node-role.kubernetes.io/etcd"] = "true";
    if (node.worker) labels["node-role.kubernetes.io/worker"] = "true";
  }

  const actions: Record<string, string> = {};
  if (phase === "active") {
    if (node.unschedulable) actions.uncordon = `${self}?action=uncordon`;
    else actions.cordon = `${self}?action=cordon`;
  }

  const capacity = { cpu: String(NODE_CPU), memory: `${NODE_MEMORY_GI}Gi`, pods: String(NODE_PODS) };
  return {
    ...common("node", node.id, node.uuid, node.createdTS, node.removedTS),
    name: node.hostname,
    state,
    transitioning,
    transitioningMessage,
    labels,
    annotations: {},
    clusterId: node.clusterId,
    namespaceId: node.clusterId,
    nodePoolId: node.nodePoolId,
    hostname: node.hostname,
    requestedHostname: node.hostname,
    nodeName: node.hostname,
    ipAddress: node.ipAddress,
    controlPlane: node.controlPlane,
    etcd: node.etcd,
    worker: node.worker,
    unschedulable: node.unschedulable,
    conditions: [
      { type: "Provisioned", status: phase === "provisioning" ? "Unknown" : "True" },
      { type: "Registered", status: ready || phase === "removing" ? "True" : "Unknown" },
      readyCondition,
    ],
    info: {
      kubernetes: { kubeletVersion, kubeProxyVersion: kubeletVersion },
      os: { operatingSystem: "Simulated Linux", kernelVersion: "6.1.0-sim" },
    },
    capacity,
    allocatable: capacity,
    links: {
      self,
      remove: self,
      cluster: `${base}/v3/clusters/${node.clusterId}`,
      nodePool: `${base}/v3/nodepools/${node.nodePoolId}`,
    },
    actions,
  };
}

/** The setting Rancher uses to advertise the Kubernetes versions it can install. */
export function renderVersionsSetting(base: string, startedTS: number): Resource {
  const value = SUPPORTED_K8S_VERSIONS.join(",");
  return {
    ...common("setting", "k8s-versions-current", "00000000-0000-4000-8000-000000000001", startedTS, null),
    name: "k8s-versions-current",
    state: "active",
    transitioning: "no",
    transitioningMessage: "",
    labels: {},
    annotations: {},
    value,
    default: value,
    customized: false,
    source: "default",
    links: { self: `${base}/v3/settings/k8s-versions-current` },
    actions: {},
  };
}

/**
 * `generateKubeconfig` output: a kubeconfig pointing at Rancher's proxy for the
 * cluster over HTTPS, trusting the simulator's self-signed certificate, with a
 * freshly minted token.
 */
export function renderKubeconfig(base: string, cluster: StoredCluster, token: string, caPem: string): Resource {
  const name = cluster.name;
  const config = [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    `- name: "${name}"`,
    "  cluster:",
    `    server: "${base}/k8s/clusters/${cluster.id}"`,
    `    certificate-authority-data: "${Buffer.from(caPem, "utf8").toString("base64")}"`,
    "users:",
    `- name: "${name}"`,
    "  user:",
    `    token: "${token}"`,
    "contexts:",
    `- name: "${name}"`,
    "  context:",
    `    user: "${name}"`,
    `    cluster: "${name}"`,
    `current-context: "${name}"`,
    "",
  ].join("\n");
  return { type: "generateKubeConfigOutput", baseType: "generateKubeConfigOutput", config };
}

/** An etcd snapshot as Rancher's v3 `etcdBackup` resource. */
export function renderEtcdBackup(ctx: RenderContext, backup: StoredEtcdBackup): Resource {
  const { base, now, model } = ctx;
  const self = `${base}/v3/etcdbackups/${backup.id}`;
  const done = now >= backup.createdTS + model.settings.snapshotMs;
  return {
    ...common("etcdBackup", backup.id, backup.uuid, backup.createdTS, null),
    name: backup.name,
    namespaceId: backup.clusterId,
    clusterId: backup.clusterId,
    filename: backup.filename,
    manual: backup.manual,
    state: done ? "active" : "activating",
    transitioning: done ? "no" : "yes",
    transitioningMessage: done ? "" : "taking etcd snapshot",
    status: {
      type: "/v3/schemas/etcdBackupStatus",
      kubernetesVersion: backup.kubernetesVersion,
      conditions: [
        {
          type: "Completed",
          status: done ? "True" : "Unknown",
          lastUpdateTime: rfc3339(done ? backup.createdTS + model.settings.snapshotMs : backup.createdTS),
        },
      ],
    },
    backupConfig: { type: "/v3/schemas/backupConfig", enabled: true, intervalHours: 12, retention: 6, safeTimestamp: false, timeout: 300 },
    labels: { "cattle.io/creator": "norman", ...backup.labels },
    annotations: { ...backup.annotations },
    links: {
      self,
      remove: self,
      cluster: `${base}/v3/clusters/${backup.clusterId}`,
    },
    actions: {},
  };
}
