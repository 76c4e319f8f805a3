import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { healthEventTypes, pendingPodsQuery, poolCpuRequestQuery, remediationKey } from '../domain/health.js';
import { newClusterOperation } from '../domain/operation.js';
import { Store } from '../store/index.js';
import { replaceNodeSteps } from '../workflows/cluster.js';
import { recordHistory, startTestStack, waitForOperation, type TestStack } from './helpers/stack.js';
import { waitFor } from './helpers/wait.js';

const until = <T>(what: string, probe: () => Promise<T>, timeoutMs = 60_000): Promise<NonNullable<T>> =>
  waitFor(what, async () => (await probe()) || undefined, { timeoutMs, intervalMs: 250 }) as Promise<NonNullable<T>>;

/**
 * Fleet health end to end over HTTP against the embedded stack: sweeps started
 * through their Temporal Schedule, checks broken in the simulator (agent, API
 * server, nodes, Prometheus values), health events routed by a binding to a
 * real Python function, auto-heal with its maxUnhealthy guard, and autoscaling.
 */
describe('fleet health', () => {
  let stack: TestStack;
  let functionsCluster: string;

  const rancherIdOf = async (cluster: string) => (await stack.api(`/v1/clusters/${cluster}`)).body.rancher.id as string;
  const health = async (cluster: string) => (await stack.api(`/v1/clusters/${cluster}/health`)).body;

  /** Triggers a sweep and waits until a sweep that started after the call has finished. */
  async function sweep(): Promise<any> {
    const known = new Set(((await stack.api('/v1/health/sweeps?limit=20')).body.items as Array<{ id: string }>).map((item) => item.id));
    let triggeredAt = 0;
    return until(
      'a new sweep',
      async () => {
        if (Date.now() - triggeredAt > 10_000) {
          const triggered = await stack.api('/v1/health/sweeps', { method: 'POST' });
          assert.equal(triggered.status, 202, JSON.stringify(triggered.body));
          triggeredAt = Date.now();
        }
        const items = (await stack.api('/v1/health/sweeps?limit=20')).body.items as Array<{ id: string; finishedAt: string | null; summary: unknown }>;
        return items.find((item) => !known.has(item.id) && item.finishedAt);
      },
      90_000,
    );
  }

  async function createCluster(name: string, workers: number): Promise<void> {
    const created = await stack.api('/v1/clusters', {
      body: { name, kubernetesVersion: 'v1.30.6-rancher1-1', nodePools: [{ name: 'control', roles: ['etcd', 'controlplane'], quantity: 1 }, { name: 'workers', roles: ['worker'], quantity: workers }] },
    });
    assert.equal(created.status, 202, JSON.stringify(created.body));
    const done = await waitForOperation(stack, created.body.operation.id, 120_000);
    assert.equal(done.status, 'succeeded', JSON.stringify(done.failure));
  }

  async function policy(cluster: string, body: unknown): Promise<void> {
    const response = await stack.api(`/v1/clusters/${cluster}/health/policy`, { method: 'PUT', body });
    assert.equal(response.status, 200, JSON.stringify(response.body));
  }

  const operationsOf = async (cluster: string, kind: string) =>
    (await stack.api(`/v1/operations?target=${encodeURIComponent(`cluster/${cluster}`)}&kind=${kind}&limit=100`)).body.items as Array<{ id: string; status: string; reason?: string }>;

  /** The simulated cluster's Kubernetes API, as Rancher proxies it. */
  async function kube(cluster: string, path: string, body: unknown): Promise<void> {
    const response = await fetch(`${stack.simUrl}/k8s/clusters/${await rancherIdOf(cluster)}${path}`, {
      method: 'POST',
      headers: { authorization: 'Bearer kumo-sim-token', 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    assert.ok(response.ok || response.status === 409, `${path}: ${response.status} ${await response.text()}`);
  }

  /** What the monitoring add-on leaves for Kumo to query: its Prometheus Service. */
  async function installPrometheusService(cluster: string): Promise<void> {
    await kube(cluster, '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'kumo-monitoring' } });
    await kube(cluster, '/api/v1/namespaces/kumo-monitoring/services', {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'kumo-monitoring-prometheus', namespace: 'kumo-monitoring' },
      spec: { ports: [{ name: 'http', port: 9090, targetPort: 'http' }], selector: { app: 'prometheus' } },
    });
  }

  const prometheus = async (cluster: string, queries: Record<string, Array<{ metric?: Record<string, string>; value: number }>>) =>
    stack.sim(`/admin/clusters/${await rancherIdOf(cluster)}/prometheus`, { body: { queries } });

  before(async () => {
    stack = await startTestStack({
      env: {
        // Sweeps are triggered by the tests (through the Schedule); its own interval stays out of the way.
        KUMO_HEALTH_SWEEP_INTERVAL_S: '3600',
        KUMO_HEALTH_PROBE_TIMEOUT_MS: '2000',
        KUMO_FUNCTION_READY_TIMEOUT_S: '60',
        SIM_NODE_BOOT_MS: '400',
        SIM_CLUSTER_PROVISION_MS: '400',
        SIM_NODE_REMOVE_MS: '200',
      },
    });
    await Promise.all([
      createCluster('hc-heal', 3),
      createCluster('hc-partition', 3),
      createCluster('hc-agent', 1),
      createCluster('hc-metrics', 1),
      (async () => {
        const created = await stack.api('/v1/clusters', { body: { name: 'functions', kubernetesVersion: 'v1.30.6-rancher1-1', nodePools: [{ name: 'all', roles: ['etcd', 'controlplane', 'worker'], quantity: 1 }] } });
        assert.equal((await waitForOperation(stack, created.body.operation.id, 120_000)).status, 'succeeded');
      })(),
    ]);
    functionsCluster = await rancherIdOf('functions');
    const deployed = await stack.api('/v1/functions/on-health', {
      method: 'PUT',
      body: { name: 'on-health', source: { files: { 'handler.py': 'def handle(event, context):\n    return {"got": context.cloudevent["type"]}\n' } } },
    });
    assert.equal(deployed.status, 202, JSON.stringify(deployed.body));
    assert.equal((await waitForOperation(stack, deployed.body.operation.id, 180_000)).status, 'succeeded');
  });
  after(async () => {
    await stack?.destroy();
  });

  test('the sweep is a Temporal Schedule; it checks every cluster and records each check with its reason', async () => {
    const fleet = (await stack.api('/v1/health')).body;
    assert.equal(fleet.schedule?.id, 'health/sweep');
    assert.equal(fleet.schedule.intervalSeconds, 3600);
    const done = await sweep();
    assert.equal(done.summary.clusters, 5);
    recordHistory(stack, 'sweepFleet', { workflowId: done.id.split('/').slice(0, -1).join('/'), runId: done.id.split('/').at(-1) });
    const cluster = await health('hc-agent');
    assert.equal(cluster.status, 'healthy', JSON.stringify(cluster.checks));
    for (const check of ['apiLivez', 'apiReadyz', 'agentTcp', 'nodesReady', 'componentStatus']) assert.equal(cluster.checks[check].value, 1, `${check}: ${cluster.checks[check].reason}`);
    assert.match(cluster.checks.agentTcp.reason, /TCP 127\.0\.0\.1:\d+ connected/);
    const summary = (await stack.api('/v1/health')).body;
    assert.equal(summary.healthy, 5, JSON.stringify(summary.notHealthy));
    const metrics = (await stack.api('/metrics')).body as string;
    assert.match(metrics, /^kumo_clusters_health\{status="healthy"\} 5$/m);
    assert.match(metrics, /^kumo_health_sweep_duration_seconds \d/m);
  });

  test('an unreachable agent marks the cluster unhealthy within one sweep, and a binding delivers the event to a function', async () => {
    const bound = await stack.api('/v1/bindings', { body: { name: 'agent-health', function: 'on-health', source: '/kumo/clusters/hc-agent/health', filter: { type: healthEventTypes.changed } } });
    assert.equal(bound.status, 201, JSON.stringify(bound.body));
    const rancherId = await rancherIdOf('hc-agent');
    await stack.sim(`/admin/clusters/${rancherId}/faults`, { body: { agentDisconnected: true } });
    try {
      await sweep();
      const cluster = await health('hc-agent');
      assert.equal(cluster.status, 'unhealthy');
      assert.equal(cluster.checks.agentTcp.value, 0);
      assert.match(cluster.checks.agentTcp.reason, /ECONNREFUSED/);
      const events = (await stack.api(`/v1/events?type=${healthEventTypes.changed}&source=${encodeURIComponent('/kumo/clusters/hc-agent/health')}&limit=10`)).body.items;
      const unhealthy = events.find((event: any) => event.cloudEvent.data.to === 'unhealthy');
      assert.ok(unhealthy, JSON.stringify(events));
      const delivered = await until('the health event delivered', async () => {
        const { body } = await stack.api(`/v1/events/${unhealthy.id}`);
        return body.status === 'delivered' ? body : null;
      });
      assert.equal(delivered.deliveries[0].result.got, healthEventTypes.changed);
    } finally {
      await stack.sim(`/admin/clusters/${rancherId}/faults`, { method: 'DELETE' });
    }
    await sweep();
    assert.equal((await health('hc-agent')).status, 'healthy');
    const history = (await stack.api('/v1/clusters/hc-agent/health/history?kind=check')).body.items;
    assert.deepEqual(
      history.filter((entry: any) => entry.name === 'agentTcp').map((entry: any) => entry.value),
      ['1', '0', '1'],
    );
  });

  test('an API server that does not answer marks the cluster unhealthy within one sweep, and the policy\'s webhook hears of it', async (t) => {
    const received: Array<{ contentType: string | undefined; event: any }> = [];
    const hook = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        received.push({ contentType: req.headers['content-type'], event: JSON.parse(body) });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((done) => hook.listen(0, '127.0.0.1', done));
    t.after(() => new Promise<void>((done) => hook.close(() => done())));
    await policy('hc-agent', { webhooks: [`http://127.0.0.1:${(hook.address() as AddressInfo).port}/hooks/kumo`] });
    t.after(async () => {
      await stack.api('/v1/clusters/hc-agent/health/policy', { method: 'DELETE' });
    });
    const rancherId = await rancherIdOf('hc-agent');
    await stack.sim(`/admin/clusters/${rancherId}/faults`, { body: { apiServerDown: true } });
    try {
      await sweep();
      const changed = received.find((item) => item.event.type === healthEventTypes.changed);
      assert.ok(changed, JSON.stringify(received));
      assert.equal(changed.contentType, 'application/cloudevents+json');
      assert.equal(changed.event.data.to, 'unhealthy');
      assert.equal(changed.event.source, '/kumo/clusters/hc-agent/health');
      const cluster = await health('hc-agent');
      assert.equal(cluster.status, 'unhealthy');
      assert.equal(cluster.checks.apiLivez.value, 0);
      assert.match(cluster.checks.apiLivez.reason, /503/);
      assert.equal(cluster.checks.agentTcp.value, 1, 'the network path is fine');
      const fleet = (await stack.api('/v1/health')).body;
      assert.ok(fleet.notHealthy.some((entry: any) => entry.clusterId === 'hc-agent' && entry.failing.some((failing: any) => failing.check === 'apiLivez')));
    } finally {
      await stack.sim(`/admin/clusters/${rancherId}/faults`, { method: 'DELETE' });
    }
  });

  test('a node NotReady past its timeout is replaced automatically, exactly once, and the operation says why', async () => {
    await policy('hc-heal', { autoHeal: { enabled: true, maxUnhealthy: '40%', unhealthyConditions: [{ type: 'Ready', status: 'False', timeout: '10s' }] } });
    const victim = (await stack.api('/v1/clusters/hc-heal')).body.nodes.find((node: any) => node.roles.includes('worker'));
    await stack.sim(`/admin/nodes/${encodeURIComponent(victim.id)}/faults`, { body: { notReady: true } });
    await sweep();
    assert.equal((await operationsOf('hc-heal', 'cluster.replaceNode')).length, 0, 'not before its timeout');
    assert.equal((await health('hc-heal')).status, 'degraded');
    await new Promise((done) => setTimeout(done, 10_000));
    const swept = await sweep();
    const [operation, ...more] = await operationsOf('hc-heal', 'cluster.replaceNode');
    assert.ok(operation, JSON.stringify(swept.summary));
    assert.equal(more.length, 0);
    assert.match(operation.reason ?? '', new RegExp(`auto-heal: node ${victim.hostname} is unhealthy: Ready=False for \\d+s \\(KubeletNotReady\\)`));
    assert.ok(swept.summary.actions.some((action: any) => action.operationId === operation.id));
    recordHistory(stack, 'sweepFleet-auto-heal', { workflowId: swept.id.split('/').slice(0, -1).join('/'), runId: swept.id.split('/').at(-1) });
    const done = await waitForOperation(stack, operation.id, 120_000);
    assert.equal(done.status, 'succeeded', JSON.stringify(done.failure));
    recordHistory(stack, 'replaceNode-auto-heal', done);
    await sweep();
    await sweep();
    assert.equal((await operationsOf('hc-heal', 'cluster.replaceNode')).length, 1, 'replaced once');
    const after = await health('hc-heal');
    assert.equal(after.status, 'healthy', JSON.stringify(after.checks.nodesReady));
    assert.ok(!after.nodes.some((node: any) => node.id === victim.id));
    const decisions = (await stack.api('/v1/clusters/hc-heal/health/history?kind=remediation')).body.items;
    assert.ok(decisions.some((entry: any) => entry.value === 'replace' && entry.detail.operation === operation.id));
  });

  test('a worker killed in the middle of a sweep: the sweep finishes on the next worker and the node is replaced once', async () => {
    await policy('hc-heal', { autoHeal: { enabled: true, maxUnhealthy: '40%', unhealthyConditions: [{ type: 'Ready', status: 'False', timeout: '3s' }] } });
    const nodes = (await stack.api('/v1/clusters/hc-heal')).body.nodes as Array<{ id: string; hostname: string; roles: string[] }>;
    const victim = nodes.filter((node) => node.roles.includes('worker')).at(-1)!;
    await stack.sim(`/admin/nodes/${encodeURIComponent(victim.id)}/faults`, { body: { notReady: true } });
    await new Promise((done) => setTimeout(done, 3500));
    const before = (await operationsOf('hc-heal', 'cluster.replaceNode')).length;
    const known = new Set(((await stack.api('/v1/health/sweeps?limit=50')).body.items as Array<{ id: string }>).map((item) => item.id));
    assert.equal((await stack.api('/v1/health/sweeps', { method: 'POST' })).status, 202);
    const started = await until('the sweep started', async () => ((await stack.api('/v1/health/sweeps?limit=50')).body.items as Array<{ id: string }>).find((item) => !known.has(item.id)), 30_000);
    await stack.killWorker();
    await stack.startWorker();
    const finished = await until('the sweep finished', async () => {
      const { body } = await stack.api('/v1/health/sweeps?limit=50');
      return (body.items as Array<{ id: string; finishedAt: string | null; summary: any }>).find((item) => item.id === started.id && item.finishedAt);
    }, 120_000);
    assert.equal(finished.summary.failed.length, 0, JSON.stringify(finished.summary.failed));
    const all = await operationsOf('hc-heal', 'cluster.replaceNode');
    const replacements = all.slice(0, all.length - before); // newest first
    assert.equal(replacements.length, 1, JSON.stringify(replacements));
    assert.match(replacements[0]!.reason ?? '', new RegExp(victim.hostname));
    // Killed between recording the replacement and starting it, the next sweeps start it (as the Schedule's would).
    await until('the replacement succeeded', async () => {
      const { body } = await stack.api(`/v1/operations/${replacements[0]!.id}`);
      assert.ok(body.status === 'running' || body.status === 'succeeded', JSON.stringify(body));
      if (body.status === 'succeeded') return body;
      if (!body.runId) await sweep();
      return null;
    }, 180_000);
    await sweep();
    assert.equal((await operationsOf('hc-heal', 'cluster.replaceNode')).length, before + 1, 'and not again');
  });

  test('a replacement recorded but never started (a crash between the two) is started by the next check, once', async () => {
    await policy('hc-heal', { autoHeal: { enabled: true, maxUnhealthy: '40%', unhealthyConditions: [{ type: 'Ready', status: 'False', timeout: '1s' }] } });
    const nodes = (await stack.api('/v1/clusters/hc-heal')).body.nodes as Array<{ id: string; hostname: string; roles: string[] }>;
    const victim = nodes.filter((node) => node.roles.includes('worker'))[0]!;
    // What a check that died right after recording the operation leaves behind: the claim and a record without a run.
    const key = remediationKey('hc-heal', victim.id);
    const operationId = `op-${createHash('sha256').update(key).digest('hex').slice(0, 18)}`;
    const store = await Store.open(stack.env.DATABASE_URL!);
    try {
      assert.equal(await store.health.claimAction(key, 'hc-heal', new Date().toISOString()), true);
      const startedAt = new Date(Date.now() - 60_000).toISOString();
      assert.ok(await store.startOperation({ ...newClusterOperation({ id: operationId, kind: 'cluster.replaceNode', clusterId: 'hc-heal', steps: replaceNodeSteps, startedAt }), reason: 'cut short' }, 'hc-heal'));
    } finally {
      await store.close();
    }
    await stack.sim(`/admin/nodes/${encodeURIComponent(victim.id)}/faults`, { body: { notReady: true } });
    await new Promise((done) => setTimeout(done, 1500));
    await sweep();
    const done = await waitForOperation(stack, operationId, 120_000);
    assert.equal(done.status, 'succeeded', JSON.stringify(done.failure));
    assert.ok(done.runId, 'it runs under its own id');
    await sweep();
    assert.equal((await operationsOf('hc-heal', 'cluster.replaceNode')).filter((operation) => operation.id === operationId).length, 1);
  });

  test('with half the nodes NotReady nothing is replaced, and an alert event is raised', async () => {
    await policy('hc-partition', { autoHeal: { enabled: true, maxUnhealthy: '40%', unhealthyConditions: [{ type: 'Ready', status: 'False', timeout: '1s' }] } });
    const nodes = (await stack.api('/v1/clusters/hc-partition')).body.nodes as Array<{ id: string; roles: string[] }>;
    assert.equal(nodes.length, 4);
    const half = nodes.filter((node) => node.roles.includes('worker')).slice(0, 2);
    for (const node of half) await stack.sim(`/admin/nodes/${encodeURIComponent(node.id)}/faults`, { body: { notReady: true } });
    try {
      await new Promise((done) => setTimeout(done, 1500));
      await sweep();
      await sweep();
      assert.equal((await operationsOf('hc-partition', 'cluster.replaceNode')).length, 0);
      const alerts = (await stack.api(`/v1/events?type=${healthEventTypes.remediationBlocked}&limit=10`)).body.items.filter((event: any) => event.cloudEvent.data.cluster === 'hc-partition');
      assert.equal(alerts.length, 1, 'one alert, not one per sweep');
      assert.match(alerts[0].cloudEvent.data.reason, /2 of 4 nodes are unhealthy, more than maxUnhealthy 40% \(1\) allows/);
      assert.ok((await health('hc-partition')).remediation.blockedSince);
    } finally {
      for (const node of half) await stack.sim(`/admin/nodes/${encodeURIComponent(node.id)}/faults`, { method: 'DELETE' });
    }
  });

  test('a threshold held past its duration raises kumo.threshold.breached; a brief spike does not', async () => {
    await installPrometheusService('hc-metrics');
    await policy('hc-metrics', {
      thresholds: [
        { name: 'node-memory', metric: 'nodeMemory', op: '>', value: 90, for: '3s' },
        { name: 'restarts', query: 'sum(kube_pod_container_status_restarts_total)', op: '>', value: 10, for: '3s' },
      ],
    });
    const memory = (value: number) => [{ metric: { node: 'hc-metrics-workers-1' }, value }];
    const restarts = (value: number) => [{ value }];
    const memoryQuery = '100 * (1 - avg by (node) (node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes))';
    const set = (mem: number, rs: number) => prometheus('hc-metrics', { [memoryQuery]: memory(mem), 'sum(kube_pod_container_status_restarts_total)': restarts(rs) });
    const breached = async () =>
      ((await stack.api(`/v1/events?type=${healthEventTypes.breached}&source=${encodeURIComponent('/kumo/clusters/hc-metrics/health')}&limit=50`)).body.items as any[]).map((event) => event.cloudEvent.data.threshold as string);

    await set(95, 50); // both above
    await sweep();
    assert.deepEqual(await breached(), [], 'not before the duration');
    await set(95, 2); // the restarts only spiked
    await new Promise((done) => setTimeout(done, 3200));
    await sweep();
    await set(95, 50); // and spike again: its count starts over
    await sweep();
    assert.deepEqual(await breached(), ['node-memory']);
    const cluster = await health('hc-metrics');
    assert.equal(cluster.status, 'degraded');
    assert.ok(cluster.thresholds.some((state: any) => state.rule === 'node-memory' && state.firingSince && state.labels.node === 'hc-metrics-workers-1'));
    await set(50, 2);
    await sweep();
    assert.equal((await health('hc-metrics')).status, 'healthy');
    assert.equal((await stack.api(`/v1/events?type=${healthEventTypes.resolved}&source=${encodeURIComponent('/kumo/clusters/hc-metrics/health')}`)).body.items.length, 1);
  });

  test('under sustained pressure a pool grows toward max; after the cooldown with low usage it shrinks toward min, draining first', async () => {
    await installPrometheusService('hc-metrics');
    await policy('hc-metrics', {
      thresholds: [],
      autoscale: { workers: { min: 1, max: 3, scaleUp: { pendingPods: 1, for: '2s' }, scaleDown: { cpuRequestPercent: 30, for: '2s' }, cooldown: '3s', drainTimeoutSeconds: 30 } },
    });
    const worker = (await stack.api('/v1/clusters/hc-metrics')).body.nodes.find((node: any) => node.pool === 'workers');
    const cpuQuery = poolCpuRequestQuery(worker.hostname.replace(/\d+$/, ''));
    const usage = (pending: number, cpu: number) => prometheus('hc-metrics', { [pendingPodsQuery]: [{ value: pending }], [cpuQuery]: [{ value: cpu }] });
    const quantity = async () => (await stack.api('/v1/clusters/hc-metrics')).body.nodePools.find((candidate: any) => candidate.name === 'workers').quantity as number;

    /** Sweeps (letting any scaling it starts finish) until the pool has `target` nodes; every size seen on the way. */
    const sweepUntil = async (target: number): Promise<number[]> => {
      const seen: number[] = [];
      await until(
        `the pool at ${target}`,
        async () => {
          await sweep();
          const [running] = (await operationsOf('hc-metrics', 'cluster.scale')).filter((operation) => operation.status === 'running');
          if (running) await waitForOperation(stack, running.id, 120_000);
          const now = await quantity();
          if (seen.at(-1) !== now) seen.push(now);
          return now === target;
        },
        120_000,
      );
      return seen;
    };

    await usage(6, 95);
    const grown = await sweepUntil(3);
    assert.deepEqual(grown, [1, 2, 3].slice(grown[0]! - 1), 'one step at a time');
    await sweep();
    assert.equal(await quantity(), 3, 'never past max');

    await usage(0, 10);
    const shrunk = await sweepUntil(1);
    assert.deepEqual(shrunk, [3, 2, 1].slice(3 - shrunk[0]!), 'one step at a time');
    const operations = await operationsOf('hc-metrics', 'cluster.scale');
    assert.equal(operations.length, 4, JSON.stringify(operations.map((operation) => operation.reason)));
    const down = (await stack.api(`/v1/operations/${operations[0]!.id}`)).body;
    assert.match(down.reason, /autoscale: pending pods 0, requested CPU 10% for \d+s \(scale down after 2s, cooldown 3s\)/);
    assert.deepEqual(
      down.steps.filter((step: any) => ['cordon', 'drain', 'setQuantity'].includes(step.name)).map((step: any) => `${step.name}:${step.status}`),
      ['cordon:succeeded', 'drain:succeeded', 'setQuantity:succeeded'],
    );
    const decisions = (await stack.api('/v1/clusters/hc-metrics/health/history?kind=autoscale')).body.items;
    assert.ok(decisions.some((entry: any) => entry.value === '1->2 started' && entry.detail.inputs.pendingPods === 6));
  });

  test('policies: validated with the wrong field named, cluster over fleet, unknown pools refused', async () => {
    const bad = await stack.api('/v1/health/policy', { method: 'PUT', body: { thresholds: [{ name: 'x', metric: 'nodeCpu', value: 1, for: '5 minutes' }] } });
    assert.equal(bad.status, 400);
    assert.ok(bad.body.errors.some((error: any) => error.field === 'thresholds.0.for'), JSON.stringify(bad.body));
    const fleet = await stack.api('/v1/health/policy', { method: 'PUT', body: { autoHeal: { maxUnhealthy: 3 } } });
    assert.equal(fleet.status, 200);
    const view = (await stack.api('/v1/clusters/hc-heal/health/policy')).body;
    assert.equal(view.effective.autoHeal.maxUnhealthy, '40%', "the cluster's own value wins");
    assert.equal(view.effective.autoHeal.enabled, true);
    const unknownPool = await stack.api('/v1/clusters/hc-heal/health/policy', { method: 'PUT', body: { autoscale: { nope: { min: 1, max: 2 } } } });
    assert.equal(unknownPool.status, 400);
    assert.equal(unknownPool.body.errors[0].field, 'autoscale.nope');
    const controlPool = await stack.api('/v1/clusters/hc-heal/health/policy', { method: 'PUT', body: { autoscale: { control: { min: 1, max: 2 } } } });
    assert.equal(controlPool.status, 400);
    assert.equal((await stack.api('/v1/clusters/nope/health')).status, 404);
    assert.equal((await stack.api('/v1/clusters/hc-heal/health/history?since=yesterday')).status, 400);
    await stack.api('/v1/health/policy', { method: 'PUT', body: {} });
    assert.ok(functionsCluster);
  });
});
