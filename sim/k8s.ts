/**
 * HTTP routing of the per-cluster Kubernetes API that Rancher proxies at
 * `/k8s/clusters/<clusterId>`: version, health, discovery and the resource
 * paths, answering errors as Kubernetes `Status` objects.
 */
import { createHash } from "node:crypto";
import { isPlainObject, KubeError, type Reply } from "./http.js";
import type { KubeApi, Selectors } from "./kube.js";
import { notFound } from "./kube.js";
import { discoveryEntries } from "./kube-resources.js";
import { parseFieldSelector, parseLabelSelector } from "./kube-util.js";
import { gitVersionOf, type RancherModel } from "./model.js";
import { openApiDocument, openApiIndex } from "./openapi.js";
import { checkServicePort, parseServiceProxyName, prometheusReply } from "./prometheus.js";
import type { StoredCluster } from "./state.js";

export interface K8sRequest {
  method: string;
  contentType: string;
  /** host:port the client connected to, for discovery's serverAddressByClientCIDRs. */
  host: string;
  query: URLSearchParams;
  bodyText: string;
}

const NOT_FOUND_MESSAGE = "the server could not find the requested resource";
const COMPONENTS: ReadonlyArray<[string, string]> = [
  ["controller-manager", "ok"],
  ["scheduler", "ok"],
  ["etcd-0", '{"health":"true","reason":""}'],
];
/** etcd-0 under the componentsUnhealthy fault: what the etcd health probe reports. */
const UNHEALTHY_ETCD = { message: '{"health":"false","reason":"RAFT NO LEADER"}', error: "etcd cluster is unavailable or misconfigured" };
/** `/readyz` under the apiServerNotReady fault, as the API server words a failed check without `?verbose`. */
const READYZ_ETCD_FAILED = "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed";

function resourceNotFound(): KubeError {
  return new KubeError(404, "NotFound", NOT_FOUND_MESSAGE, {});
}

function methodNotAllowed(): KubeError {
  return new KubeError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {});
}

function ok(body: unknown, status = 200): Reply {
  return { status, body };
}

function text(status: number, body: string): Reply {
  return { status, body, contentType: "text/plain; charset=utf-8" };
}

/** The route a /k8s call is counted under, with names and namespaces replaced, e.g. `GET /k8s/clusters/:id/api/v1/namespaces/:ns/pods/:name`. */
export function k8sRouteKey(method: string, rest: string[]): string {
  const out: string[] = [];
  let i = 0;
  if (rest[0] === "api") {
    out.push("api", ...(rest[1] !== undefined ? [rest[1]] : []));
    i = 2;
  } else if (rest[0] === "apis") {
    out.push("apis", ...rest.slice(1, 3));
    i = 3;
  } else {
    out.push(...rest.slice(0, 1).map((s) => (/^[a-z]+$/.test(s) ? s : ":path")));
    i = rest.length;
  }
  let tail = rest.slice(i);
  if (tail[0] === "namespaces" && tail.length >= 3 && !(rest[0] === "api" && tail.length === 3 && (tail[2] === "status" || tail[2] === "finalize"))) {
    out.push("namespaces", ":ns");
    tail = tail.slice(2);
  }
  if (tail[0] !== undefined) out.push(/^[a-z0-9.-]{1,63}$/.test(tail[0]) ? tail[0] : ":resource");
  if (tail[1] !== undefined) out.push(":name");
  if (tail[2] !== undefined) out.push(/^[a-z]{1,20}$/.test(tail[2]) ? tail[2] : ":sub");
  if (tail.length > 3) out.push("…");
  return `${method} /k8s/clusters/:id${out.length > 0 ? "/" : ""}${out.join("/")}`;
}

/** `api/v1/namespaces/<ns>/services/<svc>/proxy/<path…>` split up, or null for any other path. */
function serviceProxyPath(rest: string[]): { ns: string; service: string; path: string[] } | null {
  if (rest.length < 7 || rest[0] !== "api" || rest[1] !== "v1" || rest[2] !== "namespaces" || rest[4] !== "services" || rest[6] !== "proxy") return null;
  return { ns: rest[3] ?? "", service: rest[5] ?? "", path: rest.slice(7) };
}

export class K8sRoutes {
  constructor(
    private readonly model: RancherModel,
    private readonly kube: KubeApi,
  ) {}

