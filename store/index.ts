import { EventStore } from './events.js';
import { HealthStore } from './health.js';
import type { AddonRecord, AddonState } from '../domain/addon.js';
import type { AuditRecord, Role, TokenRecord } from '../domain/auth.js';
import type { FunctionRecord, FunctionSettings, FunctionState } from '../domain/function.js';
import type { ClusterRecord, ClusterState, NodePoolRecord, NodeRecord } from '../domain/cluster.js';
import type { OperationFailure, OperationKind, OperationRecord, OperationStatus, StepRecord } from '../domain/operation.js';
import { openDb, type Db } from './db.js';
import { migrate } from './migrations.js';

interface ClusterRow {
  id: string;
  name: string;
  kubernetes_version: string;
  description: string | null;
  labels: string;
  state: string;
  rancher_id: string | null;
  rancher_state: string | null;
  api_endpoint: string | null;
  node_pools: string;
  nodes: string;
  last_operation_id: string | null;
  created_at: string;
  updated_at: string;
}

interface OperationRow {
  id: string;
  kind: string;
  target: string;
  status: string;
  step: string | null;
  detail: string | null;
  steps: string;
  started_at: string;
  finished_at: string | null;
  failure: string | null;
  workflow_id: string;
  run_id: string | null;
  result?: string | null;
  input?: string | null;
  retry_of?: string | null;
  reason?: string | null;
}

interface TokenRow {
  name: string;
  role: string;
  hash: string;
  created_at: string;
  created_by: string | null;
  last_used_at: string | null;
  revoked_at: string | null;
}

interface AuditRow {
  id: string;
  at: string;
  actor: string;
  role: string;
  method: string;
  path: string;
  status: number | string;
  operation_id: string | null;
}

interface FunctionRow {
  name: string;
  settings: string;
  files: string;
  source_hash: string;
  state: string;
  image: string | null;
  revision: string | null;
  url: string | null;
  message: string | null;
  last_operation_id: string | null;
  created_at: string;
  updated_at: string;
}

interface AddonRow {
  cluster_id: string;
  name: string;
  version: string;
  values_json: string;
  state: string;
  revision: number | string | null;
  message: string | null;
  last_operation_id: string | null;
  updated_at: string;
}

interface SnapshotRow {
  id: string;
  cluster_id: string;
  name: string;
  state: string;
  manual: number | boolean;
  operation_id: string | null;
  created_at: string;
}

/** An etcd snapshot of a cluster, as Rancher last listed it. */
export interface SnapshotRecord {
  id: string;
  clusterId: string;
  name: string;
  state: string;
  manual: boolean;
  operationId: string | null;
  createdAt: string;
}

export interface OperationFilter {
  kind?: string;
  status?: OperationStatus;
  target?: string;
  /** Opaque cursor from a previous page. */
  cursor?: string;
  limit: number;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

/** Cluster states in which a name may be created again (the previous attempt is over). */
const reusableStates: ClusterState[] = ['failed'];

/**
 * Kumo's resource store: desired state, inventory, and the audit record of every
 * operation. Runs live in Temporal; this keeps what must outlive its retention.
 */
export class Store {
  /** Bindings, pipelines, events and their deliveries. */
  readonly events: EventStore;
  /** Health policies, each cluster's latest health, its history, sweeps and automatic actions. */
  readonly health: HealthStore;

  private constructor(private readonly db: Db) {
    this.events = new EventStore(db);
    this.health = new HealthStore(db);
  }

  /** Opens the database named by `url` and brings its schema up to date. */
  static async open(url: string): Promise<Store> {
    const db = await openDb(url);
    await migrate(db);
    return new Store(db);
  }

  get dialect(): Db['dialect'] {
    return this.db.dialect;
  }

  async ping(): Promise<void> {
    await this.db.all('SELECT 1 AS ok');
  }

  async close(): Promise<void> {
    await this.db.close();
  }

