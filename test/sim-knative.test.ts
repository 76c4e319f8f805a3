import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import * as k8s from "@kubernetes/client-node";
import { startRancherSim, type RancherSim } from "../sim/rancher.js";
import { waitFor } from "./helpers/wait.js";

/**
 * Knative Serving in the simulator: a Service applied to a simulated cluster
 * runs as one real local Python process per Revision, pulled over the OCI
 * distribution API from a registry (here a tiny in-test one serving an image
 * the test builds), reached through the simulator's gateway.
 */

const TOKEN = "sim-knative-test-token";
const NS = "functions";
const WAIT = { timeoutMs: 30_000, intervalMs: 100 };
const MERGE = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch);
const KNATIVE = { group: "serving.knative.dev", version: "v1", namespace: NS };

type Json = any;

// ---- a tiny OCI image, built here ----------------------------------------------------------------

const LONG_DIR = `app/data-${"x".repeat(120)}`;
const GNU_DIR = `app/gnu-${"y".repeat(110)}`;

const SERVER_PY = `
import json, os, sys, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

HERE = os.path.dirname(os.path.abspath(__file__))
PORT = int(os.environ["PORT"])
with open(os.path.join(HERE, ${JSON.stringify(LONG_DIR.slice(4))}, "message.txt")) as f:
    MESSAGE = f.read().strip()
with open(os.path.join(HERE, ${JSON.stringify(GNU_DIR.slice(4))}, "note.txt")) as f:
    NOTE = f.read().strip()

def log(line):
    print(line, flush=True)

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("x-served-by", os.environ.get("K_REVISION", ""))
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/healthz":
            return self.reply(200, {"ok": True})
        names = ["K_SERVICE", "K_REVISION", "K_CONFIGURATION", "KUMO_CONCURRENCY", "KUMO_TIMEOUT_SECONDS", "FROM_IMAGE", "GREETING", "PORT"]
        self.reply(200, {
            "path": self.path,
            "message": MESSAGE,
            "note": NOTE,
            "stale": os.path.exists(os.path.join(HERE, "stale.txt")),
            "cwd": os.getcwd() == os.path.dirname(HERE),
            "env": {n: os.environ.get(n) for n in names},
        })

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n).decode()
        if self.path.startswith("/sleep"):
            rid = self.headers.get("x-request-id", "?")
            log(f"begin {rid}")
            time.sleep(0.3)
            log(f"end {rid}")
        self.reply(201, {
            "path": self.path,
            "body": body,
            "greeting": os.environ.get("GREETING"),
            "revision": os.environ.get("K_REVISION"),
            "header": self.headers.get("x-test"),
        })

log(f"listening on {PORT} as {os.environ.get('K_REVISION')}")
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
`;

const BROKEN_PY = `
print("starting the broken function", flush=True)
import kumo_missing_dependency
`;

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

function tarHeader(name: string, size: number, type: string, mode: number): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, "utf8");
  h.write(octal(mode, 8), 100, "latin1");
  h.write(octal(0, 8), 108, "latin1");
  h.write(octal(0, 8), 116, "latin1");
  h.write(octal(size, 12), 124, "latin1");
  h.write(octal(0, 12), 136, "latin1");
  h.write("        ", 148, "latin1");
  h.write(type, 156, "latin1");
  h.write("ustar\0", 257, "latin1");
  h.write("00", 263, "latin1");
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  return h;
}

function padded(data: Buffer): Buffer {
  const rest = data.length % 512;
  return rest === 0 ? data : Buffer.concat([data, Buffer.alloc(512 - rest)]);
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = body.length + 1;
  while (`${length}${body}`.length !== length) length = `${length}${body}`.length;
  return `${length}${body}`;
}

type TarItem = { path: string; data?: string; mode?: number; longName?: "pax" | "gnu" };

