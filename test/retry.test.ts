import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { projectRoot } from '../scripts/tools.js';
import { recordHistory, startTestStack, waitForOperation, type TestStack } from './helpers/stack.js';

/** Retrying a failed operation from its failed step, over HTTP against the stack. */
describe('retry from the failed step', () => {
  let stack: TestStack;

  before(async () => {
    stack = await startTestStack();
  });
  after(async () => {
    await stack?.destroy();
  });

  const postsOf = async (route: RegExp) => {
    const calls = await stack.sim('/admin/calls');
    return Object.entries(calls.byRoute as Record<string, number>)
      .filter(([key]) => route.test(key))
      .reduce((sum, [, n]) => sum + n, 0);
  };

  test('a create failed at step 3 of 5 by a fault is retried once the fault is gone: steps 1-2 are reused, not run again', async () => {
    await stack.sim('/admin/faults', { body: { rules: [{ method: 'POST', path: '^/v3/nodepools$', times: 1, status: 422, code: 'InvalidFormat', message: 'injected: node template not found' }] } });
    const created = await stack.api('/v1/clusters', { body: { name: 'rt-a', kubernetesVersion: 'v1.30.6-rancher1-1', nodePools: [{ name: 'all', roles: ['etcd', 'controlplane', 'worker'], quantity: 1 }] } });
    assert.equal(created.status, 202);
    const failed = await waitForOperation(stack, created.body.operation.id);
    assert.equal(failed.status, 'failed');
    assert.equal(failed.failure.step, 'createNodePools');
    assert.deepEqual(failed.steps.map((s: any) => s.status), ['succeeded', 'succeeded', 'failed', 'pending', 'pending']);
    assert.deepEqual(failed.input.spec.name, 'rt-a', 'the input is kept for the retry');
    await stack.sim('/admin/faults', { method: 'DELETE' });

    const clusterCreates = await postsOf(/^POST \/v3\/clusters$/);
    assert.ok(clusterCreates >= 1, 'the first run created the Rancher cluster');
    const retried = await stack.api(`/v1/operations/${failed.id}/retry`, { method: 'POST' });
    assert.equal(retried.status, 202, JSON.stringify(retried.body));
    assert.equal(retried.body.operation.retryOf, failed.id);
    const done = await waitForOperation(stack, retried.body.operation.id, 120_000);
    assert.equal(done.status, 'succeeded', JSON.stringify(done.failure));
    recordHistory(stack, 'createCluster-resumed', done);
    assert.deepEqual(
      done.steps.map((s: any) => [s.name, s.status, s.reusedFrom ?? null]),
      [
        ['validate', 'skipped', failed.id],
        ['createRancherCluster', 'skipped', failed.id],
        ['createNodePools', 'succeeded', null],
        ['waitUntilActive', 'succeeded', null],
        ['recordInventory', 'succeeded', null],
      ],
    );
    assert.equal(await postsOf(/^POST \/v3\/clusters$/), clusterCreates, 'the Rancher cluster was not created again');
    const cluster = (await stack.api('/v1/clusters/rt-a')).body;
    assert.equal(cluster.state, 'active');
    assert.equal(cluster.lastOperationId ?? done.id, done.id);
  });

  test('kumo ops retry --wait retries from the failed step and exits 0 when the retry succeeds', async () => {
    await stack.sim('/admin/faults', { body: { rules: [{ method: 'POST', path: '^/v3/nodepools$', times: 1, status: 422, code: 'InvalidFormat', message: 'injected' }] } });
    const created = await stack.api('/v1/clusters', { body: { name: 'rt-cli', kubernetesVersion: 'v1.30.6-rancher1-1', nodePools: [{ name: 'all', roles: ['etcd', 'controlplane', 'worker'], quantity: 1 }] } });
    const failed = await waitForOperation(stack, created.body.operation.id);
    assert.equal(failed.status, 'failed');
    await stack.sim('/admin/faults', { method: 'DELETE' });
    const run = await new Promise<{ code: number | null; out: string }>((resolve) => {
      execFile(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'ops', 'retry', failed.id, '--wait'], { cwd: projectRoot, env: { ...process.env, KUMO_URL: stack.apiUrl, KUMO_TOKEN: stack.adminToken, KUMO_POLL_MS: '300' }, timeout: 120_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
      );
    });
    assert.equal(run.code, 0, run.out);
    assert.match(run.out, /createNodePools/);
    assert.equal((await stack.api('/v1/clusters/rt-cli')).body.state, 'active');
  });

  test('a retry is refused when it is not safe or makes no sense, saying why', async () => {
    const ops = (await stack.api('/v1/operations?target=cluster/rt-a')).body.items;
    const first = ops.find((op: any) => op.status === 'failed');
    const second = ops.find((op: any) => op.status === 'succeeded');
    const again = await stack.api(`/v1/operations/${first.id}/retry`, { method: 'POST' });
    assert.equal(again.status, 409);
    assert.match(again.body.detail, /changed since/);
    const notFailed = await stack.api(`/v1/operations/${second.id}/retry`, { method: 'POST' });
    assert.equal(notFailed.status, 409);
    assert.match(notFailed.body.detail, /only a failed operation/);
    assert.equal((await stack.api('/v1/operations/op-nope/retry', { method: 'POST' })).status, 404);
    assert.equal((await stack.api(`/v1/operations/${first.id}/retry`, { method: 'POST', token: null })).status, 401);
  });
});
