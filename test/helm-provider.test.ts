import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { ProviderError } from '../domain/errors.js';
import { createHelmClient, type Helm } from '../providers/helm.js';
import { helmBinary } from '../scripts/tools.js';
import { startRancherSim } from '../sim/rancher.js';
import { waitFor } from './helpers/wait.js';

/**
 * The Helm adapter drives the real `helm` binary (built by the setup) against a
 * simulated cluster's Kubernetes API, through the kubeconfig Rancher generates.
 */
describe('the Helm adapter against a simulated cluster', () => {
  const token = 'helm-test-token';
  const chart = fileURLToPath(new URL('./fixtures/charts/demo', import.meta.url));
  let sim: Awaited<ReturnType<typeof startRancherSim>>;
  let helm: Helm;
  let kubeconfig: string;

  const v3 = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${sim.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    assert.ok(response.ok, `${method} ${path}: ${response.status}`);
    return response.json() as Promise<any>;
  };

  before(async () => {
    sim = await startRancherSim({ port: 0, stateFile: null, token, timing: { clusterProvisionMs: 100, nodeBootMs: 100, nodeRemoveMs: 100 } });
    const cluster = await v3('POST', '/v3/clusters', { name: 'helm', rancherKubernetesEngineConfig: { kubernetesVersion: 'v1.30.6-rancher1-1' } });
    await v3('POST', '/v3/nodepools', { clusterId: cluster.id, name: 'all', hostnamePrefix: 'helm-', quantity: 1, etcd: true, controlPlane: true, worker: true });
    await waitFor('the cluster to be active', async () => ((await v3('GET', `/v3/clusters/${cluster.id}`)).state === 'active' ? true : undefined));
    kubeconfig = (await v3('POST', `/v3/clusters/${cluster.id}?action=generateKubeconfig`, {})).config;
    helm = createHelmClient({ binary: helmBinary(), kubeconfig, timeoutMs: 60_000 });
  });
  after(async () => {
    await sim?.close();
  });

  test('installs, lists, upgrades, shows history, rolls back and uninstalls a release', async () => {
    const installed = await helm.upgradeInstall({ release: 'demo', namespace: 'addons', chart, values: {}, wait: true, timeoutSeconds: 30 });
    assert.equal(installed.status, 'deployed');
    assert.equal(installed.revision, 1);
    assert.deepEqual((await helm.list()).map((release) => [release.name, release.namespace, release.status]), [['demo', 'addons', 'deployed']]);

    const kc = new KubeConfig();
    kc.loadFromString(kubeconfig);
    const core = kc.makeApiClient(CoreV1Api);
    assert.equal((await core.readNamespacedConfigMap({ name: 'demo-config', namespace: 'addons' })).data?.message, 'hello');

    const upgraded = await helm.upgradeInstall({ release: 'demo', namespace: 'addons', chart, values: { message: 'bonjour' }, wait: true, timeoutSeconds: 30 });
    assert.equal(upgraded.revision, 2);
    assert.equal((await core.readNamespacedConfigMap({ name: 'demo-config', namespace: 'addons' })).data?.message, 'bonjour');

    await helm.rollback('demo', 'addons', 1, 30);
    const history = await helm.history('demo', 'addons');
    assert.deepEqual(history.map((entry) => [entry.revision, entry.status]), [
      [1, 'superseded'],
      [2, 'superseded'],
      [3, 'deployed'],
    ]);
    assert.equal((await core.readNamespacedConfigMap({ name: 'demo-config', namespace: 'addons' })).data?.message, 'hello');

    await helm.uninstall('demo', 'addons', 30);
    assert.equal(await helm.status('demo', 'addons'), null);
    await helm.uninstall('demo', 'addons', 30); // absent already: fine
  });

  test('values the chart schema refuses fail as InvalidSpec, and nothing is installed', async () => {
    await assert.rejects(
      helm.upgradeInstall({ release: 'bad', namespace: 'addons', chart, values: { replicas: 0, extra: true }, wait: false, timeoutSeconds: 30 }),
      (err: unknown) => err instanceof ProviderError && err.type === 'InvalidSpec' && /replicas/.test(err.message),
    );
    assert.equal(await helm.status('bad', 'addons'), null);
  });

  test('no error message carries the kubeconfig or its token', async () => {
    const secret = /token: "?([^"\n]+)/.exec(kubeconfig)?.[1] ?? '';
    assert.ok(secret.length > 8);
    const err = await helm.history('no-such-release', 'addons').catch((e: unknown) => e);
    assert.ok(err instanceof ProviderError && err.type === 'NotFound', String(err));
    const text = err instanceof Error ? `${err.message} ${err.stack}` : String(err);
    assert.ok(!text.includes(secret));
  });
});