  /**
   * Records a new cluster and the operation creating it, atomically. Returns the
   * existing cluster instead when the name is taken by one that is not over.
   */
  async createCluster(
    cluster: ClusterRecord,
    operation: OperationRecord,
  ): Promise<{ created: true; previous: ClusterRecord | null } | { created: false; existing: ClusterRecord }> {
    try {
      return await this.db.transaction(async (tx) => {
        // PostgreSQL: serialize creates of one name (row locks cannot lock a row that does not exist yet).
        if (tx.dialect === 'postgres') await tx.run('SELECT pg_advisory_xact_lock(hashtext($1))', [`kumo.cluster:${cluster.id}`]);
        const existing = await this.readCluster(tx, cluster.id);
        if (existing && !reusableStates.includes(existing.state)) return { created: false as const, existing };
        if (existing) await tx.run('DELETE FROM clusters WHERE id = $1', [cluster.id]);
        await this.insertCluster(tx, { ...cluster, rancherId: existing?.rancherId ?? cluster.rancherId });
        await this.insertOperation(tx, operation);
        return { created: true as const, previous: existing };
      });
    } catch (err) {
      // A racing create of the same name won: report it as taken.
      if (!isUniqueViolation(err)) throw err;
      const existing = await this.getCluster(cluster.id);
      if (!existing) throw err;
      return { created: false, existing };
    }
  }

  /**
   * Records the start of an operation on an existing cluster and makes it the
   * cluster's last operation. `null` when the cluster does not exist.
   */
  async startOperation(operation: OperationRecord, clusterId: string): Promise<ClusterRecord | null> {
    return this.db.transaction(async (tx) => {
      const cluster = await this.readCluster(tx, clusterId);
      if (!cluster) return null;
      await this.insertOperation(tx, operation);
      await tx.run('UPDATE clusters SET last_operation_id = $1, updated_at = $2 WHERE id = $3', [operation.id, operation.startedAt, clusterId]);
      return cluster;
    });
  }

