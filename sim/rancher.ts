/**
 * A simulator of the part of Rancher's v3 (Norman) management API that Kumo
 * uses: clusters, node pools, nodes and one setting, plus an unauthenticated
 * /admin API for tests (state dump, reset, fault injection, timing, call log).
 *
 * It is not Rancher and runs nothing: nodes and clusters only move through
 * their states as time passes. It exists so Kumo can be developed and tested
 * where a real Rancher is not available; Kumo reaches it only by URL.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo, Server } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { TLSSocket } from "node:tls";
import { Tokens } from "./auth.js";
import { ClusterEndpoints } from "./endpoints.js";
import { actionBody, EtcdBackups } from "./etcd.js";
import { FaultConfigError, Faults, ruleReply, type FaultRule } from "./faults.js";
import {
  errorReply,
  fromNormanError,
  isPlainObject,
  KubeError,
  kubeErrorReply,
  kubeReasonForStatus,
  kubeStatus,
  NormanError,
  parseJsonObject,
  readBody,
  readBodyBytes,
  sendReply,
  type Reply,
} from "./http.js";
import { k8sRouteKey, K8sRoutes } from "./k8s.js";
import { KubeApi } from "./kube.js";
import { Knative } from "./knative.js";
import { KnativeRuntime } from "./knative-runtime.js";
import { RancherModel, SUPPORTED_K8S_VERSIONS, type Settings } from "./model.js";
import { parsePrometheusQueries } from "./prometheus.js";
import { decodeKubeProtobuf, PROTOBUF_CONTENT_TYPE, ProtobufError } from "./protobuf.js";
import {
  renderCluster,
  renderEtcdBackup,
  renderKubeconfig,
  renderNode,
  renderNodePool,
  renderVersionsSetting,
  type RenderContext,
} from "./render.js";
import { emptyState, loadState, saveState, type NodeFaults, type ClusterFaults } from "./state.js";
import { ensureTlsMaterial, tlsNames } from "./tls.js";

/** Options for {@link startRancherSim}. */
export interface RancherSimOptions {
  /** TCP port; 0 picks a free one. Default 0. */
  port?: number;
  /** TCP port of the HTTPS listener (same routes); 0 picks a free one. Default 0. */
  tlsPort?: number;
  /** Address to listen on. Default 127.0.0.1; the /admin API refuses non-loopback callers anyway. */
  host?: string;
  /**
   * JSON file the state is persisted to and loaded from; null keeps everything in memory.
   * The TLS key and certificate live in `tls/` beside it (with null, in a temporary folder).
   */
  stateFile?: string | null;
  /** The API token clients must present as `Authorization: Bearer <token>`. */
  token: string;
  /** How long simulated work takes. */
  timing?: {
    /** Minimum time from cluster creation to `active`. Default 3000. */
    clusterProvisionMs?: number;
    /** Time for a node to boot and register. Default 2000. */
    nodeBootMs?: number;
    /** Time a removed cluster, pool or node stays in `removing`. Default 1000. */
    nodeRemoveMs?: number;
    /** Time an etcd snapshot stays `activating`. Default 1000. */
    snapshotMs?: number;
    /** Time an etcd restore keeps its cluster `updating`. Default 3000. */
    restoreMs?: number;
    /** Time from a node's last heartbeat to Ready Unknown. Default 40000. */
    nodeMonitorGraceMs?: number;
    /** Time one node takes to upgrade its Kubernetes version. Default 1500. */
    nodeUpgradeMs?: number;
    /** Time from the start of a workload rollout until it reports ready; 0 makes workloads ready at once. Default 1500. */
    workloadReadyMs?: number;
    /** How long a Knative Revision's process may take to answer `GET /healthz` with 200. Default 60000. */
    knativeProgressDeadlineMs?: number;
  };
}

/** A running simulator. */
export interface RancherSim {
  /** Base URL, e.g. `http://127.0.0.1:8090`; the v3 API is under `${url}/v3`. */
  url: string;
  /** The same API over HTTPS, e.g. `https://127.0.0.1:8443`; kubeconfigs point here. */
  tlsUrl: string;
  /** PEM of the self-signed certificate the HTTPS listener presents (the kubeconfig's CA). */
  tlsCert: string;
  /** Stops listening, drops open connections and writes the state file one last time. */
  close(): Promise<void>;
}

const BODY_LIMIT = 1024 * 1024;
const RECENT_CALLS = 500;
const COLLECTIONS = ["clusters", "nodepools", "nodes", "settings", "etcdbackups"] as const;
type Collection = (typeof COLLECTIONS)[number];
const ACTIONS: Record<Collection, readonly string[]> = {
  clusters: ["generateKubeconfig", "backupEtcd", "restoreFromEtcdBackup"],
  nodepools: [],
  nodes: ["cordon", "uncordon"],
  settings: [],
  etcdbackups: [],
};
const RESOURCE_TYPES: Record<Collection, string> = {
  clusters: "cluster",
  nodepools: "nodePool",
  nodes: "node",
  settings: "setting",
  etcdbackups: "etcdBackup",
};
/** Query parameters that steer a list rather than filter it. */
const NON_FILTER_PARAMS = new Set(["limit", "marker", "sort", "order", "reverse", "action"]);

interface CallRecord {
  method: string;
  path: string;
  route: string;
  status: number;
  at: string;
}

/** Counts /v3 calls so tests can assert how Kumo talks to Rancher (e.g. that retries happened). */
class CallLog {
  total = 0;
  byRoute = new Map<string, number>();
  recent: CallRecord[] = [];

  record(call: CallRecord): void {
    this.total += 1;
    this.byRoute.set(call.route, (this.byRoute.get(call.route) ?? 0) + 1);
    this.recent.push(call);
    if (this.recent.length > RECENT_CALLS) this.recent.shift();
  }

  clear(): void {
    this.total = 0;
    this.byRoute.clear();
    this.recent = [];
  }

  snapshot(): Record<string, unknown> {
    return { total: this.total, byRoute: Object.fromEntries(this.byRoute), recent: [...this.recent] };
  }
}

