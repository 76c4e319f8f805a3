/**
 * The OpenAPI v3 documents a Kubernetes API server publishes at `/openapi/v3`:
 * an index of group-versions and one document per group-version with its
 * paths, operations and (here, skeletal) schemas.
 *
 * Clients read them for more than documentation: kubectl and helm ask, per
 * kind, whether the PATCH operation takes the `fieldValidation` parameter, and
 * validate on the client side (with the OpenAPI v2 document) only when it does
 * not. The simulator validates no fields, so its schemas only name the kinds
 * and keep every field (`x-kubernetes-preserve-unknown-fields`).
 */
import { createHash } from "node:crypto";
import { groupVersion, type ResourceDef } from "./kube-resources.js";

type Obj = Record<string, unknown>;

const META = "io.k8s.apimachinery.pkg.apis.meta.v1";

/** The path of a group-version under `/openapi/v3/`, e.g. `api/v1` or `apis/apps/v1`. */
export function openApiPath(def: { group: string; version: string }): string {
  return def.group === "" ? `api/${def.version}` : `apis/${def.group}/${def.version}`;
}

/** The schema name Kubernetes uses for a kind, e.g. `io.k8s.api.apps.v1.Deployment`. */
function schemaName(group: string, version: string, kind: string): string {
  if (group === "") return `io.k8s.api.core.${version}.${kind}`;
  if (group === "apiextensions.k8s.io") return `io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.${version}.${kind}`;
  if (group.endsWith(".k8s.io") || !group.includes(".")) return `io.k8s.api.${group.split(".")[0] ?? group}.${version}.${kind}`;
  return `${group.split(".").reverse().join(".")}.${version}.${kind}`;
}

/** The operation id stem Kubernetes uses, e.g. `CoreV1`, `AppsV1`, `RbacAuthorizationV1`. */
function opStem(group: string, version: string): string {
  const words = group === "" ? ["core"] : group.replace(/\.k8s\.io$/, "").split(/[.-]/);
  const title = (w: string): string => (w === "" ? "" : `${w[0]?.toUpperCase() ?? ""}${w.slice(1)}`);
  return `${words.map(title).join("")}${title(version)}`;
}

function tag(group: string, version: string): string {
  const base = group === "" ? "core" : group.replace(/\.k8s\.io$/, "").replace(/\./g, "_");
  return `${base}_${version}`;
}

function ref(name: string): Obj {
  return { $ref: `#/components/schemas/${name}` };
}

function param(name: string, type: string, description: string, where = "query"): Obj {
  const out: Obj = { name, in: where, description, schema: { type, uniqueItems: true } };
  if (where === "path") out.required = true;
  return out;
}

