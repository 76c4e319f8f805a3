import { z } from '@hono/zod-openapi';
import { etcdQuorum, type NodeRole } from './cluster.js';
import type { CloudEvent } from './event.js';

/**
 * Fleet health as pure code: the policy (checks, thresholds, auto-heal after
 * Cluster API's MachineHealthCheck, autoscaling), and the one function that
 * turns a cluster's observation and its previous state into its new state,
 * the history entries, the events to raise and what to do about it. The sweep
 * activity gathers the observation and carries out the decisions; every rule
 * lives here, where it is unit-tested.
 */

// ---------------------------------------------------------------------------
// Durations

/** `90s`, `5m`, `1h30m`, `0`: whole hours, minutes and seconds, in that order. */
export const DurationSchema = z
  .string()
  .regex(/^(0|(?=\d)(\d+h)?(\d+m)?(\d+s)?)$/, 'a duration such as 30s, 5m or 1h30m')
  .refine((value) => durationSeconds(value) <= 7 * 86_400, 'at most 7 days (168h)')
  .openapi({ example: '5m' });

/** The seconds a {@link DurationSchema} string stands for. */
export function durationSeconds(value: string): number {
  const match = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(value);
  if (value === '0' || !match) return 0;
  return Number(match[1] ?? 0) * 3600 + Number(match[2] ?? 0) * 60 + Number(match[3] ?? 0);
}

/** A duration in words for messages: `5m12s`. */
export function formatSeconds(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const parts = [Math.floor(s / 3600) && `${Math.floor(s / 3600)}h`, Math.floor((s % 3600) / 60) && `${Math.floor((s % 3600) / 60)}m`, s % 60 && `${s % 60}s`];
  return parts.filter(Boolean).join('') || '0s';
}

// ---------------------------------------------------------------------------
// Policy

export const thresholdMetrics = ['nodeCpu', 'nodeMemory', 'nodeDisk', 'podRestartRate', 'pendingPods'] as const;
export type ThresholdMetric = (typeof thresholdMetrics)[number];

/**
 * The PromQL Kumo asks each cluster's Prometheus (the monitoring add-on) for a
 * threshold's metric, one series per node (or pod) where that makes sense.
 */
export const metricQueries: Record<ThresholdMetric, string> = {
  nodeCpu: '100 * (1 - avg by (node) (rate(node_cpu_seconds_total{mode="idle"}[5m])))',
  nodeMemory: '100 * (1 - avg by (node) (node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes))',
  nodeDisk: '100 * (1 - min by (node) (node_filesystem_avail_bytes{mountpoint="/"} / node_filesystem_size_bytes{mountpoint="/"}))',
  podRestartRate: 'sum by (namespace, pod) (increase(kube_pod_container_status_restarts_total[15m]))',
  pendingPods: 'sum(kube_pod_status_phase{phase="Pending"})',
};

/** Pods waiting for a node, cluster-wide: what makes a pool grow. */
export const pendingPodsQuery = metricQueries.pendingPods;

/** CPU requested on a pool's nodes, as a percentage of what they can allocate. */
export function poolCpuRequestQuery(hostnamePrefix: string): string {
  const nodes = `${hostnamePrefix.replace(/[\\.+*?()|[\]{}^$]/g, '\\\\$&')}.*`;
  return `100 * sum(kube_pod_container_resource_requests{resource="cpu",node=~"${nodes}"}) / sum(kube_node_status_allocatable{resource="cpu",node=~"${nodes}"})`;
}

const comparisons = ['>', '>=', '<', '<='] as const;
type Comparison = (typeof comparisons)[number];

export const ThresholdSchema = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9-]{0,62}$/, 'lowercase letters, digits and dashes, starting with a letter').openapi({ example: 'node-memory' }),
    metric: z.enum(thresholdMetrics).optional().openapi({ description: 'A metric Kumo knows the PromQL of; or give `query`' }),
    query: z.string().min(1).max(2000).optional().openapi({ description: 'Your own PromQL (an instant vector); each series is judged on its own' }),
    op: z.enum(comparisons).default('>'),
    value: z.number().finite(),
    for: DurationSchema.default('0').openapi({ description: 'How long the condition must hold before it counts ("memory > 90% for 5m")' }),
    severity: z.enum(['warning', 'critical']).default('warning'),
    enabled: z.boolean().default(true),
  })
  .strict()
  .refine((rule) => (rule.metric === undefined) !== (rule.query === undefined), { message: 'give exactly one of metric and query', path: ['metric'] })
  .openapi('Threshold');