function nonNegativeInteger(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw new TypeError(`${what} must be a non-negative integer, got ${String(value)}`);
  }
  return value;
}

function booleanFlags<K extends string>(body: Record<string, unknown>, keys: readonly K[], what: string): Partial<Record<K, boolean>> {
  const out: Partial<Record<K, boolean>> = {};
  for (const [key, value] of Object.entries(body)) {
    if (!(keys as readonly string[]).includes(key)) throw new NormanError(400, "InvalidFormat", `unknown ${what} fault "${key}"; known: ${keys.join(", ")}`, key);
    if (typeof value !== "boolean") throw new NormanError(400, "InvalidFormat", `${key} must be a boolean`, key);
    out[key as K] = value;
  }
  return out;
}

const SEED_KEYS = ["clusters", "nodesPerCluster", "pools", "kubernetesVersion", "namePrefix"];

/** Reads a `POST /admin/seed` body: `{clusters, nodesPerCluster, pools?, kubernetesVersion?, namePrefix?}`. */
function seedSpec(body: Record<string, unknown>): Parameters<RancherModel["seed"]>[0] {
  for (const key of Object.keys(body)) {
    if (!SEED_KEYS.includes(key)) throw new NormanError(400, "InvalidFormat", `unknown field "${key}"; known: ${SEED_KEYS.join(", ")}`, key);
  }
  const integer = (key: string, min: number, max: number, fallback?: number): number => {
    const value = body[key] ?? fallback;
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      throw new NormanError(400, "InvalidFormat", `${key} must be an integer from ${min} to ${max}`, key);
    }
    return value;
  };
  const kubernetesVersion = body.kubernetesVersion ?? SUPPORTED_K8S_VERSIONS[SUPPORTED_K8S_VERSIONS.length - 1];
  if (typeof kubernetesVersion !== "string" || !SUPPORTED_K8S_VERSIONS.includes(kubernetesVersion)) {
    throw new NormanError(400, "InvalidFormat", `kubernetesVersion must be one of ${SUPPORTED_K8S_VERSIONS.join(", ")}`, "kubernetesVersion");
  }
  const namePrefix = body.namePrefix ?? "seed-";
  if (typeof namePrefix !== "string" || !/^[a-z][-a-z0-9]{0,40}$/.test(namePrefix)) {
    throw new NormanError(400, "InvalidFormat", "namePrefix must be a lowercase letter then at most 40 lowercase letters, digits or '-'", "namePrefix");
  }
  return {
    clusters: integer("clusters", 1, 10_000),
    nodesPerCluster: integer("nodesPerCluster", 1, 1_000),
    pools: integer("pools", 1, 10, 2),
    kubernetesVersion,
    namePrefix,
  };
}

const NODE_FAULTS: readonly (keyof NodeFaults)[] = ["notReady", "kubeletStopped", "unreachable"];
const CLUSTER_FAULTS: readonly (keyof ClusterFaults)[] = ["apiServerDown", "agentDisconnected", "restoreStuck", "apiServerNotReady", "componentsUnhealthy"];

function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  return address === "::1" || address.startsWith("127.") || address.startsWith("::ffff:127.");
}

function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}

function splitPath(pathname: string): string[] | null {
  const segments: string[] = [];
  for (const raw of pathname.split("/")) {
    if (raw === "") continue;
    try {
      segments.push(decodeURIComponent(raw));
    } catch {
      return null;
    }
  }
  return segments;
}

function asCollection(segment: string | undefined): Collection | undefined {
  const lower = segment?.toLowerCase();
  return COLLECTIONS.find((c) => c === lower);
}

/** The route a /v3 call is counted under, e.g. `GET /v3/clusters/:id`; bounded so junk URLs cannot grow the map. */
function routeKey(method: string, segments: string[], action: string | null): string {
  const collection = asCollection(segments[1]);
  if (segments[0] !== "v3" || collection === undefined || segments.length > 3) return `${method} (unknown route)`;
  let key = `${method} /v3/${collection}${segments.length === 3 ? "/:id" : ""}`;
  if (action !== null) key += `?action=${ACTIONS[collection].includes(action) ? action : "(unknown)"}`;
  return key;
}

/**
 * Starts the Rancher simulator.
 *
 * @returns once it is listening; `url` is the base URL to give Kumo, `tlsUrl` the same over HTTPS.
 * @throws when the state file exists but cannot be read, a port is taken, or
 *   the TLS certificate cannot be made (no `openssl` command).
 */