  handle(clusterId: string, rest: string[], req: K8sRequest, now: number): Reply {
    const cluster = this.model.data.clusters.find((c) => c.id === clusterId);
    if (cluster === undefined) {
      throw new KubeError(404, "NotFound", `clusters.management.cattle.io "${clusterId}" not found`, { name: clusterId, group: "management.cattle.io", kind: "clusters" });
    }
    const first = rest[0];
    const unavailable = this.model.kubeUnavailable(cluster, now);
    if ((first === "livez" || first === "readyz" || first === "healthz") && rest.length <= 2) {
      if (req.method !== "GET" && req.method !== "HEAD") throw methodNotAllowed();
      if (unavailable !== null) return text(503, `${first} check failed: ${unavailable}`);
      if (first === "readyz" && cluster.faults.apiServerNotReady !== null && (rest[1] === undefined || rest[1] === "etcd")) {
        return text(500, rest[1] === undefined ? READYZ_ETCD_FAILED : "internal server error: etcd client connection not yet established");
      }
      return text(200, "ok");
    }
    if (unavailable !== null) throw new KubeError(503, "ServiceUnavailable", unavailable);
    const proxied = serviceProxyPath(rest);
    if (proxied !== null) return this.serviceProxy(cluster, proxied, req, now);

    if (rest.length === 0) {
      return ok({ paths: ["/api", "/api/v1", "/apis", ...this.groups(cluster).flatMap((g) => [`/apis/${g.name}`, ...g.versions.map((v) => `/apis/${g.name}/${v}`)]), "/healthz", "/livez", "/readyz", "/version"] });
    }
    if (first === "version" && rest.length === 1) {
      if (req.method !== "GET") throw methodNotAllowed();
      return ok(this.version(cluster, now));
    }
    if (first === "openapi" && rest[1] === "v3") return this.getOnly(req, () => this.openApi(cluster, rest.slice(2), now));
    if (first === "api") {
      if (rest.length === 1) return this.getOnly(req, () => this.apiVersions(req.host));
      if (rest[1] !== "v1") throw resourceNotFound();
      if (rest.length === 2) return this.getOnly(req, () => this.resourceList(cluster, "", "v1"));
      return this.resource(cluster, "", "v1", rest.slice(2), req, now);
    }
    if (first === "apis") {
      if (rest.length === 1) return this.getOnly(req, () => this.groupList(cluster));
      const group = rest[1] ?? "";
      const found = this.groups(cluster).find((g) => g.name === group);
      if (found === undefined) throw resourceNotFound();
      if (rest.length === 2) return this.getOnly(req, () => this.apiGroup(found));
      const version = rest[2] ?? "";
      if (!found.versions.includes(version)) throw resourceNotFound();
      if (rest.length === 3) return this.getOnly(req, () => this.resourceList(cluster, group, version));
      return this.resource(cluster, group, version, rest.slice(3), req, now);
    }
    throw resourceNotFound();
  }

  /**
   * The service proxy: the Service must exist (404 NotFound) and offer the port
   * named; what answers behind it is the cluster's simulated Prometheus.
   */
  private serviceProxy(cluster: StoredCluster, target: { ns: string; service: string; path: string[] }, req: K8sRequest, now: number): Reply {
    const parsed = parseServiceProxyName(target.service);
    if (parsed === null) throw new KubeError(400, "BadRequest", `invalid service request "${target.service}"`);
    const def = this.kube.resolve(cluster, "", "v1", "services");
    if (def === undefined) throw resourceNotFound();
    checkServicePort(this.kube.get(cluster, def, target.ns, parsed.name, now), parsed);
    return prometheusReply(cluster.prometheus, target.path, req, now);
  }

  private getOnly(req: K8sRequest, body: () => unknown): Reply {
    if (req.method !== "GET") throw methodNotAllowed();
    // Clients asking for aggregated discovery (apidiscovery.k8s.io/v2) fall back to these legacy lists when the reply is plain application/json.
    return ok(body());
  }

  // ---- version and discovery --------------------------------------------------------------------

  private version(cluster: StoredCluster, now: number): Record<string, unknown> {
    const gitVersion = gitVersionOf(this.model.apiServerVersion(cluster, now));
    const [major = "", minor = ""] = gitVersion.replace(/^v/, "").split(".");
    return {
      major,
      minor,
      gitVersion,
      gitCommit: createHash("sha1").update(gitVersion).digest("hex"),
      gitTreeState: "clean",
      buildDate: "2024-10-22T20:28:14Z",
      goVersion: "go1.22.8",
      compiler: "gc",
      platform: "linux/amd64",
    };
  }