export type Threshold = z.infer<typeof ThresholdSchema>;

const UnhealthyConditionSchema = z
  .object({
    type: z.string().min(1).max(100).openapi({ example: 'Ready' }),
    status: z.enum(['True', 'False', 'Unknown']),
    timeout: DurationSchema,
  })
  .strict();

const MaxUnhealthySchema = z
  .union([z.number().int().min(0).max(100_000), z.string().regex(/^(100|[1-9]?\d)%$/, 'a count or a percentage such as 40%')])
  .openapi({ description: 'Above this many unhealthy nodes nothing is remediated and an alert is raised (a count, or a percentage of the nodes, rounded down)', example: '40%' });

export const AutoHealSchema = z
  .object({
    enabled: z.boolean().optional(),
    unhealthyConditions: z.array(UnhealthyConditionSchema).min(1).max(10).optional().openapi({ description: 'A node is unhealthy when any of these has held for its timeout (OR-ed, as in MachineHealthCheck)' }),
    nodeStartupTimeout: DurationSchema.optional().openapi({ description: 'A node that has not joined its cluster this long after it was created is unhealthy; 0 turns this off' }),
    maxUnhealthy: MaxUnhealthySchema.optional(),
  })
  .strict()
  .openapi('AutoHealPolicy');
export type AutoHealPolicy = z.infer<typeof AutoHealSchema>;

export const AutoscalePoolSchema = z
  .object({
    min: z.number().int().min(0).max(1000),
    max: z.number().int().min(1).max(1000),
    scaleUp: z
      .object({
        pendingPods: z.number().int().min(1).optional().openapi({ description: 'Grow when at least this many pods wait for a node' }),
        cpuRequestPercent: z.number().min(1).max(1000).optional().openapi({ description: "Grow when the pool's requested CPU is at least this percentage of its allocatable CPU" }),
        for: DurationSchema.default('2m'),
        step: z.number().int().min(1).max(50).default(1),
      })
      .strict()
      .default({ pendingPods: 1, for: '2m', step: 1 }),
    scaleDown: z
      .object({
        cpuRequestPercent: z.number().min(0).max(100).default(30).openapi({ description: 'Shrink when requested CPU stays at most this percentage and no pod waits' }),
        for: DurationSchema.default('10m'),
        step: z.number().int().min(1).max(50).default(1),
      })
      .strict()
      .default({ cpuRequestPercent: 30, for: '10m', step: 1 }),
    cooldown: DurationSchema.default('10m').openapi({ description: 'After any change of the pool, how long before it may shrink' }),
    drainTimeoutSeconds: z.number().int().min(0).max(3600).default(300),
  })
  .strict()
  .refine((pool) => pool.max >= pool.min, { message: 'max must be at least min', path: ['max'] })
  .openapi('AutoscalePool');
export type AutoscalePool = z.infer<typeof AutoscalePoolSchema>;

const PoolNameSchema = z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'a node pool name');

/**
 * A health policy, for the whole fleet or one cluster. Every field is optional:
 * a cluster's policy overrides the fleet's field by field (thresholds by name,
 * auto-heal key by key, autoscaling by pool), and the fleet's the defaults.
 */
export const HealthPolicySchema = z
  .object({
    heartbeatTimeout: DurationSchema.optional().openapi({ description: "A node whose kubelet has not reported for this long fails the nodes check (default 60s)" }),
    thresholds: z.array(ThresholdSchema).max(50).optional(),
    autoHeal: AutoHealSchema.optional(),
    autoscale: z.record(PoolNameSchema, AutoscalePoolSchema).optional().openapi({ description: 'Per worker pool, by name' }),
    webhooks: z.array(z.string().url().max(2000)).max(10).optional().openapi({ description: "URLs that receive the cluster's health events as structured CloudEvents (best effort)" }),
  })
  .strict()
  .superRefine((policy, ctx) => {
    const names = new Set<string>();
    policy.thresholds?.forEach((rule, i) => {
      if (names.has(rule.name)) ctx.addIssue({ code: 'custom', path: ['thresholds', i, 'name'], message: `"${rule.name}" is given twice` });
      names.add(rule.name);
    });
    for (const url of policy.webhooks ?? []) {
      if (!/^https?:/.test(url)) ctx.addIssue({ code: 'custom', path: ['webhooks'], message: `${url} is not http(s)` });
    }
  })
  .openapi('HealthPolicy');
