/**
 * Pure helpers for the simulated Kubernetes API: label and field selectors,
 * the three patch formats, and name generation.
 */
import { randomInt } from "node:crypto";
import { isPlainObject, KubeError } from "./http.js";

type Json = unknown;
type JsonObject = Record<string, unknown>;

// ---- label selectors ------------------------------------------------------------------

export interface Requirement {
  key: string;
  op: "=" | "!=" | "in" | "notin" | "exists" | "!exists";
  values: string[];
}

const LABEL_KEY_RE = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE_RE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;

function badSelector(selector: string, why: string): KubeError {
  return new KubeError(400, "BadRequest", `unable to parse requirement: ${why} (selector ${JSON.stringify(selector)})`);
}

/** Splits on commas that are not inside parentheses. */
function splitTerms(selector: string): string[] {
  const terms: string[] = [];
  let depth = 0;
  let current = "";
  for (const ch of selector) {
    if (ch === "(") depth += 1;
    if (ch === ")") depth -= 1;
    if (ch === "," && depth === 0) {
      terms.push(current);
      current = "";
    } else {
      current += ch;
    }
  }
  terms.push(current);
  return terms.map((t) => t.trim()).filter((t) => t !== "");
}

/** Parses a `labelSelector` query value: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`. */
export function parseLabelSelector(selector: string | null): Requirement[] {
  if (selector === null || selector.trim() === "") return [];
  return splitTerms(selector).map((term) => {
    const check = (key: string, values: string[]): void => {
      if (!LABEL_KEY_RE.test(key)) throw badSelector(selector, `invalid label key ${JSON.stringify(key)}`);
      for (const v of values) if (!LABEL_VALUE_RE.test(v)) throw badSelector(selector, `invalid label value ${JSON.stringify(v)}`);
    };
    const set = /^(\S+)\s+(in|notin)\s*\(([^()]*)\)$/.exec(term);
    if (set) {
      const key = set[1] ?? "";
      const values = (set[3] ?? "").split(",").map((v) => v.trim()).filter((v) => v !== "");
      check(key, values);
      return { key, op: set[2] === "in" ? "in" : "notin", values };
    }
    const cmp = /^([^=!\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(term);
    if (cmp) {
      const key = cmp[1] ?? "";
      const value = cmp[3] ?? "";
      check(key, [value]);
      return { key, op: cmp[2] === "!=" ? "!=" : "=", values: [value] };
    }
    const not = /^!\s*(\S+)$/.exec(term);
    if (not) {
      check(not[1] ?? "", []);
      return { key: not[1] ?? "", op: "!exists", values: [] };
    }
    check(term, []);
    return { key: term, op: "exists", values: [] };
  });
}

/** A `metav1.LabelSelector` (matchLabels, matchExpressions) as requirements; null matches nothing. */
export function requirementsOf(selector: unknown): Requirement[] | null {
  if (!isPlainObject(selector)) return null;
  const out: Requirement[] = [];
  if (isPlainObject(selector.matchLabels)) {
    for (const [key, value] of Object.entries(selector.matchLabels)) out.push({ key, op: "=", values: [String(value)] });
  }
  if (Array.isArray(selector.matchExpressions)) {
    for (const expr of selector.matchExpressions) {
      if (!isPlainObject(expr) || typeof expr.key !== "string") continue;
      const values = Array.isArray(expr.values) ? expr.values.map(String) : [];
      const op = expr.operator === "In" ? "in" : expr.operator === "NotIn" ? "notin" : expr.operator === "Exists" ? "exists" : "!exists";
      out.push({ key: expr.key, op, values });
    }
  }
  return out;
}

export function matchesLabels(requirements: Requirement[], labels: unknown): boolean {
  const map = isPlainObject(labels) ? labels : {};
  return requirements.every(({ key, op, values }) => {
    const has = Object.hasOwn(map, key);
    const value = has ? String(map[key]) : undefined;
    switch (op) {
      case "=":
        return value === values[0];
      case "!=":
        return value !== values[0];
      case "in":
        return value !== undefined && values.includes(value);
      case "notin":
        return value === undefined || !values.includes(value);
      case "exists":
        return has;
      case "!exists":
        return !has;
    }
  });
}

// ---- field selectors --------------------------------------------------------------------

export interface FieldRequirement {
  path: string[];
  negate: boolean;
  value: string;
}

/** Parses a `fieldSelector` such as `metadata.name=x,spec.nodeName!=y`; any dotted field path is accepted. */
export function parseFieldSelector(selector: string | null): FieldRequirement[] {
  if (selector === null || selector.trim() === "") return [];
  return splitTerms(selector).map((term) => {
    const m = /^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$/.exec(term);
    if (!m) throw new KubeError(400, "BadRequest", `invalid selector: ${JSON.stringify(selector)}; can't understand ${JSON.stringify(term)}`);
    return { path: (m[1] ?? "").split("."), negate: m[2] === "!=", value: m[3] ?? "" };
  });
}

export function matchesFields(requirements: FieldRequirement[], obj: JsonObject): boolean {
  return requirements.every(({ path, negate, value }) => {
    let cur: unknown = obj;
    for (const part of path) cur = isPlainObject(cur) && Object.hasOwn(cur, part) ? cur[part] : undefined;
    const actual = cur === undefined || cur === null ? "" : typeof cur === "object" ? JSON.stringify(cur) : String(cur);
    return negate ? actual !== value : actual === value;
  });
}

// ---- patches ------------------------------------------------------------------------------

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: Json, patch: Json): Json {
  if (!isPlainObject(patch)) return structuredClone(patch);
  const out: JsonObject = isPlainObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

function badPatch(message: string): KubeError {
  return new KubeError(422, "Invalid", message);
}

function pointer(path: unknown): string[] {
  if (typeof path !== "string" || (path !== "" && !path.startsWith("/"))) throw badPatch(`invalid JSON pointer ${JSON.stringify(path)}`);
  if (path === "") return [];
  return path.slice(1).split("/").map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function arrayIndex(arr: unknown[], token: string, forAdd: boolean): number {
  if (forAdd && token === "-") return arr.length;
  if (!/^(0|[1-9]\d*)$/.test(token)) throw badPatch(`invalid array index ${JSON.stringify(token)}`);
  const i = Number(token);
  if (i > arr.length || (!forAdd && i === arr.length)) throw badPatch(`array index ${i} out of bounds`);
  return i;
}

function getAt(doc: Json, tokens: string[]): Json {
  let cur = doc;
  for (const t of tokens) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(cur, t, false)];
    else if (isPlainObject(cur) && Object.hasOwn(cur, t)) cur = cur[t];
    else throw badPatch(`path /${tokens.join("/")} does not exist`);
  }
  return cur;
}

function parentOf(doc: Json, tokens: string[]): { parent: JsonObject | unknown[]; last: string } {
  const parent = getAt(doc, tokens.slice(0, -1));
  if (!Array.isArray(parent) && !isPlainObject(parent)) throw badPatch(`path /${tokens.join("/")} has no container`);
  return { parent, last: tokens[tokens.length - 1] ?? "" };
}

function removeAt(doc: Json, tokens: string[]): Json {
  const { parent, last } = parentOf(doc, tokens);
  if (Array.isArray(parent)) return parent.splice(arrayIndex(parent, last, false), 1)[0];
  if (!Object.hasOwn(parent, last)) throw badPatch(`path /${tokens.join("/")} does not exist`);
  const old = parent[last];
  delete parent[last];
  return old;
}

function addAt(doc: Json, tokens: string[], value: Json): Json {
  if (tokens.length === 0) return value;
  const { parent, last } = parentOf(doc, tokens);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, true), 0, value);
  else parent[last] = value;
  return doc;
}

