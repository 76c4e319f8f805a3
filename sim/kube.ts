/**
 * The Kubernetes side of each simulated downstream cluster: stored objects
 * with Kubernetes' create/update/patch/delete rules, Node objects derived from
 * the Rancher nodes, pods with a tiny scheduler and kubelet, eviction with
 * PodDisruptionBudgets, a little garbage collection, and watch streams.
 *
 * Beyond that, controllers only pretend: Deployments and friends report a
 * rollout that becomes ready `workloadReadyMs` after it started (never, while
 * a `crashLoop` fault matches one of their images); a Deployment gets its
 * ReplicaSets (one per pod template, the current one scaled up, the others
 * to 0), but no pods are made for either. Knative Serving is the exception:
 * knative.ts takes part in writes as a KubeController and runs revisions.
 */
import { createHash, randomUUID } from "node:crypto";
import type { ServerResponse } from "node:http";
import { isPlainObject, KubeError, rfc3339, type Reply } from "./http.js";
import {
  DNS_LABEL_RE,
  DNS_SUBDOMAIN_RE,
  isStringMap,
  jsonPatch,
  matchesFields,
  matchesLabels,
  mergePatch,
  nameSuffix,
  requirementsOf,
  stableStringify,
  strategicMergePatch,
  type FieldRequirement,
  type Requirement,
} from "./kube-util.js";
import { crdResources, groupVersion, qualifiedName, resourceKey, STATIC_RESOURCES, type ResourceDef } from "./kube-resources.js";
import { gitVersionOf, type NodeHealth, type RancherModel } from "./model.js";
import type { StoredCluster, StoredKubeObject, StoredNode, StoredRollout } from "./state.js";

type Obj = Record<string, unknown>;

export interface Selectors {
  labels: Requirement[];
  fields: FieldRequirement[];
}

export interface WriteOptions {
  dryRun: boolean;
}

/**
 * A controller outside this file that takes part in writes (knative.ts):
 * defaulting and validation before generations are compared, admission, and
 * what happens after a write or a removal.
 */
export interface KubeController {
  /** Defaults and validates a written object (may throw a KubeError); runs before the generation is decided. */
  defaults(key: string, obj: Obj): void;
  /** Admission after the API server's own (statuses of types it manages). */
  admit(cluster: StoredCluster, key: string, obj: Obj, old: Obj | null, now: number): void;
  /** After a stored object was created or replaced (not for status writes or dry runs). */
  afterWrite(cluster: StoredCluster, entry: StoredKubeObject, now: number): void;
  /** After a stored object was removed. */
  removed(cluster: StoredCluster, entry: StoredKubeObject): void;
}

/** One workload `POST /admin/clusters/<id>/workloads/stop` stopped. */
export interface StoppedWorkload {
  kind: string;
  namespace: string;
  name: string;
  action: "scaled-to-zero" | "deleted";
}