const P = {
  pretty: param("pretty", "string", "If 'true', then the output is pretty printed."),
  dryRun: param("dryRun", "string", "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed"),
  fieldManager: param("fieldManager", "string", "fieldManager is a name associated with the actor or entity that is making these changes."),
  fieldValidation: param(
    "fieldValidation",
    "string",
    "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict. (The simulator keeps unknown fields whatever is asked.)",
  ),
  force: param("force", "boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people."),
  gracePeriodSeconds: param("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted."),
  orphanDependents: param("orphanDependents", "boolean", "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7."),
  propagationPolicy: param("propagationPolicy", "string", "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan', 'Background', 'Foreground'."),
  allowWatchBookmarks: param("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\"."),
  continue: param("continue", "string", "The continue option should be set when retrieving more results from the server."),
  fieldSelector: param("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
  labelSelector: param("labelSelector", "string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
  limit: param("limit", "integer", "limit is a maximum number of responses to return for a list call."),
  resourceVersion: param("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
  resourceVersionMatch: param("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
  sendInitialEvents: param("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with `watch=true`."),
  timeoutSeconds: param("timeoutSeconds", "integer", "Timeout for the list/watch call."),
  watch: param("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
  name: (kind: string): Obj => param("name", "string", `name of the ${kind}`, "path"),
  namespace: param("namespace", "string", "object name and auth scope, such as for teams and projects", "path"),
};

const LIST_PARAMS = [P.allowWatchBookmarks, P.continue, P.fieldSelector, P.labelSelector, P.limit, P.resourceVersion, P.resourceVersionMatch, P.sendInitialEvents, P.timeoutSeconds, P.watch];
const WRITE_PARAMS = [P.dryRun, P.fieldManager, P.fieldValidation];
const DELETE_PARAMS = [P.dryRun, P.gracePeriodSeconds, P.orphanDependents, P.propagationPolicy];
const PATCH_TYPES = ["application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json"];

function jsonContent(schema: Obj): Obj {
  return { "application/json": { schema }, "application/yaml": { schema } };
}

function responses(codes: Array<[string, string, Obj | null]>): Obj {
  const out: Obj = {};
  for (const [code, description, schema] of codes) out[code] = schema === null ? { description } : { description, content: jsonContent(schema) };
  out["401"] = { description: "Unauthorized" };
  return out;
}

interface OpSpec {
  action: string;
  verb: string;
  description: string;
  operationId: string;
  parameters: Obj[];
  body?: Obj;
  ok: Array<[string, string, Obj | null]>;
  gvk: { group: string; version: string; kind: string };
}

function operation(s: OpSpec, tagName: string): Obj {
  const out: Obj = { tags: [tagName], description: s.description, operationId: s.operationId, parameters: s.parameters };
  if (s.body !== undefined) out.requestBody = s.body;
  out.responses = responses(s.ok);
  out["x-kubernetes-action"] = s.action;
  out["x-kubernetes-group-version-kind"] = s.gvk;
  return out;
}

/** The paths of one resource type (and its subresources), keyed by URL template. */
function resourcePaths(def: ResourceDef): Record<string, Obj> {
  const prefix = `/${openApiPath(def)}`;
  const stem = opStem(def.group, def.version);
  const tagName = tag(def.group, def.version);
  const gvk = { group: def.group, version: def.version, kind: def.kind };
  const one = ref(schemaName(def.group, def.version, def.kind));
  const list = ref(schemaName(def.group, def.version, `${def.kind}List`));
  const scope = def.namespaced ? "Namespaced" : "";
  const base = def.namespaced ? `${prefix}/namespaces/{namespace}/${def.plural}` : `${prefix}/${def.plural}`;
  const scopeParams = def.namespaced ? [P.namespace] : [];
  const has = (verb: string): boolean => def.verbs.includes(verb);
  const paths: Record<string, Obj> = {};
  const add = (path: string, pathParams: Obj[], ops: Array<[string, OpSpec]>): void => {
    if (ops.length === 0) return;
    const item: Obj = { parameters: [...pathParams, P.pretty] };
    for (const [method, s] of ops) item[method] = operation(s, tagName);
    paths[path] = item;
  };

  const collection: Array<[string, OpSpec]> = [];
  if (has("list")) {
    collection.push(["get", { action: "list", verb: "list", description: `list or watch objects of kind ${def.kind}`, operationId: `list${stem}${scope}${def.kind}`, parameters: LIST_PARAMS, ok: [["200", "OK", list]], gvk }]);
  }
  if (has("create")) {
    collection.push([
      "post",
      {
        action: "post",
        verb: "create",
        description: `create a ${def.kind}`,
        operationId: `create${stem}${scope}${def.kind}`,
        parameters: WRITE_PARAMS,
        body: { content: { "*/*": { schema: one } }, required: true },
        ok: [["200", "OK", one], ["201", "Created", one], ["202", "Accepted", one]],
        gvk,
      },
    ]);
  }
  if (has("deletecollection")) {
    collection.push([
      "delete",
      {
        action: "deletecollection",
        verb: "deletecollection",
        description: `delete collection of ${def.kind}`,
        operationId: `deleteCollection${stem}${scope}${def.kind}`,
        parameters: [...LIST_PARAMS.filter((p) => p.name !== "watch" && p.name !== "allowWatchBookmarks"), ...DELETE_PARAMS],
        body: { content: { "*/*": { schema: ref(`${META}.DeleteOptions`) } } },
        ok: [["200", "OK", ref(`${META}.Status`)]],
        gvk,
      },
    ]);
  }
  add(base, scopeParams, collection);
  if (def.namespaced && has("list")) {
    add(`${prefix}/${def.plural}`, [], [
      ["get", { action: "list", verb: "list", description: `list or watch objects of kind ${def.kind}`, operationId: `list${stem}${def.kind}ForAllNamespaces`, parameters: LIST_PARAMS, ok: [["200", "OK", list]], gvk }],
    ]);
  }

  const itemOps = (sub: string, subKind: string, verbs: (verb: string) => boolean): Array<[string, OpSpec]> => {
    const what = sub === "" ? `the specified ${subKind}` : `${sub} of the specified ${subKind}`;
    const suffix = sub === "" ? "" : sub[0]?.toUpperCase() + sub.slice(1);
    const ops: Array<[string, OpSpec]> = [];
    if (verbs("get")) ops.push(["get", { action: "get", verb: "get", description: `read ${what}`, operationId: `read${stem}${scope}${def.kind}${suffix}`, parameters: [], ok: [["200", "OK", one]], gvk }]);
    if (verbs("update")) {
      ops.push([
        "put",
        {
          action: "put",
          verb: "update",
          description: `replace ${what}`,
          operationId: `replace${stem}${scope}${def.kind}${suffix}`,
          parameters: WRITE_PARAMS,
          body: { content: { "*/*": { schema: one } }, required: true },
          ok: [["200", "OK", one], ["201", "Created", one]],
          gvk,
        },
      ]);
    }
    if (verbs("patch")) {
      ops.push([
        "patch",
        {
          action: "patch",
          verb: "patch",
          description: `partially update ${what}`,
          operationId: `patch${stem}${scope}${def.kind}${suffix}`,
          parameters: [...WRITE_PARAMS, P.force],
          body: { content: Object.fromEntries(PATCH_TYPES.map((t) => [t, { schema: ref(`${META}.Patch`) }])), required: true },
          ok: [["200", "OK", one], ["201", "Created", one]],
          gvk,
        },
      ]);
    }
    if (sub === "" && verbs("delete")) {
      ops.push([
        "delete",
        {
          action: "delete",
          verb: "delete",
          description: `delete ${what}`,
          operationId: `delete${stem}${scope}${def.kind}`,
          parameters: DELETE_PARAMS,
          body: { content: { "*/*": { schema: ref(`${META}.DeleteOptions`) } } },
          ok: [["200", "OK", one], ["202", "Accepted", one]],
          gvk,
        },
      ]);
    }
    return ops;
  };
  add(`${base}/{name}`, [P.name(def.kind), ...scopeParams], itemOps("", def.kind, has));
  for (const s of def.subresources) {
    const path = `${base}/{name}/${s.name}`;
    if (s.name === "eviction") {
      const evictionGvk = { group: s.group ?? def.group, version: s.version ?? def.version, kind: s.kind };
      const eviction = ref(schemaName(evictionGvk.group, evictionGvk.version, s.kind));
      add(path, [P.name("Eviction"), ...scopeParams], [
        [
          "post",
          {
            action: "post",
            verb: "create",
            description: `create eviction of a ${def.kind}`,
            operationId: `create${stem}${scope}${def.kind}Eviction`,
            parameters: WRITE_PARAMS,
            body: { content: { "*/*": { schema: eviction } }, required: true },
            ok: [["200", "OK", eviction], ["201", "Created", eviction], ["202", "Accepted", eviction]],
            gvk: evictionGvk,
          },
        ],
      ]);
      continue;
    }
    add(path, [P.name(def.kind), ...scopeParams], itemOps(s.name, def.kind, (verb) => s.verbs.includes(verb)));
  }
  return paths;
}

function kindSchema(group: string, version: string, kind: string): Obj {
  return {
    description: `${kind} (the simulator publishes no field schema and keeps every field)`,
    type: "object",
    properties: {
      apiVersion: { description: "APIVersion defines the versioned schema of this representation of an object.", type: "string" },
      kind: { description: "Kind is a string value representing the REST resource this object represents.", type: "string" },
      metadata: { description: "Standard object's metadata.", default: {}, allOf: [ref(`${META}.ObjectMeta`)] },
    },
    "x-kubernetes-preserve-unknown-fields": true,
    "x-kubernetes-group-version-kind": [{ group, kind, version }],
  };
}

function listSchema(group: string, version: string, kind: string): Obj {
  return {
    description: `${kind}List is a list of ${kind}`,
    type: "object",
    required: ["items"],
    properties: {
      apiVersion: { type: "string" },
      items: { type: "array", items: { default: {}, allOf: [ref(schemaName(group, version, kind))] } },
      kind: { type: "string" },
      metadata: { default: {}, allOf: [ref(`${META}.ListMeta`)] },
    },
    "x-kubernetes-group-version-kind": [{ group, kind: `${kind}List`, version }],
  };
}

const FREE_OBJECT = { type: "object", "x-kubernetes-preserve-unknown-fields": true };

function metaSchemas(): Record<string, Obj> {
  const stringMap = { type: "object", additionalProperties: { type: "string", default: "" } };
  return {
    [`${META}.ObjectMeta`]: {
      description: "ObjectMeta is metadata that all persisted resources must have.",
      type: "object",
      properties: {
        annotations: stringMap,
        creationTimestamp: { type: "string", format: "date-time" },
        deletionTimestamp: { type: "string", format: "date-time" },
        finalizers: { type: "array", items: { type: "string", default: "" }, "x-kubernetes-list-type": "set" },
        generateName: { type: "string" },
        generation: { type: "integer", format: "int64" },
        labels: stringMap,
        managedFields: { type: "array", items: FREE_OBJECT },
        name: { type: "string" },
        namespace: { type: "string" },
        ownerReferences: { type: "array", items: FREE_OBJECT, "x-kubernetes-list-map-keys": ["uid"], "x-kubernetes-list-type": "map", "x-kubernetes-patch-merge-key": "uid", "x-kubernetes-patch-strategy": "merge" },
        resourceVersion: { type: "string" },
        selfLink: { type: "string" },
        uid: { type: "string" },
      },
    },
    [`${META}.ListMeta`]: {
      description: "ListMeta describes metadata that synthetic resources must have.",
      type: "object",
      properties: { continue: { type: "string" }, remainingItemCount: { type: "integer", format: "int64" }, resourceVersion: { type: "string" }, selfLink: { type: "string" } },
    },
    [`${META}.Status`]: {
      description: "Status is a return value for calls that don't return other objects.",
      type: "object",
      properties: {
        apiVersion: { type: "string" },
        code: { type: "integer", format: "int32" },
        details: FREE_OBJECT,
        kind: { type: "string" },
        message: { type: "string" },
        metadata: { default: {}, allOf: [ref(`${META}.ListMeta`)] },
        reason: { type: "string" },
        status: { type: "string" },
      },
      "x-kubernetes-group-version-kind": [{ group: "", kind: "Status", version: "v1" }],
    },
    [`${META}.DeleteOptions`]: {
      description: "DeleteOptions may be provided when deleting an API object.",
      type: "object",
      properties: {
        apiVersion: { type: "string" },
        dryRun: { type: "array", items: { type: "string", default: "" }, "x-kubernetes-list-type": "atomic" },
        gracePeriodSeconds: { type: "integer", format: "int64" },
        kind: { type: "string" },
        orphanDependents: { type: "boolean" },
        preconditions: FREE_OBJECT,
        propagationPolicy: { type: "string" },
      },
    },
    [`${META}.Patch`]: { description: "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.", type: "object" },
  };
}

/** The OpenAPI v3 document of one group-version, or undefined when it serves nothing. */
export function openApiDocument(defs: readonly ResourceDef[], group: string, version: string, gitVersion: string): Obj | undefined {
  const served = defs.filter((d) => d.group === group && d.version === version);
  if (served.length === 0) return undefined;
  const paths: Record<string, Obj> = {};
  const schemas: Record<string, Obj> = metaSchemas();
  for (const def of served) {
    Object.assign(paths, resourcePaths(def));
    schemas[schemaName(group, version, def.kind)] = kindSchema(group, version, def.kind);
    schemas[schemaName(group, version, `${def.kind}List`)] = listSchema(group, version, def.kind);
    for (const s of def.subresources) {
      if (s.name !== "eviction") continue;
      const g = s.group ?? group;
      const v = s.version ?? version;
      schemas[schemaName(g, v, s.kind)] = kindSchema(g, v, s.kind);
    }
  }
  const sortedPaths = Object.fromEntries(Object.entries(paths).sort(([a], [b]) => (a < b ? -1 : 1)));
  const sortedSchemas = Object.fromEntries(Object.entries(schemas).sort(([a], [b]) => (a < b ? -1 : 1)));
  return {
    openapi: "3.0.0",
    info: { title: "Kubernetes", version: gitVersion },
    paths: sortedPaths,
    components: { schemas: sortedSchemas, securitySchemes: { BearerToken: { type: "apiKey", description: "Bearer Token authentication", name: "authorization", in: "header" } } },
    security: [{ BearerToken: [] }],
  };
}

/** `/openapi/v3`: where each group-version's document is, with a hash that changes with the document. */
export function openApiIndex(defs: readonly ResourceDef[], gitVersion: string): Obj {
  const seen = new Map<string, { group: string; version: string }>();
  for (const d of defs) seen.set(groupVersion(d), { group: d.group, version: d.version });
  const paths: Record<string, Obj> = {};
  for (const { group, version } of [...seen.values()].sort((a, b) => (openApiPath(a) < openApiPath(b) ? -1 : 1))) {
    const doc = openApiDocument(defs, group, version, gitVersion);
    if (doc === undefined) continue;
    const hash = createHash("sha512").update(JSON.stringify(doc)).digest("hex").toUpperCase();
    paths[openApiPath({ group, version })] = { serverRelativeURL: `/openapi/v3/${openApiPath({ group, version })}?hash=${hash}` };
  }
  return { paths };
}
