/**
 * Fault injection for the Rancher simulator, so Kumo's retry and recovery
 * paths can be exercised on purpose. Faults live in memory only: a restart
 * is meant to give a healthy Rancher back.
 */
import { codeForStatus, errorReply, isPlainObject, type Reply } from "./http.js";

/** One scripted failure: the next `times` matching /v3 calls (or /k8s calls, when `path` matches them) fail. */
export interface FaultRule {
  /** HTTP method to match, case-insensitive; any when absent. */
  method?: string;
  /** Regular expression tested against the request pathname; any when absent. */
  path?: string;
  /** How many matching calls still fail; the rule is spent at 0. */
  times: number;
  status: number;
  code?: string;
  message?: string;
  latencyMs?: number;
  /** Perform the real operation, then answer the error: a lost response. */
  afterEffect?: boolean;
}

/** The whole fault configuration, as accepted by `PUT /admin/faults`. */
export interface FaultConfig {
  /** Probability (0..1) that a /v3 call not caught by a rule fails. */
  errorRate: number;
  errorStatus: number;
  /** Delay added to every /v3 call. */
  latencyMs: number;
  rules: FaultRule[];
  /** Regular expressions; nodes whose hostname matches never become ready. */
  neverReadyNodes: string[];
  /** Regular expressions; nodes whose hostname matches never become Ready again after their upgrade window. */
  failUpgradeNodes: string[];
  /** Workloads with a container whose image matches `image` (in a cluster whose id or name matches `cluster`, any when absent) never become ready. */
  crashLoop: CrashLoopRule[];
}

/** One crash-loop rule: both fields are regular expressions. */
export interface CrashLoopRule {
  /** Tested against the cluster id and the cluster name; any cluster when absent. */
  cluster?: string;
  /** Tested against each container image of a workload's pod template. */
  image: string;
}

/** Thrown for a fault configuration that does not make sense. */
export class FaultConfigError extends Error {}

interface CompiledRule {
  rule: FaultRule;
  pathRe: RegExp | null;
}

interface CompiledCrashLoop {
  clusterRe: RegExp | null;
  imageRe: RegExp;
}

const MAX_LATENCY_MS = 120_000;
const MAX_PATTERN_LENGTH = 1000;

function emptyConfig(): FaultConfig {
  return { errorRate: 0, errorStatus: 503, latencyMs: 0, rules: [], neverReadyNodes: [], failUpgradeNodes: [], crashLoop: [] };
}

/** Holds the current fault configuration and decides which calls fail. */
export class Faults {
  private config: FaultConfig = emptyConfig();
  private rules: CompiledRule[] = [];
  private neverReady: RegExp[] = [];
  private failUpgrade: RegExp[] = [];
  private crashLoop: CompiledCrashLoop[] = [];

  /** Replaces the configuration; throws FaultConfigError and keeps the old one on bad input. */
  replace(input: unknown): void {
    const { config, rules, neverReady, failUpgrade, crashLoop } = validate(input);
    this.config = config;
    this.rules = rules;
    this.neverReady = neverReady;
    this.failUpgrade = failUpgrade;
    this.crashLoop = crashLoop;
  }

  clear(): void {
    this.replace({});
  }

  /** The configuration with each rule's remaining `times`. */
  snapshot(): FaultConfig {
    return structuredClone(this.config);
  }

  get latencyMs(): number {
    return this.config.latencyMs;
  }

  /**
   * The first live rule matching the call, with one of its `times` used up.
   * Calls to the Kubernetes API (`pathRequired`) only match rules that name a path.
   */
  takeRule(method: string, pathname: string, pathRequired = false): FaultRule | undefined {
    for (const { rule, pathRe } of this.rules) {
      if (rule.times <= 0) continue;
      if (pathRequired && pathRe === null) continue;
      if (rule.method !== undefined && rule.method.toUpperCase() !== method.toUpperCase()) continue;
      if (pathRe !== null && !pathRe.test(pathname)) continue;
      rule.times -= 1;
      return rule;
    }
    return undefined;
  }

