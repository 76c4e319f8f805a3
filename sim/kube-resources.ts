/**
 * The resource types the simulated Kubernetes API serves, for discovery and
 * routing: a fixed list of built-in (and Knative) types plus whatever
 * CustomResourceDefinitions a cluster holds.
 */
import { isPlainObject } from "./http.js";

export interface SubresourceDef {
  name: string;
  kind: string;
  group?: string;
  version?: string;
  verbs: string[];
}

export interface ResourceDef {
  group: string;
  version: string;
  plural: string;
  singular: string;
  kind: string;
  namespaced: boolean;
  verbs: string[];
  shortNames?: string[];
  categories?: string[];
  /** Has a status subresource: writes to the main resource keep the stored status. */
  status: boolean;
  /** Served like a custom resource: no strategic merge patch. */
  custom: boolean;
  subresources: SubresourceDef[];
}

const ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
const STATUS_VERBS = ["get", "patch", "update"];

interface Spec {
  plural: string;
  kind: string;
  namespaced?: boolean;
  shortNames?: string[];
  categories?: string[];
  status?: boolean;
  verbs?: string[];
  custom?: boolean;
  extra?: SubresourceDef[];
}

function defs(group: string, version: string, specs: Spec[]): ResourceDef[] {
  return specs.map((s) => {
    const status = s.status ?? false;
    const subresources: SubresourceDef[] = [];
    if (status) subresources.push({ name: "status", kind: s.kind, verbs: STATUS_VERBS });
    subresources.push(...(s.extra ?? []));
    const def: ResourceDef = {
      group,
      version,
      plural: s.plural,
      singular: s.kind.toLowerCase(),
      kind: s.kind,
      namespaced: s.namespaced ?? true,
      verbs: s.verbs ?? ALL_VERBS,
      status,
      custom: s.custom ?? false,
      subresources,
    };
    if (s.shortNames !== undefined) def.shortNames = s.shortNames;
    if (s.categories !== undefined) def.categories = s.categories;
    return def;
  });
}

const KNATIVE = ["all", "knative", "serving"];

export const STATIC_RESOURCES: readonly ResourceDef[] = [
  ...defs("", "v1", [
    { plural: "componentstatuses", kind: "ComponentStatus", namespaced: false, shortNames: ["cs"], verbs: ["get", "list"] },
    { plural: "configmaps", kind: "ConfigMap", shortNames: ["cm"] },
    { plural: "endpoints", kind: "Endpoints", shortNames: ["ep"] },
    { plural: "events", kind: "Event", shortNames: ["ev"] },
    { plural: "limitranges", kind: "LimitRange", shortNames: ["limits"] },
    {
      plural: "namespaces",
      kind: "Namespace",
      namespaced: false,
      shortNames: ["ns"],
      status: true,
      verbs: ["create", "delete", "get", "list", "patch", "update", "watch"],
    },
    {
      plural: "nodes",
      kind: "Node",
      namespaced: false,
      shortNames: ["no"],
      status: true,
      verbs: ["delete", "get", "list", "patch", "update", "watch"],
    },
    { plural: "persistentvolumeclaims", kind: "PersistentVolumeClaim", shortNames: ["pvc"], status: true },
    { plural: "persistentvolumes", kind: "PersistentVolume", namespaced: false, shortNames: ["pv"], status: true },
    {
      plural: "pods",
      kind: "Pod",
      shortNames: ["po"],
      categories: ["all"],
      status: true,
      extra: [{ name: "eviction", kind: "Eviction", group: "policy", version: "v1", verbs: ["create"] }],
    },
    { plural: "podtemplates", kind: "PodTemplate" },
    { plural: "replicationcontrollers", kind: "ReplicationController", shortNames: ["rc"], categories: ["all"], status: true },
    { plural: "resourcequotas", kind: "ResourceQuota", shortNames: ["quota"], status: true },
    { plural: "secrets", kind: "Secret" },
    { plural: "serviceaccounts", kind: "ServiceAccount", shortNames: ["sa"] },
    { plural: "services", kind: "Service", shortNames: ["svc"], categories: ["all"], status: true },
  ]),
  ...defs("apps", "v1", [
    { plural: "controllerrevisions", kind: "ControllerRevision" },
    { plural: "daemonsets", kind: "DaemonSet", shortNames: ["ds"], categories: ["all"], status: true },
    { plural: "deployments", kind: "Deployment", shortNames: ["deploy"], categories: ["all"], status: true },
    { plural: "replicasets", kind: "ReplicaSet", shortNames: ["rs"], categories: ["all"], status: true },
    { plural: "statefulsets", kind: "StatefulSet", shortNames: ["sts"], categories: ["all"], status: true },
  ]),
  ...defs("policy", "v1", [{ plural: "poddisruptionbudgets", kind: "PodDisruptionBudget", shortNames: ["pdb"], status: true }]),
  ...defs("rbac.authorization.k8s.io", "v1", [
    { plural: "clusterrolebindings", kind: "ClusterRoleBinding", namespaced: false },
    { plural: "clusterroles", kind: "ClusterRole", namespaced: false },
    { plural: "rolebindings", kind: "RoleBinding" },
    { plural: "roles", kind: "Role" },
  ]),
  ...defs("batch", "v1", [
    { plural: "cronjobs", kind: "CronJob", shortNames: ["cj"], categories: ["all"], status: true },
    { plural: "jobs", kind: "Job", categories: ["all"], status: true },
  ]),
  ...defs("networking.k8s.io", "v1", [
    { plural: "ingressclasses", kind: "IngressClass", namespaced: false },
    { plural: "ingresses", kind: "Ingress", shortNames: ["ing"], status: true },
    { plural: "networkpolicies", kind: "NetworkPolicy", shortNames: ["netpol"] },
  ]),
  ...defs("apiextensions.k8s.io", "v1", [
    { plural: "customresourcedefinitions", kind: "CustomResourceDefinition", namespaced: false, shortNames: ["crd", "crds"], status: true },
  ]),
  // Knative Serving is installed by CRDs in a real cluster; the simulator serves it from the start.
  ...defs("serving.knative.dev", "v1", [
    { plural: "configurations", kind: "Configuration", shortNames: ["config", "cfg"], categories: KNATIVE, status: true, custom: true },
    { plural: "revisions", kind: "Revision", shortNames: ["rev"], categories: KNATIVE, status: true, custom: true },
    { plural: "routes", kind: "Route", shortNames: ["rt"], categories: KNATIVE, status: true, custom: true },
    { plural: "services", kind: "Service", shortNames: ["kservice", "ksvc"], categories: KNATIVE, status: true, custom: true },
  ]),
];

