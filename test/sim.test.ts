import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { startRancherSim, type RancherSim } from "../sim/rancher.js";
import { ensureTlsMaterial, tlsNames } from "../sim/tls.js";

const TOKEN = "sim-test-token";
const FAST = { clusterProvisionMs: 150, nodeBootMs: 200, nodeRemoveMs: 100 };
const VERSION = "v1.30.6-rancher1-1";

// Response bodies are free-form JSON; the assertions below check their shape.
 
type Json = any;
interface Res {
  status: number;
  body: Json;
}

async function call(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  opts: { auth?: string | null; raw?: string } = {},
): Promise<Res> {
  const headers: Record<string, string> = {};
  const auth = opts.auth === undefined ? `Bearer ${TOKEN}` : opts.auth;
  if (auth !== null) headers.authorization = auth;
  let payload: string | undefined = opts.raw;
  if (body !== undefined) payload = JSON.stringify(body);
  if (payload !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(base + path, { method, headers, body: payload });
  const text = await res.text();
  return { status: res.status, body: text === "" ? null : JSON.parse(text) };
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

describe("rancher simulator", () => {
  let sim: RancherSim;
  let dir: string;
  const api = (method: string, path: string, body?: unknown, opts?: { auth?: string | null; raw?: string }): Promise<Res> =>
    call(sim.url, method, path, body, opts);

  async function createCluster(name: string): Promise<Json> {
    const res = await api("POST", "/v3/clusters", { type: "cluster", name, rancherKubernetesEngineConfig: { kubernetesVersion: VERSION } });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return res.body;
  }

  async function createPool(clusterId: string, fields: Record<string, unknown>): Promise<Json> {
    const res = await api("POST", "/v3/nodepools", {
      type: "nodePool",
      clusterId,
      name: "pool",
      hostnamePrefix: "w",
      quantity: 1,
      controlPlane: true,
      etcd: true,
      worker: true,
      ...fields,
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return res.body;
  }

  async function poolNodes(poolId: string): Promise<Json[]> {
    const res = await api("GET", `/v3/nodes?nodePoolId=${poolId}`);
    assert.equal(res.status, 200);
    return [...res.body.data].sort((a: Json, b: Json) => a.hostname.localeCompare(b.hostname, "en", { numeric: true }));
  }

  const hostnames = (nodes: Json[]): string[] => nodes.map((n) => n.hostname);
  const live = (nodes: Json[]): Json[] => nodes.filter((n) => n.state !== "removing");

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "kumo-sim-test-"));
    sim = await startRancherSim({ port: 0, stateFile: join(dir, "shared.json"), token: TOKEN, timing: FAST });
  });

  after(async () => {
    await sim?.close();
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(async () => {
    assert.equal((await api("POST", "/admin/reset")).status, 200);
  });

  test("v3 requests without the right token are refused with 401 Unauthorized, health and admin need none", async () => {
    const none = await api("GET", "/v3/clusters", undefined, { auth: null });
    assert.equal(none.status, 401);
    assert.equal(none.body.type, "error");
    assert.equal(none.body.code, "Unauthorized");
    assert.equal((await api("GET", "/v3/clusters", undefined, { auth: "Bearer wrong" })).status, 401);
    assert.equal((await api("GET", "/v3/clusters", undefined, { auth: TOKEN })).status, 401);
    assert.equal((await api("GET", "/v3/clusters")).status, 200);
    const health = await api("GET", "/healthz", undefined, { auth: null });
    assert.deepEqual(health, { status: 200, body: { ok: true } });
    assert.equal((await api("GET", "/admin/state", undefined, { auth: null })).status, 200);
  });

  test("a created cluster can be fetched, listed and filtered with Norman shapes", async () => {
    const created = await createCluster("alpha");
    assert.match(created.id, /^c-[a-z0-9]{5}$/);
    assert.equal(created.type, "cluster");
    assert.equal(created.baseType, "cluster");
    assert.equal(created.name, "alpha");
    assert.equal(created.state, "provisioning");
    assert.equal(created.transitioning, "yes");
    assert.equal(created.transitioningMessage, "waiting for etcd and controlplane nodes to be registered");
    assert.equal(created.driver, "rancherKubernetesEngine");
    assert.equal(created.creatorId, "user-admin");
    assert.match(created.created, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal(typeof created.createdTS, "number");
    // Rancher's Kubernetes proxy is HTTPS: apiEndpoint names the simulator's TLS listener.
    assert.match(sim.tlsUrl, /^https:\/\/127\.0\.0\.1:\d+$/);
    // The cluster's own endpoint (kubeconfigs go through the proxy).
    assert.match(created.apiEndpoint, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(created.links.self, `${sim.url}/v3/clusters/${created.id}`);
    assert.equal(created.links.nodePools, `${sim.url}/v3/nodepools?clusterId=${created.id}`);
    assert.deepEqual(created.actions, {});
    assert.equal(created.rancherKubernetesEngineConfig.kubernetesVersion, VERSION);

    await createCluster("beta");
    const got = await api("GET", `/v3/clusters/${created.id}`);
    assert.equal(got.status, 200);
    assert.equal(got.body.uuid, created.uuid);

    const all = await api("GET", "/v3/clusters");
    assert.equal(all.body.type, "collection");
    assert.equal(all.body.resourceType, "cluster");
    assert.deepEqual(all.body.pagination, { limit: 1000, total: 2 });
    assert.deepEqual(all.body.data.map((c: Json) => c.name).sort(), ["alpha", "beta"]);

    const filtered = await api("GET", "/v3/clusters?name=alpha");
    assert.deepEqual(filtered.body.data.map((c: Json) => c.id), [created.id]);
    assert.deepEqual(filtered.body.filters.name, [{ modifier: "eq", value: "alpha" }]);
    assert.equal((await api("GET", "/v3/clusters?state=provisioning")).body.data.length, 2);
    assert.equal((await api("GET", "/v3/clusters?state=active")).body.data.length, 0);

    const missing = await api("GET", "/v3/clusters/c-zzzzz");
    assert.equal(missing.status, 404);
    assert.equal(missing.body.code, "NotFound");

    const setting = await api("GET", "/v3/settings/k8s-versions-current");
    assert.equal(setting.body.value, "v1.28.15-rancher1-1,v1.29.10-rancher1-1,v1.30.6-rancher1-1,v1.31.2-rancher1-1");
  });

  test("invalid cluster input is refused with 422 and the offending fieldName", async () => {
    const post = (body: unknown): Promise<Res> => api("POST", "/v3/clusters", body);
    const rke = { kubernetesVersion: VERSION };

    const noName = await post({ rancherKubernetesEngineConfig: rke });
    assert.equal(noName.status, 422);
    assert.equal(noName.body.code, "MissingRequired");
    assert.equal(noName.body.fieldName, "name");

    for (const name of ["Bad_Name", "-lead", "trail-", "a".repeat(64)]) {
      const res = await post({ name, rancherKubernetesEngineConfig: rke });
      assert.equal(res.status, 422, name);
      assert.equal(res.body.code, "InvalidFormat");
      assert.equal(res.body.fieldName, "name");
    }

    const badVersion = await post({ name: "ok", rancherKubernetesEngineConfig: { kubernetesVersion: "v1.20.0-rancher1-1" } });
    assert.equal(badVersion.status, 422);
    assert.equal(badVersion.body.code, "InvalidFormat");
    assert.equal(badVersion.body.fieldName, "rancherKubernetesEngineConfig.kubernetesVersion");
    assert.match(badVersion.body.message, /v1\.31\.2-rancher1-1/);

    const noVersion = await post({ name: "ok", rancherKubernetesEngineConfig: {} });
    assert.equal(noVersion.body.code, "MissingRequired");
    assert.equal(noVersion.body.fieldName, "rancherKubernetesEngineConfig.kubernetesVersion");

    const notObject = await post([1, 2]);
    assert.equal(notObject.status, 422);
    assert.equal(notObject.body.code, "InvalidBodyContent");
    const malformed = await api("POST", "/v3/clusters", undefined, { raw: "{nope" });
    assert.equal(malformed.status, 422);
    assert.equal(malformed.body.code, "InvalidBodyContent");

    assert.equal((await api("GET", "/v3/clusters")).body.data.length, 0);
  });

  test("a second cluster with a name in use is refused with 422 NotUnique", async () => {
    await createCluster("twin");
    const res = await api("POST", "/v3/clusters", { name: "twin", rancherKubernetesEngineConfig: { kubernetesVersion: VERSION } });
    assert.equal(res.status, 422);
    assert.equal(res.body.code, "NotUnique");
    assert.equal(res.body.fieldName, "name");
  });

  test("pool nodes go provisioning, registering, active in order and the cluster then becomes active", async () => {
    assert.equal((await api("PUT", "/admin/settings", { nodeBootMs: 600, clusterProvisionMs: 300 })).status, 200);
    const cluster = await createCluster("phases");
    const pool = await createPool(cluster.id, { hostnamePrefix: "phases-n", quantity: 3 });
    assert.match(pool.id, new RegExp(`^${cluster.id}:np-[a-z0-9]{5}$`));
    assert.equal(pool.state, "active");

    const first = await poolNodes(pool.id);
    assert.deepEqual(hostnames(first), ["phases-n1", "phases-n2", "phases-n3"]);
    for (const node of first) {
      assert.match(node.id, new RegExp(`^${cluster.id}:m-[a-z0-9]{5}$`));
      assert.equal(node.state, "provisioning");
      assert.equal(node.transitioning, "yes");
      assert.match(node.ipAddress, /^10\.42\.\d+\.\d+$/);
    }

    const seen = new Map<string, string[]>();
    await waitFor(
      "all nodes active",
      async () => {
        const nodes = await poolNodes(pool.id);
        for (const n of nodes) {
          const states = seen.get(n.hostname) ?? [];
          if (states.at(-1) !== n.state) states.push(n.state);
          seen.set(n.hostname, states);
        }
        return nodes;
      },
      (nodes) => nodes.every((n) => n.state === "active"),
    );
    const order = ["provisioning", "registering", "active"];
    for (const [hostname, states] of seen) {
      assert.equal(states[0], "provisioning", hostname);
      assert.equal(states.at(-1), "active", hostname);
      const ranks = states.map((s) => order.indexOf(s));
      assert.ok(ranks.every((r, i) => r >= 0 && (i === 0 || r > (ranks[i - 1] ?? -1))), `${hostname}: ${states.join(",")}`);
    }
    assert.ok([...seen.values()].some((states) => states.includes("registering")), "some node was seen registering");

    const active = await waitFor("cluster active", () => api("GET", `/v3/clusters/${cluster.id}`), (r) => r.body.state === "active");
    assert.equal(active.body.transitioning, "no");
    assert.equal(active.body.nodeCount, 3);
    assert.equal(active.body.version.gitVersion, "v1.30.6");
    assert.deepEqual(
      active.body.conditions.map((c: Json) => [c.type, c.status]),
      [
        ["Provisioned", "True"],
        ["Ready", "True"],
      ],
    );
    assert.equal(active.body.actions.generateKubeconfig, `${sim.url}/v3/clusters/${cluster.id}?action=generateKubeconfig`);

    const node = (await poolNodes(pool.id))[0];
    assert.deepEqual(node.conditions.find((c: Json) => c.type === "Ready").status, "True");
    assert.equal(node.info.kubernetes.kubeletVersion, "v1.30.6");
    assert.deepEqual(node.capacity, { cpu: "4", memory: "16Gi", pods: "110" });

    const kubeconfig = await api("POST", `/v3/clusters/${cluster.id}?action=generateKubeconfig`);
    assert.equal(kubeconfig.status, 200);
    assert.equal(kubeconfig.body.type, "generateKubeConfigOutput");
    assert.ok(kubeconfig.body.config.includes(`server: "${sim.tlsUrl}/k8s/clusters/${cluster.id}"`));
    assert.match(kubeconfig.body.config, /token: "kubeconfig-user-/);
  });

  test("changing a pool's quantity adds nodes with new hostnames and removes the highest-numbered ones", async () => {
    const cluster = await createCluster("scaling");
    const pool = await createPool(cluster.id, { quantity: 2 });
    assert.deepEqual(hostnames(await poolNodes(pool.id)), ["w1", "w2"]);

    const up = await api("PUT", `/v3/nodepools/${pool.id}`, { quantity: 4 });
    assert.equal(up.status, 200);
    assert.equal(up.body.quantity, 4);
    assert.deepEqual(hostnames(await poolNodes(pool.id)), ["w1", "w2", "w3", "w4"]);

    assert.equal((await api("PUT", `/v3/nodepools/${pool.id}`, { quantity: 1 })).status, 200);
    const shrinking = await poolNodes(pool.id);
    assert.deepEqual(hostnames(live(shrinking)), ["w1"]);
    assert.deepEqual(
      shrinking.filter((n) => n.state === "removing").map((n) => n.hostname),
      ["w2", "w3", "w4"],
    );
    await waitFor("removed nodes gone", () => poolNodes(pool.id), (nodes) => nodes.length === 1);

    const bad = await api("PUT", `/v3/nodepools/${pool.id}`, { quantity: -1 });
    assert.equal(bad.status, 422);
    assert.equal(bad.body.fieldName, "quantity");
  });

  test("deleting a pool node makes the pool create a replacement with the next hostname", async () => {
    const cluster = await createCluster("healing");
    const pool = await createPool(cluster.id, { quantity: 2 });
    const [w1] = await poolNodes(pool.id);
    const deleted = await api("DELETE", `/v3/nodes/${w1.id}`);
    assert.equal(deleted.status, 200);
    assert.equal(deleted.body.state, "removing");

    const after = await poolNodes(pool.id);
    assert.deepEqual(hostnames(live(after)), ["w2", "w3"]);
    assert.ok(!live(after).some((n) => n.id === w1.id));
    await waitFor("deleted node gone", () => api("GET", `/v3/nodes/${w1.id}`), (r) => r.status === 404);
    assert.deepEqual(hostnames(await poolNodes(pool.id)), ["w2", "w3"]);
  });

  test("deleting a cluster shows it removing, then removes it with its pools and nodes", async () => {
    const cluster = await createCluster("doomed");
    const pool = await createPool(cluster.id, { quantity: 2 });
    const res = await api("DELETE", `/v3/clusters/${cluster.id}`);
    assert.equal(res.status, 200);
    assert.equal(res.body.state, "removing");
    assert.equal((await api("GET", `/v3/nodepools/${pool.id}`)).body.state, "removing");
    // The name is free again as soon as the old cluster is being removed.
    await createCluster("doomed");
    await waitFor("cluster gone", () => api("GET", `/v3/clusters/${cluster.id}`), (r) => r.status === 404);
    assert.equal((await api("GET", `/v3/nodepools/${pool.id}`)).status, 404);
    assert.equal((await api("GET", `/v3/nodes?clusterId=${cluster.id}`)).body.data.length, 0);
  });

  test("node pool input is validated and the node quota is enforced with 403 PermissionDenied", async () => {
    const cluster = await createCluster("quota");
    const noCluster = await api("POST", "/v3/nodepools", { clusterId: "c-zzzzz", name: "p", hostnamePrefix: "p", quantity: 1, worker: true });
    assert.equal(noCluster.status, 422);
    assert.equal(noCluster.body.fieldName, "clusterId");
    const noRole = await api("POST", "/v3/nodepools", { clusterId: cluster.id, name: "p", hostnamePrefix: "p", quantity: 1 });
    assert.equal(noRole.status, 422);
    const badPrefix = await api("POST", "/v3/nodepools", { clusterId: cluster.id, name: "p", hostnamePrefix: "P_", quantity: 1, worker: true });
    assert.equal(badPrefix.body.fieldName, "hostnamePrefix");

    await api("PUT", "/admin/settings", { maxNodes: 3 });
    const pool = await createPool(cluster.id, { quantity: 2 });
    const dup = await api("POST", "/v3/nodepools", { clusterId: cluster.id, name: "pool", hostnamePrefix: "x", quantity: 0, worker: true });
    assert.equal(dup.body.code, "NotUnique");
    const over = await api("POST", "/v3/nodepools", { clusterId: cluster.id, name: "more", hostnamePrefix: "m", quantity: 2, worker: true });
    assert.equal(over.status, 403);
    assert.equal(over.body.code, "PermissionDenied");
    assert.match(over.body.message, /quota/);
    const grow = await api("PUT", `/v3/nodepools/${pool.id}`, { quantity: 4 });
    assert.equal(grow.status, 403);
    assert.equal((await api("PUT", `/v3/nodepools/${pool.id}`, { quantity: 3 })).status, 200);
  });

  test("an active node can be cordoned and uncordoned through actions", async () => {
    const cluster = await createCluster("cordon");
    const pool = await createPool(cluster.id, { quantity: 1 });
    const [node] = await waitFor("node active", () => poolNodes(pool.id), (nodes) => nodes[0]?.state === "active");
    assert.ok(node.actions.cordon);
    const cordoned = await api("POST", `/v3/nodes/${node.id}?action=cordon`);
    assert.equal(cordoned.status, 200);
    assert.equal(cordoned.body.state, "cordoned");
    assert.equal(cordoned.body.unschedulable, true);
    assert.ok(cordoned.body.actions.uncordon);
    assert.equal((await api("POST", `/v3/nodes/${node.id}?action=cordon`)).status, 409);
    const uncordoned = await api("POST", `/v3/nodes/${node.id}?action=uncordon`);
    assert.equal(uncordoned.body.state, "active");
    assert.equal(uncordoned.body.unschedulable, false);
  });

  test("state survives a restart from the state file and derived states carry on from stored timestamps", async () => {
    const stateFile = join(dir, "restart", "rancher.json");
    const timing = { clusterProvisionMs: 100, nodeBootMs: 300, nodeRemoveMs: 300 };
    let first: RancherSim | undefined = await startRancherSim({ port: 0, stateFile, token: TOKEN, timing });
    let second: RancherSim | undefined;
    try {
      const c = await call(first.url, "POST", "/v3/clusters", { name: "durable", rancherKubernetesEngineConfig: { kubernetesVersion: VERSION } });
      const clusterId: string = c.body.id;
      const p = await call(first.url, "POST", "/v3/nodepools", { clusterId, name: "all", hostnamePrefix: "d", quantity: 2, controlPlane: true, etcd: true, worker: true });
      const poolId: string = p.body.id;
      const url1 = first.url;
      await waitFor("cluster active before restart", () => call(url1, "GET", `/v3/clusters/${clusterId}`), (r) => r.body.state === "active");
      const nodes = await waitFor(
        "both nodes active before restart",
        async () => (await call(url1, "GET", `/v3/nodes?nodePoolId=${poolId}`)).body.data as Json[],
        (list) => list.length === 2 && list.every((n) => n.state === "active"),
      );
      const d1 = nodes.find((n) => n.hostname === "d1");
      const d2 = nodes.find((n) => n.hostname === "d2");
      assert.ok(d1 && d2);
      assert.equal((await call(url1, "DELETE", `/v3/nodes/${d1.id}`)).status, 200);
      await first.close();
      first = undefined;

      const saved = JSON.parse(await readFile(stateFile, "utf8"));
      assert.equal(saved.data.clusters[0].id, clusterId);

      second = await startRancherSim({ port: 0, stateFile, token: TOKEN, timing });
      const url2 = second.url;
      const cluster = await call(url2, "GET", `/v3/clusters/${clusterId}`);
      assert.equal(cluster.status, 200);
      assert.equal(cluster.body.state, "active", "an active cluster stays active after a restart");
      assert.equal((await call(url2, "GET", `/v3/nodes/${d2.id}`)).body.state, "active", "a booted node does not boot again");

      const settled = await waitFor(
        "replacement active and deleted node gone",
        async () => (await call(url2, "GET", `/v3/nodes?nodePoolId=${poolId}`)).body.data as Json[],
        (list) => list.length === 2 && list.every((n) => n.state === "active"),
      );
      assert.deepEqual(settled.map((n) => n.hostname).sort(), ["d2", "d3"]);

      assert.equal((await call(url2, "PUT", `/v3/nodepools/${poolId}`, { quantity: 3 })).status, 200);
      const grown = (await call(url2, "GET", `/v3/nodes?nodePoolId=${poolId}`)).body.data as Json[];
      assert.deepEqual(grown.map((n) => n.hostname).sort(), ["d2", "d3", "d4"], "hostname numbering continues after a restart");
    } finally {
      await first?.close();
      await second?.close();
    }
  });

  test("with errorRate 1 every v3 call fails with the configured status while admin endpoints keep working", async () => {
    const put = await api("PUT", "/admin/faults", { errorRate: 1, errorStatus: 502 });
    assert.equal(put.status, 200);
    for (let i = 0; i < 5; i++) {
      const res = await api("GET", "/v3/clusters");
      assert.equal(res.status, 502);
      assert.equal(res.body.type, "error");
      assert.equal(res.body.code, "ServerError");
    }
    assert.equal((await api("GET", "/healthz")).status, 200);
    assert.equal((await api("GET", "/admin/state")).status, 200);
    assert.equal((await api("GET", "/admin/faults")).body.errorRate, 1);
    assert.equal((await api("DELETE", "/admin/faults")).status, 200);
    assert.equal((await api("GET", "/v3/clusters")).status, 200);
  });

  test("a fault rule fails its matching calls the given number of times and then lets them pass", async () => {
    const rules = [{ method: "POST", path: "^/v3/clusters$", times: 2, status: 500, message: "boom" }];
    assert.equal((await api("PUT", "/admin/faults", { rules })).status, 200);
    assert.equal((await api("GET", "/v3/clusters")).status, 200, "a non-matching call passes");
    const body = { name: "flaky", rancherKubernetesEngineConfig: { kubernetesVersion: VERSION } };
    for (let i = 0; i < 2; i++) {
      const res = await api("POST", "/v3/clusters", body);
      assert.equal(res.status, 500);
      assert.equal(res.body.code, "ServerError");
      assert.equal(res.body.message, "boom");
    }
    assert.equal((await api("POST", "/v3/clusters", body)).status, 201);
    assert.equal((await api("GET", "/admin/faults")).body.rules[0].times, 0);
    assert.equal((await api("GET", "/v3/clusters")).body.data.length, 1, "failed calls did not create anything");
  });

  test("an afterEffect rule performs the operation and still answers the error", async () => {
    const cluster = await createCluster("lost");
    await api("PUT", "/admin/faults", { rules: [{ method: "POST", path: "^/v3/nodepools$", times: 1, status: 504, afterEffect: true }] });
    const body = { clusterId: cluster.id, name: "ghost", hostnamePrefix: "g", quantity: 1, worker: true };
    const lost = await api("POST", "/v3/nodepools", body);
    assert.equal(lost.status, 504);
    assert.equal(lost.body.type, "error");
    const pools = await api("GET", `/v3/nodepools?clusterId=${cluster.id}&name=ghost`);
    assert.equal(pools.body.data.length, 1, "the pool was created despite the error");
    const retry = await api("POST", "/v3/nodepools", body);
    assert.equal(retry.status, 422);
    assert.equal(retry.body.code, "NotUnique");
  });

  test("nodes matching neverReadyNodes stay registering with Ready Unknown until the fault is cleared", async () => {
    await api("PUT", "/admin/faults", { neverReadyNodes: ["^stuck-"] });
    const cluster = await createCluster("stuck");
    // Created first, so it would be ready no later than the good node.
    const stuckPool = await createPool(cluster.id, { name: "stuck", hostnamePrefix: "stuck-", controlPlane: false, etcd: false, worker: true });
    const goodPool = await createPool(cluster.id, { name: "good", hostnamePrefix: "good-" });
    await waitFor("good node active", () => poolNodes(goodPool.id), (nodes) => nodes[0]?.state === "active");
    const [stuck] = await poolNodes(stuckPool.id);
    assert.equal(stuck.hostname, "stuck-1");
    assert.equal(stuck.state, "registering");
    assert.equal(stuck.conditions.find((c: Json) => c.type === "Ready").status, "Unknown");

    await api("DELETE", "/admin/faults");
    const [recovered] = await poolNodes(stuckPool.id);
    assert.equal(recovered.state, "active");
  });

  test("the admin call log counts v3 calls by route, including refused and faulted ones", async () => {
    const cluster = await createCluster("counted");
    await api("PUT", "/admin/faults", { rules: [{ method: "GET", path: "^/v3/clusters/[^/]+$", times: 1, status: 503 }] });
    assert.equal((await api("DELETE", "/admin/calls")).status, 200);

    assert.equal((await api("GET", `/v3/clusters/${cluster.id}`)).status, 503);
    assert.equal((await api("GET", `/v3/clusters/${cluster.id}`)).status, 200);
    await api("GET", "/v3/clusters");
    await api("GET", "/v3/clusters", undefined, { auth: null });
    assert.equal((await api("POST", `/v3/clusters/${cluster.id}?action=generateKubeconfig`)).status, 409, "not active yet");
    assert.equal((await api("GET", "/v3/nope")).status, 404);
    await api("GET", "/healthz");

    const calls = (await api("GET", "/admin/calls")).body;
    assert.equal(calls.total, 6);
    assert.deepEqual(calls.byRoute, {
      "GET /v3/clusters/:id": 2,
      "GET /v3/clusters": 2,
      "POST /v3/clusters/:id?action=generateKubeconfig": 1,
      "GET (unknown route)": 1,
    });
    assert.deepEqual(
      calls.recent.map((c: Json) => c.status),
      [503, 200, 200, 401, 409, 404],
    );
    assert.equal(calls.recent[0].path, `/v3/clusters/${cluster.id}`);
    assert.equal(calls.recent[0].route, "GET /v3/clusters/:id");
  });

  test("bad fault configurations are refused with 400 and leave the old one in place", async () => {
    await api("PUT", "/admin/faults", { latencyMs: 1 });
    for (const bad of [{ errorRate: 2 }, { rules: [{ status: 500 }] }, { rules: [{ times: 1, status: 200 }] }, { rules: [{ times: 1, status: 500, path: "(" }] }, { typo: true }]) {
      const res = await api("PUT", "/admin/faults", bad);
      assert.equal(res.status, 400, JSON.stringify(bad));
    }
    assert.equal((await api("GET", "/admin/faults")).body.latencyMs, 1);
    assert.equal((await api("PUT", "/admin/settings", { nodeBootMs: -1 })).status, 400);
    assert.equal((await api("PUT", "/admin/faults", { failUpgradeNodes: "w1" })).status, 400);
    assert.equal((await api("PUT", "/admin/faults", { failUpgradeNodes: ["("] })).status, 400);
  });

  test("settings include the Kubernetes timings, and object faults are checked", async () => {
    const settings = (await api("GET", "/admin/settings")).body;
    for (const key of ["snapshotMs", "restoreMs", "nodeMonitorGraceMs", "nodeUpgradeMs"]) assert.equal(typeof settings[key], "number", key);
    const changed = await api("PUT", "/admin/settings", { nodeMonitorGraceMs: 500, nodeUpgradeMs: 10 });
    assert.equal(changed.body.nodeMonitorGraceMs, 500);
    assert.equal(changed.body.nodeUpgradeMs, 10);
    assert.equal((await api("PUT", "/admin/settings", { restoreMs: "1" })).status, 400);

    const cluster = await createCluster("faults");
    const pool = await createPool(cluster.id, { quantity: 1 });
    const [node] = await poolNodes(pool.id);
    assert.equal((await api("PUT", `/admin/clusters/${cluster.id}/faults`, { apiServerDown: "yes" })).status, 400);
    assert.equal((await api("PUT", `/admin/clusters/${cluster.id}/faults`, { bogus: true })).status, 400);
    assert.equal((await api("PUT", "/admin/clusters/c-zzzzz/faults", {})).status, 404);
    const set = await api("PUT", `/admin/clusters/${cluster.id}/faults`, { restoreStuck: true });
    assert.deepEqual([set.body.apiServerDown, set.body.agentDisconnected, set.body.restoreStuck], [false, false, true]);
    const byHost = await api("PUT", `/admin/nodes/${node.hostname}/faults`, { kubeletStopped: true });
    assert.equal(byHost.body.nodeId, node.id);
    assert.equal(byHost.body.kubeletStopped, true);
    assert.equal((await api("GET", `/admin/nodes/${node.id}/faults`)).body.kubeletStopped, true);
    assert.equal((await api("DELETE", `/admin/nodes/${node.id}/faults`)).body.kubeletStopped, false);
  });

  test("etcd snapshots are refused for a cluster that is not active", async () => {
    const cluster = await createCluster("early");
    const res = await api("POST", "/v3/etcdbackups", { clusterId: cluster.id });
    assert.equal(res.status, 409);
    assert.equal(res.body.code, "Conflict");
    assert.equal((await api("POST", `/v3/clusters/${cluster.id}?action=backupEtcd`)).status, 409);
    assert.equal((await api("POST", "/v3/etcdbackups", { clusterId: "c-zzzzz" })).body.fieldName, "clusterId");
    assert.equal((await api("GET", "/v3/etcdbackups")).body.data.length, 0);
  });
});

/** A JSON call over HTTPS trusting only `ca` (Node's fetch cannot be given a CA). */
function httpsCall(url: string, ca: string | undefined, method = "GET", body?: unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const req = httpsRequest(url, { method, headers, ...(ca === undefined ? {} : { ca }) }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status: res.statusCode ?? 0, body: text === "" ? null : JSON.parse(text) });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

describe("rancher simulator over HTTPS", () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "kumo-sim-tls-test-"));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("the key and self-signed certificate are made with openssl once, reused, and made again when they no longer fit", async () => {
    const tlsDir = join(dir, "material", "tls");
    const names = tlsNames("127.0.0.1");
    const first = ensureTlsMaterial(tlsDir, names);
    const x509 = new X509Certificate(first.cert);
    assert.ok(x509.checkIP("127.0.0.1"));
    assert.ok(x509.checkIP("::1"));
    assert.equal(x509.checkHost("localhost"), "localhost");
    assert.equal(x509.checkIssued(x509), true, "self-signed");
    assert.equal(x509.ca, true);
    assert.ok(Date.parse(x509.validTo) > Date.now() + 300 * 24 * 3600 * 1000);
    assert.equal(statSync(join(tlsDir, "key.pem")).mode & 0o777, 0o600, "the key is private");
    assert.equal(ensureTlsMaterial(tlsDir, names).cert, first.cert, "reused while it fits");

    // A certificate that does not cover the names asked for (here, a specific listen address) is made again.
    const wider = ensureTlsMaterial(tlsDir, tlsNames("10.11.12.13"));
    assert.notEqual(wider.cert, first.cert);
    assert.ok(new X509Certificate(wider.cert).checkIP("10.11.12.13"));
    // So is a damaged one.
    await writeFile(join(tlsDir, "cert.pem"), "not a certificate");
    const repaired = ensureTlsMaterial(tlsDir, names);
    assert.ok(new X509Certificate(repaired.cert).checkIP("127.0.0.1"));
    assert.equal(await readFile(join(tlsDir, "cert.pem"), "utf8"), repaired.cert);

    // Without a state folder the material lives in a temporary folder until dispose().
    const temporary = ensureTlsMaterial(null, names);
    assert.ok(existsSync(join(temporary.dir, "cert.pem")));
    temporary.dispose();
    assert.equal(existsSync(temporary.dir), false);
  });

  test("the same API is served over HTTPS with that certificate, and links asked for over HTTPS are HTTPS", async () => {
    const stateFile = join(dir, "https", "rancher.json");
    const sim = await startRancherSim({ port: 0, stateFile, token: TOKEN, timing: FAST });
    try {
      assert.match(sim.tlsUrl, /^https:\/\/127\.0\.0\.1:\d+$/);
      assert.notEqual(sim.tlsUrl.replace("https:", "http:"), sim.url);
      assert.equal(await readFile(join(dir, "https", "tls", "cert.pem"), "utf8"), sim.tlsCert, "kept beside the state file");

      const created = await httpsCall(`${sim.tlsUrl}/v3/clusters`, sim.tlsCert, "POST", { name: "secure", rancherKubernetesEngineConfig: { kubernetesVersion: VERSION } });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      assert.equal(created.body.links.self, `${sim.tlsUrl}/v3/clusters/${created.body.id}`);
      assert.match(created.body.apiEndpoint, /^https:\/\/127\.0\.0\.1:\d+$/);
      // Asked for by "localhost" (also in the certificate), links keep that name.
      const port = new URL(sim.tlsUrl).port;
      const local = await httpsCall(`https://localhost:${port}/v3/clusters/${created.body.id}`, sim.tlsCert);
      assert.equal(local.body.apiEndpoint, created.body.apiEndpoint);
      // Over plain HTTP the Kubernetes endpoint is still the HTTPS one.
      const plain = await call(sim.url, "GET", `/v3/clusters/${created.body.id}`);
      assert.equal(plain.body.links.self, `${sim.url}/v3/clusters/${created.body.id}`);
      assert.equal(plain.body.apiEndpoint, created.body.apiEndpoint);
      const listed = await httpsCall(`${sim.tlsUrl}/v3/clusters`, sim.tlsCert);
      assert.equal(listed.status, 200);
      assert.deepEqual(listed.body.data.map((c: Json) => c.name), ["secure"]);

      // A client that does not trust the certificate is refused by TLS itself.
      await assert.rejects(httpsCall(`${sim.tlsUrl}/healthz`, undefined), /self[- ]signed/i);
    } finally {
      await sim.close();
    }
    // A restart keeps the certificate, so kubeconfigs handed out before stay valid.
    const again = await startRancherSim({ port: 0, stateFile, token: TOKEN, timing: FAST });
    try {
      assert.equal(again.tlsCert, await readFile(join(dir, "https", "tls", "cert.pem"), "utf8"));
    } finally {
      await again.close();
    }
  });

  test("tlsPort picks the HTTPS port, also without a state file (then the certificate is temporary)", async () => {
    const probe = await startRancherSim({ port: 0, stateFile: null, token: TOKEN });
    const free = Number(new URL(probe.tlsUrl).port);
    await probe.close();
    const sim = await startRancherSim({ port: 0, tlsPort: free, stateFile: null, token: TOKEN });
    try {
      assert.equal(sim.tlsUrl, `https://127.0.0.1:${free}`);
      assert.equal((await httpsCall(`${sim.tlsUrl}/healthz`, sim.tlsCert)).body.ok, true);
    } finally {
      await sim.close();
    }
  });
});