  /** Undoes {@link startOperation} when its workflow could not be started. */
  async forgetOperation(operationId: string, clusterId: string, previousOperationId: string | null): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.run('DELETE FROM operations WHERE id = $1', [operationId]);
      await tx.run('UPDATE clusters SET last_operation_id = $1 WHERE id = $2 AND last_operation_id = $3', [previousOperationId, clusterId, operationId]);
    });
  }

  /** Replaces what Kumo knows of a cluster's snapshots with what Rancher listed. */
  async replaceSnapshots(clusterId: string, snapshots: SnapshotRecord[]): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.run('DELETE FROM snapshots WHERE cluster_id = $1', [clusterId]);
      for (const snapshot of snapshots) {
        await tx.run('INSERT INTO snapshots (id, cluster_id, name, state, manual, operation_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)', [
          snapshot.id,
          clusterId,
          snapshot.name,
          snapshot.state,
          snapshot.manual ? 1 : 0,
          snapshot.operationId,
          snapshot.createdAt,
        ]);
      }
    });
  }

  /** A cluster's snapshots, newest first. */
  async listSnapshots(clusterId: string): Promise<SnapshotRecord[]> {
    const rows = await this.db.all<SnapshotRow>('SELECT * FROM snapshots WHERE cluster_id = $1 ORDER BY created_at DESC, id DESC', [clusterId]);
    return rows.map(toSnapshot);
  }

  async getSnapshot(id: string): Promise<SnapshotRecord | null> {
    const rows = await this.db.all<SnapshotRow>('SELECT * FROM snapshots WHERE id = $1', [id]);
    return rows[0] ? toSnapshot(rows[0]) : null;
  }

  /** Removes a cluster's record and its snapshots (after it was deleted from Rancher). */
  async removeCluster(id: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.run('DELETE FROM snapshots WHERE cluster_id = $1', [id]);
      await tx.run('DELETE FROM addons WHERE cluster_id = $1', [id]);
      await tx.run('DELETE FROM clusters WHERE id = $1', [id]);
    });
  }

  /**
   * Undoes {@link createCluster} when the workflow could not be started: the new
   * records go, and a failed cluster it replaced comes back.
   */
  async forgetClusterCreation(clusterId: string, operationId: string, previous: ClusterRecord | null = null): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.run('DELETE FROM operations WHERE id = $1', [operationId]);
      const removed = await tx.run('DELETE FROM clusters WHERE id = $1 AND last_operation_id = $2', [clusterId, operationId]);
      if (previous && removed.changes > 0) await this.insertCluster(tx, previous);
    });
  }

  async getCluster(id: string): Promise<ClusterRecord | null> {
    return this.readCluster(this.db, id);
  }

  async listClusters(): Promise<ClusterRecord[]> {
    const rows = await this.db.all<ClusterRow>('SELECT * FROM clusters ORDER BY name');
    return rows.map(toCluster);
  }

  /** Updates what Rancher reported about a cluster. Fields left out are kept. */
  async updateCluster(
    id: string,
    patch: Partial<Pick<ClusterRecord, 'state' | 'rancherId' | 'rancherState' | 'apiEndpoint' | 'nodePools' | 'nodes' | 'kubernetesVersion' | 'description' | 'labels'>>,
  ): Promise<void> {
    const sets: string[] = [];
    const params: unknown[] = [];
    const add = (column: string, value: unknown) => {
      params.push(value);
      sets.push(`${column} = $${params.length}`);
    };
    if (patch.state !== undefined) add('state', patch.state);
    if (patch.rancherId !== undefined) add('rancher_id', patch.rancherId);
    if (patch.rancherState !== undefined) add('rancher_state', patch.rancherState);
    if (patch.apiEndpoint !== undefined) add('api_endpoint', patch.apiEndpoint);
    if (patch.nodePools !== undefined) add('node_pools', JSON.stringify(patch.nodePools));
    if (patch.nodes !== undefined) add('nodes', JSON.stringify(patch.nodes));
    if (patch.kubernetesVersion !== undefined) add('kubernetes_version', patch.kubernetesVersion);
    if (patch.description !== undefined) add('description', patch.description);
    if (patch.labels !== undefined) add('labels', JSON.stringify(patch.labels));
    add('updated_at', new Date().toISOString());
    params.push(id);
    await this.db.run(`UPDATE clusters SET ${sets.join(', ')} WHERE id = $${params.length}`, params);
  }

  async getOperation(id: string): Promise<OperationRecord | null> {
    const rows = await this.db.all<OperationRow>('SELECT * FROM operations WHERE id = $1', [id]);
    return rows[0] ? toOperation(rows[0]) : null;
  }

  /** Operations, newest first, filtered, a page at a time. */
  async listOperations(filter: OperationFilter): Promise<Page<OperationRecord>> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (clause: (n: number) => string, value: unknown) => {
      params.push(value);
      where.push(clause(params.length));
    };
    if (filter.kind) add((n) => `kind = $${n}`, filter.kind);
    if (filter.status) add((n) => `status = $${n}`, filter.status);
    if (filter.target) add((n) => `target = $${n}`, filter.target);
    const cursor = filter.cursor ? decodeCursor(filter.cursor) : null;
    if (cursor) {
      params.push(cursor.startedAt, cursor.id);
      where.push(`(started_at < $${params.length - 1} OR (started_at = $${params.length - 1} AND id < $${params.length}))`);
    }
    params.push(filter.limit + 1);
    const rows = await this.db.all<OperationRow>(
      `SELECT * FROM operations ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY started_at DESC, id DESC LIMIT $${params.length}`,
      params,
    );
    const items = rows.slice(0, filter.limit).map(toOperation);
    const last = items[items.length - 1];
    return { items, nextCursor: rows.length > filter.limit && last ? encodeCursor(last) : null };
  }

  /** How many operations there are by kind, status and failure type: one GROUP BY, for metrics. */
  async operationCounts(): Promise<Array<{ kind: string; status: string; failureType: string | null; count: number }>> {
    const type = this.db.dialect === 'postgres' ? `(failure::json->>'type')` : `json_extract(failure, '$.type')`;
    const rows = await this.db.all<{ kind: string; status: string; failure_type: string | null; n: number | string }>(
      `SELECT kind, status, ${type} AS failure_type, COUNT(*) AS n FROM operations GROUP BY kind, status, ${type}`,
    );
    return rows.map((row) => ({ kind: row.kind, status: row.status, failureType: row.failure_type, count: Number(row.n) }));
  }

  /** Progress of the running step in words ("3/5 nodes active"), written by long waits. */
  async setOperationDetail(id: string, detail: string): Promise<void> {
    await this.db.run('UPDATE operations SET detail = $1 WHERE id = $2', [detail, id]);
  }

  /**
   * Records an operation a workflow starts itself (a rollout's per-cluster step, a
   * scheduled reconcile). Idempotent: a retried activity finds the row there.
   */
  async openOperation(operation: OperationRecord, clusterId: string | null): Promise<void> {
    await this.db.transaction(async (tx) => {
      const existing = await tx.all<{ id: string }>('SELECT id FROM operations WHERE id = $1', [operation.id]);
      if (existing.length) return;
      await this.insertOperation(tx, operation);
      if (clusterId) await tx.run('UPDATE clusters SET last_operation_id = $1, updated_at = $2 WHERE id = $3', [operation.id, operation.startedAt, clusterId]);
    });
  }

  /** Keeps the workflow input an operation was started with (inputs never hold secrets), and the operation it retries. */
  async setOperationInput(id: string, input: unknown, retryOf: string | null = null): Promise<void> {
    await this.db.run('UPDATE operations SET input = $1, retry_of = $2 WHERE id = $3', [JSON.stringify(input), retryOf, id]);
  }

  /** What an operation produced, for reading after its run is gone (a rollout's report, a reconcile's repairs). */
  async setOperationResult(id: string, result: unknown): Promise<void> {
    await this.db.run('UPDATE operations SET result = $1 WHERE id = $2', [JSON.stringify(result), id]);
  }

  // ---- add-ons ------------------------------------------------------------------------------

  async getAddon(clusterId: string, name: string): Promise<AddonRecord | null> {
    const rows = await this.db.all<AddonRow>('SELECT * FROM addons WHERE cluster_id = $1 AND name = $2', [clusterId, name]);
    return rows[0] ? toAddon(rows[0]) : null;
  }

  /** Add-ons by cluster and/or name, ordered by cluster then name. */
  async listAddons(filter: { clusterId?: string; name?: string } = {}): Promise<AddonRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.clusterId) {
      params.push(filter.clusterId);
      where.push(`cluster_id = $${params.length}`);
    }
    if (filter.name) {
      params.push(filter.name);
      where.push(`name = $${params.length}`);
    }
    const rows = await this.db.all<AddonRow>(`SELECT * FROM addons ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY cluster_id, name`, params);
    return rows.map(toAddon);
  }

  /** Creates or replaces an add-on's record. */
  async putAddon(record: AddonRecord): Promise<void> {
    await this.db.run(
      `INSERT INTO addons (cluster_id, name, version, values_json, state, revision, message, last_operation_id, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (cluster_id, name) DO UPDATE SET version = $3, values_json = $4, state = $5, revision = $6, message = $7,
         last_operation_id = $8, updated_at = $9`,
      [record.clusterId, record.name, record.version, JSON.stringify(record.values), record.state, record.revision, record.message, record.lastOperationId, record.updatedAt],
    );
  }

  /** Changes some fields of an add-on's record; false when there is none. */
  async updateAddon(
    clusterId: string,
    name: string,
    patch: Partial<{ version: string; values: Record<string, unknown>; state: AddonState; revision: number | null; message: string | null; lastOperationId: string }>,
  ): Promise<boolean> {
    const current = await this.getAddon(clusterId, name);
    if (!current) return false;
    await this.putAddon({ ...current, ...patch, updatedAt: new Date().toISOString() });
    return true;
  }

  async deleteAddon(clusterId: string, name: string): Promise<void> {
    await this.db.run('DELETE FROM addons WHERE cluster_id = $1 AND name = $2', [clusterId, name]);
  }

  // ---- tokens and audit -----------------------------------------------------------------------

  /** Records a token by the hash of its secret; false when the name is taken. */
  async createToken(token: TokenRecord, hash: string): Promise<boolean> {
    try {
      await this.db.run('INSERT INTO tokens (name, role, hash, created_at, created_by, last_used_at, revoked_at) VALUES ($1, $2, $3, $4, $5, NULL, NULL)', [
        token.name,
        token.role,
        hash,
        token.createdAt,
        token.createdBy,
      ]);
      return true;
    } catch (err) {
      if (isUniqueViolation(err)) return false;
      throw err;
    }
  }

  /** The live (not revoked) token with this hash. */
  async tokenByHash(hash: string): Promise<TokenRecord | null> {
    const rows = await this.db.all<TokenRow>('SELECT * FROM tokens WHERE hash = $1 AND revoked_at IS NULL', [hash]);
    return rows[0] ? toToken(rows[0]) : null;
  }

  async listTokens(): Promise<TokenRecord[]> {
    return (await this.db.all<TokenRow>('SELECT * FROM tokens ORDER BY name')).map(toToken);
  }

  async countTokens(): Promise<number> {
    const rows = await this.db.all<{ n: number | string }>('SELECT COUNT(*) AS n FROM tokens');
    return Number(rows[0]?.n ?? 0);
  }

  /** Revokes a token; false when there is no live token of that name. */
  async revokeToken(name: string, at: string): Promise<boolean> {
    const live = await this.db.all<TokenRow>('SELECT * FROM tokens WHERE name = $1 AND revoked_at IS NULL', [name]);
    if (!live.length) return false;
    await this.db.run('UPDATE tokens SET revoked_at = $1 WHERE name = $2', [at, name]);
    return true;
  }

  async touchToken(name: string, at: string): Promise<void> {
    await this.db.run('UPDATE tokens SET last_used_at = $1 WHERE name = $2', [at, name]);
  }

  async appendAudit(record: AuditRecord): Promise<void> {
    await this.db.run('INSERT INTO audit (id, at, actor, role, method, path, status, operation_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)', [
      record.id,
      record.at,
      record.actor,
      record.role,
      record.method,
      record.path,
      record.status,
      record.operationId,
    ]);
  }

  /** The audit log, newest first, optionally by actor and since a time. */
  async listAudit(filter: { actor?: string; since?: string; limit: number }): Promise<AuditRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.actor) {
      params.push(filter.actor);
      where.push(`actor = $${params.length}`);
    }
    if (filter.since) {
      params.push(filter.since);
      where.push(`at >= $${params.length}`);
    }
    params.push(filter.limit);
    const rows = await this.db.all<AuditRow>(`SELECT * FROM audit ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY at DESC, id DESC LIMIT $${params.length}`, params);
    return rows.map((row) => ({ id: row.id, at: row.at, actor: row.actor, role: row.role as Role, method: row.method, path: row.path, status: Number(row.status), operationId: row.operation_id }));
  }

  // ---- functions ---------------------------------------------------------------------------

  async getFunction(name: string): Promise<FunctionRecord | null> {
    const rows = await this.db.all<FunctionRow>('SELECT * FROM functions WHERE name = $1', [name]);
    return rows[0] ? toFunction(rows[0]) : null;
  }

  async listFunctions(): Promise<FunctionRecord[]> {
    return (await this.db.all<FunctionRow>('SELECT * FROM functions ORDER BY name')).map(toFunction);
  }

  /**
   * Records a function's new desired settings and source with the deploy that
   * applies them, atomically. `expect` guards against a concurrent change: the
   * write happens only when the function is absent (`null`) or still at that
   * operation; false otherwise.
   */
  async saveFunction(record: FunctionRecord, operation: OperationRecord, expect: { lastOperationId: string | null } | null): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const rows = await tx.all<FunctionRow>('SELECT * FROM functions WHERE name = $1', [record.name]);
      const current = rows[0] ? toFunction(rows[0]) : null;
      if (expect === null ? current !== null : current === null || current.lastOperationId !== expect.lastOperationId) return false;
      await this.insertOperation(tx, operation);
      await tx.run(
        `INSERT INTO functions (name, settings, files, source_hash, state, image, revision, url, message, last_operation_id, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (name) DO UPDATE SET settings = $2, files = $3, source_hash = $4, state = $5, message = $9, last_operation_id = $10, updated_at = $12`,
        [
          record.name,
          JSON.stringify(record.settings),
          JSON.stringify(record.files),
          record.sourceHash,
          record.state,
          record.image,
          record.revision,
          record.url,
          record.message,
          operation.id,
          record.createdAt,
          record.updatedAt,
        ],
      );
      return true;
    });
  }

  /** Changes what is known of a running function (its image, revision, URL, state). */
  async updateFunction(name: string, patch: Partial<{ state: FunctionState; image: string | null; revision: string | null; url: string | null; message: string | null; settings: FunctionSettings }>): Promise<void> {
    const current = await this.getFunction(name);
    if (!current) return;
    const next = { ...current, ...patch };
    await this.db.run('UPDATE functions SET state = $1, image = $2, revision = $3, url = $4, message = $5, settings = $6, updated_at = $7 WHERE name = $8', [
      next.state,
      next.image,
      next.revision,
      next.url,
      next.message,
      JSON.stringify(next.settings),
      new Date().toISOString(),
      name,
    ]);
  }

  async deleteFunction(name: string): Promise<void> {
    await this.db.run('DELETE FROM functions WHERE name = $1', [name]);
  }

  /** Removes a cluster's record (after a cancelled create removed it from Rancher). */
  async deleteCluster(id: string, operationId: string): Promise<void> {
    await this.db.run('DELETE FROM clusters WHERE id = $1 AND last_operation_id = $2', [id, operationId]);
  }

  /** Marks a cluster failed if the given operation, now ended without saying so, was provisioning it. */
  async failClusterOf(clusterId: string, operationId: string): Promise<void> {
    await this.db.run(
      `UPDATE clusters SET state = 'failed', updated_at = $1 WHERE id = $2 AND last_operation_id = $3 AND state = 'provisioning'`,
      [new Date().toISOString(), clusterId, operationId],
    );
  }

  /** Records the run id Temporal gave the operation's workflow. */
  async setOperationRun(id: string, runId: string): Promise<void> {
    await this.db.run('UPDATE operations SET run_id = $1 WHERE id = $2', [runId, id]);
  }

  /**
   * Records how an operation ended (or its latest steps). Idempotent: the same
   * outcome written twice leaves the same row.
   */
  async finishOperation(
    id: string,
    outcome: { status: OperationStatus; steps: StepRecord[]; step: string | null; failure: OperationFailure | null; finishedAt: string | null },
  ): Promise<void> {
    await this.db.run('UPDATE operations SET status = $1, steps = $2, step = $3, failure = $4, finished_at = $5 WHERE id = $6', [
      outcome.status,
      JSON.stringify(outcome.steps),
      outcome.step,
      outcome.failure ? JSON.stringify(outcome.failure) : null,
      outcome.finishedAt,
      id,
    ]);
  }

  /**
   * Records an operation's outcome from its steps: the step shown is the one
   * running, failed or cancelled; the end time is now unless it still runs.
   */
  async closeOperation(id: string, outcome: { status: OperationStatus; steps: StepRecord[]; failure: OperationFailure | null }): Promise<void> {
    const current = outcome.steps.find((step) => step.status === 'running' || step.status === 'failed' || step.status === 'cancelled');
    await this.finishOperation(id, {
      status: outcome.status,
      steps: outcome.steps,
      step: current?.name ?? null,
      failure: outcome.failure,
      finishedAt: outcome.status === 'running' ? null : new Date().toISOString(),
    });
  }

  private async insertCluster(db: Db, cluster: ClusterRecord): Promise<void> {
    await db.run(
      `INSERT INTO clusters (id, name, kubernetes_version, description, labels, state, rancher_id, rancher_state, api_endpoint,
         node_pools, nodes, last_operation_id, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
      [
        cluster.id,
        cluster.name,
        cluster.kubernetesVersion,
        cluster.description ?? null,
        JSON.stringify(cluster.labels),
        cluster.state,
        cluster.rancherId,
        cluster.rancherState,
        cluster.apiEndpoint,
        JSON.stringify(cluster.nodePools),
        JSON.stringify(cluster.nodes),
        cluster.lastOperationId,
        cluster.createdAt,
        cluster.updatedAt,
      ],
    );
  }

  private async insertOperation(db: Db, operation: OperationRecord): Promise<void> {
    await db.run(
      `INSERT INTO operations (id, kind, target, status, step, steps, started_at, finished_at, failure, workflow_id, run_id, reason)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
      [
        operation.id,
        operation.kind,
        operation.target,
        operation.status,
        operation.step,
        JSON.stringify(operation.steps),
        operation.startedAt,
        operation.finishedAt,
        operation.failure ? JSON.stringify(operation.failure) : null,
        operation.workflowId,
        operation.runId,
        operation.reason ?? null,
      ],
    );
  }

  private async readCluster(db: Db, id: string): Promise<ClusterRecord | null> {
    const rows = await db.all<ClusterRow>('SELECT * FROM clusters WHERE id = $1', [id]);
    return rows[0] ? toCluster(rows[0]) : null;
  }
}