/** RFC 6902 JSON patch: add, remove, replace, move, copy, test. */
export function jsonPatch(target: Json, ops: Json): Json {
  if (!Array.isArray(ops)) throw new KubeError(400, "BadRequest", "a JSON patch must be an array of operations");
  let doc = structuredClone(target);
  for (const op of ops) {
    if (!isPlainObject(op)) throw badPatch("every JSON patch operation must be an object");
    const path = pointer(op.path);
    switch (op.op) {
      case "add":
        doc = addAt(doc, path, structuredClone(op.value));
        break;
      case "remove":
        removeAt(doc, path);
        break;
      case "replace":
        if (path.length === 0) {
          doc = structuredClone(op.value);
        } else {
          getAt(doc, path);
          removeAt(doc, path);
          doc = addAt(doc, path, structuredClone(op.value));
        }
        break;
      case "move": {
        const value = removeAt(doc, pointer(op.from));
        doc = addAt(doc, path, value);
        break;
      }
      case "copy":
        doc = addAt(doc, path, structuredClone(getAt(doc, pointer(op.from))));
        break;
      case "test":
        if (stableStringify(getAt(doc, path)) !== stableStringify(op.value)) {
          throw badPatch(`test operation failed at ${String(op.path)}`);
        }
        break;
      default:
        throw badPatch(`unsupported JSON patch operation ${JSON.stringify(op.op)}`);
    }
  }
  return doc;
}

/**
 * List fields the built-in types merge by key under a strategic merge patch
 * (`patchStrategy:"merge"` in the Kubernetes types), by field name. Lists not
 * named here are replaced, as in a JSON merge patch.
 */
