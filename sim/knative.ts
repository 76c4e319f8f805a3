/**
 * Knative Serving on a simulated cluster: the controllers that turn a
 * `serving.knative.dev/v1` Service into a Configuration, Revisions and a
 * Route, the statuses Knative reports for them, and the gateway (ingress +
 * activator) that sends a request to the process of the revision traffic
 * points at.
 *
 * Each needed Revision runs as one real local process (knative-runtime.ts),
 * pulled from a real OCI registry; its status follows that process. One
 * process per revision, whatever `min-scale`/`max-scale` say.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { isPlainObject, KubeError, NormanError, rfc3339 } from "./http.js";
import { STATIC_RESOURCES, type ResourceDef } from "./kube-resources.js";
import { DNS_SUBDOMAIN_RE, isStringMap, stableStringify } from "./kube-util.js";
import type { KubeApi, KubeController } from "./kube.js";
import { KnativeRuntime, type RevisionRun, type RunnerView } from "./knative-runtime.js";
import type { RancherModel } from "./model.js";
import { parseImageRef } from "./oci.js";
import type { StoredCluster, StoredKubeObject } from "./state.js";

type Obj = Record<string, unknown>;

const GROUP = "serving.knative.dev";
const API_VERSION = `${GROUP}/v1`;
const knativeDef = (plural: string): ResourceDef => STATIC_RESOURCES.find((d) => d.group === GROUP && d.plural === plural) as ResourceDef;
const SERVICES = knativeDef("services");
const CONFIGURATIONS = knativeDef("configurations");
const ROUTES = knativeDef("routes");
const REVISIONS = knativeDef("revisions");
const SERVICES_KEY = `${GROUP}/services`;
const CONFIGURATIONS_KEY = `${GROUP}/configurations`;
const ROUTES_KEY = `${GROUP}/routes`;
const REVISIONS_KEY = `${GROUP}/revisions`;
const KNATIVE_KEYS = new Set([SERVICES_KEY, CONFIGURATIONS_KEY, ROUTES_KEY, REVISIONS_KEY]);

const L_SERVICE = "serving.knative.dev/service";
const L_SERVICE_UID = "serving.knative.dev/serviceUID";
const L_CONFIGURATION = "serving.knative.dev/configuration";
const L_CONFIGURATION_UID = "serving.knative.dev/configurationUID";
const L_CONFIGURATION_GENERATION = "serving.knative.dev/configurationGeneration";
const A_PROGRESS_DEADLINE = "serving.knative.dev/progress-deadline";
const DEFAULT_TIMEOUT_SECONDS = 300;
/** The gateway waits this much longer than a revision's timeoutSeconds before it answers 504. */
const GATEWAY_GRACE_MS = 3000;
const TERMINAL_REASONS = /^(ExitCode\d+|ProgressDeadlineExceeded|CreateContainerConfigError|CreateContainerError)$/;
const TAG_HEADER = "knative-serving-tag";

function meta(obj: Obj): Obj {
  return isPlainObject(obj.metadata) ? obj.metadata : {};
}

function spec(obj: Obj): Obj {
  return isPlainObject(obj.spec) ? obj.spec : {};
}

function statusOf(obj: Obj): Obj {
  return isPlainObject(obj.status) ? obj.status : {};
}

