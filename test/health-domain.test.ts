import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  decideScale,
  DurationSchema,
  durationSeconds,
  effectivePolicy,
  evaluateHealth,
  HealthPolicySchema,
  healthEventTypes,
  maxUnhealthyCount,
  type AutoscalePool,
  type ClusterHealth,
  type ClusterObservation,
  type EffectivePolicy,
  type NodeObservation,
} from '../domain/health.js';

const t0 = Date.parse('2026-12-01T10:00:00.000Z');
const at = (seconds: number) => new Date(t0 + seconds * 1000).toISOString();
const ok = { ok: true, reason: 'ok' };

function node(name: string, options: { ready?: 'True' | 'False' | 'Unknown'; since?: number; roles?: NodeObservation['roles']; joined?: boolean; created?: number } = {}): NodeObservation {
  return {
    id: `m-${name}`,
    hostname: name,
    pool: 'workers',
    roles: options.roles ?? ['worker'],
    rancherState: 'active',
    created: at(options.created ?? -3600),
    // '' stands for "fresh": observation() makes it five seconds before the sweep.
    kube: options.joined === false ? null : { conditions: [{ type: 'Ready', status: options.ready ?? 'True', since: at(options.since ?? -3600) }], lastHeartbeat: '' },
  };
}

function observation(seconds: number, overrides: Partial<ClusterObservation> = {}): ClusterObservation {
  const obs = { at: at(seconds), livez: ok, readyz: ok, agent: ok, components: ok, nodes: [node('w1'), node('w2'), node('w3')], samples: {}, pools: [], runningOperation: null, ...overrides };
  const nodes = obs.nodes?.map((item) => (item.kube?.lastHeartbeat === '' ? { ...item, kube: { ...item.kube, lastHeartbeat: at(seconds - 5) } } : item)) ?? null;
  return { ...obs, nodes };
}

function policy(overrides: Parameters<typeof HealthPolicySchema.parse>[0] = {}): EffectivePolicy {
  return effectivePolicy(HealthPolicySchema.parse(overrides), null);
}

/** Runs observations one after the other, as sweeps would, returning every evaluation. */
function sweeps(observations: ClusterObservation[], rules: EffectivePolicy) {
  let prev: ClusterHealth | null = null;
  return observations.map((obs) => {
    const result = evaluateHealth('c1', prev, obs, rules);
    prev = result.health;
    return result;
  });
}

describe('durations and policies', () => {
  test('durations: 30s, 5m, 1h30m and 0; anything else is refused', () => {
    assert.equal(durationSeconds('30s'), 30);
    assert.equal(durationSeconds('5m'), 300);
    assert.equal(durationSeconds('1h30m'), 5400);
    assert.equal(durationSeconds('0'), 0);
    for (const bad of ['5x', '', 'm', '-1s', '1.5m', '169h']) assert.equal(DurationSchema.safeParse(bad).success, false, bad);
  });

  test('a threshold needs exactly one of metric and query, and names are unique', () => {
    assert.equal(HealthPolicySchema.safeParse({ thresholds: [{ name: 'a', value: 1 }] }).success, false);
    assert.equal(HealthPolicySchema.safeParse({ thresholds: [{ name: 'a', metric: 'nodeCpu', query: 'up', value: 1 }] }).success, false);
    const twice = HealthPolicySchema.safeParse({ thresholds: [{ name: 'a', metric: 'nodeCpu', value: 1 }, { name: 'a', query: 'up', value: 1 }] });
    assert.equal(twice.success, false);
    assert.deepEqual(twice.error?.issues[0]?.path, ['thresholds', 1, 'name']);
    assert.equal(HealthPolicySchema.safeParse({ autoscale: { workers: { min: 3, max: 2 } } }).success, false);
    assert.equal(HealthPolicySchema.safeParse({ autoHeal: { maxUnhealthy: '140%' } }).success, false);
    assert.equal(HealthPolicySchema.safeParse({ unknownField: 1 }).success, false);
  });

  test('the cluster overrides the fleet field by field: thresholds by name, auto-heal by key, autoscaling by pool', () => {
    const fleet = HealthPolicySchema.parse({ thresholds: [{ name: 'node-memory', metric: 'nodeMemory', value: 80, for: '1m' }], autoHeal: { enabled: true, maxUnhealthy: 2 } });
    const own = HealthPolicySchema.parse({ thresholds: [{ name: 'custom', query: 'up == 0', value: 0, op: '>' }], autoHeal: { nodeStartupTimeout: '0' } });
    const result = effectivePolicy(fleet, own);
    assert.equal(result.thresholds.find((rule) => rule.name === 'node-memory')?.value, 80);
    assert.ok(result.thresholds.find((rule) => rule.name === 'custom'));
    assert.ok(result.thresholds.find((rule) => rule.name === 'node-disk'), 'defaults stay');
    assert.deepEqual([result.autoHeal.enabled, result.autoHeal.maxUnhealthy, result.autoHeal.nodeStartupTimeout], [true, 2, '0']);
    assert.equal(effectivePolicy(null, null).autoHeal.enabled, false, 'auto-heal is off by default');
  });

  test('maxUnhealthy: a count, or a percentage rounded down (as MachineHealthCheck)', () => {
    assert.equal(maxUnhealthyCount('40%', 25), 10);
    assert.equal(maxUnhealthyCount('40%', 6), 2);
    assert.equal(maxUnhealthyCount('100%', 3), 3);
    assert.equal(maxUnhealthyCount(1, 50), 1);
  });
});