const MERGE_KEYS: Record<string, string | ((items: unknown[]) => string)> = {
  containers: "name",
  initContainers: "name",
  ephemeralContainers: "name",
  volumes: "name",
  env: "name",
  imagePullSecrets: "name",
  volumeMounts: "mountPath",
  volumeDevices: "devicePath",
  hostAliases: "ip",
  topologySpreadConstraints: "topologyKey",
  resourceClaims: "name",
  schedulingGates: "name",
  ownerReferences: "uid",
  conditions: "type",
  addresses: "type",
  ports: (items) => (items.some((i) => isPlainObject(i) && Object.hasOwn(i, "containerPort")) ? "containerPort" : "port"),
};
/** Lists of scalars merged as sets. */
const MERGE_SETS = new Set(["finalizers"]);

/**
 * Strategic merge patch for built-in types, driven by the field-name table
 * above rather than the real per-type schema; supports `$patch` (replace,
 * delete), `$retainKeys`, `$deleteFromPrimitiveList/<field>` and ignores
 * `$setElementOrder/<field>`.
 */
export function strategicMergePatch(target: Json, patch: Json): Json {
  if (!isPlainObject(patch)) return structuredClone(patch);
  if (patch.$patch === "replace") {
    const { $patch: _ignored, ...rest } = patch;
    return structuredClone(rest);
  }
  if (patch.$patch === "delete") return undefined;
  const out: JsonObject = isPlainObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (key === "$patch" || key.startsWith("$setElementOrder/")) continue;
    if (key === "$retainKeys") continue;
    if (key.startsWith("$deleteFromPrimitiveList/")) {
      const field = key.slice("$deleteFromPrimitiveList/".length);
      const current = out[field];
      if (Array.isArray(current) && Array.isArray(value)) out[field] = current.filter((v) => !value.some((d) => stableStringify(d) === stableStringify(v)));
      continue;
    }
    if (value === null) {
      delete out[key];
      continue;
    }
    const current = out[key];
    if (Array.isArray(value)) {
      out[key] = mergeList(key, Array.isArray(current) ? current : [], value);
      continue;
    }
    const merged = strategicMergePatch(current, value);
    if (merged === undefined) delete out[key];
    else out[key] = merged;
  }
  if (Array.isArray(patch.$retainKeys)) {
    const keep = new Set(patch.$retainKeys.map(String));
    for (const key of Object.keys(out)) if (!keep.has(key)) delete out[key];
  }
  return out;
}

function mergeList(field: string, current: unknown[], patch: unknown[]): unknown[] {
  if (MERGE_SETS.has(field)) {
    const out = [...current];
    for (const v of patch) if (!out.some((c) => stableStringify(c) === stableStringify(v))) out.push(structuredClone(v));
    return out;
  }
  const keySpec = MERGE_KEYS[field];
  const objects = patch.every((p) => isPlainObject(p));
  if (keySpec === undefined || !objects) {
    return patch.filter((p) => !(isPlainObject(p) && p.$patch !== undefined)).map((p) => structuredClone(p));
  }
  if (patch.some((p) => isPlainObject(p) && p.$patch === "replace" && Object.keys(p).length === 1)) {
    return patch.filter((p) => !(isPlainObject(p) && p.$patch === "replace")).map((p) => structuredClone(p));
  }
  const mergeKey = typeof keySpec === "function" ? keySpec([...current, ...patch]) : keySpec;
  const out = [...current];
  for (const item of patch as JsonObject[]) {
    const id = item[mergeKey];
    const index = out.findIndex((c) => isPlainObject(c) && stableStringify(c[mergeKey]) === stableStringify(id));
    if (item.$patch === "delete") {
      if (index >= 0) out.splice(index, 1);
      continue;
    }
    if (index >= 0) out[index] = strategicMergePatch(out[index], item);
    else out.push(strategicMergePatch({}, item));
  }
  return out;
}

// ---- misc -------------------------------------------------------------------------------------

/** JSON with object keys sorted, for comparing values regardless of key order. */
export function stableStringify(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(",")}]`;
  if (isPlainObject(value)) {
    return `{${Object.keys(value)
      .sort()
      .filter((k) => value[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${stableStringify(value[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

// The alphabet Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
const SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789";

export function nameSuffix(length = 5): string {
  let out = "";
  for (let i = 0; i < length; i++) out += SUFFIX_ALPHABET.charAt(randomInt(SUFFIX_ALPHABET.length));
  return out;
}

export const DNS_SUBDOMAIN_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
export const DNS_LABEL_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Whether every value of a map is a string (labels, annotations). */
export function isStringMap(value: unknown): value is Record<string, string> {
  return isPlainObject(value) && Object.values(value).every((v) => typeof v === "string");
}
