import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { connect, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { startRancherSim, type RancherSim } from "../sim/rancher.js";

const TOKEN = "sim-health-test-token";
const VERSION = "v1.30.6-rancher1-1";
const TIMING = { clusterProvisionMs: 100, nodeBootMs: 100, nodeRemoveMs: 100, workloadReadyMs: 0 };
const UP = "up";
const CPU = 'avg by (node) (100 * (1 - rate(node_cpu_seconds_total{mode="idle"}[5m])))';

// Response bodies are free-form JSON; the assertions below check their shape.

type Json = any;
interface Res {
  status: number;
  body: Json;
  contentType: string;
}

function parse(text: string, contentType: string): Json {
  return contentType.startsWith("application/json") && text !== "" ? JSON.parse(text) : text;
}

/** A call over plain HTTP with the simulator's token (or `auth`, or none with null). */
async function call(base: string, method: string, path: string, body?: unknown, opts: { auth?: string | null; raw?: string; contentType?: string } = {}): Promise<Res> {
  const headers: Record<string, string> = {};
  const auth = opts.auth === undefined ? `Bearer ${TOKEN}` : opts.auth;
  if (auth !== null) headers.authorization = auth;
  const payload = body !== undefined ? JSON.stringify(body) : opts.raw;
  if (payload !== undefined) headers["content-type"] = opts.contentType ?? "application/json";
  const res = await fetch(base + path, { method, headers, body: payload });
  const contentType = res.headers.get("content-type") ?? "";
  return { status: res.status, body: parse(await res.text(), contentType), contentType };
}

/** A call over HTTPS trusting only `ca` (Node's fetch cannot be given a CA). */
function httpsCall(url: string, ca: string, opts: { method?: string; token?: string | null; body?: string; contentType?: string } = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    const token = opts.token === undefined ? TOKEN : opts.token;
    if (token !== null) headers.authorization = `Bearer ${token}`;
    if (opts.body !== undefined) headers["content-type"] = opts.contentType ?? "application/json";
    // agent: false, so no keep-alive connection outlives the test.
    const req = httpsRequest(url, { method: opts.method ?? "GET", headers, ca, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => {
        const contentType = String(res.headers["content-type"] ?? "");
        resolve({ status: res.statusCode ?? 0, body: parse(Buffer.concat(chunks).toString("utf8"), contentType), contentType });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(opts.body);
  });
}

/** Whether a TCP connection to the port is accepted (true) or refused (false). */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", (err: NodeJS.ErrnoException) => (err.code === "ECONNREFUSED" ? resolve(false) : reject(err)));
  });
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

const portOf = (url: string): number => Number(new URL(url).port);