const NODE_CAPACITY = { cpu: "4", "ephemeral-storage": "100Gi", "hugepages-2Mi": "0", memory: "16Gi", pods: "110" };
const NODE_ALLOCATABLE = { cpu: "4", "ephemeral-storage": "92Gi", "hugepages-2Mi": "0", memory: "15Gi", pods: "110" };
const SYSTEM_TAINT_KEYS = new Set(["node.kubernetes.io/unschedulable", "node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]);
const PROTECTED_NAMESPACES = new Set(["default", "kube-system", "kube-public"]);
const RESPAWNING_OWNERS = new Set(["ReplicaSet", "StatefulSet", "Deployment", "ReplicationController"]);
const HISTORY_LIMIT = 2000;
const DEFAULT_WATCH_SECONDS = 1800;

const NODES = STATIC_RESOURCES.find((d) => d.group === "" && d.plural === "nodes") as ResourceDef;
const PODS = STATIC_RESOURCES.find((d) => d.group === "" && d.plural === "pods") as ResourceDef;
const NAMESPACES = STATIC_RESOURCES.find((d) => d.group === "" && d.plural === "namespaces") as ResourceDef;
const NODES_KEY = resourceKey(NODES);
const PODS_KEY = resourceKey(PODS);
const NAMESPACES_KEY = resourceKey(NAMESPACES);
const PDBS_KEY = "policy/poddisruptionbudgets";
const DEPLOYMENTS = STATIC_RESOURCES.find((d) => d.group === "apps" && d.plural === "deployments") as ResourceDef;
const DEPLOYMENTS_KEY = resourceKey(DEPLOYMENTS);
const REPLICASETS = STATIC_RESOURCES.find((d) => d.group === "apps" && d.plural === "replicasets") as ResourceDef;
const REPLICASETS_KEY = resourceKey(REPLICASETS);
const STATEFULSETS = STATIC_RESOURCES.find((d) => d.group === "apps" && d.plural === "statefulsets") as ResourceDef;
const STATEFULSETS_KEY = resourceKey(STATEFULSETS);
const DAEMONSETS = STATIC_RESOURCES.find((d) => d.group === "apps" && d.plural === "daemonsets") as ResourceDef;
const DAEMONSETS_KEY = resourceKey(DAEMONSETS);
/** Workloads whose status follows a pretend rollout. */
const WORKLOAD_KEYS = new Set([DEPLOYMENTS_KEY, REPLICASETS_KEY, STATEFULSETS_KEY, DAEMONSETS_KEY]);
/** Owners whose pods show the `crashLoop` fault. */
const WORKLOAD_OWNERS = new Set(["ReplicaSet", "StatefulSet", "DaemonSet", "Deployment", "ReplicationController"]);
const CRASH_LOOP_REASON = "CrashLoopBackOff";
const HASH_LABEL = "pod-template-hash";
const REVISION_ANNOTATION = "deployment.kubernetes.io/revision";
/** Characters of Kubernetes' rand.SafeEncodeString, which makes pod-template-hash values. */
const SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789";
const CRDS_KEY = "apiextensions.k8s.io/customresourcedefinitions";

function meta(obj: Obj): Obj {
  if (!isPlainObject(obj.metadata)) obj.metadata = {};
  return obj.metadata as Obj;
}

function spec(obj: Obj): Obj {
  return isPlainObject(obj.spec) ? obj.spec : {};
}

function str(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function num(value: unknown): number | undefined {
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

/** Status details naming an object; like Kubernetes, without an empty group. */
function details(def: { group: string; plural: string }, name: string): Obj {
  return def.group === "" ? { name, kind: def.plural } : { name, group: def.group, kind: def.plural };
}

export function notFound(def: { group: string; plural: string }, name: string): KubeError {
  return new KubeError(404, "NotFound", `${qualifiedName(def)} "${name}" not found`, details(def, name));
}

function namespaceNotFound(ns: string): KubeError {
  return new KubeError(404, "NotFound", `namespaces "${ns}" not found`, { name: ns, kind: "namespaces" });
}

function conflict(def: ResourceDef, name: string): KubeError {
  return new KubeError(
    409,
    "Conflict",
    `Operation cannot be fulfilled on ${qualifiedName(def)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    details(def, name),
  );
}

function invalid(def: ResourceDef, name: string, field: string, detail: string): KubeError {
  return new KubeError(422, "Invalid", `${def.kind} "${name}" is invalid: ${field}: ${detail}`, {
    ...details(def, name),
    kind: def.kind,
    causes: [{ reason: "FieldValueInvalid", message: detail, field }],
  });
}

function badRequest(message: string): KubeError {
  return new KubeError(400, "BadRequest", message);
}

/** A pod that a controller would recreate after it is deleted. */
function respawningOwner(pod: Obj): string | undefined {
  const refs = meta(pod).ownerReferences;
  if (!Array.isArray(refs)) return undefined;
  for (const ref of refs) if (isPlainObject(ref) && typeof ref.kind === "string" && RESPAWNING_OWNERS.has(ref.kind)) return ref.kind;
  return undefined;
}

function podIsHealthy(pod: Obj): boolean {
  const status = isPlainObject(pod.status) ? pod.status : {};
  if (status.phase !== "Running") return false;
  const conditions = Array.isArray(status.conditions) ? status.conditions : [];
  return conditions.some((c) => isPlainObject(c) && c.type === "Ready" && c.status === "True");
}

/** An int-or-percent field of a PodDisruptionBudget, resolved against `total` (percentages round up). */
function intOrPercent(value: unknown, total: number): number | undefined {
  if (typeof value === "number") return value;
  if (typeof value === "string") {
    const m = /^(\d+)%$/.exec(value);
    if (m) return Math.ceil((Number(m[1]) * total) / 100);
    if (/^\d+$/.test(value)) return Number(value);
  }
  return undefined;
}

/** A pod template without the pod-template-hash label, for comparing a Deployment's template with its ReplicaSets'. */
function templateKey(template: unknown): string {
  const t: Obj = isPlainObject(template) ? structuredClone(template) : {};
  const m = isPlainObject(t.metadata) ? t.metadata : {};
  if (isPlainObject(m.labels)) {
    delete m.labels[HASH_LABEL];
    if (Object.keys(m.labels).length === 0) delete m.labels;
  }
  if (Object.keys(m).length === 0) delete t.metadata;
  else t.metadata = m;
  return stableStringify(t);
}

/** The pod-template-hash of a template, shaped like Kubernetes' (FNV-32a, then SafeEncodeString of its decimal form). */
function podTemplateHash(template: unknown, collisionCount: number): string {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(`${templateKey(template)}#${collisionCount}`, "utf8")) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return [...String(hash)].map((c) => SAFE_ALPHABET[c.charCodeAt(0) % SAFE_ALPHABET.length]).join("");
}

function controlledBy(obj: Obj, uid: string): boolean {
  const refs = meta(obj).ownerReferences;
  return Array.isArray(refs) && refs.some((r) => isPlainObject(r) && r.uid === uid && r.controller === true);
}

function revisionOf(obj: Obj): number {
  const annotations = meta(obj).annotations;
  const value = isPlainObject(annotations) ? Number(annotations[REVISION_ANNOTATION]) : NaN;
  return Number.isInteger(value) && value > 0 ? value : 0;
}

/** How far a workload's rollout has come at some moment. */
interface RolloutPhase {
  /** Every desired replica is ready. */
  ready: boolean;
  /** A `crashLoop` fault matches one of its images (and it wants replicas). */
  crashLooping: boolean;
  /** A Deployment past its progressDeadlineSeconds without becoming ready. */
  stalled: boolean;
  /** Ready replicas now. */
  readyCount: number;
  /** When this phase began (for condition timestamps). */
  since: number;
}

/**
 * A status condition with Kubernetes' timestamps: `lastTransitionTime` kept
 * while its status stays, `lastUpdateTime` while nothing about it changes.
 */
function stampCondition(condition: Obj, previous: Obj, at: string): Obj {
  const conditions = Array.isArray(previous.conditions) ? previous.conditions.filter(isPlainObject) : [];
  const prev = conditions.find((p) => p.type === condition.type);
  const transition = prev !== undefined && prev.status === condition.status && typeof prev.lastTransitionTime === "string" ? prev.lastTransitionTime : at;
  const unchanged = prev !== undefined && prev.status === condition.status && prev.reason === condition.reason && prev.message === condition.message;
  const update = unchanged && typeof prev.lastUpdateTime === "string" ? prev.lastUpdateTime : at;
  return { ...condition, lastUpdateTime: update, lastTransitionTime: transition };
}

function phaseKey(phase: RolloutPhase): string {
  return `${phase.crashLooping ? "crashloop" : phase.ready ? "ready" : "progressing"}${phase.stalled ? "/stalled" : ""}`;
}

/** The images of a workload's pod template (containers and init containers). */
function templateImages(obj: Obj): string[] {
  const template = spec(obj).template;
  const podSpec = isPlainObject(template) && isPlainObject(template.spec) ? template.spec : {};
  const images: string[] = [];
  for (const field of ["initContainers", "containers"]) {
    const list = podSpec[field];
    if (!Array.isArray(list)) continue;
    for (const c of list) if (isPlainObject(c) && typeof c.image === "string") images.push(c.image);
  }
  return images;
}

/** The replicas a written workload asks for; a DaemonSet's come from the nodes it fits (given). */
function wantedReplicas(obj: Obj): number {
  return num(spec(obj).replicas) ?? 1;
}

/** The ready replicas a stored workload status reports. */
function shownReady(key: string, obj: Obj): number {
  const status = isPlainObject(obj.status) ? obj.status : {};
  return num(key === DAEMONSETS_KEY ? status.numberReady : status.readyReplicas) ?? 0;
}

/** Drops zero counts, as the API server does for fields marked omitempty. */
function withoutZeros(status: Obj, fields: readonly string[]): Obj {
  for (const field of fields) if (status[field] === 0) delete status[field];
  return status;
}

/** A pod a workload controller made (its ownerReferences name one). */
function ownedByWorkload(pod: Obj): boolean {
  const refs = meta(pod).ownerReferences;
  return Array.isArray(refs) && refs.some((r) => isPlainObject(r) && typeof r.kind === "string" && WORKLOAD_OWNERS.has(r.kind));
}

interface Toleration {
  key?: string;
  operator?: string;
  value?: string;
  effect?: string;
}

function tolerates(tolerations: Toleration[], taint: Obj): boolean {
  return tolerations.some((t) => {
    if (t.effect !== undefined && t.effect !== "" && t.effect !== taint.effect) return false;
    if (t.operator === "Exists") return t.key === undefined || t.key === "" || t.key === taint.key;
    return t.key === taint.key && (t.value ?? "") === (taint.value ?? "");
  });
}

interface HistoryEvent {
  rv: number;
  key: string;
  ns: string;
  type: string;
  obj: Obj;
}

interface Watcher {
  clusterId: string;
  key: string;
  def: ResourceDef;
  ns: string | null;
  selectors: Selectors;
  res: ServerResponse;
  timer: NodeJS.Timeout;
}

export class KubeApi {
  /** Controllers that take part in writes (the Knative one). */
  readonly controllers: KubeController[] = [];
  private readonly watchers = new Set<Watcher>();
  private readonly history = new Map<string, HistoryEvent[]>();
  /** Per cluster, the resourceVersion from which the in-memory event history is complete. */
  private readonly historyFloor = new Map<string, number>();
  /** The same for clusters without their own floor: events since start-up (or the last reset) are all kept. */
  private globalFloor: number;

  constructor(private readonly model: RancherModel) {
    this.globalFloor = model.data.kubeResourceVersion;
    model.onNodeChange = (node) => this.nodeChanged(node);
  }

  private get data() {
    return this.model.data;
  }

  // ---- resources -----------------------------------------------------------------------

  objects(cluster: StoredCluster): StoredKubeObject[] {
    return this.model.kubeObjects(cluster);
  }

  /** Every served resource type of the cluster: the built-in ones and those of its CRDs. */
  resources(cluster: StoredCluster): ResourceDef[] {
    const out = [...STATIC_RESOURCES];
    for (const entry of this.objects(cluster)) {
      if (entry.key !== CRDS_KEY) continue;
      for (const def of crdResources(entry.obj)) {
        if (!out.some((d) => d.group === def.group && d.version === def.version && d.plural === def.plural)) out.push(def);
      }
    }
    return out;
  }

  resolve(cluster: StoredCluster, group: string, version: string, plural: string): ResourceDef | undefined {
    return this.resources(cluster).find((d) => d.group === group && d.version === version && d.plural === plural);
  }

  private find(cluster: StoredCluster, key: string, ns: string, name: string): StoredKubeObject | undefined {
    return this.objects(cluster).find((o) => o.key === key && o.ns === ns && o.name === name);
  }

  private namespaceExists(cluster: StoredCluster, ns: string): boolean {
    return this.find(cluster, NAMESPACES_KEY, "", ns) !== undefined;
  }

  /** A copy of a stored object as the client asked for it: its apiVersion, derived status parts filled in. */
  private present(cluster: StoredCluster, def: ResourceDef, obj: Obj, now: number): Obj {
    const out = structuredClone(obj);
    out.apiVersion = groupVersion(def);
    out.kind = def.kind;
    if (resourceKey(def) === PDBS_KEY) out.status = this.pdbStatus(cluster, out, now);
    return out;
  }

  // ---- reads -------------------------------------------------------------------------------

  list(cluster: StoredCluster, def: ResourceDef, ns: string | null, selectors: Selectors, now: number): Obj {
    return {
      kind: `${def.kind}List`,
      apiVersion: groupVersion(def),
      metadata: { resourceVersion: String(this.data.kubeResourceVersion) },
      items: this.listItems(cluster, def, ns, selectors, now),
    };
  }

  private listItems(cluster: StoredCluster, def: ResourceDef, ns: string | null, selectors: Selectors, now: number): Obj[] {
    let items: Obj[];
    if (resourceKey(def) === NODES_KEY) {
      items = this.registeredNodes(cluster, now).map((n) => this.nodeObject(n, now));
    } else {
      if (ns !== null && def.namespaced && !this.namespaceExists(cluster, ns)) return [];
      const key = resourceKey(def);
      items = this.objects(cluster)
        .filter((o) => o.key === key && (ns === null || o.ns === ns))
        .sort((a, b) => (a.ns === b.ns ? (a.name < b.name ? -1 : 1) : a.ns < b.ns ? -1 : 1))
        .map((o) => this.present(cluster, def, o.obj, now));
    }
    return items.filter((o) => matchesLabels(selectors.labels, meta(o).labels) && matchesFields(selectors.fields, o));
  }

  get(cluster: StoredCluster, def: ResourceDef, ns: string, name: string, now: number): Obj {
    if (resourceKey(def) === NODES_KEY) return this.nodeObject(this.k8sNode(cluster, name, now), now);
    const found = this.find(cluster, resourceKey(def), def.namespaced ? ns : "", name);
    if (found === undefined) throw notFound(def, name);
    return this.present(cluster, def, found.obj, now);
  }

  exists(cluster: StoredCluster, def: ResourceDef, ns: string, name: string): boolean {
    if (resourceKey(def) === NODES_KEY) return this.registeredNodes(cluster, Date.now()).some((n) => n.hostname === name);
    return this.find(cluster, resourceKey(def), def.namespaced ? ns : "", name) !== undefined;
  }

  // ---- writes --------------------------------------------------------------------------------

  /** Checks a request body's apiVersion, kind, metadata and namespace against the URL. */
  private checkBody(def: ResourceDef, ns: string, body: unknown): Obj {
    if (!isPlainObject(body)) throw badRequest(`the body of the request was in an unknown format - accepted media types include: application/json`);
    const obj = structuredClone(body);
    if (obj.apiVersion !== undefined && obj.apiVersion !== groupVersion(def)) {
      throw badRequest(`the API version in the data (${String(obj.apiVersion)}) does not match the expected API version (${groupVersion(def)})`);
    }
    if (obj.kind !== undefined && obj.kind !== def.kind) {
      throw badRequest(`the kind in the data (${String(obj.kind)}) does not match the expected kind (${def.kind})`);
    }
    if (obj.metadata !== undefined && !isPlainObject(obj.metadata)) throw badRequest("metadata must be an object");
    const m = meta(obj);
    for (const field of ["labels", "annotations"]) {
      if (m[field] !== undefined && m[field] !== null && !isStringMap(m[field])) {
        throw badRequest(`metadata.${field} must be a map of strings`);
      }
    }
    if (def.namespaced) {
      if (m.namespace !== undefined && m.namespace !== "" && m.namespace !== ns) {
        throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
      }
      m.namespace = ns;
    } else {
      delete m.namespace;
    }
    obj.apiVersion = groupVersion(def);
    obj.kind = def.kind;
    return obj;
  }

  create(cluster: StoredCluster, def: ResourceDef, ns: string, body: unknown, now: number, opts: WriteOptions): Obj {
    if (resourceKey(def) === NODES_KEY) throw new KubeError(405, "MethodNotAllowed", "nodes register themselves in this simulator; they cannot be created");
    const obj = this.checkBody(def, ns, body);
    const m = meta(obj);
    if ((m.name === undefined || m.name === "") && typeof m.generateName === "string" && m.generateName !== "") {
      let name: string;
      do name = `${m.generateName}${nameSuffix()}`;
      while (this.find(cluster, resourceKey(def), def.namespaced ? ns : "", name) !== undefined);
      m.name = name;
    }
    const name = str(m.name) ?? "";
    if (name === "") throw invalid(def, "", "metadata.name", "Required value: name or generateName is required");
    const nameRe = def.plural === "namespaces" && def.group === "" ? DNS_LABEL_RE : DNS_SUBDOMAIN_RE;
    if (name.length > 253 || !nameRe.test(name)) {
      throw invalid(def, name, "metadata.name", `Invalid value: "${name}": a lowercase RFC 1123 name must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character`);
    }
    if (def.namespaced && !this.namespaceExists(cluster, ns)) throw namespaceNotFound(ns);
    const key = resourceKey(def);
    if (this.find(cluster, key, def.namespaced ? ns : "", name) !== undefined) {
      throw new KubeError(409, "AlreadyExists", `${qualifiedName(def)} "${name}" already exists`, details(def, name));
    }
    for (const field of ["deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"]) delete m[field];
    m.uid = randomUUID();
    m.creationTimestamp = rfc3339(now);
    m.generation = 1;
    if (def.status) delete obj.status;
    this.defaults(def, obj);
    const rollout = this.rolloutAfterWrite(key, obj, null, undefined, now);
    this.admit(cluster, def, obj, null, now, rollout);
    if (opts.dryRun) {
      m.resourceVersion = String(this.data.kubeResourceVersion);
      return this.present(cluster, def, obj, now);
    }
    m.resourceVersion = String(this.model.nextResourceVersion());
    const entry: StoredKubeObject = { key, ns: def.namespaced ? ns : "", name, obj };
    if (rollout !== undefined) entry.rollout = rollout;
    this.objects(cluster).push(entry);
    this.emit(cluster.id, key, entry.ns, "ADDED", obj);
    this.afterWrite(cluster, entry, now);
    return this.present(cluster, def, entry.obj, now);
  }

  /**
   * PUT, and the common end of PATCH: `next` replaces the stored object (or,
   * for the status subresource, only its status), with Kubernetes' rules for
   * resourceVersion preconditions, immutable metadata and generation.
   */
  replace(cluster: StoredCluster, def: ResourceDef, ns: string, name: string, body: unknown, now: number, opts: WriteOptions & { subresource?: string; patched?: boolean }): Obj {
    if (resourceKey(def) === NODES_KEY) return this.writeNode(cluster, name, body, now, opts);
    const key = resourceKey(def);
    const entry = this.find(cluster, key, def.namespaced ? ns : "", name);
    if (entry === undefined) throw notFound(def, name);
    const old = entry.obj;
    const next = this.checkBody(def, ns, body);
    const m = meta(next);
    const oldMeta = meta(old);
    if (m.name !== undefined && m.name !== name) {
      if (opts.patched === true) throw invalid(def, name, "metadata.name", "Invalid value: field is immutable");
      throw badRequest(`the name of the object (${String(m.name)}) does not match the name on the URL (${name})`);
    }
    const rv = m.resourceVersion;
    if (rv !== undefined && rv !== null && rv !== "" && rv !== oldMeta.resourceVersion) throw conflict(def, name);

    let result: Obj;
    let rollout = entry.rollout;
    if (opts.subresource === "status") {
      result = structuredClone(old);
      if (next.status === undefined) delete result.status;
      else result.status = next.status;
    } else {
      result = next;
      const rm = meta(result);
      rm.name = name;
      rm.uid = oldMeta.uid;
      rm.creationTimestamp = oldMeta.creationTimestamp;
      delete rm.managedFields;
      if (oldMeta.deletionTimestamp !== undefined) rm.deletionTimestamp = oldMeta.deletionTimestamp;
      else delete rm.deletionTimestamp;
      if (def.status) {
        if (old.status === undefined) delete result.status;
        else result.status = structuredClone(old.status);
      }
      this.defaults(def, result);
      const changed = (o: Obj): string => {
        const { metadata: _m, status: _s, ...rest } = o;
        return stableStringify(rest);
      };
      const generation = num(oldMeta.generation) ?? 1;
      rm.generation = changed(result) !== changed(old) ? generation + 1 : generation;
      rollout = this.rolloutAfterWrite(key, result, old, entry.rollout, now);
      this.admit(cluster, def, result, old, now, rollout);
    }
    if (opts.dryRun) return this.present(cluster, def, result, now);
    meta(result).resourceVersion = String(this.model.nextResourceVersion());
    entry.obj = result;
    if (rollout !== undefined) entry.rollout = rollout;
    this.emit(cluster.id, key, entry.ns, "MODIFIED", result);
    if (opts.subresource === undefined) this.afterWrite(cluster, entry, now);
    return this.present(cluster, def, entry.obj, now);
  }

  /** PATCH in any of the four formats; server-side apply of a missing object creates it. */
  patch(
    cluster: StoredCluster,
    def: ResourceDef,
    ns: string,
    name: string,
    contentType: string,
    bodyText: string,
    now: number,
    opts: WriteOptions & { subresource?: string },
  ): Obj {
    let patchBody: unknown;
    try {
      patchBody = JSON.parse(bodyText);
    } catch (err) {
      if (contentType === "application/apply-patch+yaml") {
        throw new KubeError(415, "UnsupportedMediaType", "the simulator only understands apply patches written as JSON (which is valid YAML); send the object as JSON");
      }
      throw badRequest(`error decoding patch: ${(err as Error).message}`);
    }
    let current: Obj;
    try {
      current = this.get(cluster, def, ns, name, now);
    } catch (err) {
      if (contentType === "application/apply-patch+yaml" && err instanceof KubeError && err.code === 404 && opts.subresource === undefined) {
        const body = isPlainObject(patchBody) ? patchBody : {};
        return this.create(cluster, def, ns, { ...body, metadata: { ...(isPlainObject(body.metadata) ? body.metadata : {}), name } }, now, opts);
      }
      throw err;
    }
    let next: unknown;
    switch (contentType) {
      case "application/merge-patch+json":
      case "application/apply-patch+yaml":
        next = mergePatch(current, patchBody);
        break;
      case "application/strategic-merge-patch+json":
        if (def.custom) {
          throw new KubeError(415, "UnsupportedMediaType", `strategic merge patch is not supported for ${qualifiedName(def)}; use a JSON merge patch or a JSON patch`);
        }
        next = strategicMergePatch(current, patchBody);
        break;
      case "application/json-patch+json":
        next = jsonPatch(current, patchBody);
        break;
      default:
        throw new KubeError(415, "UnsupportedMediaType", `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml${def.custom ? "" : ", application/strategic-merge-patch+json"}`);
    }
    if (!isPlainObject(next)) throw badRequest("the patched object is not a JSON object");
    // A patch only carries a resourceVersion when the client wants it checked.
    const patchMeta = isPlainObject(patchBody) && isPlainObject(patchBody.metadata) ? patchBody.metadata : {};
    // (A JSON patch that leaves it alone leaves the current one, which passes the check.)
    if (contentType !== "application/json-patch+json" && patchMeta.resourceVersion === undefined) delete meta(next).resourceVersion;
    const replaceOpts: WriteOptions & { subresource?: string; patched?: boolean } = { dryRun: opts.dryRun, patched: true };
    if (opts.subresource !== undefined) replaceOpts.subresource = opts.subresource;
    return this.replace(cluster, def, ns, name, next, now, replaceOpts);
  }

  /** DELETE of one object; namespaces take their contents with them, dependents are garbage-collected. */
  delete(cluster: StoredCluster, def: ResourceDef, ns: string, name: string, body: unknown, now: number, opts: WriteOptions & { orphan: boolean }): Obj {
    if (resourceKey(def) === NODES_KEY) return this.deleteNode(cluster, name, now, opts);
    const key = resourceKey(def);
    const entry = this.find(cluster, key, def.namespaced ? ns : "", name);
    if (entry === undefined) throw notFound(def, name);
    const preconditions = isPlainObject(body) && isPlainObject(body.preconditions) ? body.preconditions : {};
    const m = meta(entry.obj);
    if (preconditions.resourceVersion !== undefined && preconditions.resourceVersion !== m.resourceVersion) throw conflict(def, name);
    if (preconditions.uid !== undefined && preconditions.uid !== m.uid) {
      throw new KubeError(409, "Conflict", `Operation cannot be fulfilled on ${qualifiedName(def)} "${name}": Precondition failed: UID in precondition: ${String(preconditions.uid)}, UID in object meta: ${String(m.uid)}`);
    }
    const isNamespace = key === NAMESPACES_KEY;
    if (isNamespace && PROTECTED_NAMESPACES.has(name)) {
      throw new KubeError(403, "Forbidden", `namespaces "${name}" is forbidden: this namespace may not be deleted`, { name, kind: "namespaces" });
    }
    const shown = this.present(cluster, def, entry.obj, now);
    meta(shown).deletionTimestamp = rfc3339(now);
    if (isNamespace) shown.status = { phase: "Terminating" };
    if (opts.dryRun) return shown;
    if (isNamespace) {
      for (const inner of this.objects(cluster).filter((o) => o.ns === name)) this.removeEntry(cluster, inner, false);
    }
    if (key === CRDS_KEY) {
      // A CRD takes its custom objects with it.
      const served = crdResources(entry.obj)[0];
      if (served !== undefined) {
        for (const inner of this.objects(cluster).filter((o) => o.key === resourceKey(served))) this.removeEntry(cluster, inner, false);
      }
    }
    this.removeEntry(cluster, entry, key === PODS_KEY, undefined, opts.orphan);
    if (key === REPLICASETS_KEY) {
      // The Deployment controller makes a deleted current ReplicaSet again.
      const owner = this.objects(cluster).find((o) => o.key === DEPLOYMENTS_KEY && o.ns === entry.ns && controlledBy(entry.obj, String(meta(o.obj).uid)));
      if (owner !== undefined) this.syncDeployment(cluster, owner, now);
    }
    return shown;
  }

  deleteCollection(cluster: StoredCluster, def: ResourceDef, ns: string | null, selectors: Selectors, now: number, opts: WriteOptions & { orphan: boolean }): Obj {
    const items = this.listItems(cluster, def, ns, selectors, now);
    if (!opts.dryRun) {
      for (const item of items) {
        const m = meta(item);
        const entry = this.find(cluster, resourceKey(def), def.namespaced ? String(m.namespace ?? "") : "", String(m.name ?? ""));
        if (entry !== undefined) this.removeEntry(cluster, entry, resourceKey(def) === PODS_KEY, undefined, opts.orphan);
      }
    }
    return { kind: `${def.kind}List`, apiVersion: groupVersion(def), metadata: { resourceVersion: String(this.data.kubeResourceVersion) }, items };
  }

  /**
   * Removes a stored object: a DELETED event, dependents garbage-collected
   * (unless orphaned), and a pod a controller owns made again elsewhere.
   */
  private removeEntry(cluster: StoredCluster, entry: StoredKubeObject, respawn: boolean, avoidNode?: string, orphan = false): void {
    const list = this.objects(cluster);
    const index = list.indexOf(entry);
    if (index < 0) return;
    list.splice(index, 1);
    const gone = structuredClone(entry.obj);
    meta(gone).resourceVersion = String(this.model.nextResourceVersion());
    this.emit(cluster.id, entry.key, entry.ns, "DELETED", gone);
    for (const c of this.controllers) c.removed(cluster, entry);
    const uid = meta(entry.obj).uid;
    if (!orphan && typeof uid === "string") {
      const dependents = list.filter((o) => {
        const refs = meta(o.obj).ownerReferences;
        return Array.isArray(refs) && refs.some((r) => isPlainObject(r) && r.uid === uid) && (entry.ns === "" || o.ns === entry.ns);
      });
      for (const dependent of dependents) this.removeEntry(cluster, dependent, false);
    }
    if (respawn && entry.key === PODS_KEY && respawningOwner(entry.obj) !== undefined) this.respawn(cluster, entry.obj, avoidNode);
  }

  // ---- admission: defaults and pretend controllers -----------------------------------------------

  /** The API server's defaults for fields a client may leave out (only the ones clients rely on). */
  private defaults(def: ResourceDef, obj: Obj): void {
    const key = resourceKey(def);
    for (const c of this.controllers) c.defaults(key, obj);
    if (key !== DEPLOYMENTS_KEY && key !== STATEFULSETS_KEY && key !== DAEMONSETS_KEY) return;
    const s: Obj = isPlainObject(obj.spec) ? obj.spec : {};
    obj.spec = s;
    s.revisionHistoryLimit ??= 10;
    const strategyField = key === DEPLOYMENTS_KEY ? "strategy" : "updateStrategy";
    const strategy: Obj = isPlainObject(s[strategyField]) ? s[strategyField] : {};
    s[strategyField] = strategy;
    strategy.type ??= "RollingUpdate";
    const rolling: Obj = isPlainObject(strategy.rollingUpdate) ? strategy.rollingUpdate : {};
    if (key === DEPLOYMENTS_KEY) {
      s.replicas ??= 1;
      s.progressDeadlineSeconds ??= 600;
      rolling.maxUnavailable ??= "25%";
      rolling.maxSurge ??= "25%";
    } else if (key === STATEFULSETS_KEY) {
      s.replicas ??= 1;
      s.podManagementPolicy ??= "OrderedReady";
      rolling.partition ??= 0;
    } else {
      rolling.maxUnavailable ??= 1;
      rolling.maxSurge ??= 0;
    }
    if (strategy.type === "RollingUpdate") strategy.rollingUpdate = rolling;
  }

  /** What controllers do at once after an object is written. */
  private afterWrite(cluster: StoredCluster, entry: StoredKubeObject, now: number): void {
    if (entry.key === DEPLOYMENTS_KEY) this.syncDeployment(cluster, entry, now);
    for (const c of this.controllers) c.afterWrite(cluster, entry, now);
  }

  /**
   * The Deployment controller, done at once: the ReplicaSet whose template is
   * the Deployment's (made if missing, named `<deployment>-<pod-template-hash>`,
   * revision bumped when an old one comes back, as on a rollback) gets all
   * replicas, the others 0, the oldest beyond `revisionHistoryLimit` go, and
   * the Deployment carries the current revision.
   */
  private syncDeployment(cluster: StoredCluster, entry: StoredKubeObject, now: number): void {
    const dep = entry.obj;
    const dm = meta(dep);
    const uid = str(dm.uid);
    if (uid === undefined || dm.deletionTimestamp !== undefined || !this.namespaceExists(cluster, entry.ns)) return;
    const s = spec(dep);
    const replicas = num(s.replicas) ?? 1;
    const template: Obj = isPlainObject(s.template) ? structuredClone(s.template) : {};
    const wanted = templateKey(template);
    const owned = () => this.objects(cluster).filter((o) => o.key === REPLICASETS_KEY && o.ns === entry.ns && controlledBy(o.obj, uid));
    const maxRevision = Math.max(0, ...owned().map((o) => revisionOf(o.obj)));
    const strategy = isPlainObject(s.strategy) ? s.strategy : {};
    const rolling = isPlainObject(strategy.rollingUpdate) ? strategy.rollingUpdate : {};
    const surge = strategy.type === "RollingUpdate" ? (intOrPercent(rolling.maxSurge, replicas) ?? 0) : 0;
    const rsAnnotations = (revision: number): Record<string, string> => ({
      "deployment.kubernetes.io/desired-replicas": String(replicas),
      "deployment.kubernetes.io/max-replicas": String(replicas + surge),
      [REVISION_ANNOTATION]: String(revision),
    });
    const write = (rs: StoredKubeObject, next: Obj): void => {
      this.replace(cluster, REPLICASETS, rs.ns, rs.name, next, now, { dryRun: false });
    };

    let current = owned()
      .sort((a, b) => String(meta(a.obj).creationTimestamp).localeCompare(String(meta(b.obj).creationTimestamp)) || a.name.localeCompare(b.name))
      .find((o) => templateKey(spec(o.obj).template) === wanted);
    let revision: number;
    if (current === undefined) {
      revision = maxRevision + 1;
      let collisions = 0;
      let hash = podTemplateHash(template, collisions);
      while (this.find(cluster, REPLICASETS_KEY, entry.ns, `${entry.name}-${hash}`) !== undefined) hash = podTemplateHash(template, ++collisions);
      const templateLabels = meta(template).labels;
      const labels = { ...(isStringMap(templateLabels) ? templateLabels : {}), [HASH_LABEL]: hash };
      meta(template).labels = labels;
      const selector: Obj = isPlainObject(s.selector) ? structuredClone(s.selector) : {};
      selector.matchLabels = { ...(isStringMap(selector.matchLabels) ? selector.matchLabels : {}), [HASH_LABEL]: hash };
      const rsSpec: Obj = { replicas, selector, template };
      if (s.minReadySeconds !== undefined) rsSpec.minReadySeconds = s.minReadySeconds;
      this.create(
        cluster,
        REPLICASETS,
        entry.ns,
        {
          metadata: {
            name: `${entry.name}-${hash}`,
            namespace: entry.ns,
            labels,
            annotations: rsAnnotations(revision),
            ownerReferences: [{ apiVersion: "apps/v1", kind: "Deployment", name: entry.name, uid, controller: true, blockOwnerDeletion: true }],
          },
          spec: rsSpec,
        },
        now,
        { dryRun: false },
      );
      current = this.find(cluster, REPLICASETS_KEY, entry.ns, `${entry.name}-${hash}`);
    } else {
      revision = revisionOf(current.obj) === maxRevision && maxRevision > 0 ? maxRevision : maxRevision + 1;
      const next = structuredClone(current.obj);
      spec(next).replicas = replicas;
      next.spec = spec(next);
      const nextMeta = meta(next);
      nextMeta.annotations = { ...(isStringMap(nextMeta.annotations) ? nextMeta.annotations : {}), ...rsAnnotations(revision) };
      if (stableStringify(next) !== stableStringify(current.obj)) write(current, next);
    }
    if (current === undefined) return;

    const old = owned().filter((o) => o !== current);
    for (const rs of old) {
      if (num(spec(rs.obj).replicas) === 0) continue;
      const next = structuredClone(rs.obj);
      spec(next).replicas = 0;
      next.spec = spec(next);
      write(rs, next);
    }
    const limit = num(s.revisionHistoryLimit) ?? 10;
    const history = owned()
      .filter((o) => o !== current && o.name !== current?.name)
      .sort((a, b) => revisionOf(a.obj) - revisionOf(b.obj));
    for (const rs of history.slice(0, Math.max(0, history.length - limit))) this.removeEntry(cluster, rs, false);

    // The Deployment names its revision and, in its conditions, the ReplicaSet it progresses to.
    const annotations = isStringMap(dm.annotations) ? dm.annotations : {};
    const rollout = (entry.rollout ??= { startedTS: 0, baseReady: 0, shown: "ready" });
    const { status, phase } = this.workloadStatus(cluster, DEPLOYMENTS_KEY, dep, rollout, replicas, now);
    if (annotations[REVISION_ANNOTATION] === String(revision) && stableStringify(status) === stableStringify(dep.status)) return;
    dm.annotations = { ...annotations, [REVISION_ANNOTATION]: String(revision) };
    dep.status = status;
    rollout.shown = phaseKey(phase);
    dm.resourceVersion = String(this.model.nextResourceVersion());
    this.emit(cluster.id, DEPLOYMENTS_KEY, entry.ns, "MODIFIED", dep);
  }

  private admit(cluster: StoredCluster, def: ResourceDef, obj: Obj, old: Obj | null, now: number, rollout?: StoredRollout): void {
    const m = meta(obj);
    const name = String(m.name);
    for (const c of this.controllers) c.admit(cluster, resourceKey(def), obj, old, now);
    switch (resourceKey(def)) {
      case "/secrets": {
        if (isPlainObject(obj.stringData)) {
          const data: Obj = isPlainObject(obj.data) ? obj.data : {};
          for (const [k, v] of Object.entries(obj.stringData)) data[k] = Buffer.from(String(v), "utf8").toString("base64");
          obj.data = data;
        }
        delete obj.stringData;
        obj.type ??= "Opaque";
        break;
      }
      case NAMESPACES_KEY: {
        m.labels = { ...(isStringMap(m.labels) ? m.labels : {}), "kubernetes.io/metadata.name": name };
        obj.spec = { finalizers: ["kubernetes"], ...spec(obj) };
        obj.status = { phase: "Active" };
        break;
      }
      case "/services": {
        const s = spec(obj);
        s.type ??= "ClusterIP";
        if (s.type !== "ExternalName" && (s.clusterIP === undefined || s.clusterIP === "")) {
          const ip = old !== null && isPlainObject(old.spec) && typeof old.spec.clusterIP === "string" ? old.spec.clusterIP : this.nextIp(43, 0);
          s.clusterIP = ip;
          s.clusterIPs = [ip];
        }
        s.sessionAffinity ??= "None";
        obj.spec = s;
        obj.status ??= { loadBalancer: {} };
        break;
      }
      case PODS_KEY:
        if (old === null) this.startPod(cluster, obj, now, undefined);
        break;
      case DEPLOYMENTS_KEY:
      case REPLICASETS_KEY:
      case STATEFULSETS_KEY:
      case DAEMONSETS_KEY: {
        const key = resourceKey(def);
        // A DaemonSet wants one pod on every node it fits, counted when it is written.
        const desired = key === DAEMONSETS_KEY ? this.registeredNodes(cluster, now).filter((node) => this.fits(node, obj, now, true)).length : wantedReplicas(obj);
        const bookkeeping = rollout ?? { startedTS: now, baseReady: 0, shown: "" };
        const { status, phase } = this.workloadStatus(cluster, key, obj, bookkeeping, desired, now);
        obj.status = status;
        bookkeeping.shown = phaseKey(phase);
        break;
      }
      case "batch/jobs": {
        if (old !== null) break;
        const completions = num(spec(obj).completions) ?? 1;
        obj.status = {
          startTime: rfc3339(now),
          completionTime: rfc3339(now),
          succeeded: completions,
          active: 0,
          ready: 0,
          conditions: [
            { type: "SuccessCriteriaMet", status: "True", reason: "CompletionsReached", lastProbeTime: rfc3339(now), lastTransitionTime: rfc3339(now) },
            { type: "Complete", status: "True", reason: "CompletionsReached", lastProbeTime: rfc3339(now), lastTransitionTime: rfc3339(now) },
          ],
        };
        break;
      }
      case CRDS_KEY: {
        const s = spec(obj);
        const versions = Array.isArray(s.versions) ? s.versions.filter(isPlainObject) : [];
        const storage = versions.find((v) => v.storage === true) ?? versions[0];
        obj.status = {
          acceptedNames: isPlainObject(s.names) ? s.names : {},
          storedVersions: storage !== undefined && typeof storage.name === "string" ? [storage.name] : [],
          conditions: [
            { type: "NamesAccepted", status: "True", reason: "NoConflicts", message: "no conflicts found", lastTransitionTime: rfc3339(now) },
            { type: "Established", status: "True", reason: "InitialNamesAccepted", message: "the initial names have been accepted", lastTransitionTime: rfc3339(now) },
          ],
        };
        break;
      }
    }
  }

  // ---- workload rollouts ---------------------------------------------------------------------------

  /**
   * The rollout bookkeeping a write leaves: a new rollout for a new workload or
   * a new pod template (nothing ready yet), or a new replica count (the ready
   * ones stay ready, up to the new count); otherwise the current one.
   */
  private rolloutAfterWrite(key: string, obj: Obj, old: Obj | null, prior: StoredRollout | undefined, now: number): StoredRollout | undefined {
    if (!WORKLOAD_KEYS.has(key)) return undefined;
    if (old === null) return { startedTS: now, baseReady: 0, shown: "" };
    // Objects stored before rollouts were tracked were shown ready.
    const base: StoredRollout = prior !== undefined ? structuredClone(prior) : { startedTS: 0, baseReady: 0, shown: "ready" };
    if (stableStringify(spec(obj).template ?? null) !== stableStringify(spec(old).template ?? null)) return { startedTS: now, baseReady: 0, shown: base.shown };
    if (key !== DAEMONSETS_KEY && wantedReplicas(obj) !== wantedReplicas(old)) {
      return { startedTS: now, baseReady: Math.min(shownReady(key, old), wantedReplicas(obj)), shown: base.shown };
    }
    return base;
  }

  /**
   * Where a workload's rollout stands at `now`: ready `workloadReadyMs` after it
   * started, never while a `crashLoop` fault matches one of its images. A crash
   * loop that is over starts the rollout again from now (the pods come up afresh).
   */
  private rolloutPhase(cluster: StoredCluster, key: string, obj: Obj, rollout: StoredRollout, desired: number, now: number): RolloutPhase {
    const crashLooping = desired > 0 && templateImages(obj).some((image) => this.model.crashLoops(cluster, image));
    if (!crashLooping && rollout.shown.startsWith("crashloop")) {
      rollout.startedTS = now;
      rollout.baseReady = 0;
    }
    if (!crashLooping) {
      if (desired === 0 || rollout.baseReady >= desired) return { ready: true, crashLooping, stalled: false, readyCount: desired, since: rollout.startedTS };
      const readyAt = rollout.startedTS + this.model.settings.workloadReadyMs;
      if (now >= readyAt) return { ready: true, crashLooping, stalled: false, readyCount: desired, since: readyAt };
    }
    const deadlineSeconds = key === DEPLOYMENTS_KEY ? num(spec(obj).progressDeadlineSeconds) : undefined;
    const deadlineAt = deadlineSeconds === undefined ? Infinity : rollout.startedTS + deadlineSeconds * 1000;
    const stalled = now >= deadlineAt;
    return {
      ready: false,
      crashLooping,
      stalled,
      readyCount: crashLooping ? 0 : Math.min(rollout.baseReady, desired),
      since: stalled ? deadlineAt : crashLooping ? now : rollout.startedTS,
    };
  }

  /** The name of the ReplicaSet a Deployment's pod template belongs to (or will, once the controller made it). */
  private currentReplicaSetName(cluster: StoredCluster, dep: Obj): string {
    const m = meta(dep);
    const uid = str(m.uid);
    const ns = String(m.namespace ?? "");
    const template = spec(dep).template;
    const wanted = templateKey(template);
    const found =
      uid === undefined ? undefined : this.objects(cluster).find((o) => o.key === REPLICASETS_KEY && o.ns === ns && controlledBy(o.obj, uid) && templateKey(spec(o.obj).template) === wanted);
    return found?.name ?? `${String(m.name)}-${podTemplateHash(isPlainObject(template) ? template : {}, 0)}`;
  }

  /** The status a workload's controller would report now for `desired` replicas (a DaemonSet: nodes). */
  private workloadStatus(cluster: StoredCluster, key: string, obj: Obj, rollout: StoredRollout, desired: number, now: number): { status: Obj; phase: RolloutPhase } {
    const phase = this.rolloutPhase(cluster, key, obj, rollout, desired, now);
    const m = meta(obj);
    const observedGeneration = num(m.generation) ?? 1;
    const previous: Obj = isPlainObject(obj.status) ? obj.status : {};
    const ready = phase.readyCount;
    const at = rfc3339(Math.min(phase.since, now));
    switch (key) {
      case DEPLOYMENTS_KEY: {
        const rs = this.currentReplicaSetName(cluster, obj);
        const status = withoutZeros(
          { observedGeneration, replicas: desired, updatedReplicas: desired, readyReplicas: ready, availableReplicas: ready, unavailableReplicas: desired - ready },
          ["replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"],
        );
        const available = phase.ready
          ? { type: "Available", status: "True", reason: "MinimumReplicasAvailable", message: "Deployment has minimum availability." }
          : { type: "Available", status: "False", reason: "MinimumReplicasUnavailable", message: "Deployment does not have minimum availability." };
        const progressing = phase.ready
          ? { type: "Progressing", status: "True", reason: "NewReplicaSetAvailable", message: `ReplicaSet "${rs}" has successfully progressed.` }
          : phase.stalled
            ? { type: "Progressing", status: "False", reason: "ProgressDeadlineExceeded", message: `ReplicaSet "${rs}" has timed out progressing.` }
            : { type: "Progressing", status: "True", reason: "ReplicaSetUpdated", message: `ReplicaSet "${rs}" is progressing.` };
        status.conditions = [available, progressing].map((c) => stampCondition(c, previous, at));
        return { status, phase };
      }
      case REPLICASETS_KEY:
        return {
          status: withoutZeros({ observedGeneration, replicas: desired, fullyLabeledReplicas: desired, readyReplicas: ready, availableReplicas: ready }, ["fullyLabeledReplicas", "readyReplicas", "availableReplicas"]),
          phase,
        };
      case STATEFULSETS_KEY: {
        const updateRevision = `${String(m.name)}-${createHash("sha256").update(stableStringify(spec(obj).template ?? {})).digest("hex").slice(0, 10)}`;
        // The pods keep the revision they ran until the new one is rolled out.
        const currentRevision = phase.ready ? updateRevision : (str(previous.currentRevision) ?? updateRevision);
        const status = withoutZeros(
          {
            observedGeneration,
            replicas: desired,
            readyReplicas: ready,
            currentReplicas: currentRevision === updateRevision ? desired : 0,
            updatedReplicas: desired,
            availableReplicas: ready,
            currentRevision,
            updateRevision,
            collisionCount: 0,
          },
          ["readyReplicas", "currentReplicas", "updatedReplicas"],
        );
        return { status, phase };
      }
      default:
        return {
          status: withoutZeros(
            {
              observedGeneration,
              currentNumberScheduled: desired,
              desiredNumberScheduled: desired,
              numberReady: ready,
              numberAvailable: ready,
              numberUnavailable: desired - ready,
              updatedNumberScheduled: desired,
              numberMisscheduled: 0,
            },
            ["numberAvailable", "numberUnavailable", "updatedNumberScheduled"],
          ),
          phase,
        };
    }
  }

  /**
   * Shows the `crashLoop` fault in a running pod a workload made: matching
   * containers wait in CrashLoopBackOff (one more restart), and run again once
   * the fault is lifted. Answers whether the pod's status changed.
   */
  private showCrashLoop(cluster: StoredCluster, pod: Obj, now: number): boolean {
    const status = isPlainObject(pod.status) ? pod.status : undefined;
    if (status === undefined || status.phase !== "Running" || !ownedByWorkload(pod)) return false;
    const statuses = Array.isArray(status.containerStatuses) ? status.containerStatuses.filter(isPlainObject) : [];
    const t = rfc3339(now);
    const pm = meta(pod);
    let changed = false;
    for (const cs of statuses) {
      const state = isPlainObject(cs.state) ? cs.state : {};
      const waiting = isPlainObject(state.waiting) && state.waiting.reason === CRASH_LOOP_REASON;
      const crashing = typeof cs.image === "string" && this.model.crashLoops(cluster, cs.image);
      if (crashing === waiting) continue;
      changed = true;
      if (crashing) {
        const running = isPlainObject(state.running) ? state.running : {};
        cs.lastState = {
          terminated: { exitCode: 1, reason: "Error", startedAt: typeof running.startedAt === "string" ? running.startedAt : t, finishedAt: t, containerID: cs.containerID },
        };
        cs.state = {
          waiting: {
            reason: CRASH_LOOP_REASON,
            message: `back-off 10s restarting failed container=${String(cs.name)} pod=${String(pm.name)}_${String(pm.namespace)}(${String(pm.uid)})`,
          },
        };
        cs.restartCount = (num(cs.restartCount) ?? 0) + 1;
        cs.ready = false;
        cs.started = false;
      } else {
        cs.state = { running: { startedAt: t } };
        cs.ready = true;
        cs.started = true;
      }
    }
    if (!changed) return false;
    const unready = statuses.filter((cs) => cs.ready !== true).map((cs) => String(cs.name));
    const conditions = Array.isArray(status.conditions) ? status.conditions.filter(isPlainObject) : [];
    for (const c of conditions) {
      if (c.type !== "Ready" && c.type !== "ContainersReady") continue;
      const next = unready.length === 0 ? "True" : "False";
      if (c.status !== next) c.lastTransitionTime = t;
      c.status = next;
      if (unready.length === 0) {
        delete c.reason;
        delete c.message;
      } else {
        c.reason = "ContainersNotReady";
        c.message = `containers with unready status: [${unready.join(" ")}]`;
      }
    }
    return true;
  }

  /**
   * What an operator stopping a workload does through the API: a Deployment or
   * StatefulSet of that name is scaled to 0, a DaemonSet of that name deleted.
   * Answers what was stopped (empty when there is no such workload).
   */
  stopWorkload(cluster: StoredCluster, ns: string, name: string, now: number): StoppedWorkload[] {
    const stopped: StoppedWorkload[] = [];
    if (!Object.hasOwn(this.data.kube, cluster.id)) return stopped;
    for (const def of [DEPLOYMENTS, STATEFULSETS]) {
      const entry = this.find(cluster, resourceKey(def), ns, name);
      if (entry === undefined) continue;
      if (num(spec(entry.obj).replicas) !== 0) {
        const next = structuredClone(entry.obj);
        next.spec = { ...spec(next), replicas: 0 };
        this.replace(cluster, def, ns, name, next, now, { dryRun: false });
      }
      stopped.push({ kind: def.kind, namespace: ns, name, action: "scaled-to-zero" });
    }
    if (this.find(cluster, DAEMONSETS_KEY, ns, name) !== undefined) {
      this.delete(cluster, DAEMONSETS, ns, name, undefined, now, { dryRun: false, orphan: false });
      stopped.push({ kind: DAEMONSETS.kind, namespace: ns, name, action: "deleted" });
    }
    return stopped;
  }

  /** A made-up address: pods get 10.42.128.0/17 (the node addresses use the lower half), services 10.43.0.0/16. */
  private nextIp(second: number, thirdBase: number): string {
    const n = this.data.kubeIpCounter;
    this.data.kubeIpCounter += 1;
    const span = 256 - thirdBase;
    return `10.${second}.${thirdBase + (Math.floor(n / 254) % span)}.${(n % 254) + 1}`;
  }

  // ---- nodes ------------------------------------------------------------------------------------

  /** Rancher nodes of the cluster whose Kubernetes Node object exists now. */
  registeredNodes(cluster: StoredCluster, now: number): StoredNode[] {
    return this.model
      .nodesOfCluster(cluster.id)
      .filter((n) => this.model.nodeHealth(n, now).registered)
      .sort((a, b) => a.hostname.localeCompare(b.hostname, "en", { numeric: true }));
  }

  private k8sNode(cluster: StoredCluster, name: string, now: number): StoredNode {
    const node = this.registeredNodes(cluster, now).find((n) => n.hostname === name);
    if (node === undefined) throw notFound(NODES, name);
    return node;
  }

  private nodeLabels(node: StoredNode): Record<string, string> {
    if (node.kube.labels !== null) return { ...node.kube.labels };
    const labels: Record<string, string> = {
      "beta.kubernetes.io/arch": "amd64",
      "beta.kubernetes.io/os": "linux",
      "kubernetes.io/arch": "amd64",
      "kubernetes.io/hostname": node.hostname,
      "kubernetes.io/os": "linux",
    };
    if (node.controlPlane) labels["node-role.kubernetes.io/controlplane"] = "true";
    if (node.etcd) labels["node-role.kubernetes.io/etcd"] = "true";
    if (node.worker) labels["node-role.kubernetes.io/worker"] = "true";
    return labels;
  }

  private nodeAnnotations(node: StoredNode): Record<string, string> {
    if (node.kube.annotations !== null) return { ...node.kube.annotations };
    return {
      "node.alpha.kubernetes.io/ttl": "0",
      "rke.cattle.io/external-ip": node.ipAddress,
      "rke.cattle.io/internal-ip": node.ipAddress,
      "volumes.kubernetes.io/controller-managed-attach-detach": "true",
    };
  }

  /** RKE taints nodes that are not workers; the node lifecycle controller adds the node.kubernetes.io ones. */
  private nodeTaints(node: StoredNode, health: NodeHealth): Obj[] {
    let taints: Obj[];
    if (node.kube.taints !== null) {
      taints = structuredClone(node.kube.taints);
    } else {
      taints = [];
      if (!node.worker && node.controlPlane) taints.push({ key: "node-role.kubernetes.io/controlplane", value: "true", effect: "NoSchedule" });
      if (!node.worker && node.etcd) taints.push({ key: "node-role.kubernetes.io/etcd", value: "true", effect: "NoExecute" });
    }
    if (health.unschedulable) taints.push({ key: "node.kubernetes.io/unschedulable", effect: "NoSchedule", timeAdded: rfc3339(health.transitionTS) });
    if (health.ready === "False") taints.push({ key: "node.kubernetes.io/not-ready", effect: "NoSchedule", timeAdded: rfc3339(health.transitionTS) });
    if (health.ready === "Unknown") {
      taints.push({ key: "node.kubernetes.io/unreachable", effect: "NoSchedule", timeAdded: rfc3339(health.transitionTS) });
      taints.push({ key: "node.kubernetes.io/unreachable", effect: "NoExecute", timeAdded: rfc3339(health.transitionTS) });
    }
    return taints;
  }

  /** The Kubernetes Node object of a registered Rancher node, derived for `now`. */
  nodeObject(node: StoredNode, now: number): Obj {
    const health = this.model.nodeHealth(node, now);
    const version = gitVersionOf(health.kubeletVersion);
    const taints = this.nodeTaints(node, health);
    const pressure = (type: string, reason: string, message: string): Obj =>
      health.statusUnknownSince !== null
        ? {
            type,
            status: "Unknown",
            reason: "NodeStatusUnknown",
            message: "Kubelet stopped posting node status.",
            lastHeartbeatTime: rfc3339(health.heartbeatTS),
            lastTransitionTime: rfc3339(health.statusUnknownSince),
          }
        : { type, status: "False", reason, message, lastHeartbeatTime: rfc3339(health.heartbeatTS), lastTransitionTime: rfc3339(health.registeredTS) };
    const podCidr = `10.42.${node.index % 256}.0/24`;
    const nodeSpec: Obj = { podCIDR: podCidr, podCIDRs: [podCidr] };
    if (health.unschedulable) nodeSpec.unschedulable = true;
    if (taints.length > 0) nodeSpec.taints = taints;
    const machineId = createHash("sha256").update(node.uuid).digest("hex").slice(0, 32);
    return {
      apiVersion: "v1",
      kind: "Node",
      metadata: {
        name: node.hostname,
        uid: node.kube.uid,
        resourceVersion: String(node.kube.resourceVersion),
        creationTimestamp: rfc3339(health.registeredTS),
        labels: this.nodeLabels(node),
        annotations: this.nodeAnnotations(node),
      },
      spec: nodeSpec,
      status: {
        capacity: { ...NODE_CAPACITY },
        allocatable: { ...NODE_ALLOCATABLE },
        conditions: [
          pressure("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
          pressure("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
          pressure("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
          {
            type: "Ready",
            status: health.ready,
            reason: health.reason,
            message: health.message,
            lastHeartbeatTime: rfc3339(health.heartbeatTS),
            lastTransitionTime: rfc3339(health.transitionTS),
          },
        ],
        addresses: [
          { type: "InternalIP", address: node.ipAddress },
          { type: "Hostname", address: node.hostname },
        ],
        daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
        nodeInfo: {
          machineID: machineId,
          systemUUID: node.uuid,
          bootID: node.kube.uid,
          kernelVersion: "6.1.0-sim",
          osImage: "Simulated Linux",
          containerRuntimeVersion: "docker://24.0.9",
          kubeletVersion: version,
          kubeProxyVersion: version,
          operatingSystem: "linux",
          architecture: "amd64",
        },
        images: [],
      },
    };
  }

  /**
   * PUT/PATCH of a node: labels, annotations, spec.unschedulable (the same
   * flag as Rancher's cordon) and spec.taints are kept; everything else the
   * kubelet owns, so it is ignored.
   */
  private writeNode(cluster: StoredCluster, name: string, body: unknown, now: number, opts: WriteOptions & { subresource?: string }): Obj {
    const node = this.k8sNode(cluster, name, now);
    const current = this.nodeObject(node, now);
    if (!isPlainObject(body)) throw badRequest("the body of the request must be a JSON object");
    const m = isPlainObject(body.metadata) ? body.metadata : {};
    if (m.name !== undefined && m.name !== name) throw badRequest(`the name of the object (${String(m.name)}) does not match the name on the URL (${name})`);
    if (m.resourceVersion !== undefined && m.resourceVersion !== "" && m.resourceVersion !== meta(current).resourceVersion) throw conflict(NODES, name);
    if (opts.subresource === "status") return current;
    const labels = m.labels ?? {};
    const annotations = m.annotations ?? {};
    if (!isStringMap(labels)) throw invalid(NODES, name, "metadata.labels", "Invalid value: labels must be strings");
    if (!isStringMap(annotations)) throw invalid(NODES, name, "metadata.annotations", "Invalid value: annotations must be strings");
    const nodeSpec = isPlainObject(body.spec) ? body.spec : {};
    const taintsIn = nodeSpec.taints ?? [];
    if (!Array.isArray(taintsIn) || taintsIn.some((t) => !isPlainObject(t) || typeof t.key !== "string" || typeof t.effect !== "string")) {
      throw invalid(NODES, name, "spec.taints", "Invalid value: every taint needs a key and an effect");
    }
    const taints = (taintsIn as Obj[]).filter((t) => !SYSTEM_TAINT_KEYS.has(String(t.key))).map((t) => structuredClone(t));
    const unschedulable = nodeSpec.unschedulable === true;
    if (opts.dryRun) return this.nodeObject(node, now);
    node.kube.labels = { ...labels };
    node.kube.annotations = { ...annotations };
    node.kube.taints = taints;
    node.unschedulable = unschedulable;
    this.model.touchNode(node);
    return this.nodeObject(node, now);
  }

  /** DELETE of a Node object: it goes, and the kubelet registers it again (as a new object) a moment later. */
  private deleteNode(cluster: StoredCluster, name: string, now: number, opts: WriteOptions): Obj {
    const node = this.k8sNode(cluster, name, now);
    const shown = this.nodeObject(node, now);
    meta(shown).deletionTimestamp = rfc3339(now);
    if (opts.dryRun) return shown;
    node.kube = {
      uid: randomUUID(),
      registeredTS: now + Math.round(this.model.settings.nodeBootMs / 2),
      labels: null,
      annotations: null,
      taints: null,
      resourceVersion: this.model.nextResourceVersion(),
      readySinceTS: null,
    };
    node.unschedulable = false;
    meta(shown).resourceVersion = String(node.kube.resourceVersion);
    this.emit(cluster.id, NODES_KEY, "", "DELETED", shown);
    return shown;
  }

  private nodeChanged(node: StoredNode): void {
    const now = Date.now();
    if (!this.model.nodeHealth(node, now).registered) return;
    this.emit(node.clusterId, NODES_KEY, "", "MODIFIED", this.nodeObject(node, now));
  }

  // ---- pods: scheduling, kubelet, eviction ---------------------------------------------------------------

  /** Whether a pod could run on the node: Ready, schedulable (unless ignored), taints tolerated, nodeSelector met. */
  private fits(node: StoredNode, pod: Obj, now: number, ignoreCordon = false): boolean {
    const health = this.model.nodeHealth(node, now);
    if (!health.registered || health.ready !== "True") return false;
    if (health.unschedulable && !ignoreCordon) return false;
    const podSpec = spec(pod);
    const template = isPlainObject(podSpec.template) && isPlainObject(podSpec.template.spec) ? podSpec.template.spec : podSpec;
    const tolerations = (Array.isArray(template.tolerations) ? template.tolerations.filter(isPlainObject) : []) as Toleration[];
    const taints = this.nodeTaints(node, health).filter((t) => !(ignoreCordon && t.key === "node.kubernetes.io/unschedulable"));
    if (taints.some((t) => (t.effect === "NoSchedule" || t.effect === "NoExecute") && !tolerates(tolerations, t))) return false;
    const selector = isPlainObject(template.nodeSelector) ? template.nodeSelector : {};
    const labels = this.nodeLabels(node);
    return Object.entries(selector).every(([k, v]) => labels[k] === v);
  }

  private podCount(cluster: StoredCluster, hostname: string): number {
    return this.objects(cluster).filter((o) => o.key === PODS_KEY && spec(o.obj).nodeName === hostname).length;
  }

  /** The default scheduler, reduced to: a fitting node with the fewest pods, then by hostname. */
  private pickNode(cluster: StoredCluster, pod: Obj, now: number, avoid?: string): StoredNode | undefined {
    const candidates = this.registeredNodes(cluster, now).filter((n) => n.hostname !== avoid && this.fits(n, pod, now));
    candidates.sort((a, b) => this.podCount(cluster, a.hostname) - this.podCount(cluster, b.hostname));
    return candidates[0];
  }

  /** Sets a new pod's status: scheduled and running when it can be, Pending otherwise. */
  private startPod(cluster: StoredCluster, pod: Obj, now: number, avoid: string | undefined): void {
    const podSpec = spec(pod);
    pod.spec = podSpec;
    if (typeof podSpec.nodeName !== "string" || podSpec.nodeName === "") {
      delete podSpec.nodeName;
      const schedulerName = podSpec.schedulerName ?? "default-scheduler";
      const node = schedulerName === "default-scheduler" ? this.pickNode(cluster, pod, now, avoid) : undefined;
      if (node !== undefined) podSpec.nodeName = node.hostname;
    }
    podSpec.schedulerName ??= "default-scheduler";
    this.setPodStatus(cluster, pod, now);
  }

  private setPodStatus(cluster: StoredCluster, pod: Obj, now: number): void {
    const podSpec = spec(pod);
    const t = rfc3339(now);
    const nodeName = str(podSpec.nodeName);
    const node = nodeName === undefined ? undefined : this.registeredNodes(cluster, now).find((n) => n.hostname === nodeName);
    const containers = Array.isArray(podSpec.containers) ? podSpec.containers.filter(isPlainObject) : [];
    if (nodeName === undefined) {
      const total = this.registeredNodes(cluster, now).length;
      pod.status = {
        phase: "Pending",
        qosClass: "BestEffort",
        conditions: [
          {
            type: "PodScheduled",
            status: "False",
            reason: "Unschedulable",
            message: `0/${total} nodes are available: ${total} node(s) were unschedulable or did not match the pod's tolerations or node selector.`,
            lastProbeTime: null,
            lastTransitionTime: t,
          },
        ],
      };
      return;
    }
    if (node === undefined || this.model.nodeHealth(node, now).ready !== "True") {
      pod.status = { phase: "Pending", qosClass: "BestEffort", conditions: [{ type: "PodScheduled", status: "True", lastProbeTime: null, lastTransitionTime: t }] };
      return;
    }
    const podIp = this.nextIp(42, 128);
    pod.status = {
      phase: "Running",
      conditions: ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"].map((type) => ({
        type,
        status: "True",
        lastProbeTime: null,
        lastTransitionTime: t,
      })),
      hostIP: node.ipAddress,
      hostIPs: [{ ip: node.ipAddress }],
      podIP: podIp,
      podIPs: [{ ip: podIp }],
      startTime: t,
      qosClass: "BestEffort",
      containerStatuses: containers.map((c) => ({
        name: c.name,
        image: c.image,
        imageID: typeof c.image === "string" ? `${c.image}@sha256:${createHash("sha256").update(c.image).digest("hex")}` : "",
        containerID: `docker://${createHash("sha256").update(`${String(meta(pod).uid)}/${String(c.name)}`).digest("hex")}`,
        ready: true,
        started: true,
        restartCount: 0,
        state: { running: { startedAt: t } },
        lastState: {},
      })),
    };
    this.showCrashLoop(cluster, pod, now);
  }

  /** What a ReplicaSet or StatefulSet controller does when one of its pods is gone: a new one, elsewhere if possible. */
  private respawn(cluster: StoredCluster, old: Obj, avoidNode?: string): void {
    const now = Date.now();
    const oldMeta = meta(old);
    const ns = String(oldMeta.namespace ?? "");
    if (!this.namespaceExists(cluster, ns)) return;
    const taken = (n: string): boolean => this.find(cluster, PODS_KEY, ns, n) !== undefined;
    let name: string;
    if (respawningOwner(old) === "StatefulSet" && !taken(String(oldMeta.name))) {
      // StatefulSet pods keep their identity.
      name = String(oldMeta.name);
    } else {
      const base = typeof oldMeta.generateName === "string" && oldMeta.generateName !== "" ? oldMeta.generateName : `${String(oldMeta.name).replace(/-[a-z0-9]{5}$/, "")}-`;
      do name = `${base}${nameSuffix()}`;
      while (taken(name));
    }
    const newMeta: Obj = { name, namespace: ns };
    for (const field of ["generateName", "labels", "annotations", "ownerReferences"]) {
      if (oldMeta[field] !== undefined) newMeta[field] = structuredClone(oldMeta[field]);
    }
    newMeta.uid = randomUUID();
    newMeta.creationTimestamp = rfc3339(now);
    newMeta.generation = 1;
    const podSpec = structuredClone(spec(old));
    delete podSpec.nodeName;
    const pod: Obj = { apiVersion: "v1", kind: "Pod", metadata: newMeta, spec: podSpec };
    this.startPod(cluster, pod, now, avoidNode);
    newMeta.resourceVersion = String(this.model.nextResourceVersion());
    this.objects(cluster).push({ key: PODS_KEY, ns, name, obj: pod });
    this.emit(cluster.id, PODS_KEY, ns, "ADDED", pod);
  }

  private pdbsSelecting(cluster: StoredCluster, ns: string, pod: Obj): StoredKubeObject[] {
    return this.objects(cluster).filter((o) => {
      if (o.key !== PDBS_KEY || o.ns !== ns) return false;
      const reqs = requirementsOf(spec(o.obj).selector);
      return reqs !== null && matchesLabels(reqs, meta(pod).labels);
    });
  }

  /** What the disruption controller would report for a PodDisruptionBudget right now. */
  private pdbStatus(cluster: StoredCluster, pdb: Obj, now: number): Obj {
    const ns = String(meta(pdb).namespace ?? "");
    const reqs = requirementsOf(spec(pdb).selector);
    const pods = reqs === null ? [] : this.objects(cluster).filter((o) => o.key === PODS_KEY && o.ns === ns && matchesLabels(reqs, meta(o.obj).labels));
    const expected = pods.length;
    const healthy = pods.filter((p) => podIsHealthy(p.obj)).length;
    const s = spec(pdb);
    let desired = 0;
    const maxUnavailable = intOrPercent(s.maxUnavailable, expected);
    const minAvailable = intOrPercent(s.minAvailable, expected);
    if (maxUnavailable !== undefined) desired = Math.max(0, expected - maxUnavailable);
    else if (minAvailable !== undefined) desired = minAvailable;
    const allowed = Math.max(0, healthy - desired);
    return {
      observedGeneration: num(meta(pdb).generation) ?? 1,
      disruptionsAllowed: allowed,
      currentHealthy: healthy,
      desiredHealthy: desired,
      expectedPods: expected,
      conditions: [
        {
          type: "DisruptionAllowed",
          status: allowed > 0 ? "True" : "False",
          reason: allowed > 0 ? "SufficientPods" : "InsufficientPods",
          message: "",
          observedGeneration: num(meta(pdb).generation) ?? 1,
          lastTransitionTime: rfc3339(now),
        },
      ],
    };
  }

  /** `POST .../pods/<name>/eviction`: honours PodDisruptionBudgets, then deletes the pod (and its controller makes another). */
  evict(cluster: StoredCluster, ns: string, name: string, body: unknown, now: number, opts: WriteOptions): Obj {
    if (body !== undefined && !isPlainObject(body)) throw badRequest("the body of an eviction must be a policy/v1 Eviction object");
    if (isPlainObject(body)) {
      if (body.kind !== undefined && body.kind !== "Eviction") throw badRequest(`the kind in the data (${String(body.kind)}) does not match the expected kind (Eviction)`);
      const m = isPlainObject(body.metadata) ? body.metadata : {};
      if (m.name !== undefined && m.name !== name) throw badRequest(`name in URL does not match name in Eviction object`);
    }
    const entry = this.find(cluster, PODS_KEY, ns, name);
    if (entry === undefined) throw notFound(PODS, name);
    const pod = entry.obj;
    if (podIsHealthy(pod)) {
      const pdbs = this.pdbsSelecting(cluster, ns, pod);
      if (pdbs.length > 1) {
        throw new KubeError(500, "InternalError", "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.");
      }
      const pdb = pdbs[0];
      if (pdb !== undefined) {
        const status = this.pdbStatus(cluster, pdb.obj, now);
        if (Number(status.disruptionsAllowed) < 1) {
          throw new KubeError(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.", {
            causes: [
              {
                reason: "DisruptionBudget",
                message: `The disruption budget ${pdb.name} needs ${String(status.desiredHealthy)} healthy pods and has ${String(status.currentHealthy)} currently`,
              },
            ],
          });
        }
      }
    }
    if (!opts.dryRun) this.removeEntry(cluster, entry, true, str(spec(pod).nodeName));
    return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Success", code: 201 };
  }

  // ---- time passing ------------------------------------------------------------------------------

  /**
   * Runs before the Rancher model purges removed nodes: pods bound to a
   * removed node go (owned ones are made again elsewhere), and so, like
   * Kubernetes' pod GC, do pods bound to a node that does not exist.
   */
  collectPods(now: number): void {
    for (const cluster of this.data.clusters) {
      if (cluster.removedTS !== null || !Object.hasOwn(this.data.kube, cluster.id)) continue;
      const nodes = this.model.nodesOfCluster(cluster.id);
      const live = new Set(nodes.filter((n) => n.removedTS === null).map((n) => n.hostname));
      const removed = new Set(nodes.filter((n) => n.removedTS !== null && !live.has(n.hostname)).map((n) => n.hostname));
      const grace = this.model.settings.nodeMonitorGraceMs;
      for (const entry of [...this.objects(cluster)]) {
        if (entry.key !== PODS_KEY) continue;
        const nodeName = str(spec(entry.obj).nodeName);
        if (nodeName === undefined || live.has(nodeName)) continue;
        const created = Date.parse(String(meta(entry.obj).creationTimestamp ?? ""));
        if (removed.has(nodeName) || !(now < created + grace)) this.removeEntry(cluster, entry, true, nodeName);
      }
    }
  }

  /** Binds pending pods to nodes that can take them now, and starts pods whose node has become Ready. */
  schedulePods(now: number): void {
    for (const cluster of this.data.clusters) {
      if (cluster.removedTS !== null || !Object.hasOwn(this.data.kube, cluster.id)) continue;
      if (this.model.kubeUnavailable(cluster, now) !== null) continue;
      for (const entry of this.objects(cluster)) {
        if (entry.key !== PODS_KEY) continue;
        const pod = entry.obj;
        const status = isPlainObject(pod.status) ? pod.status : {};
        if (status.phase !== "Pending" || meta(pod).deletionTimestamp !== undefined) continue;
        const before = stableStringify(pod.status);
        const nodeName = str(spec(pod).nodeName);
        if (nodeName === undefined) {
          this.startPod(cluster, pod, now, undefined);
          if (str(spec(pod).nodeName) === undefined) {
            pod.status = status;
            continue;
          }
        } else {
          this.setPodStatus(cluster, pod, now);
          if ((pod.status as Obj).phase === "Pending") {
            pod.status = status;
            continue;
          }
        }
        if (stableStringify(pod.status) === before) continue;
        meta(pod).resourceVersion = String(this.model.nextResourceVersion());
        this.emit(cluster.id, PODS_KEY, entry.ns, "MODIFIED", pod);
      }
    }
  }

  /**
   * Time passing for workloads: a rollout that finished, passed its deadline or
   * began or stopped crash-looping updates its status, and running pods of
   * workloads show the `crashLoop` fault; each change is a MODIFIED event.
   */
  reconcileWorkloads(now: number): void {
    for (const cluster of this.data.clusters) {
      if (cluster.removedTS !== null || !Object.hasOwn(this.data.kube, cluster.id)) continue;
      if (this.model.kubeUnavailable(cluster, now) !== null) continue;
      for (const entry of this.objects(cluster)) {
        const obj = entry.obj;
        if (WORKLOAD_KEYS.has(entry.key)) {
          const rollout = (entry.rollout ??= { startedTS: 0, baseReady: 0, shown: "ready" });
          const status = isPlainObject(obj.status) ? obj.status : {};
          const desired = entry.key === DAEMONSETS_KEY ? (num(status.desiredNumberScheduled) ?? 0) : wantedReplicas(obj);
          if (phaseKey(this.rolloutPhase(cluster, entry.key, obj, rollout, desired, now)) === rollout.shown) continue;
          const next = this.workloadStatus(cluster, entry.key, obj, rollout, desired, now);
          obj.status = next.status;
          rollout.shown = phaseKey(next.phase);
        } else if (entry.key !== PODS_KEY || !this.showCrashLoop(cluster, obj, now)) {
          continue;
        }
        meta(obj).resourceVersion = String(this.model.nextResourceVersion());
        this.emit(cluster.id, entry.key, entry.ns, "MODIFIED", obj);
      }
    }
  }

  /**
   * When a workload's status next changes by time alone (a rollout becoming
   * ready or passing its deadline), so open watches can be woken for it.
   */
  nextWorkloadChange(now: number): number | undefined {
    let next = Infinity;
    for (const cluster of this.data.clusters) {
      if (cluster.removedTS !== null || !Object.hasOwn(this.data.kube, cluster.id)) continue;
      for (const entry of this.objects(cluster)) {
        const rollout = entry.rollout;
        if (rollout === undefined || !WORKLOAD_KEYS.has(entry.key) || rollout.shown === "ready" || rollout.shown.endsWith("/stalled")) continue;
        const at = [rollout.shown.startsWith("crashloop") ? Infinity : rollout.startedTS + this.model.settings.workloadReadyMs];
        const deadline = entry.key === DEPLOYMENTS_KEY ? num(spec(entry.obj).progressDeadlineSeconds) : undefined;
        if (deadline !== undefined) at.push(rollout.startedTS + deadline * 1000);
        for (const t of at) if (t > now && t < next) next = t;
      }
    }
    return next === Infinity ? undefined : next;
  }

  /** Whether any watch is open. */
  get watching(): boolean {
    return this.watchers.size > 0;
  }

  // ---- watch ------------------------------------------------------------------------------------------

  private emit(clusterId: string, key: string, ns: string, type: string, obj: Obj): void {
    const rv = Number(meta(obj).resourceVersion ?? this.data.kubeResourceVersion);
    const history = this.history.get(clusterId) ?? [];
    history.push({ rv, key, ns, type, obj: structuredClone(obj) });
    if (history.length > HISTORY_LIMIT) {
      const dropped = history.splice(0, history.length - HISTORY_LIMIT);
      const last = dropped[dropped.length - 1];
      if (last !== undefined) this.historyFloor.set(clusterId, last.rv);
    }
    this.history.set(clusterId, history);
    for (const w of this.watchers) {
      if (w.clusterId === clusterId && w.key === key && (w.ns === null || w.ns === ns)) this.send(w, type, obj);
    }
  }

  private send(w: Watcher, type: string, obj: Obj): void {
    const cluster = this.data.clusters.find((c) => c.id === w.clusterId);
    if (cluster === undefined) return;
    const shown = w.key === NODES_KEY ? structuredClone(obj) : this.present(cluster, w.def, obj, Date.now());
    if (!matchesLabels(w.selectors.labels, meta(shown).labels) || !matchesFields(w.selectors.fields, shown)) return;
    if (!w.res.writableEnded && !w.res.destroyed) w.res.write(`${JSON.stringify({ type, object: shown })}\n`);
  }

  /**
   * `?watch=true`: a stream of newline-separated watch events. Without a
   * resourceVersion (or "0") it starts with ADDED for every current object;
   * with one it replays the in-memory history after it, or answers 410 Expired
   * when that history does not reach back far enough (as after a restart).
   */
  watch(cluster: StoredCluster, def: ResourceDef, ns: string | null, selectors: Selectors, query: URLSearchParams, now: number): Reply {
    const key = resourceKey(def);
    const rvParam = query.get("resourceVersion") ?? "";
    const timeoutParam = Number(query.get("timeoutSeconds"));
    const timeoutMs = (Number.isFinite(timeoutParam) && timeoutParam > 0 ? timeoutParam : DEFAULT_WATCH_SECONDS) * 1000;
    const initial: Array<{ type: string; object: Obj }> = [];
    let expired = false;
    const sendInitial = query.get("sendInitialEvents") === "true";
    if (rvParam === "" || rvParam === "0" || sendInitial) {
      for (const item of this.listItems(cluster, def, ns, selectors, now)) initial.push({ type: "ADDED", object: item });
      if (sendInitial) {
        initial.push({
          type: "BOOKMARK",
          object: {
            kind: def.kind,
            apiVersion: groupVersion(def),
            metadata: { resourceVersion: String(this.data.kubeResourceVersion), annotations: { "k8s.io/initial-events-end": "true" } },
          },
        });
      }
    } else {
      const from = Number(rvParam);
      const floor = this.historyFloor.get(cluster.id) ?? this.globalFloor;
      if (!Number.isInteger(from) || from < floor) {
        expired = true;
      } else {
        for (const ev of this.history.get(cluster.id) ?? []) {
          if (ev.rv > from && ev.key === key && (ns === null || ev.ns === ns)) initial.push({ type: ev.type, object: ev.obj });
        }
      }
    }
    return {
      status: 200,
      body: null,
      stream: (res) => {
        res.statusCode = 200;
        res.setHeader("content-type", "application/json");
        res.setHeader("cache-control", "no-cache, private");
        res.setHeader("transfer-encoding", "chunked");
        res.flushHeaders();
        if (expired) {
          const status = { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: `too old resource version: ${rvParam} (${this.data.kubeResourceVersion})`, reason: "Expired", code: 410 };
          res.end(`${JSON.stringify({ type: "ERROR", object: status })}\n`);
          return;
        }
        const watcher: Watcher = {
          clusterId: cluster.id,
          key,
          def,
          ns,
          selectors,
          res,
          timer: setTimeout(() => this.endWatch(watcher), timeoutMs),
        };
        watcher.timer.unref();
        this.watchers.add(watcher);
        res.on("close", () => this.endWatch(watcher));
        for (const ev of initial) this.send(watcher, ev.type, ev.object);
      },
    };
  }

  private endWatch(w: Watcher): void {
    clearTimeout(w.timer);
    this.watchers.delete(w);
    if (!w.res.writableEnded) w.res.end();
  }

  /** Ends the cluster's watches (its API went away, or its objects were replaced by a restore). */
  closeWatches(clusterId: string, forgetHistory: boolean): void {
    for (const w of [...this.watchers]) if (w.clusterId === clusterId) this.endWatch(w);
    if (forgetHistory) {
      this.history.delete(clusterId);
      this.historyFloor.set(clusterId, this.data.kubeResourceVersion);
    }
  }

  closeAll(): void {
    for (const w of [...this.watchers]) this.endWatch(w);
    this.history.clear();
    this.historyFloor.clear();
    this.globalFloor = this.data.kubeResourceVersion;
  }
}