  /** Rolls the dice for a random failure; answers the error reply or undefined. */
  randomFailure(): Reply | undefined {
    if (this.config.errorRate <= 0 || Math.random() >= this.config.errorRate) return undefined;
    const status = this.config.errorStatus;
    return errorReply(status, "ServerError", `simulated random failure (errorRate ${this.config.errorRate})`);
  }

  isNeverReady(hostname: string): boolean {
    return this.neverReady.some((re) => re.test(hostname));
  }

  failsUpgrade(hostname: string): boolean {
    return this.failUpgrade.some((re) => re.test(hostname));
  }

  /** Whether a container running `image` in the cluster (id, name) crash-loops. */
  crashLoops(clusterId: string, clusterName: string, image: string): boolean {
    return this.crashLoop.some(
      ({ clusterRe, imageRe }) => (clusterRe === null || clusterRe.test(clusterId) || clusterRe.test(clusterName)) && imageRe.test(image),
    );
  }
}

/** The error reply a rule answers with. */
export function ruleReply(rule: FaultRule): Reply {
  const code = rule.code ?? codeForStatus(rule.status);
  const message = rule.message ?? `simulated fault (status ${rule.status})`;
  return errorReply(rule.status, code, message);
}

interface Validated {
  config: FaultConfig;
  rules: CompiledRule[];
  neverReady: RegExp[];
  failUpgrade: RegExp[];
  crashLoop: CompiledCrashLoop[];
}

function validate(input: unknown): Validated {
  if (!isPlainObject(input)) throw new FaultConfigError("fault configuration must be a JSON object");
  const known = new Set(["errorRate", "errorStatus", "latencyMs", "rules", "neverReadyNodes", "failUpgradeNodes", "crashLoop"]);
  for (const key of Object.keys(input)) {
    // Unknown keys are refused so a typo cannot silently disable a fault a test relies on.
    if (!known.has(key)) throw new FaultConfigError(`unknown fault setting "${key}"`);
  }
  const config = emptyConfig();
  if (input.errorRate !== undefined) {
    const rate = input.errorRate;
    if (typeof rate !== "number" || !Number.isFinite(rate) || rate < 0 || rate > 1) {
      throw new FaultConfigError("errorRate must be a number from 0 to 1");
    }
    config.errorRate = rate;
  }
  if (input.errorStatus !== undefined) config.errorStatus = errorStatus(input.errorStatus, "errorStatus");
  if (input.latencyMs !== undefined) config.latencyMs = latency(input.latencyMs, "latencyMs");

  const rules: CompiledRule[] = [];
  if (input.rules !== undefined) {
    if (!Array.isArray(input.rules)) throw new FaultConfigError("rules must be an array");
    input.rules.forEach((raw: unknown, i: number) => {
      const compiled = validateRule(raw, `rules[${i}]`);
      rules.push(compiled);
      config.rules.push(compiled.rule);
    });
  }

  const neverReady: RegExp[] = [];
  if (input.neverReadyNodes !== undefined) {
    if (!Array.isArray(input.neverReadyNodes)) throw new FaultConfigError("neverReadyNodes must be an array of regular expressions");
    input.neverReadyNodes.forEach((raw: unknown, i: number) => {
      neverReady.push(pattern(raw, `neverReadyNodes[${i}]`));
      config.neverReadyNodes.push(raw as string);
    });
  }
  const failUpgrade: RegExp[] = [];
  if (input.failUpgradeNodes !== undefined) {
    if (!Array.isArray(input.failUpgradeNodes)) throw new FaultConfigError("failUpgradeNodes must be an array of regular expressions");
    input.failUpgradeNodes.forEach((raw: unknown, i: number) => {
      failUpgrade.push(pattern(raw, `failUpgradeNodes[${i}]`));
      config.failUpgradeNodes.push(raw as string);
    });
  }
  const crashLoop: CompiledCrashLoop[] = [];
  if (input.crashLoop !== undefined) {
    if (!Array.isArray(input.crashLoop)) throw new FaultConfigError("crashLoop must be an array of {cluster?, image} objects");
    input.crashLoop.forEach((raw: unknown, i: number) => {
      const where = `crashLoop[${i}]`;
      if (!isPlainObject(raw)) throw new FaultConfigError(`${where} must be an object with an image regular expression and an optional cluster one`);
      for (const key of Object.keys(raw)) {
        if (key !== "cluster" && key !== "image") throw new FaultConfigError(`${where} has unknown setting "${key}"`);
      }
      if (raw.image === undefined) throw new FaultConfigError(`${where}.image is required`);
      const imageRe = pattern(raw.image, `${where}.image`);
      const rule: CrashLoopRule = { image: raw.image as string };
      let clusterRe: RegExp | null = null;
      if (raw.cluster !== undefined) {
        clusterRe = pattern(raw.cluster, `${where}.cluster`);
        rule.cluster = raw.cluster as string;
      }
      crashLoop.push({ clusterRe, imageRe });
      config.crashLoop.push(rule);
    });
  }
  return { config, rules, neverReady, failUpgrade, crashLoop };
}