export type HealthPolicy = z.infer<typeof HealthPolicySchema>;

/** A policy with every default filled in, as the sweep applies it. */
export interface EffectivePolicy {
  heartbeatTimeout: string;
  thresholds: Threshold[];
  autoHeal: Required<AutoHealPolicy>;
  autoscale: Record<string, AutoscalePool>;
  webhooks: string[];
}

/** What Kumo watches when nobody said otherwise. Auto-heal is off until a policy turns it on. */
export const defaultPolicy: EffectivePolicy = {
  heartbeatTimeout: '60s',
  thresholds: [
    { name: 'node-memory', metric: 'nodeMemory', op: '>', value: 90, for: '5m', severity: 'warning', enabled: true },
    { name: 'node-cpu', metric: 'nodeCpu', op: '>', value: 90, for: '10m', severity: 'warning', enabled: true },
    { name: 'node-disk', metric: 'nodeDisk', op: '>', value: 85, for: '10m', severity: 'critical', enabled: true },
    { name: 'pod-restarts', metric: 'podRestartRate', op: '>', value: 5, for: '0', severity: 'warning', enabled: true },
    { name: 'pending-pods', metric: 'pendingPods', op: '>', value: 0, for: '10m', severity: 'warning', enabled: true },
  ],
  autoHeal: {
    enabled: false,
    unhealthyConditions: [
      { type: 'Ready', status: 'False', timeout: '5m' },
      { type: 'Ready', status: 'Unknown', timeout: '5m' },
    ],
    nodeStartupTimeout: '10m',
    maxUnhealthy: '40%',
  },
  autoscale: {},
  webhooks: [],
};

/** The policy a cluster runs under: the defaults, then the fleet's, then its own. */
export function effectivePolicy(fleet: HealthPolicy | null, cluster: HealthPolicy | null): EffectivePolicy {
  const layers = [fleet, cluster].filter((layer): layer is HealthPolicy => layer !== null);
  const result: EffectivePolicy = structuredClone(defaultPolicy);
  for (const layer of layers) {
    if (layer.heartbeatTimeout !== undefined) result.heartbeatTimeout = layer.heartbeatTimeout;
    for (const rule of layer.thresholds ?? []) {
      const at = result.thresholds.findIndex((existing) => existing.name === rule.name);
      if (at >= 0) result.thresholds[at] = rule;
      else result.thresholds.push(rule);
    }
    for (const [key, value] of Object.entries(layer.autoHeal ?? {})) {
      if (value !== undefined) (result.autoHeal as Record<string, unknown>)[key] = value;
    }
    Object.assign(result.autoscale, layer.autoscale ?? {});
    if (layer.webhooks !== undefined) result.webhooks = layer.webhooks;
  }
  return result;
}

/** The PromQL a threshold runs. */
export function thresholdQuery(rule: Pick<Threshold, 'metric' | 'query'>): string {
  return rule.query ?? metricQueries[rule.metric as ThresholdMetric];
}

/** The largest number of unhealthy nodes that still allows remediation. */
export function maxUnhealthyCount(maxUnhealthy: number | string, total: number): number {
  if (typeof maxUnhealthy === 'number') return maxUnhealthy;
  return Math.floor((Number(maxUnhealthy.slice(0, -1)) * total) / 100);
}

// ---------------------------------------------------------------------------
// Observations (gathered by the sweep activity)

/** One 0/1 probe and why. */
export interface Probe {
  ok: boolean;
  reason: string;
}

export interface NodeCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  /** When the condition last changed (its `lastTransitionTime`). */
  since: string | null;
  reason?: string;
}

/** One node as Rancher and (when the API answered) Kubernetes show it. */
export interface NodeObservation {
  /** Rancher's node id: what remediation replaces. */
  id: string;
  hostname: string;
  pool: string | null;
  roles: NodeRole[];
  rancherState: string;
  created: string | null;
  /** The Kubernetes Node; null when the cluster has none for it (not joined yet, or gone). */
  kube: { conditions: NodeCondition[]; lastHeartbeat: string | null } | null;
}

export interface PoolObservation {
  name: string;
  rancherId: string;
  quantity: number;
  roles: NodeRole[];
  pendingPods: number | null;
  cpuRequestPercent: number | null;
}

export interface Sample {
  labels: Record<string, string>;
  value: number;
}