describe("rancher simulator health surfaces", () => {
  let sim: RancherSim;
  let dir: string;
  const api = (method: string, path: string, body?: unknown, opts?: { auth?: string | null; raw?: string; contentType?: string }): Promise<Res> =>
    call(sim.url, method, path, body, opts);

  /** An active cluster with one all-roles node, and the token of a kubeconfig generated for it. */
  async function activeCluster(name: string): Promise<{ id: string; token: string; kubeconfig: string }> {
    const created = await api("POST", "/v3/clusters", { name, rancherKubernetesEngineConfig: { kubernetesVersion: VERSION } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id: string = created.body.id;
    const pool = await api("POST", "/v3/nodepools", { clusterId: id, name: "all", hostnamePrefix: `${name}-n`, quantity: 1, controlPlane: true, etcd: true, worker: true });
    assert.equal(pool.status, 201, JSON.stringify(pool.body));
    await waitFor("cluster active", () => api("GET", `/v3/clusters/${id}`), (r) => r.body.state === "active");
    await waitFor("API available", () => api("GET", `/k8s/clusters/${id}/readyz`), (r) => r.status === 200);
    const kubeconfig: string = (await api("POST", `/v3/clusters/${id}?action=generateKubeconfig`)).body.config;
    const token = /token: "([^"]+)"/.exec(kubeconfig)?.[1];
    assert.ok(token);
    return { id, token, kubeconfig };
  }

  /** A Service `monitoring/prometheus-k8s` with port `web` 9090, as kube-prometheus makes it. */
  async function prometheusService(clusterId: string): Promise<void> {
    const ns = await api("POST", `/k8s/clusters/${clusterId}/api/v1/namespaces`, { metadata: { name: "monitoring" } });
    assert.equal(ns.status, 201, JSON.stringify(ns.body));
    const svc = await api("POST", `/k8s/clusters/${clusterId}/api/v1/namespaces/monitoring/services`, {
      metadata: { name: "prometheus-k8s" },
      spec: { ports: [{ name: "web", port: 9090, targetPort: "web" }], selector: { app: "prometheus" } },
    });
    assert.equal(svc.status, 201, JSON.stringify(svc.body));
  }

  const proxyPath = (clusterId: string, svc = "prometheus-k8s:9090", rest = "api/v1/query"): string =>
    `/k8s/clusters/${clusterId}/api/v1/namespaces/monitoring/services/${svc}/proxy/${rest}`;

  async function setFaults(clusterId: string, faults: Record<string, boolean>): Promise<Json> {
    const res = await api("PUT", `/admin/clusters/${clusterId}/faults`, faults);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body;
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "kumo-sim-health-test-"));
    sim = await startRancherSim({ port: 0, stateFile: join(dir, "shared.json"), token: TOKEN, timing: TIMING });
  });

  after(async () => {
    await sim?.close();
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(async () => {
    assert.equal((await api("POST", "/admin/reset")).status, 200);
  });

  test("Prometheus' instant query answers through the service proxy from what the admin API set", async () => {
    const c = await activeCluster("prom");
    await prometheusService(c.id);
    const queries = {
      [UP]: [{ metric: { __name__: "up", job: "apiserver", instance: "10.0.0.1:6443" }, value: 1 }, { value: 0 }],
      [CPU]: [
        { metric: { node: "n1" }, value: 93.5 },
        { metric: { node: "n2" }, value: 1e-7 },
      ],
    };
    const put = await api("PUT", `/admin/clusters/${c.id}/prometheus`, { queries });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.deepEqual(put.body, { clusterId: c.id, queries: { [UP]: [queries[UP][0], { metric: {}, value: 0 }], [CPU]: queries[CPU] } });
    assert.deepEqual((await api("GET", `/admin/clusters/${c.id}/prometheus`)).body, put.body);

    // Over HTTPS with the kubeconfig's token, as a client-go or node client would call it.
    const t0 = Date.now() / 1000;
    const res = await httpsCall(`${sim.tlsUrl}${proxyPath(c.id)}?query=${encodeURIComponent(CPU)}`, sim.tlsCert, { token: c.token });
    const t1 = Date.now() / 1000;
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.match(res.contentType, /^application\/json/);
    assert.equal(res.body.status, "success");
    assert.equal(res.body.data.resultType, "vector");
    const result: Json[] = res.body.data.result;
    assert.deepEqual(result.map((r) => r.metric), [{ node: "n1" }, { node: "n2" }]);
    assert.deepEqual(result.map((r) => r.value[1]), ["93.5", "0.0000001"], "values as Prometheus writes them, never in exponent form");
    for (const r of result) {
      assert.equal(typeof r.value[0], "number");
      assert.ok(r.value[0] >= Math.floor(t0 * 1000) / 1000 && r.value[0] <= t1, `timestamp ${r.value[0]} is the evaluation time`);
    }
    assert.deepEqual(Object.keys(res.body).sort(), ["data", "status"]);

    // The plain name and scheme:name:port forms, an explicit evaluation time, a sample without labels.
    const at = await api("GET", `${proxyPath(c.id, "http:prometheus-k8s:web")}?query=up&time=1700000000.5`);
    assert.equal(at.status, 200, JSON.stringify(at.body));
    assert.deepEqual(at.body, {
      status: "success",
      data: {
        resultType: "vector",
        result: [
          { metric: { __name__: "up", job: "apiserver", instance: "10.0.0.1:6443" }, value: [1700000000.5, "1"] },
          { metric: {}, value: [1700000000.5, "0"] },
        ],
      },
    });
    assert.equal((await api("GET", `${proxyPath(c.id, "prometheus-k8s")}?query=up&time=2024-01-01T00:00:00Z`)).body.data.result[0].value[0], 1704067200);

    // An expression without an entry has no data, as in a real Prometheus; the sim evaluates nothing.
    const none = await api("GET", `${proxyPath(c.id)}?query=${encodeURIComponent("up == 0")}`);
    assert.equal(none.status, 200);
    assert.deepEqual(none.body, { status: "success", data: { resultType: "vector", result: [] } });

    // POST with a form body, as Grafana and the Prometheus client libraries send long queries.
    const form = new URLSearchParams({ query: CPU, time: "1700000001" }).toString();
    const posted = await httpsCall(`${sim.tlsUrl}${proxyPath(c.id)}`, sim.tlsCert, { method: "POST", token: c.token, body: form, contentType: "application/x-www-form-urlencoded" });
    assert.equal(posted.status, 200, JSON.stringify(posted.body));
    assert.deepEqual(posted.body.data.result[0], { metric: { node: "n1" }, value: [1700000001, "93.5"] });

    // A missing or empty query, and an unreadable time, are Prometheus' bad_data errors.
    for (const path of [proxyPath(c.id), `${proxyPath(c.id)}?query=`]) {
      const bad = await api("GET", path);
      assert.equal(bad.status, 400);
      assert.equal(bad.body.status, "error");
      assert.equal(bad.body.errorType, "bad_data");
      assert.match(bad.body.error, /^invalid parameter "query": /);
    }
    const emptyForm = await api("POST", proxyPath(c.id), undefined, { raw: "", contentType: "application/x-www-form-urlencoded" });
    assert.equal(emptyForm.status, 400);
    assert.equal(emptyForm.body.errorType, "bad_data");
    const badTime = await api("GET", `${proxyPath(c.id)}?query=up&time=yesterday`);
    assert.equal(badTime.status, 400);
    assert.match(badTime.body.error, /^invalid parameter "time": /);

    // Only the instant query is served: other Prometheus paths are its router's 404.
    for (const rest of ["api/v1/query_range", "-/healthy", "graph"]) {
      const other = await api("GET", `${proxyPath(c.id, "prometheus-k8s:9090", rest)}?query=up`);
      assert.equal(other.status, 404, rest);
      assert.match(other.contentType, /^text\/plain/);
      assert.equal(other.body, "404 page not found");
    }

    // DELETE clears the table: every query has no data again.
    assert.deepEqual((await api("DELETE", `/admin/clusters/${c.id}/prometheus`)).body, { clusterId: c.id, queries: {} });
    assert.deepEqual((await api("GET", `${proxyPath(c.id)}?query=up`)).body.data.result, []);
  });

  test("the service proxy is the API server's: Service lookup, ports, auth and availability", async () => {
    const c = await activeCluster("proxy");
    await prometheusService(c.id);
    await api("PUT", `/admin/clusters/${c.id}/prometheus`, { queries: { up: [{ value: 1 }] } });

    const missing = await api("GET", `/k8s/clusters/${c.id}/api/v1/namespaces/monitoring/services/prometheus:9090/proxy/api/v1/query?query=up`);
    assert.equal(missing.status, 404);
    assert.equal(missing.body.kind, "Status");
    assert.equal(missing.body.reason, "NotFound");
    assert.equal(missing.body.message, 'services "prometheus" not found');
    const otherNamespace = await api("GET", `/k8s/clusters/${c.id}/api/v1/namespaces/default/services/prometheus-k8s/proxy/api/v1/query?query=up`);
    assert.equal(otherNamespace.status, 404);
    assert.equal(otherNamespace.body.message, 'services "prometheus-k8s" not found');

    const wrongPort = await api("GET", `${proxyPath(c.id, "prometheus-k8s:9091")}?query=up`);
    assert.equal(wrongPort.status, 503);
    assert.equal(wrongPort.body.reason, "ServiceUnavailable");
    assert.equal(wrongPort.body.message, 'no service port 9091 found for service "prometheus-k8s"');
    assert.equal((await api("GET", `${proxyPath(c.id, "prometheus-k8s:metrics")}?query=up`)).status, 503);
    const malformed = await api("GET", `${proxyPath(c.id, "ftp:prometheus-k8s:9090")}?query=up`);
    assert.equal(malformed.status, 400);
    assert.equal(malformed.body.reason, "BadRequest");

    assert.equal((await api("GET", `${proxyPath(c.id)}?query=up`, undefined, { auth: null })).status, 401);
    assert.equal((await api("GET", `${proxyPath("c-zzzzz")}?query=up`)).status, 404);

    await setFaults(c.id, { apiServerDown: true });
    const down = await api("GET", `${proxyPath(c.id)}?query=up`);
    assert.equal(down.status, 503);
    assert.equal(down.body.kind, "Status");
    assert.equal(down.body.reason, "ServiceUnavailable");
    await setFaults(c.id, {});
    assert.equal((await api("GET", `${proxyPath(c.id)}?query=up`)).body.data.result[0].value[1], "1");

    // A cluster still provisioning has no API server to proxy through.
    const young = await api("POST", "/v3/clusters", { name: "young", rancherKubernetesEngineConfig: { kubernetesVersion: VERSION } });
    assert.equal((await api("GET", `${proxyPath(young.body.id)}?query=up`)).status, 503);
  });

  test("PUT /admin/clusters/<id>/prometheus validates its body and keeps the old table on a bad one", async () => {
    const c = await activeCluster("valid");
    const good = { queries: { up: [{ metric: { job: "x" }, value: 1 }] } };
    assert.equal((await api("PUT", `/admin/clusters/${c.id}/prometheus`, good)).status, 200);
    const bad: Array<[string, string]> = [
      ["unknown top-level field", JSON.stringify({ queries: {}, extra: 1 })],
      ["queries missing", JSON.stringify({})],
      ["queries an array", JSON.stringify({ queries: [] })],
      ["samples not an array", JSON.stringify({ queries: { up: { value: 1 } } })],
      ["sample not an object", JSON.stringify({ queries: { up: [1] } })],
      ["value a string", JSON.stringify({ queries: { up: [{ value: "1" }] } })],
      ["value missing", JSON.stringify({ queries: { up: [{ metric: {} }] } })],
      ["value not finite", '{"queries": {"up": [{"value": 1e999}]}}'],
      ["label value not a string", JSON.stringify({ queries: { up: [{ metric: { node: 1 }, value: 1 }] } })],
      ["bad label name", JSON.stringify({ queries: { up: [{ metric: { "no-dash": "x" }, value: 1 }] } })],
      ["metric not an object", JSON.stringify({ queries: { up: [{ metric: "node", value: 1 }] } })],
      ["unknown sample field", JSON.stringify({ queries: { up: [{ value: 1, timestamp: 2 }] } })],
      ["empty expression", JSON.stringify({ queries: { "": [] } })],
      ["not JSON", "{"],
      ["not an object", "[]"],
    ];
    for (const [what, raw] of bad) {
      const res = await api("PUT", `/admin/clusters/${c.id}/prometheus`, undefined, { raw });
      assert.equal(res.status, 400, `${what}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.type, "error", what);
      assert.ok(["InvalidFormat", "InvalidBodyContent"].includes(res.body.code), `${what}: ${res.body.code}`);
    }
    assert.equal((await api("PUT", `/admin/clusters/${c.id}/prometheus`, { queries: { up: [{ value: "1" }] } })).body.code, "InvalidFormat");
    assert.deepEqual((await api("GET", `/admin/clusters/${c.id}/prometheus`)).body.queries, good.queries, "a bad body changes nothing");

    const unknown = await api("PUT", "/admin/clusters/c-zzzzz/prometheus", good);
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.code, "NotFound");
    assert.equal((await api("GET", "/admin/clusters/c-zzzzz/prometheus")).status, 404);
    assert.equal((await api("POST", `/admin/clusters/${c.id}/prometheus`, good)).status, 405);

    // A reset clears it with the cluster.
    await api("POST", "/admin/reset");
    assert.equal((await api("GET", `/admin/clusters/${c.id}/prometheus`)).status, 404);
  });

  test("apiEndpoint is the cluster's own HTTPS endpoint, which serves its API at the root and refuses connections while the agent is disconnected", async () => {
    const c = await activeCluster("direct");
    const cluster = (await api("GET", `/v3/clusters/${c.id}`)).body;
    assert.match(cluster.apiEndpoint, /^https:\/\/127\.0\.0\.1:\d+$/);
    const port = portOf(cluster.apiEndpoint);
    assert.notEqual(port, portOf(sim.tlsUrl));
    assert.notEqual(port, portOf(sim.url));
    // Kubeconfigs still point at Rancher's proxy, as without an authorized cluster endpoint.
    assert.match(c.kubeconfig, new RegExp(`server: "${sim.tlsUrl}/k8s/clusters/${c.id}"`));
    // Listed and over HTTPS it is the same address, whatever host name the client used.
    assert.equal((await api("GET", `/v3/clusters?name=direct`)).body.data[0].apiEndpoint, cluster.apiEndpoint);
    assert.equal((await httpsCall(`https://localhost:${portOf(sim.tlsUrl)}/v3/clusters/${c.id}`, sim.tlsCert)).body.apiEndpoint, cluster.apiEndpoint);
    assert.equal((await api("GET", "/admin/state")).body.clusters[0].apiEndpoint, cluster.apiEndpoint);

    // The cluster's Kubernetes API at the root, with the same tokens and TLS certificate.
    const version = await httpsCall(`${cluster.apiEndpoint}/version`, sim.tlsCert, { token: c.token });
    assert.equal(version.status, 200, JSON.stringify(version.body));
    assert.equal(version.body.gitVersion, "v1.30.6");
    const unauthorized = await httpsCall(`${cluster.apiEndpoint}/version`, sim.tlsCert, { token: null });
    assert.equal(unauthorized.status, 401);
    assert.equal(unauthorized.body.reason, "Unauthorized");
    assert.equal((await httpsCall(`${cluster.apiEndpoint}/version`, sim.tlsCert, { token: "kubeconfig-user-abcde:00" })).status, 401);
    const nodes = await httpsCall(`${cluster.apiEndpoint}/api/v1/nodes`, sim.tlsCert, { token: c.token });
    assert.deepEqual(nodes.body.items.map((n: Json) => n.metadata.name), ["direct-n1"]);
    assert.equal((await httpsCall(`${cluster.apiEndpoint}/readyz`, sim.tlsCert, { token: c.token })).body, "ok");
    assert.ok(Array.isArray((await httpsCall(`${cluster.apiEndpoint}/`, sim.tlsCert)).body.paths));
    // Only that cluster's API: the Rancher and admin routes are not there.
    assert.equal((await httpsCall(`${cluster.apiEndpoint}/v3/clusters`, sim.tlsCert)).status, 404);
    assert.equal((await httpsCall(`${cluster.apiEndpoint}/admin/state`, sim.tlsCert)).status, 404);
    const calls = (await api("GET", "/admin/calls")).body;
    assert.ok(calls.byRoute["GET /k8s/clusters/:id/version"] >= 1, "counted as the proxy route");

    // Each cluster has its own.
    const other = await activeCluster("other");
    const otherEndpoint: string = (await api("GET", `/v3/clusters/${other.id}`)).body.apiEndpoint;
    assert.notEqual(otherEndpoint, cluster.apiEndpoint);
    const otherNodes = await httpsCall(`${otherEndpoint}/api/v1/nodes`, sim.tlsCert);
    assert.deepEqual(otherNodes.body.items.map((n: Json) => n.metadata.name), ["other-n1"]);

    // agentDisconnected: TCP connections are refused (the proxy answers 503) until it is cleared.
    assert.equal(await accepts(port), true);
    await setFaults(c.id, { agentDisconnected: true });
    assert.equal(await accepts(port), false);
    await assert.rejects(httpsCall(`${cluster.apiEndpoint}/version`, sim.tlsCert), /ECONNREFUSED/);
    assert.equal((await api("GET", `/k8s/clusters/${c.id}/version`)).status, 503);
    assert.equal((await api("GET", `/v3/clusters/${c.id}`)).body.apiEndpoint, cluster.apiEndpoint, "the address stays while it refuses");
    assert.equal(await accepts(portOf(otherEndpoint)), true, "other clusters are not affected");
    await setFaults(c.id, { agentDisconnected: true, apiServerNotReady: true });
    assert.equal(await accepts(port), false, "still refused while the fault stays on");
    await setFaults(c.id, {});
    assert.equal(await accepts(port), true);
    assert.equal((await httpsCall(`${cluster.apiEndpoint}/version`, sim.tlsCert, { token: c.token })).status, 200, "the same port again");
    assert.equal((await api("GET", `/v3/clusters/${c.id}`)).body.apiEndpoint, cluster.apiEndpoint);

    // A purged cluster's endpoint closes.
    assert.equal((await api("DELETE", `/v3/clusters/${other.id}`)).status, 200);
    await waitFor("cluster purged", () => api("GET", `/v3/clusters/${other.id}`), (r) => r.status === 404);
    assert.equal(await accepts(portOf(otherEndpoint)), false);

    // So do all on reset.
    await api("POST", "/admin/reset");
    assert.equal(await accepts(port), false);
  });

  test("a disconnected cluster's endpoint that lost its port reopens on a new one", async () => {
    const c = await activeCluster("moved");
    // A cluster disconnected before it was first shown gets its address all the same.
    await setFaults(c.id, { agentDisconnected: true });
    const endpoint: string = (await api("GET", `/v3/clusters/${c.id}`)).body.apiEndpoint;
    assert.match(endpoint, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(await accepts(portOf(endpoint)), false);
    const squatter: Server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => squatter.listen(portOf(endpoint), "127.0.0.1", resolve));
    try {
      await setFaults(c.id, {});
      const moved: string = (await api("GET", `/v3/clusters/${c.id}`)).body.apiEndpoint;
      assert.notEqual(moved, endpoint);
      assert.equal((await httpsCall(`${moved}/version`, sim.tlsCert)).status, 200);
    } finally {
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
    }
  });

  test("apiServerNotReady fails /readyz's etcd check while /livez and everything else work", async () => {
    const c = await activeCluster("notready");
    const view = await setFaults(c.id, { apiServerNotReady: true });
    assert.equal(view.apiServerNotReady, true);
    assert.equal(view.componentsUnhealthy, false);
    assert.match(view.since.apiServerNotReady, /^\d{4}-/);
    const since = view.since.apiServerNotReady;

    const readyz = await api("GET", `/k8s/clusters/${c.id}/readyz`);
    assert.equal(readyz.status, 500);
    assert.match(readyz.contentType, /^text\/plain/);
    assert.equal(readyz.body, "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed");
    assert.equal((await api("GET", `/k8s/clusters/${c.id}/readyz/etcd`)).status, 500);
    assert.equal((await api("GET", `/k8s/clusters/${c.id}/readyz/ping`)).status, 200);
    for (const path of ["livez", "healthz"]) {
      const res = await api("GET", `/k8s/clusters/${c.id}/${path}`);
      assert.equal(res.status, 200, path);
      assert.equal(res.body, "ok", path);
    }
    assert.equal((await api("GET", `/k8s/clusters/${c.id}/version`)).status, 200);
    assert.equal((await api("GET", `/k8s/clusters/${c.id}/api/v1/nodes`)).status, 200);
    assert.equal((await api("GET", `/v3/clusters/${c.id}`)).body.state, "active", "Rancher does not notice");
    // Through the cluster's own endpoint too.
    const endpoint: string = (await api("GET", `/v3/clusters/${c.id}`)).body.apiEndpoint;
    assert.equal((await httpsCall(`${endpoint}/readyz`, sim.tlsCert)).status, 500);
    assert.equal((await httpsCall(`${endpoint}/livez`, sim.tlsCert)).status, 200);

    await delay(5);
    const again = await setFaults(c.id, { apiServerNotReady: true, componentsUnhealthy: true });
    assert.equal(again.since.apiServerNotReady, since, "a fault that stays on keeps its start time");
    assert.equal((await api("DELETE", `/admin/clusters/${c.id}/faults`)).body.apiServerNotReady, false);
    assert.equal((await api("GET", `/k8s/clusters/${c.id}/readyz`)).body, "ok");

    const unknown = await api("PUT", `/admin/clusters/${c.id}/faults`, { apiServerNotReadyy: true });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.code, "InvalidFormat");
    assert.equal((await api("PUT", `/admin/clusters/${c.id}/faults`, { componentsUnhealthy: "yes" })).status, 400);
  });

  test("componentsUnhealthy shows etcd-0 unhealthy in componentstatuses", async () => {
    const c = await activeCluster("components");
    const healthy = await api("GET", `/k8s/clusters/${c.id}/api/v1/componentstatuses`);
    assert.ok(healthy.body.items.every((i: Json) => i.conditions[0].status === "True"));

    await setFaults(c.id, { componentsUnhealthy: true });
    const list = await api("GET", `/k8s/clusters/${c.id}/api/v1/componentstatuses`);
    assert.equal(list.status, 200);
    assert.equal(list.body.kind, "ComponentStatusList");
    const byName = new Map<string, Json>(list.body.items.map((i: Json) => [i.metadata.name, i.conditions[0]]));
    assert.deepEqual([...byName.keys()].sort(), ["controller-manager", "etcd-0", "scheduler"]);
    const etcd = byName.get("etcd-0");
    assert.equal(etcd.type, "Healthy");
    assert.equal(etcd.status, "False");
    assert.match(etcd.message, /"health":"false"/);
    assert.equal(byName.get("scheduler").status, "True");
    assert.equal(byName.get("controller-manager").status, "True");
    const one = await api("GET", `/k8s/clusters/${c.id}/api/v1/componentstatuses/etcd-0`);
    assert.equal(one.body.conditions[0].status, "False");
    assert.equal((await api("GET", `/k8s/clusters/${c.id}/api/v1/componentstatuses/scheduler`)).body.conditions[0].status, "True");
    // Everything else works.
    assert.equal((await api("GET", `/k8s/clusters/${c.id}/readyz`)).status, 200);

    await setFaults(c.id, {});
    assert.equal((await api("GET", `/k8s/clusters/${c.id}/api/v1/componentstatuses/etcd-0`)).body.conditions[0].status, "True");
  });
});

describe("rancher simulator health surfaces across a restart", () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "kumo-sim-health-restart-"));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("the query table and the new faults are persisted with the cluster; endpoints close with the simulator", async () => {
    const stateFile = join(dir, "rancher.json");
    const first = await startRancherSim({ port: 0, stateFile, token: TOKEN, timing: TIMING });
    let clusterId = "";
    let endpointPort = 0;
    try {
      const api = (method: string, path: string, body?: unknown): Promise<Res> => call(first.url, method, path, body);
      const seeded = await api("POST", "/admin/seed", { clusters: 2, nodesPerCluster: 1, pools: 1 });
      assert.equal(seeded.status, 201, JSON.stringify(seeded.body));
      clusterId = seeded.body.clusters[0].id;
      assert.equal((await api("PUT", `/admin/clusters/${clusterId}/prometheus`, { queries: { up: [{ metric: { job: "a" }, value: 2.5 }] } })).status, 200);
      assert.equal((await api("PUT", `/admin/clusters/${clusterId}/faults`, { apiServerNotReady: true, componentsUnhealthy: true, agentDisconnected: true })).status, 200);
      const listed = (await api("GET", "/v3/clusters")).body.data as Json[];
      assert.equal(new Set(listed.map((c) => c.apiEndpoint)).size, 2);
      const live = listed.find((c) => c.id !== clusterId);
      endpointPort = portOf(live.apiEndpoint);
      assert.equal(await accepts(endpointPort), true);
    } finally {
      await first.close();
    }
    assert.equal(await accepts(endpointPort), false, "close() closes the clusters' endpoints");

    const second = await startRancherSim({ port: 0, stateFile, token: TOKEN, timing: TIMING });
    try {
      const api = (method: string, path: string, body?: unknown): Promise<Res> => call(second.url, method, path, body);
      assert.deepEqual((await api("GET", `/admin/clusters/${clusterId}/prometheus`)).body.queries, { up: [{ metric: { job: "a" }, value: 2.5 }] });
      const faults = (await api("GET", `/admin/clusters/${clusterId}/faults`)).body;
      assert.equal(faults.apiServerNotReady, true);
      assert.equal(faults.componentsUnhealthy, true);
      assert.equal(faults.agentDisconnected, true);
      // Still disconnected after the restart: its endpoint (on a port of this run) refuses.
      const endpoint: string = (await api("GET", `/v3/clusters/${clusterId}`)).body.apiEndpoint;
      assert.equal(await accepts(portOf(endpoint)), false);
      assert.equal((await api("PUT", `/admin/clusters/${clusterId}/faults`, { componentsUnhealthy: true })).status, 200);
      assert.equal((await httpsCall(`${endpoint}/readyz`, second.tlsCert)).status, 200);
      const cs = await httpsCall(`${endpoint}/api/v1/componentstatuses/etcd-0`, second.tlsCert);
      assert.equal(cs.body.conditions[0].status, "False");
    } finally {
      await second.close();
    }
  });
});