function validateRule(raw: unknown, where: string): CompiledRule {
  if (!isPlainObject(raw)) throw new FaultConfigError(`${where} must be an object`);
  const known = new Set(["method", "path", "times", "status", "code", "message", "latencyMs", "afterEffect"]);
  for (const key of Object.keys(raw)) {
    if (!known.has(key)) throw new FaultConfigError(`${where} has unknown setting "${key}"`);
  }
  const times = raw.times;
  if (typeof times !== "number" || !Number.isInteger(times) || times < 0) {
    throw new FaultConfigError(`${where}.times must be a non-negative integer`);
  }
  const rule: FaultRule = { times, status: errorStatus(raw.status, `${where}.status`) };
  let pathRe: RegExp | null = null;
  if (raw.method !== undefined) {
    if (typeof raw.method !== "string" || !/^[A-Za-z]+$/.test(raw.method)) {
      throw new FaultConfigError(`${where}.method must be an HTTP method name`);
    }
    rule.method = raw.method.toUpperCase();
  }
  if (raw.path !== undefined) {
    pathRe = pattern(raw.path, `${where}.path`);
    rule.path = raw.path as string;
  }
  for (const key of ["code", "message"] as const) {
    const value = raw[key];
    if (value === undefined) continue;
    if (typeof value !== "string" || value === "") throw new FaultConfigError(`${where}.${key} must be a non-empty string`);
    rule[key] = value;
  }
  if (raw.latencyMs !== undefined) rule.latencyMs = latency(raw.latencyMs, `${where}.latencyMs`);
  if (raw.afterEffect !== undefined) {
    if (typeof raw.afterEffect !== "boolean") throw new FaultConfigError(`${where}.afterEffect must be a boolean`);
    rule.afterEffect = raw.afterEffect;
  }
  return { rule, pathRe };
}

function errorStatus(value: unknown, where: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 400 || value > 599) {
    throw new FaultConfigError(`${where} must be an HTTP error status from 400 to 599`);
  }
  return value;
}

function latency(value: unknown, where: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > MAX_LATENCY_MS) {
    throw new FaultConfigError(`${where} must be an integer number of milliseconds from 0 to ${MAX_LATENCY_MS}`);
  }
  return value;
}

function pattern(value: unknown, where: string): RegExp {
  if (typeof value !== "string" || value.length > MAX_PATTERN_LENGTH) {
    throw new FaultConfigError(`${where} must be a regular expression string of at most ${MAX_PATTERN_LENGTH} characters`);
  }
  try {
    return new RegExp(value);
  } catch (err) {
    throw new FaultConfigError(`${where} is not a valid regular expression: ${(err as Error).message}`);
  }
}
