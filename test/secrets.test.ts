import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import { startTestStack, waitForOperation, type TestStack } from './helpers/stack.js';
import { waitFor } from './helpers/wait.js';

/**
 * Runs a scenario over the whole stack with distinctive secrets, then searches
 * every line Kumo's processes logged, every API answer and every workflow
 * history Temporal holds for them. None may appear anywhere.
 */
describe('secrets never leak', () => {
  const rancherToken = `rancher-${randomBytes(12).toString('hex')}`;
  const registryPassword = `regpass-${randomBytes(12).toString('hex')}`;
  const envSecret = `envsecret-${randomBytes(12).toString('hex')}`;
  let stack: TestStack;
  const answers: string[] = [];

  const api = async (path: string, init: Parameters<TestStack['api']>[1] = {}) => {
    const response = await stack.api(path, init);
    answers.push(typeof response.body === 'string' ? response.body : JSON.stringify(response.body));
    return response;
  };

  before(async () => {
    stack = await startTestStack({ env: { RANCHER_TOKEN: rancherToken, KUMO_REGISTRY_USERNAME: 'kumo', KUMO_REGISTRY_PASSWORD: registryPassword } });
  });
  after(async () => {
    await stack?.destroy();
  });

  test('after clusters, add-ons, functions, failures and a retry, no log line, API answer or history holds a secret', async () => {
    // A kubeconfig as Rancher hands it out: its token must not show up either.
    const kubeconfig = ((await (
      await fetch(`${stack.simUrl}/v3/clusters?name=none`, { headers: { authorization: `Bearer ${rancherToken}` } })
    ).json()) as { data: unknown[] }).data;
    assert.ok(Array.isArray(kubeconfig), 'the simulator takes the same token');

    for (const name of ['functions', 'sec-a']) {
      const created = await api('/v1/clusters', { body: { name, kubernetesVersion: 'v1.30.6-rancher1-1', nodePools: [{ name: 'all', roles: ['etcd', 'controlplane', 'worker'], quantity: 1 }] } });
      assert.equal((await waitForOperation(stack, created.body.operation.id, 120_000)).status, 'succeeded');
    }
    const rancherId = (await api('/v1/clusters/sec-a')).body.rancher.id;
    const config = ((await (
      await fetch(`${stack.simUrl}/v3/clusters/${rancherId}?action=generateKubeconfig`, { method: 'POST', headers: { authorization: `Bearer ${rancherToken}` } })
    ).json()) as { config: string }).config;
    const kubeToken = /token: "?([^"\n]+)"?/.exec(config)?.[1];
    assert.ok(kubeToken, 'the kubeconfig carries a token');

    const addon = await api('/v1/clusters/sec-a/addons/logging', { method: 'PUT', body: { version: '1.0.0' } });
    assert.equal((await waitForOperation(stack, addon.body.operation.id, 120_000)).status, 'succeeded');
    const scale = await api('/v1/clusters/sec-a/nodepools/all/scale', { body: { quantity: 2 } });
    await waitForOperation(stack, scale.body.operation.id, 120_000);

    const fn = await api('/v1/functions', {
      body: { name: 'sec-fn', source: { files: { 'handler.py': 'import os\ndef handle(event, context):\n    return len(os.environ.get("API_KEY", ""))\n' } }, env: { API_KEY: envSecret } },
    });
    assert.equal((await waitForOperation(stack, fn.body.operation.id, 300_000)).status, 'succeeded');
    assert.equal((await api('/v1/functions/sec-fn/invoke', { method: 'POST', body: {} })).body.result, envSecret.length, 'the function sees its secret');

    // A failure and its retry.
    await stack.sim('/admin/faults', { body: { rules: [{ method: 'POST', path: '^/v3/nodepools$', times: 1, status: 422, code: 'InvalidFormat', message: 'injected' }] } });
    const failing = await api('/v1/clusters', { body: { name: 'sec-b', kubernetesVersion: 'v1.30.6-rancher1-1', nodePools: [{ name: 'all', roles: ['etcd', 'controlplane', 'worker'], quantity: 1 }] } });
    const failed = await waitForOperation(stack, failing.body.operation.id, 120_000);
    assert.equal(failed.status, 'failed');
    await stack.sim('/admin/faults', { method: 'DELETE' });
    const retry = await api(`/v1/operations/${failed.id}/retry`, { method: 'POST' });
    await waitForOperation(stack, retry.body.operation.id, 120_000);
    await api(`/v1/clusters/nope`);
    await api('/v1/clusters', { token: 'kumo_wrong_token_for_the_search' });
    for (const path of ['/v1/clusters', '/v1/operations?limit=200', '/v1/functions', '/v1/functions/sec-fn', '/v1/audit', '/v1/tokens', '/v1/clusters/sec-a/addons', `/v1/operations/${failed.id}`]) await api(path);

    const secrets = { rancherToken, registryPassword, envSecret, kubeToken, adminToken: stack.adminToken };
    const logs = readdirSync(join(stack.dataDir, 'logs'))
      .filter((file) => /^(api|worker)/.test(file))
      .map((file) => ({ file, text: readFileSync(join(stack.dataDir, 'logs', file), 'utf8') }));
    assert.ok(logs.length >= 2 && logs.every((log) => log.text.length > 0), 'the API and worker logs were read');

    const connection = await Connection.connect({ address: stack.temporalAddress });
    const histories: Array<{ id: string; text: string }> = [];
    try {
      const client = new Client({ connection });
      // Visibility is eventually consistent: wait (bounded) until it lists every run of the scenario.
      const runs = await waitFor('every run listed', async () => {
        const listed: Array<{ workflowId: string; runId: string }> = [];
        for await (const run of client.workflow.list()) listed.push(run);
        return listed.length >= 7 ? listed : undefined;
      });
      for (const run of runs) {
        histories.push({ id: run.workflowId, text: historyToJSON(await client.workflow.getHandle(run.workflowId, run.runId).fetchHistory()) });
      }
    } finally {
      await connection.close();
    }
    assert.ok(histories.length >= 7, `histories of every run were read: ${histories.length}`);

    for (const [what, secret] of Object.entries(secrets)) {
      for (const log of logs) assert.ok(!log.text.includes(secret), `${what} is in ${log.file}`);
      for (const answer of answers) assert.ok(!answer.includes(secret), `${what} is in an API answer: ${answer.slice(0, 200)}`);
      for (const history of histories) assert.ok(!history.text.includes(secret), `${what} is in the history of ${history.id}`);
    }
  });
});
