import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as k8s from "@kubernetes/client-node";
import { startRancherSim, type RancherSim } from "../sim/rancher.js";
import { waitFor } from "./helpers/wait.js";

/**
 * Workload rollouts in the simulator: readiness that takes `workloadReadyMs`,
 * the `crashLoop` fault, and `POST /admin/clusters/<id>/workloads/stop`.
 * Kubernetes calls go through the kubeconfig Rancher generates, as Kumo's do.
 */

const TOKEN = "sim-workloads-test-token";
const READY_MS = 800;
const MERGE = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch);
const WAIT = { timeoutMs: 20_000, intervalMs: 50 };

interface Res {
  status: number;
  body: unknown;
}

/** A Norman error body, as the admin API answers it. */
interface ErrorBody {
  type: string;
  status: number;
  code: string;
  message: string;
}

interface Stopped {
  stopped: Array<{ kind: string; namespace: string; name: string; action: string }>;
}

interface Cluster {
  id: string;
  kc: k8s.KubeConfig;
  core: k8s.CoreV1Api;
  apps: k8s.AppsV1Api;
}

function deployment(name: string, image: string, replicas = 1): k8s.V1Deployment {
  return {
    metadata: { name },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: "app", image }] } },
    },
  };
}

function statefulSet(name: string, image: string, replicas = 1): k8s.V1StatefulSet {
  return {
    metadata: { name },
    spec: {
      replicas,
      serviceName: name,
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: "app", image }] } },
    },
  };
}

function daemonSet(name: string, image: string): k8s.V1DaemonSet {
  return {
    metadata: { name },
    spec: {
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: "app", image }] } },
    },
  };
}

const condition = (d: k8s.V1Deployment, type: string): k8s.V1DeploymentCondition | undefined => d.status?.conditions?.find((c) => c.type === type);

/** Ready as `kubectl rollout status` and helm see it: the current generation observed, every replica updated and available. */
function rolledOut(d: k8s.V1Deployment): boolean {
  const wanted = d.spec?.replicas ?? 1;
  const s = d.status;
  return s?.observedGeneration === d.metadata?.generation && (s?.updatedReplicas ?? 0) === wanted && (s?.availableReplicas ?? 0) === wanted && condition(d, "Available")?.status === "True";
}

/** Not ready the way the simulator reports a rollout in progress. */
function assertUnavailable(d: k8s.V1Deployment, what: string): void {
  assert.equal(d.status?.readyReplicas ?? 0, 0, `${what}: readyReplicas`);
  assert.equal(d.status?.availableReplicas ?? 0, 0, `${what}: availableReplicas`);
  const available = condition(d, "Available");
  assert.equal(available?.status, "False", `${what}: Available`);
  assert.equal(available?.reason, "MinimumReplicasUnavailable");
  assert.equal(available?.message, "Deployment does not have minimum availability.");
  const progressing = condition(d, "Progressing");
  assert.equal(progressing?.status, "True", `${what}: Progressing`);
  assert.equal(progressing?.reason, "ReplicaSetUpdated");
}

async function apiError(promise: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(promise, (err: unknown) => err instanceof k8s.ApiException && err.code === code);
}

