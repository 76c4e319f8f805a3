/**
 * A cluster's Prometheus as reached through the Kubernetes API server's
 * service proxy (`/api/v1/namespaces/<ns>/services/<svc>/proxy/<path>`).
 *
 * The simulator runs no Prometheus and evaluates no PromQL: it answers the
 * HTTP API's instant query (`/api/v1/query`) from a table a test sets per
 * cluster (`PUT /admin/clusters/<id>/prometheus`), keyed by the exact
 * expression, in Prometheus' own JSON shapes.
 */
import { isPlainObject, KubeError, NormanError, type Reply } from "./http.js";
import type { PrometheusQueries, PrometheusSample } from "./state.js";

/** What a service proxy URL names: `name`, `name:port` or `scheme:name:port`. */
export interface ServiceProxyTarget {
  scheme: string;
  name: string;
  /** A port number or port name; "" when the URL names none. */
  port: string;
}

const LABEL_NAME_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const FORM_CONTENT_TYPE = "application/x-www-form-urlencoded";
const PROXY_METHODS = new Set(["GET", "POST"]);

/**
 * Splits the `<svc>` part of a service proxy path as the API server does
 * (`SplitSchemeNamePort`): null when it has more than three parts, an empty
 * name, or a scheme other than `http`/`https`.
 */
export function parseServiceProxyName(id: string): ServiceProxyTarget | null {
  const parts = id.split(":");
  let target: ServiceProxyTarget;
  if (parts.length === 1) target = { scheme: "", name: parts[0] ?? "", port: "" };
  else if (parts.length === 2) target = { scheme: "", name: parts[0] ?? "", port: parts[1] ?? "" };
  else if (parts.length === 3) target = { scheme: parts[0] ?? "", name: parts[1] ?? "", port: parts[2] ?? "" };
  else return null;
  if (target.name === "" || !["", "http", "https"].includes(target.scheme)) return null;
  return target;
}

/**
 * Checks that the Service offers the port the proxy URL names, as the API
 * server does: a number must be one of `spec.ports[].port`, a name one of
 * `spec.ports[].name` (the simulator has no Endpoints to look further).
 *
 * @throws KubeError 503 ServiceUnavailable when it does not.
 */
export function checkServicePort(service: Record<string, unknown>, target: ServiceProxyTarget): void {
  if (target.port === "") return;
  const spec = isPlainObject(service.spec) ? service.spec : {};
  const ports = Array.isArray(spec.ports) ? spec.ports.filter(isPlainObject) : [];
  if (/^\d+$/.test(target.port)) {
    if (!ports.some((p) => p.port === Number(target.port))) {
      throw new KubeError(503, "ServiceUnavailable", `no service port ${target.port} found for service "${target.name}"`);
    }
    return;
  }
  if (!ports.some((p) => p.name === target.port)) {
    throw new KubeError(503, "ServiceUnavailable", `no endpoints available for service "${target.name}"`);
  }
}

/** The request as the proxied Prometheus sees it. */
export interface PrometheusRequest {
  method: string;
  contentType: string;
  query: URLSearchParams;
  bodyText: string;
}

function promError(status: number, errorType: string, error: string): Reply {
  return { status, body: { status: "error", errorType, error } };
}

function text(status: number, body: string): Reply {
  return { status, body, contentType: "text/plain; charset=utf-8" };
}

/** The form values Go's `r.FormValue` would see: a form body's first, then the URL's. */
function formValue(req: PrometheusRequest, name: string): string {
  if (req.method === "POST" && req.contentType === FORM_CONTENT_TYPE) {
    const fromBody = new URLSearchParams(req.bodyText).get(name);
    if (fromBody !== null) return fromBody;
  }
  return req.query.get(name) ?? "";
}

/** Prometheus' `time` parameter: Unix seconds (with a fraction) or RFC 3339; null when it cannot be read. */
function parseTime(value: string): number | null {
  if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(value)) {
    const seconds = Number(value);
    return Number.isFinite(seconds) ? Math.round(seconds * 1000) : null;
  }
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/i.test(value)) return null;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}