export interface ClusterObservation {
  at: string;
  livez: Probe;
  readyz: Probe;
  agent: Probe;
  components: Probe;
  /** Null when the nodes could not be listed (the API is down): nothing is judged about them then. */
  nodes: NodeObservation[] | null;
  /** Per threshold name: its series, or why Prometheus could not be asked. */
  samples: Record<string, Sample[] | { error: string }>;
  pools: PoolObservation[];
  /** A mutating operation running on the cluster (nothing else may start). */
  runningOperation: string | null;
}

// ---------------------------------------------------------------------------
// State (kept per cluster between sweeps)

export const checkNames = ['apiLivez', 'apiReadyz', 'agentTcp', 'nodesReady', 'componentStatus'] as const;
export type CheckName = (typeof checkNames)[number];
/** Checks that are shown but never make a cluster unhealthy (ComponentStatus is deprecated upstream). */
export const softChecks: readonly CheckName[] = ['componentStatus'];

export const healthStatuses = ['healthy', 'degraded', 'unhealthy', 'unknown'] as const;
export type HealthStatus = (typeof healthStatuses)[number];

export interface CheckState {
  value: 0 | 1;
  reason: string;
  since: string;
  soft: boolean;
}

export interface NodeHealth {
  id: string;
  hostname: string;
  pool: string | null;
  roles: NodeRole[];
  ready: 'True' | 'False' | 'Unknown' | 'Absent';
  /** Why MachineHealthCheck-style rules find it unhealthy, and since when that condition holds. */
  unhealthy: { reason: string; since: string } | null;
}

export interface ThresholdState {
  rule: string;
  key: string;
  labels: Record<string, string>;
  value: number;
  /** When the condition was first seen holding (without a break since). */
  pendingSince: string;
  firingSince: string | null;
}

export interface PoolScaleState {
  pressureSince: string | null;
  lowSince: string | null;
  lastScaleAt: string | null;
}

export interface ClusterHealth {
  clusterId: string;
  status: HealthStatus;
  since: string;
  observedAt: string;
  checks: Record<CheckName, CheckState>;
  nodes: NodeHealth[];
  thresholds: ThresholdState[];
  /** Per threshold, why it could not be judged this sweep. */
  thresholdErrors: Record<string, string>;
  autoscale: Record<string, PoolScaleState>;
  remediation: { blockedSince: string | null };
}

export type HistoryKind = 'status' | 'check' | 'node' | 'threshold' | 'remediation' | 'autoscale';

/** One line of a cluster's health history: a change, or a decision with its inputs. */
export interface HistoryEntry {
  at: string;
  kind: HistoryKind;
  name: string;
  value: string;
  detail: Record<string, unknown>;
}

export type RemediationDecision =
  | { action: 'none'; reason?: string }
  | { action: 'wait'; reason: string }
  | { action: 'replace'; node: NodeHealth; reason: string }
  | { action: 'blocked'; reason: string; unhealthy: number; allowed: number };

export interface ScaleDecision {
  pool: string;
  poolRancherId: string;
  from: number;
  to: number;
  reason: string;
  inputs: { pendingPods: number | null; cpuRequestPercent: number | null; heldSeconds: number };
  drainTimeoutSeconds: number;
}

export interface Evaluation {
  health: ClusterHealth;
  history: HistoryEntry[];
  events: CloudEvent[];
  remediation: RemediationDecision;
  scale: ScaleDecision | null;
}

export const healthEventTypes = {
  changed: 'kumo.cluster.health.changed',
  nodeUnhealthy: 'kumo.node.unhealthy',
  breached: 'kumo.threshold.breached',
  resolved: 'kumo.threshold.resolved',
  remediationBlocked: 'kumo.cluster.remediation.blocked',
} as const;

/** The CloudEvents source of a cluster's health events. */
export function healthSource(clusterId: string): string {
  return `/kumo/clusters/${clusterId}/health`;
}

// ---------------------------------------------------------------------------
// Evaluation

const seconds = (from: string, to: string) => (Date.parse(to) - Date.parse(from)) / 1000;

function compare(value: number, op: Comparison, limit: number): boolean {
  switch (op) {
    case '>':
      return value > limit;
    case '>=':
      return value >= limit;
    case '<':
      return value < limit;
    case '<=':
      return value <= limit;
  }
}

/** The stable key of a series: its labels, sorted. */
export function seriesKey(rule: string, labels: Record<string, string>): string {
  const inner = Object.keys(labels)
    .sort()
    .map((name) => `${name}="${labels[name]}"`)
    .join(',');
  return `${rule}{${inner}}`;
}