/** A tar archive: ustar headers, a pax `path` record or a GNU `L` entry for long names. */
function tar(items: TarItem[]): Buffer {
  const parts: Buffer[] = [];
  for (const item of items) {
    const dir = item.data === undefined;
    const name = dir ? `${item.path}/` : item.path;
    const data = Buffer.from(item.data ?? "", "utf8");
    let shortName = name;
    if (Buffer.byteLength(name) > 100) {
      if (item.longName === "gnu") {
        const longName = Buffer.from(`${name}\0`, "utf8");
        parts.push(tarHeader("././@LongLink", longName.length, "L", 0o644), padded(longName));
      } else {
        const pax = Buffer.from(paxRecord("path", name), "utf8");
        parts.push(tarHeader("PaxHeaders/entry", pax.length, "x", 0o644), padded(pax));
      }
      shortName = name.slice(0, 99);
    }
    parts.push(tarHeader(shortName, dir ? 0 : data.length, dir ? "5" : "0", item.mode ?? (dir ? 0o755 : 0o644)));
    if (!dir) parts.push(padded(data));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

const digestOf = (data: Buffer): string => `sha256:${createHash("sha256").update(data).digest("hex")}`;

interface Image {
  manifest: Buffer;
  digest: string;
  blobs: Map<string, Buffer>;
}

/** A two-layer OCI image: the second layer replaces app/server.py and whites out app/stale.txt. */
function buildImage(): Image {
  const layer1 = tar([
    { path: "app" },
    { path: "app/server.py", data: "raise SystemExit('layer 1 must have been overwritten')\n" },
    { path: "app/stale.txt", data: "from layer 1\n" },
  ]);
  const layer2 = tar([
    { path: "app" },
    { path: "app/server.py", data: SERVER_PY },
    { path: "app/broken.py", data: BROKEN_PY },
    { path: "app/.wh.stale.txt", data: "" },
    { path: LONG_DIR, longName: "pax" },
    { path: `${LONG_DIR}/message.txt`, data: "found through a pax path\n", longName: "pax" },
    { path: GNU_DIR, longName: "gnu" },
    { path: `${GNU_DIR}/note.txt`, data: "found through a GNU long name\n", longName: "gnu" },
  ]);
  const blobs = new Map<string, Buffer>();
  const layers = [layer1, layer2].map((t) => {
    const gz = gzipSync(t);
    blobs.set(digestOf(gz), gz);
    return { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: digestOf(gz), size: gz.length };
  });
  const config = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: { Entrypoint: ["python3", "app/server.py"], Env: ["PATH=/usr/local/bin:/usr/bin:/bin", "FROM_IMAGE=yes"], WorkingDir: "/" },
      rootfs: { type: "layers", diff_ids: [digestOf(layer1), digestOf(layer2)] },
    }),
  );
  blobs.set(digestOf(config), config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: digestOf(config), size: config.length },
      layers,
    }),
  );
  return { manifest, digest: digestOf(manifest), blobs };
}

/** Just enough of the OCI distribution API: GET manifests (by tag or digest) and blobs. */
function startRegistry(repo: string, image: Image): Promise<{ server: Server; host: string; requests: string[] }> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const path = req.url ?? "/";
    requests.push(`${req.method} ${path}`);
    const notFound = (code: string, message: string): void => {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ errors: [{ code, message }] }));
    };
    if (path === "/v2/") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
      return;
    }
    const manifest = new RegExp(`^/v2/${repo}/manifests/([^/]+)$`).exec(path);
    if (manifest !== null) {
      if (manifest[1] !== "v1" && manifest[1] !== image.digest) return notFound("MANIFEST_UNKNOWN", "manifest unknown");
      res.writeHead(200, { "content-type": "application/vnd.oci.image.manifest.v1+json", "docker-content-digest": image.digest, "content-length": image.manifest.length });
      res.end(image.manifest);
      return;
    }
    const blob = new RegExp(`^/v2/${repo}/blobs/(sha256:[0-9a-f]{64})$`).exec(path);
    const data = blob === null ? undefined : image.blobs.get(blob[1] ?? "");
    if (data !== undefined) {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": data.length });
      res.end(data);
      return;
    }
    if (blob !== null) return notFound("BLOB_UNKNOWN", "blob unknown to registry");
    notFound(path.includes("/manifests/") ? "MANIFEST_UNKNOWN" : "NAME_UNKNOWN", path.includes("/manifests/") ? "manifest unknown" : "repository name not known to registry");
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ server, host: `127.0.0.1:${(server.address() as AddressInfo).port}`, requests })));
}