describe("rancher simulator workloads", () => {
  let sim: RancherSim;
  let main: Cluster;
  let other: Cluster;

  async function call(method: string, path: string, body?: unknown, raw?: string): Promise<Res> {
    const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` };
    if (body !== undefined || raw !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(sim.url + path, { method, headers, body: raw ?? (body === undefined ? undefined : JSON.stringify(body)) });
    const text = await res.text();
    return { status: res.status, body: text === "" ? null : (JSON.parse(text) as unknown) };
  }

  async function faults(config: unknown): Promise<void> {
    const res = await call("PUT", "/admin/faults", config);
    assert.equal(res.status, 200, JSON.stringify(res.body));
  }

  async function activeCluster(name: string): Promise<Cluster> {
    const created = await call("POST", "/v3/clusters", { name, rancherKubernetesEngineConfig: { kubernetesVersion: "v1.30.6-rancher1-1" } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = (created.body as { id: string }).id;
    const pool = await call("POST", "/v3/nodepools", { clusterId: id, name: "all", hostnamePrefix: `${name}-`, quantity: 1, etcd: true, controlPlane: true, worker: true });
    assert.equal(pool.status, 201, JSON.stringify(pool.body));
    await waitFor("the cluster to be active", async () => ((await call("GET", `/v3/clusters/${id}`)).body as { state: string }).state === "active" || undefined, WAIT);
    const generated = await call("POST", `/v3/clusters/${id}?action=generateKubeconfig`, {});
    const kc = new k8s.KubeConfig();
    kc.loadFromString((generated.body as { config: string }).config);
    const cluster: Cluster = { id, kc, core: kc.makeApiClient(k8s.CoreV1Api), apps: kc.makeApiClient(k8s.AppsV1Api) };
    // DaemonSets count the Ready nodes they fit, so wait for the node.
    await waitFor(
      "the node to be Ready",
      async () => {
        const nodes = (await cluster.core.listNode()).items;
        return nodes.length === 1 && nodes.every((n) => n.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True")) ? true : undefined;
      },
      WAIT,
    );
    return cluster;
  }

  async function namespace(c: Cluster, name: string): Promise<string> {
    await c.core.createNamespace({ body: { metadata: { name } } });
    return name;
  }

  const readDeployment = (c: Cluster, ns: string, name: string): Promise<k8s.V1Deployment> => c.apps.readNamespacedDeployment({ namespace: ns, name });

  const untilRolledOut = (c: Cluster, ns: string, name: string): Promise<k8s.V1Deployment> =>
    waitFor(`deployment ${ns}/${name} to be rolled out`, async () => {
      const d = await readDeployment(c, ns, name);
      return rolledOut(d) ? d : undefined;
    }, WAIT);

  before(async () => {
    sim = await startRancherSim({ port: 0, stateFile: null, token: TOKEN, timing: { clusterProvisionMs: 100, nodeBootMs: 100, nodeRemoveMs: 100, workloadReadyMs: READY_MS } });
    main = await activeCluster("wl-main");
    other = await activeCluster("wl-other");
  });
  after(async () => {
    await sim?.close();
  });

  test("workloadReadyMs is a setting: shown, validated, changeable", async () => {
    const shown = await call("GET", "/admin/settings");
    assert.equal((shown.body as Record<string, number>).workloadReadyMs, READY_MS);
    for (const bad of [-1, 1.5, "900", null]) {
      const res = await call("PUT", "/admin/settings", { workloadReadyMs: bad });
      assert.equal(res.status, 400, `workloadReadyMs ${JSON.stringify(bad)}`);
      assert.equal((res.body as ErrorBody).code, "InvalidFormat");
    }
    const changed = await call("PUT", "/admin/settings", { workloadReadyMs: READY_MS + 1 });
    assert.equal((changed.body as Record<string, number>).workloadReadyMs, READY_MS + 1);
    await call("PUT", "/admin/settings", { workloadReadyMs: READY_MS });
  });

  test("a Deployment becomes ready workloadReadyMs after its rollout started; a new template starts it again; scaling keeps ready replicas", async () => {
    const ns = await namespace(main, "delay");
    const created = await main.apps.createNamespacedDeployment({ namespace: ns, body: deployment("web", "registry.invalid/web:1", 2) });
    assert.equal(created.status?.observedGeneration, 1);
    assert.equal(created.status?.replicas, 2);
    assert.equal(created.status?.updatedReplicas, 2);
    assertUnavailable(created, "just created");
    const rsOf = async (): Promise<k8s.V1ReplicaSet> => {
      const sets = (await main.apps.listNamespacedReplicaSet({ namespace: ns })).items.filter((rs) => (rs.spec?.replicas ?? 0) > 0);
      assert.equal(sets.length, 1);
      return sets[0] as k8s.V1ReplicaSet;
    };

    const ready = await untilRolledOut(main, ns, "web");
    assert.equal(ready.status?.readyReplicas, 2);
    assert.equal(condition(ready, "Available")?.reason, "MinimumReplicasAvailable");
    const rs = await rsOf();
    assert.equal(rs.status?.readyReplicas, 2);
    assert.equal(rs.status?.availableReplicas, 2);
    assert.equal(condition(ready, "Progressing")?.reason, "NewReplicaSetAvailable");
    assert.equal(condition(ready, "Progressing")?.message, `ReplicaSet "${rs.metadata?.name}" has successfully progressed.`);

    // A new pod template: a new rollout, nothing ready until the delay passed again.
    const patched = await main.apps.patchNamespacedDeployment(
      { namespace: ns, name: "web", body: { spec: { template: { spec: { containers: [{ name: "app", image: "registry.invalid/web:2" }] } } } } },
      MERGE,
    );
    assert.equal(patched.metadata?.generation, 2);
    assert.equal(patched.status?.observedGeneration, 2);
    assert.equal(patched.status?.updatedReplicas, 2);
    assertUnavailable(patched, "new template");
    const newRs = await rsOf();
    assert.notEqual(newRs.metadata?.name, rs.metadata?.name);
    assert.equal(newRs.status?.readyReplicas ?? 0, 0);
    assert.equal(condition(patched, "Progressing")?.message, `ReplicaSet "${newRs.metadata?.name}" is progressing.`);
    await untilRolledOut(main, ns, "web");
    assert.equal((await rsOf()).status?.readyReplicas, 2);

    // Scaling up: the ready replicas stay ready, the new ones take the delay.
    const scaled = await main.apps.patchNamespacedDeployment({ namespace: ns, name: "web", body: { spec: { replicas: 3 } } }, MERGE);
    assert.equal(scaled.status?.updatedReplicas, 3);
    assert.equal(scaled.status?.readyReplicas, 2);
    assert.equal(condition(scaled, "Available")?.status, "False");
    const up = await untilRolledOut(main, ns, "web");
    assert.equal(up.status?.readyReplicas, 3);

    // Scaling down leaves nothing to wait for.
    const down = await main.apps.patchNamespacedDeployment({ namespace: ns, name: "web", body: { spec: { replicas: 1 } } }, MERGE);
    assert.ok(rolledOut(down), JSON.stringify(down.status));
  });

  test("StatefulSets and DaemonSets take the same delay; a StatefulSet's currentRevision catches up with its updateRevision", async () => {
    const ns = await namespace(main, "sets");
    const sts = await main.apps.createNamespacedStatefulSet({ namespace: ns, body: statefulSet("db", "registry.invalid/db:1", 2) });
    assert.equal(sts.status?.observedGeneration, 1);
    assert.equal(sts.status?.replicas, 2);
    assert.equal(sts.status?.updatedReplicas, 2);
    assert.equal(sts.status?.readyReplicas ?? 0, 0);
    assert.equal(sts.status?.availableReplicas ?? 0, 0);
    const firstRevision = sts.status?.updateRevision;
    assert.ok(firstRevision);
    const ds = await main.apps.createNamespacedDaemonSet({ namespace: ns, body: daemonSet("agent", "registry.invalid/agent:1") });
    assert.equal(ds.status?.desiredNumberScheduled, 1);
    assert.equal(ds.status?.updatedNumberScheduled, 1);
    assert.equal(ds.status?.numberReady, 0);
    assert.equal(ds.status?.numberAvailable ?? 0, 0);

    const readySts = await waitFor("the StatefulSet to be ready", async () => {
      const s = await main.apps.readNamespacedStatefulSet({ namespace: ns, name: "db" });
      return s.status?.readyReplicas === 2 ? s : undefined;
    }, WAIT);
    assert.equal(readySts.status?.availableReplicas, 2);
    assert.equal(readySts.status?.currentRevision, firstRevision);
    const readyDs = await waitFor("the DaemonSet to be ready", async () => {
      const d = await main.apps.readNamespacedDaemonSet({ namespace: ns, name: "agent" });
      return d.status?.numberReady === 1 ? d : undefined;
    }, WAIT);
    assert.equal(readyDs.status?.numberAvailable, 1);

    const updated = await main.apps.patchNamespacedStatefulSet(
      { namespace: ns, name: "db", body: { spec: { template: { spec: { containers: [{ name: "app", image: "registry.invalid/db:2" }] } } } } },
      MERGE,
    );
    assert.equal(updated.status?.observedGeneration, 2);
    assert.notEqual(updated.status?.updateRevision, firstRevision);
    assert.equal(updated.status?.currentRevision, firstRevision, "the pods still run the old revision");
    assert.equal(updated.status?.readyReplicas ?? 0, 0);
    const rolled = await waitFor("the StatefulSet's new revision to be current", async () => {
      const s = await main.apps.readNamespacedStatefulSet({ namespace: ns, name: "db" });
      return s.status?.currentRevision === s.status?.updateRevision ? s : undefined;
    }, WAIT);
    assert.equal(rolled.status?.readyReplicas, 2);
    assert.equal(rolled.status?.currentReplicas, 2);
  });

  test("a watch sees the rollout finish as a MODIFIED event, with no other requests", async () => {
    const ns = await namespace(main, "watched");
    const events: Array<{ type: string; obj: k8s.V1Deployment }> = [];
    const watch = new k8s.Watch(main.kc);
    const request = await watch.watch(
      `/apis/apps/v1/namespaces/${ns}/deployments`,
      {},
      (type: string, obj: k8s.V1Deployment) => events.push({ type, obj }),
      () => {},
    );
    try {
      const created = await main.apps.createNamespacedDeployment({ namespace: ns, body: deployment("api", "registry.invalid/api:1") });
      assertUnavailable(created, "just created");
      // Only the local list of events is polled: the simulator must wake the watch itself.
      const done = await waitFor("a MODIFIED event of the rolled-out Deployment", () => events.find((e) => e.type === "MODIFIED" && rolledOut(e.obj)), WAIT);
      assert.ok(Number(done.obj.metadata?.resourceVersion) > Number(created.metadata?.resourceVersion));
    } finally {
      request.abort();
    }
  });

  test("with workloadReadyMs 0 workloads are ready at once", async () => {
    const ns = await namespace(main, "instant");
    await call("PUT", "/admin/settings", { workloadReadyMs: 0 });
    try {
      const created = await main.apps.createNamespacedDeployment({ namespace: ns, body: deployment("now", "registry.invalid/now:1", 2) });
      assert.ok(rolledOut(created), JSON.stringify(created.status));
      const sts = await main.apps.createNamespacedStatefulSet({ namespace: ns, body: statefulSet("now", "registry.invalid/now:1", 2) });
      assert.equal(sts.status?.readyReplicas, 2);
      const ds = await main.apps.createNamespacedDaemonSet({ namespace: ns, body: daemonSet("now", "registry.invalid/now:1") });
      assert.equal(ds.status?.numberReady, 1);
    } finally {
      await call("PUT", "/admin/settings", { workloadReadyMs: READY_MS });
    }
  });

  test("the crashLoop fault keeps matching workloads unready, pods in CrashLoopBackOff, until it is lifted or the image changes", async () => {
    const ns = await namespace(main, "crash");
    await faults({ crashLoop: [{ image: "/crashy:" }] });
    const shown = (await call("GET", "/admin/faults")).body as { crashLoop: unknown };
    assert.deepEqual(shown.crashLoop, [{ image: "/crashy:" }]);

    const bad = await main.apps.createNamespacedDeployment({ namespace: ns, body: deployment("bad", "registry.invalid/crashy:1") });
    assertUnavailable(bad, "crash-looping");
    await main.apps.createNamespacedDeployment({ namespace: ns, body: deployment("good", "registry.invalid/fine:1") });
    const sts = await main.apps.createNamespacedStatefulSet({ namespace: ns, body: statefulSet("db", "registry.invalid/crashy:1") });
    // The simulator makes no pods; one made by hand for the StatefulSet shows the crash loop.
    const pod = await main.core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: "db-0", labels: { app: "db" }, ownerReferences: [{ apiVersion: "apps/v1", kind: "StatefulSet", name: "db", uid: sts.metadata?.uid ?? "", controller: true }] },
        spec: { containers: [{ name: "app", image: "registry.invalid/crashy:1" }] },
      },
    });
    const waiting = pod.status?.containerStatuses?.[0];
    assert.equal(waiting?.state?.waiting?.reason, "CrashLoopBackOff");
    assert.ok((waiting?.restartCount ?? 0) > 0);
    assert.equal(waiting?.ready, false);
    assert.equal(pod.status?.conditions?.find((c) => c.type === "Ready")?.status, "False");

    // The healthy one takes the same delay; once it is ready, the crash-looping ones are still not.
    await untilRolledOut(main, ns, "good");
    assertUnavailable(await readDeployment(main, ns, "bad"), "still crash-looping");
    const badSts = await main.apps.readNamespacedStatefulSet({ namespace: ns, name: "db" });
    assert.equal(badSts.status?.readyReplicas ?? 0, 0);
    assert.equal(badSts.status?.availableReplicas ?? 0, 0);

    // Lifted: ready after the delay, the pod runs again (its restarts remembered).
    await faults({});
    await untilRolledOut(main, ns, "bad");
    await waitFor("the StatefulSet to be ready", async () => ((await main.apps.readNamespacedStatefulSet({ namespace: ns, name: "db" })).status?.readyReplicas === 1 ? true : undefined), WAIT);
    const running = await main.core.readNamespacedPod({ namespace: ns, name: "db-0" });
    assert.ok(running.status?.containerStatuses?.[0]?.state?.running);
    assert.equal(running.status?.containerStatuses?.[0]?.ready, true);
    assert.ok((running.status?.containerStatuses?.[0]?.restartCount ?? 0) > 0);
    assert.equal(running.status?.conditions?.find((c) => c.type === "Ready")?.status, "True");

    // A rule set while a workload runs makes it unready at once; a template without the image (a rollback) recovers it.
    await faults({ crashLoop: [{ image: "/crashy:" }] });
    assertUnavailable(await readDeployment(main, ns, "bad"), "crash-looping again");
    const rolledBack = await main.apps.patchNamespacedDeployment(
      { namespace: ns, name: "bad", body: { spec: { template: { spec: { containers: [{ name: "app", image: "registry.invalid/fine:1" }] } } } } },
      MERGE,
    );
    assertUnavailable(rolledBack, "new template");
    await untilRolledOut(main, ns, "bad");
    await faults({});
  });

  test("a crashLoop rule's cluster pattern matches the cluster's name or id", async () => {
    const ns = "scoped";
    await namespace(main, ns);
    await namespace(other, ns);
    await faults({ crashLoop: [{ cluster: "^wl-other$", image: "crashy" }] });
    await other.apps.createNamespacedDeployment({ namespace: ns, body: deployment("web", "registry.invalid/crashy:1") });
    await main.apps.createNamespacedDeployment({ namespace: ns, body: deployment("web", "registry.invalid/crashy:1") });
    await untilRolledOut(main, ns, "web");
    assertUnavailable(await readDeployment(other, ns, "web"), "matched by name");

    await faults({ crashLoop: [{ cluster: `^${main.id}$`, image: "crashy" }] });
    assertUnavailable(await readDeployment(main, ns, "web"), "matched by id");
    await untilRolledOut(other, ns, "web");
    await faults({});
  });

  test("bad crashLoop rules are refused with 400 and the previous faults stay", async () => {
    await faults({ crashLoop: [{ image: "keep" }] });
    const bad: unknown[] = [
      { crashLoop: "crashy" },
      { crashLoop: ["crashy"] },
      { crashLoop: [{}] },
      { crashLoop: [{ cluster: "x" }] },
      { crashLoop: [{ image: "(" }] },
      { crashLoop: [{ image: 5 }] },
      { crashLoop: [{ image: "x", cluster: "[" }] },
      { crashLoop: [{ image: "x".repeat(1001) }] },
      { crashLoop: [{ image: "x", cluster: "y", name: "z" }] },
    ];
    for (const config of bad) {
      const res = await call("PUT", "/admin/faults", config);
      assert.equal(res.status, 400, JSON.stringify(config));
      assert.equal((res.body as ErrorBody).code, "InvalidFormat");
    }
    assert.deepEqual(((await call("GET", "/admin/faults")).body as { crashLoop: unknown }).crashLoop, [{ image: "keep" }]);
    await call("DELETE", "/admin/faults");
    assert.deepEqual(((await call("GET", "/admin/faults")).body as { crashLoop: unknown }).crashLoop, []);
  });

  test("stopping a workload scales a Deployment or StatefulSet to zero and deletes a DaemonSet", async () => {
    const ns = await namespace(main, "stop");
    const stop = (body: unknown, cluster = main.id): Promise<Res> => call("POST", `/admin/clusters/${cluster}/workloads/stop`, body);
    const created = await main.apps.createNamespacedDeployment({ namespace: ns, body: deployment("web", "registry.invalid/web:1", 2) });
    await main.apps.createNamespacedStatefulSet({ namespace: ns, body: statefulSet("db", "registry.invalid/db:1", 2) });
    await main.apps.createNamespacedDaemonSet({ namespace: ns, body: daemonSet("agent", "registry.invalid/agent:1") });
    await untilRolledOut(main, ns, "web");

    const events: Array<{ type: string; obj: k8s.V1Deployment }> = [];
    const request = await new k8s.Watch(main.kc).watch(
      `/apis/apps/v1/namespaces/${ns}/deployments`,
      { resourceVersion: created.metadata?.resourceVersion },
      (type: string, obj: k8s.V1Deployment) => events.push({ type, obj }),
      () => {},
    );
    try {
      const res = await stop({ namespace: ns, name: "web" });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(res.body, { stopped: [{ kind: "Deployment", namespace: ns, name: "web", action: "scaled-to-zero" }] } satisfies Stopped);
      const web = await readDeployment(main, ns, "web");
      assert.equal(web.spec?.replicas, 0);
      assert.equal(web.metadata?.generation, 2);
      assert.equal(web.status?.observedGeneration, 2);
      assert.equal(web.status?.replicas ?? 0, 0);
      assert.equal(condition(web, "Available")?.status, "True");
      const sets = (await main.apps.listNamespacedReplicaSet({ namespace: ns })).items;
      assert.deepEqual(sets.map((rs) => rs.spec?.replicas), [0]);
      await waitFor("a MODIFIED event with no replicas", () => events.find((e) => e.type === "MODIFIED" && e.obj.spec?.replicas === 0), WAIT);
    } finally {
      request.abort();
    }

    const db = await stop({ namespace: ns, name: "db" });
    assert.deepEqual(db.body, { stopped: [{ kind: "StatefulSet", namespace: ns, name: "db", action: "scaled-to-zero" }] } satisfies Stopped);
    const sts = await main.apps.readNamespacedStatefulSet({ namespace: ns, name: "db" });
    assert.equal(sts.spec?.replicas, 0);
    assert.equal(sts.status?.observedGeneration, sts.metadata?.generation);
    assert.equal(sts.status?.replicas, 0);

    const agent = await stop({ namespace: ns, name: "agent" });
    assert.deepEqual(agent.body, { stopped: [{ kind: "DaemonSet", namespace: ns, name: "agent", action: "deleted" }] } satisfies Stopped);
    await apiError(main.apps.readNamespacedDaemonSet({ namespace: ns, name: "agent" }), 404);

    // Nothing of that name (any more), no such namespace or cluster: 404 in the admin API's error format.
    for (const [body, cluster] of [
      [{ namespace: ns, name: "agent" }, main.id],
      [{ namespace: ns, name: "nothing" }, main.id],
      [{ namespace: "no-such-namespace", name: "web" }, main.id],
      [{ namespace: ns, name: "web" }, other.id],
      [{ namespace: ns, name: "web" }, "c-nosuch"],
    ] as const) {
      const res = await stop(body, cluster);
      assert.equal(res.status, 404, JSON.stringify([body, cluster]));
      const error = res.body as ErrorBody;
      assert.equal(error.type, "error");
      assert.equal(error.status, 404);
      assert.equal(error.code, "NotFound");
    }
  });

  test("a malformed stop request is 400, another method 405", async () => {
    const path = `/admin/clusters/${main.id}/workloads/stop`;
    const bodies: unknown[] = [{}, { namespace: "default" }, { name: "web" }, { namespace: "default", name: 5 }, { namespace: "", name: "web" }, { namespace: "default", name: "web", kind: "Deployment" }, ["web"]];
    for (const body of bodies) {
      const res = await call("POST", path, body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal((res.body as ErrorBody).type, "error");
    }
    assert.equal((await call("POST", path, undefined, "{not json")).status, 400);
    assert.equal((await call("POST", path)).status, 400);
    assert.equal((await call("GET", path)).status, 405);
  });
});