/** Judges one node by the policy: the unhealthy condition that has held longest past its timeout, or null. */
export function nodeVerdict(node: NodeObservation, policy: EffectivePolicy, at: string): { reason: string; since: string } | null {
  if (!node.kube) {
    const startup = durationSeconds(policy.autoHeal.nodeStartupTimeout);
    if (startup > 0 && node.created && seconds(node.created, at) >= startup) {
      return { reason: `no Kubernetes node ${formatSeconds(seconds(node.created, at))} after it was created (nodeStartupTimeout ${policy.autoHeal.nodeStartupTimeout})`, since: node.created };
    }
    return null;
  }
  for (const rule of policy.autoHeal.unhealthyConditions) {
    const condition = node.kube.conditions.find((candidate) => candidate.type === rule.type);
    if (!condition || condition.status !== rule.status) continue;
    const since = condition.since ?? at;
    const held = seconds(since, at);
    if (held >= durationSeconds(rule.timeout)) {
      const why = condition.reason ? ` (${condition.reason})` : '';
      return { reason: `${rule.type}=${rule.status} for ${formatSeconds(held)}${why}, past its ${rule.timeout} timeout`, since };
    }
  }
  return null;
}

function readyOf(node: NodeObservation): NodeHealth['ready'] {
  if (!node.kube) return 'Absent';
  return node.kube.conditions.find((condition) => condition.type === 'Ready')?.status ?? 'Unknown';
}

/** The nodes check: every node Ready, and its kubelet heard from recently. */
function nodesProbe(nodes: NodeObservation[] | null, heartbeatTimeout: string, at: string): Probe {
  if (nodes === null) return { ok: false, reason: 'the nodes could not be listed' };
  const problems: string[] = [];
  for (const node of nodes) {
    if (!node.kube) {
      if (node.rancherState === 'active') problems.push(`${node.hostname} has no Kubernetes node`);
      continue;
    }
    const ready = node.kube.conditions.find((condition) => condition.type === 'Ready');
    if (ready?.status !== 'True') {
      problems.push(`${node.hostname} Ready=${ready?.status ?? 'Unknown'}${ready?.reason ? ` (${ready.reason})` : ''}`);
      continue;
    }
    const beat = node.kube.lastHeartbeat;
    if (!beat || seconds(beat, at) > durationSeconds(heartbeatTimeout)) {
      problems.push(`${node.hostname}'s kubelet last reported ${beat ? `${formatSeconds(seconds(beat, at))} ago` : 'never'}`);
    }
  }
  if (!problems.length) return { ok: true, reason: `${nodes.length} nodes Ready` };
  const shown = problems.slice(0, 5).join('; ');
  return { ok: false, reason: problems.length > 5 ? `${shown}; and ${problems.length - 5} more` : shown };
}

/**
 * Everything one sweep concludes about one cluster. Pure: the same previous
 * state, observation and policy always give the same result, so event ids
 * (derived from what changed and when) are the same when an activity retries.
 */
