/**
 * The real Rancher adapter (createRancherClient) against the Rancher simulator,
 * started in-process on a loopback port. Checks that every failure arrives as a
 * classified ProviderError and that the token never leaks into one.
 */
import assert from 'node:assert/strict';
import { freePort } from '../scripts/tools.js';
import { after, before, beforeEach, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { inspect } from 'node:util';
import { ProviderError, type FailureType } from '../domain/errors.js';
import { createRancherClient, isNodeReady, type Rancher, type RancherNode } from '../providers/rancher.js';
import { startRancherSim, type RancherSim } from '../sim/rancher.js';

const TOKEN = 'token-kumo7:S3cr3tRancherT0ken';
const WRONG_TOKEN = 'token-wrong:N0tTheRightS3cret';
const FAST = { clusterProvisionMs: 150, nodeBootMs: 200, nodeRemoveMs: 100 };
const VERSION = 'v1.30.6-rancher1-1';
const NODE_TEMPLATE = 'cattle-global-nt:nt-test';

/** Awaits a call that must fail with a ProviderError of `type`, and answers the error. */
async function failsWith(call: Promise<unknown>, type: FailureType): Promise<ProviderError> {
  try {
    await call;
  } catch (err) {
    assert.ok(err instanceof ProviderError, `expected a ProviderError, got ${String(err)}`);
    assert.equal(err.type, type, `expected ${type}, got ${err.type}: ${err.message}`);
    for (const secret of [TOKEN, WRONG_TOKEN, 'S3cr3t']) {
      assert.ok(!err.message.includes(secret), `the message leaks the token: ${err.message}`);
      assert.ok(!JSON.stringify(err.details).includes(secret));
    }
    return err;
  }
  assert.fail(`expected the call to fail with ${type}`);
}

/** Polls `probe` until `done` holds; fails with the last value after `timeoutMs`. */
async function waitFor<T>(what: string, probe: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let value = await probe();
  while (!done(value)) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; last value: ${JSON.stringify(value)}`);
    await delay(25);
    value = await probe();
  }
  return value;
}


describe('createRancherClient against the Rancher simulator', () => {
  let sim: RancherSim;
  let rancher: Rancher;

  const admin = async (method: string, path: string, body?: unknown): Promise<unknown> => {
    const res = await fetch(`${sim.url}${path}`, {
      method,
      ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    });
    const text = await res.text();
    assert.equal(res.status, 200, `${method} ${path}: ${text}`);
    return text ? JSON.parse(text) : null;
  };
  const client = (overrides: Partial<Parameters<typeof createRancherClient>[0]> = {}) =>
    createRancherClient({ url: sim.url, token: TOKEN, timeoutMs: 5_000, nodeTemplateId: NODE_TEMPLATE, ...overrides });
  const newCluster = (name: string, overrides: Record<string, unknown> = {}) =>
    rancher.createCluster({ name, kubernetesVersion: VERSION, labels: { 'kumo.io/cluster': name }, annotations: { 'kumo.io/operation': 'op-1' }, ...overrides });

  before(async () => {
    sim = await startRancherSim({ port: 0, stateFile: null, token: TOKEN, timing: FAST });
    rancher = client();
  });

  after(async () => {
    await sim?.close();
  });

  beforeEach(async () => {
    await admin('POST', '/admin/reset');
  });

  test('a wrong token is an Unauthorized ProviderError that is not retried', async () => {
    const error = await failsWith(client({ token: WRONG_TOKEN }).findClusterByName('anything'), 'Unauthorized');
    assert.equal(error.details.status, 401);
    assert.equal(error.retryable, false);
    assert.match(error.message, /GET \/v3\/clusters answered 401/);
    assert.ok(!error.message.includes('?name='), 'the query string is not part of the message');
  });

  test('creating a cluster with an unsupported Kubernetes version is InvalidSpec naming the field', async () => {
    const error = await failsWith(newCluster('bad-version', { kubernetesVersion: 'v1.99.0-rancher1-1' }), 'InvalidSpec');
    assert.equal(error.details.status, 422);
    assert.equal(error.details.code, 'InvalidFormat');
    assert.equal(error.details.field, 'rancherKubernetesEngineConfig.kubernetesVersion');
    assert.match(error.message, /\(field rancherKubernetesEngineConfig\.kubernetesVersion\)/);
    assert.equal(error.retryable, false);
    assert.equal(await rancher.findClusterByName('bad-version'), null, 'nothing was created');
  });

  test('creating a cluster whose name is taken is AlreadyExists', async () => {
    await newCluster('taken');
    const error = await failsWith(newCluster('taken'), 'AlreadyExists');
    assert.equal(error.details.code, 'NotUnique');
    assert.equal(error.details.field, 'name');
    assert.equal(error.retryable, false);
  });

  test('an injected 503 is Transient and the next call succeeds', async () => {
    await admin('PUT', '/admin/faults', { rules: [{ method: 'GET', path: '^/v3/clusters$', times: 1, status: 503 }] });
    const error = await failsWith(rancher.findClusterByName('x'), 'Transient');
    assert.equal(error.details.status, 503);
    assert.equal(error.retryable, true);
    assert.equal(await rancher.findClusterByName('x'), null, 'the fault was spent');
  });

  test('an injected 429 on create is Transient and a 404 on get is NotFound', async () => {
    await admin('PUT', '/admin/faults', { rules: [{ method: 'POST', path: '^/v3/clusters$', times: 1, status: 429 }] });
    await failsWith(newCluster('throttled'), 'Transient');
    await failsWith(rancher.getCluster('c-nope1'), 'NotFound');
  });

  test('an answer slower than timeoutMs is Transient and says it timed out', async () => {
    await admin('PUT', '/admin/faults', { rules: [{ method: 'GET', times: 1, status: 500, latencyMs: 1_000 }] });
    const started = Date.now();
    const error = await failsWith(client({ timeoutMs: 100 }).getCluster('c-slow1'), 'Transient');
    assert.match(error.message, /timed out after 100 ms/);
    assert.ok(Date.now() - started < 900, 'the client gave up at its timeout, not when the answer came');
    assert.equal(error.retryable, true);
  });

  test('a refused connection is Transient', async () => {
    const port = await freePort();
    const error = await failsWith(client({ url: `http://127.0.0.1:${port}` }).listNodes('c-x'), 'Transient');
    assert.match(error.message, /ECONNREFUSED/);
    assert.match(error.message, /^Rancher GET \/v3\/nodes: /);
  });

  test(
    'a Rancher URL with a user and password in it fails without echoing the password',
    {},
    async () => {
      const failure = await client({ url: sim.url.replace('http://', 'http://admin:Pa55word@') })
        .listNodes('c-x')
        .then(() => assert.fail('expected the call to fail'), (err: unknown) => err);
      assert.ok(failure instanceof ProviderError);
      assert.ok(!failure.message.includes('Pa55word'), failure.message);
    },
  );

  test('findClusterByName answers null for an unknown name and the exact match otherwise, skipping one being removed', async () => {
    assert.equal(await rancher.findClusterByName('alpha'), null);
    const alpha = await newCluster('alpha');
    await newCluster('alpha-2');
    assert.equal(alpha.name, 'alpha');
    assert.match(alpha.id, /^c-/);
    assert.equal(alpha.rancherKubernetesEngineConfig?.kubernetesVersion, VERSION);
    assert.deepEqual(alpha.annotations, { 'kumo.io/operation': 'op-1' });

    const found = await rancher.findClusterByName('alpha');
    assert.equal(found?.id, alpha.id);
    assert.equal(found?.labels?.['kumo.io/cluster'], 'alpha');
    assert.equal((await rancher.getCluster(alpha.id)).name, 'alpha');

    await admin('PUT', '/admin/settings', { nodeRemoveMs: 60_000 });
    await rancher.deleteCluster(alpha.id);
    assert.equal((await rancher.getCluster(alpha.id)).state, 'removing');
    assert.equal(await rancher.findClusterByName('alpha'), null, 'a cluster being removed does not count');
    await rancher.deleteCluster('c-gone1');
  });

  test('createNodePool makes a pool whose nodes listNodes reports, and isNodeReady turns true once they boot', async () => {
    const cluster = await newCluster('pooled');
    const pool = await rancher.createNodePool({
      clusterId: cluster.id,
      name: 'all',
      hostnamePrefix: 'pooled-all-',
      quantity: 2,
      etcd: true,
      controlPlane: true,
      worker: true,
      labels: { 'kumo.io/cluster': 'pooled' },
    });
    assert.equal(pool.clusterId, cluster.id);
    assert.equal(pool.name, 'all');
    assert.equal(pool.quantity, 2);
    assert.equal(pool.etcd && pool.controlPlane && pool.worker, true);
    assert.deepEqual((await rancher.listNodePools(cluster.id)).map((p) => p.id), [pool.id]);

    const booting = await rancher.listNodes(cluster.id);
    assert.equal(booting.length, 2);
    assert.deepEqual(booting.map((n) => n.hostname).sort(), ['pooled-all-1', 'pooled-all-2']);
    assert.ok(booting.every((n) => n.nodePoolId === pool.id && n.clusterId === cluster.id));
    assert.ok(booting.every((n) => !isNodeReady(n)), 'nodes are not ready while they boot');

    const ready = await waitFor('both nodes ready', () => rancher.listNodes(cluster.id), (nodes) => nodes.length === 2 && nodes.every(isNodeReady));
    assert.ok(ready.every((n) => n.state === 'active'));
    await waitFor('the cluster active', () => rancher.getCluster(cluster.id), (c) => c.state === 'active');

    const scaled = await rancher.updateNodePool(pool.id, { quantity: 3 });
    assert.equal(scaled.quantity, 3);
    await waitFor('a third node', () => rancher.listNodes(cluster.id), (nodes) => nodes.filter((n) => n.state !== 'removing').length === 3);
    assert.deepEqual(await rancher.listNodes('c-other'), [], 'another cluster has no nodes');
  });

  test('isNodeReady holds only for an active or cordoned node whose Ready condition, if any, is True', () => {
    const node = (state: string, ready?: string): RancherNode => ({
      id: 'n',
      clusterId: 'c',
      state,
      ...(ready === undefined ? {} : { conditions: [{ type: 'Registered', status: 'True' }, { type: 'Ready', status: ready }] }),
    });
    assert.equal(isNodeReady(node('active', 'True')), true);
    assert.equal(isNodeReady(node('active')), true);
    assert.equal(isNodeReady(node('cordoned', 'True')), true);
    assert.equal(isNodeReady(node('active', 'False')), false);
    assert.equal(isNodeReady(node('active', 'Unknown')), false);
    assert.equal(isNodeReady(node('registering', 'True')), false);
    assert.equal(isNodeReady(node('provisioning')), false);
    assert.equal(isNodeReady(node('removing', 'True')), false);
  });

  test('no kind of failure puts either token into the error message, details, stack or inspected form', async () => {
    await admin('PUT', '/admin/faults', { rules: [{ method: 'GET', path: '^/v3/nodepools$', times: 1, status: 503 }] });
    const errors = [
      await failsWith(client({ token: WRONG_TOKEN }).getCluster('c-any01'), 'Unauthorized'),
      await failsWith(newCluster('Not_A_Name'), 'InvalidSpec'),
      await failsWith(rancher.getCluster('c-none1'), 'NotFound'),
      await failsWith(rancher.listNodePools('c-any01'), 'Transient'),
      await failsWith(client({ url: `http://127.0.0.1:${await freePort()}` }).listNodes('c-any01'), 'Transient'),
    ];
    for (const error of errors) {
      const shown = inspect(error, { depth: 5 });
      for (const token of [TOKEN, WRONG_TOKEN]) {
        assert.ok(!shown.includes(token), `leaks a token: ${shown}`);
        assert.ok(!String(error.stack).includes(token));
      }
    }
  });
});