// ---- helpers -------------------------------------------------------------------------------------------

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const condition = (obj: Json, type: string): Json => (obj?.status?.conditions ?? []).find((c: Json) => c.type === type);

interface AdminRevision {
  namespace: string;
  name: string;
  pid: number | null;
  port: number | null;
  ready: boolean;
  restarts: number;
  exitCode: number | null;
  phase: string;
  reason: string | null;
}

describe("rancher simulator: Knative Serving", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "kumo-sim-knative-test-"));
  const stateFile = join(dataDir, "rancher.json");
  const image = buildImage();
  let registry: Awaited<ReturnType<typeof startRegistry>>;
  let sim: RancherSim;
  let clusterId: string;
  let custom: k8s.CustomObjectsApi;
  let imageRef: string;
  const pids: number[] = [];

  async function call(method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> {
    const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(sim.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, body: text === "" ? null : JSON.parse(text) };
  }

  const service = async (name: string): Promise<Json> => custom.getNamespacedCustomObject({ ...KNATIVE, plural: "services", name });
  const revision = async (name: string): Promise<Json> => custom.getNamespacedCustomObject({ ...KNATIVE, plural: "revisions", name });
  const revisions = async (): Promise<AdminRevision[]> => {
    const res = await call("GET", `/admin/clusters/${clusterId}/knative`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body.revisions as AdminRevision[];
  };
  const adminRevision = async (name: string): Promise<AdminRevision | undefined> => (await revisions()).find((r) => r.name === name);
  const logs = async (name: string): Promise<string[]> => {
    const res = await call("GET", `/admin/clusters/${clusterId}/knative/${NS}/${name}/logs`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body.lines as string[];
  };
  const untilService = (name: string, what: string, ok: (svc: Json) => boolean): Promise<Json> =>
    waitFor(`service ${name}: ${what}`, async () => {
      const svc = await service(name);
      return ok(svc) ? svc : undefined;
    }, WAIT);
  const ksvc = (name: string, template: Json): Json => ({ apiVersion: "serving.knative.dev/v1", kind: "Service", metadata: { name }, spec: { template } });

  before(async () => {
    registry = await startRegistry("functions/hello", image);
    imageRef = `${registry.host}/functions/hello@${image.digest}`;
    sim = await startRancherSim({ port: 0, stateFile, token: TOKEN, timing: { clusterProvisionMs: 100, nodeBootMs: 100, nodeRemoveMs: 100, knativeProgressDeadlineMs: 20_000 } });
    const created = await call("POST", "/v3/clusters", { name: "fn", rancherKubernetesEngineConfig: { kubernetesVersion: "v1.30.6-rancher1-1" } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    clusterId = created.body.id;
    const pool = await call("POST", "/v3/nodepools", { clusterId, name: "all", hostnamePrefix: "fn-", quantity: 1, etcd: true, controlPlane: true, worker: true });
    assert.equal(pool.status, 201, JSON.stringify(pool.body));
    await waitFor("the cluster to be active", async () => ((await call("GET", `/v3/clusters/${clusterId}`)).body.state === "active" ? true : undefined), WAIT);
    const generated = await call("POST", `/v3/clusters/${clusterId}?action=generateKubeconfig`, {});
    const kc = new k8s.KubeConfig();
    kc.loadFromString(generated.body.config);
    custom = kc.makeApiClient(k8s.CustomObjectsApi);
    await kc.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name: NS } } });
  });

  after(async () => {
    await sim?.close();
    await new Promise<void>((resolve) => (registry ? registry.server.close(() => resolve()) : resolve()));
    for (const pid of pids) if (alive(pid)) process.kill(pid, "SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("a Service becomes Ready with a gateway URL, and a request through the gateway reaches its process", async () => {
    const created = await custom.createNamespacedCustomObject({
      ...KNATIVE,
      plural: "services",
      body: ksvc("hello", {
        metadata: { annotations: { "autoscaling.knative.dev/min-scale": "1", "autoscaling.knative.dev/max-scale": "3" } },
        spec: { containers: [{ image: imageRef, env: [{ name: "GREETING", value: "one" }] }] },
      }),
    });
    // Nothing runs yet when the create answers.
    assert.notEqual(condition(created, "Ready")?.status, "True");
    assert.equal(created.status.latestCreatedRevisionName, "hello-00001");
    assert.equal(created.spec.template.spec.timeoutSeconds, 300, "defaulted");
    assert.deepEqual(created.spec.traffic, [{ latestRevision: true, percent: 100 }], "defaulted");

    const svc = await untilService("hello", "Ready", (s) => condition(s, "Ready")?.status === "True");
    const url = `${sim.url}/knative/clusters/${clusterId}/namespaces/${NS}/services/hello`;
    assert.equal(svc.status.url, url);
    assert.equal(svc.status.address.url, `http://hello.${NS}.svc.cluster.local`);
    assert.equal(svc.status.observedGeneration, svc.metadata.generation);
    assert.equal(svc.status.latestCreatedRevisionName, "hello-00001");
    assert.equal(svc.status.latestReadyRevisionName, "hello-00001");
    assert.deepEqual(svc.status.traffic, [{ revisionName: "hello-00001", latestRevision: true, percent: 100 }]);
    for (const type of ["ConfigurationsReady", "RoutesReady"]) assert.equal(condition(svc, type)?.status, "True", type);

    const rev = await revision("hello-00001");
    assert.equal(rev.metadata.labels["serving.knative.dev/service"], "hello");
    assert.equal(rev.metadata.labels["serving.knative.dev/configuration"], "hello");
    assert.equal(rev.metadata.labels["serving.knative.dev/configurationGeneration"], "1");
    assert.equal(rev.metadata.annotations["autoscaling.knative.dev/min-scale"], "1", "scale annotations are echoed");
    const config = await custom.getNamespacedCustomObject({ ...KNATIVE, plural: "configurations", name: "hello" });
    assert.deepEqual(rev.metadata.ownerReferences.map((r: Json) => [r.kind, r.name, r.uid, r.controller]), [["Configuration", "hello", config.metadata.uid, true]]);
    assert.deepEqual(config.metadata.ownerReferences.map((r: Json) => [r.kind, r.uid]), [["Service", svc.metadata.uid]]);
    assert.equal(config.status.latestReadyRevisionName, "hello-00001");
    const route = await custom.getNamespacedCustomObject({ ...KNATIVE, plural: "routes", name: "hello" });
    assert.equal(route.status.url, url);
    for (const type of ["Ready", "ContainerHealthy", "ResourcesAvailable"]) assert.equal(condition(rev, type)?.status, "True", type);
    assert.equal(rev.status.containerStatuses[0].imageDigest, `${registry.host}/functions/hello@${image.digest}`);

    // POST with a path, a query and a header; the function's own answer comes back.
    const posted = await fetch(`${url}/echo/it?x=1`, { method: "POST", headers: { "x-test": "yes", "content-type": "text/plain" }, body: "hi there" });
    assert.equal(posted.status, 201);
    assert.equal(posted.headers.get("x-served-by"), "hello-00001");
    assert.deepEqual(await posted.json(), { path: "/echo/it?x=1", body: "hi there", greeting: "one", revision: "hello-00001", header: "yes" });
    const got = await fetch(url);
    assert.equal(got.status, 200);
    const answer = (await got.json()) as Json;
    assert.equal(answer.path, "/");
    assert.equal(answer.message, "found through a pax path", "a pax long path was unpacked");
    assert.equal(answer.note, "found through a GNU long name", "a GNU long name was unpacked");
    assert.equal(answer.stale, false, "the second layer's whiteout removed app/stale.txt");
    assert.equal(answer.cwd, true, "cwd is the rootfs + WorkingDir");
    const port = answer.env.PORT;
    assert.deepEqual(answer.env, {
      K_SERVICE: "hello",
      K_REVISION: "hello-00001",
      K_CONFIGURATION: "hello",
      KUMO_CONCURRENCY: "0",
      KUMO_TIMEOUT_SECONDS: "300",
      FROM_IMAGE: "yes",
      GREETING: "one",
      PORT: port,
    });

    // Watches saw the status catch up with the process: MODIFIED events with growing resourceVersions.
    const watched = await fetch(`${sim.url}/k8s/clusters/${clusterId}/apis/serving.knative.dev/v1/namespaces/${NS}/services?watch=true&resourceVersion=${created.metadata.resourceVersion}&timeoutSeconds=1`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    const events = (await watched.text()).split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Json);
    assert.ok(events.length > 0 && events.every((e) => e.type === "MODIFIED"), JSON.stringify(events.map((e) => e.type)));
    const versions = events.map((e) => Number(e.object.metadata.resourceVersion));
    assert.deepEqual(versions, [...versions].sort((a, b) => a - b));
    assert.ok(versions[0]! > Number(created.metadata.resourceVersion));
    assert.equal(condition(events[events.length - 1].object, "Ready")?.status, "True");

    const proc = await adminRevision("hello-00001");
    assert.ok(proc?.pid !== null && proc?.pid !== undefined && alive(proc.pid), JSON.stringify(proc));
    pids.push(proc.pid);
    assert.equal(proc.ready, true);
    assert.equal(String(proc.port), port);
    assert.ok((await logs("hello-00001")).some((l) => l.startsWith(`listening on ${port} as hello-00001`)));
    assert.ok(existsSync(join(dataDir, "knative", clusterId, NS, "hello-00001", "rootfs", "app", "server.py")), "unpacked beside the state file");
    assert.ok(registry.requests.includes(`GET /v2/functions/hello/manifests/${image.digest}`));
  });

  test("a new template makes revision 2, traffic moves to it, and revision 1's process stops", async () => {
    const before = await adminRevision("hello-00001");
    await custom.patchNamespacedCustomObject(
      { ...KNATIVE, plural: "services", name: "hello", body: { spec: { template: { spec: { containers: [{ image: imageRef, env: [{ name: "GREETING", value: "two" }] }] } } } } },
      MERGE,
    );
    const svc = await untilService("hello", "revision 2 ready and routed", (s) => s.status?.latestReadyRevisionName === "hello-00002" && condition(s, "Ready")?.status === "True");
    assert.equal(svc.status.latestCreatedRevisionName, "hello-00002");
    assert.deepEqual(svc.status.traffic, [{ revisionName: "hello-00002", latestRevision: true, percent: 100 }]);
    const res = await fetch(`${svc.status.url}/x`, { method: "POST", body: "2" });
    assert.equal(res.status, 201);
    assert.deepEqual(await res.json(), { path: "/x", body: "2", greeting: "two", revision: "hello-00002", header: null });
    const rev2 = await adminRevision("hello-00002");
    assert.ok(rev2?.pid);
    pids.push(rev2.pid);
    await waitFor("revision 1's process to stop", () => (before?.pid && !alive(before.pid) ? true : undefined), WAIT);
    const rev1 = await revision("hello-00001");
    assert.equal(condition(rev1, "Ready")?.status, "True", "a revision without traffic stays Ready");
    assert.equal(condition(rev1, "Active")?.reason, "NoTraffic");
    assert.equal(rev1.status.actualReplicas, 0);
  });

  test("a revision whose process fails at start is Ready False with its error; traffic stays on the last ready revision", async () => {
    await custom.patchNamespacedCustomObject(
      {
        ...KNATIVE,
        plural: "services",
        name: "hello",
        body: { spec: { template: { spec: { containers: [{ image: imageRef, command: ["python3", "app/broken.py"], env: [{ name: "GREETING", value: "three" }] }] } } } },
      },
      MERGE,
    );
    const rev3 = await waitFor("revision 3 to fail", async () => {
      const r = await revision("hello-00003").catch(() => undefined);
      return condition(r, "Ready")?.status === "False" ? r : undefined;
    }, WAIT);
    const ready = condition(rev3, "Ready");
    assert.equal(ready.reason, "ExitCode1");
    assert.match(ready.message, /ModuleNotFoundError: No module named 'kumo_missing_dependency'/);
    assert.equal(condition(rev3, "ContainerHealthy")?.status, "False");
    const svc = await untilService("hello", "RevisionFailed", (s) => condition(s, "Ready")?.reason === "RevisionFailed");
    assert.equal(condition(svc, "Ready").status, "False");
    assert.ok(condition(svc, "Ready").message.startsWith('Revision "hello-00003" failed with message: '), condition(svc, "Ready").message);
    assert.match(condition(svc, "Ready").message, /kumo_missing_dependency/);
    assert.equal(condition(svc, "ConfigurationsReady").status, "False");
    assert.equal(condition(svc, "RoutesReady").status, "True");
    assert.equal(svc.status.latestCreatedRevisionName, "hello-00003");
    assert.equal(svc.status.latestReadyRevisionName, "hello-00002");
    assert.deepEqual(svc.status.traffic, [{ revisionName: "hello-00002", latestRevision: true, percent: 100 }]);
    const proc = await adminRevision("hello-00003");
    assert.equal(proc?.phase, "failed");
    assert.equal(proc?.exitCode, 1);
    assert.ok((await logs("hello-00003")).includes("starting the broken function"));
    for (let i = 0; i < 3; i++) {
      const res = await fetch(svc.status.url, { method: "POST", body: String(i) });
      assert.equal(res.status, 201);
      assert.equal(((await res.json()) as Json).revision, "hello-00002");
    }
  });

  test("a template named after an earlier revision rolls back to it: it runs again and takes the traffic", async () => {
    await custom.patchNamespacedCustomObject(
      {
        ...KNATIVE,
        plural: "services",
        name: "hello",
        body: { spec: { template: { metadata: { name: "hello-00001" }, spec: { containers: [{ image: imageRef, env: [{ name: "GREETING", value: "one" }] }] } } } },
      },
      MERGE,
    );
    const svc = await untilService("hello", "rolled back", (s) => s.status?.latestCreatedRevisionName === "hello-00001" && condition(s, "Ready")?.status === "True");
    assert.equal(svc.status.latestReadyRevisionName, "hello-00001");
    assert.deepEqual(svc.status.traffic, [{ revisionName: "hello-00001", latestRevision: true, percent: 100 }]);
    const res = await fetch(svc.status.url, { method: "POST", body: "back" });
    assert.equal(res.status, 201);
    assert.deepEqual(await res.json(), { path: "/", body: "back", greeting: "one", revision: "hello-00001", header: null });
    const proc = await adminRevision("hello-00001");
    assert.ok(proc?.pid);
    pids.push(proc.pid);
    assert.equal((await revisions()).filter((r) => r.name.startsWith("hello-")).length, 3, "no new revision");
    const rejected = await custom
      .patchNamespacedCustomObject({ ...KNATIVE, plural: "services", name: "hello", body: { spec: { template: { metadata: { name: "other-1" } } } } }, MERGE)
      .then(() => undefined, (err: unknown) => err);
    assert.ok(rejected instanceof k8s.ApiException && rejected.code === 400, String(rejected));
    assert.match(String(rejected.body), /must have the prefix/);
  });

  test("an image that cannot be pulled is ImagePullBackOff with the registry's error; the gateway answers 503", async () => {
    await custom.createNamespacedCustomObject({ ...KNATIVE, plural: "services", body: ksvc("ghost", { spec: { containers: [{ image: `${registry.host}/functions/ghost:v1` }] } }) });
    const rev = await waitFor("the pull to fail", async () => {
      const r = await revision("ghost-00001").catch(() => undefined);
      return condition(r, "Ready")?.status === "False" ? r : undefined;
    }, WAIT);
    assert.equal(condition(rev, "Ready").reason, "ImagePullBackOff");
    assert.equal(condition(rev, "ResourcesAvailable").reason, "ImagePullBackOff");
    assert.match(condition(rev, "Ready").message, /404 Not Found: NAME_UNKNOWN|MANIFEST_UNKNOWN/);
    const svc = await untilService("ghost", "RevisionFailed", (s) => condition(s, "Ready")?.reason === "RevisionFailed");
    assert.equal(condition(svc, "RoutesReady").status, "False");
    assert.equal(svc.status.traffic, undefined);
    const res = await fetch(svc.status.url);
    assert.equal(res.status, 503);
    assert.match(((await res.json()) as Json).message, /no ready revision/);
  });

  test("containerConcurrency 1 queues parallel requests instead of refusing them; the function never sees two at once", async () => {
    await custom.createNamespacedCustomObject({
      ...KNATIVE,
      plural: "services",
      body: ksvc("slow", { spec: { containerConcurrency: 1, timeoutSeconds: 30, containers: [{ image: `${registry.host}/functions/hello:v1` }] } }),
    });
    const svc = await untilService("slow", "Ready", (s) => condition(s, "Ready")?.status === "True");
    const started = Date.now();
    const answers = await Promise.all(
      [1, 2, 3, 4, 5].map(async (i) => {
        const res = await fetch(`${svc.status.url}/sleep`, { method: "POST", headers: { "x-request-id": String(i) }, body: `r${i}` });
        return { status: res.status, body: (await res.json()) as Json };
      }),
    );
    const elapsed = Date.now() - started;
    assert.deepEqual(answers.map((a) => a.status), [201, 201, 201, 201, 201]);
    assert.deepEqual(answers.map((a) => a.body.body), ["r1", "r2", "r3", "r4", "r5"]);
    assert.ok(elapsed >= 1400, `five 300 ms requests one at a time take at least 1.5 s, took ${elapsed} ms`);
    const lines = (await logs("slow-00001")).filter((l) => /^(begin|end) /.test(l));
    assert.equal(lines.length, 10, lines.join("\n"));
    for (let i = 0; i < lines.length; i += 2) {
      const id = (lines[i] ?? "").split(" ")[1];
      assert.equal(lines[i], `begin ${id}`, lines.join("\n"));
      assert.equal(lines[i + 1], `end ${id}`, `no overlap:\n${lines.join("\n")}`);
    }
    const proc = await adminRevision("slow-00001");
    assert.ok(proc?.pid);
    pids.push(proc.pid);
    assert.equal((proc as Json).containerConcurrency, 1);
  });

  test("a process that crashes after it was ready makes its revision unhealthy and is restarted, as a kubelet would", async () => {
    const before = await adminRevision("slow-00001");
    assert.ok(before?.pid && before.ready);
    process.kill(before.pid, "SIGKILL");
    const unhealthy = await waitFor("the revision to show the crash", async () => {
      const r = await revision("slow-00001");
      return condition(r, "ContainerHealthy")?.status === "False" ? r : undefined;
    }, { timeoutMs: 10_000, intervalMs: 20 });
    assert.equal(condition(unhealthy, "ContainerHealthy").reason, "ExitCode137");
    assert.equal(condition(unhealthy, "Ready").status, "False");
    assert.equal(condition(unhealthy, "ResourcesAvailable").status, "True");
    const restarted = await waitFor("the process to be restarted", async () => {
      const r = await adminRevision("slow-00001");
      return r?.ready === true && r.restarts === 1 ? r : undefined;
    }, WAIT);
    assert.notEqual(restarted.pid, before.pid);
    pids.push(restarted.pid as number);
    await untilService("slow", "Ready again", (s) => condition(s, "Ready")?.status === "True");
    const res = await fetch((await service("slow")).status.url + "/sleep", { method: "POST", body: "again" });
    assert.equal(res.status, 201);
  });

  test("a revision that never answers /healthz fails at its progress deadline and its process is killed", async () => {
    await custom.createNamespacedCustomObject({
      ...KNATIVE,
      plural: "services",
      body: ksvc("stuck", {
        metadata: { annotations: { "serving.knative.dev/progress-deadline": "1500ms" } },
        spec: { containers: [{ image: imageRef, command: ["python3", "-c", "import time; print('never ready', flush=True); time.sleep(120)"] }] },
      }),
    });
    const started = await waitFor("the process to start", async () => {
      const r = await adminRevision("stuck-00001");
      return r?.pid ? r : undefined;
    }, WAIT);
    pids.push(started.pid as number);
    const rev = await waitFor("the deadline to pass", async () => {
      const r = await revision("stuck-00001");
      return condition(r, "Ready")?.status === "False" ? r : undefined;
    }, WAIT);
    assert.equal(condition(rev, "Ready").reason, "ProgressDeadlineExceeded");
    assert.equal(condition(rev, "ResourcesAvailable").reason, "ProgressDeadlineExceeded");
    await waitFor("the process to be killed", () => (!alive(started.pid as number) ? true : undefined), WAIT);
    assert.equal((await adminRevision("stuck-00001"))?.phase, "failed");
    await custom.deleteNamespacedCustomObject({ ...KNATIVE, plural: "services", name: "stuck" });
  });

  test("deleting the Service stops its processes and removes its revisions' files", async () => {
    const running = await waitFor("only the rolled-back revision to run", async () => {
      const r = (await revisions()).filter((x) => x.name.startsWith("hello-") && x.pid !== null);
      return r.length === 1 ? r : undefined;
    }, WAIT);
    assert.deepEqual(running.map((r) => r.name), ["hello-00001"]);
    await custom.deleteNamespacedCustomObject({ ...KNATIVE, plural: "services", name: "hello" });
    await waitFor("the processes to stop", () => (running.every((r) => r.pid !== null && !alive(r.pid)) ? true : undefined), WAIT);
    await assert.rejects(revision("hello-00001"), (err: unknown) => err instanceof k8s.ApiException && err.code === 404);
    await waitFor("the revisions' folders to go", () => (!existsSync(join(dataDir, "knative", clusterId, NS, "hello-00001")) ? true : undefined), WAIT);
    assert.equal((await revisions()).some((r) => r.name.startsWith("hello-")), false);
  });

  test("a restart from the state file starts the revisions again; close() leaves no process behind", async () => {
    const before = await adminRevision("slow-00001");
    assert.ok(before?.pid);
    await sim.close();
    assert.equal(alive(before.pid), false, "close() stopped the process");

    sim = await startRancherSim({ port: 0, stateFile, token: TOKEN, timing: { clusterProvisionMs: 100, nodeBootMs: 100, nodeRemoveMs: 100, knativeProgressDeadlineMs: 20_000 } });
    const again = await waitFor("slow's revision to run again", async () => {
      const r = await adminRevision("slow-00001");
      return r?.ready === true && r.pid !== null ? r : undefined;
    }, WAIT);
    pids.push(again.pid as number);
    assert.notEqual(again.pid, before.pid);
    const path = `/k8s/clusters/${clusterId}/apis/serving.knative.dev/v1/namespaces/${NS}/services/slow`;
    const svc = await waitFor("the URL to follow the new port", async () => {
      const s = (await call("GET", path)).body;
      return s.status?.url?.startsWith(`${sim.url}/`) && condition(s, "Ready")?.status === "True" ? s : undefined;
    }, WAIT);
    const res = await fetch(`${svc.status.url}/sleep`, { method: "POST", body: "after restart" });
    assert.equal(res.status, 201);
    assert.equal(((await res.json()) as Json).body, "after restart");

    await sim.close();
    for (const pid of pids) assert.equal(alive(pid), false, `process ${pid} is gone after close()`);
  });
});
