/**
 * The Store against both of its dialects: SQLite (a temp file) and a real
 * PostgreSQL server started for this file (test/helpers/postgres.ts). One
 * behaviour suite runs against each.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { BindingSpecSchema } from '../domain/event.js';
import pg from 'pg';
import type { ClusterRecord } from '../domain/cluster.js';
import type { OperationKind, OperationRecord, OperationStatus } from '../domain/operation.js';
import { openDb } from '../store/db.js';
import { isValidCursor, Store } from '../store/index.js';
import { migrate, migrations } from '../store/migrations.js';
import { startPostgres, type PostgresServer } from './helpers/postgres.js';

const ROOT = new URL('..', import.meta.url);
const STORE_MODULE = new URL('../store/index.ts', import.meta.url).href;
const OLD = '2020-01-01T00:00:00.000Z';

/** What the behaviour suite needs from a dialect: fresh, empty databases. */
interface StoreFactory {
  dialect: 'sqlite' | 'postgres';
  /** Why this dialect cannot run here, or null when it can. */
  unavailable(): string | null;
  /** URL of a new, empty database. */
  newDatabase(): Promise<string>;
}

function clusterRecord(overrides: Partial<ClusterRecord> = {}): ClusterRecord {
  return {
    id: 'prod-eu-1',
    name: 'prod-eu-1',
    kubernetesVersion: 'v1.30.6-rancher1-1',
    labels: {},
    state: 'provisioning',
    rancherId: null,
    rancherState: null,
    apiEndpoint: null,
    nodePools: [{ name: 'all', roles: ['etcd', 'controlplane', 'worker'], quantity: 1 }],
    nodes: [],
    lastOperationId: null,
    createdAt: OLD,
    updatedAt: OLD,
    ...overrides,
  };
}

function operationRecord(overrides: Partial<OperationRecord> = {}): OperationRecord {
  return {
    id: 'op-1',
    kind: 'cluster.create',
    target: 'cluster/prod-eu-1',
    status: 'running',
    step: null,
    steps: [
      { name: 'createRancherCluster', status: 'pending' },
      { name: 'createNodePools', status: 'pending' },
    ],
    startedAt: OLD,
    finishedAt: null,
    failure: null,
    workflowId: 'cluster/prod-eu-1/mutation',
    runId: null,
    ...overrides,
  };
}

/** Records a cluster and the operation creating it, the way the API does. */
async function create(store: Store, id: string, operationId: string, cluster: Partial<ClusterRecord> = {}, operation: Partial<OperationRecord> = {}) {
  return store.createCluster(
    clusterRecord({ id, name: id, lastOperationId: operationId, ...cluster }),
    operationRecord({ id: operationId, target: `cluster/${id}`, workflowId: `cluster/${id}/mutation`, ...operation }),
  );
}

/**
 * Runs `script` (an ES module body; `Store` is imported for it) in `processes`
 * child processes. Each prints "ready" once loaded and then waits; `between`
 * runs when all are ready, then all are released at once and must exit 0
 * within `timeoutMs`. Child processes, because a blocked SQLite writer blocks
 * its whole event loop, and because the API and the worker are separate
 * processes on one database.
 */
async function inChildren(
  script: string,
  env: Record<string, string>,
  options: { processes: number; timeoutMs: number; between?: () => Promise<void> },
): Promise<void> {
  const body = `
    const { Store } = await import(process.env.KUMO_TEST_STORE_MODULE);
    const url = process.env.KUMO_TEST_DB_URL;
    const go = () => new Promise((resolve) => process.stdin.once('data', resolve));
    ${script}
  `;
  const children = Array.from({ length: options.processes }, () =>
    spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', body], {
      cwd: ROOT,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, KUMO_TEST_STORE_MODULE: STORE_MODULE, ...env },
    }),
  );
  const outputs = children.map(() => ({ text: '' }));
  const exits = children.map(
    (child, i) =>
      new Promise<number | string>((resolve) => {
        const output = outputs[i]!;
        child.stdout.on('data', (chunk: Buffer) => (output.text += chunk.toString()));
        child.stderr.on('data', (chunk: Buffer) => (output.text += chunk.toString()));
        child.once('error', (err) => resolve(err.message));
        child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
      }),
  );
  const shown = () => outputs.map((o) => o.text.trim().slice(0, 1500)).join(' | ');
  try {
    const readyBy = Date.now() + 20_000;
    while (!outputs.every((o) => o.text.includes('ready')) && Date.now() < readyBy) {
      if (children.some((c) => c.exitCode !== null)) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.ok(outputs.every((o) => o.text.includes('ready')), `children did not get ready: ${shown()}`);
    await options.between?.();
    for (const child of children) child.stdin.write('go\n');

    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), options.timeoutMs)));
    const outcome = await Promise.race([Promise.all(exits), timedOut]);
    clearTimeout(timer);
    assert.notEqual(outcome, 'timeout', `the children did not finish within ${options.timeoutMs} ms: ${shown()}`);
    assert.deepEqual(outcome, children.map(() => 0), `a child failed: ${shown()}`);
  } finally {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await Promise.all(exits);
  }
}

