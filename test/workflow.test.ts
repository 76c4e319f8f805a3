import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Runtime, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createClusterActivities } from '../activities/cluster.js';
import type { ClusterSpec } from '../domain/cluster.js';
import { clusterMutationWorkflowId, type OperationRecord } from '../domain/operation.js';
import { createRancherClient } from '../providers/rancher.js';
import { startRancherSim } from '../sim/rancher.js';
import { temporalCli } from '../scripts/tools.js';
import { Store } from '../store/index.js';
import { createCluster, createClusterSteps, progressQuery, type CreateClusterInput } from '../workflows/cluster.js';
import { ensureSearchAttributes } from '../workers/temporal.js';
import { kubeClients, kubeconfigCache, workflowsPath } from '../workers/worker.js';
import { saveHistory } from './helpers/histories.js';
import { waitFor } from './helpers/wait.js';

/**
 * The createCluster workflow against the real Temporal dev server (the binary
 * the setup installed, never a download), with the real activities and the
 * real Rancher adapter pointed at the simulator.
 *
 * With KUMO_RECORD_HISTORIES=1 the runs are saved under test/histories/ for the
 * replay test.
 */
describe('createCluster on the real Temporal dev server', () => {
  const token = 'workflow-test-token';
  const taskQueue = 'workflow-test';
  let env: TestWorkflowEnvironment;
  let sim: Awaited<ReturnType<typeof startRancherSim>>;
  let store: Store;
  let dir: string;
  let bundle: WorkflowBundleWithSourceMap;
  let worker: Worker;
  let running: Promise<void>;
  let counter = 0;

  before(async () => {
    // Failed attempts are the point of several tests here: keep the SDK's warnings out of the output.
    Runtime.install({ logger: new DefaultLogger('ERROR'), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' }, forward: {} } } });
    dir = mkdtempSync(join(tmpdir(), 'kumo-wf-'));
    env = await TestWorkflowEnvironment.createLocal({
      server: { executable: { type: 'existing-path', path: temporalCli() }, extraArgs: ['--log-level', 'error'] },
    });
    await ensureSearchAttributes(env.connection, 'default');
    sim = await startRancherSim({ port: 0, stateFile: null, token, timing: { clusterProvisionMs: 300, nodeBootMs: 300, nodeRemoveMs: 200 } });
    store = await Store.open(`sqlite:${join(dir, 'kumo.db')}`);
    bundle = await bundleWorkflowCode({ workflowsPath, logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: console.error } });
    const rancher = createRancherClient({ url: sim.url, token, timeoutMs: 3000, nodeTemplateId: 'nt-test' });
    worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle: bundle,
      activities: createClusterActivities({ rancher, store, kubeFor: kubeClients(kubeconfigCache(rancher), 3000), pollIntervalMs: 100 }),
    });
    running = worker.run();
  });

  after(async () => {
    worker?.shutdown();
    await running?.catch(() => undefined);
    await env?.teardown();
    await sim?.close();
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const admin = async (path: string, body?: unknown, method = body === undefined ? 'GET' : 'PUT') => {
    const response = await fetch(`${sim.url}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    assert.ok(response.ok, `${path}: ${response.status}`);
    const text = await response.text();
    return text ? JSON.parse(text) : undefined;
  };

  /** Records the cluster and operation as the API would, then starts the workflow. */
  async function start(spec: ClusterSpec, readyTimeoutSeconds = 60) {
    const operationId = `op-wf-${++counter}`;
    const now = new Date().toISOString();
    const operation: OperationRecord = {
      id: operationId,
      kind: 'cluster.create',
      target: `cluster/${spec.name}`,
      status: 'running',
      step: null,
      steps: createClusterSteps.map((name) => ({ name, status: 'pending' as const })),
      startedAt: now,
      finishedAt: null,
      failure: null,
      workflowId: clusterMutationWorkflowId(spec.name),
      runId: null,
    };
    const recorded = await store.createCluster(
      { id: spec.name, name: spec.name, kubernetesVersion: spec.kubernetesVersion, labels: {}, state: 'provisioning', rancherId: null, rancherState: null, apiEndpoint: null, nodePools: spec.nodePools, nodes: [], lastOperationId: operationId, createdAt: now, updatedAt: now },
      operation,
    );
    assert.ok(recorded.created);
    const input: CreateClusterInput = { operationId, clusterId: spec.name, spec, readyTimeoutSeconds };
    const handle = await env.client.workflow.start(createCluster, { taskQueue, workflowId: operation.workflowId, args: [input] });
    return { handle, operationId };
  }

  const spec = (name: string, overrides: Partial<ClusterSpec> = {}): ClusterSpec => ({
    name,
    kubernetesVersion: 'v1.30.6-rancher1-1',
    nodePools: [
      { name: 'cp', roles: ['etcd', 'controlplane'], quantity: 1 },
      { name: 'w', roles: ['worker'], quantity: 2 },
    ],
    ...overrides,
  });

  const record = (name: string, handle: { workflowId: string; firstExecutionRunId: string }) =>
    saveHistory(env.address, name, { workflowId: handle.workflowId, runId: handle.firstExecutionRunId });

  const rancherClusters = async (name: string) => ((await admin('/admin/state')).clusters as any[]).filter((c) => c.name === name);

  test('creates one Rancher cluster with its pools, waits for every node and records the inventory', async () => {
    const { handle, operationId } = await start(spec('wf-ok'));
    const result = await handle.result();
    assert.equal(result.nodes, 3);
    const clusters = await rancherClusters('wf-ok');
    assert.equal(clusters.length, 1);
    assert.equal(result.rancherId, clusters[0].id);
    assert.equal(clusters[0].labels['kumo.io/cluster'], 'wf-ok');

    const cluster = await store.getCluster('wf-ok');
    assert.equal(cluster?.state, 'active');
    assert.equal(cluster?.nodes.length, 3);
    assert.ok(cluster?.nodePools.every((pool) => pool.rancherId));
    const operation = await store.getOperation(operationId);
    assert.equal(operation?.status, 'succeeded');
    assert.ok(operation?.steps.every((step) => step.status === 'succeeded' && step.startedAt && step.finishedAt));
    const progress = await handle.query(progressQuery);
    assert.equal(progress.steps.length, createClusterSteps.length);
    record('createCluster-succeeded', handle);
  });

  test('a spec Rancher refuses fails at once with InvalidSpec and no retry', async () => {
    const before = (await admin('/admin/calls')).byRoute['POST /v3/clusters'] ?? 0;
    const { handle, operationId } = await start(spec('wf-refused', { kubernetesVersion: 'v1.99.1-rancher1-1' }));
    const err = await handle.result().then(
      () => assert.fail('expected a failure'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof WorkflowFailedError);
    assert.ok(err.cause instanceof ApplicationFailure);
    assert.equal(err.cause.type, 'InvalidSpec');
    assert.equal((await admin('/admin/calls')).byRoute['POST /v3/clusters'] - before, 1, 'exactly one attempt');
    const operation = await store.getOperation(operationId);
    assert.equal(operation?.status, 'failed');
    assert.deepEqual({ ...operation?.failure, message: undefined }, { step: 'createRancherCluster', type: 'InvalidSpec', attempts: 1, message: undefined });
    assert.equal((await store.getCluster('wf-refused'))?.state, 'failed');
    record('createCluster-invalid-spec', handle);
  });

  test('transient Rancher errors are retried until the step succeeds, without duplicates', async () => {
    await admin('/admin/faults', { rules: [{ method: 'POST', path: '^/v3/nodepools$', times: 2, status: 503 }] });
    try {
      const { handle } = await start(spec('wf-retry'));
      await handle.result();
    } finally {
      await admin('/admin/faults', undefined, 'DELETE');
    }
    const state = await admin('/admin/state');
    const cluster = (state.clusters as any[]).find((c) => c.name === 'wf-retry');
    assert.equal((state.nodePools as any[]).filter((pool) => pool.clusterId === cluster.id).length, 2);
  });

  test('a create whose response was lost is adopted on retry, not made twice', async () => {
    await admin('/admin/faults', { rules: [{ method: 'POST', path: '^/v3/(clusters|nodepools)$', times: 2, status: 504, afterEffect: true }] });
    try {
      const { handle } = await start(spec('wf-lost'));
      await handle.result();
      record('createCluster-retried', handle);
    } finally {
      await admin('/admin/faults', undefined, 'DELETE');
    }
    const clusters = await rancherClusters('wf-lost');
    assert.equal(clusters.length, 1);
    const pools = ((await admin('/admin/state')).nodePools as any[]).filter((pool) => pool.clusterId === clusters[0].id);
    assert.deepEqual(pools.map((pool) => pool.name).sort(), ['cp', 'w']);
  });

  test('a Rancher cluster of the same name that Kumo did not create is not adopted', async () => {
    const response = await fetch(`${sim.url}/v3/clusters`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'wf-foreign', rancherKubernetesEngineConfig: { kubernetesVersion: 'v1.30.6-rancher1-1' } }),
    });
    assert.equal(response.status, 201);
    const { handle, operationId } = await start(spec('wf-foreign'));
    await assert.rejects(handle.result(), WorkflowFailedError);
    const operation = await store.getOperation(operationId);
    assert.equal(operation?.failure?.type, 'AlreadyExists');
    assert.match(operation?.failure?.message ?? '', /did not create/);
  });

  test('nodes that never become ready end in a Timeout failure naming them', async () => {
    await admin('/admin/faults', { neverReadyNodes: ['^wf-stuck-w-'] });
    try {
      const { handle, operationId } = await start(spec('wf-stuck'), 2);
      await assert.rejects(handle.result(), WorkflowFailedError);
      const operation = await store.getOperation(operationId);
      assert.equal(operation?.failure?.type, 'Timeout');
      assert.equal(operation?.failure?.step, 'waitUntilActive');
      assert.match(operation?.failure?.message ?? '', /wf-stuck-w-1/);
    } finally {
      await admin('/admin/faults', undefined, 'DELETE');
    }
  });

  test('cancelling removes the cluster from Rancher and frees the name', async () => {
    await admin('/admin/settings', { nodeBootMs: 30_000 });
    try {
      const { handle, operationId } = await start(spec('wf-cancel'));
      await waitFor('the wait step', async () => ((await handle.query(progressQuery)).step === 'waitUntilActive' ? true : undefined));
      await handle.cancel();
      const err = await handle.result().then(
        () => assert.fail('expected cancellation'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof WorkflowFailedError && err.cause instanceof CancelledFailure);
      const operation = await store.getOperation(operationId);
      assert.equal(operation?.status, 'cancelled');
      assert.equal(operation?.steps.find((step) => step.name === 'waitUntilActive')?.status, 'cancelled');
      assert.equal(await store.getCluster('wf-cancel'), null);
      assert.ok((await rancherClusters('wf-cancel')).every((c) => c.state === 'removing'));
      record('createCluster-cancelled', handle);
    } finally {
      await admin('/admin/settings', { nodeBootMs: 300 });
    }
  });
});