describe('checks and status', () => {
  test('all checks passing is healthy; the first sweep says so once', () => {
    const [first, second] = sweeps([observation(0), observation(60)], policy());
    assert.equal(first!.health.status, 'healthy');
    assert.deepEqual(first!.events.map((event) => event.type), [healthEventTypes.changed]);
    assert.equal(second!.events.length, 0);
    assert.equal(second!.health.checks.apiLivez.since, at(0), 'since when the value holds');
  });

  test('an unreachable agent or API server makes the cluster unhealthy at once, with the reason', () => {
    for (const broken of [{ agent: { ok: false, reason: 'TCP 127.0.0.1:1: ECONNREFUSED' } }, { livez: { ok: false, reason: '/livez answered 503' }, nodes: null }]) {
      const [, second] = sweeps([observation(0), observation(60, broken)], policy());
      assert.equal(second!.health.status, 'unhealthy');
      const changed = second!.events.find((event) => event.type === healthEventTypes.changed);
      assert.ok(changed);
      assert.equal((changed.data as { to: string }).to, 'unhealthy');
      assert.match(JSON.stringify(changed.data), /ECONNREFUSED|503/);
    }
  });

  test('component status is soft: shown failing, never unhealthy', () => {
    const [result] = sweeps([observation(0, { components: { ok: false, reason: 'etcd-0: unhealthy' } })], policy());
    assert.equal(result!.health.checks.componentStatus.value, 0);
    assert.equal(result!.health.status, 'healthy');
  });

  test('a NotReady node or a silent kubelet degrades the cluster', () => {
    const silent = node('w2');
    silent.kube!.lastHeartbeat = at(-300);
    const [notReady] = sweeps([observation(0, { nodes: [node('w1'), node('w2', { ready: 'False', since: -10 })] })], policy());
    const [stale] = sweeps([observation(0, { nodes: [node('w1'), silent] })], policy());
    assert.equal(notReady!.health.status, 'degraded');
    assert.match(notReady!.health.checks.nodesReady.reason, /w2 Ready=False/);
    assert.match(stale!.health.checks.nodesReady.reason, /w2's kubelet last reported 5m ago/);
  });

  test('event ids depend only on what changed and when, so a retried check raises the same events', () => {
    const a = evaluateHealth('c1', null, observation(0), policy());
    const b = evaluateHealth('c1', null, observation(0), policy());
    assert.deepEqual(a.events.map((event) => event.id), b.events.map((event) => event.id));
  });
});

describe('thresholds', () => {
  const rules = policy({ thresholds: [{ name: 'node-memory', metric: 'nodeMemory', op: '>', value: 90, for: '5m' }] });
  const memory = (seconds: number, value: number) => observation(seconds, { samples: { 'node-memory': [{ labels: { node: 'w1' }, value }] } });

  test('held past its duration it is breached, once, and resolved when it drops', () => {
    const results = sweeps([memory(0, 95), memory(120, 96), memory(300, 97), memory(360, 97), memory(420, 50)], rules);
    const breached = results.map((result) => result.events.filter((event) => event.type === healthEventTypes.breached).length);
    assert.deepEqual(breached, [0, 0, 1, 0, 0]);
    assert.equal(results[2]!.health.status, 'degraded');
    assert.ok(results[4]!.events.some((event) => event.type === healthEventTypes.resolved));
    assert.equal(results[4]!.health.status, 'healthy');
  });

  test('a brief spike does not breach: one sweep below starts the count again', () => {
    const results = sweeps([memory(0, 95), memory(120, 50), memory(240, 95), memory(420, 95)], rules);
    assert.equal(results.flatMap((result) => result.events).filter((event) => event.type === healthEventTypes.breached).length, 0);
  });

  test('a query Prometheus cannot answer keeps the state as it was and says why', () => {
    const results = sweeps([memory(0, 95), observation(120, { samples: { 'node-memory': { error: 'Prometheus service not found' } } }), memory(300, 95)], rules);
    assert.equal(results[1]!.health.thresholdErrors['node-memory'], 'Prometheus service not found');
    assert.equal(results[2]!.events.filter((event) => event.type === healthEventTypes.breached).length, 1);
  });
});

describe('auto-heal', () => {
  const heal = policy({ autoHeal: { enabled: true, maxUnhealthy: '40%', unhealthyConditions: [{ type: 'Ready', status: 'False', timeout: '5m' }] } });
  const five = (sick: string[], since = -400) => ['w1', 'w2', 'w3', 'w4', 'w5'].map((name) => node(name, sick.includes(name) ? { ready: 'False', since } : {}));

  test('a node NotReady past its timeout is replaced, with the reason; before the timeout it is not', () => {
    const [early] = sweeps([observation(0, { nodes: five(['w3'], -60) })], heal);
    assert.equal(early!.remediation.action, 'none');
    const [late] = sweeps([observation(0, { nodes: five(['w3']) })], heal);
    assert.equal(late!.remediation.action, 'replace');
    assert.equal(late!.remediation.action === 'replace' && late!.remediation.node.id, 'm-w3');
    assert.match(late!.remediation.action === 'replace' ? late!.remediation.reason : '', /w3 is unhealthy: Ready=False for 6m40s/);
    assert.ok(late!.events.some((event) => event.type === healthEventTypes.nodeUnhealthy && event.subject === 'w3'));
  });

  test('more unhealthy nodes than maxUnhealthy: nothing is replaced and one alert is raised', () => {
    const results = sweeps([observation(0, { nodes: five(['w1', 'w2', 'w3']) }), observation(60, { nodes: five(['w1', 'w2', 'w3']) })], heal);
    assert.equal(results[0]!.remediation.action, 'blocked');
    assert.deepEqual(results.map((result) => result.events.filter((event) => event.type === healthEventTypes.remediationBlocked).length), [1, 0]);
    assert.equal(results[1]!.remediation.action, 'blocked');
  });

  test('nothing is judged while the API server does not answer, and nothing runs beside another operation', () => {
    const [down] = sweeps([observation(0, { nodes: null, livez: { ok: false, reason: 'down' } })], heal);
    assert.equal(down!.remediation.action, 'wait');
    const [busy] = sweeps([observation(0, { nodes: five(['w3']), runningOperation: 'op-1' })], heal);
    assert.equal(busy!.remediation.action, 'wait');
  });

  test('a node that never joined is unhealthy after nodeStartupTimeout', () => {
    const [result] = sweeps([observation(0, { nodes: [node('w1'), node('w2'), node('w3'), node('w4', { joined: false, created: -700 })] })], heal);
    assert.equal(result!.remediation.action, 'replace');
    assert.match(result!.remediation.action === 'replace' ? result!.remediation.reason : '', /nodeStartupTimeout/);
  });

  test('etcd keeps its quorum: a sole member is never replaced, one of three is', () => {
    const lenient = policy({ autoHeal: { enabled: true, maxUnhealthy: '100%' } });
    const etcd = (name: string, sick: boolean) => node(name, { roles: ['etcd', 'controlplane'], ...(sick ? { ready: 'False', since: -600 } : {}) });
    const [sole] = sweeps([observation(0, { nodes: [etcd('e1', true), node('w1')] })], lenient);
    assert.equal(sole!.remediation.action, 'wait');
    const [oneOfThree] = sweeps([observation(0, { nodes: [etcd('e1', true), etcd('e2', false), etcd('e3', false), node('w1')] })], lenient);
    assert.equal(oneOfThree!.remediation.action, 'replace');
    const [twoOfThree] = sweeps([observation(0, { nodes: [etcd('e1', true), etcd('e2', true), etcd('e3', false), node('w1')] })], lenient);
    assert.equal(twoOfThree!.remediation.action, 'wait');
    assert.match(twoOfThree!.remediation.action === 'wait' ? twoOfThree!.remediation.reason : '', /quorum/);
  });

  test('workers are remediated before control-plane nodes', () => {
    const lenient = policy({ autoHeal: { enabled: true, maxUnhealthy: '100%' } });
    const nodes = [node('e1', { roles: ['etcd', 'controlplane'], ready: 'False', since: -900 }), node('e2', { roles: ['etcd', 'controlplane'] }), node('e3', { roles: ['etcd', 'controlplane'] }), node('w1', { ready: 'False', since: -400 })];
    const [result] = sweeps([observation(0, { nodes })], lenient);
    assert.equal(result!.remediation.action === 'replace' && result!.remediation.node.hostname, 'w1');
  });
});

describe('autoscaling', () => {
  const config: AutoscalePool = {
    min: 1,
    max: 3,
    scaleUp: { pendingPods: 1, for: '2m', step: 1 },
    scaleDown: { cpuRequestPercent: 30, for: '5m', step: 1 },
    cooldown: '10m',
    drainTimeoutSeconds: 60,
  };
  const pool = (quantity: number, pendingPods: number, cpu: number) => ({ name: 'workers', rancherId: 'np-1', quantity, roles: ['worker' as const], pendingPods, cpuRequestPercent: cpu });
  const empty = { pressureSince: null, lowSince: null, lastScaleAt: null };

  test('pressure held for the period grows the pool by a step, never past max', () => {
    const first = decideScale(pool(1, 4, 90), config, empty, at(0));
    assert.equal(first.decision, null);
    const later = decideScale(pool(1, 4, 90), config, first.state, at(120));
    assert.deepEqual([later.decision?.from, later.decision?.to], [1, 2]);
    assert.deepEqual(later.decision?.inputs, { pendingPods: 4, cpuRequestPercent: 90, heldSeconds: 120 });
    assert.equal(decideScale(pool(3, 4, 90), config, first.state, at(120)).decision, null);
  });

  test('low usage shrinks the pool only after its period and the cooldown since the last change', () => {
    const justScaled = { ...empty, lastScaleAt: at(0) };
    const low = decideScale(pool(3, 0, 10), config, justScaled, at(60));
    assert.equal(low.decision, null);
    assert.equal(decideScale(pool(3, 0, 10), config, low.state, at(400)).decision, null, 'held 5m40s but the 10m cooldown has not passed');
    const cooled = decideScale(pool(3, 0, 10), config, low.state, at(660));
    assert.deepEqual([cooled.decision?.from, cooled.decision?.to], [3, 2]);
    assert.equal(decideScale(pool(1, 0, 10), config, { ...low.state, lastScaleAt: null }, at(660)).decision, null, 'never below min');
  });

  test('a pool outside min and max is brought back at once', () => {
    assert.equal(decideScale(pool(0, 0, 0), config, empty, at(0)).decision?.to, 1);
    assert.equal(decideScale(pool(5, 0, 50), config, empty, at(0)).decision?.to, 3);
  });

  test('the evaluation starts one scaling, records its inputs, and none beside a remediation or a running operation', () => {
    const rules = policy({ autoscale: { workers: config } });
    const pressured = (seconds: number, extra: Partial<ClusterObservation> = {}) => observation(seconds, { pools: [pool(1, 5, 95)], ...extra });
    const results = sweeps([pressured(0), pressured(150)], rules);
    assert.equal(results[1]!.scale?.to, 2);
    assert.ok(results[1]!.history.some((entry) => entry.kind === 'autoscale' && entry.value === '1->2'));
    const busy = sweeps([pressured(0), pressured(150, { runningOperation: 'op-9' })], rules);
    assert.equal(busy[1]!.scale, null);
  });
});
