import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { clusterSpec, startTestStack, waitForOperation, type TestStack } from './helpers/stack.js';
import { waitFor } from './helpers/wait.js';

/**
 * End to end over HTTP: the `npm start` stack (real Temporal dev server, the
 * Rancher simulator, a worker process, the API process), driven only through
 * the API, with assertions on what the simulator holds.
 */
describe('the embedded stack, over HTTP', () => {
  let stack: TestStack;

  before(async () => {
    stack = await startTestStack();
  });
  after(async () => {
    await stack?.destroy();
  });

  const simClusters = async (name: string) => {
    const state = await stack.sim('/admin/state');
    return (state.clusters as any[]).filter((cluster) => cluster.name === name);
  };

  test('a cluster created through the API reaches succeeded and the simulator holds it with every node active', async () => {
    const created = await stack.api('/v1/clusters', { body: clusterSpec('e2e-basic') });
    assert.equal(created.status, 202, JSON.stringify(created.body));
    assert.equal(created.headers.get('location'), `/v1/operations/${created.body.operation.id}`);
    assert.equal(created.body.cluster.state, 'provisioning');
    assert.equal(created.body.operation.status, 'running');

    const operation = await waitForOperation(stack, created.body.operation.id);
    assert.equal(operation.status, 'succeeded', JSON.stringify(operation.failure));
    assert.deepEqual(
      operation.steps.map((step: any) => [step.name, step.status]),
      [
        ['validate', 'succeeded'],
        ['createRancherCluster', 'succeeded'],
        ['createNodePools', 'succeeded'],
        ['waitUntilActive', 'succeeded'],
        ['recordInventory', 'succeeded'],
      ],
    );

    const clusters = await simClusters('e2e-basic');
    assert.equal(clusters.length, 1);
    assert.equal(clusters[0].state, 'active');
    const state = await stack.sim('/admin/state');
    const nodes = (state.nodes as any[]).filter((node) => node.clusterId === clusters[0].id);
    assert.equal(nodes.length, 3);
    assert.ok(nodes.every((node) => node.state === 'active'));

    const cluster = await stack.api('/v1/clusters/e2e-basic');
    assert.equal(cluster.status, 200);
    assert.equal(cluster.body.state, 'active');
    assert.equal(cluster.body.rancher.id, clusters[0].id);
    assert.equal(cluster.body.nodes.length, 3);
    assert.ok(cluster.body.nodes.every((node: any) => node.ready));
    assert.deepEqual(cluster.body.nodes.map((node: any) => node.pool).sort(), ['control', 'workers', 'workers']);
  });

  test('a second create of a live cluster name is refused with 409 and starts nothing', async () => {
    const first = await stack.api('/v1/clusters', { body: clusterSpec('e2e-dup') });
    assert.equal(first.status, 202);
    const second = await stack.api('/v1/clusters', { body: clusterSpec('e2e-dup') });
    assert.equal(second.status, 409);
    assert.equal(second.headers.get('content-type'), 'application/problem+json');
    assert.match(second.body.detail, /already exists/);
    assert.equal(second.body.operation, `/v1/operations/${first.body.operation.id}`);
    await waitForOperation(stack, first.body.operation.id);
    const ops = await stack.api('/v1/operations?target=cluster/e2e-dup');
    assert.equal(ops.body.items.length, 1);
    assert.equal((await simClusters('e2e-dup')).length, 1);
  });

  test('bad input gets a 400 problem document naming the field, and starts no workflow', async () => {
    const before = await stack.sim('/admin/calls');
    const opsBefore = (await stack.api('/v1/operations?limit=200')).body.items.length;
    const valid = clusterSpec('e2e-bad');
    const cases: Array<{ why: string; body?: unknown; raw?: string; field: string }> = [
      { why: 'missing name', body: { ...valid, name: undefined }, field: 'name' },
      { why: 'missing node pools', body: { ...valid, nodePools: undefined }, field: 'nodePools' },
      { why: 'name of the wrong type', body: { ...valid, name: 42 }, field: 'name' },
      { why: 'quantity 0', body: { ...valid, nodePools: [{ name: 'a', roles: ['etcd', 'controlplane', 'worker'], quantity: 0 }] }, field: 'nodePools.0.quantity' },
      { why: 'negative quantity', body: { ...valid, nodePools: [{ name: 'a', roles: ['etcd', 'controlplane', 'worker'], quantity: -2 }] }, field: 'nodePools.0.quantity' },
      { why: 'quantity as a string', body: { ...valid, nodePools: [{ name: 'a', roles: ['etcd', 'controlplane', 'worker'], quantity: '3' }] }, field: 'nodePools.0.quantity' },
      { why: 'unknown role', body: { ...valid, nodePools: [{ name: 'a', roles: ['etcd', 'controlplane', 'worker', 'master'], quantity: 1 }] }, field: 'nodePools.0.roles.3' },
      { why: 'a name Rancher refuses (upper case)', body: { ...valid, name: 'Prod_EU' }, field: 'name' },
      { why: 'a name Rancher refuses (too long)', body: { ...valid, name: 'a'.repeat(64) }, field: 'name' },
      { why: 'no worker role anywhere', body: { ...valid, nodePools: [{ name: 'a', roles: ['etcd', 'controlplane'], quantity: 1 }] }, field: 'nodePools' },
      { why: 'a malformed version', body: { ...valid, kubernetesVersion: '1.30' }, field: 'kubernetesVersion' },
      { why: 'an unknown field', body: { ...valid, nodepools: [] }, field: 'nodepools' },
      { why: 'a body that is not JSON', raw: '{"name": "x",', field: '(root)' },
      { why: 'a JSON array', body: [valid], field: '(root)' },
      { why: 'an empty body', raw: '', field: '(root)' },
    ];
    for (const c of cases) {
      const response = await stack.api('/v1/clusters', {
        method: 'POST',
        ...(c.raw !== undefined ? { raw: c.raw, headers: { 'content-type': 'application/json' } } : { body: c.body }),
      });
      assert.equal(response.status, 400, `${c.why}: ${JSON.stringify(response.body)}`);
      assert.equal(response.headers.get('content-type'), 'application/problem+json', c.why);
      assert.equal(response.body.status, 400);
      assert.ok(Array.isArray(response.body.errors) && response.body.errors.length > 0, `${c.why}: no errors listed`);
      const fields = response.body.errors.map((e: any) => e.field);
      assert.ok(
        fields.some((field: string) => field === c.field || field.startsWith(`${c.field}.`) || c.field === '(root)'),
        `${c.why}: expected ${c.field} among ${fields.join(', ')}`,
      );
    }
    const wrongType = await stack.api('/v1/clusters', { method: 'POST', raw: 'name=x', headers: { 'content-type': 'text/plain' } });
    assert.equal(wrongType.status, 415);
    assert.equal(wrongType.body.errors[0].field, 'content-type');

    const afterCalls = await stack.sim('/admin/calls');
    assert.equal(afterCalls.byRoute['POST /v3/clusters'] ?? 0, before.byRoute['POST /v3/clusters'] ?? 0, 'nothing reached Rancher');
    assert.equal((await stack.api('/v1/operations?limit=200')).body.items.length, opsBefore, 'no operation was recorded');
    assert.equal((await stack.api('/v1/clusters/e2e-bad')).status, 404);
  });

  test('unknown ids and routes are 404 problem documents, bad query parameters 400', async () => {
    const cluster = await stack.api('/v1/clusters/does-not-exist');
    assert.equal(cluster.status, 404);
    assert.equal(cluster.headers.get('content-type'), 'application/problem+json');
    assert.equal((await stack.api('/v1/operations/op-nope')).status, 404);
    assert.equal((await stack.api('/v1/operations/op-nope/cancel', { method: 'POST' })).status, 404);
    assert.equal((await stack.api('/v1/nothing-here')).status, 404);
    const badLimit = await stack.api('/v1/operations?limit=0');
    assert.equal(badLimit.status, 400);
    assert.equal(badLimit.body.errors[0].field, 'limit');
    assert.equal((await stack.api('/v1/operations?status=exploded')).status, 400);
    assert.equal((await stack.api('/v1/operations?cursor=garbage')).status, 400);
  });

  test('with 30% of Rancher calls failing transiently the operation still succeeds, with one cluster', async () => {
    await stack.sim('/admin/faults', { body: { errorRate: 0.3 } });
    try {
      const created = await stack.api('/v1/clusters', { body: clusterSpec('e2e-faulty') });
      assert.equal(created.status, 202);
      const operation = await waitForOperation(stack, created.body.operation.id, 120_000);
      assert.equal(operation.status, 'succeeded', JSON.stringify(operation.failure));
    } finally {
      await stack.sim('/admin/faults', { method: 'DELETE' });
    }
    const calls = await stack.sim('/admin/calls');
    assert.ok(calls.recent.some((call: any) => call.status >= 500), 'faults were injected');
    assert.equal((await simClusters('e2e-faulty')).length, 1);
  });

  test('a spec Rancher refuses fails at once with InvalidSpec, after one attempt', async () => {
    const created = await stack.api('/v1/clusters', { body: clusterSpec('e2e-refused', { kubernetesVersion: 'v1.99.0-rancher1-1' }) });
    assert.equal(created.status, 202);
    const operation = await waitForOperation(stack, created.body.operation.id);
    assert.equal(operation.status, 'failed');
    assert.equal(operation.failure.type, 'InvalidSpec');
    assert.equal(operation.failure.step, 'createRancherCluster');
    assert.equal(operation.failure.attempts, 1);
    assert.match(operation.failure.message, /kubernetesVersion/);
    assert.equal((await stack.api('/v1/clusters/e2e-refused')).body.state, 'failed');
    assert.equal((await simClusters('e2e-refused')).length, 0);
    // The name is free again once the attempt is over.
    const again = await stack.api('/v1/clusters', { body: clusterSpec('e2e-refused') });
    assert.equal(again.status, 202);
    assert.equal((await waitForOperation(stack, again.body.operation.id)).status, 'succeeded');
  });

  test('a running operation shows its current step, and cancelling it removes what it made in Rancher', async () => {
    await stack.sim('/admin/settings', { body: { nodeBootMs: 20_000 } });
    try {
      const created = await stack.api('/v1/clusters', { body: clusterSpec('e2e-cancel') });
      const id = created.body.operation.id;
      const running = await waitFor('the wait step', async () => {
        const { body } = await stack.api(`/v1/operations/${id}`);
        return body.step === 'waitUntilActive' ? body : undefined;
      });
      assert.equal(running.status, 'running');
      assert.equal(running.steps.find((step: any) => step.name === 'createNodePools').status, 'succeeded');
      const cancel = await stack.api(`/v1/operations/${id}/cancel`, { method: 'POST' });
      assert.equal(cancel.status, 202);
      const operation = await waitForOperation(stack, id);
      assert.equal(operation.status, 'cancelled');
      assert.equal((await stack.api(`/v1/operations/${id}/cancel`, { method: 'POST' })).status, 409);
      const left = await simClusters('e2e-cancel');
      assert.ok(left.every((cluster) => cluster.state === 'removing'), JSON.stringify(left));
      assert.equal((await stack.api('/v1/clusters/e2e-cancel')).status, 404);
    } finally {
      await stack.sim('/admin/settings', { body: { nodeBootMs: Number(600) } });
    }
  });

  test('a worker killed with SIGKILL mid-create is replaced and the operation succeeds with exactly one cluster', async () => {
    // The create reaches Rancher, which takes 2 s to answer; the worker dies
    // meanwhile, Rancher creates the cluster anyway, and the new worker's retry
    // must find it rather than make a second one.
    await stack.sim('/admin/faults', {
      body: { rules: [{ method: 'POST', path: '^/v3/clusters$', times: 1, status: 502, latencyMs: 2000, afterEffect: true }] },
    });
    try {
      const created = await stack.api('/v1/clusters', { body: clusterSpec('e2e-crash') });
      assert.equal(created.status, 202);
      await waitFor('the create call to reach Rancher', async () => {
        const calls = await stack.sim('/admin/calls');
        return calls.recent.some((call: any) => call.method === 'POST' && call.path === '/v3/clusters') ? true : undefined;
      });
      await stack.killWorker();
      await stack.startWorker();
      const operation = await waitForOperation(stack, created.body.operation.id, 90_000);
      assert.equal(operation.status, 'succeeded', JSON.stringify(operation.failure));
    } finally {
      await stack.sim('/admin/faults', { method: 'DELETE' });
    }
    const clusters = await simClusters('e2e-crash');
    assert.equal(clusters.length, 1);
    const state = await stack.sim('/admin/state');
    assert.equal((state.nodePools as any[]).filter((pool) => pool.clusterId === clusters[0].id).length, 2);
  });

  test('a worker killed while waiting for nodes resumes the wait on a new worker', async () => {
    await stack.sim('/admin/settings', { body: { nodeBootMs: 4000 } });
    try {
      const created = await stack.api('/v1/clusters', { body: clusterSpec('e2e-crash-wait') });
      const id = created.body.operation.id;
      await waitFor('the wait step', async () => ((await stack.api(`/v1/operations/${id}`)).body.step === 'waitUntilActive' ? true : undefined));
      await stack.killWorker();
      await stack.startWorker();
      const operation = await waitForOperation(stack, id, 90_000);
      assert.equal(operation.status, 'succeeded', JSON.stringify(operation.failure));
    } finally {
      await stack.sim('/admin/settings', { body: { nodeBootMs: 600 } });
    }
    const clusters = await simClusters('e2e-crash-wait');
    assert.equal(clusters.length, 1);
    const state = await stack.sim('/admin/state');
    assert.equal((state.nodes as any[]).filter((node) => node.clusterId === clusters[0].id).length, 3);
  });

  test('after the whole stack restarts, clusters and operations are still listed and Temporal still has the run', async () => {
    const { body } = await stack.api('/v1/clusters/e2e-basic');
    const operationId = body.lastOperation.id;
    const { dataDir, ports } = stack;
    await stack.stop();
    stack = await startTestStack({ dataDir, ports });
    const clusters = await stack.api('/v1/clusters');
    assert.ok(clusters.body.items.some((cluster: any) => cluster.name === 'e2e-basic' && cluster.state === 'active'));
    const operation = await stack.api(`/v1/operations/${operationId}`);
    assert.equal(operation.body.status, 'succeeded');
    const connection = await Connection.connect({ address: stack.temporalAddress });
    try {
      const description = await new Client({ connection }).workflow.getHandle(operation.body.workflowId, operation.body.runId).describe();
      assert.equal(description.status.name, 'COMPLETED');
      assert.equal(description.searchAttributes.KumoOperationId?.[0], operationId);
    } finally {
      await connection.close();
    }
    assert.equal((await simClusters('e2e-basic')).length, 1, 'the simulator kept its state');
  });
});
