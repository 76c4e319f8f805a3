import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import * as k8s from "@kubernetes/client-node";
import { startRancherSim, type RancherSim } from "../sim/rancher.js";

const TOKEN = "sim-k8s-test-token";
const V130 = "v1.30.6-rancher1-1";
const V131 = "v1.31.2-rancher1-1";
const TIMING = {
  clusterProvisionMs: 100,
  nodeBootMs: 200,
  nodeRemoveMs: 100,
  snapshotMs: 100,
  restoreMs: 300,
  nodeMonitorGraceMs: 300,
  nodeUpgradeMs: 250,
  workloadReadyMs: 0,
};
const MERGE = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch);
const STRATEGIC = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.StrategicMergePatch);

// Response bodies are free-form JSON; the assertions below check their shape.
 
type Json = any;
interface Res {
  status: number;
  body: Json;
  contentType: string;
}

async function call(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Res> {
  const h: Record<string, string> = { authorization: `Bearer ${TOKEN}`, ...headers };
  if (body !== undefined) h["content-type"] ??= "application/json";
  const res = await fetch(base + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  const contentType = res.headers.get("content-type") ?? "";
  return { status: res.status, body: contentType.startsWith("application/json") && text !== "" ? JSON.parse(text) : text, contentType };
}

/** Polls until `done` holds, failing with the last value after `timeoutMs`. */
async function waitFor<T>(what: string, probe: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last value: ${JSON.stringify(value)}`);
    await delay(20);
  }
}

/** The Kubernetes Status of a failed client call. */
async function apiError(promise: Promise<unknown>, code: number): Promise<Json> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof k8s.ApiException, `expected an ApiException, got ${String(err)}`);
    assert.equal(err.code, code, String(err.body));
    return typeof err.body === "string" && err.body !== "" ? JSON.parse(err.body) : err.body;
  }
  assert.fail(`expected the call to fail with ${code}`);
}

// ---- a minimal protobuf writer, to send bodies the way client-go's typed clients do ----

function pbVarint(n: number): Buffer {
  const out: number[] = [];
  let v = n;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}
function pbBytes(field: number, payload: Buffer | string): Buffer {
  const bytes = typeof payload === "string" ? Buffer.from(payload, "utf8") : payload;
  return Buffer.concat([pbVarint((field << 3) | 2), pbVarint(bytes.length), bytes]);
}
function pbMap(field: number, entries: Record<string, Buffer | string>): Buffer {
  return Buffer.concat(Object.entries(entries).map(([k, v]) => pbBytes(field, Buffer.concat([pbBytes(1, k), pbBytes(2, v)]))));
}
/** `k8s\0` + runtime.Unknown{typeMeta, raw}: what client-go sends as application/vnd.kubernetes.protobuf. */
function pbEnvelope(apiVersion: string, kind: string, raw: Buffer): Buffer {
  const typeMeta = Buffer.concat([pbBytes(1, apiVersion), pbBytes(2, kind)]);
  return Buffer.concat([Buffer.from([0x6b, 0x38, 0x73, 0x00]), pbBytes(1, typeMeta), pbBytes(2, raw)]);
}

const ready = (node: k8s.V1Node): k8s.V1NodeCondition | undefined => node.status?.conditions?.find((c) => c.type === "Ready");

interface Pool {
  name: string;
  quantity: number;
  controlPlane?: boolean;
  etcd?: boolean;
  worker?: boolean;
}

interface Clients {
  clusterId: string;
  kubeconfig: string;
  kc: k8s.KubeConfig;
  core: k8s.CoreV1Api;
  apps: k8s.AppsV1Api;
  policy: k8s.PolicyV1Api;
  custom: k8s.CustomObjectsApi;
  apiext: k8s.ApiextensionsV1Api;
}

function clients(clusterId: string, kubeconfig: string): Clients {
  const kc = new k8s.KubeConfig();
  kc.loadFromString(kubeconfig);
  return {
    clusterId,
    kubeconfig,
    kc,
    core: kc.makeApiClient(k8s.CoreV1Api),
    apps: kc.makeApiClient(k8s.AppsV1Api),
    policy: kc.makeApiClient(k8s.PolicyV1Api),
    custom: kc.makeApiClient(k8s.CustomObjectsApi),
    apiext: kc.makeApiClient(k8s.ApiextensionsV1Api),
  };
}

describe("rancher simulator kubernetes api", () => {
  let sim: RancherSim;
  let dir: string;
  const api = (method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<Res> => call(sim.url, method, path, body, headers);

  /** Creates a cluster with the given pools (default: one all-roles node), waits until it and its nodes are active, and returns clients for it. */
  async function activeCluster(name: string, pools: Pool[] = [{ name: "n", quantity: 1, controlPlane: true, etcd: true, worker: true }], version = V130): Promise<Clients> {
    const created = await api("POST", "/v3/clusters", { name, rancherKubernetesEngineConfig: { kubernetesVersion: version } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const clusterId: string = created.body.id;
    for (const pool of pools) {
      const res = await api("POST", "/v3/nodepools", { clusterId, hostnamePrefix: pool.name, controlPlane: false, etcd: false, worker: false, ...pool });
      assert.equal(res.status, 201, JSON.stringify(res.body));
    }
    const total = pools.reduce((sum, p) => sum + p.quantity, 0);
    await waitFor("cluster active", () => api("GET", `/v3/clusters/${clusterId}`), (r) => r.body.state === "active");
    await waitFor(
      "nodes active",
      async () => (await api("GET", `/v3/nodes?clusterId=${clusterId}`)).body.data as Json[],
      (nodes) => nodes.length === total && nodes.every((n) => n.state === "active"),
    );
    const kubeconfig = await api("POST", `/v3/clusters/${clusterId}?action=generateKubeconfig`);
    assert.equal(kubeconfig.status, 200);
    return clients(clusterId, kubeconfig.body.config);
  }

  async function rancherNode(clusterId: string, hostname: string): Promise<Json> {
    const res = await api("GET", `/v3/nodes?clusterId=${clusterId}&hostname=${hostname}`);
    const node = res.body.data[0];
    assert.ok(node, `rancher node ${hostname}`);
    return node;
  }

  async function cluster(clusterId: string): Promise<Json> {
    return (await api("GET", `/v3/clusters/${clusterId}`)).body;
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "kumo-sim-k8s-test-"));
    sim = await startRancherSim({ port: 0, stateFile: join(dir, "shared.json"), token: TOKEN, timing: TIMING });
  });

  after(async () => {
    await sim?.close();
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(async () => {
    assert.equal((await api("POST", "/admin/reset")).status, 200);
  });

  test("the generated kubeconfig reaches the cluster's API, which serves version, health and discovery", async () => {
    const c = await activeCluster("disco");
    const version = await c.kc.makeApiClient(k8s.VersionApi).getCode();
    assert.equal(version.gitVersion, "v1.30.6");
    assert.equal(version.major, "1");
    assert.equal(version.minor, "30");
    assert.equal(version.platform, "linux/amd64");

    const core = await c.core.getAPIResources();
    assert.equal(core.groupVersion, "v1");
    const byName = new Map(core.resources.map((r) => [r.name, r]));
    for (const name of ["nodes", "nodes/status", "pods", "pods/eviction", "namespaces", "componentstatuses", "configmaps", "secrets", "services", "serviceaccounts", "events", "endpoints", "persistentvolumeclaims"]) {
      assert.ok(byName.has(name), name);
    }
    assert.equal(byName.get("nodes")?.namespaced, false);
    assert.equal(byName.get("pods")?.namespaced, true);
    assert.equal(byName.get("pods")?.kind, "Pod");
    assert.equal(byName.get("pods/eviction")?.group, "policy");
    assert.ok(byName.get("configmaps")?.verbs.includes("watch"));

    const groups = await c.kc.makeApiClient(k8s.ApisApi).getAPIVersions();
    const groupVersions = groups.groups.flatMap((g) => g.versions.map((v) => v.groupVersion));
    for (const gv of ["apps/v1", "policy/v1", "rbac.authorization.k8s.io/v1", "batch/v1", "networking.k8s.io/v1", "apiextensions.k8s.io/v1", "serving.knative.dev/v1"]) {
      assert.ok(groupVersions.includes(gv), gv);
    }
    const apps = await c.apps.getAPIResources();
    assert.equal(apps.resources.find((r) => r.name === "deployments")?.kind, "Deployment");
    const rbac = await c.kc.makeApiClient(k8s.RbacAuthorizationV1Api).getAPIResources();
    assert.equal(rbac.resources.find((r) => r.name === "clusterroles")?.namespaced, false);
    assert.equal(rbac.resources.find((r) => r.name === "roles")?.namespaced, true);

    // A client that prefers aggregated discovery gets the legacy lists as plain JSON.
    const aggregated = await api("GET", `/k8s/clusters/${c.clusterId}/apis`, undefined, {
      accept: "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json",
    });
    assert.equal(aggregated.status, 200);
    assert.equal(aggregated.contentType, "application/json");
    assert.equal(aggregated.body.kind, "APIGroupList");
    assert.equal((await api("GET", `/k8s/clusters/${c.clusterId}/api`)).body.versions[0], "v1");

    const livez = await api("GET", `/k8s/clusters/${c.clusterId}/livez`);
    assert.equal(livez.status, 200);
    assert.equal(livez.body, "ok");
    assert.match(livez.contentType, /^text\/plain/);
    assert.equal((await api("GET", `/k8s/clusters/${c.clusterId}/readyz`)).body, "ok");

    // The kubeconfig carries a minted token; the simulator's API token works too, anything else is 401.
    assert.match(c.kubeconfig, /token: "kubeconfig-user-[a-z0-9]{5}:[0-9a-f]{54}"/);
    const denied = await api("GET", `/k8s/clusters/${c.clusterId}/api/v1/nodes`, undefined, { authorization: "Bearer nope" });
    assert.equal(denied.status, 401);
    assert.deepEqual(denied.body, { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: "Unauthorized", reason: "Unauthorized", code: 401 });
    const forged = c.kubeconfig.replace(/(token: "kubeconfig-user-[a-z0-9]{5}:)[0-9a-f]/, "$1z");
    await apiError(clients(c.clusterId, forged).core.listNode(), 401);

    const unknown = await api("GET", "/k8s/clusters/c-zzzzz/api/v1/nodes");
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.kind, "Status");
    assert.equal(unknown.body.reason, "NotFound");
    assert.equal((await api("GET", `/k8s/clusters/${c.clusterId}/apis/nope.example.com/v1`)).status, 404);
  });

  test("nodes appear in Kubernetes as their Rancher nodes register, with roles, capacity and selectors", async () => {
    const c = await activeCluster("nodes", [
      { name: "cp", quantity: 1, controlPlane: true, etcd: true },
      { name: "w", quantity: 1, worker: true },
    ]);
    const nodes = await c.core.listNode();
    assert.deepEqual(nodes.items.map((n) => n.metadata?.name), ["cp1", "w1"]);
    const cp1 = nodes.items[0] as k8s.V1Node;
    assert.equal(cp1.metadata?.labels?.["kubernetes.io/hostname"], "cp1");
    assert.equal(cp1.metadata?.labels?.["node-role.kubernetes.io/etcd"], "true");
    assert.equal(cp1.metadata?.labels?.["node-role.kubernetes.io/controlplane"], "true");
    assert.equal(cp1.metadata?.labels?.["node-role.kubernetes.io/worker"], undefined);
    assert.deepEqual(cp1.spec?.taints?.map((t) => `${t.key}=${t.value}:${t.effect}`), [
      "node-role.kubernetes.io/controlplane=true:NoSchedule",
      "node-role.kubernetes.io/etcd=true:NoExecute",
    ]);
    assert.equal(cp1.status?.capacity?.cpu, "4");
    assert.equal(cp1.status?.capacity?.memory, "16Gi");
    assert.equal(cp1.status?.capacity?.pods, "110");
    assert.equal(cp1.status?.allocatable?.pods, "110");
    assert.equal(cp1.status?.nodeInfo?.kubeletVersion, "v1.30.6");
    assert.deepEqual(cp1.status?.conditions?.map((x) => `${x.type}=${x.status}`), ["MemoryPressure=False", "DiskPressure=False", "PIDPressure=False", "Ready=True"]);
    const heartbeat = ready(cp1)?.lastHeartbeatTime;
    assert.ok(heartbeat instanceof Date && Math.abs(Date.now() - heartbeat.getTime()) < 2000, "heartbeat is recent");
    assert.equal(cp1.status?.addresses?.find((a) => a.type === "InternalIP")?.address, (await rancherNode(c.clusterId, "cp1")).ipAddress);
    assert.match(cp1.metadata?.resourceVersion ?? "", /^\d+$/);

    const workers = await c.core.listNode({ labelSelector: "node-role.kubernetes.io/worker=true" });
    assert.deepEqual(workers.items.map((n) => n.metadata?.name), ["w1"]);
    const notWorkers = await c.core.listNode({ labelSelector: "!node-role.kubernetes.io/worker" });
    assert.deepEqual(notWorkers.items.map((n) => n.metadata?.name), ["cp1"]);
    const byName = await c.core.listNode({ fieldSelector: "metadata.name=w1" });
    assert.deepEqual(byName.items.map((n) => n.metadata?.name), ["w1"]);
    assert.equal((await c.core.readNode({ name: "w1" })).metadata?.name, "w1");
    const missing = await apiError(c.core.readNode({ name: "w9" }), 404);
    assert.equal(missing.message, 'nodes "w9" not found');

    // Scale up: the new nodes only appear once they have registered.
    const pool = (await api("GET", `/v3/nodepools?clusterId=${c.clusterId}&name=w`)).body.data[0];
    assert.equal((await api("PUT", `/v3/nodepools/${pool.id}`, { quantity: 3 })).status, 200);
    assert.deepEqual((await c.core.listNode()).items.map((n) => n.metadata?.name), ["cp1", "w1"]);
    const grown = await waitFor("new nodes registered", () => c.core.listNode(), (list) => list.items.length === 4);
    assert.deepEqual(grown.items.map((n) => n.metadata?.name), ["cp1", "w1", "w2", "w3"]);
    for (const node of await (await api("GET", `/v3/nodes?nodePoolId=${pool.id}`)).body.data) assert.equal(node.state, "active");
  });

  test("cordoning through Kubernetes shows in Rancher and Rancher's cordon shows in Kubernetes", async () => {
    const c = await activeCluster("cordon");
    const before = await c.core.readNode({ name: "n1" });
    const patched = await c.core.patchNode({ name: "n1", body: { spec: { unschedulable: true } } }, MERGE);
    assert.equal(patched.spec?.unschedulable, true);
    assert.ok(patched.spec?.taints?.some((t) => t.key === "node.kubernetes.io/unschedulable" && t.effect === "NoSchedule"));
    assert.ok(Number(patched.metadata?.resourceVersion) > Number(before.metadata?.resourceVersion), "resourceVersion grows");
    let node = await rancherNode(c.clusterId, "n1");
    assert.equal(node.state, "cordoned");
    assert.equal(node.unschedulable, true);
    assert.ok(node.actions.uncordon);

    assert.equal((await api("POST", `/v3/nodes/${node.id}?action=uncordon`)).status, 200);
    const uncordoned = await c.core.readNode({ name: "n1" });
    assert.equal(uncordoned.spec?.unschedulable, undefined);
    assert.ok(Number(uncordoned.metadata?.resourceVersion) > Number(patched.metadata?.resourceVersion));
    assert.equal((await api("POST", `/v3/nodes/${node.id}?action=cordon`)).status, 200);
    assert.equal((await c.core.readNode({ name: "n1" })).spec?.unschedulable, true);

    // Strategic merge patch (what kubectl sends) uncordons and labels; a JSON patch (the client's default) too.
    await c.core.patchNode({ name: "n1", body: { spec: { unschedulable: false }, metadata: { labels: { tier: "gold" }, annotations: { note: "x" } } } }, STRATEGIC);
    node = await rancherNode(c.clusterId, "n1");
    assert.equal(node.state, "active");
    assert.equal(node.unschedulable, false);
    const labelled = await c.core.patchNode({ name: "n1", body: [{ op: "add", path: "/spec/taints", value: [{ key: "dedicated", value: "db", effect: "NoSchedule" }] }] });
    assert.equal(labelled.metadata?.labels?.tier, "gold");
    assert.equal(labelled.metadata?.labels?.["kubernetes.io/hostname"], "n1");
    assert.equal(labelled.metadata?.annotations?.note, "x");
    assert.deepEqual(labelled.spec?.taints?.map((t) => t.key), ["dedicated"]);
    assert.equal((await c.core.listNode({ labelSelector: "tier in (gold,silver)" })).items.length, 1);

    // A stale resourceVersion is a conflict.
    const conflict = await apiError(c.core.replaceNode({ name: "n1", body: { ...labelled, metadata: { ...labelled.metadata, resourceVersion: before.metadata?.resourceVersion } } }), 409);
    assert.equal(conflict.reason, "Conflict");

    // Deleting the Node object leaves the Rancher node; the kubelet registers a fresh object.
    const deleted = await c.core.deleteNode({ name: "n1" });
    assert.ok(deleted);
    await apiError(c.core.readNode({ name: "n1" }), 404);
    assert.equal((await rancherNode(c.clusterId, "n1")).state, "active");
    const back = await waitFor("node registered again", () => c.core.listNode(), (list) => list.items.length === 1);
    const fresh = back.items[0] as k8s.V1Node;
    assert.notEqual(fresh.metadata?.uid, before.metadata?.uid);
    assert.equal(fresh.metadata?.labels?.tier, undefined);
    assert.equal(fresh.spec?.taints, undefined);
  });

  test("node faults: notReady, kubeletStopped after the grace period, and unreachable, mirrored in Rancher", async () => {
    const c = await activeCluster("faulty", [{ name: "n", quantity: 3, controlPlane: true, etcd: true, worker: true }]);
    const [n1, n2, n3] = await Promise.all(["n1", "n2", "n3"].map((h) => rancherNode(c.clusterId, h)));

    const set = await api("PUT", `/admin/nodes/${n1.id}/faults`, { notReady: true });
    assert.equal(set.status, 200);
    assert.equal(set.body.notReady, true);
    const cond = ready(await c.core.readNode({ name: "n1" }));
    assert.equal(cond?.status, "False");
    assert.equal(cond?.reason, "KubeletNotReady");
    let rancher = await rancherNode(c.clusterId, "n1");
    assert.deepEqual(
      (({ status, reason }) => ({ status, reason }))(rancher.conditions.find((x: Json) => x.type === "Ready")),
      { status: "False", reason: "KubeletNotReady" },
    );
    assert.equal(rancher.state, "active");

    // kubeletStopped by hostname: the heartbeat freezes, and after nodeMonitorGraceMs Ready turns Unknown.
    const stoppedAt = Date.now();
    assert.equal((await api("PUT", "/admin/nodes/n2/faults", { kubeletStopped: true })).body.nodeId, n2.id);
    await delay(50);
    let node2 = await c.core.readNode({ name: "n2" });
    assert.equal(ready(node2)?.status, "True", "still True within the grace period");
    const frozen = ready(node2)?.lastHeartbeatTime?.getTime() ?? 0;
    assert.ok(Math.abs(frozen - stoppedAt) < 1500, "heartbeat frozen at the moment the kubelet stopped");
    node2 = await waitFor("n2 Ready Unknown", () => c.core.readNode({ name: "n2" }), (n) => ready(n)?.status === "Unknown", 3000);
    assert.ok(Date.now() - stoppedAt >= TIMING.nodeMonitorGraceMs);
    assert.equal(ready(node2)?.reason, "NodeStatusUnknown");
    assert.equal(ready(node2)?.lastHeartbeatTime?.getTime(), frozen);
    assert.equal(node2.status?.conditions?.find((x) => x.type === "MemoryPressure")?.status, "Unknown");
    assert.ok(node2.spec?.taints?.some((t) => t.key === "node.kubernetes.io/unreachable" && t.effect === "NoExecute"));
    assert.equal((await rancherNode(c.clusterId, "n2")).conditions.find((x: Json) => x.type === "Ready").status, "Unknown");
    assert.equal((await rancherNode(c.clusterId, "n2")).state, "active");

    // unreachable: the Rancher node is unavailable at once, Kubernetes goes Unknown after the grace period.
    await api("PUT", `/admin/nodes/${n3.id}/faults`, { unreachable: true });
    rancher = await rancherNode(c.clusterId, "n3");
    assert.equal(rancher.state, "unavailable");
    await waitFor("n3 Ready Unknown", () => c.core.readNode({ name: "n3" }), (n) => ready(n)?.status === "Unknown", 3000);
    assert.equal((await rancherNode(c.clusterId, "n3")).conditions.find((x: Json) => x.type === "Ready").status, "Unknown");

    // Clearing brings them back.
    assert.equal((await api("DELETE", `/admin/nodes/${n1.id}/faults`)).body.notReady, false);
    await api("DELETE", "/admin/nodes/n2/faults");
    await api("DELETE", "/admin/nodes/n3/faults");
    for (const name of ["n1", "n2", "n3"]) assert.equal(ready(await c.core.readNode({ name }))?.status, "True", name);
    assert.equal((await rancherNode(c.clusterId, "n3")).state, "active");
    assert.equal((await api("PUT", `/admin/nodes/${n1.id}/faults`, { typo: true })).status, 400);
    assert.equal((await api("PUT", "/admin/nodes/nope/faults", { notReady: true })).status, 404);
  });

  test("cluster faults: apiServerDown answers 503 and agentDisconnected makes the cluster unavailable", async () => {
    const c = await activeCluster("outage");
    assert.equal((await api("PUT", `/admin/clusters/${c.clusterId}/faults`, { apiServerDown: true })).body.apiServerDown, true);
    const livez = await api("GET", `/k8s/clusters/${c.clusterId}/livez`);
    assert.equal(livez.status, 503);
    assert.equal((await api("GET", `/k8s/clusters/${c.clusterId}/readyz`)).status, 503);
    const down = await apiError(c.core.listNode(), 503);
    assert.equal(down.kind, "Status");
    assert.equal(down.reason, "ServiceUnavailable");
    assert.equal((await api("GET", `/k8s/clusters/${c.clusterId}/version`)).status, 503);
    assert.equal((await cluster(c.clusterId)).state, "active", "Rancher itself still sees the cluster");

    await api("PUT", `/admin/clusters/${c.clusterId}/faults`, { agentDisconnected: true });
    const gone = await cluster(c.clusterId);
    assert.equal(gone.state, "unavailable");
    assert.match(gone.transitioningMessage, /Cluster agent is not connected/);
    const readyCondition = gone.conditions.find((x: Json) => x.type === "Ready");
    assert.equal(readyCondition.status, "False");
    assert.equal((await api("GET", `/admin/clusters/${c.clusterId}/faults`)).body.apiServerDown, false, "PUT replaces the cluster's faults");
    await apiError(c.core.listNode(), 503);

    await api("DELETE", `/admin/clusters/${c.clusterId}/faults`);
    assert.equal((await cluster(c.clusterId)).state, "active");
    assert.equal((await c.core.listNode()).items.length, 1);
    assert.equal((await api("GET", `/k8s/clusters/${c.clusterId}/livez`)).status, 200);
  });

  test("namespaces and generic objects: create, get, list by label, replace, patch, conflict, delete", async () => {
    const c = await activeCluster("objects");
    const namespaces = (await c.core.listNamespace()).items.map((n) => n.metadata?.name);
    for (const ns of ["default", "kube-system", "kube-public", "cattle-system"]) assert.ok(namespaces.includes(ns), ns);

    const ns = await c.core.createNamespace({ body: { metadata: { name: "app", labels: { team: "a" } } } });
    assert.equal(ns.status?.phase, "Active");
    assert.match(ns.metadata?.uid ?? "", /^[0-9a-f-]{36}$/);
    assert.equal((await apiError(c.core.createNamespace({ body: { metadata: { name: "app" } } }), 409)).reason, "AlreadyExists");
    const noNs = await apiError(c.core.createNamespacedConfigMap({ namespace: "nope", body: { metadata: { name: "x" } } }), 404);
    assert.equal(noNs.message, 'namespaces "nope" not found');

    const cm = await c.core.createNamespacedConfigMap({ namespace: "app", body: { metadata: { name: "one", labels: { tier: "web", env: "prod" } }, data: { a: "1" } } });
    assert.equal(cm.metadata?.namespace, "app");
    assert.equal(cm.metadata?.generation, 1);
    assert.ok(cm.metadata?.creationTimestamp instanceof Date);
    await c.core.createNamespacedConfigMap({ namespace: "app", body: { metadata: { name: "two", labels: { tier: "db", env: "prod" } }, data: { b: "2" } } });
    await c.core.createNamespacedConfigMap({ namespace: "app", body: { metadata: { name: "three", labels: { tier: "web" } } } });
    const names = async (labelSelector: string): Promise<string[]> =>
      (await c.core.listNamespacedConfigMap({ namespace: "app", labelSelector })).items.map((x) => x.metadata?.name ?? "");
    assert.deepEqual(await names("tier=web"), ["one", "three"]);
    assert.deepEqual(await names("tier!=web"), ["two"]);
    assert.deepEqual(await names("tier in (db, web),env"), ["one", "two"]);
    assert.deepEqual(await names("tier notin (web)"), ["two"]);
    assert.deepEqual(await names("!env"), ["three"]);
    assert.equal((await c.core.listConfigMapForAllNamespaces({ labelSelector: "env=prod" })).items.length, 2);
    assert.equal((await apiError(c.core.listNamespacedConfigMap({ namespace: "app", labelSelector: "a in (b" }), 400)).reason, "BadRequest");

    // Replace with the current resourceVersion works; with a stale one it is a 409 Conflict.
    const replaced = await c.core.replaceNamespacedConfigMap({ name: "one", namespace: "app", body: { ...cm, data: { a: "2" } } });
    assert.equal(replaced.data?.a, "2");
    assert.ok(Number(replaced.metadata?.resourceVersion) > Number(cm.metadata?.resourceVersion));
    assert.equal(replaced.metadata?.uid, cm.metadata?.uid);
    const stale = await apiError(c.core.replaceNamespacedConfigMap({ name: "one", namespace: "app", body: { ...cm, data: { a: "3" } } }), 409);
    assert.equal(stale.reason, "Conflict");
    assert.match(stale.message, /the object has been modified/);

    // Merge patch and JSON patch; unknown fields are kept as given.
    const merged = await c.core.patchNamespacedConfigMap({ name: "one", namespace: "app", body: { data: { c: "3", a: null }, extraField: { kept: true } } }, MERGE);
    assert.deepEqual(merged.data, { c: "3" });
    const raw = await api("GET", `/k8s/clusters/${c.clusterId}/api/v1/namespaces/app/configmaps/one`);
    assert.deepEqual(raw.body.extraField, { kept: true });
    const jsonPatched = await c.core.patchNamespacedConfigMap({ name: "one", namespace: "app", body: [{ op: "replace", path: "/data/c", value: "4" }, { op: "add", path: "/data/d", value: "5" }] });
    assert.deepEqual(jsonPatched.data, { c: "4", d: "5" });

    // Apps, RBAC (cluster-scoped) and a Knative service through the CustomObjectsApi.
    const deploy = await c.apps.createNamespacedDeployment({
      namespace: "app",
      body: { metadata: { name: "web" }, spec: { replicas: 2, selector: { matchLabels: { app: "web" } }, template: { metadata: { labels: { app: "web" } }, spec: { containers: [{ name: "web", image: "nginx:1", env: [{ name: "A", value: "1" }] }] } } } },
    });
    assert.equal(deploy.status?.readyReplicas, 2);
    const updated = await c.apps.patchNamespacedDeployment(
      { name: "web", namespace: "app", body: { spec: { template: { spec: { containers: [{ name: "web", image: "nginx:2" }] } } } } },
      STRATEGIC,
    );
    assert.equal(updated.metadata?.generation, 2);
    assert.equal(updated.spec?.template.spec?.containers[0]?.image, "nginx:2");
    assert.deepEqual(
      updated.spec?.template.spec?.containers[0]?.env?.map((e) => ({ name: e.name, value: e.value })),
      [{ name: "A", value: "1" }],
      "containers merge by name under a strategic merge patch",
    );
    const rbac = c.kc.makeApiClient(k8s.RbacAuthorizationV1Api);
    await rbac.createClusterRole({ body: { metadata: { name: "reader" }, rules: [{ apiGroups: [""], resources: ["pods"], verbs: ["get"] }] } });
    assert.equal((await rbac.readClusterRole({ name: "reader" })).rules?.[0]?.verbs[0], "get");
    const ksvc = (await c.custom.createNamespacedCustomObject({
      group: "serving.knative.dev",
      version: "v1",
      namespace: "app",
      plural: "services",
      body: { apiVersion: "serving.knative.dev/v1", kind: "Service", metadata: { name: "fn" }, spec: { template: { spec: { containers: [{ image: "fn:1" }] } } } },
    })) as Json;
    assert.equal(ksvc.status.conditions.find((x: Json) => x.type === "Ready").status, "True");
    const ksvcPatched = (await c.custom.patchNamespacedCustomObject(
      { group: "serving.knative.dev", version: "v1", namespace: "app", plural: "services", name: "fn", body: { metadata: { labels: { v: "2" } } } },
      MERGE,
    )) as Json;
    assert.equal(ksvcPatched.metadata.labels.v, "2");

    // A CRD adds a served resource.
    await c.apiext.createCustomResourceDefinition({
      body: {
        metadata: { name: "widgets.example.com" },
        spec: { group: "example.com", scope: "Namespaced", names: { plural: "widgets", singular: "widget", kind: "Widget" }, versions: [{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object", x_kubernetes_preserve_unknown_fields: true } } }] },
      },
    });
    await c.custom.createNamespacedCustomObject({ group: "example.com", version: "v1", namespace: "app", plural: "widgets", body: { apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w" }, size: 3 } });
    assert.equal(((await c.custom.listNamespacedCustomObject({ group: "example.com", version: "v1", namespace: "app", plural: "widgets" })) as Json).items[0].size, 3);

    // Delete returns the object; deleting the namespace takes its contents along; system namespaces stay.
    const deleted = await c.core.deleteNamespacedConfigMap({ name: "two", namespace: "app" });
    assert.ok(deleted);
    await apiError(c.core.readNamespacedConfigMap({ name: "two", namespace: "app" }), 404);
    const terminating = await c.core.deleteNamespace({ name: "app" });
    assert.ok(terminating);
    await apiError(c.core.readNamespace({ name: "app" }), 404);
    await apiError(c.apps.readNamespacedDeployment({ name: "web", namespace: "app" }), 404);
    assert.equal((await apiError(c.core.deleteNamespace({ name: "default" }), 403)).reason, "Forbidden");
  });

  test("eviction is allowed without a budget, refused with 429 by a PodDisruptionBudget, and an owned pod is recreated on another node", async () => {
    const c = await activeCluster("evict", [
      { name: "cp", quantity: 1, controlPlane: true, etcd: true },
      { name: "w", quantity: 2, worker: true },
    ]);
    const owner = { apiVersion: "apps/v1", kind: "ReplicaSet", name: "web-5d8f", uid: "11111111-2222-4333-8444-555555555555", controller: true };
    const pod = (name: string, nodeName: string, labels: Record<string, string>, ownerReferences?: Json[]): k8s.V1Pod => ({
      metadata: { name, labels, ...(ownerReferences ? { ownerReferences } : {}) },
      spec: { nodeName, containers: [{ name: "c", image: "nginx" }] },
    });
    const web1 = await c.core.createNamespacedPod({ namespace: "default", body: pod("web-5d8f-aaaaa", "w1", { app: "web" }, [owner]) });
    assert.equal(web1.status?.phase, "Running");
    assert.equal(web1.status?.conditions?.find((x) => x.type === "Ready")?.status, "True");
    assert.equal(web1.status?.hostIP, (await rancherNode(c.clusterId, "w1")).ipAddress);
    await c.core.createNamespacedPod({ namespace: "default", body: pod("web-5d8f-bbbbb", "w2", { app: "web" }, [owner]) });
    await c.core.createNamespacedPod({ namespace: "default", body: pod("lonely", "w1", { app: "lonely" }) });
    await c.core.createNamespacedPod({ namespace: "default", body: pod("agent-x", "w1", { app: "agent" }, [{ apiVersion: "apps/v1", kind: "DaemonSet", name: "agent", uid: "99999999-2222-4333-8444-555555555555" }]) });

    // Drain w1: cordon, then evict what runs there.
    await c.core.patchNode({ name: "w1", body: { spec: { unschedulable: true } } }, MERGE);
    await c.policy.createNamespacedPodDisruptionBudget({ namespace: "default", body: { metadata: { name: "web" }, spec: { minAvailable: 2, selector: { matchLabels: { app: "web" } } } } });
    const pdb = await c.policy.readNamespacedPodDisruptionBudget({ name: "web", namespace: "default" });
    assert.equal(pdb.status?.disruptionsAllowed, 0);
    assert.equal(pdb.status?.currentHealthy, 2);
    const evict = (name: string): Promise<k8s.V1Eviction> =>
      c.core.createNamespacedPodEviction({ name, namespace: "default", body: { apiVersion: "policy/v1", kind: "Eviction", metadata: { name, namespace: "default" } } });
    const blocked = await apiError(evict("web-5d8f-aaaaa"), 429);
    assert.equal(blocked.reason, "TooManyRequests");
    assert.equal(blocked.message, "Cannot evict pod as it would violate the pod's disruption budget.");
    assert.equal((await c.core.readNamespacedPod({ name: "web-5d8f-aaaaa", namespace: "default" })).status?.phase, "Running");

    const raw = await api("POST", `/k8s/clusters/${c.clusterId}/api/v1/namespaces/default/pods/lonely/eviction`, { apiVersion: "policy/v1", kind: "Eviction", metadata: { name: "lonely", namespace: "default" } });
    assert.equal(raw.status, 201);
    assert.equal(raw.body.kind, "Status");
    assert.equal(raw.body.status, "Success");
    await evict("agent-x");

    await c.policy.patchNamespacedPodDisruptionBudget({ name: "web", namespace: "default", body: { spec: { minAvailable: 1 } } }, MERGE);
    await evict("web-5d8f-aaaaa");
    const pods = (await c.core.listNamespacedPod({ namespace: "default" })).items;
    const names = pods.map((p) => p.metadata?.name ?? "");
    assert.ok(!names.includes("web-5d8f-aaaaa") && !names.includes("lonely") && !names.includes("agent-x"), names.join(","));
    const replacement = pods.find((p) => p.metadata?.name !== "web-5d8f-bbbbb" && p.metadata?.labels?.app === "web");
    assert.ok(replacement, "the ReplicaSet's pod was made again");
    assert.match(replacement.metadata?.name ?? "", /^web-5d8f-[a-z0-9]{5}$/);
    assert.equal(replacement.spec?.nodeName, "w2", "on another schedulable node (cp1 is tainted, w1 cordoned)");
    assert.equal(replacement.status?.phase, "Running");
    assert.equal(replacement.metadata?.ownerReferences?.[0]?.uid, owner.uid);
    assert.equal(pods.filter((p) => p.metadata?.labels?.app === "agent").length, 0, "DaemonSet pods are not made again elsewhere");

    // With the budget back at two, the next eviction is refused; pods on w2 are listed by field selector.
    await c.policy.patchNamespacedPodDisruptionBudget({ name: "web", namespace: "default", body: { spec: { minAvailable: 2 } } }, MERGE);
    await apiError(evict("web-5d8f-bbbbb"), 429);
    assert.equal((await c.core.listPodForAllNamespaces({ fieldSelector: "spec.nodeName=w2" })).items.length, 2);

    // When no node can take it, the replacement waits Pending without a node, and is scheduled once one can.
    await c.core.patchNode({ name: "w2", body: { spec: { unschedulable: true } } }, MERGE);
    await c.policy.deleteNamespacedPodDisruptionBudget({ name: "web", namespace: "default" });
    await evict("web-5d8f-bbbbb");
    const pending = (await c.core.listNamespacedPod({ namespace: "default", labelSelector: "app=web" })).items.find((p) => p.spec?.nodeName === undefined);
    assert.ok(pending, "a pending replacement");
    assert.equal(pending.status?.phase, "Pending");
    await c.core.patchNode({ name: "w1", body: { spec: { unschedulable: false } } }, MERGE);
    const scheduled = await c.core.readNamespacedPod({ name: pending.metadata?.name ?? "", namespace: "default" });
    assert.equal(scheduled.spec?.nodeName, "w1");
    assert.equal(scheduled.status?.phase, "Running");
  });

  test("deleting a Rancher node removes its pods and owned ones are rescheduled", async () => {
    const c = await activeCluster("gone", [
      { name: "cp", quantity: 1, controlPlane: true, etcd: true },
      { name: "w", quantity: 2, worker: true },
    ]);
    const owner = { apiVersion: "apps/v1", kind: "StatefulSet", name: "db", uid: "22222222-2222-4333-8444-555555555555" };
    await c.core.createNamespacedPod({ namespace: "default", body: { metadata: { name: "db-0", ownerReferences: [owner] }, spec: { nodeName: "w1", containers: [{ name: "c", image: "pg" }] } } });
    await c.core.createNamespacedPod({ namespace: "default", body: { metadata: { name: "bare" }, spec: { nodeName: "w1", containers: [{ name: "c", image: "x" }] } } });
    const w1 = await rancherNode(c.clusterId, "w1");
    assert.equal((await api("DELETE", `/v3/nodes/${w1.id}`)).status, 200);
    const pods = (await c.core.listNamespacedPod({ namespace: "default" })).items;
    assert.deepEqual(pods.map((p) => `${p.metadata?.name}@${p.spec?.nodeName}`), ["db-0@w2"], "the StatefulSet pod keeps its name and moves to w2");
    await apiError(c.core.readNode({ name: "w1" }), 404);
  });

  test("component statuses are served as healthy", async () => {
    const c = await activeCluster("cs");
    const list = await c.core.listComponentStatus();
    const raw = await api("GET", `/k8s/clusters/${c.clusterId}/api/v1/componentstatuses`);
    assert.equal(raw.body.kind, "ComponentStatusList");
    assert.deepEqual(list.items.map((i) => i.metadata?.name).sort(), ["controller-manager", "etcd-0", "scheduler"]);
    for (const item of list.items) assert.deepEqual(item.conditions?.map((x) => `${x.type}=${x.status}`), ["Healthy=True"]);
    assert.equal((await c.core.readComponentStatus({ name: "etcd-0" })).metadata?.name, "etcd-0");
  });

  test("watch streams report changes to objects", async () => {
    const c = await activeCluster("watch");
    await c.core.createNamespacedConfigMap({ namespace: "default", body: { metadata: { name: "before" } } });
    const events: string[] = [];
    const watch = new k8s.Watch(c.kc);
    const controller = await watch.watch("/api/v1/namespaces/default/configmaps", { labelSelector: "w" }, (type, obj) => events.push(`${type} ${obj.metadata.name}`), () => undefined);
    try {
      await c.core.createNamespacedConfigMap({ namespace: "default", body: { metadata: { name: "a", labels: { w: "1" } } } });
      await c.core.createNamespacedConfigMap({ namespace: "default", body: { metadata: { name: "unlabelled" } } });
      await c.core.patchNamespacedConfigMap({ name: "a", namespace: "default", body: { data: { x: "1" } } }, MERGE);
      await c.core.deleteNamespacedConfigMap({ name: "a", namespace: "default" });
      await waitFor("watch events", async () => events, (e) => e.length >= 3, 2000);
      assert.deepEqual(events, ["ADDED a", "MODIFIED a", "DELETED a"]);
    } finally {
      controller.abort();
    }
    // A watch from a list's resourceVersion sees only what came after.
    const list = await c.core.listNamespacedConfigMap({ namespace: "default" });
    await c.core.createNamespacedConfigMap({ namespace: "default", body: { metadata: { name: "later" } } });
    const res = await fetch(`${sim.url}/k8s/clusters/${c.clusterId}/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1&resourceVersion=${list.metadata?.resourceVersion}`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    const lines = (await res.text()).trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => `${l.type} ${l.object.metadata.name}`), ["ADDED later"]);
  });

  test("etcd snapshots can be taken, listed, filtered and deleted, only while the cluster is active", async () => {
    const c = await activeCluster("snap");
    const created = await api("POST", "/v3/etcdbackups", { clusterId: c.clusterId, manual: true });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const backup = created.body;
    assert.equal(backup.type, "etcdBackup");
    assert.match(backup.name, new RegExp(`^${c.clusterId}-ml-[a-z0-9]{5}$`));
    assert.equal(backup.id, `${c.clusterId}:${backup.name}`);
    assert.equal(backup.clusterId, c.clusterId);
    assert.equal(backup.manual, true);
    assert.match(backup.filename, new RegExp(`^${backup.name}_\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ\\.zip$`));
    assert.equal(backup.state, "activating");
    assert.equal(backup.transitioning, "yes");
    assert.ok(backup.links.self && backup.created);
    await waitFor("backup active", () => api("GET", `/v3/etcdbackups/${backup.id}`), (r) => r.body.state === "active");
    assert.equal((await api("GET", `/v3/etcdbackups/${backup.id}`)).body.status.conditions[0].status, "True");

    const viaAction = await api("POST", `/v3/clusters/${c.clusterId}?action=backupEtcd`);
    assert.equal(viaAction.status, 200);
    assert.equal(viaAction.body.type, "etcdBackup");
    const named = await api("POST", "/v3/etcdbackups", { clusterId: c.clusterId, name: "before-upgrade", labels: { "kumo.io/cluster": "x" } });
    assert.equal(named.body.id, `${c.clusterId}:before-upgrade`);
    assert.equal(named.body.labels["kumo.io/cluster"], "x", "labels given on create are kept");
    assert.equal((await api("POST", "/v3/etcdbackups", { clusterId: c.clusterId, name: "before-upgrade" })).body.code, "NotUnique");
    assert.equal((await api("POST", "/v3/etcdbackups", {})).body.fieldName, "clusterId");

    const other = await activeCluster("snap-other");
    await api("POST", "/v3/etcdbackups", { clusterId: other.clusterId });
    assert.equal((await api("GET", "/v3/etcdbackups")).body.data.length, 4);
    const mine = await api("GET", `/v3/etcdbackups?clusterId=${c.clusterId}`);
    assert.equal(mine.body.resourceType, "etcdBackup");
    assert.equal(mine.body.data.length, 3);
    assert.deepEqual((await api("GET", "/v3/etcdbackups?name=before-upgrade")).body.data.map((b: Json) => b.id), [`${c.clusterId}:before-upgrade`]);

    assert.equal((await api("DELETE", `/v3/etcdbackups/${backup.id}`)).status, 200);
    assert.equal((await api("GET", `/v3/etcdbackups/${backup.id}`)).status, 404);
    assert.equal((await api("GET", `/v3/etcdbackups?clusterId=${c.clusterId}`)).body.data.length, 2);

    await api("PUT", `/admin/clusters/${c.clusterId}/faults`, { agentDisconnected: true });
    const refused = await api("POST", "/v3/etcdbackups", { clusterId: c.clusterId });
    assert.equal(refused.status, 409);
    assert.equal(refused.body.code, "Conflict");
  });

  test("restoring a snapshot brings back exactly the captured objects and version; other clusters' snapshots are refused", async () => {
    const c = await activeCluster("restore", [
      { name: "cp", quantity: 1, controlPlane: true, etcd: true },
      { name: "w", quantity: 1, worker: true },
    ]);
    await c.core.createNamespace({ body: { metadata: { name: "app" } } });
    await c.core.createNamespacedConfigMap({ namespace: "app", body: { metadata: { name: "keep" }, data: { v: "1" } } });
    await c.core.createNamespacedConfigMap({ namespace: "app", body: { metadata: { name: "changed" }, data: { v: "1" } } });
    await c.core.createNamespacedPod({ namespace: "app", body: { metadata: { name: "p" }, spec: { nodeName: "w1", containers: [{ name: "c", image: "x" }] } } });
    const keep = await c.core.readNamespacedConfigMap({ name: "keep", namespace: "app" });
    const snap = (await api("POST", `/v3/clusters/${c.clusterId}?action=backupEtcd`)).body;
    const early = await api("POST", `/v3/clusters/${c.clusterId}?action=restoreFromEtcdBackup`, { etcdBackupId: snap.id, restoreRkeConfig: "" });
    assert.equal(early.status, 422, "a snapshot still activating cannot be restored");
    assert.equal(early.body.fieldName, "etcdBackupId");
    await waitFor("snapshot active", () => api("GET", `/v3/etcdbackups/${snap.id}`), (r) => r.body.state === "active");

    // Change things after the snapshot, including the Kubernetes version.
    await c.core.deleteNamespacedConfigMap({ name: "keep", namespace: "app" });
    await c.core.patchNamespacedConfigMap({ name: "changed", namespace: "app", body: { data: { v: "2" } } }, MERGE);
    await c.core.createNamespacedConfigMap({ namespace: "app", body: { metadata: { name: "new" } } });
    await c.core.createNamespace({ body: { metadata: { name: "later" } } });
    await api("PUT", `/v3/clusters/${c.clusterId}`, { rancherKubernetesEngineConfig: { kubernetesVersion: V131 } });
    await waitFor("upgrade done", () => cluster(c.clusterId), (x) => x.state === "active" && x.version.gitVersion === "v1.31.2", 5000);

    const other = await activeCluster("restore-other");
    const foreign = (await api("POST", "/v3/etcdbackups", { clusterId: other.clusterId })).body;
    await delay(TIMING.snapshotMs + 20);
    for (const etcdBackupId of [foreign.id, `${c.clusterId}:nope`]) {
      const res = await api("POST", `/v3/clusters/${c.clusterId}?action=restoreFromEtcdBackup`, { etcdBackupId, restoreRkeConfig: "" });
      assert.equal(res.status, 422, etcdBackupId);
      assert.equal(res.body.code, "InvalidFormat");
      assert.equal(res.body.fieldName, "etcdBackupId");
    }

    const restoring = await api("POST", `/v3/clusters/${c.clusterId}?action=restoreFromEtcdBackup`, { etcdBackupId: snap.id, restoreRkeConfig: "kubernetesVersion" });
    assert.equal(restoring.status, 200, JSON.stringify(restoring.body));
    const during = await cluster(c.clusterId);
    assert.equal(during.state, "updating");
    assert.equal(during.transitioning, "yes");
    assert.equal(during.transitioningMessage, `restoring etcd snapshot ${snap.name}`);
    await apiError(c.core.listNamespace(), 503);
    const done = await waitFor("restore done", () => cluster(c.clusterId), (x) => x.state === "active", 3000);
    assert.equal(done.rancherKubernetesEngineConfig.kubernetesVersion, V130);
    assert.equal(done.version.gitVersion, "v1.30.6");
    assert.equal((await c.kc.makeApiClient(k8s.VersionApi).getCode()).gitVersion, "v1.30.6");
    for (const node of (await c.core.listNode()).items) assert.equal(node.status?.nodeInfo?.kubeletVersion, "v1.30.6");

    const configMaps = (await c.core.listNamespacedConfigMap({ namespace: "app" })).items;
    assert.deepEqual(configMaps.map((x) => x.metadata?.name), ["changed", "keep"]);
    const restoredKeep = configMaps.find((x) => x.metadata?.name === "keep");
    assert.deepEqual(restoredKeep?.data, { v: "1" });
    assert.equal(restoredKeep?.metadata?.uid, keep.metadata?.uid);
    assert.deepEqual(configMaps.find((x) => x.metadata?.name === "changed")?.data, { v: "1" });
    assert.equal((await c.core.readNamespacedPod({ name: "p", namespace: "app" })).status?.phase, "Running");
    await apiError(c.core.readNamespace({ name: "later" }), 404);

    // restoreStuck keeps a restore updating until it is cleared.
    await api("PUT", `/admin/clusters/${c.clusterId}/faults`, { restoreStuck: true });
    assert.equal((await api("POST", `/v3/clusters/${c.clusterId}?action=restoreFromEtcdBackup`, { etcdBackupId: snap.id })).status, 200);
    await delay(TIMING.restoreMs + 100);
    assert.equal((await cluster(c.clusterId)).state, "updating");
    await apiError(c.core.listNamespace(), 503);
    await api("DELETE", `/admin/clusters/${c.clusterId}/faults`);
    assert.equal((await cluster(c.clusterId)).state, "active");
  });

  test("an upgrade proceeds node by node, control plane first, and nodes added meanwhile come up new", async () => {
    const c = await activeCluster("upgrade", [
      { name: "w", quantity: 2, worker: true },
      { name: "cp", quantity: 1, controlPlane: true, etcd: true },
    ]);
    await c.core.patchNode({ name: "w2", body: { spec: { unschedulable: true } } }, MERGE);
    // Whole-second windows: Ready's lastTransitionTime has second precision, so with 1 s windows
    // consecutive nodes' transitions are exactly one second apart, whatever the start time.
    const upgradeMs = 1000;
    await api("PUT", "/admin/settings", { nodeUpgradeMs: upgradeMs });
    const res = await api("PUT", `/v3/clusters/${c.clusterId}`, { rancherKubernetesEngineConfig: { kubernetesVersion: V131 } });
    assert.equal(res.status, 200);
    assert.equal(res.body.state, "updating");
    assert.match(res.body.transitioningMessage, /upgrading Kubernetes to v1\.31\.2-rancher1-1: node cp1/);
    assert.equal(res.body.version.gitVersion, "v1.30.6");

    const pool = (await api("GET", `/v3/nodepools?clusterId=${c.clusterId}&name=w`)).body.data[0];
    await api("PUT", `/v3/nodepools/${pool.id}`, { quantity: 3 });

    // Sample until done. Each listing is one consistent snapshot, so the checks below hold for
    // whatever samples are taken: none of them relies on catching a node in its window.
    const order = ["cp1", "w1", "w2"];
    const transition = (node: k8s.V1Node): number => new Date(ready(node)?.lastTransitionTime ?? NaN).getTime();
    const upgradingSeen: string[] = [];
    const upgradingSince = new Map<string, number>();
    await waitFor(
      "upgrade finished",
      async () => {
        const nodes = (await c.core.listNode()).items;
        const byName = new Map(nodes.map((n) => [n.metadata?.name ?? "", n]));
        // Nodes get the new version in order: the upgraded ones are a prefix of `order`.
        const upgraded = order.map((name) => byName.get(name)?.status?.nodeInfo?.kubeletVersion === "v1.31.2");
        assert.deepEqual(upgraded, [...upgraded].sort().reverse(), `upgraded in order: ${JSON.stringify(upgraded)}`);
        const upgrading = nodes.filter((n) => ready(n)?.reason === "Upgrading");
        assert.ok(upgrading.length <= 1, "one node at a time");
        for (const node of upgrading) {
          const name = node.metadata?.name ?? "";
          // The node in its window is the first one not upgraded yet, cordoned and NotReady.
          assert.equal(name, order[upgraded.indexOf(false)]);
          assert.equal(node.status?.nodeInfo?.kubeletVersion, "v1.30.6");
          assert.equal(node.spec?.unschedulable, true, "nodes are cordoned while they upgrade");
          assert.equal(ready(node)?.status, "False");
          if (upgradingSeen.at(-1) !== name) upgradingSeen.push(name);
          upgradingSince.set(name, transition(node));
        }
        const added = byName.get("w3");
        if (added !== undefined) assert.equal(added.status?.nodeInfo?.kubeletVersion, "v1.31.2", "the node added meanwhile comes up new");
        return cluster(c.clusterId);
      },
      (x) => x.state === "active",
      20000,
    );
    // Whatever windows were sampled were seen in order.
    assert.deepEqual(upgradingSeen, order.filter((name) => upgradingSeen.includes(name)));

    // The order itself, from the times the simulator derives: each node became Ready again
    // (with the new version) one window after the previous one, and started its window then.
    const done = new Map((await c.core.listNode()).items.map((n) => [n.metadata?.name ?? "", n]));
    const readyAt = (name: string): number => transition(done.get(name) as k8s.V1Node);
    assert.equal(readyAt("w1") - readyAt("cp1"), upgradeMs, "w1 is upgraded one window after cp1");
    assert.equal(readyAt("w2") - readyAt("w1"), upgradeMs, "w2 is upgraded one window after w1");
    for (const [name, since] of upgradingSince) {
      const previous = order[order.indexOf(name) - 1];
      if (previous !== undefined) assert.equal(since, readyAt(previous), `${name} started its window when ${previous} finished`);
      else assert.equal(since, readyAt(name) - upgradeMs);
    }
    // The node added during the upgrade never went NotReady after registering: it needed no upgrade.
    const w3 = done.get("w3") as k8s.V1Node;
    assert.equal(transition(w3), new Date(w3.metadata?.creationTimestamp ?? NaN).getTime());
    assert.ok(!upgradingSeen.includes("w3"), "the node added during the upgrade did not need one");

    const final = await cluster(c.clusterId);
    assert.equal(final.version.gitVersion, "v1.31.2");
    assert.equal((await c.kc.makeApiClient(k8s.VersionApi).getCode()).gitVersion, "v1.31.2");
    const nodes = (await c.core.listNode()).items;
    assert.deepEqual(nodes.map((n) => `${n.metadata?.name}:${n.status?.nodeInfo?.kubeletVersion}:${ready(n)?.status}`), [
      "cp1:v1.31.2:True",
      "w1:v1.31.2:True",
      "w2:v1.31.2:True",
      "w3:v1.31.2:True",
    ]);
    assert.equal(nodes.find((n) => n.metadata?.name === "w1")?.spec?.unschedulable, undefined, "uncordoned after its upgrade");
    assert.equal(nodes.find((n) => n.metadata?.name === "w2")?.spec?.unschedulable, true, "cordoned before, cordoned after");
    assert.equal((await rancherNode(c.clusterId, "w1")).info.kubernetes.kubeletVersion, "v1.31.2");
  });

  test("a node matching failUpgradeNodes stalls the upgrade until the fault is cleared", async () => {
    const c = await activeCluster("stall", [
      { name: "cp", quantity: 1, controlPlane: true, etcd: true },
      { name: "w", quantity: 2, worker: true },
    ]);
    assert.equal((await api("PUT", "/admin/faults", { failUpgradeNodes: ["^w1$"] })).status, 200);
    await api("PUT", `/v3/clusters/${c.clusterId}`, { rancherKubernetesEngineConfig: { kubernetesVersion: V131 } });
    const stalled = await waitFor("upgrade stalled", () => cluster(c.clusterId), (x) => x.transitioning === "error", 3000);
    assert.equal(stalled.state, "updating");
    assert.match(stalled.transitioningMessage, /stalled: node w1/);
    await delay(TIMING.nodeUpgradeMs * 2);
    const nodes = new Map((await c.core.listNode()).items.map((n) => [n.metadata?.name, n]));
    assert.equal(nodes.get("cp1")?.status?.nodeInfo?.kubeletVersion, "v1.31.2");
    assert.equal(ready(nodes.get("cp1") as k8s.V1Node)?.status, "True");
    assert.equal(ready(nodes.get("w1") as k8s.V1Node)?.status, "False");
    assert.equal(nodes.get("w1")?.spec?.unschedulable, true);
    assert.equal(nodes.get("w2")?.status?.nodeInfo?.kubeletVersion, "v1.30.6", "later nodes are not upgraded");
    assert.equal(ready(nodes.get("w2") as k8s.V1Node)?.status, "True");
    assert.equal((await cluster(c.clusterId)).state, "updating");

    await api("DELETE", "/admin/faults");
    const finished = await waitFor("upgrade resumed and finished", () => cluster(c.clusterId), (x) => x.state === "active", 3000);
    assert.equal(finished.version.gitVersion, "v1.31.2");
    for (const node of (await c.core.listNode()).items) assert.equal(node.status?.nodeInfo?.kubeletVersion, "v1.31.2");
  });

  test("Kubernetes objects, snapshots and node faults survive a restart of the simulator", async () => {
    const stateFile = join(dir, "restart", "rancher.json");
    let first: RancherSim | undefined = await startRancherSim({ port: 0, stateFile, token: TOKEN, timing: TIMING });
    let second: RancherSim | undefined;
    try {
      const url1 = first.url;
      const tlsUrl1 = first.tlsUrl;
      const tlsCert1 = first.tlsCert;
      const c = await call(url1, "POST", "/v3/clusters", { name: "durable", rancherKubernetesEngineConfig: { kubernetesVersion: V130 } });
      const clusterId: string = c.body.id;
      await call(url1, "POST", "/v3/nodepools", { clusterId, name: "all", hostnamePrefix: "d", quantity: 2, controlPlane: true, etcd: true, worker: true });
      await waitFor("cluster active", () => call(url1, "GET", `/v3/clusters/${clusterId}`), (r) => r.body.state === "active");
      await waitFor("nodes registered", async () => (await call(url1, "GET", `/v3/nodes?clusterId=${clusterId}`)).body.data as Json[], (n) => n.every((x) => x.state === "active"));
      const kubeconfig: string = (await call(url1, "POST", `/v3/clusters/${clusterId}?action=generateKubeconfig`)).body.config;
      const one = clients(clusterId, kubeconfig);
      await one.core.createNamespace({ body: { metadata: { name: "keep" } } });
      const cm = await one.core.createNamespacedConfigMap({ namespace: "keep", body: { metadata: { name: "cm", labels: { a: "b" } }, data: { k: "v" } } });
      await one.core.patchNode({ name: "d1", body: { spec: { unschedulable: true }, metadata: { labels: { custom: "yes" } } } }, MERGE);
      await call(url1, "PUT", "/admin/nodes/d2/faults", { notReady: true });
      await call(url1, "PUT", `/admin/clusters/${clusterId}/faults`, { restoreStuck: true });
      const backup = (await call(url1, "POST", "/v3/etcdbackups", { clusterId, name: "kept" })).body;
      await first.close();
      first = undefined;

      second = await startRancherSim({ port: 0, stateFile, token: TOKEN, timing: TIMING });
      const url2 = second.url;
      // The kubeconfig minted before the restart still works (only the server address changed):
      // its token, and its CA, since the certificate is kept beside the state file.
      assert.equal(second.tlsCert, tlsCert1);
      const two = clients(clusterId, kubeconfig.replace(tlsUrl1, second.tlsUrl));
      const again = await two.core.readNamespacedConfigMap({ name: "cm", namespace: "keep" });
      assert.equal(again.metadata?.uid, cm.metadata?.uid);
      assert.equal(again.metadata?.resourceVersion, cm.metadata?.resourceVersion);
      assert.deepEqual(again.data, { k: "v" });
      const d1 = await two.core.readNode({ name: "d1" });
      assert.equal(d1.spec?.unschedulable, true);
      assert.equal(d1.metadata?.labels?.custom, "yes");
      assert.equal(ready(await two.core.readNode({ name: "d2" }))?.status, "False", "node faults persist");
      assert.equal((await call(url2, "GET", "/admin/nodes/d2/faults")).body.notReady, true);
      assert.equal((await call(url2, "GET", `/admin/clusters/${clusterId}/faults`)).body.restoreStuck, true);
      const backups = (await call(url2, "GET", `/v3/etcdbackups?clusterId=${clusterId}`)).body.data;
      assert.deepEqual(backups.map((b: Json) => b.id), [backup.id]);
      await waitFor("backup active", () => call(url2, "GET", `/v3/etcdbackups/${backup.id}`), (r) => r.body.state === "active");
      // A watch from before the restart cannot be resumed: 410 Expired, so clients list again.
      const expired = await fetch(`${url2}/k8s/clusters/${clusterId}/api/v1/namespaces/keep/configmaps?watch=true&resourceVersion=${cm.metadata?.resourceVersion}`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      const error = JSON.parse((await expired.text()).trim());
      assert.equal(error.type, "ERROR");
      assert.equal(error.object.code, 410);
      assert.equal(error.object.reason, "Expired");
      const later = await two.core.createNamespacedConfigMap({ namespace: "keep", body: { metadata: { name: "later" } } });
      assert.ok(Number(later.metadata?.resourceVersion) > Number(cm.metadata?.resourceVersion), "resourceVersions keep growing");
    } finally {
      await first?.close();
      await second?.close();
    }
  });

  test("the kubeconfig points at the HTTPS listener with the simulator's CA, and client-node works through it", async () => {
    const c = await activeCluster("secure");
    const cluster = c.kc.getCurrentCluster();
    assert.equal(cluster?.server, `${sim.tlsUrl}/k8s/clusters/${c.clusterId}`);
    assert.match(cluster?.server ?? "", /^https:\/\/127\.0\.0\.1:\d+\//);
    assert.equal(Buffer.from(cluster?.caData ?? "", "base64").toString("utf8"), sim.tlsCert, "certificate-authority-data is the simulator's certificate");
    assert.notEqual(cluster?.skipTLSVerify, true);
    assert.doesNotMatch(c.kubeconfig, /insecure-skip-tls-verify/);
    const cert = new X509Certificate(sim.tlsCert);
    assert.ok(cert.checkIP("127.0.0.1") !== undefined && cert.checkHost("localhost") !== undefined);
    assert.match((await api("GET", `/v3/clusters/${c.clusterId}`)).body.apiEndpoint, /^https:\/\/127\.0\.0\.1:\d+$/);

    // A client-node call through it: TLS verified against the CA, the minted token accepted.
    const nodes = await c.core.listNode();
    assert.deepEqual(nodes.items.map((n) => n.metadata?.name), ["n1"]);
    const version = await c.kc.makeApiClient(k8s.VersionApi).getCode();
    assert.equal(version.gitVersion, "v1.30.6");
    const calls = (await api("GET", "/admin/calls")).body;
    assert.ok(calls.byRoute["GET /k8s/clusters/:id/api/v1/nodes"] >= 1);

    // Without the CA the same kubeconfig is refused by TLS (a self-signed certificate), not by the simulator.
    const untrusting = c.kubeconfig.replace(/\n\s*certificate-authority-data: "[^"]*"/, "");
    assert.doesNotMatch(untrusting, /certificate-authority-data/);
    await assert.rejects(clients(c.clusterId, untrusting).core.listNode(), /self[- ]signed|certificate/i);
    // The plain-HTTP listener still serves the same paths.
    assert.equal((await api("GET", `/k8s/clusters/${c.clusterId}/api/v1/nodes`)).body.items.length, 1);
  });

  test("OpenAPI v3 names every group-version and marks PATCH as taking fieldValidation; there is no OpenAPI v2", async () => {
    const c = await activeCluster("openapi");
    const base = `/k8s/clusters/${c.clusterId}`;
    const index = await api("GET", `${base}/openapi/v3`);
    assert.equal(index.status, 200);
    for (const gv of ["api/v1", "apis/apps/v1", "apis/batch/v1", "apis/policy/v1", "apis/serving.knative.dev/v1"]) {
      assert.match(index.body.paths[gv]?.serverRelativeURL ?? "", new RegExp(`^/openapi/v3/${gv.replace(/\./g, "\\.")}\\?hash=[0-9A-F]{128}$`), gv);
    }
    const apps = await api("GET", `${base}${index.body.paths["apis/apps/v1"].serverRelativeURL}`);
    assert.equal(apps.status, 200);
    assert.equal(apps.body.openapi, "3.0.0");
    const item = apps.body.paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    assert.deepEqual(item.patch["x-kubernetes-group-version-kind"], { group: "apps", version: "v1", kind: "Deployment" });
    assert.ok(item.patch.parameters.some((p: Json) => p.name === "fieldValidation" && p.in === "query"));
    assert.equal(item.patch.operationId, "patchAppsV1NamespacedDeployment");
    assert.ok(apps.body.paths["/apis/apps/v1/deployments"].get, "the all-namespaces list");
    assert.ok(apps.body.paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"].patch);
    const schema = apps.body.components.schemas["io.k8s.api.apps.v1.Deployment"];
    assert.deepEqual(schema["x-kubernetes-group-version-kind"], [{ group: "apps", kind: "Deployment", version: "v1" }]);
    assert.equal(schema["x-kubernetes-preserve-unknown-fields"], true);
    const core = await api("GET", `${base}/openapi/v3/api/v1`);
    assert.equal(core.body.paths["/api/v1/namespaces/{namespace}/pods/{name}/eviction"].post["x-kubernetes-group-version-kind"].kind, "Eviction");
    assert.ok(core.body.paths["/api/v1/nodes/{name}"].patch, "cluster-scoped paths have no namespace");

    // A CRD's group-version appears once it is served.
    await c.apiext.createCustomResourceDefinition({
      body: { metadata: { name: "gadgets.example.com" }, spec: { group: "example.com", scope: "Namespaced", names: { plural: "gadgets", kind: "Gadget" }, versions: [{ name: "v1", served: true, storage: true }] } },
    });
    const withCrd = await api("GET", `${base}/openapi/v3`);
    assert.ok(withCrd.body.paths["apis/example.com/v1"]);
    assert.ok((await api("GET", `${base}/openapi/v3/apis/example.com/v1`)).body.paths["/apis/example.com/v1/namespaces/{namespace}/gadgets/{name}"].patch);

    assert.equal((await api("GET", `${base}/openapi/v3/apis/nope.example.com/v1`)).status, 404);
    assert.equal((await api("GET", `${base}/openapi/v2`)).status, 404);
  });

  test("protobuf bodies, as client-go's typed clients send them, are read for Secrets and DeleteOptions", async () => {
    const c = await activeCluster("proto");
    const base = `${sim.url}/k8s/clusters/${c.clusterId}/api/v1/namespaces/default/secrets`;
    const send = (method: string, url: string, body: Buffer): Promise<Response> =>
      fetch(url, { method, headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/vnd.kubernetes.protobuf", accept: "application/vnd.kubernetes.protobuf,application/json" }, body });

    // helm's release storage: a Secret with labels and binary data.
    const release = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0xff]);
    const metadata = Buffer.concat([pbBytes(1, "sh.helm.release.v1.demo.v1"), pbMap(11, { owner: "helm", name: "demo", status: "deployed" })]);
    const secret = Buffer.concat([pbBytes(1, metadata), pbMap(2, { release }), pbBytes(3, "helm.sh/release.v1")]);
    const created = await send("POST", base, pbEnvelope("v1", "Secret", secret));
    assert.equal(created.status, 201);
    assert.match(created.headers.get("content-type") ?? "", /^application\/json/, "answers are JSON, which client-go accepts too");
    const stored = await c.core.readNamespacedSecret({ name: "sh.helm.release.v1.demo.v1", namespace: "default" });
    assert.equal(stored.type, "helm.sh/release.v1");
    assert.deepEqual(stored.metadata?.labels, { owner: "helm", name: "demo", status: "deployed" });
    assert.equal(stored.data?.release, release.toString("base64"));
    const listed = await c.core.listNamespacedSecret({ namespace: "default", labelSelector: "owner=helm,name=demo" });
    assert.equal(listed.items.length, 1);

    // DeleteOptions in protobuf: a wrong uid precondition is honoured (so the body was read), then a plain delete works.
    const url = `${base}/sh.helm.release.v1.demo.v1`;
    const guarded = await send("DELETE", url, pbEnvelope("v1", "DeleteOptions", pbBytes(2, pbBytes(1, "not-the-uid"))));
    assert.equal(guarded.status, 409);
    assert.equal((await send("DELETE", url, pbEnvelope("v1", "DeleteOptions", Buffer.alloc(0)))).status, 200);
    await apiError(c.core.readNamespacedSecret({ name: "sh.helm.release.v1.demo.v1", namespace: "default" }), 404);

    // A kind the simulator has no protobuf schema for is 415; a body that is not protobuf is 400.
    const pod = await send("POST", `${sim.url}/k8s/clusters/${c.clusterId}/api/v1/namespaces/default/pods`, pbEnvelope("v1", "Pod", pbBytes(1, pbBytes(1, "p"))));
    assert.equal(pod.status, 415);
    assert.equal(((await pod.json()) as Json).reason, "UnsupportedMediaType");
    assert.equal((await send("POST", base, Buffer.from("{}"))).status, 400);
  });

  test("a Deployment gets a ReplicaSet per pod template: the current one scaled up, old ones at 0, reused on a rollback", async () => {
    const c = await activeCluster("rollout");
    const template = (image: string): k8s.V1PodTemplateSpec => ({ metadata: { labels: { app: "web" } }, spec: { containers: [{ name: "web", image }] } });
    const created = await c.apps.createNamespacedDeployment({
      namespace: "default",
      body: { metadata: { name: "web" }, spec: { replicas: 2, selector: { matchLabels: { app: "web" } }, template: template("nginx:1") } },
    });
    assert.equal(created.spec?.strategy?.type, "RollingUpdate", "defaulted like the API server does");
    assert.deepEqual([created.spec?.strategy?.rollingUpdate?.maxUnavailable, created.spec?.strategy?.rollingUpdate?.maxSurge], ["25%", "25%"]);
    assert.equal(created.spec?.revisionHistoryLimit, 10);
    assert.equal(created.metadata?.annotations?.["deployment.kubernetes.io/revision"], "1");

    const replicaSets = async (): Promise<k8s.V1ReplicaSet[]> =>
      (await c.apps.listNamespacedReplicaSet({ namespace: "default", labelSelector: "app=web" })).items.sort((a, b) =>
        Number(a.metadata?.annotations?.["deployment.kubernetes.io/revision"]) - Number(b.metadata?.annotations?.["deployment.kubernetes.io/revision"]),
      );
    let sets = await replicaSets();
    assert.equal(sets.length, 1);
    const first = sets[0] as k8s.V1ReplicaSet;
    const hash = first.metadata?.labels?.["pod-template-hash"] ?? "";
    assert.match(hash, /^[bcdfghjklmnpqrstvwxz2456789]{1,10}$/);
    assert.equal(first.metadata?.name, `web-${hash}`);
    assert.deepEqual(first.metadata?.ownerReferences?.map((r) => [r.kind, r.name, r.uid, r.controller]), [["Deployment", "web", created.metadata?.uid, true]]);
    assert.equal(first.spec?.replicas, 2);
    assert.equal(first.spec?.selector.matchLabels?.["pod-template-hash"], hash);
    assert.equal(first.spec?.template?.metadata?.labels?.["pod-template-hash"], hash);
    assert.equal(first.status?.readyReplicas, 2);
    assert.equal(first.status?.observedGeneration, first.metadata?.generation);

    // A new template: a new ReplicaSet with the next revision; the old one goes to 0.
    await c.apps.patchNamespacedDeployment({ name: "web", namespace: "default", body: { spec: { template: template("nginx:2") } } }, MERGE);
    sets = await replicaSets();
    assert.deepEqual(sets.map((rs) => [rs.spec?.replicas, rs.metadata?.annotations?.["deployment.kubernetes.io/revision"]]), [[0, "1"], [2, "2"]]);
    assert.equal(sets[1]?.spec?.template?.spec?.containers[0]?.image, "nginx:2");
    const second = await c.apps.readNamespacedDeployment({ name: "web", namespace: "default" });
    assert.equal(second.metadata?.annotations?.["deployment.kubernetes.io/revision"], "2");
    assert.match(second.status?.conditions?.find((x) => x.type === "Progressing")?.message ?? "", new RegExp(`ReplicaSet "${sets[1]?.metadata?.name}"`));

    // Back to the first template (a rollback): its ReplicaSet comes back as revision 3; scaling changes only the current one.
    await c.apps.patchNamespacedDeployment({ name: "web", namespace: "default", body: { spec: { replicas: 3, template: template("nginx:1") } } }, MERGE);
    sets = await replicaSets();
    assert.deepEqual(sets.map((rs) => [rs.metadata?.name, rs.spec?.replicas, rs.metadata?.annotations?.["deployment.kubernetes.io/revision"]]), [
      [sets[0]?.metadata?.name, 0, "2"],
      [first.metadata?.name, 3, "3"],
    ]);

    // The controller makes a deleted current ReplicaSet again; deleting the Deployment takes its ReplicaSets along.
    await c.apps.deleteNamespacedReplicaSet({ name: first.metadata?.name ?? "", namespace: "default" });
    assert.equal((await c.apps.readNamespacedReplicaSet({ name: first.metadata?.name ?? "", namespace: "default" })).spec?.replicas, 3);
    await c.apps.deleteNamespacedDeployment({ name: "web", namespace: "default" });
    assert.deepEqual(await replicaSets(), []);
  });

  test("deleting a cluster removes its Kubernetes objects and snapshots", async () => {
    const c = await activeCluster("short-lived");
    await c.core.createNamespacedConfigMap({ namespace: "default", body: { metadata: { name: "x" } } });
    await api("POST", "/v3/etcdbackups", { clusterId: c.clusterId });
    assert.equal((await api("GET", "/admin/state")).body.kubeObjects[c.clusterId] > 0, true);
    await api("DELETE", `/v3/clusters/${c.clusterId}`);
    await waitFor("cluster gone", () => api("GET", `/v3/clusters/${c.clusterId}`), (r) => r.status === 404);
    const state = (await api("GET", "/admin/state")).body;
    assert.equal(state.kubeObjects[c.clusterId], undefined);
    assert.equal(state.etcdBackups.length, 0);
    assert.equal((await api("GET", `/k8s/clusters/${c.clusterId}/api/v1/namespaces`)).status, 404);
  });
});