function str(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function labelsOf(obj: Obj): Record<string, string> {
  const labels = meta(obj).labels;
  return isStringMap(labels) ? labels : {};
}

function ownedBy(obj: Obj, uid: string): boolean {
  const refs = meta(obj).ownerReferences;
  return Array.isArray(refs) && refs.some((r) => isPlainObject(r) && r.uid === uid);
}

function generationOf(obj: Obj): number {
  const g = meta(obj).generation;
  return typeof g === "number" && Number.isFinite(g) ? g : 1;
}

function revisionGeneration(rev: Obj): number {
  const value = Number(labelsOf(rev)[L_CONFIGURATION_GENERATION]);
  return Number.isInteger(value) ? value : 0;
}

/** A Go duration such as `90s`, `5m`, `1h30m`, `500ms`; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const trimmed = text.trim();
  if (trimmed === "" || trimmed === "0") return trimmed === "0" ? 0 : undefined;
  let total = 0;
  let rest = trimmed;
  while (rest !== "") {
    const m = /^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/.exec(rest);
    if (m === null) return undefined;
    total += Number(m[1]) * (units[m[2] ?? "s"] ?? 1000);
    rest = rest.slice(m[0].length);
  }
  return Math.round(total);
}

interface Condition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason?: string;
  message?: string;
  severity?: string;
}

function cond(type: string, status: Condition["status"], reason?: string, message?: string): Condition {
  const c: Condition = { type, status };
  if (reason !== undefined && reason !== "") c.reason = reason;
  if (message !== undefined && message !== "") c.message = message;
  return c;
}

function conditionIn(status: Obj, type: string): Obj | undefined {
  const list = Array.isArray(status.conditions) ? status.conditions.filter(isPlainObject) : [];
  return list.find((c) => c.type === type);
}

/** Conditions sorted by type as Knative does, with `lastTransitionTime` kept while a condition's status stays. */
function stamped(conditions: Condition[], previous: Obj, now: number): Obj[] {
  return [...conditions]
    .sort((a, b) => a.type.localeCompare(b.type))
    .map((c) => {
      const prev = conditionIn(previous, c.type);
      const at = prev !== undefined && prev.status === c.status && typeof prev.lastTransitionTime === "string" ? prev.lastTransitionTime : rfc3339(now);
      return { ...c, lastTransitionTime: at };
    });
}

/** The Ready condition over its dependents: the first False, else the first Unknown, else True. */
function readyOver(type: string, dependents: Condition[]): Condition {
  const failed = dependents.find((c) => c.status === "False");
  if (failed !== undefined) return cond(type, "False", failed.reason, failed.message);
  const unknown = dependents.find((c) => c.status === "Unknown");
  if (unknown !== undefined) return cond(type, "Unknown", unknown.reason, unknown.message);
  return cond(type, "True");
}

function condFrom(previous: Obj, type: string): Condition | undefined {
  const c = conditionIn(previous, type);
  if (c === undefined || (c.status !== "True" && c.status !== "False" && c.status !== "Unknown")) return undefined;
  return cond(type, c.status, str(c.reason), str(c.message));
}

/** A revision's stored status shows it failed for good (before it was ever ready): it is not started again after a restart. */
function terminallyFailed(status: Obj): boolean {
  const ready = conditionIn(status, "Ready");
  const resources = conditionIn(status, "ResourcesAvailable");
  return ready?.status === "False" && resources?.status !== "True" && TERMINAL_REASONS.test(String(ready.reason ?? ""));
}

/** An image the simulator does not run: a Docker Hub short name (`fn:1`, `nginx`), which it never pulls. */
export function placeholderImage(image: string): boolean {
  return parseImageRef(image)?.dockerHub === true;
}

/** The container that serves: the one with ports, else the first. */
function servingContainer(revSpec: Obj): Obj | undefined {
  const containers = Array.isArray(revSpec.containers) ? revSpec.containers.filter(isPlainObject) : [];
  return containers.find((c) => Array.isArray(c.ports) && c.ports.length > 0) ?? containers[0];
}

function stringList(value: unknown): string[] | null {
  return Array.isArray(value) && value.every((v) => typeof v === "string") ? (value as string[]) : null;
}

interface RevisionPlan {
  entry: StoredKubeObject;
  generation: number;
  view: RunnerView | undefined;
  placeholder: boolean;
  resources: Condition;
  container: Condition;
  ready: Condition;
}

interface ServicePlan {
  svc: StoredKubeObject;
  cfg: StoredKubeObject | undefined;
  route: StoredKubeObject | undefined;
  revisions: RevisionPlan[];
  latestCreated: RevisionPlan | undefined;
  latestReady: RevisionPlan | undefined;
  /** Revision names that must run: latest created, latest ready, every traffic target. */
  needed: Set<string>;
  url: string;
}

export interface KnativeOptions {
  /** The gateway's base URL for a host name (the one a client used), or the listener's own when null. */
  gatewayBase: (hostname: string | null) => string;
  /** Asks for a reconcile soon (statuses catch up with processes). */
  kick: () => void;
}

export class Knative implements KubeController {
  /** The host name of the client whose request is being handled (set around Kubernetes writes). */
  requestHost: string | null = null;
  /** The Service a client is writing right now: its URL takes the client's host name. */
  private written: StoredKubeObject | null = null;
  /** Why a Service's Configuration, Route or Revision could not be written, by Service uid. */
  private readonly creationFailures = new Map<string, string>();

  constructor(
    private readonly model: RancherModel,
    private readonly kube: KubeApi,
    readonly runtime: KnativeRuntime,
    private readonly opts: KnativeOptions,
  ) {}

  // ---- admission (the webhooks) ----------------------------------------------------------------

  /** The validating and defaulting webhooks, run before the API server compares generations. */
  defaults(key: string, obj: Obj): void {
    if (key === SERVICES_KEY) this.admitService(obj);
  }

  admit(_cluster: StoredCluster, key: string, obj: Obj): void {
    if (!KNATIVE_KEYS.has(key) || key === SERVICES_KEY) return;
    // Configurations, Routes and Revisions made directly (not for a Service) are stored, not run: shown Ready.
    if (labelsOf(obj)[L_SERVICE] === undefined && labelsOf(obj)[L_CONFIGURATION] === undefined && obj.status === undefined) {
      obj.status = { observedGeneration: generationOf(obj), conditions: [{ type: "Ready", status: "True", lastTransitionTime: rfc3339(Date.now()) }] };
    }
  }

  private admitService(obj: Obj): void {
    const denied = (detail: string): KubeError =>
      new KubeError(400, "BadRequest", `admission webhook "validation.webhook.serving.knative.dev" denied the request: validation failed: ${detail}`);
    const s = spec(obj);
    if (!isPlainObject(s.template)) throw denied("missing field(s): spec.template");
    const template = s.template;
    const tspec: Obj = isPlainObject(template.spec) ? template.spec : {};
    const containers = Array.isArray(tspec.containers) ? tspec.containers : [];
    if (containers.length === 0) throw denied("missing field(s): spec.template.spec.containers");
    for (const [i, c] of containers.entries()) {
      if (!isPlainObject(c)) throw denied(`expected an object: spec.template.spec.containers[${i}]`);
      if (typeof c.image !== "string" || c.image.trim() === "") throw denied(`missing field(s): spec.template.spec.containers[${i}].image`);
      for (const field of ["command", "args"]) {
        if (c[field] !== undefined && stringList(c[field]) === null) throw denied(`expected a list of strings: spec.template.spec.containers[${i}].${field}`);
      }
    }
    for (const field of ["containerConcurrency", "timeoutSeconds"]) {
      const v = tspec[field];
      if (v !== undefined && (typeof v !== "number" || !Number.isInteger(v) || v < 0)) throw denied(`expected a non-negative integer: spec.template.spec.${field}`);
    }
    const name = str(meta(obj).name) ?? "";
    const templateName = isPlainObject(template.metadata) ? template.metadata.name : undefined;
    if (templateName !== undefined && templateName !== "") {
      if (typeof templateName !== "string" || !DNS_SUBDOMAIN_RE.test(templateName) || templateName.length > 63) throw denied(`invalid value: ${String(templateName)}: spec.template.metadata.name`);
      if (name !== "" && !templateName.startsWith(`${name}-`)) throw denied(`invalid value: ${templateName}: spec.template.metadata.name (it must have the prefix "${name}-")`);
    }
    const annotations = isPlainObject(template.metadata) ? template.metadata.annotations : undefined;
    const deadline = isStringMap(annotations) ? annotations[A_PROGRESS_DEADLINE] : undefined;
    if (deadline !== undefined && parseDuration(deadline) === undefined) throw denied(`invalid value: ${deadline}: spec.template.metadata.annotations.${A_PROGRESS_DEADLINE}`);
    if (s.traffic !== undefined) {
      if (!Array.isArray(s.traffic) || !s.traffic.every(isPlainObject)) throw denied("expected a list of traffic targets: spec.traffic");
      let sum = 0;
      for (const [i, t] of (s.traffic as Obj[]).entries()) {
        const percent = t.percent ?? 0;
        if (typeof percent !== "number" || !Number.isInteger(percent) || percent < 0 || percent > 100) throw denied(`expected 0 <= ${String(percent)} <= 100: spec.traffic[${i}].percent`);
        sum += percent;
        const named = typeof t.revisionName === "string" && t.revisionName !== "";
        if (named && t.latestRevision === true) throw denied(`may not set revisionName with latestRevision: spec.traffic[${i}]`);
        if (!named && t.latestRevision === false) throw denied(`missing field(s): spec.traffic[${i}].revisionName`);
      }
      if (s.traffic.length > 0 && sum !== 100) throw denied(`Traffic targets sum to ${sum}, want 100: spec.traffic`);
    }
    // The defaulting webhook.
    tspec.containerConcurrency ??= 0;
    tspec.timeoutSeconds ??= DEFAULT_TIMEOUT_SECONDS;
    const first = containers[0] as Obj;
    if (containers.length === 1) first.name ??= "user-container";
    template.spec = tspec;
    if (s.traffic === undefined || (Array.isArray(s.traffic) && s.traffic.length === 0)) s.traffic = [{ latestRevision: true, percent: 100 }];
    else for (const t of s.traffic as Obj[]) if (t.revisionName === undefined) t.latestRevision ??= true;
    obj.spec = s;
  }

  afterWrite(cluster: StoredCluster, entry: StoredKubeObject, now: number): void {
    if (entry.key !== SERVICES_KEY) return;
    this.written = entry;
    try {
      this.syncCluster(cluster, now);
    } finally {
      this.written = null;
    }
  }

  removed(_cluster: StoredCluster, entry: StoredKubeObject): void {
    if (!KNATIVE_KEYS.has(entry.key)) return;
    if (entry.key === SERVICES_KEY) this.creationFailures.delete(str(meta(entry.obj).uid) ?? "");
    this.opts.kick();
  }

  // ---- reconcile -----------------------------------------------------------------------------

  /** Time passing: statuses catch up with the processes, processes with what is needed; gone clusters stop theirs. */
  reconcile(now: number): void {
    const live = new Set<string>();
    for (const cluster of this.model.data.clusters) {
      if (cluster.removedTS !== null) continue;
      live.add(cluster.id);
      if (!Object.hasOwn(this.model.data.kube, cluster.id)) continue;
      // A cluster whose API is down keeps its processes as they are, and its statuses.
      if (this.model.kubeUnavailable(cluster, now) !== null) continue;
      try {
        this.syncCluster(cluster, now);
      } catch (err) {
        // Requests must not fail because a function's controller stumbled; the next reconcile tries again.
        console.error(`rancher simulator: reconciling Knative in cluster ${cluster.id} failed:`, err);
      }
    }
    try {
      this.runtime.keepClusters(live);
    } catch (err) {
      console.error("rancher simulator: stopping the revisions of removed clusters failed:", err);
    }
  }

  private syncCluster(cluster: StoredCluster, now: number): void {
    const services = this.kube.objects(cluster).filter((o) => o.key === SERVICES_KEY);
    for (const svc of services) {
      const uid = str(meta(svc.obj).uid) ?? "";
      try {
        this.ensureChildren(cluster, svc, now);
        this.creationFailures.delete(uid);
      } catch (err) {
        if (!(err instanceof KubeError)) throw err;
        // As Knative's Configuration reports a Revision it could not create.
        this.creationFailures.set(uid, err.message);
      }
    }
    const wanted: RevisionRun[] = [];
    for (const svc of services) {
      const plan = this.plan(cluster, svc);
      for (const rev of plan.revisions) {
        if (!plan.needed.has(rev.entry.name) || rev.placeholder) continue;
        // After a restart, a revision that had failed for good stays failed.
        if (rev.view === undefined && terminallyFailed(statusOf(rev.entry.obj))) continue;
        wanted.push(this.runSpec(cluster, rev.entry, plan.svc.name));
      }
    }
    const existing = new Set(this.kube.objects(cluster).filter((o) => o.key === REVISIONS_KEY).map((o) => `${o.ns}/${o.name}`));
    this.runtime.sync(cluster.id, wanted, existing);
    for (const svc of this.kube.objects(cluster).filter((o) => o.key === SERVICES_KEY)) this.writeStatuses(cluster, this.plan(cluster, svc), now);
  }

  private find(cluster: StoredCluster, key: string, ns: string, name: string): StoredKubeObject | undefined {
    return this.kube.objects(cluster).find((o) => o.key === key && o.ns === ns && o.name === name);
  }

  /** The Service controller and the Configuration controller: a Configuration and a Route for the Service, a Revision for each template. */
  private ensureChildren(cluster: StoredCluster, svc: StoredKubeObject, now: number): void {
    const uid = str(meta(svc.obj).uid);
    if (uid === undefined) return;
    const ns = svc.ns;
    const name = svc.name;
    const s = spec(svc.obj);
    const template: Obj = isPlainObject(s.template) ? s.template : {};
    const ownerRef = { apiVersion: API_VERSION, kind: "Service", name, uid, controller: true, blockOwnerDeletion: true };
    const svcLabels = labelsOf(svc.obj);
    const childLabels = { ...svcLabels, [L_SERVICE]: name, [L_SERVICE_UID]: uid };
    const write = (def: ResourceDef, key: string, childSpec: Obj): StoredKubeObject | undefined => {
      const current = this.find(cluster, key, ns, name);
      if (current === undefined) {
        this.kube.create(cluster, def, ns, { apiVersion: API_VERSION, kind: def.kind, metadata: { name, namespace: ns, labels: childLabels, ownerReferences: [ownerRef] }, spec: childSpec }, now, { dryRun: false });
        return this.find(cluster, key, ns, name);
      }
      if (!ownedBy(current.obj, uid)) return undefined;
      const sameSpec = stableStringify(current.obj.spec ?? null) === stableStringify(childSpec);
      const sameLabels = stableStringify(labelsOf(current.obj)) === stableStringify(childLabels);
      if (!sameSpec || !sameLabels) {
        const next = structuredClone(current.obj);
        next.spec = childSpec;
        (next.metadata as Obj).labels = childLabels;
        this.kube.replace(cluster, def, ns, name, next, now, { dryRun: false });
      }
      return this.find(cluster, key, ns, name);
    };
    const cfg = write(CONFIGURATIONS, CONFIGURATIONS_KEY, { template: structuredClone(template) });
    write(ROUTES, ROUTES_KEY, { traffic: structuredClone(Array.isArray(s.traffic) ? s.traffic : [{ latestRevision: true, percent: 100 }]) });
    if (cfg === undefined) return;
    const cfgUid = str(meta(cfg.obj).uid) ?? "";
    const generation = generationOf(cfg.obj);
    const revName = this.revisionNameFor(cfg);
    if (this.find(cluster, REVISIONS_KEY, ns, revName) !== undefined) return;
    const tm = isPlainObject(template.metadata) ? template.metadata : {};
    const revSpec: Obj = isPlainObject(template.spec) ? structuredClone(template.spec) : {};
    revSpec.containerConcurrency ??= 0;
    revSpec.timeoutSeconds ??= DEFAULT_TIMEOUT_SECONDS;
    this.kube.create(
      cluster,
      REVISIONS,
      ns,
      {
        apiVersion: API_VERSION,
        kind: "Revision",
        metadata: {
          name: revName,
          namespace: ns,
          labels: {
            ...(isStringMap(tm.labels) ? tm.labels : {}),
            [L_CONFIGURATION]: name,
            [L_CONFIGURATION_GENERATION]: String(generation),
            [L_CONFIGURATION_UID]: cfgUid,
            [L_SERVICE]: name,
            [L_SERVICE_UID]: uid,
          },
          annotations: { ...(isStringMap(tm.annotations) ? tm.annotations : {}) },
          ownerReferences: [{ apiVersion: API_VERSION, kind: "Configuration", name, uid: cfgUid, controller: true, blockOwnerDeletion: true }],
        },
        spec: revSpec,
      },
      now,
      { dryRun: false },
    );
  }

  /** `<configuration>-<5-digit generation>`, or the template's own name. */
  private revisionNameFor(cfg: StoredKubeObject): string {
    const template = spec(cfg.obj).template;
    const given = isPlainObject(template) && isPlainObject(template.metadata) ? str(template.metadata.name) : undefined;
    return given !== undefined && given !== "" ? given : `${cfg.name}-${String(generationOf(cfg.obj)).padStart(5, "0")}`;
  }

  private gatewayUrl(cluster: StoredCluster, svc: StoredKubeObject): string {
    let hostname = this.written === svc ? this.requestHost : null;
    if (hostname === null) {
      const previous = str(statusOf(svc.obj).url);
      try {
        hostname = previous !== undefined ? new URL(previous).hostname : null;
      } catch {
        hostname = null;
      }
    }
    const path = `/knative/clusters/${encodeURIComponent(cluster.id)}/namespaces/${encodeURIComponent(svc.ns)}/services/${encodeURIComponent(svc.name)}`;
    return `${this.opts.gatewayBase(hostname)}${path}`;
  }

  /** What the revisions' processes mean for each object's status, and which revisions must run. */
  private plan(cluster: StoredCluster, svc: StoredKubeObject): ServicePlan {
    const uid = str(meta(svc.obj).uid) ?? "";
    const cfgEntry = this.find(cluster, CONFIGURATIONS_KEY, svc.ns, svc.name);
    const routeEntry = this.find(cluster, ROUTES_KEY, svc.ns, svc.name);
    const cfg = cfgEntry !== undefined && ownedBy(cfgEntry.obj, uid) ? cfgEntry : undefined;
    const route = routeEntry !== undefined && ownedBy(routeEntry.obj, uid) ? routeEntry : undefined;
    const cfgUid = cfg === undefined ? undefined : str(meta(cfg.obj).uid);
    const revisions: RevisionPlan[] = [];
    if (cfgUid !== undefined) {
      for (const entry of this.kube.objects(cluster)) {
        if (entry.key !== REVISIONS_KEY || entry.ns !== svc.ns || !ownedBy(entry.obj, cfgUid)) continue;
        revisions.push(this.revisionPlan(cluster, entry));
      }
    }
    revisions.sort((a, b) => a.generation - b.generation || a.entry.name.localeCompare(b.entry.name));
    const wantedName = cfg === undefined ? undefined : this.revisionNameFor(cfg);
    const latestCreated = revisions.find((r) => r.entry.name === wantedName) ?? revisions[revisions.length - 1];
    // As Knative's Configuration: the latest created revision becomes the latest ready one once it is ready;
    // until then the latest ready one stays (even if it crashed since), so traffic stays with it.
    const storedReady = cfg === undefined ? undefined : str(statusOf(cfg.obj).latestReadyRevisionName);
    let latestReady: RevisionPlan | undefined;
    if (latestCreated?.ready.status === "True") latestReady = latestCreated;
    else latestReady = revisions.find((r) => r.entry.name === storedReady) ?? revisions.filter((r) => r.ready.status === "True").pop();
    const needed = new Set<string>();
    if (latestCreated !== undefined) needed.add(latestCreated.entry.name);
    if (latestReady !== undefined) needed.add(latestReady.entry.name);
    const resolved = this.resolveTraffic(svc, revisions, latestCreated, latestReady).targets;
    for (const t of resolved) if (t.revision !== undefined) needed.add(t.revision.entry.name);
    if (resolved.some((t) => t.problem !== undefined) && route !== undefined) {
      // Traffic stays where it was until every target can be routed, so those revisions keep running.
      const previous = statusOf(route.obj).traffic;
      for (const t of Array.isArray(previous) ? previous.filter(isPlainObject) : []) {
        if (typeof t.revisionName === "string" && revisions.some((r) => r.entry.name === t.revisionName)) needed.add(t.revisionName);
      }
    }
    return { svc, cfg, route, revisions, latestCreated, latestReady, needed, url: this.gatewayUrl(cluster, svc) };
  }

  private revisionPlan(cluster: StoredCluster, entry: StoredKubeObject): RevisionPlan {
    const previous = statusOf(entry.obj);
    const view = this.runtime.view(cluster.id, entry.ns, entry.name, str(meta(entry.obj).uid));
    const container = servingContainer(spec(entry.obj));
    const image = str(container?.image) ?? "";
    const placeholder = placeholderImage(image);
    let resources: Condition;
    let health: Condition;
    const deploying = (type: string): Condition => cond(type, "Unknown", "Deploying");
    if (placeholder) {
      resources = cond("ResourcesAvailable", "True");
      health = cond("ContainerHealthy", "True");
    } else if (view === undefined) {
      resources = condFrom(previous, "ResourcesAvailable") ?? deploying("ResourcesAvailable");
      health = condFrom(previous, "ContainerHealthy") ?? deploying("ContainerHealthy");
    } else if (view.failure !== null) {
      const failed = cond(view.failure.condition, "False", view.failure.reason, view.failure.message);
      const other = view.failure.condition === "ContainerHealthy" ? "ResourcesAvailable" : "ContainerHealthy";
      const otherCond = view.everReady ? cond(other, "True") : deploying(other);
      resources = failed.type === "ResourcesAvailable" ? failed : otherCond;
      health = failed.type === "ContainerHealthy" ? failed : otherCond;
    } else if (view.ready) {
      resources = cond("ResourcesAvailable", "True");
      health = cond("ContainerHealthy", "True");
    } else if (conditionIn(previous, "Ready")?.status === "True" && view.restarts === 0) {
      // Being activated again (traffic came back, or the simulator restarted): it stays Ready meanwhile.
      resources = cond("ResourcesAvailable", "True");
      health = cond("ContainerHealthy", "True");
    } else {
      resources = deploying("ResourcesAvailable");
      health = deploying("ContainerHealthy");
    }
    const ready = readyOver("Ready", view?.failure?.condition === "ContainerHealthy" ? [health, resources] : [resources, health]);
    return { entry, generation: revisionGeneration(entry.obj), view, placeholder, resources, container: health, ready };
  }

  /** The Route's traffic targets resolved to revisions (latestRevision → the latest ready one). */
  private resolveTraffic(
    svc: StoredKubeObject,
    revisions: RevisionPlan[],
    latestCreated: RevisionPlan | undefined,
    latestReady: RevisionPlan | undefined,
  ): { targets: Array<{ target: Obj; revision: RevisionPlan | undefined; problem: Condition | undefined }> } {
    const traffic = Array.isArray(spec(svc.obj).traffic) ? (spec(svc.obj).traffic as unknown[]).filter(isPlainObject) : [];
    const list = traffic.length > 0 ? traffic : [{ latestRevision: true, percent: 100 }];
    return {
      targets: list.map((target) => {
        const named = str(target.revisionName);
        if (named !== undefined && named !== "") {
          const revision = revisions.find((r) => r.entry.name === named);
          if (revision === undefined) return { target, revision, problem: cond("AllTrafficAssigned", "False", "RevisionMissing", `Revision "${named}" referenced in traffic not found.`) };
          if (revision.ready.status === "False") return { target, revision, problem: cond("AllTrafficAssigned", "False", "RevisionMissing", `Revision "${named}" failed to become ready.`) };
          if (revision.ready.status === "Unknown") return { target, revision, problem: cond("AllTrafficAssigned", "Unknown", "RevisionMissing", `Revision "${named}" is not yet ready.`) };
          return { target, revision, problem: undefined };
        }
        if (latestReady === undefined) {
          const failed = latestCreated?.ready.status === "False";
          return {
            target,
            revision: undefined,
            problem: failed
              ? cond("AllTrafficAssigned", "False", "RevisionMissing", `Configuration "${svc.name}" does not have any ready Revision.`)
              : cond("AllTrafficAssigned", "Unknown", "RevisionMissing", `Configuration "${svc.name}" is waiting for a Revision to become ready.`),
          };
        }
        return { target, revision: latestReady, problem: undefined };
      }),
    };
  }

  private writeStatus(cluster: StoredCluster, def: ResourceDef, entry: StoredKubeObject, status: Obj, now: number): void {
    if (stableStringify(entry.obj.status ?? null) === stableStringify(status)) return;
    const next = structuredClone(entry.obj);
    next.status = status;
    this.kube.replace(cluster, def, entry.ns, entry.name, next, now, { dryRun: false, subresource: "status" });
  }

  private writeStatuses(cluster: StoredCluster, plan: ServicePlan, now: number): void {
    const { svc, cfg, route, revisions, latestCreated, latestReady, needed, url } = plan;
    // Revisions.
    for (const rev of revisions) {
      const previous = statusOf(rev.entry.obj);
      const isNeeded = needed.has(rev.entry.name);
      const running = rev.view !== undefined && rev.view.ready;
      const active = rev.placeholder
        ? isNeeded
          ? cond("Active", "True")
          : cond("Active", "False", "NoTraffic", "The target is not receiving traffic.")
        : !isNeeded
          ? cond("Active", "False", "NoTraffic", "The target is not receiving traffic.")
          : running
            ? cond("Active", "True")
            : cond("Active", "Unknown", "Activating", "The target is being activated.");
      active.severity = "Info";
      const status: Obj = {
        observedGeneration: generationOf(rev.entry.obj),
        conditions: stamped([active, rev.container, rev.ready, rev.resources], previous, now),
        actualReplicas: running ? 1 : 0,
        desiredReplicas: isNeeded && !rev.placeholder ? 1 : 0,
      };
      const container = servingContainer(spec(rev.entry.obj));
      const ref = parseImageRef(str(container?.image) ?? "");
      const digest = rev.view?.imageDigest ?? null;
      const previousStatuses = Array.isArray(previous.containerStatuses) ? previous.containerStatuses : undefined;
      if (digest !== null && ref !== undefined) {
        status.containerStatuses = [{ name: str(container?.name) ?? "user-container", imageDigest: `${ref.registry}/${ref.repository}@${digest}` }];
      } else if (previousStatuses !== undefined) {
        status.containerStatuses = previousStatuses;
      }
      this.writeStatus(cluster, REVISIONS, rev.entry, status, now);
    }

    // The Configuration.
    let configurationsReady: Condition;
    const creationFailure = this.creationFailures.get(str(meta(svc.obj).uid) ?? "");
    if (creationFailure !== undefined) {
      configurationsReady = cond("ConfigurationsReady", "False", "RevisionFailed", `Revision creation failed with message: ${creationFailure}.`);
    } else if (cfg === undefined) {
      configurationsReady = cond("ConfigurationsReady", "False", "NotOwned", `There is an existing Configuration "${svc.name}" that we do not own.`);
    } else if (latestCreated === undefined) {
      configurationsReady = cond("ConfigurationsReady", "Unknown", "Deploying");
    } else if (latestCreated.ready.status === "True") {
      configurationsReady = cond("ConfigurationsReady", "True");
    } else if (latestCreated.ready.status === "False") {
      configurationsReady = cond("ConfigurationsReady", "False", "RevisionFailed", `Revision "${latestCreated.entry.name}" failed with message: ${latestCreated.ready.message ?? ""}.`);
    } else {
      configurationsReady = cond("ConfigurationsReady", "Unknown", latestCreated.ready.reason, latestCreated.ready.message);
    }
    if (cfg !== undefined) {
      const cfgStatus: Obj = { observedGeneration: generationOf(cfg.obj), conditions: stamped([{ ...configurationsReady, type: "Ready" }], statusOf(cfg.obj), now) };
      if (latestCreated !== undefined) cfgStatus.latestCreatedRevisionName = latestCreated.entry.name;
      if (latestReady !== undefined) cfgStatus.latestReadyRevisionName = latestReady.entry.name;
      this.writeStatus(cluster, CONFIGURATIONS, cfg, cfgStatus, now);
    }

    // The Route.
    const resolved = this.resolveTraffic(svc, revisions, latestCreated, latestReady).targets;
    const problem = resolved.find((t) => t.problem?.status === "False")?.problem ?? resolved.find((t) => t.problem !== undefined)?.problem;
    let traffic: Obj[] | undefined;
    if (problem === undefined) {
      traffic = resolved.map(({ target, revision }) => {
        const out: Obj = {};
        if (typeof target.tag === "string" && target.tag !== "") out.tag = target.tag;
        out.revisionName = revision?.entry.name;
        out.latestRevision = !(typeof target.revisionName === "string" && target.revisionName !== "");
        out.percent = typeof target.percent === "number" ? target.percent : 0;
        return out;
      });
    } else {
      // Until every target can be routed, traffic stays where it was.
      const previous = route === undefined ? undefined : statusOf(route.obj).traffic;
      traffic = Array.isArray(previous) ? (structuredClone(previous) as Obj[]) : undefined;
    }
    let routesReady: Condition;
    if (route === undefined) routesReady = cond("RoutesReady", "False", "NotOwned", `There is an existing Route "${svc.name}" that we do not own.`);
    else routesReady = problem === undefined ? cond("RoutesReady", "True") : { ...problem, type: "RoutesReady" };
    const address = `http://${svc.name}.${svc.ns}.svc.cluster.local`;
    if (route !== undefined) {
      const allAssigned = problem === undefined ? cond("AllTrafficAssigned", "True") : problem;
      const ingress = problem === undefined ? cond("IngressReady", "True") : cond("IngressReady", "Unknown", "Uninitialized", "Waiting for load balancer to be ready");
      const routeStatus: Obj = {
        observedGeneration: generationOf(route.obj),
        conditions: stamped([allAssigned, ingress, readyOver("Ready", [allAssigned, ingress])], statusOf(route.obj), now),
        url,
        address: { url: address },
      };
      if (traffic !== undefined) routeStatus.traffic = traffic;
      this.writeStatus(cluster, ROUTES, route, routeStatus, now);
    }

    // The Service.
    const ready = readyOver("Ready", [configurationsReady, routesReady]);
    const svcStatus: Obj = {
      observedGeneration: generationOf(svc.obj),
      conditions: stamped([configurationsReady, ready, routesReady], statusOf(svc.obj), now),
      url,
      address: { url: address },
    };
    if (latestCreated !== undefined) svcStatus.latestCreatedRevisionName = latestCreated.entry.name;
    if (latestReady !== undefined) svcStatus.latestReadyRevisionName = latestReady.entry.name;
    if (traffic !== undefined) svcStatus.traffic = traffic;
    this.writeStatus(cluster, SERVICES, svc, svcStatus, now);
  }

  /** What the runtime needs to run a revision: its container, resolved env, limits. */
  private runSpec(cluster: StoredCluster, rev: StoredKubeObject, service: string): RevisionRun {
    const revSpec = spec(rev.obj);
    const container = servingContainer(revSpec) ?? {};
    const { env, error } = this.resolveEnv(cluster, rev, container);
    const annotations = meta(rev.obj).annotations;
    const deadlineText = isStringMap(annotations) ? annotations[A_PROGRESS_DEADLINE] : undefined;
    const deadline = deadlineText === undefined ? undefined : parseDuration(deadlineText);
    const concurrency = revSpec.containerConcurrency;
    const timeout = revSpec.timeoutSeconds;
    return {
      clusterId: cluster.id,
      namespace: rev.ns,
      name: rev.name,
      uid: str(meta(rev.obj).uid) ?? "",
      service,
      configuration: labelsOf(rev.obj)[L_CONFIGURATION] ?? service,
      image: str(container.image) ?? "",
      command: stringList(container.command),
      args: stringList(container.args),
      workingDir: str(container.workingDir) ?? null,
      env,
      containerConcurrency: typeof concurrency === "number" && concurrency >= 0 ? concurrency : 0,
      timeoutSeconds: typeof timeout === "number" && timeout > 0 ? timeout : DEFAULT_TIMEOUT_SECONDS,
      progressDeadlineMs: deadline ?? this.model.settings.knativeProgressDeadlineMs,
      configError: error,
    };
  }

  /** The container's environment as the kubelet makes it: envFrom, then env (values, Secret and ConfigMap keys, a few fieldRefs). */
  private resolveEnv(cluster: StoredCluster, rev: StoredKubeObject, container: Obj): { env: Array<{ name: string; value: string }>; error: string | null } {
    const ns = rev.ns;
    const out = new Map<string, string>();
    const source = (kind: "Secret" | "ConfigMap", name: string): Record<string, string> | undefined => {
      const entry = this.find(cluster, kind === "Secret" ? "/secrets" : "/configmaps", ns, name);
      if (entry === undefined) return undefined;
      const data: Record<string, string> = {};
      if (kind === "Secret") {
        const d = entry.obj.data;
        if (isPlainObject(d)) for (const [k, v] of Object.entries(d)) if (typeof v === "string") data[k] = Buffer.from(v, "base64").toString("utf8");
      } else {
        const d = entry.obj.data;
        if (isPlainObject(d)) for (const [k, v] of Object.entries(d)) if (typeof v === "string") data[k] = v;
      }
      return data;
    };
    const envFrom = Array.isArray(container.envFrom) ? container.envFrom.filter(isPlainObject) : [];
    for (const from of envFrom) {
      const prefix = str(from.prefix) ?? "";
      for (const [field, kind] of [["secretRef", "Secret"], ["configMapRef", "ConfigMap"]] as const) {
        const ref = from[field];
        if (!isPlainObject(ref) || typeof ref.name !== "string") continue;
        const data = source(kind, ref.name);
        if (data === undefined) {
          if (ref.optional === true) continue;
          return { env: [], error: `${kind.toLowerCase()} "${ref.name}" not found` };
        }
        for (const [k, v] of Object.entries(data)) out.set(`${prefix}${k}`, v);
      }
    }
    const env = Array.isArray(container.env) ? container.env.filter(isPlainObject) : [];
    for (const e of env) {
      const name = str(e.name);
      if (name === undefined || name === "") continue;
      if (typeof e.value === "string") {
        out.set(name, e.value);
        continue;
      }
      const from = isPlainObject(e.valueFrom) ? e.valueFrom : undefined;
      if (from === undefined) {
        out.set(name, "");
        continue;
      }
      let handled = false;
      for (const [field, kind] of [["secretKeyRef", "Secret"], ["configMapKeyRef", "ConfigMap"]] as const) {
        const ref = from[field];
        if (!isPlainObject(ref) || typeof ref.name !== "string" || typeof ref.key !== "string") continue;
        handled = true;
        const data = source(kind, ref.name);
        const value = data?.[ref.key];
        if (value === undefined) {
          if (ref.optional === true) break;
          return { env: [], error: data === undefined ? `${kind.toLowerCase()} "${ref.name}" not found` : `couldn't find key ${ref.key} in ${kind} ${ns}/${ref.name}` };
        }
        out.set(name, value);
      }
      if (handled) continue;
      const fieldRef = isPlainObject(from.fieldRef) ? str(from.fieldRef.fieldPath) : undefined;
      if (fieldRef === "metadata.namespace") out.set(name, ns);
      else if (fieldRef === "metadata.name") out.set(name, `${rev.name}-deployment-sim`);
    }
    return { env: [...out].map(([name, value]) => ({ name, value })), error: null };
  }

  // ---- gateway --------------------------------------------------------------------------------------

  /**
   * `<any method> /knative/clusters/<id>/namespaces/<ns>/services/<name>[/<path>]`:
   * the cluster's ingress and activator: picks a revision by the Service's
   * traffic (by percent, or by the `Knative-Serving-Tag` header) and hands
   * the request to its queue-proxy.
   */
  async gateway(req: IncomingMessage, res: ServerResponse, pathname: string, search: string): Promise<void> {
    const fail = (status: number, message: string): void => {
      req.resume();
      const text = JSON.stringify({ message });
      res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
      res.end(text);
    };
    const m = /^\/knative\/clusters\/([^/]+)\/namespaces\/([^/]+)\/services\/([^/]+)(\/.*)?$/.exec(pathname);
    if (m === null) return fail(404, "the gateway serves /knative/clusters/<clusterId>/namespaces/<namespace>/services/<name>[/<path>]");
    let clusterId: string, ns: string, name: string;
    try {
      [clusterId, ns, name] = [decodeURIComponent(m[1] ?? ""), decodeURIComponent(m[2] ?? ""), decodeURIComponent(m[3] ?? "")];
    } catch {
      return fail(404, "malformed path");
    }
    const rest = (m[4] ?? "") === "" ? "/" : (m[4] ?? "/");
    const cluster = this.model.data.clusters.find((c) => c.id === clusterId && c.removedTS === null);
    if (cluster === undefined || !Object.hasOwn(this.model.data.kube, cluster.id)) return fail(404, `no cluster ${clusterId}`);
    const svc = this.find(cluster, SERVICES_KEY, ns, name);
    if (svc === undefined) return fail(404, `no Knative Service ${ns}/${name} in cluster ${clusterId}`);
    const traffic = (Array.isArray(statusOf(svc.obj).traffic) ? (statusOf(svc.obj).traffic as unknown[]) : []).filter(isPlainObject);
    const tagHeader = req.headers[TAG_HEADER];
    const tag = typeof tagHeader === "string" && tagHeader !== "" ? tagHeader : undefined;
    let target: Obj | undefined;
    if (tag !== undefined) {
      target = traffic.find((t) => t.tag === tag);
      if (target === undefined) return fail(404, `no traffic target tagged ${JSON.stringify(tag)} in service ${ns}/${name}`);
    } else {
      const weighted = traffic.filter((t) => typeof t.percent === "number" && t.percent > 0);
      const total = weighted.reduce((sum, t) => sum + (t.percent as number), 0);
      let pick = Math.random() * total;
      for (const t of weighted) {
        pick -= t.percent as number;
        if (pick < 0) {
          target = t;
          break;
        }
        target = t;
      }
    }
    const revName = target === undefined ? undefined : str(target.revisionName);
    if (revName === undefined) return fail(503, `service ${ns}/${name} has no ready revision to send the request to`);
    const rev = this.find(cluster, REVISIONS_KEY, ns, revName);
    if (rev === undefined) return fail(503, `revision ${ns}/${revName} does not exist`);
    const timeout = spec(rev.obj).timeoutSeconds;
    const timeoutMs = (typeof timeout === "number" && timeout > 0 ? timeout : DEFAULT_TIMEOUT_SECONDS) * 1000 + GATEWAY_GRACE_MS;
    const image = str(servingContainer(spec(rev.obj))?.image) ?? "";
    if (placeholderImage(image)) return fail(503, `revision ${ns}/${revName} does not run: the simulator never pulls the Docker Hub image ${JSON.stringify(image)}`);
    await this.runtime.proxy(cluster.id, ns, revName, str(meta(rev.obj).uid) ?? "", req, res, `${rest}${search}`, timeoutMs);
  }

  // ---- admin -----------------------------------------------------------------------------------------

  /** `GET /admin/clusters/<id>/knative`: every revision with its process. */
  adminList(clusterId: string): Obj {
    const cluster = this.model.cluster(clusterId);
    const revisions: Obj[] = [];
    if (Object.hasOwn(this.model.data.kube, cluster.id)) {
      for (const entry of this.kube.objects(cluster)) {
        if (entry.key !== REVISIONS_KEY) continue;
        const uid = str(meta(entry.obj).uid) ?? "";
        const view = this.runtime.view(cluster.id, entry.ns, entry.name, uid);
        const container = servingContainer(spec(entry.obj));
        const image = str(container?.image) ?? "";
        const readyCond = conditionIn(statusOf(entry.obj), "Ready");
        revisions.push({
          namespace: entry.ns,
          name: entry.name,
          uid,
          service: labelsOf(entry.obj)[L_SERVICE] ?? null,
          image,
          imageDigest: view?.imageDigest ?? null,
          phase: placeholderImage(image) ? "not-run" : (view?.phase ?? "stopped"),
          pid: view?.pid ?? null,
          port: view?.port ?? null,
          ready: view?.ready ?? false,
          restarts: view?.restarts ?? 0,
          exitCode: view?.exitCode ?? null,
          signal: view?.signal ?? null,
          reason: view?.failure?.reason ?? null,
          message: view?.failure?.message ?? null,
          containerConcurrency: view?.containerConcurrency ?? spec(entry.obj).containerConcurrency ?? 0,
          inFlight: view?.inFlight ?? 0,
          queued: view?.queued ?? 0,
          startedAt: view?.startedAt ?? null,
          readyAt: view?.readyAt ?? null,
          status: { ready: readyCond?.status ?? "Unknown", reason: readyCond?.reason ?? null },
        });
      }
    }
    revisions.sort((a, b) => String(a.namespace).localeCompare(String(b.namespace)) || String(a.name).localeCompare(String(b.name)));
    return { clusterId: cluster.id, revisions };
  }

  /** `GET /admin/clusters/<id>/knative/<ns>/<revision>/logs[?tail=N]`: the process's captured output (its last 500 lines unless `tail` says more). */
  adminLogs(clusterId: string, ns: string, name: string, tail?: number): Obj {
    const cluster = this.model.cluster(clusterId);
    const lines = this.runtime.logs(cluster.id, ns, name, tail);
    if (lines === undefined) {
      const known = Object.hasOwn(this.model.data.kube, cluster.id) && this.find(cluster, REVISIONS_KEY, ns, name) !== undefined;
      if (!known) throw new NormanError(404, "NotFound", `no revision ${ns}/${name} in cluster ${cluster.id}`);
      return { namespace: ns, revision: name, lines: [] };
    }
    return { namespace: ns, revision: name, lines };
  }
}