/** `opensPerProcess` concurrent Store.open of `url` in each of `processes` children, released at the same moment. */
async function openConcurrently(url: string, processes: number, opensPerProcess: number, timeoutMs: number): Promise<void> {
  const script = `
    process.stdout.write('ready\\n');
    await go();
    const n = Number(process.env.KUMO_TEST_OPENS);
    const results = await Promise.allSettled(Array.from({ length: n }, () => Store.open(url)));
    for (const r of results) if (r.status === 'fulfilled') await r.value.close();
    const failures = results.filter((r) => r.status === 'rejected').map((r) => String(r.reason));
    process.stdout.write(JSON.stringify({ failures }) + '\\n');
    process.exit(failures.length ? 1 : 0);
  `;
  await inChildren(script, { KUMO_TEST_DB_URL: url, KUMO_TEST_OPENS: String(opensPerProcess) }, { processes, timeoutMs });
}

function storeBehaviour(factory: StoreFactory): void {
  const sqlite = factory.dialect === 'sqlite';

  /** A Store on a new database, closed when the test ends; null when the dialect is unavailable (the test is skipped). */
  async function freshStore(t: TestContext): Promise<{ store: Store; url: string } | null> {
    const reason = factory.unavailable();
    if (reason) {
      t.skip(reason);
      return null;
    }
    const url = await factory.newDatabase();
    const store = await Store.open(url);
    t.after(() => store.close());
    return { store, url };
  }

  async function schemaVersions(url: string): Promise<number[]> {
    const db = await openDb(url);
    try {
      const rows = await db.all<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
      return rows.map((row) => Number(row.version));
    } finally {
      await db.close();
    }
  }

  test('migrating applies every migration once on a new database and nothing on an up-to-date one, keeping the data', async (t) => {
    const reason = factory.unavailable();
    if (reason) return t.skip(reason);
    const url = await factory.newDatabase();
    const db = await openDb(url);
    try {
      assert.equal(await migrate(db), migrations.length);
      assert.equal(await migrate(db), 0);
    } finally {
      await db.close();
    }
    const first = await Store.open(url);
    try {
      await create(first, 'kept', 'op-kept');
    } finally {
      await first.close();
    }
    const again = await Store.open(url);
    try {
      assert.equal((await again.getCluster('kept'))?.lastOperationId, 'op-kept');
    } finally {
      await again.close();
    }
    assert.deepEqual(await schemaVersions(url), migrations.map((m) => m.version));
  });

  test('two Store.open in separate processes at the same moment both succeed and apply each migration once', async (t) => {
    const reason = factory.unavailable();
    if (reason) return t.skip(reason);
    const url = await factory.newDatabase();
    await openConcurrently(url, 2, 1, 15_000);
    assert.deepEqual(await schemaVersions(url), migrations.map((m) => m.version));
    const store = await Store.open(url);
    try {
      assert.equal((await create(store, 'after-race', 'op-after')).created, true);
    } finally {
      await store.close();
    }
  });

  test(
    'two Store.open in one process at the same moment both succeed and apply each migration once',
    {},
    async (t) => {
      const reason = factory.unavailable();
      if (reason) return t.skip(reason);
      const url = await factory.newDatabase();
      await openConcurrently(url, 1, 2, sqlite ? 2_000 : 15_000);
      assert.deepEqual(await schemaVersions(url), migrations.map((m) => m.version));
    },
  );

  test('a created cluster reads back from getCluster and listClusters with its JSON fields and nulls intact', async (t) => {
    const opened = await freshStore(t);
    if (!opened) return;
    const { store } = opened;
    const full = clusterRecord({
      id: 'zeta',
      name: 'zeta',
      description: 'the "full" one — ünïcode',
      labels: { team: 'platform', 'kumo.io/tier': 'gold' },
      nodePools: [
        { name: 'control', roles: ['etcd', 'controlplane'], quantity: 3, rancherId: 'c-abcde:np-1' },
        { name: 'workers', roles: ['worker'], quantity: 2 },
      ],
      nodes: [{ id: 'c-abcde:m-1', hostname: 'zeta-control-1', pool: 'control', roles: ['etcd', 'controlplane'], state: 'active', ready: true }],
      rancherId: 'c-abcde',
      rancherState: 'provisioning',
      apiEndpoint: 'https://rancher.example/k8s/clusters/c-abcde',
      lastOperationId: 'op-zeta',
    });
    const operation = operationRecord({ id: 'op-zeta', target: 'cluster/zeta', workflowId: 'cluster/zeta/mutation' });
    assert.deepEqual(await store.createCluster(full, operation), { created: true, previous: null });
    assert.deepEqual(await create(store, 'alpha', 'op-alpha'), { created: true, previous: null });

    assert.deepEqual(await store.getCluster('zeta'), full);
    const alpha = await store.getCluster('alpha');
    assert.ok(alpha);
    assert.equal('description' in alpha, false, 'a cluster without a description has no description key');
    assert.equal(alpha.rancherId, null);
    assert.equal(alpha.rancherState, null);
    assert.equal(alpha.apiEndpoint, null);
    assert.deepEqual(alpha.labels, {});
    assert.deepEqual(alpha.nodes, []);
    assert.equal(await store.getCluster('nope'), null);

    const listed = await store.listClusters();
    assert.deepEqual(
      listed.map((c) => c.name),
      ['alpha', 'zeta'],
      'sorted by name',
    );
    assert.deepEqual(listed[1], full);
    assert.deepEqual(await store.getOperation('op-zeta'), operation);
  });

  test('creating a cluster whose id a live cluster holds returns created:false with the existing record and writes nothing', async (t) => {
    const opened = await freshStore(t);
    if (!opened) return;
    const { store } = opened;
    for (const state of ['provisioning', 'active', 'deleting'] as const) {
      const id = `live-${state}`;
      assert.deepEqual(await create(store, id, `op-${id}-1`, { state }), { created: true, previous: null });
      const before = await store.getCluster(id);
      const second = await create(store, id, `op-${id}-2`, { state: 'provisioning', kubernetesVersion: 'v1.31.2-rancher1-1' });
      assert.equal(second.created, false, `a ${state} cluster blocks a new one`);
      assert.ok(!second.created);
      assert.deepEqual(second.existing, before);
      assert.deepEqual(await store.getCluster(id), before, 'the existing cluster is unchanged');
      assert.equal(await store.getOperation(`op-${id}-2`), null, 'the refused operation is not recorded');
    }
  });

  test('a failed cluster can be created again, which keeps its Rancher id and the old operation', async (t) => {
    const opened = await freshStore(t);
    if (!opened) return;
    const { store } = opened;
    await create(store, 'phoenix', 'op-1');
    await store.updateCluster('phoenix', { state: 'failed', rancherId: 'c-old11', rancherState: 'provisioning' });

    const again = await create(store, 'phoenix', 'op-2', { description: 'second try' }, { startedAt: '2021-01-01T00:00:00.000Z' });
    assert.equal(again.created, true);
    assert.equal(again.created && again.previous?.state, 'failed', 'the replaced record is handed back');
    const cluster = await store.getCluster('phoenix');
    assert.ok(cluster);
    assert.equal(cluster.state, 'provisioning');
    assert.equal(cluster.lastOperationId, 'op-2');
    assert.equal(cluster.description, 'second try');
    assert.equal(cluster.rancherId, 'c-old11', 'the Rancher cluster of the failed attempt stays known');
    assert.ok(await store.getOperation('op-1'), 'the failed attempt stays in the audit record');
    assert.ok(await store.getOperation('op-2'));
    assert.equal((await store.listClusters()).length, 1);

    // The workflow could not be started: the failed record comes back as it was.
    await store.forgetClusterCreation('phoenix', 'op-2', again.created ? again.previous : null);
    const restored = await store.getCluster('phoenix');
    assert.equal(restored?.state, 'failed');
    assert.equal(restored?.lastOperationId, 'op-1');
    assert.equal(await store.getOperation('op-2'), null);
  });

  test('forgetClusterCreation removes the cluster and its operation, and leaves a cluster another operation owns', async (t) => {
    const opened = await freshStore(t);
    if (!opened) return;
    const { store } = opened;
    await create(store, 'a', 'op-a');
    await create(store, 'b', 'op-b');

    await store.forgetClusterCreation('a', 'op-b');
    assert.ok(await store.getCluster('a'), 'cluster a belongs to op-a, not op-b');
    // The named operation goes regardless; that is the one that could not start.
    assert.equal(await store.getOperation('op-b'), null);

    await store.forgetClusterCreation('a', 'op-a');
    assert.equal(await store.getCluster('a'), null);
    assert.equal(await store.getOperation('op-a'), null);
    assert.ok(await store.getCluster('b'));
    assert.deepEqual((await create(store, 'a', 'op-a2')).created, true, 'the name is free again');
  });

  test('updateCluster writes only the patched fields, clears with null, and bumps updatedAt', async (t) => {
    const opened = await freshStore(t);
    if (!opened) return;
    const { store } = opened;
    await create(store, 'patchy', 'op-p', { description: 'keep me', labels: { a: 'b' }, rancherState: 'provisioning', apiEndpoint: 'https://x' });
    const original = await store.getCluster('patchy');
    assert.ok(original);

    await store.updateCluster('patchy', { rancherId: 'c-12345' });
    const afterId = await store.getCluster('patchy');
    assert.deepEqual({ ...afterId, updatedAt: OLD }, { ...original, rancherId: 'c-12345' });
    assert.ok(afterId && afterId.updatedAt > OLD, 'updatedAt moves forward');
    assert.equal(afterId?.createdAt, OLD);

    const nodes = [{ id: 'n1', hostname: 'patchy-all-1', pool: 'all', roles: ['worker' as const], state: 'active', ready: true }];
    const nodePools = [{ name: 'all', roles: ['etcd' as const, 'controlplane' as const, 'worker' as const], quantity: 1, rancherId: 'c-12345:np-x' }];
    await store.updateCluster('patchy', { state: 'active', nodes, nodePools });
    const afterMany = await store.getCluster('patchy');
    assert.deepEqual({ ...afterMany, updatedAt: OLD }, { ...original, rancherId: 'c-12345', state: 'active', nodes, nodePools });

    await store.updateCluster('patchy', { apiEndpoint: null, rancherState: undefined });
    const cleared = await store.getCluster('patchy');
    assert.equal(cleared?.apiEndpoint, null, 'null clears');
    assert.equal(cleared?.rancherState, 'provisioning', 'undefined keeps');
    assert.equal(cleared?.description, 'keep me');

    await store.updateCluster('no-such-cluster', { state: 'failed' });
    assert.equal(await store.getCluster('no-such-cluster'), null, 'updating an unknown id creates nothing');
  });

  test('getOperation, setOperationRun, setOperationDetail and finishOperation record an operation through its life', async (t) => {
    const opened = await freshStore(t);
    if (!opened) return;
    const { store } = opened;
    await create(store, 'c1', 'op-life');
    await create(store, 'c2', 'op-other');
    assert.equal(await store.getOperation('op-missing'), null);
    const started = await store.getOperation('op-life');
    assert.ok(started);
    assert.equal('detail' in started, false, 'no detail until a step reports one');

    await store.setOperationRun('op-life', 'run-123');
    await store.setOperationDetail('op-life', '3/5 nodes active');
    assert.deepEqual(await store.getOperation('op-life'), { ...started, runId: 'run-123', detail: '3/5 nodes active' });

    const outcome = {
      status: 'failed' as const,
      steps: [
        { name: 'createRancherCluster', status: 'succeeded' as const, startedAt: OLD, finishedAt: OLD },
        { name: 'createNodePools', status: 'failed' as const, startedAt: OLD, finishedAt: OLD, detail: 'quota' },
      ],
      step: 'createNodePools',
      failure: { step: 'createNodePools', type: 'QuotaExceeded' as const, message: 'node quota exceeded', attempts: 1 },
      finishedAt: '2020-01-01T00:05:00.000Z',
    };
    await store.finishOperation('op-life', outcome);
    const finished = await store.getOperation('op-life');
    const expected = { ...started, runId: 'run-123', detail: '3/5 nodes active', ...outcome };
    assert.deepEqual(finished, expected);
    await store.finishOperation('op-life', outcome);
    assert.deepEqual(await store.getOperation('op-life'), expected, 'writing the same outcome twice leaves the same row');

    await store.finishOperation('op-life', { ...outcome, status: 'succeeded', failure: null });
    assert.equal((await store.getOperation('op-life'))?.failure, null, 'a null failure clears it');

    const other = await store.getOperation('op-other');
    assert.equal(other?.status, 'running', 'other operations are untouched');
    assert.equal(other?.runId, null);
  });

  test('listOperations pages newest first through every row exactly once, with and without filters', async (t) => {
    const opened = await freshStore(t);
    if (!opened) return;
    const { store } = opened;
    // Only cluster.create exists so far; the store takes any kind, and the filter needs two.
    const scale = 'cluster.scale' as string as OperationKind;
    const kinds: OperationKind[] = ['cluster.create', scale];
    const statuses: OperationStatus[] = ['running', 'succeeded', 'failed'];
    const all: OperationRecord[] = [];
    for (let i = 0; i < 23; i++) {
      // Three operations share each start time, so the id has to break ties; ids
      // are a permutation of 0..22, so id order is not insertion order.
      const operation = operationRecord({
        id: `op-${String((i * 7) % 23).padStart(3, '0')}`,
        kind: kinds[i % 2]!,
        status: statuses[i % 3]!,
        target: `cluster/t${i % 4}`,
        startedAt: `2024-05-01T10:00:${String(Math.floor(i / 3)).padStart(2, '0')}.000Z`,
      });
      all.push(operation);
      await store.createCluster(clusterRecord({ id: `k${i}`, name: `k${i}`, lastOperationId: operation.id }), operation);
    }
    const newestFirst = (ops: OperationRecord[]) =>
      [...ops].sort((a, b) => (a.startedAt !== b.startedAt ? (a.startedAt < b.startedAt ? 1 : -1) : a.id < b.id ? 1 : -1)).map((o) => o.id);

    async function walk(filter: { kind?: string; status?: OperationStatus; target?: string }, limit: number): Promise<{ ids: string[]; pages: number[] }> {
      const ids: string[] = [];
      const pages: number[] = [];
      let cursor: string | undefined;
      for (let page = 0; page < 50; page++) {
        const result = await store.listOperations({ ...filter, limit, ...(cursor ? { cursor } : {}) });
        ids.push(...result.items.map((o) => o.id));
        pages.push(result.items.length);
        if (!result.nextCursor) return { ids, pages };
        assert.ok(isValidCursor(result.nextCursor));
        cursor = result.nextCursor;
      }
      assert.fail('paging did not end within 50 pages');
    }

    const everything = await walk({}, 5);
    assert.deepEqual(everything.ids, newestFirst(all));
    assert.deepEqual(everything.pages, [5, 5, 5, 5, 3]);
    assert.equal(new Set(everything.ids).size, all.length);

    const oneBig = await store.listOperations({ limit: 100 });
    assert.deepEqual(oneBig.items.map((o) => o.id), newestFirst(all));
    assert.equal(oneBig.nextCursor, null);
    assert.deepEqual(oneBig.items.find((o) => o.id === all[7]!.id), all[7], 'items are whole records');

    const byKind = await walk({ kind: scale }, 4);
    assert.deepEqual(byKind.ids, newestFirst(all.filter((o) => o.kind === scale)));

    const byStatus = await walk({ status: 'failed' }, 3);
    assert.deepEqual(byStatus.ids, newestFirst(all.filter((o) => o.status === 'failed')));

    const byTarget = await walk({ target: 'cluster/t1' }, 2);
    assert.deepEqual(byTarget.ids, newestFirst(all.filter((o) => o.target === 'cluster/t1')));

    const combined = await walk({ kind: 'cluster.create', status: 'running', target: 'cluster/t0' }, 1);
    assert.deepEqual(combined.ids, newestFirst(all.filter((o) => o.kind === 'cluster.create' && o.status === 'running' && o.target === 'cluster/t0')));
    assert.ok(combined.ids.length > 0);

    // 6 matching rows in pages of 3: the second page is the last, with no empty page after it.
    assert.equal(all.filter((o) => o.target === 'cluster/t2').length, 6);
    const t2 = await walk({ target: 'cluster/t2' }, 3);
    assert.deepEqual(t2.pages, [3, 3]);

    assert.deepEqual((await store.listOperations({ target: 'cluster/none', limit: 5 })).items, []);
    assert.equal((await store.listOperations({ target: 'cluster/none', limit: 5 })).nextCursor, null);
  });

  test('isValidCursor accepts the cursors listOperations hands out and rejects garbage', async (t) => {
    const opened = await freshStore(t);
    if (!opened) return;
    const { store } = opened;
    await create(store, 'a', 'op-a');
    await create(store, 'b', 'op-b');
    const page = await store.listOperations({ limit: 1 });
    assert.ok(page.nextCursor);
    assert.equal(isValidCursor(page.nextCursor), true);
    const b64 = (value: string) => Buffer.from(value).toString('base64url');
    for (const garbage of ['', 'garbage!!', '%%%', b64('not json'), b64('{"startedAt":"x","id":"y"}'), b64('[1,2]'), b64('["only-one"]'), b64('null'), b64('"x"')]) {
      assert.equal(isValidCursor(garbage), false, `rejects ${JSON.stringify(garbage)}`);
    }
  });

  test('failClusterOf fails only a provisioning cluster that the given operation owns', async (t) => {
    const opened = await freshStore(t);
    if (!opened) return;
    const { store } = opened;
    await create(store, 'prov', 'op-prov');
    await create(store, 'act', 'op-act', { state: 'active' });

    await store.failClusterOf('prov', 'op-someone-else');
    assert.equal((await store.getCluster('prov'))?.state, 'provisioning');
    assert.equal((await store.getCluster('prov'))?.updatedAt, OLD, 'an unchanged row keeps updatedAt');

    await store.failClusterOf('act', 'op-act');
    assert.equal((await store.getCluster('act'))?.state, 'active', 'an active cluster is not failed');

    await store.failClusterOf('prov', 'op-prov');
    const failed = await store.getCluster('prov');
    assert.equal(failed?.state, 'failed');
    assert.ok(failed && failed.updatedAt > OLD);
    await store.failClusterOf('missing', 'op-prov');
    assert.equal(await store.getCluster('missing'), null);
  });

  test('deleteCluster deletes a cluster only for the operation that owns it, keeping the operation record', async (t) => {
    const opened = await freshStore(t);
    if (!opened) return;
    const { store } = opened;
    await create(store, 'doomed', 'op-d');
    await store.deleteCluster('doomed', 'op-stale');
    assert.ok(await store.getCluster('doomed'));
    await store.deleteCluster('doomed', 'op-d');
    assert.equal(await store.getCluster('doomed'), null);
    assert.ok(await store.getOperation('op-d'));
  });

  test('add-on records are written, patched, listed by cluster or name, and go with their cluster', async (t) => {
    const opened = await freshStore(t);
    if (!opened) return;
    const { store } = opened;
    await create(store, 'ad-a', 'op-ad-a');
    await create(store, 'ad-b', 'op-ad-b');
    const record = { clusterId: 'ad-a', name: 'logging', version: '1.0.0', values: { output: { type: 'stdout' } }, state: 'deployed' as const, revision: 1, message: null, lastOperationId: 'op-1', updatedAt: '2026-01-01T00:00:00.000Z' };
    await store.putAddon(record);
    await store.putAddon({ ...record, clusterId: 'ad-b', revision: null, state: 'installing' });
    await store.putAddon({ ...record, name: 'monitoring', values: {} });
    assert.deepEqual(await store.getAddon('ad-a', 'logging'), record);
    assert.deepEqual((await store.listAddons({ clusterId: 'ad-a' })).map((a) => a.name), ['logging', 'monitoring']);
    assert.deepEqual((await store.listAddons({ name: 'logging' })).map((a) => [a.clusterId, a.revision]), [['ad-a', 1], ['ad-b', null]]);
    assert.equal((await store.listAddons()).length, 3);

    assert.ok(await store.updateAddon('ad-a', 'logging', { version: '1.1.0', revision: 2, message: 'upgraded' }));
    const updated = await store.getAddon('ad-a', 'logging');
    assert.equal(updated?.version, '1.1.0');
    assert.equal(updated?.revision, 2);
    assert.deepEqual(updated?.values, record.values, 'untouched fields stay');
    assert.equal(await store.updateAddon('ad-a', 'nope', { revision: 3 }), false);

    await store.deleteAddon('ad-a', 'monitoring');
    assert.equal(await store.getAddon('ad-a', 'monitoring'), null);
    await store.removeCluster('ad-b');
    assert.deepEqual((await store.listAddons({ name: 'logging' })).map((a) => a.clusterId), ['ad-a']);
  });

  test('openOperation records an operation once however often it is called, and setOperationResult keeps what it produced', async (t) => {
    const opened = await freshStore(t);
    if (!opened) return;
    const { store } = opened;
    await create(store, 'owner', 'op-owner');
    const operation = operationRecord({ id: 'op-child', kind: 'addon.apply', target: 'cluster/owner' });
    await store.openOperation(operation, 'owner');
    await store.openOperation({ ...operation, startedAt: '2030-01-01T00:00:00.000Z' }, 'owner');
    assert.equal((await store.getOperation('op-child'))?.startedAt, operation.startedAt);
    assert.equal((await store.getCluster('owner'))?.lastOperationId, 'op-child');
    await store.openOperation(operationRecord({ id: 'op-fleet', kind: 'addon.rollout', target: 'addon/logging' }), null);
    await store.setOperationResult('op-fleet', { state: 'succeeded', clusters: [{ clusterId: 'owner' }] });
    assert.deepEqual((await store.getOperation('op-fleet'))?.result, { state: 'succeeded', clusters: [{ clusterId: 'owner' }] });
    assert.equal((await store.getOperation('op-child'))?.result, undefined);
  });

  test('events: a second arrival is a duplicate, matches and deliveries are recorded, lists page newest first', async (t) => {
    const opened = await freshStore(t);
    if (!opened) return;
    const events = opened.store.events;
    const binding = BindingSpecSchema.parse({ name: 'b1', function: 'f1', source: 'openstack/*' });
    assert.equal(await events.createBinding(binding, '2026-01-01T00:00:00.000Z'), true);
    assert.equal(await events.createBinding(binding, '2026-01-01T00:00:00.000Z'), false, 'one binding per name');
    assert.equal((await events.getBinding('b1'))?.source, 'openstack/*');
    assert.deepEqual((await events.listBindings({ function: 'f1' })).map((b) => b.name), ['b1']);

    const event = (id: string) => ({ specversion: '1.0' as const, id, source: 'openstack/nova', type: 't', time: '2026-01-01T00:00:00.000Z', data: { n: 1 } });
    const receive = (id: string, at: string) => events.receiveEvent({ key: `evt-${id.padStart(32, '0')}`, event: event(id), origin: 'openstack', trace: { exchange: 'nova' }, receivedAt: at });
    const first = await receive('1', '2026-01-01T00:00:01.000Z');
    assert.equal(first.isNew, true);
    const again = await receive('1', '2026-01-01T00:00:09.000Z');
    assert.equal(again.isNew, false);
    assert.equal(again.record.duplicates, 1);
    assert.equal(again.record.receivedAt, '2026-01-01T00:00:01.000Z', 'the first arrival is kept');
    for (let i = 2; i <= 5; i++) await receive(String(i), `2026-01-01T00:00:0${i}.000Z`);

    const key = first.record.key;
    await events.setEventMatched(key, 'received', [{ binding: 'b1', target: { kind: 'function', name: 'f1' }, policy: binding.delivery }]);
    await events.markDispatched(key);
    await events.startDelivery({ id: `${key}/b1`, eventKey: key, binding: 'b1', target: { kind: 'function', name: 'f1' }, maxAttempts: 3, startedAt: '2026-01-01T00:00:02.000Z' });
    await events.startDelivery({ id: `${key}/b1`, eventKey: key, binding: 'b1', target: { kind: 'function', name: 'f1' }, maxAttempts: 9, startedAt: '2026-01-01T00:00:03.000Z' });
    await events.updateDelivery(`${key}/b1`, { status: 'succeeded', attempts: 2, result: { ok: true }, finishedAt: '2026-01-01T00:00:04.000Z' });
    await events.finishEvent(key, 'delivered', '2026-01-01T00:00:04.000Z');
    const stored = await events.getEvent(key);
    assert.equal(stored?.status, 'delivered');
    assert.equal(stored?.matched[0]?.binding, 'b1');
    const [delivery] = await events.deliveriesOf(key);
    assert.deepEqual([delivery?.status, delivery?.attempts, delivery?.maxAttempts, delivery?.result], ['succeeded', 2, 3, { ok: true }]);
    assert.equal((await events.invocationsOf('f1', { limit: 10 })).length, 1);
    await events.markDispatched(key);
    assert.equal((await events.getEvent(key))?.status, 'delivered', 'a late markDispatched does not undo the end');

    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await events.listEvents({ limit: 2, ...(cursor ? { cursor } : {}) });
      seen.push(...page.items.map((e) => e.event.id));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    assert.deepEqual(seen, ['5', '4', '3', '2', '1']);
    const counts = await events.eventCounts();
    assert.equal(counts.reduce((sum, row) => sum + row.count, 0), 5);
    assert.equal(counts.reduce((sum, row) => sum + row.duplicates, 0), 1);
  });

  test('function slots: at most the limit held at once, a holder keeps its slot, expired slots free themselves', async (t) => {
    const opened = await freshStore(t);
    if (!opened) return;
    const events = opened.store.events;
    const now = new Date('2026-01-01T00:00:00.000Z');
    const results = await Promise.all(['a', 'b', 'c', 'd'].map((holder) => events.acquireSlot('fn', holder, 2, 60, now)));
    assert.equal(results.filter(Boolean).length, 2, 'two of four get a slot');
    const holder = ['a', 'b', 'c', 'd'][results.indexOf(true)]!;
    assert.equal(await events.acquireSlot('fn', holder, 2, 60, now), true, 'asking again keeps it');
    await events.releaseSlot('fn', holder);
    assert.equal(await events.acquireSlot('fn', 'e', 2, 60, now), true, 'a released slot is taken');
    assert.equal(await events.acquireSlot('fn', 'f', 2, 60, now), false);
    assert.equal(await events.acquireSlot('fn', 'f', 2, 60, new Date(now.getTime() + 61_000)), true, 'slots whose holders vanished expire');
  });

  test('health: policies by scope, health written only over the version read, history once per entry, actions claimed once, pruning', async (t) => {
    const opened = await freshStore(t);
    if (!opened) return;
    const health = opened.store.health;
    await create(opened.store, 'h1', 'op-h1');
    assert.equal(await health.getPolicy('fleet'), null);
    await health.putPolicy('fleet', { autoHeal: { enabled: true } }, '2026-01-01T00:00:00.000Z');
    await health.putPolicy('fleet', { autoHeal: { enabled: false } }, '2026-01-01T00:00:01.000Z');
    assert.deepEqual(await health.getPolicy('fleet'), { autoHeal: { enabled: false } });
    await health.putPolicy('cluster/gone', { heartbeatTimeout: '30s' }, '2026-01-01T00:00:00.000Z');

    const state = (status: 'healthy' | 'degraded', observedAt: string) =>
      ({ clusterId: 'h1', status, since: observedAt, observedAt, checks: {}, nodes: [], thresholds: [], thresholdErrors: {}, autoscale: {}, remediation: { blockedSince: null } }) as never;
    const entry = { at: '2026-01-01T00:00:00.000Z', kind: 'status' as const, name: 'status', value: 'healthy', detail: { from: null } };
    assert.equal(await health.saveHealth(state('healthy', '2026-01-01T00:00:00.000Z'), null, [entry]), true);
    assert.equal(await health.saveHealth(state('healthy', '2026-01-01T00:00:00.000Z'), null, [entry]), false, 'a second first write loses');
    const read = await health.getHealth('h1');
    assert.equal(read?.version, 1);
    assert.equal(await health.saveHealth(state('degraded', '2026-01-01T00:01:00.000Z'), 1, [{ ...entry, at: '2026-01-01T00:01:00.000Z', value: 'degraded' }]), true);
    assert.equal(await health.saveHealth(state('healthy', '2026-01-01T00:01:00.000Z'), 1, []), false, 'written over a stale version: refused');
    assert.equal((await health.getHealth('h1'))?.health.status, 'degraded');
    await health.addHistory('h1', [entry]);
    const history = await health.listHistory('h1', { limit: 10 });
    assert.deepEqual(history.map((item) => item.value), ['degraded', 'healthy'], 'newest first, each entry once');
    assert.deepEqual((await health.listHistory('h1', { limit: 10, since: '2026-01-01T00:00:30.000Z' })).map((item) => item.value), ['degraded']);
    assert.deepEqual(await health.listHistory('h1', { limit: 10, kind: 'node' }), []);

    assert.equal(await health.claimAction('heal/h1/m-1', 'h1', entry.at), true);
    assert.equal(await health.claimAction('heal/h1/m-1', 'h1', entry.at), false, 'claimed once');
    await health.setActionOperation('heal/h1/m-1', 'op-9');
    await health.releaseAction('heal/h1/m-1');
    assert.equal((await health.getAction('heal/h1/m-1'))?.operationId, 'op-9', 'a claim whose operation started is kept');
    assert.equal(await health.claimAction('heal/h1/m-2', 'h1', entry.at), true);
    await health.releaseAction('heal/h1/m-2');
    assert.equal(await health.claimAction('heal/h1/m-2', 'h1', entry.at), true, 'a released claim can be made again');

    await health.startSweep('s1', '2026-01-01T00:00:00.000Z', 1);
    await health.finishSweep('s1', '2026-01-01T00:00:02.000Z', { durationMs: 2000 });
    assert.deepEqual((await health.listSweeps(5)).map((sweep) => [sweep.id, sweep.summary?.durationMs]), [['s1', 2000]]);
    const pruned = await health.prune('2026-01-01T00:00:30.000Z', ['h1']);
    assert.deepEqual(pruned, { history: 1, sweeps: 1, clusters: 0 });
    assert.equal(await health.getPolicy('cluster/gone'), null, "a deleted cluster's policy goes");
    assert.deepEqual((await health.prune('2026-01-01T00:00:30.000Z', [])).clusters, 1);
    assert.equal(await health.getHealth('h1'), null);
  });

  test(
    'concurrent createCluster calls for one id answer created:true once and created:false to the rest, never a database error',
    {},
    async (t) => {
      const reason = factory.unavailable();
      if (reason) return t.skip(reason);
      const url = await factory.newDatabase();
      // Two stores stand for two API replicas; SQLite's in-process case shares one connection.
      const stores: Store[] = [];
      try {
        for (let i = 0; i < (sqlite ? 1 : 2); i++) stores.push(await Store.open(url));
        for (let round = 0; round < 3; round++) {
          const results = await Promise.allSettled(
            Array.from({ length: 6 }, (_, i) => create(stores[i % stores.length]!, `race-${round}`, `op-race-${round}-${i}`)),
          );
          const errors = results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
          assert.deepEqual(errors, []);
          const created = results.filter((r) => r.status === 'fulfilled' && r.value.created).length;
          assert.equal(created, 1);
        }
      } finally {
        for (const store of stores) await store.close();
      }
    },
  );

  test(
    'a write made while another call is inside a transaction survives that transaction rolling back',
    {},
    async (t) => {
      const opened = await freshStore(t);
      if (!opened) return;
      const { store } = opened;
      await create(store, 'bystander', 'op-bystander');
      await create(store, 'first', 'op-dup');
      // The second create fails on the duplicate operation id and rolls back; the update runs meanwhile.
      const [failing, update] = await Promise.allSettled([create(store, 'second', 'op-dup'), store.updateCluster('bystander', { state: 'active' })]);
      assert.equal(failing.status, 'rejected');
      assert.equal(update.status, 'fulfilled');
      assert.equal(await store.getCluster('second'), null);
      assert.equal((await store.getCluster('bystander'))?.state, 'active');
    },
  );
}