/** A primary-key or unique violation, in SQLite's or PostgreSQL's words. */
function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string };
  return e?.code === '23505' || e?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || e?.code === 'SQLITE_CONSTRAINT_UNIQUE';
}

function toCluster(row: ClusterRow): ClusterRecord {
  return {
    id: row.id,
    name: row.name,
    kubernetesVersion: row.kubernetes_version,
    ...(row.description ? { description: row.description } : {}),
    labels: JSON.parse(row.labels) as Record<string, string>,
    state: row.state as ClusterState,
    rancherId: row.rancher_id,
    rancherState: row.rancher_state,
    apiEndpoint: row.api_endpoint,
    nodePools: JSON.parse(row.node_pools) as NodePoolRecord[],
    nodes: JSON.parse(row.nodes) as NodeRecord[],
    lastOperationId: row.last_operation_id,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toSnapshot(row: SnapshotRow): SnapshotRecord {
  return {
    id: row.id,
    clusterId: row.cluster_id,
    name: row.name,
    state: row.state,
    manual: row.manual === true || Number(row.manual) === 1,
    operationId: row.operation_id,
    createdAt: row.created_at,
  };
}

function toOperation(row: OperationRow): OperationRecord {
  return {
    id: row.id,
    kind: row.kind as OperationKind,
    target: row.target,
    status: row.status as OperationStatus,
    step: row.step,
    ...(row.detail ? { detail: row.detail } : {}),
    steps: JSON.parse(row.steps) as StepRecord[],
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    failure: row.failure ? (JSON.parse(row.failure) as OperationFailure) : null,
    workflowId: row.workflow_id,
    runId: row.run_id,
    ...(row.result ? { result: JSON.parse(row.result) as unknown } : {}),
    ...(row.input ? { input: JSON.parse(row.input) as unknown } : {}),
    ...(row.retry_of ? { retryOf: row.retry_of } : {}),
    ...(row.reason ? { reason: row.reason } : {}),
  };
}

function toToken(row: TokenRow): TokenRecord {
  return { name: row.name, role: row.role as Role, createdAt: row.created_at, createdBy: row.created_by, lastUsedAt: row.last_used_at, revokedAt: row.revoked_at };
}

function toFunction(row: FunctionRow): FunctionRecord {
  return {
    name: row.name,
    settings: JSON.parse(row.settings) as FunctionSettings,
    files: JSON.parse(row.files) as Record<string, string>,
    sourceHash: row.source_hash,
    state: row.state as FunctionState,
    image: row.image,
    revision: row.revision,
    url: row.url,
    message: row.message,
    lastOperationId: row.last_operation_id,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toAddon(row: AddonRow): AddonRecord {
  return {
    clusterId: row.cluster_id,
    name: row.name,
    version: row.version,
    values: JSON.parse(row.values_json) as Record<string, unknown>,
    state: row.state as AddonState,
    revision: row.revision === null ? null : Number(row.revision),
    message: row.message,
    lastOperationId: row.last_operation_id,
    updatedAt: row.updated_at,
  };
}

function encodeCursor(operation: OperationRecord): string {
  return Buffer.from(JSON.stringify([operation.startedAt, operation.id])).toString('base64url');
}

function decodeCursor(cursor: string): { startedAt: string; id: string } | null {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(value) && typeof value[0] === 'string' && typeof value[1] === 'string') return { startedAt: value[0], id: value[1] };
  } catch {
    // fall through: an unreadable cursor is reported by the caller
  }
  return null;
}

/** Whether a cursor from a client can be read (the API answers 400 when not). */
export function isValidCursor(cursor: string): boolean {
  return decodeCursor(cursor) !== null;
}