export function evaluateHealth(clusterId: string, prev: ClusterHealth | null, obs: ClusterObservation, policy: EffectivePolicy): Evaluation {
  const at = obs.at;
  const history: HistoryEntry[] = [];
  const events: CloudEvent[] = [];
  const event = (type: string, name: string, since: string, subject: string, data: Record<string, unknown>) =>
    events.push({ specversion: '1.0', id: `${clusterId}/${type}/${name}/${since}`, source: healthSource(clusterId), type, subject, time: at, datacontenttype: 'application/json', data: { cluster: clusterId, ...data } });

  // The 0/1 checks.
  const probes: Record<CheckName, Probe> = {
    apiLivez: obs.livez,
    apiReadyz: obs.readyz,
    agentTcp: obs.agent,
    nodesReady: nodesProbe(obs.nodes, policy.heartbeatTimeout, at),
    componentStatus: obs.components,
  };
  const checks = {} as Record<CheckName, CheckState>;
  for (const name of checkNames) {
    const probe = probes[name];
    const value = probe.ok ? 1 : 0;
    const before = prev?.checks[name];
    const since = before && before.value === value ? before.since : at;
    checks[name] = { value, reason: probe.reason, since, soft: softChecks.includes(name) };
    if (before?.value !== value) history.push({ at, kind: 'check', name, value: String(value), detail: { reason: probe.reason } });
  }

  // Nodes, judged as MachineHealthCheck would.
  // Without a node list (the API is down) the last known nodes stay, judged neither way.
  const nodes: NodeHealth[] = obs.nodes
    ? obs.nodes.map((node) => ({ id: node.id, hostname: node.hostname, pool: node.pool, roles: node.roles, ready: readyOf(node), unhealthy: nodeVerdict(node, policy, at) }))
    : (prev?.nodes.map((node) => ({ ...node, unhealthy: null })) ?? []);
  if (obs.nodes) {
    for (const node of nodes) {
      const before = prev?.nodes.find((candidate) => candidate.id === node.id);
      if (node.unhealthy && !before?.unhealthy) {
        history.push({ at, kind: 'node', name: node.hostname, value: 'unhealthy', detail: { id: node.id, reason: node.unhealthy.reason } });
        event(healthEventTypes.nodeUnhealthy, node.id, node.unhealthy.since, node.hostname, { node: node.hostname, nodeId: node.id, pool: node.pool, reason: node.unhealthy.reason, since: node.unhealthy.since });
      } else if (!node.unhealthy && before?.unhealthy) {
        history.push({ at, kind: 'node', name: node.hostname, value: 'healthy', detail: { id: node.id } });
      }
    }
  }

  // Thresholds: a series must hold past the rule's `for` to fire; one sweep below resets it.
  const thresholds: ThresholdState[] = [];
  const thresholdErrors: Record<string, string> = {};
  for (const rule of policy.thresholds.filter((candidate) => candidate.enabled)) {
    const samples = obs.samples[rule.name];
    if (samples === undefined) continue;
    if (!Array.isArray(samples)) {
      thresholdErrors[rule.name] = samples.error;
      // Nothing is known this sweep: keep what was pending or firing as it was.
      thresholds.push(...(prev?.thresholds.filter((state) => state.rule === rule.name) ?? []));
      continue;
    }
    for (const sample of samples) {
      if (!compare(sample.value, rule.op, rule.value)) continue;
      const key = seriesKey(rule.name, sample.labels);
      const before = prev?.thresholds.find((state) => state.key === key);
      const pendingSince = before?.pendingSince ?? at;
      const held = seconds(pendingSince, at);
      const firing = held >= durationSeconds(rule.for);
      const firingSince = before?.firingSince ?? (firing ? at : null);
      thresholds.push({ rule: rule.name, key, labels: sample.labels, value: sample.value, pendingSince, firingSince });
      if (firing && !before?.firingSince) {
        const text = `${rule.name} ${rule.op} ${rule.value}: ${sample.value} for ${formatSeconds(held)} (for ${rule.for})`;
        history.push({ at, kind: 'threshold', name: key, value: 'breached', detail: { value: sample.value, rule } });
        event(healthEventTypes.breached, key, pendingSince, rule.name, { threshold: rule.name, severity: rule.severity, labels: sample.labels, value: sample.value, op: rule.op, limit: rule.value, for: rule.for, heldSeconds: Math.round(held), message: text });
      }
    }
    for (const before of prev?.thresholds.filter((state) => state.rule === rule.name && state.firingSince) ?? []) {
      if (thresholds.some((state) => state.key === before.key)) continue;
      history.push({ at, kind: 'threshold', name: before.key, value: 'resolved', detail: { firingSince: before.firingSince } });
      event(healthEventTypes.resolved, before.key, at, rule.name, { threshold: rule.name, labels: before.labels, firingSince: before.firingSince });
    }
  }

  // The cluster's status.
  const hardFailing = checkNames.filter((name) => !checks[name].soft && checks[name].value === 0);
  const reachable = checks.apiLivez.value === 1 && checks.apiReadyz.value === 1 && checks.agentTcp.value === 1;
  const status: HealthStatus = !reachable ? 'unhealthy' : hardFailing.length || thresholds.some((state) => state.firingSince) ? 'degraded' : 'healthy';
  const since = prev && prev.status === status ? prev.since : at;
  if (prev?.status !== status) {
    const failing = hardFailing.map((name) => ({ check: name, reason: checks[name].reason }));
    history.push({ at, kind: 'status', name: 'status', value: status, detail: { from: prev?.status ?? null, failing } });
    event(healthEventTypes.changed, 'status', at, clusterId, { from: prev?.status ?? null, to: status, failing, firing: thresholds.filter((state) => state.firingSince).map((state) => state.key) });
  }

  // Remediation.
  let blockedSince = prev?.remediation.blockedSince ?? null;
  const remediation = decideRemediation(nodes, obs, policy);
  if (remediation.action === 'blocked') {
    if (!blockedSince) {
      blockedSince = at;
      history.push({ at, kind: 'remediation', name: 'blocked', value: `${remediation.unhealthy}/${nodes.length}`, detail: { reason: remediation.reason } });
      event(healthEventTypes.remediationBlocked, 'blocked', at, clusterId, {
        reason: remediation.reason,
        unhealthy: nodes.filter((node) => node.unhealthy).map((node) => ({ node: node.hostname, reason: node.unhealthy?.reason })),
        maxUnhealthy: policy.autoHeal.maxUnhealthy,
        allowed: remediation.allowed,
      });
    }
  } else if (blockedSince && remediation.action !== 'wait') {
    history.push({ at, kind: 'remediation', name: 'unblocked', value: String(nodes.filter((node) => node.unhealthy).length), detail: {} });
    blockedSince = null;
  }

  // Autoscaling (one change per cluster per sweep, and never beside a remediation).
  const autoscale: Record<string, PoolScaleState> = {};
  let scale: ScaleDecision | null = null;
  for (const pool of obs.pools) {
    const config = policy.autoscale[pool.name];
    if (!config) continue;
    const result = decideScale(pool, config, prev?.autoscale[pool.name] ?? { pressureSince: null, lowSince: null, lastScaleAt: null }, at);
    autoscale[pool.name] = result.state;
    if (result.decision && !scale && remediation.action !== 'replace' && !obs.runningOperation && reachable) scale = result.decision;
  }
  if (scale) {
    autoscale[scale.pool] = { pressureSince: null, lowSince: null, lastScaleAt: at };
    history.push({ at, kind: 'autoscale', name: scale.pool, value: `${scale.from}->${scale.to}`, detail: { reason: scale.reason, inputs: scale.inputs } });
  }

  return {
    health: { clusterId, status, since, observedAt: at, checks, nodes, thresholds, thresholdErrors, autoscale, remediation: { blockedSince } },
    history,
    events,
    remediation,
    scale,
  };
}

