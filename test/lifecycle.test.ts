import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { clusterSpec, recordHistory, startTestStack, waitForOperation, type TestStack } from './helpers/stack.js';
import { waitFor } from './helpers/wait.js';

/**
 * Day-2 operations end to end over HTTP against the embedded stack: scale,
 * replace, snapshots and their schedule, restore, delete; one mutating
 * operation per cluster; faults and worker crashes in the middle.
 */
describe('cluster lifecycle, over HTTP', () => {
  let stack: TestStack;

  before(async () => {
    stack = await startTestStack({ env: { SIM_NODE_BOOT_MS: '400', SIM_CLUSTER_PROVISION_MS: '400', SIM_NODE_REMOVE_MS: '200' } });
  });
  after(async () => {
    await stack?.destroy();
  });

  const token = 'kumo-sim-token';
  const rancher = async (path: string, init: { method?: string; body?: unknown } = {}) => {
    const response = await fetch(`${stack.simUrl}${path}`, {
      method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${path}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  };
  const calls = async (route: string) => ((await stack.sim('/admin/calls')).byRoute[route] ?? 0) as number;
  const setSim = (settings: Record<string, number>) => stack.sim('/admin/settings', { body: settings });
  const defaults = { nodeBootMs: 400, clusterProvisionMs: 400, nodeRemoveMs: 200, restoreMs: 500, snapshotMs: 200, nodeUpgradeMs: 300 };

  /** Creates a cluster through the API and waits until it is active. */
  async function createCluster(name: string, workers = 2) {
    const created = await stack.api('/v1/clusters', {
      body: clusterSpec(name, {
        nodePools: [
          { name: 'control', roles: ['etcd', 'controlplane'], quantity: 1 },
          { name: 'workers', roles: ['worker'], quantity: workers },
        ],
      }),
    });
    assert.equal(created.status, 202, JSON.stringify(created.body));
    const operation = await waitForOperation(stack, created.body.operation.id);
    assert.equal(operation.status, 'succeeded', JSON.stringify(operation.failure));
    return (await stack.api(`/v1/clusters/${name}`)).body;
  }

  async function run(path: string, body?: unknown, method = 'POST') {
    const response = await stack.api(path, { method, ...(body === undefined ? {} : { body }) });
    assert.equal(response.status, 202, `${method} ${path}: ${JSON.stringify(response.body)}`);
    return response.body.operation.id as string;
  }

  async function kube(rancherId: string) {
    const { config } = await rancher(`/v3/clusters/${rancherId}?action=generateKubeconfig`, { body: {} });
    const kc = new KubeConfig();
    kc.loadFromString(config);
    return kc.makeApiClient(CoreV1Api);
  }

  const poolNodes = async (rancherId: string, poolName: string) => {
    const state = await stack.sim('/admin/state');
    const pool = (state.nodePools as any[]).find((candidate) => candidate.clusterId === rancherId && candidate.name === poolName);
    return (state.nodes as any[]).filter((node) => node.nodePoolId === pool.id);
  };

  test('scaling a worker pool up waits for the new nodes, and down cordons, drains and removes the newest', async () => {
    const cluster = await createCluster('lc-scale');
    const up = await waitForOperation(stack, await run('/v1/clusters/lc-scale/nodepools/workers/scale', { quantity: 4 }));
    assert.equal(up.status, 'succeeded', JSON.stringify(up.failure));
    let nodes = await poolNodes(cluster.rancher.id, 'workers');
    assert.equal(nodes.filter((node) => node.state === 'active').length, 4);
    assert.equal((await stack.api('/v1/clusters/lc-scale')).body.nodePools.find((pool: any) => pool.name === 'workers').quantity, 4);
    recordHistory(stack, 'scaleNodePool-up', up);

    // A pod on a node that goes away is evicted, and its owner's replacement lands elsewhere.
    const core = await kube(cluster.rancher.id);
    const newest = nodes.map((node) => node.hostname as string).sort().at(-1)!;
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'web-1', labels: { app: 'web' }, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web', uid: 'u1' }] },
        spec: { nodeName: newest, containers: [{ name: 'web', image: 'nginx' }] },
      },
    });
    const down = await waitForOperation(stack, await run('/v1/clusters/lc-scale/nodepools/workers/scale', { quantity: 2 }));
    assert.equal(down.status, 'succeeded', JSON.stringify(down.failure));
    assert.deepEqual(down.steps.map((step: any) => step.status), down.steps.map(() => 'succeeded'));
    recordHistory(stack, 'scaleNodePool-down', down);
    nodes = await poolNodes(cluster.rancher.id, 'workers');
    const live = nodes.filter((node) => node.state !== 'removing').map((node) => node.hostname).sort();
    assert.equal(live.length, 2);
    assert.ok(!live.includes(newest), 'the newest node went');
    const pods = await core.listPodForAllNamespaces();
    assert.ok(pods.items.every((pod) => pod.spec?.nodeName !== newest), 'nothing left on the removed node');
  });

  test('scaling is refused with 400 when it would break quorum or leave no worker, and 404 for unknown names', async () => {
    await createCluster('lc-refuse', 1);
    const etcd = await stack.api('/v1/clusters/lc-refuse/nodepools/control/scale', { body: { quantity: 0 } });
    assert.equal(etcd.status, 400);
    assert.equal(etcd.body.errors[0].field, 'quantity');
    assert.match(etcd.body.detail, /no (control-plane|etcd) node/);
    assert.equal((await stack.api('/v1/clusters/lc-refuse/nodepools/workers/scale', { body: { quantity: 0 } })).status, 400);
    assert.equal((await stack.api('/v1/clusters/lc-refuse/nodepools/workers/scale', { body: { quantity: -1 } })).status, 400);
    assert.equal((await stack.api('/v1/clusters/lc-refuse/nodepools/workers/scale', { body: { quantity: 'two' } })).status, 400);
    assert.equal((await stack.api('/v1/clusters/lc-refuse/nodepools/nope/scale', { body: { quantity: 2 } })).status, 404);
    assert.equal((await stack.api('/v1/clusters/nope/nodepools/workers/scale', { body: { quantity: 2 } })).status, 404);
    assert.equal((await stack.api('/v1/clusters/lc-refuse/nodes/nope/replace', { method: 'POST' })).status, 404);
    const onlyEtcd = (await stack.api('/v1/clusters/lc-refuse')).body.nodes.find((node: any) => node.roles.includes('etcd'));
    assert.equal((await stack.api(`/v1/clusters/lc-refuse/nodes/${onlyEtcd.hostname}/replace`, { method: 'POST' })).status, 409);
  });

  test('replacing a node deletes it once and the pool brings exactly one replacement to Ready', async () => {
    const cluster = await createCluster('lc-replace');
    const victim = cluster.nodes.find((node: any) => node.pool === 'workers');
    const deletesBefore = await calls('DELETE /v3/nodes/:id');
    const operation = await waitForOperation(stack, await run(`/v1/clusters/lc-replace/nodes/${victim.hostname}/replace`));
    assert.equal(operation.status, 'succeeded', JSON.stringify(operation.failure));
    assert.equal((await calls('DELETE /v3/nodes/:id')) - deletesBefore, 1);
    recordHistory(stack, 'replaceNode-drained', operation);
    const nodes = await poolNodes(cluster.rancher.id, 'workers');
    const live = nodes.filter((node) => node.state !== 'removing');
    assert.equal(live.length, 2);
    assert.ok(!live.some((node) => node.id === victim.id));
    assert.ok(live.every((node) => node.state === 'active'));
  });

  test('an unreachable node is replaced without a drain', async () => {
    const cluster = await createCluster('lc-unreachable');
    const victim = cluster.nodes.find((node: any) => node.pool === 'workers');
    await stack.sim(`/admin/nodes/${encodeURIComponent(victim.id)}/faults`, { body: { unreachable: true } });
    const operation = await waitForOperation(stack, await run(`/v1/clusters/lc-unreachable/nodes/${victim.id}/replace`));
    assert.equal(operation.status, 'succeeded', JSON.stringify(operation.failure));
    assert.equal(operation.steps.find((step: any) => step.name === 'drain').status, 'skipped');
    assert.match(operation.steps.find((step: any) => step.name === 'drain').detail, /does not answer/);
    recordHistory(stack, 'replaceNode-unreachable', operation);
  });

  test('a second mutating call while one runs is refused with 409 naming it, and reads are not blocked', async () => {
    const cluster = await createCluster('lc-busy');
    await setSim({ nodeBootMs: 4000 });
    try {
      const first = await run('/v1/clusters/lc-busy/nodepools/workers/scale', { quantity: 3 });
      const second = await stack.api('/v1/clusters/lc-busy/snapshots', { method: 'POST' });
      assert.equal(second.status, 409);
      assert.equal(second.body.operation, `/v1/operations/${first}`);
      assert.match(second.body.detail, new RegExp(first));
      const third = await stack.api('/v1/clusters/lc-busy', { method: 'DELETE' });
      assert.equal(third.status, 409);
      assert.equal((await stack.api('/v1/clusters/lc-busy')).status, 200);
      assert.equal((await stack.api(`/v1/operations/${first}`)).status, 200);
      assert.equal((await waitForOperation(stack, first)).status, 'succeeded');
      assert.equal((await stack.api('/v1/operations?target=cluster/lc-busy&kind=cluster.snapshot')).body.items.length, 0, 'the refused call left no operation');
    } finally {
      await setSim({ nodeBootMs: defaults.nodeBootMs });
    }
    void cluster;
  });

  test('a restore brings back exactly what the snapshot captured', async () => {
    const cluster = await createCluster('lc-restore');
    const core = await kube(cluster.rancher.id);
    await core.createNamespace({ body: { metadata: { name: 'before-snapshot' } } });
    const snap = await waitForOperation(stack, await run('/v1/clusters/lc-restore/snapshots'));
    assert.equal(snap.status, 'succeeded', JSON.stringify(snap.failure));
    const snapshots = (await stack.api('/v1/clusters/lc-restore/snapshots')).body.items;
    assert.equal(snapshots.length, 1);
    recordHistory(stack, 'takeSnapshot-marked', snap);
    await core.createNamespace({ body: { metadata: { name: 'after-snapshot' } } });
    await core.deleteNamespace({ name: 'before-snapshot' });

    const restore = await waitForOperation(stack, await run('/v1/clusters/lc-restore/restore', { snapshot: snapshots[0].id }));
    assert.equal(restore.status, 'succeeded', JSON.stringify(restore.failure));
    const names = (await core.listNamespace()).items.map((ns) => ns.metadata?.name);
    assert.ok(names.includes('before-snapshot'));
    assert.ok(!names.includes('after-snapshot'));
    assert.equal((await stack.api('/v1/clusters/lc-restore')).body.state, 'active');
    assert.equal(restore.steps.find((step: any) => step.name === 'verifyRestored').status, 'succeeded', 'the marker the snapshot captured is back');
    recordHistory(stack, 'restoreFromSnapshot-verified', restore);

    // A snapshot of another cluster, or none at all, is refused before anything runs.
    await createCluster('lc-other');
    const other = await stack.api('/v1/clusters/lc-other/restore', { body: { snapshot: snapshots[0].id } });
    assert.equal(other.status, 400);
    assert.equal(other.body.errors[0].field, 'snapshot');
    assert.equal((await stack.api('/v1/clusters/lc-other/restore', { body: { snapshot: 'nope' } })).status, 400);
    assert.equal((await stack.api('/v1/clusters/lc-other/restore', { body: {} })).status, 400);
  });

  test('a snapshot schedule is a Temporal Schedule that fires, can be paused, and keeps only `retention` snapshots', async () => {
    await createCluster('lc-sched');
    assert.equal((await stack.api('/v1/clusters/lc-sched/snapshot-schedule', { method: 'PUT', body: { cron: 'every minute', retention: 1 } })).status, 400);
    assert.equal((await stack.api('/v1/clusters/lc-sched/snapshot-schedule', { method: 'PUT', body: { cron: '61 * * * *', retention: 1 } })).status, 400);
    assert.equal((await stack.api('/v1/clusters/lc-sched/snapshot-schedule')).status, 404);
    const put = await stack.api('/v1/clusters/lc-sched/snapshot-schedule', { method: 'PUT', body: { cron: '* * * * *', retention: 1 } });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.equal(put.body.cron, '* * * * *');
    assert.equal(put.body.paused, false);

    const connection = await Connection.connect({ address: stack.temporalAddress });
    try {
      const client = new Client({ connection });
      const handle = client.schedule.getHandle(put.body.scheduleId);
      // It fires on its own within a minute…
      await waitFor(
        'the schedule to fire',
        async () => ((await handle.describe()).info.recentActions.length > 0 ? true : undefined),
        { timeoutMs: 75_000, intervalMs: 1000 },
      );
      const snapshotOps = async () => (await stack.api('/v1/operations?target=cluster/lc-sched&kind=cluster.snapshot')).body.items as any[];
      await waitFor('the scheduled snapshot to finish', async () => ((await snapshotOps()).some((op) => op.status === 'succeeded') ? true : undefined), {
        timeoutMs: 30_000,
      });
      // …and once more on demand (after the first finished: overlapping runs are skipped); retention 1 keeps only the newest.
      await handle.trigger();
      await waitFor(
        'two scheduled snapshots to finish',
        async () => {
          const ops = (await stack.api('/v1/operations?target=cluster/lc-sched&kind=cluster.snapshot')).body.items;
          return ops.length >= 2 && ops.every((op: any) => op.status === 'succeeded') ? ops : undefined;
        },
        { timeoutMs: 30_000 },
      );
      const snapshots = (await stack.api('/v1/clusters/lc-sched/snapshots')).body.items;
      assert.equal(snapshots.length, 1);
      recordHistory(stack, 'scheduledSnapshot', (await snapshotOps())[0]);

      const paused = await stack.api('/v1/clusters/lc-sched/snapshot-schedule', { method: 'PUT', body: { cron: '*/5 * * * *', retention: 3, paused: true } });
      assert.equal(paused.status, 200);
      assert.equal(paused.body.paused, true);
      assert.equal((await handle.describe()).state.paused, true);
      assert.equal((await stack.api('/v1/clusters/lc-sched/snapshot-schedule', { method: 'DELETE' })).status, 204);
      assert.equal((await stack.api('/v1/clusters/lc-sched/snapshot-schedule')).status, 404);
    } finally {
      await connection.close();
    }
  });

  test('an upgrade rolls every node to the new version, control plane first, and settings change on their own', async () => {
    const cluster = await createCluster('lc-upgrade');
    await setSim({ nodeUpgradeMs: 300 });
    const bad = async (body: unknown) => (await stack.api('/v1/clusters/lc-upgrade', { method: 'PATCH', body })).status;
    assert.equal(await bad({ kubernetesVersion: 'v1.29.10-rancher1-1' }), 400, 'a downgrade');
    assert.equal(await bad({ kubernetesVersion: 'v1.30.6-rancher1-1' }), 400, 'the same version');
    assert.equal(await bad({}), 400, 'nothing to change');
    assert.equal(await bad({ kubernetesVersion: 'latest' }), 400, 'not a version');
    assert.equal(await bad({ nodes: 3 }), 400, 'an unknown field');

    const labels = await waitForOperation(stack, await run('/v1/clusters/lc-upgrade', { labels: { team: 'payments' } }, 'PATCH'));
    assert.equal(labels.status, 'succeeded', JSON.stringify(labels.failure));
    assert.equal(labels.steps.find((step: any) => step.name === 'waitForUpgrade').status, 'skipped');
    assert.deepEqual((await stack.api('/v1/clusters/lc-upgrade')).body.labels, { team: 'payments' });

    const upgrade = await waitForOperation(stack, await run('/v1/clusters/lc-upgrade', { kubernetesVersion: 'v1.31.2-rancher1-1' }, 'PATCH'), 90_000);
    assert.equal(upgrade.status, 'succeeded', JSON.stringify(upgrade.failure));
    recordHistory(stack, 'updateCluster-upgrade', upgrade);
    const core = await kube(cluster.rancher.id);
    const versions = (await core.listNode()).items.map((node) => node.status?.nodeInfo?.kubeletVersion);
    assert.deepEqual([...new Set(versions)], ['v1.31.2']);
    const after = (await stack.api('/v1/clusters/lc-upgrade')).body;
    assert.equal(after.kubernetesVersion, 'v1.31.2-rancher1-1');
    assert.equal(after.state, 'active');
  });

  test('an upgrade stops and names the first node that does not come back Ready', async () => {
    const cluster = await createCluster('lc-upgrade-stall');
    await setSim({ nodeUpgradeMs: 300 });
    await stack.sim('/admin/faults', { body: { failUpgradeNodes: ['^lc-upgrade-stall-workers-1$'] } });
    try {
      const id = await run('/v1/clusters/lc-upgrade-stall', { kubernetesVersion: 'v1.31.2-rancher1-1', nodeTimeoutSeconds: 10 }, 'PATCH');
      const operation = await waitForOperation(stack, id, 90_000);
      assert.equal(operation.status, 'failed');
      assert.equal(operation.failure.type, 'Timeout');
      assert.equal(operation.failure.step, 'waitForUpgrade');
      assert.match(operation.failure.message, /lc-upgrade-stall-workers-1 did not come back Ready/);
      recordHistory(stack, 'updateCluster-stalled', operation);
    } finally {
      await stack.sim('/admin/faults', { method: 'DELETE' });
    }
    const core = await kube(cluster.rancher.id);
    const worker2 = (await core.listNode()).items.find((node) => node.metadata?.name === 'lc-upgrade-stall-workers-2');
    assert.equal(worker2?.status?.nodeInfo?.kubeletVersion, 'v1.30.6', 'the nodes after the stuck one were left alone');
    assert.equal((await stack.api('/v1/clusters/lc-upgrade-stall')).body.state, 'failed');
  });

  test('deleting a cluster removes it and its pools from Rancher and from the API', async () => {
    const cluster = await createCluster('lc-delete');
    const operation = await waitForOperation(stack, await run('/v1/clusters/lc-delete', undefined, 'DELETE'));
    assert.equal(operation.status, 'succeeded', JSON.stringify(operation.failure));
    assert.equal((await stack.api('/v1/clusters/lc-delete')).status, 404);
    const state = await stack.sim('/admin/state');
    assert.ok(!(state.clusters as any[]).some((c) => c.id === cluster.rancher.id));
    assert.equal((await stack.api(`/v1/operations/${operation.id}`)).body.status, 'succeeded', 'the operation outlives the cluster');
    recordHistory(stack, 'deleteCluster', operation);
  });

  test('with 30% of Rancher calls failing transiently, every operation still succeeds', async () => {
    const cluster = await createCluster('lc-faults');
    await setSim({ nodeUpgradeMs: 300 });
    await stack.sim('/admin/faults', { body: { errorRate: 0.3 } });
    const succeeds = async (what: string, path: string, body?: unknown, method = 'POST') => {
      const operation = await waitForOperation(stack, await run(path, body, method), 120_000);
      assert.equal(operation.status, 'succeeded', `${what}: ${JSON.stringify(operation.failure)}`);
    };
    try {
      await succeeds('scale', '/v1/clusters/lc-faults/nodepools/workers/scale', { quantity: 3 });
      const victim = cluster.nodes.find((node: any) => node.pool === 'workers');
      await succeeds('replace', `/v1/clusters/lc-faults/nodes/${victim.hostname}/replace`);
      await succeeds('snapshot', '/v1/clusters/lc-faults/snapshots');
      const snapshot = (await stack.api('/v1/clusters/lc-faults/snapshots')).body.items[0];
      await succeeds('restore', '/v1/clusters/lc-faults/restore', { snapshot: snapshot.id });
      await succeeds('upgrade', '/v1/clusters/lc-faults', { kubernetesVersion: 'v1.31.2-rancher1-1' }, 'PATCH');
      const live = (await poolNodes(cluster.rancher.id, 'workers')).filter((node) => node.state !== 'removing');
      assert.equal(live.length, 3);
      await succeeds('delete', '/v1/clusters/lc-faults', undefined, 'DELETE');
    } finally {
      await stack.sim('/admin/faults', { method: 'DELETE' });
    }
    const calls = await stack.sim('/admin/calls');
    assert.ok(calls.recent.some((call: any) => call.status >= 500), 'faults were injected');
    assert.equal((await stack.api('/v1/clusters/lc-faults')).status, 404);
  });

  test('a worker killed mid scale-down, mid replacement and mid restore: each completes, nothing done twice', async () => {
    const cluster = await createCluster('lc-crash', 3);

    // Scale-down, killed while the removed nodes drain away.
    await setSim({ nodeRemoveMs: 5000 });
    try {
      const id = await run('/v1/clusters/lc-crash/nodepools/workers/scale', { quantity: 2 });
      await waitFor('the removal wait', async () => ((await stack.api(`/v1/operations/${id}`)).body.step === 'waitForRemoval' ? true : undefined));
      await stack.killWorker();
      await stack.startWorker();
      assert.equal((await waitForOperation(stack, id, 90_000)).status, 'succeeded');
    } finally {
      await setSim({ nodeRemoveMs: defaults.nodeRemoveMs });
    }
    assert.equal((await poolNodes(cluster.rancher.id, 'workers')).filter((node) => node.state !== 'removing').length, 2);

    // Replacement, killed while the new node boots.
    const before = (await poolNodes(cluster.rancher.id, 'workers')).map((node) => node.hostname);
    const deletes = await calls('DELETE /v3/nodes/:id');
    await setSim({ nodeBootMs: 5000 });
    try {
      const victim = before[0];
      const id = await run(`/v1/clusters/lc-crash/nodes/${victim}/replace`);
      await waitFor('the replacement wait', async () => ((await stack.api(`/v1/operations/${id}`)).body.step === 'waitForReplacement' ? true : undefined));
      await stack.killWorker();
      await stack.startWorker();
      assert.equal((await waitForOperation(stack, id, 90_000)).status, 'succeeded');
    } finally {
      await setSim({ nodeBootMs: defaults.nodeBootMs });
    }
    assert.equal((await calls('DELETE /v3/nodes/:id')) - deletes, 1, 'the node was deleted once');
    const after = (await poolNodes(cluster.rancher.id, 'workers')).filter((node) => node.state !== 'removing');
    assert.equal(after.length, 2);
    assert.equal(after.filter((node) => !before.includes(node.hostname)).length, 1, 'exactly one replacement');

    // Restore, killed while Rancher restores.
    const snap = await waitForOperation(stack, await run('/v1/clusters/lc-crash/snapshots'));
    assert.equal(snap.status, 'succeeded');
    const snapshot = (await stack.api('/v1/clusters/lc-crash/snapshots')).body.items[0];
    const restores = await calls('POST /v3/clusters/:id?action=restoreFromEtcdBackup');
    await setSim({ restoreMs: 5000 });
    try {
      const id = await run('/v1/clusters/lc-crash/restore', { snapshot: snapshot.id });
      await waitFor('the restore wait', async () => ((await stack.api(`/v1/operations/${id}`)).body.step === 'waitUntilActive' ? true : undefined));
      await stack.killWorker();
      await stack.startWorker();
      const restored = await waitForOperation(stack, id, 90_000);
      assert.equal(restored.status, 'succeeded');
      recordHistory(stack, 'restoreFromSnapshot-worker-killed', restored);
    } finally {
      await setSim({ restoreMs: defaults.restoreMs });
    }
    assert.equal((await calls('POST /v3/clusters/:id?action=restoreFromEtcdBackup')) - restores, 1, 'Rancher was asked to restore once');
  });

  test('cancelling a scale-down before the quantity changes uncordons the nodes it cordoned', async () => {
    const cluster = await createCluster('lc-cancel', 3);
    const core = await kube(cluster.rancher.id);
    const newest = (await poolNodes(cluster.rancher.id, 'workers')).map((node) => node.hostname as string).sort().at(-1)!;
    // A PodDisruptionBudget that allows no eviction holds the drain, so the cancel lands before the quantity changes.
    await core.createNamespacedPod({
      namespace: 'default',
      body: { metadata: { name: 'db-0', labels: { app: 'db' } }, spec: { nodeName: newest, containers: [{ name: 'db', image: 'postgres' }] } },
    });
    await rancher(`/k8s/clusters/${cluster.rancher.id}/apis/policy/v1/namespaces/default/poddisruptionbudgets`, {
      body: { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: { name: 'db' }, spec: { minAvailable: 1, selector: { matchLabels: { app: 'db' } } } },
    });
    const id = await run('/v1/clusters/lc-cancel/nodepools/workers/scale', { quantity: 2, drainTimeoutSeconds: 60 });
    await waitFor('the drain to be blocked', async () => {
      const { body } = await stack.api(`/v1/operations/${id}`);
      return body.step === 'drain' && /blocked/.test(body.detail ?? '') ? true : undefined;
    });
    assert.equal((await core.readNode({ name: newest })).spec?.unschedulable, true);
    assert.equal((await stack.api(`/v1/operations/${id}/cancel`, { method: 'POST' })).status, 202);
    const operation = await waitForOperation(stack, id);
    assert.equal(operation.status, 'cancelled');
    recordHistory(stack, 'scaleNodePool-cancelled', operation);
    assert.notEqual((await core.readNode({ name: newest })).spec?.unschedulable, true, 'uncordoned');
    assert.equal((await poolNodes(cluster.rancher.id, 'workers')).filter((node) => node.state !== 'removing').length, 3, 'nothing removed');
  });
});