describe('Store on SQLite', () => {
  let dir: string | undefined;
  let n = 0;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'kumo-store-test-'));
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  storeBehaviour({
    dialect: 'sqlite',
    unavailable: () => null,
    newDatabase: async () => `sqlite:${join(dir!, `store-${++n}.db`)}`,
  });
});

describe('Store on PostgreSQL', () => {
  let server: PostgresServer | undefined;
  let skipped: string | null = 'PostgreSQL was not started';
  let admin: pg.Client | undefined;
  let n = 0;
  before(async () => {
    const started = await startPostgres();
    if ('skipped' in started) {
      skipped = started.skipped;
      return;
    }
    server = started;
    admin = new pg.Client({ connectionString: started.url });
    await admin.connect();
    skipped = null;
  });
  after(async () => {
    await admin?.end();
    await server?.stop();
  });

  storeBehaviour({
    dialect: 'postgres',
    unavailable: () => skipped,
    newDatabase: async () => {
      const name = `kumo_store_${++n}`;
      await admin!.query(`CREATE DATABASE ${name}`);
      const url = new URL(server!.url);
      url.pathname = `/${name}`;
      return url.toString();
    },
  });

  test(
    'a connection the PostgreSQL server drops does not take the process down, and the store keeps working',
    {},
    async (t) => {
      if (skipped) return t.skip(skipped);
      const name = `kumo_store_dropped`;
      await admin!.query(`CREATE DATABASE ${name}`);
      const url = new URL(server!.url);
      url.pathname = `/${name}`;
      const script = `
        const store = await Store.open(url);
        await store.ping();
        process.stdout.write('ready\\n');
        await go();
        await new Promise((resolve) => setTimeout(resolve, 300));
        await store.ping();
        await store.close();
        process.exit(0);
      `;
      await inChildren(script, { KUMO_TEST_DB_URL: url.toString() }, {
        processes: 1,
        timeoutMs: 10_000,
        between: async () => {
          // What a server restart or an idle-session timeout does to the pool's idle connections.
          const dropped = await admin!.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
          assert.ok((dropped.rowCount ?? 0) > 0, 'the store had an idle connection to drop');
        },
      });
    },
  );
});