/**
 * What MachineHealthCheck would do now: replace the node unhealthy the longest
 * (workers first), unless more nodes are unhealthy than `maxUnhealthy` allows
 * (then nothing, and an alert), an operation already runs on the cluster, or
 * replacing it would cost etcd its quorum or the cluster its last control plane.
 */
export function decideRemediation(nodes: NodeHealth[], obs: Pick<ClusterObservation, 'nodes' | 'runningOperation' | 'livez'>, policy: EffectivePolicy): RemediationDecision {
  if (!policy.autoHeal.enabled) return { action: 'none', reason: 'auto-heal is off' };
  if (obs.nodes === null || !obs.livez.ok) return { action: 'wait', reason: 'the API server does not answer, so nodes cannot be judged' };
  const unhealthy = nodes.filter((node) => node.unhealthy);
  if (!unhealthy.length) return { action: 'none' };
  const allowed = maxUnhealthyCount(policy.autoHeal.maxUnhealthy, nodes.length);
  if (unhealthy.length > allowed) {
    return {
      action: 'blocked',
      unhealthy: unhealthy.length,
      allowed,
      reason: `${unhealthy.length} of ${nodes.length} nodes are unhealthy, more than maxUnhealthy ${policy.autoHeal.maxUnhealthy} (${allowed}) allows: remediation stopped`,
    };
  }
  if (obs.runningOperation) return { action: 'wait', reason: `operation ${obs.runningOperation} is running on the cluster` };
  const order = (node: NodeHealth) => (node.roles.includes('etcd') || node.roles.includes('controlplane') ? 1 : 0);
  const candidates = [...unhealthy].sort((a, b) => order(a) - order(b) || Date.parse(a.unhealthy!.since) - Date.parse(b.unhealthy!.since) || a.hostname.localeCompare(b.hostname));
  const refusals: string[] = [];
  for (const node of candidates) {
    const refusal = controlPlaneRefusal(node, nodes);
    if (refusal) {
      refusals.push(refusal);
      continue;
    }
    return { action: 'replace', node, reason: `auto-heal: node ${node.hostname} is unhealthy: ${node.unhealthy!.reason}` };
  }
  return { action: 'wait', reason: refusals.join('; ') };
}