  /** `/openapi/v3` (the index) and `/openapi/v3/api/v1`, `/openapi/v3/apis/<group>/<version>`; the `hash` parameter is not checked. */
  private openApi(cluster: StoredCluster, path: string[], now: number): unknown {
    const defs = this.kube.resources(cluster);
    const gitVersion = gitVersionOf(this.model.apiServerVersion(cluster, now));
    if (path.length === 0) return openApiIndex(defs, gitVersion);
    let doc: unknown;
    if (path[0] === "api" && path.length === 2) doc = openApiDocument(defs, "", path[1] ?? "", gitVersion);
    else if (path[0] === "apis" && path.length === 3) doc = openApiDocument(defs, path[1] ?? "", path[2] ?? "", gitVersion);
    if (doc === undefined) throw resourceNotFound();
    return doc;
  }

  private apiVersions(host: string): Record<string, unknown> {
    return { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: host }] };
  }

  private groups(cluster: StoredCluster): Array<{ name: string; versions: string[] }> {
    const out: Array<{ name: string; versions: string[] }> = [];
    for (const def of this.kube.resources(cluster)) {
      if (def.group === "") continue;
      let group = out.find((g) => g.name === def.group);
      if (group === undefined) {
        group = { name: def.group, versions: [] };
        out.push(group);
      }
      if (!group.versions.includes(def.version)) group.versions.push(def.version);
    }
    return out;
  }

  private apiGroup(group: { name: string; versions: string[] }): Record<string, unknown> {
    const versions = group.versions.map((v) => ({ groupVersion: `${group.name}/${v}`, version: v }));
    return { kind: "APIGroup", apiVersion: "v1", name: group.name, versions, preferredVersion: versions[0] };
  }

  private groupList(cluster: StoredCluster): Record<string, unknown> {
    const groups = this.groups(cluster).map((g) => {
      const { kind: _kind, apiVersion: _apiVersion, ...rest } = this.apiGroup(g);
      return rest;
    });
    return { kind: "APIGroupList", apiVersion: "v1", groups };
  }

  private resourceList(cluster: StoredCluster, group: string, version: string): Record<string, unknown> {
    const defs = this.kube.resources(cluster).filter((d) => d.group === group && d.version === version);
    if (defs.length === 0) throw resourceNotFound();
    return {
      kind: "APIResourceList",
      apiVersion: "v1",
      groupVersion: group === "" ? version : `${group}/${version}`,
      resources: defs.flatMap(discoveryEntries),
    };
  }

  // ---- resources ------------------------------------------------------------------------------------

  private resource(cluster: StoredCluster, group: string, version: string, parts: string[], req: K8sRequest, now: number): Reply {
    let ns: string | null = null;
    let rest = parts;
    const namespaceSub = group === "" && parts.length === 3 && (parts[2] === "status" || parts[2] === "finalize");
    if (parts[0] === "namespaces" && parts.length >= 3 && !namespaceSub) {
      ns = parts[1] ?? "";
      rest = parts.slice(2);
    }
    const [plural = "", name, sub, ...extra] = rest;
    if (extra.length > 0) throw resourceNotFound();
    const def = this.kube.resolve(cluster, group, version, plural);
    if (def === undefined) throw resourceNotFound();
    if (ns !== null && !def.namespaced) throw resourceNotFound();
    if (name !== undefined && def.namespaced && ns === null) throw resourceNotFound();

    const { method, query } = req;
    const dryRun = (query.get("dryRun") ?? "") !== "";
    const verb = (v: string): void => {
      if (!def.verbs.includes(v)) throw methodNotAllowed();
    };

    if (def.group === "" && def.plural === "componentstatuses") return this.componentStatuses(cluster, name, method);

    if (name === undefined) {
      const selectors = this.selectors(query);
      switch (method) {
        case "GET": {
          const watching = query.get("watch") === "true" || query.get("watch") === "1";
          verb(watching ? "watch" : "list");
          return watching ? this.kube.watch(cluster, def, ns, selectors, query, now) : ok(this.kube.list(cluster, def, ns, selectors, now));
        }
        case "POST":
          verb("create");
          if (def.namespaced && ns === null) throw methodNotAllowed();
          return ok(this.kube.create(cluster, def, ns ?? "", this.json(req.bodyText), now, { dryRun }), 201);
        case "DELETE":
          verb("deletecollection");
          return ok(this.kube.deleteCollection(cluster, def, ns, selectors, now, { dryRun, orphan: this.orphan(req) }));
        default:
          throw methodNotAllowed();
      }
    }

    const namespace = ns ?? "";
    if (sub === undefined) {
      switch (method) {
        case "GET":
          verb("get");
          return ok(this.kube.get(cluster, def, namespace, name, now));
        case "PUT":
          verb("update");
          return ok(this.kube.replace(cluster, def, namespace, name, this.json(req.bodyText), now, { dryRun }));
        case "PATCH": {
          verb("patch");
          // Server-side apply creates a missing object, and then answers 201 like a create.
          const creates = req.contentType === "application/apply-patch+yaml" && !this.kube.exists(cluster, def, namespace, name);
          return ok(this.kube.patch(cluster, def, namespace, name, req.contentType, req.bodyText, now, { dryRun }), creates ? 201 : 200);
        }
        case "DELETE": {
          verb("delete");
          const body = req.bodyText.trim() === "" ? undefined : this.json(req.bodyText);
          return ok(this.kube.delete(cluster, def, namespace, name, body, now, { dryRun, orphan: this.orphan(req) }));
        }
        default:
          throw methodNotAllowed();
      }
    }

    const subDef = def.subresources.find((s) => s.name === sub);
    if (subDef === undefined) throw resourceNotFound();
    if (sub === "eviction") {
      if (method !== "POST") throw methodNotAllowed();
      return ok(this.kube.evict(cluster, namespace, name, this.json(req.bodyText), now, { dryRun }), 201);
    }
    switch (method) {
      case "GET":
        return ok(this.kube.get(cluster, def, namespace, name, now));
      case "PUT":
        return ok(this.kube.replace(cluster, def, namespace, name, this.json(req.bodyText), now, { dryRun, subresource: sub }));
      case "PATCH":
        return ok(this.kube.patch(cluster, def, namespace, name, req.contentType, req.bodyText, now, { dryRun, subresource: sub }));
      default:
        throw methodNotAllowed();
    }
  }

  private selectors(query: URLSearchParams): Selectors {
    return { labels: parseLabelSelector(query.get("labelSelector")), fields: parseFieldSelector(query.get("fieldSelector")) };
  }

  private orphan(req: K8sRequest): boolean {
    if (req.query.get("propagationPolicy") === "Orphan" || req.query.get("orphanDependents") === "true") return true;
    if (req.bodyText.trim() === "") return false;
    try {
      const body: unknown = JSON.parse(req.bodyText);
      return isPlainObject(body) && (body.propagationPolicy === "Orphan" || body.orphanDependents === true);
    } catch {
      return false;
    }
  }

  private json(text: string): unknown {
    if (text.trim() === "") throw new KubeError(400, "BadRequest", "the request body is empty; a JSON object was expected");
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new KubeError(400, "BadRequest", `couldn't get version/kind; json parse error: ${(err as Error).message}`);
    }
  }

  /** The control plane's components; `etcd-0` reports unhealthy under the componentsUnhealthy fault. */
  private componentStatuses(cluster: StoredCluster, name: string | undefined, method: string): Reply {
    if (method !== "GET") throw methodNotAllowed();
    const unhealthy = cluster.faults.componentsUnhealthy !== null;
    const item = ([component, message]: readonly [string, string]): Record<string, unknown> => ({
      kind: "ComponentStatus",
      apiVersion: "v1",
      metadata: { name: component },
      conditions: [
        unhealthy && component === "etcd-0"
          ? { type: "Healthy", status: "False", ...UNHEALTHY_ETCD }
          : { type: "Healthy", status: "True", message, error: "" },
      ],
    });
    if (name !== undefined) {
      const found = COMPONENTS.find(([component]) => component === name);
      if (found === undefined) throw notFound({ group: "", plural: "componentstatuses" }, name);
      return ok(item(found));
    }
    return ok({ kind: "ComponentStatusList", apiVersion: "v1", metadata: {}, items: COMPONENTS.map(item) });
  }
}