/** Storage key of a resource: `<group>/<plural>`. */
export function resourceKey(def: { group: string; plural: string }): string {
  return `${def.group}/${def.plural}`;
}

export function groupVersion(def: { group: string; version: string }): string {
  return def.group === "" ? def.version : `${def.group}/${def.version}`;
}

/** The resource name Kubernetes uses in messages, e.g. `deployments.apps` or `pods`. */
export function qualifiedName(def: { group: string; plural: string }): string {
  return def.group === "" ? def.plural : `${def.plural}.${def.group}`;
}

/** The served resources a stored CustomResourceDefinition adds. */
export function crdResources(crd: Record<string, unknown>): ResourceDef[] {
  const spec = crd.spec;
  if (!isPlainObject(spec) || typeof spec.group !== "string" || !isPlainObject(spec.names)) return [];
  const names = spec.names;
  if (typeof names.plural !== "string" || typeof names.kind !== "string") return [];
  const versions = Array.isArray(spec.versions) ? spec.versions.filter(isPlainObject) : [];
  const out: ResourceDef[] = [];
  for (const v of versions) {
    if (typeof v.name !== "string" || v.served === false) continue;
    const status = isPlainObject(v.subresources) && Object.hasOwn(v.subresources, "status");
    const def: ResourceDef = {
      group: spec.group,
      version: v.name,
      plural: names.plural,
      singular: typeof names.singular === "string" && names.singular !== "" ? names.singular : names.kind.toLowerCase(),
      kind: names.kind,
      namespaced: spec.scope !== "Cluster",
      verbs: ALL_VERBS,
      status,
      custom: true,
      subresources: status ? [{ name: "status", kind: names.kind, verbs: STATUS_VERBS }] : [],
    };
    if (Array.isArray(names.shortNames)) def.shortNames = names.shortNames.map(String);
    if (Array.isArray(names.categories)) def.categories = names.categories.map(String);
    out.push(def);
  }
  return out;
}

/** An `APIResource` entry of discovery for a resource and its subresources. */
export function discoveryEntries(def: ResourceDef): Record<string, unknown>[] {
  const main: Record<string, unknown> = {
    name: def.plural,
    singularName: def.singular,
    namespaced: def.namespaced,
    kind: def.kind,
    verbs: def.verbs,
  };
  if (def.shortNames !== undefined) main.shortNames = def.shortNames;
  if (def.categories !== undefined) main.categories = def.categories;
  const subs = def.subresources.map((s) => {
    const entry: Record<string, unknown> = { name: `${def.plural}/${s.name}`, singularName: "", namespaced: def.namespaced, kind: s.kind, verbs: s.verbs };
    if (s.group !== undefined) entry.group = s.group;
    if (s.version !== undefined) entry.version = s.version;
    return entry;
  });
  return [main, ...subs];
}