/** Why replacing this node now would hurt the control plane, or null. */
function controlPlaneRefusal(node: NodeHealth, nodes: NodeHealth[]): string | null {
  const healthyOthers = (role: NodeRole) => nodes.filter((other) => other.id !== node.id && other.roles.includes(role) && other.ready === 'True' && !other.unhealthy).length;
  if (node.roles.includes('etcd')) {
    const members = nodes.filter((other) => other.roles.includes('etcd')).length;
    if (members < 3) return `${node.hostname} is one of ${members} etcd members; replacing it would lose quorum (restore from a snapshot instead)`;
    if (healthyOthers('etcd') < etcdQuorum(members)) return `replacing ${node.hostname} would leave ${healthyOthers('etcd')} of ${members} etcd members healthy, below quorum (${etcdQuorum(members)})`;
  }
  if (node.roles.includes('controlplane') && healthyOthers('controlplane') < 1) return `${node.hostname} is the last healthy control-plane node`;
  return null;
}

/**
 * A pool's autoscaling: grow by `step` while pods wait or requested CPU stays
 * high for `scaleUp.for`; shrink by `step` when requests stay low (and nothing
 * waits) for `scaleDown.for` and the cooldown since the last change has passed.
 * Always within `min` and `max`; a pool outside them is brought back at once.
 */
export function decideScale(pool: PoolObservation, config: AutoscalePool, prev: PoolScaleState, at: string): { state: PoolScaleState; decision: ScaleDecision | null } {
  const { pendingPods, cpuRequestPercent } = pool;
  const pressure =
    (config.scaleUp.pendingPods !== undefined && pendingPods !== null && pendingPods >= config.scaleUp.pendingPods) ||
    (config.scaleUp.cpuRequestPercent !== undefined && cpuRequestPercent !== null && cpuRequestPercent >= config.scaleUp.cpuRequestPercent);
  const low = !pressure && (pendingPods ?? 0) === 0 && cpuRequestPercent !== null && cpuRequestPercent <= config.scaleDown.cpuRequestPercent;
  const state: PoolScaleState = {
    pressureSince: pressure ? (prev.pressureSince ?? at) : null,
    lowSince: low ? (prev.lowSince ?? at) : null,
    lastScaleAt: prev.lastScaleAt,
  };
  const decision = (to: number, reason: string, heldSeconds: number): { state: PoolScaleState; decision: ScaleDecision } => ({
    state,
    decision: {
      pool: pool.name,
      poolRancherId: pool.rancherId,
      from: pool.quantity,
      to,
      reason: `autoscale: ${reason}`,
      inputs: { pendingPods, cpuRequestPercent, heldSeconds: Math.round(heldSeconds) },
      drainTimeoutSeconds: config.drainTimeoutSeconds,
    },
  });
  const inputs = `pending pods ${pendingPods ?? 'unknown'}, requested CPU ${cpuRequestPercent === null ? 'unknown' : `${Math.round(cpuRequestPercent)}%`}`;
  if (pool.quantity < config.min) return decision(config.min, `pool ${pool.name} has ${pool.quantity} nodes, below its min ${config.min}`, 0);
  if (pool.quantity > config.max) return decision(config.max, `pool ${pool.name} has ${pool.quantity} nodes, above its max ${config.max}`, 0);
  if (state.pressureSince && pool.quantity < config.max) {
    const held = seconds(state.pressureSince, at);
    if (held >= durationSeconds(config.scaleUp.for)) {
      return decision(Math.min(config.max, pool.quantity + config.scaleUp.step), `${inputs} for ${formatSeconds(held)} (scale up after ${config.scaleUp.for})`, held);
    }
  }
  if (state.lowSince && pool.quantity > config.min) {
    const held = seconds(state.lowSince, at);
    const cooled = !state.lastScaleAt || seconds(state.lastScaleAt, at) >= durationSeconds(config.cooldown);
    if (held >= durationSeconds(config.scaleDown.for) && cooled) {
      return decision(Math.max(config.min, pool.quantity - config.scaleDown.step), `${inputs} for ${formatSeconds(held)} (scale down after ${config.scaleDown.for}, cooldown ${config.cooldown})`, held);
    }
  }
  return { state, decision: null };
}

/** Operation ids of automatic remediations: one per node, so a node is replaced at most once whatever retries or sweeps happen. */
export function remediationKey(clusterId: string, nodeId: string): string {
  return `heal/${clusterId}/${nodeId}`;
}
