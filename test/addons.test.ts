import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { AppsV1Api, KubeConfig } from '@kubernetes/client-node';
import { Client, Connection } from '@temporalio/client';
import { addonReconcileScheduleId } from '../domain/addon.js';
import { createHelmClient, type Helm } from '../providers/helm.js';
import { helmBinary } from '../scripts/tools.js';
import { recordHistory, startTestStack, waitForOperation, type TestStack } from './helpers/stack.js';
import { waitFor } from './helpers/wait.js';

/**
 * Add-ons end to end: the API, the worker driving the real helm binary against
 * simulated clusters, the catalog served from the local chart repository, and
 * the simulator's workload readiness and faults.
 */
describe('add-ons', () => {
  let stack: TestStack;
  let temporal: Client;
  const rancherIds = new Map<string, string>();

  before(async () => {
    stack = await startTestStack({ env: { SIM_WORKLOAD_READY_MS: '300', KUMO_ADDON_POLL_S: '1' } });
    temporal = new Client({ connection: await Connection.connect({ address: stack.temporalAddress }) });
  });
  after(async () => {
    await temporal?.connection.close();
    await stack?.destroy();
  });

  async function createClusters(names: string[]): Promise<void> {
    const started = await Promise.all(
      names.map((name) =>
        stack.api('/v1/clusters', {
          body: { name, kubernetesVersion: 'v1.30.6-rancher1-1', labels: { fleet: 'addons' }, nodePools: [{ name: 'all', roles: ['etcd', 'controlplane', 'worker'], quantity: 1 }] },
        }),
      ),
    );
    for (const [i, response] of started.entries()) assert.equal(response.status, 202, `create ${names[i]}: ${JSON.stringify(response.body)}`);
    for (const response of started) assert.equal((await waitForOperation(stack, response.body.operation.id, 120_000)).status, 'succeeded');
    for (const name of names) rancherIds.set(name, (await stack.api(`/v1/clusters/${name}`)).body.rancher.id);
  }

  async function enable(cluster: string, addon: string, body: Record<string, unknown>): Promise<any> {
    const response = await stack.api(`/v1/clusters/${cluster}/addons/${addon}`, { method: 'PUT', body });
    assert.equal(response.status, 202, JSON.stringify(response.body));
    return waitForOperation(stack, response.body.operation.id, 120_000);
  }

  async function kubeconfigOf(cluster: string): Promise<string> {
    const response = await fetch(`${stack.simUrl}/v3/clusters/${rancherIds.get(cluster)}?action=generateKubeconfig`, {
      method: 'POST',
      headers: { authorization: 'Bearer kumo-sim-token', 'content-type': 'application/json' },
      body: '{}',
    });
    return ((await response.json()) as { config: string }).config;
  }

  async function helmOn(cluster: string): Promise<Helm> {
    return createHelmClient({ binary: helmBinary(), kubeconfig: await kubeconfigOf(cluster), timeoutMs: 60_000 });
  }

  test('the catalog lists each add-on with its versions and values schema; bad requests are refused before anything runs', async () => {
    await createClusters(['ad-one']);
    const catalog = await stack.api('/v1/addons');
    assert.equal(catalog.status, 200);
    assert.deepEqual(catalog.body.items.map((a: any) => a.name).sort(), ['ingress', 'logging', 'monitoring']);
    const logging = catalog.body.items.find((a: any) => a.name === 'logging');
    assert.ok(logging.versions.length >= 2 && logging.latest === logging.versions.at(-1).version);
    assert.equal(logging.valuesSchema.type, 'object');

    assert.equal((await stack.api('/v1/addons/nope')).status, 404);
    assert.equal((await stack.api('/v1/clusters/ad-one/addons/nope', { method: 'PUT', body: {} })).status, 404);
    assert.equal((await stack.api('/v1/clusters/nowhere/addons/logging', { method: 'PUT', body: {} })).status, 404);
    const unknownVersion = await stack.api('/v1/clusters/ad-one/addons/logging', { method: 'PUT', body: { version: '9.9.9' } });
    assert.equal(unknownVersion.status, 404);
    assert.match(unknownVersion.body.detail, /1\.0\.0/);

    const invalid = await stack.api('/v1/clusters/ad-one/addons/logging', { method: 'PUT', body: { values: { flushSeconds: 'soon', colour: 'blue' } } });
    assert.equal(invalid.status, 400);
    const fields = invalid.body.errors.map((e: any) => e.field).sort();
    assert.deepEqual(fields, ['values.colour', 'values.flushSeconds']);
    const malformed = await stack.api('/v1/clusters/ad-one/addons/logging', { method: 'PUT', body: { version: 'latest' } });
    assert.equal(malformed.status, 400);
    assert.equal(malformed.body.errors[0].field, 'version');
    assert.deepEqual((await stack.api('/v1/clusters/ad-one/addons')).body.items, [], 'nothing was recorded');
    assert.equal((await stack.api('/v1/operations?target=cluster/ad-one&kind=addon.apply')).body.items.length, 0, 'no operation was started');
  });

  test('enabling an add-on installs its release with the real helm; the same request again is a no-op; new values make a new revision', async () => {
    const operation = await enable('ad-one', 'logging', { version: '1.0.0', values: { output: { type: 'stdout' } } });
    assert.equal(operation.status, 'succeeded', JSON.stringify(operation.failure));
    assert.deepEqual(operation.steps.map((s: any) => [s.name, s.status]), [['upgrade', 'succeeded'], ['waitHealthy', 'succeeded'], ['rollback', 'skipped'], ['record', 'succeeded']]);
    recordHistory(stack, 'applyAddon-succeeded', operation);

    const releases = await (await helmOn('ad-one')).list();
    assert.deepEqual(releases.map((r) => [r.name, r.namespace, r.status, r.chart]), [['kumo-logging', 'kumo-logging', 'deployed', 'logging-1.0.0']]);
    const record = (await stack.api('/v1/clusters/ad-one/addons/logging')).body;
    assert.equal(record.state, 'deployed');
    assert.equal(record.version, '1.0.0');
    assert.equal(record.revision, 1);

    const again = await stack.api('/v1/clusters/ad-one/addons/logging', { method: 'PUT', body: { version: '1.0.0', values: { output: { type: 'stdout' } } } });
    assert.equal(again.status, 200);
    assert.equal(again.body.operation, null);

    const reconfigured = await enable('ad-one', 'logging', { version: '1.0.0', values: { output: { type: 'forward', forward: { host: 'fluentd.logging', port: 24224 } } } });
    assert.equal(reconfigured.status, 'succeeded', JSON.stringify(reconfigured.failure));
    assert.equal((await stack.api('/v1/clusters/ad-one/addons/logging')).body.revision, 2);
  });

  test('an upgrade that does not become healthy is rolled back automatically, and the live revision is reported', async () => {
    await stack.sim('/admin/faults', { body: { crashLoop: [{ cluster: `^${rancherIds.get('ad-one')}$`, image: 'fluent-bit:3\\.1\\.9' }] } });
    try {
      const operation = await enable('ad-one', 'logging', { version: '1.1.0', values: { output: { type: 'stdout' } }, healthTimeoutSeconds: 10 });
      assert.equal(operation.status, 'failed');
      assert.equal(operation.failure.type, 'VerificationFailed');
      assert.match(operation.failure.message, /rolled back to revision 2/);
      recordHistory(stack, 'applyAddon-rolled-back', operation);
      const record = (await stack.api('/v1/clusters/ad-one/addons/logging')).body;
      assert.equal(record.version, '1.0.0', 'the record names what runs');
      assert.equal(record.state, 'deployed');
      assert.equal(record.revision, 4);
      const history = await (await helmOn('ad-one')).history('kumo-logging', 'kumo-logging');
      assert.deepEqual(history.map((h) => [h.revision, h.chart, h.status]), [
        [1, 'logging-1.0.0', 'superseded'],
        [2, 'logging-1.0.0', 'superseded'],
        [3, 'logging-1.1.0', 'superseded'],
        [4, 'logging-1.0.0', 'deployed'],
      ]);
    } finally {
      await stack.sim('/admin/faults', { method: 'DELETE' });
    }
  });

  test('a stopped add-on is repaired by the next scheduled reconcile, which records what it did', async () => {
    const kc = new KubeConfig();
    kc.loadFromString(await kubeconfigOf('ad-one'));
    const apps = kc.makeApiClient(AppsV1Api);
    const stopped = await stack.sim(`/admin/clusters/${rancherIds.get('ad-one')}/workloads/stop`, { method: 'POST', body: { namespace: 'kumo-logging', name: 'kumo-logging' } });
    assert.deepEqual(stopped.stopped.map((s: any) => s.action), ['deleted']);
    await assert.rejects(apps.readNamespacedDaemonSet({ name: 'kumo-logging', namespace: 'kumo-logging' }));

    await temporal.schedule.getHandle(addonReconcileScheduleId).trigger();
    const reconcile = await waitFor('a reconcile run that repaired ad-one', async () => {
      const list = (await stack.api('/v1/operations?kind=addon.reconcile')).body.items;
      const done = list.find((op: any) => op.status === 'succeeded' && op.result?.repairs?.some((r: any) => r.clusterId === 'ad-one'));
      return done;
    }, { timeoutMs: 120_000 });
    const repair = reconcile.result.repairs.find((r: any) => r.clusterId === 'ad-one');
    assert.equal(repair.problem, 'stopped');
    assert.equal(repair.action, 'reapply');
    assert.equal(repair.outcome, 'repaired');
    assert.match(reconcile.workflowId, /^addons\/reconcile\/run/, 'started by the Schedule');
    const repairOperation = (await stack.api(`/v1/operations/${repair.operationId}`)).body;
    assert.equal(repairOperation.kind, 'addon.repair');
    assert.equal(repairOperation.status, 'succeeded');
    recordHistory(stack, 'reconcileAddons-repaired', reconcile);

    const daemonSet = await apps.readNamespacedDaemonSet({ name: 'kumo-logging', namespace: 'kumo-logging' });
    assert.ok(daemonSet.metadata?.uid);
    const record = (await stack.api('/v1/clusters/ad-one/addons/logging')).body;
    assert.equal(record.revision, 5, 'the repair made (and recorded) a new revision');

    // Healthy now: the next run finds nothing to do.
    const manual = await stack.api('/v1/addons/reconcile', { method: 'POST' });
    assert.equal(manual.status, 202);
    const clean = await waitForOperation(stack, manual.body.operation.id);
    assert.equal(clean.status, 'succeeded');
    assert.deepEqual(clean.result.repairs.filter((r: any) => r.clusterId === 'ad-one'), []);
  });

  test('disabling an add-on uninstalls its release', async () => {
    await createClusters(['ad-two']);
    assert.equal((await enable('ad-two', 'monitoring', { values: { grafana: { enabled: false } } })).status, 'succeeded');
    const response = await stack.api('/v1/clusters/ad-two/addons/monitoring', { method: 'DELETE' });
    assert.equal(response.status, 202);
    const operation = await waitForOperation(stack, response.body.operation.id);
    assert.equal(operation.status, 'succeeded');
    recordHistory(stack, 'removeAddon-succeeded', operation);
    assert.deepEqual(await (await helmOn('ad-two')).list(), []);
    assert.equal((await stack.api('/v1/clusters/ad-two/addons/monitoring')).status, 404);
    assert.equal((await stack.api('/v1/clusters/ad-two/addons/monitoring', { method: 'DELETE' })).status, 404);
  });

  const fleet = Array.from({ length: 20 }, (_, i) => `fleet-${String(i + 1).padStart(2, '0')}`);

  test('a fleet rollout over 20 clusters stops at the wave where cluster 7 crash-loops, rolls that wave back and leaves later waves untouched', async () => {
    await createClusters(fleet);
    const enabled = await Promise.all(fleet.map((name) => enable(name, 'logging', { version: '1.0.0' })));
    assert.deepEqual(enabled.map((op) => op.status), fleet.map(() => 'succeeded'));

    await stack.sim('/admin/faults', { body: { crashLoop: [{ cluster: `^${rancherIds.get('fleet-07')}$`, image: 'fluent-bit:3\\.1\\.9' }] } });
    try {
      const refused = await stack.api('/v1/addons/logging/rollouts', { body: { version: '1.1.0', waves: [0] } });
      assert.equal(refused.status, 400);
      assert.equal((await stack.api('/v1/addons/logging/rollouts', { body: { version: '7.0.0' } })).status, 404);
      assert.equal((await stack.api('/v1/addons/logging/rollouts', { body: { version: '1.1.0', selector: { labels: { fleet: 'none' } } } })).status, 400);

      const started = await stack.api('/v1/addons/logging/rollouts', {
        body: { version: '1.1.0', selector: { labels: { fleet: 'addons' }, clusters: fleet }, waves: [1, 5, 10, '100%'], maxFailures: 0, maxParallel: 5, healthGate: { soakSeconds: 1, timeoutSeconds: 15 } },
      });
      assert.equal(started.status, 202, JSON.stringify(started.body));
      const id = started.body.id;
      assert.equal((await stack.api('/v1/addons/logging/rollouts', { body: { version: '1.1.0' } })).status, 409, 'one rollout per add-on at a time');

      const live = await waitFor('per-cluster progress while it runs', async () => {
        const view = (await stack.api(`/v1/addons/logging/rollouts/${id}`)).body;
        return view.report?.clusters?.some((c: any) => c.status === 'upgraded') ? view : undefined;
      }, { timeoutMs: 120_000 });
      assert.equal(live.report.clusters.length, 20);

      const done = await waitForOperation(stack, id, 240_000);
      assert.equal(done.status, 'failed');
      recordHistory(stack, 'rolloutAddon-failed-wave', done);
      const report = (await stack.api(`/v1/addons/logging/rollouts/${id}`)).body.report;
      assert.equal(report.state, 'failed');
      assert.deepEqual(report.waves.map((w: any) => [w.clusters.length, w.status]), [[1, 'passed'], [4, 'passed'], [5, 'rolled-back'], [10, 'not-started']]);
      const status = Object.fromEntries(report.clusters.map((c: any) => [c.clusterId, c.status]));
      assert.equal(status['fleet-07'], 'failed');
      for (const name of ['fleet-01', 'fleet-02', 'fleet-03', 'fleet-04', 'fleet-05']) assert.equal(status[name], 'upgraded', name);
      for (const name of ['fleet-06', 'fleet-08', 'fleet-09', 'fleet-10']) assert.ok(['rolled-back', 'pending'].includes(status[name]), `${name}: ${status[name]}`);
      for (const name of fleet.slice(10)) assert.equal(status[name], 'pending', name);
      assert.match(report.clusters.find((c: any) => c.clusterId === 'fleet-07').message, /not healthy/);

      // What Helm says on each cluster agrees with the report.
      const charts = await Promise.all(fleet.map(async (name) => ((await (await helmOn(name)).status('kumo-logging', 'kumo-logging'))?.chart)));
      assert.deepEqual(charts, fleet.map((_, i) => (i < 5 ? 'logging-1.1.0' : 'logging-1.0.0')));
      for (const name of fleet.slice(10)) {
        assert.equal((await (await helmOn(name)).history('kumo-logging', 'kumo-logging')).length, 1, `${name} untouched`);
      }
      const records = (await Promise.all(fleet.map((name) => stack.api(`/v1/clusters/${name}/addons/logging`)))).map((r) => r.body.version);
      assert.deepEqual(records, fleet.map((_, i) => (i < 5 ? '1.1.0' : '1.0.0')));
    } finally {
      await stack.sim('/admin/faults', { method: 'DELETE' });
    }
  });

  test('a rollout can be paused, resumed and aborted; a worker killed mid-rollout resumes it without upgrading any cluster twice', async () => {
    const six = fleet.slice(10, 16);
    const started = await stack.api('/v1/addons/logging/rollouts', {
      body: { version: '2.0.0', selector: { clusters: six }, waves: [1, '100%'], maxParallel: 2, healthGate: { soakSeconds: 0, timeoutSeconds: 30 } },
    });
    assert.equal(started.status, 202, JSON.stringify(started.body));
    const id = started.body.id;
    const paused = await stack.api(`/v1/addons/logging/rollouts/${id}/pause`, { method: 'POST' });
    assert.equal(paused.status, 202);
    await waitFor('the rollout to report paused', async () => ((await stack.api(`/v1/addons/logging/rollouts/${id}`)).body.report?.state === 'paused' ? true : undefined));
    assert.equal((await stack.api(`/v1/addons/logging/rollouts/${id}/resume`, { method: 'POST' })).status, 202);

    // Kill the worker while clusters are being upgraded.
    await waitFor('a cluster upgrade under way', async () => {
      const report = (await stack.api(`/v1/addons/logging/rollouts/${id}`)).body.report;
      return report?.clusters?.some((c: any) => c.status === 'upgrading' && c.wave === 2) ? true : undefined;
    }, { timeoutMs: 120_000, intervalMs: 50 });
    await stack.killWorker();
    await new Promise((done) => setTimeout(done, 500));
    await stack.startWorker();

    const done = await waitForOperation(stack, id, 180_000);
    assert.equal(done.status, 'succeeded', JSON.stringify(done.result));
    recordHistory(stack, 'rolloutAddon-succeeded', done);
    for (const name of six) {
      const history = await (await helmOn(name)).history('kumo-logging', 'kumo-logging');
      assert.equal(history.filter((h) => h.chart === 'logging-2.0.0').length, 1, `${name} upgraded exactly once: ${JSON.stringify(history)}`);
      assert.equal(history.at(-1)?.status, 'deployed');
    }
    assert.equal((await stack.api(`/v1/addons/logging/rollouts/${id}/abort`, { method: 'POST' })).status, 409, 'an ended rollout cannot be aborted');

    // Abort: a running rollout stops, leaving clusters where they are.
    const next = await stack.api('/v1/addons/logging/rollouts', { body: { version: '2.0.0', selector: { clusters: fleet.slice(16) }, waves: [1, '100%'], healthGate: { soakSeconds: 30, timeoutSeconds: 30 } } });
    assert.equal(next.status, 202);
    await waitFor('the canary upgraded', async () => ((await stack.api(`/v1/addons/logging/rollouts/${next.body.id}`)).body.report?.clusters?.some((c: any) => c.status === 'upgraded') ? true : undefined), { timeoutMs: 180_000 });
    assert.equal((await stack.api(`/v1/addons/logging/rollouts/${next.body.id}/abort`, { method: 'POST', body: { reason: 'test' } })).status, 202);
    const aborted = await waitForOperation(stack, next.body.id, 60_000);
    assert.equal(aborted.status, 'cancelled');
    assert.equal(aborted.result.state, 'aborted');
    assert.equal(aborted.result.clusters.filter((c: any) => c.status === 'upgraded').length, 1);
  });
});