export async function startRancherSim(opts: RancherSimOptions): Promise<RancherSim> {
  if (typeof opts.token !== "string" || opts.token === "") throw new TypeError("startRancherSim: token must be a non-empty string");
  const host = opts.host ?? "127.0.0.1";
  const port = opts.port ?? 0;
  const tlsPort = opts.tlsPort ?? 0;
  const stateFile = opts.stateFile ?? null;
  const initialSettings: Settings = {
    clusterProvisionMs: nonNegativeInteger(opts.timing?.clusterProvisionMs ?? 3000, "timing.clusterProvisionMs"),
    nodeBootMs: nonNegativeInteger(opts.timing?.nodeBootMs ?? 2000, "timing.nodeBootMs"),
    nodeRemoveMs: nonNegativeInteger(opts.timing?.nodeRemoveMs ?? 1000, "timing.nodeRemoveMs"),
    maxNodes: 5000,
    snapshotMs: nonNegativeInteger(opts.timing?.snapshotMs ?? 1000, "timing.snapshotMs"),
    restoreMs: nonNegativeInteger(opts.timing?.restoreMs ?? 3000, "timing.restoreMs"),
    nodeMonitorGraceMs: nonNegativeInteger(opts.timing?.nodeMonitorGraceMs ?? 40000, "timing.nodeMonitorGraceMs"),
    nodeUpgradeMs: nonNegativeInteger(opts.timing?.nodeUpgradeMs ?? 1500, "timing.nodeUpgradeMs"),
    workloadReadyMs: nonNegativeInteger(opts.timing?.workloadReadyMs ?? 1500, "timing.workloadReadyMs"),
    knativeProgressDeadlineMs: nonNegativeInteger(opts.timing?.knativeProgressDeadlineMs ?? 60000, "timing.knativeProgressDeadlineMs"),
  };
  const tokens = new Tokens(opts.token);
  const faults = new Faults();
  const calls = new CallLog();
  const model = new RancherModel(stateFile ? loadState(stateFile) : emptyState(), { ...initialSettings }, faults);
  const kube = new KubeApi(model);
  const k8s = new K8sRoutes(model, kube);
  const backups = new EtcdBackups(model, (clusterId) => kube.closeWatches(clusterId, true));
  // The key and certificate for HTTPS, beside the state file so clients' kubeconfigs stay valid across restarts.
  const tls = ensureTlsMaterial(stateFile === null ? null : join(dirname(stateFile), "tls"), tlsNames(host));
  const startedTS = Date.now();
  let closed = false;
  let closingDown = false;
  // Knative revisions run as local processes; their files go beside the state file (or in a temporary folder).
  const knativeTmp = stateFile === null ? mkdtempSync(join(tmpdir(), "kumo-sim-")) : null;
  const runtime = new KnativeRuntime({ dataDir: knativeTmp ?? dirname(stateFile ?? "."), onChange: () => kickKnative() });
  const knative = new Knative(model, kube, runtime, {
    gatewayBase: (hostname) => gatewayBase(hostname),
    kick: () => kickKnative(),
  });
  kube.controllers.push(knative);
  // Each cluster's own API endpoint (apiEndpoint): refuses connections while its agent is disconnected.
  const endpoints = new ClusterEndpoints({
    host,
    key: tls.key,
    cert: tls.cert,
    wanted: (clusterId) => {
      const cluster = model.data.clusters.find((c) => c.id === clusterId);
      if (cluster === undefined) return "gone";
      return cluster.faults.agentDisconnected !== null ? "closed" : "open";
    },
    onRequest: (req, res) => onRequest(req, res),
  });
  /** The cluster list the endpoints were last pruned against; purges and resets replace it. */
  let endpointClusters = model.data.clusters;

  /** Closes the endpoints of clusters that are gone (purged, or everything after a reset). */
  function pruneEndpoints(): void {
    if (model.data.clusters === endpointClusters) return;
    endpointClusters = model.data.clusters;
    endpoints.prune(new Set(endpointClusters.map((c) => c.id)));
  }

  function persist(force = false): void {
    if (!force && !model.dirty) return;
    model.dirty = false;
    if (stateFile === null || closed) return;
    try {
      saveState(stateFile, model.data);
    } catch (err) {
      // Keep serving: a full disk should show up in the log, not take the simulator down.
      model.dirty = true;
      console.error(`rancher simulator: could not write state file: ${(err as Error).message}`);
    }
  }

  let listenUrl = "";
  let tlsListenUrl = "";
  let tlsListenPort = 0;

  /** Brings stored facts up to date with the clock before a request is answered. */
  function reconcileAll(now: number): void {
    kube.collectPods(now);
    model.reconcile(now);
    kube.schedulePods(now);
    kube.reconcileWorkloads(now);
    knative.reconcile(now);
    pruneEndpoints();
  }

  // Revisions' processes change by themselves (ready, crashed); their statuses catch up soon after.
  let knativeTimer: NodeJS.Timeout | null = null;
  function kickKnative(): void {
    if (closed || closingDown || knativeTimer !== null) return;
    knativeTimer = setTimeout(() => {
      knativeTimer = null;
      if (closed || closingDown) return;
      try {
        reconcileAll(Date.now());
      } catch (err) {
        console.error("rancher simulator: reconciling Knative revisions failed:", err);
        return;
      }
      persist();
    }, 5);
    knativeTimer.unref();
  }

  // States are derived when a request arrives, but a watch waits without asking:
  // while one is open, wake up when a workload's rollout next changes by itself.
  let wake: { timer: NodeJS.Timeout; at: number } | null = null;
  const MAX_WAKE_MS = 60_000;

  function scheduleWake(now: number): void {
    const at = kube.watching ? kube.nextWorkloadChange(now) : undefined;
    if (at === undefined || closed) return;
    if (wake !== null) {
      if (wake.at <= at) return;
      clearTimeout(wake.timer);
    }
    const timer = setTimeout(
      () => {
        wake = null;
        if (closed) return;
        const t = Date.now();
        try {
          reconcileAll(t);
        } catch (err) {
          // A timer has nobody to answer to; the next request reconciles again.
          console.error("rancher simulator: reconciling for open watches failed:", err);
          return;
        }
        persist();
        scheduleWake(t);
      },
      Math.min(MAX_WAKE_MS, Math.max(0, at - now) + 1),
    );
    timer.unref();
    wake = { timer, at };
  }

  function overTls(req: IncomingMessage): boolean {
    return (req.socket as Partial<TLSSocket>).encrypted === true;
  }

  /** The request's Host header when it is a plain host[:port], else undefined. */
  function hostHeader(req: IncomingMessage): string | undefined {
    const value = req.headers.host;
    return value !== undefined && /^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(value) ? value : undefined;
  }

  /** Links must work for the client, so they use the scheme and Host it connected with. */
  function baseUrl(req: IncomingMessage): string {
    const tls = overTls(req);
    const value = hostHeader(req);
    if (value !== undefined) return `${tls ? "https" : "http"}://${value}`;
    return tls ? tlsListenUrl : listenUrl;
  }

  /**
   * The Knative gateway's base: the plain-HTTP listener under the host name a
   * client used (like kubeconfigs' server URLs), or the listen address (a
   * wildcard one as 127.0.0.1).
   */
  function gatewayBase(hostname: string | null): string {
    const listenHost = host === "0.0.0.0" || host === "::" || host === "" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
    const port = listenUrl.replace(/^.*:(\d+)$/, "$1");
    return `http://${hostname ?? listenHost}:${port}`;
  }

  /** The host name (without port) of the request's Host header, when it is a plain one. */
  function requestHostname(req: IncomingMessage): string | null {
    const value = hostHeader(req);
    return value === undefined ? null : value.replace(/:\d{1,5}$/, "");
  }

  /**
   * Where kubeconfigs point (Rancher's proxy): the HTTPS listener, under the
   * host name the client used (the certificate covers 127.0.0.1, ::1, localhost
   * and the listen address), as Rancher's are always HTTPS.
   */
  function kubeBaseUrl(req: IncomingMessage): string {
    if (overTls(req)) return baseUrl(req);
    const value = hostHeader(req);
    if (value === undefined) return tlsListenUrl;
    return `https://${value.replace(/:\d{1,5}$/, "")}:${tlsListenPort}`;
  }

  // ---- /v3 -----------------------------------------------------------------------

  function list(ctx: RenderContext, collection: Collection, query: URLSearchParams, selfLink: string): Reply {
    // Filters on fields rendered exactly as stored narrow the records before rendering, so
    // `?clusterId=` costs that cluster's records, not the whole fleet's (the filters below still apply).
    const stored = <T extends object>(records: T[], fields: ReadonlyArray<keyof T & string>): T[] => {
      let out = records;
      for (const field of fields) {
        const wanted = query.getAll(field);
        if (wanted.length > 0) out = out.filter((record) => wanted.includes(String(record[field])));
      }
      return out;
    };
    const clusterNodes = (): typeof model.data.nodes => {
      const ids = query.getAll("clusterId");
      return ids.length === 1 ? model.nodesOfCluster(ids[0] ?? "") : model.data.nodes;
    };
    let items: Record<string, unknown>[];
    switch (collection) {
      case "clusters":
        items = stored(model.data.clusters, ["id", "name"]).map((c) => renderCluster(ctx, c));
        break;
      case "nodepools":
        items = stored(model.data.nodePools, ["id", "clusterId", "name"]).map((p) => renderNodePool(ctx, p));
        break;
      case "nodes":
        items = stored(clusterNodes(), ["id", "clusterId", "nodePoolId", "hostname"]).map((n) => renderNode(ctx, n));
        break;
      case "settings":
        items = [renderVersionsSetting(ctx.base, startedTS)];
        break;
      case "etcdbackups":
        items = stored(backups.all(), ["id", "clusterId", "name"]).map((b) => renderEtcdBackup(ctx, b));
        break;
    }
    // A Map, because query keys such as "__proto__" must not reach an object's prototype.
    const filters = new Map<string, Array<{ modifier: string; value: string }>>();
    for (const [key, value] of query) {
      if (NON_FILTER_PARAMS.has(key)) continue;
      const conditions = filters.get(key) ?? [];
      conditions.push({ modifier: "eq", value });
      filters.set(key, conditions);
    }
    // Exact match on scalar top-level fields; a filter on a field that does not
    // exist matches nothing, which is safer for a caller than matching everything.
    const data = items.filter((item) =>
      [...filters].every(([key, conditions]) => {
        const field = Object.hasOwn(item, key) ? item[key] : undefined;
        if (typeof field !== "string" && typeof field !== "number" && typeof field !== "boolean") return false;
        return conditions.some((c) => String(field) === c.value);
      }),
    );
    const limitParam = Number(query.get("limit"));
    const limit = Number.isInteger(limitParam) && limitParam > 0 ? limitParam : 1000;
    const pagination: Record<string, unknown> = { limit, total: data.length };
    if (data.length > limit) pagination.partial = true;
    return {
      status: 200,
      body: {
        type: "collection",
        resourceType: RESOURCE_TYPES[collection],
        data: data.slice(0, limit),
        pagination,
        links: { self: selfLink },
        createTypes:
          collection === "clusters" || collection === "nodepools" || collection === "etcdbackups"
            ? { [RESOURCE_TYPES[collection]]: `${ctx.base}/v3/${collection}` }
            : {},
        actions: {},
        sort: {},
        filters: Object.fromEntries(filters),
      },
    };
  }

  function getOne(ctx: RenderContext, collection: Collection, id: string): Record<string, unknown> {
    switch (collection) {
      case "clusters":
        return renderCluster(ctx, model.cluster(id));
      case "nodepools":
        return renderNodePool(ctx, model.nodePool(id));
      case "nodes":
        return renderNode(ctx, model.node(id));
      case "settings":
        if (id === "k8s-versions-current") return renderVersionsSetting(ctx.base, startedTS);
        throw new NormanError(404, "NotFound", `setting ${id} not found`);
      case "etcdbackups":
        return renderEtcdBackup(ctx, backups.get(id));
    }
  }

  function methodNotAllowed(method: string, what: string): NormanError {
    return new NormanError(405, "MethodNotAllowed", `${method} is not supported on ${what}`);
  }

  function action(ctx: RenderContext, collection: Collection, id: string, name: string, bodyText: string): Reply {
    if (!ACTIONS[collection].includes(name)) throw new NormanError(404, "NotFound", `action ${name} not found on ${RESOURCE_TYPES[collection]}`);
    const resource = getOne(ctx, collection, id);
    const available = isPlainObject(resource.actions) && Object.hasOwn(resource.actions, name);
    if (!available) {
      throw new NormanError(409, "Conflict", `action ${name} is not available while ${RESOURCE_TYPES[collection]} ${id} is ${String(resource.state)}`);
    }
    if (collection === "clusters") {
      const cluster = model.cluster(id);
      switch (name) {
        case "backupEtcd": {
          const body = actionBody(bodyText);
          const backupName = typeof body.name === "string" && body.name !== "" ? body.name : undefined;
          return { status: 200, body: renderEtcdBackup(ctx, backups.create({ ...body, clusterId: cluster.id, name: backupName, manual: true }, ctx.now)) };
        }
        case "restoreFromEtcdBackup":
          return { status: 200, body: renderCluster(ctx, backups.restore(cluster, actionBody(bodyText), ctx.now)) };
        default:
          return { status: 200, body: renderKubeconfig(ctx.kubeBase, cluster, tokens.mintKubeconfigToken(), tls.cert) };
      }
    }
    const node = model.setUnschedulable(id, name === "cordon", ctx.now);
    return { status: 200, body: renderNode(ctx, node) };
  }

  function renderContext(req: IncomingMessage, now: number): RenderContext {
    return { model, base: baseUrl(req), kubeBase: kubeBaseUrl(req), now, apiEndpoint: (cluster) => endpoints.url(cluster.id) };
  }

  async function handleV3(req: IncomingMessage, segments: string[], query: URLSearchParams, bodyText: string, selfLink: string): Promise<Reply> {
    const now = Date.now();
    reconcileAll(now);
    const ctx = renderContext(req, now);
    const method = req.method ?? "GET";
    const collection = asCollection(segments[1]);
    if (collection === undefined || segments.length > 3) throw new NormanError(404, "NotFound", `no such resource: /${segments.join("/")}`);
    const id = segments[2];
    const actionName = query.get("action");
    // A cluster's own endpoint opens the first time the cluster is shown (apiEndpoint names its port).
    if (collection === "clusters") {
      await endpoints.ensure(id === undefined ? model.data.clusters.map((c) => c.id) : model.data.clusters.some((c) => c.id === id) ? [id] : []);
    }

    if (id === undefined) {
      if (actionName !== null) throw new NormanError(404, "NotFound", `action ${actionName} not found on the ${collection} collection`);
      if (method === "GET") return list(ctx, collection, query, selfLink);
      if (method === "POST" && collection === "clusters") {
        const created = model.createCluster(parseJsonObject(bodyText), now);
        await endpoints.ensure([created.id]);
        return { status: 201, body: renderCluster(ctx, created) };
      }
      if (method === "POST" && collection === "nodepools") {
        return { status: 201, body: renderNodePool(ctx, model.createNodePool(parseJsonObject(bodyText), now)) };
      }
      if (method === "POST" && collection === "etcdbackups") {
        return { status: 201, body: renderEtcdBackup(ctx, backups.create(parseJsonObject(bodyText), now)) };
      }
      if (method === "POST" && collection === "nodes") {
        throw methodNotAllowed(method, "/v3/nodes: nodes are created by node pools in this simulator");
      }
      throw methodNotAllowed(method, `/v3/${collection}`);
    }

    if (actionName !== null) {
      if (method !== "POST") throw methodNotAllowed(method, "actions (use POST)");
      return action(ctx, collection, id, actionName, bodyText);
    }
    if (method === "GET") return { status: 200, body: getOne(ctx, collection, id) };
    if (method === "PUT" && collection === "clusters") {
      return { status: 200, body: renderCluster(ctx, model.updateCluster(id, parseJsonObject(bodyText), now)) };
    }
    if (method === "PUT" && collection === "nodepools") {
      return { status: 200, body: renderNodePool(ctx, model.updateNodePool(id, parseJsonObject(bodyText), now)) };
    }
    if (method === "DELETE" && collection === "clusters") return { status: 200, body: renderCluster(ctx, model.deleteCluster(id, now)) };
    if (method === "DELETE" && collection === "nodepools") return { status: 200, body: renderNodePool(ctx, model.deleteNodePool(id, now)) };
    if (method === "DELETE" && collection === "nodes") return { status: 200, body: renderNode(ctx, model.deleteNode(id, now)) };
    if (method === "DELETE" && collection === "etcdbackups") {
      const shown = renderEtcdBackup(ctx, backups.get(id));
      backups.remove(id);
      return { status: 200, body: { ...shown, state: "removing", transitioning: "yes", transitioningMessage: "removing etcd snapshot" } };
    }
    throw methodNotAllowed(method, `/v3/${collection}/:id`);
  }

  /** Runs a route, turning every failure into a Norman error so no input can crash the process. */
  async function safely(run: () => Promise<Reply>): Promise<Reply> {
    try {
      return await run();
    } catch (err) {
      if (err instanceof NormanError) return fromNormanError(err);
      console.error("rancher simulator: handler failed:", err);
      return errorReply(500, "ServerError", "internal error in the rancher simulator");
    }
  }

  async function serveV3(req: IncomingMessage, segments: string[], rawPath: string, pathname: string, query: URLSearchParams): Promise<Reply> {
    const method = req.method ?? "GET";
    const actionName = query.get("action");
    let reply: Reply;
    let bodyText = "";
    try {
      bodyText = await readBody(req, BODY_LIMIT);
    } catch (err) {
      reply = err instanceof NormanError ? fromNormanError(err) : errorReply(400, "InvalidBodyContent", "could not read the request body");
      calls.record({ method, path: rawPath, route: routeKey(method, segments, actionName), status: reply.status, at: new Date().toISOString() });
      return reply;
    }

    if (!tokens.authorizedV3(req.headers.authorization)) {
      reply = errorReply(401, "Unauthorized", "must authenticate");
    } else {
      await sleep(faults.latencyMs);
      const rule = faults.takeRule(method, pathname);
      if (rule?.latencyMs !== undefined) await sleep(rule.latencyMs);
      const randomFailure = rule === undefined ? faults.randomFailure() : undefined;
      if (rule !== undefined && rule.afterEffect !== true) {
        reply = ruleReply(rule);
      } else if (randomFailure !== undefined) {
        reply = randomFailure;
      } else {
        const selfLink = `${baseUrl(req)}${rawPath}`;
        reply = await safely(() => handleV3(req, segments, query, bodyText, selfLink));
        if (rule !== undefined) reply = ruleReply(rule);
      }
    }
    calls.record({ method, path: rawPath, route: routeKey(method, segments, actionName), status: reply.status, at: new Date().toISOString() });
    return reply;
  }

  // ---- /k8s/clusters/<id> ------------------------------------------------------------

  function kubeRuleReply(rule: FaultRule): Reply {
    const reason = rule.code ?? kubeReasonForStatus(rule.status);
    return { status: rule.status, body: kubeStatus(rule.status, reason, rule.message ?? `simulated fault (status ${rule.status})`) };
  }

  async function serveK8s(req: IncomingMessage, segments: string[], rawPath: string, pathname: string, query: URLSearchParams): Promise<Reply> {
    const method = req.method ?? "GET";
    const rest = segments.slice(3);
    const route = k8sRouteKey(method, rest);
    let reply: Reply;
    let body: Buffer;
    try {
      body = await readBodyBytes(req, BODY_LIMIT * 3);
    } catch (err) {
      reply = err instanceof NormanError ? kubeErrorReply(new KubeError(413, "RequestEntityTooLarge", err.message)) : kubeErrorReply(new KubeError(400, "BadRequest", "could not read the request body"));
      calls.record({ method, path: rawPath, route, status: reply.status, at: new Date().toISOString() });
      return reply;
    }
    let contentType = (req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
    let bodyText = "";
    let bodyError: KubeError | undefined;
    if (contentType === PROTOBUF_CONTENT_TYPE && body.length > 0) {
      // client-go's typed clients write built-in types as protobuf; the handlers work on JSON.
      try {
        bodyText = JSON.stringify(decodeKubeProtobuf(body));
        contentType = "application/json";
      } catch (err) {
        if (!(err instanceof ProtobufError)) throw err;
        bodyError = err.unsupported ? new KubeError(415, "UnsupportedMediaType", err.message) : new KubeError(400, "BadRequest", `the protobuf body could not be decoded: ${err.message}`);
      }
    } else {
      bodyText = body.toString("utf8");
    }
    if (segments[1] !== "clusters" || segments[2] === undefined) {
      reply = kubeErrorReply(new KubeError(404, "NotFound", "the server could not find the requested resource"));
    } else if (!tokens.authorizedKube(req.headers.authorization)) {
      reply = kubeErrorReply(new KubeError(401, "Unauthorized", "Unauthorized"));
    } else if (bodyError !== undefined) {
      reply = kubeErrorReply(bodyError);
    } else {
      const rule = faults.takeRule(method, pathname, true);
      if (rule?.latencyMs !== undefined) await sleep(rule.latencyMs);
      if (rule !== undefined && rule.afterEffect !== true) {
        reply = kubeRuleReply(rule);
      } else {
        const clusterId = segments[2];
        const host = baseUrl(req).replace(/^https?:\/\//, "");
        reply = (() => {
          try {
            const now = Date.now();
            reconcileAll(now);
            // A Knative Service written now gets its URL under the host name this client used.
            knative.requestHost = requestHostname(req);
            try {
              return k8s.handle(clusterId, rest, { method, contentType, host, query, bodyText }, now);
            } finally {
              knative.requestHost = null;
            }
          } catch (err) {
            if (err instanceof KubeError) return kubeErrorReply(err);
            if (err instanceof NormanError) return kubeErrorReply(new KubeError(err.status, kubeReasonForStatus(err.status), err.message));
            console.error("rancher simulator: kubernetes handler failed:", err);
            return kubeErrorReply(new KubeError(500, "InternalError", "internal error in the rancher simulator"));
          }
        })();
        if (rule !== undefined) reply = kubeRuleReply(rule);
      }
    }
    calls.record({ method, path: rawPath, route, status: reply.status, at: new Date().toISOString() });
    return reply;
  }

  // ---- /admin ----------------------------------------------------------------------

  function adminBody(bodyText: string): Record<string, unknown> {
    return parseJsonObject(bodyText, 400);
  }

  function updateSettings(body: Record<string, unknown>): void {
    const next = { ...model.settings };
    for (const [key, value] of Object.entries(body)) {
      if (!Object.hasOwn(next, key)) throw new NormanError(400, "InvalidFormat", `unknown setting "${key}"`, key);
      if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
        throw new NormanError(400, "InvalidFormat", `${key} must be a non-negative integer`, key);
      }
      next[key as keyof Settings] = value;
    }
    model.settings = next;
  }

  function nodeFaultsView(id: string): Record<string, unknown> {
    const node = model.node(id);
    const view: Record<string, unknown> = { nodeId: node.id, hostname: node.hostname, clusterId: node.clusterId };
    for (const key of NODE_FAULTS) view[key] = node.faults[key] !== null;
    view.since = Object.fromEntries(NODE_FAULTS.filter((k) => node.faults[k] !== null).map((k) => [k, new Date(node.faults[k] ?? 0).toISOString()]));
    return view;
  }

  function clusterFaultsView(id: string): Record<string, unknown> {
    const cluster = model.cluster(id);
    const view: Record<string, unknown> = { clusterId: cluster.id };
    for (const key of CLUSTER_FAULTS) view[key] = cluster.faults[key] !== null;
    view.since = Object.fromEntries(CLUSTER_FAULTS.filter((k) => cluster.faults[k] !== null).map((k) => [k, new Date(cluster.faults[k] ?? 0).toISOString()]));
    return view;
  }

  /** `/admin/nodes/<id or hostname>/faults` and `/admin/clusters/<id>/faults`: persisted faults of one object. */
  function handleObjectFaults(method: string, kind: string, ref: string, bodyText: string, now: number): Reply {
    if (!["GET", "PUT", "DELETE"].includes(method)) throw methodNotAllowed(method, `/admin/${kind}/:id/faults`);
    if (kind === "nodes") {
      const node = model.findNode(ref);
      if (method !== "GET") {
        const wanted = method === "PUT" ? booleanFlags(adminBody(bodyText), NODE_FAULTS, "node") : {};
        model.setNodeFaults(node, wanted, now);
      }
      return { status: 200, body: nodeFaultsView(node.id) };
    }
    const cluster = model.cluster(ref);
    if (method !== "GET") {
      const wanted = method === "PUT" ? booleanFlags(adminBody(bodyText), CLUSTER_FAULTS, "cluster") : {};
      model.setClusterFaults(cluster, wanted, now);
      // Watches through a proxy that can no longer reach the API server end.
      if (model.kubeUnavailable(cluster, now) !== null) kube.closeWatches(cluster.id, false);
      // agentDisconnected closes the cluster's own endpoint, clearing it opens it again (serveAdmin waits for that).
      void endpoints.sync(cluster.id);
    }
    return { status: 200, body: clusterFaultsView(cluster.id) };
  }

  /**
   * `GET|PUT|DELETE /admin/clusters/<id>/prometheus`: the answers the cluster's
   * Prometheus gives to instant queries, `{queries: {"<PromQL>": [{metric?, value}]}}`;
   * PUT replaces them all, DELETE clears them. Persisted with the cluster.
   */
  function handlePrometheus(method: string, clusterId: string, bodyText: string): Reply {
    if (!["GET", "PUT", "DELETE"].includes(method)) throw methodNotAllowed(method, "/admin/clusters/:id/prometheus");
    const cluster = model.cluster(clusterId);
    if (method !== "GET") {
      cluster.prometheus = method === "PUT" ? parsePrometheusQueries(adminBody(bodyText)) : {};
      model.dirty = true;
    }
    return { status: 200, body: { clusterId: cluster.id, queries: cluster.prometheus } };
  }

  /** `POST /admin/clusters/<id>/workloads/stop` `{namespace, name}`: scales Deployments and StatefulSets of that name to 0, deletes a DaemonSet. */
  function stopWorkload(clusterId: string, bodyText: string, now: number): Reply {
    const body = adminBody(bodyText);
    for (const key of Object.keys(body)) {
      if (key !== "namespace" && key !== "name") throw new NormanError(400, "InvalidFormat", `unknown field "${key}"; known: namespace, name`, key);
    }
    for (const key of ["namespace", "name"] as const) {
      const value = body[key];
      if (typeof value !== "string" || value === "" || value.length > 253) throw new NormanError(400, "InvalidFormat", `${key} must be a non-empty string of at most 253 characters`, key);
    }
    const namespace = body.namespace as string;
    const name = body.name as string;
    const cluster = model.cluster(clusterId);
    const stopped = kube.stopWorkload(cluster, namespace, name, now);
    if (stopped.length === 0) {
      throw new NormanError(404, "NotFound", `no Deployment, StatefulSet or DaemonSet "${name}" in namespace "${namespace}" of cluster ${cluster.id}`);
    }
    return { status: 200, body: { stopped } };
  }

  function handleAdmin(req: IncomingMessage, segments: string[], bodyText: string): Reply {
    const method = req.method ?? "GET";
    const now = Date.now();
    reconcileAll(now);
    const what = segments[1];
    if (segments.length === 4 && (what === "nodes" || what === "clusters") && segments[3] === "faults") {
      return handleObjectFaults(method, what, segments[2] ?? "", bodyText, now);
    }
    if (what === "clusters" && segments[3] === "knative" && (segments.length === 4 || (segments.length === 7 && segments[6] === "logs"))) {
      if (method !== "GET") throw methodNotAllowed(method, "/admin/clusters/:id/knative");
      if (segments.length === 4) return { status: 200, body: knative.adminList(segments[2] ?? "") };
      const tail = Number(new URL(req.url ?? "/", "http://sim").searchParams.get("tail") ?? "0");
      return { status: 200, body: knative.adminLogs(segments[2] ?? "", segments[4] ?? "", segments[5] ?? "", Number.isInteger(tail) && tail > 0 ? tail : undefined) };
    }
    if (segments.length === 4 && what === "clusters" && segments[3] === "prometheus") {
      return handlePrometheus(method, segments[2] ?? "", bodyText);
    }
    if (segments.length === 5 && what === "clusters" && segments[3] === "workloads" && segments[4] === "stop") {
      if (method !== "POST") throw methodNotAllowed(method, "/admin/clusters/:id/workloads/stop");
      return stopWorkload(segments[2] ?? "", bodyText, now);
    }
    if (segments.length !== 2) throw new NormanError(404, "NotFound", "no such admin endpoint");
    const allowed = (methods: string[]): void => {
      if (!methods.includes(method)) throw methodNotAllowed(method, `/admin/${what}`);
    };
    switch (what) {
      case "state": {
        allowed(["GET"]);
        const ctx = renderContext(req, now);
        return {
          status: 200,
          body: {
            clusters: model.data.clusters.map((c) => renderCluster(ctx, c)),
            nodePools: model.data.nodePools.map((p) => renderNodePool(ctx, p)),
            nodes: model.data.nodes.map((n) => renderNode(ctx, n)),
            etcdBackups: backups.all().map((b) => renderEtcdBackup(ctx, b)),
            kubeObjects: Object.fromEntries(Object.entries(model.data.kube).map(([id, objects]) => [id, objects.length])),
          },
        };
      }
      case "reset":
        allowed(["POST"]);
        kube.closeAll();
        {
          // resourceVersions keep growing across a reset, as clients' caches expect.
          const resourceVersion = model.data.kubeResourceVersion;
          model.data = emptyState();
          model.data.kubeResourceVersion = resourceVersion;
        }
        model.settings = { ...initialSettings };
        model.dirty = true;
        faults.clear();
        calls.clear();
        // The revisions' processes go with their clusters, and so do their endpoints.
        knative.reconcile(now);
        pruneEndpoints();
        return { status: 200, body: { ok: true } };
      case "faults":
        allowed(["GET", "PUT", "DELETE"]);
        if (method === "PUT") {
          try {
            faults.replace(adminBody(bodyText));
          } catch (err) {
            if (err instanceof FaultConfigError) throw new NormanError(400, "InvalidFormat", err.message);
            throw err;
          }
        }
        if (method === "DELETE") faults.clear();
        // A crash loop that ends now restarts its workloads' rollouts from now.
        if (method !== "GET") kube.reconcileWorkloads(now);
        return { status: 200, body: faults.snapshot() };
      case "settings":
        allowed(["GET", "PUT"]);
        if (method === "PUT") updateSettings(adminBody(bodyText));
        return { status: 200, body: { ...model.settings } };
      case "seed":
        allowed(["POST"]);
        return { status: 201, body: model.seed(seedSpec(adminBody(bodyText)), now) };
      case "calls":
        allowed(["GET", "DELETE"]);
        if (method === "DELETE") calls.clear();
        return { status: 200, body: calls.snapshot() };
      default:
        throw new NormanError(404, "NotFound", `no such admin endpoint: /admin/${what ?? ""}`);
    }
  }

  async function serveAdmin(req: IncomingMessage, segments: string[]): Promise<Reply> {
    let bodyText: string;
    try {
      bodyText = await readBody(req, BODY_LIMIT);
    } catch (err) {
      return err instanceof NormanError ? fromNormanError(err) : errorReply(400, "InvalidBodyContent", "could not read the request body");
    }
    // No auth on /admin, so it must not be reachable from elsewhere even when bound to a public address.
    if (!isLoopback(req.socket.remoteAddress)) return errorReply(403, "PermissionDenied", "the admin API only answers loopback clients");
    return safely(async () => {
      if (segments.length === 2 && segments[1] === "state") {
        // The dump shows apiEndpoint too, so every cluster gets its endpoint first.
        reconcileAll(Date.now());
        await endpoints.ensure(model.data.clusters.map((c) => c.id));
      }
      const reply = handleAdmin(req, segments, bodyText);
      // Endpoints closed or opened by a fault change or a reset are so before the answer.
      await endpoints.flush();
      return reply;
    });
  }

  // ---- Knative gateway -----------------------------------------------------------------

  async function serveGateway(req: IncomingMessage, res: ServerResponse, pathname: string, search: string): Promise<void> {
    try {
      reconcileAll(Date.now());
    } catch (err) {
      console.error("rancher simulator: reconciling before a gateway request failed:", err);
    }
    persist();
    try {
      await knative.gateway(req, res, pathname, search);
    } catch (err) {
      console.error("rancher simulator: gateway request failed:", err);
      if (!res.headersSent) sendReply(res, { status: 502, body: { message: "internal error in the simulator's Knative gateway" } });
      else res.destroy();
    }
  }

  // ---- dispatch ------------------------------------------------------------------------

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rawPath = req.url ?? "/";
    const q = rawPath.indexOf("?");
    const pathname = q === -1 ? rawPath : rawPath.slice(0, q);
    const query = new URLSearchParams(q === -1 ? "" : rawPath.slice(q + 1));
    const segments = splitPath(pathname);
    let reply: Reply;
    if (segments === null) {
      req.resume();
      reply = errorReply(404, "NotFound", "malformed path");
    } else if (segments[0] === "v3") {
      reply = await serveV3(req, segments, rawPath, pathname, query);
    } else if (segments[0] === "k8s") {
      reply = await serveK8s(req, segments, rawPath, pathname, query);
    } else if (segments[0] === "knative") {
      // The clusters' public ingress: no Rancher token, the function's own answer (not a Reply).
      await serveGateway(req, res, pathname, q === -1 ? "" : rawPath.slice(q));
      return;
    } else if (segments[0] === "admin") {
      reply = await serveAdmin(req, segments);
    } else if (segments.length === 1 && segments[0] === "healthz" && (req.method === "GET" || req.method === "HEAD")) {
      req.resume();
      reply = { status: 200, body: { ok: true } };
    } else {
      req.resume();
      reply = errorReply(404, "NotFound", `no such resource: ${pathname}`);
    }
    persist();
    sendReply(res, reply);
    // After the reply, so a watch this request opened counts.
    scheduleWake(Date.now());
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((err: unknown) => {
      console.error("rancher simulator: request failed:", err);
      sendReply(res, errorReply(500, "ServerError", "internal error in the rancher simulator"));
    });
  };
  const server = createServer(onRequest);
  // The same routes over HTTPS, as a real Rancher serves them; clients such as helm send no token over plain HTTP.
  const tlsServer = createHttpsServer({ key: tls.key, cert: tls.cert }, onRequest);
  for (const s of [server, tlsServer]) {
    s.on("clientError", (_err, socket) => {
      if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
      else socket.destroy();
    });
  }

  const listen = (s: Server, onPort: number): Promise<number> =>
    new Promise<number>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      s.once("error", onError);
      s.listen(onPort, host, () => {
        s.off("error", onError);
        resolve((s.address() as AddressInfo).port);
      });
    });
  const urlHost = host.includes(":") ? `[${host}]` : host;
  try {
    listenUrl = `http://${urlHost}:${await listen(server, port)}`;
    tlsListenPort = await listen(tlsServer, tlsPort);
    tlsListenUrl = `https://${urlHost}:${tlsListenPort}`;
    // Write once at start so a fresh state file exists and a bad path fails loudly now, not on the first request.
    if (stateFile !== null) saveState(stateFile, model.data);
  } catch (err) {
    for (const s of [server, tlsServer]) if (s.listening) s.close();
    tls.dispose();
    await runtime.close();
    if (knativeTmp !== null) rmSync(knativeTmp, { recursive: true, force: true });
    throw err;
  }
  // Revisions that should be running (after a restart from the state file) start again.
  kickKnative();

  let closing: Promise<void> | null = null;
  return {
    url: listenUrl,
    tlsUrl: tlsListenUrl,
    tlsCert: tls.cert,
    close(): Promise<void> {
      const stop = (s: Server): Promise<void> => new Promise<void>((resolve) => s.close(() => resolve()));
      closing ??= (async () => {
        closingDown = true;
        if (wake !== null) clearTimeout(wake.timer);
        wake = null;
        if (knativeTimer !== null) clearTimeout(knativeTimer);
        knativeTimer = null;
        const stopped = Promise.all([stop(server), stop(tlsServer), endpoints.close()]);
        // Keep-alive, delayed (latency-faulted) requests and watches would otherwise hold close() open.
        kube.closeAll();
        server.closeAllConnections();
        tlsServer.closeAllConnections();
        // No orphans: every revision's process is stopped before close() returns.
        await Promise.all([stopped, runtime.close()]);
        kube.closeAll();
        persist(true);
        closed = true;
        tls.dispose();
        if (knativeTmp !== null) rmSync(knativeTmp, { recursive: true, force: true });
      })();
      return closing;
    },
  };
}