/** A sample value as Prometheus writes it (Go's `FormatFloat(v, 'f', -1, 64)`): never in exponent form. */
export function formatSampleValue(value: number): string {
  if (Object.is(value, -0)) return "-0";
  const plain = String(value);
  const match = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(plain);
  if (match === null) return plain;
  const [, sign = "", lead = "", fraction = "", exponentText = "0"] = match;
  const digits = lead + fraction;
  const exponent = Number(exponentText);
  if (exponent >= 0) return sign + digits.padEnd(exponent + 1, "0");
  return `${sign}0.${"0".repeat(-exponent - 1)}${digits}`;
}

/** A sample timestamp as Prometheus writes it: seconds with millisecond precision, as a JSON number. */
function sampleTime(ms: number): number {
  return Math.round(ms) / 1000;
}

/**
 * Answers a request to the proxied Prometheus at `path` (the part after
 * `/proxy/`): `GET`/`POST /api/v1/query` from the cluster's table (an
 * expression without an entry has no data: an empty vector), every other
 * path 404 `404 page not found`.
 */
export function prometheusReply(queries: PrometheusQueries, path: string[], req: PrometheusRequest, now: number): Reply {
  if (path.join("/") !== "api/v1/query") return text(404, "404 page not found");
  if (!PROXY_METHODS.has(req.method)) return text(405, "Method Not Allowed");
  let at = now;
  const time = formValue(req, "time");
  if (time !== "") {
    const parsed = parseTime(time);
    if (parsed === null) return promError(400, "bad_data", `invalid parameter "time": cannot parse "${time}" to a valid timestamp`);
    at = parsed;
  }
  const expression = formValue(req, "query");
  if (expression.trim() === "") return promError(400, "bad_data", 'invalid parameter "query": 1:1: parse error: no expression found in input');
  const samples = Object.hasOwn(queries, expression) ? (queries[expression] ?? []) : [];
  const result = samples.map((s) => ({ metric: { ...s.metric }, value: [sampleTime(at), formatSampleValue(s.value)] }));
  return { status: 200, body: { status: "success", data: { resultType: "vector", result } } };
}

function invalid(message: string, fieldName = "queries"): NormanError {
  return new NormanError(400, "InvalidFormat", message, fieldName);
}

function sample(raw: unknown, where: string): PrometheusSample {
  if (!isPlainObject(raw)) throw invalid(`${where} must be an object {metric?, value}`);
  for (const key of Object.keys(raw)) {
    if (key !== "metric" && key !== "value") throw invalid(`${where} has unknown field "${key}"; known: metric, value`);
  }
  if (typeof raw.value !== "number" || !Number.isFinite(raw.value)) throw invalid(`${where}.value must be a finite number`);
  const metric: Array<[string, string]> = [];
  if (raw.metric !== undefined) {
    if (!isPlainObject(raw.metric)) throw invalid(`${where}.metric must be an object of label names to string values`);
    for (const [name, value] of Object.entries(raw.metric)) {
      if (!LABEL_NAME_RE.test(name)) throw invalid(`${where}.metric has an invalid label name ${JSON.stringify(name)}`);
      if (typeof value !== "string") throw invalid(`${where}.metric.${name} must be a string`);
      metric.push([name, value]);
    }
  }
  // fromEntries defines properties, so a label such as "__proto__" stays a label.
  return { metric: Object.fromEntries(metric), value: raw.value };
}

/**
 * Reads a `PUT /admin/clusters/<id>/prometheus` body:
 * `{queries: {"<PromQL>": [{metric?: {label: "value"}, value: <finite number>}]}}`.
 *
 * @throws NormanError 400 InvalidFormat for an unknown field or a wrong type.
 */
export function parsePrometheusQueries(body: Record<string, unknown>): PrometheusQueries {
  for (const key of Object.keys(body)) {
    if (key !== "queries") throw invalid(`unknown field "${key}"; known: queries`, key);
  }
  const queries = body.queries;
  if (!isPlainObject(queries)) throw invalid("queries must be an object mapping PromQL expressions to arrays of {metric?, value}");
  const out: Array<[string, PrometheusSample[]]> = [];
  for (const [expression, samples] of Object.entries(queries)) {
    const where = `queries[${JSON.stringify(expression)}]`;
    if (expression.trim() === "") throw invalid("queries cannot have an empty expression");
    if (!Array.isArray(samples)) throw invalid(`${where} must be an array of {metric?, value}`);
    out.push([expression, samples.map((s: unknown, i: number) => sample(s, `${where}[${i}]`))]);
  }
  return Object.fromEntries(out);
}
