import type { Db } from './db.js';
import type { ClusterHealth, HealthPolicy, HistoryEntry, HistoryKind } from '../domain/health.js';

interface HealthRow {
  cluster_id: string;
  state: string;
  version: number | string;
}

interface HistoryRow {
  id: string;
  cluster_id: string;
  at: string;
  kind: string;
  name: string;
  value: string;
  detail: string;
}

interface SweepRow {
  id: string;
  started_at: string;
  finished_at: string | null;
  clusters: number | string;
  summary: string | null;
}

/** One fleet sweep as recorded: when, how many clusters, what it found. */
export interface SweepRecord {
  id: string;
  startedAt: string;
  finishedAt: string | null;
  clusters: number;
  summary: Record<string, unknown> | null;
}

export interface StoredHistoryEntry extends HistoryEntry {
  id: string;
  clusterId: string;
}

/** The scope of the fleet-wide policy; a cluster's is `cluster/<id>`. */
export const fleetScope = 'fleet';
export function clusterScope(clusterId: string): string {
  return `cluster/${clusterId}`;
}

/**
 * The health side of Kumo's store: policies (fleet and per cluster), each
 * cluster's latest health with a version (a sweep writes only over the state it
 * read), the history of changes and decisions (pruned by age), the sweeps, and
 * the automatic actions taken, keyed so that each is taken once.
 */
export class HealthStore {
  constructor(private readonly db: Db) {}

  async getPolicy(scope: string): Promise<HealthPolicy | null> {
    const rows = await this.db.all<{ policy: string }>('SELECT policy FROM health_policies WHERE scope = $1', [scope]);
    return rows[0] ? (JSON.parse(rows[0].policy) as HealthPolicy) : null;
  }

  async putPolicy(scope: string, policy: HealthPolicy, at: string): Promise<void> {
    await this.db.run('INSERT INTO health_policies (scope, policy, updated_at) VALUES ($1, $2, $3) ON CONFLICT (scope) DO UPDATE SET policy = $2, updated_at = $3', [
      scope,
      JSON.stringify(policy),
      at,
    ]);
  }

  async deletePolicy(scope: string): Promise<boolean> {
    return (await this.db.run('DELETE FROM health_policies WHERE scope = $1', [scope])).changes > 0;
  }

  /** A cluster's latest health and the version to write over, or null before its first sweep. */
  async getHealth(clusterId: string): Promise<{ health: ClusterHealth; version: number } | null> {
    const rows = await this.db.all<HealthRow>('SELECT cluster_id, state, version FROM cluster_health WHERE cluster_id = $1', [clusterId]);
    return rows[0] ? { health: JSON.parse(rows[0].state) as ClusterHealth, version: Number(rows[0].version) } : null;
  }

  async listHealth(): Promise<ClusterHealth[]> {
    return (await this.db.all<HealthRow>('SELECT cluster_id, state, version FROM cluster_health ORDER BY cluster_id')).map((row) => JSON.parse(row.state) as ClusterHealth);
  }

  /**
   * Writes a cluster's new health and its history entries, if nobody wrote
   * since `version` was read (null: nothing was there). False when somebody
   * did: the caller's conclusions are stale and it must act on none of them.
   * History entries have ids derived from what they say, so a retry adds none twice.
   */
  async saveHealth(health: ClusterHealth, version: number | null, history: HistoryEntry[]): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const state = JSON.stringify(health);
      const { changes } =
        version === null
          ? await tx.run('INSERT INTO cluster_health (cluster_id, status, state, observed_at, version) VALUES ($1, $2, $3, $4, 1) ON CONFLICT (cluster_id) DO NOTHING', [
              health.clusterId,
              health.status,
              state,
              health.observedAt,
            ])
          : await tx.run('UPDATE cluster_health SET status = $1, state = $2, observed_at = $3, version = version + 1 WHERE cluster_id = $4 AND version = $5', [
              health.status,
              state,
              health.observedAt,
              health.clusterId,
              version,
            ]);
      if (changes === 0) return false;
      await this.insertHistory(tx, health.clusterId, history);
      return true;
    });
  }

  async addHistory(clusterId: string, entries: HistoryEntry[]): Promise<void> {
    await this.insertHistory(this.db, clusterId, entries);
  }

  private async insertHistory(db: Db, clusterId: string, entries: HistoryEntry[]): Promise<void> {
    for (const entry of entries) {
      await db.run(
        'INSERT INTO health_history (id, cluster_id, at, kind, name, value, detail) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING',
        [`${clusterId}|${entry.at}|${entry.kind}|${entry.name}|${entry.value}`, clusterId, entry.at, entry.kind, entry.name, entry.value, JSON.stringify(entry.detail)],
      );
    }
  }

  /** A cluster's history, newest first. */
  async listHistory(clusterId: string, filter: { kind?: HistoryKind; since?: string; limit: number }): Promise<StoredHistoryEntry[]> {
    const params: unknown[] = [clusterId];
    let where = 'cluster_id = $1';
    if (filter.kind) {
      params.push(filter.kind);
      where += ` AND kind = $${params.length}`;
    }
    if (filter.since) {
      params.push(filter.since);
      where += ` AND at >= $${params.length}`;
    }
    params.push(filter.limit);
    const rows = await this.db.all<HistoryRow>(`SELECT * FROM health_history WHERE ${where} ORDER BY at DESC, id DESC LIMIT $${params.length}`, params);
    return rows.map((row) => ({ id: row.id, clusterId: row.cluster_id, at: row.at, kind: row.kind as HistoryKind, name: row.name, value: row.value, detail: JSON.parse(row.detail) as Record<string, unknown> }));
  }

  /** Removes history and sweeps older than `before`, and the health of clusters no longer in `clusterIds`. */
  async prune(before: string, clusterIds: readonly string[]): Promise<{ history: number; sweeps: number; clusters: number }> {
    const history = (await this.db.run('DELETE FROM health_history WHERE at < $1', [before])).changes;
    const sweeps = (await this.db.run('DELETE FROM health_sweeps WHERE started_at < $1', [before])).changes;
    const known = new Set(clusterIds);
    let clusters = 0;
    for (const row of await this.db.all<{ cluster_id: string }>('SELECT cluster_id FROM cluster_health')) {
      if (known.has(row.cluster_id)) continue;
      await this.db.run('DELETE FROM cluster_health WHERE cluster_id = $1', [row.cluster_id]);
      clusters++;
    }
    for (const row of await this.db.all<{ scope: string }>("SELECT scope FROM health_policies WHERE scope LIKE 'cluster/%'")) {
      if (!known.has(row.scope.slice('cluster/'.length))) await this.db.run('DELETE FROM health_policies WHERE scope = $1', [row.scope]);
    }
    return { history, sweeps, clusters };
  }

  async startSweep(id: string, startedAt: string, clusters: number): Promise<void> {
    await this.db.run('INSERT INTO health_sweeps (id, started_at, clusters) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING', [id, startedAt, clusters]);
  }

  async finishSweep(id: string, finishedAt: string, summary: Record<string, unknown>): Promise<void> {
    await this.db.run('UPDATE health_sweeps SET finished_at = $1, summary = $2 WHERE id = $3', [finishedAt, JSON.stringify(summary), id]);
  }

  /** The latest sweeps, newest first. */
  async listSweeps(limit: number): Promise<SweepRecord[]> {
    const rows = await this.db.all<SweepRow>('SELECT * FROM health_sweeps ORDER BY started_at DESC, id DESC LIMIT $1', [limit]);
    return rows.map((row) => ({
      id: row.id,
      startedAt: row.started_at,
      finishedAt: row.finished_at,
      clusters: Number(row.clusters),
      summary: row.summary ? (JSON.parse(row.summary) as Record<string, unknown>) : null,
    }));
  }

  /**
   * Claims an automatic action by its key (e.g. `heal/<cluster>/<node>`). True
   * for the first claim only; the action's operation is recorded by {@link setActionOperation}.
   */
  async claimAction(key: string, clusterId: string, at: string): Promise<boolean> {
    return (await this.db.run('INSERT INTO health_actions (key, cluster_id, created_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING', [key, clusterId, at])).changes > 0;
  }

  async getAction(key: string): Promise<{ key: string; clusterId: string; operationId: string | null; createdAt: string } | null> {
    const rows = await this.db.all<{ key: string; cluster_id: string; operation_id: string | null; created_at: string }>('SELECT * FROM health_actions WHERE key = $1', [key]);
    const row = rows[0];
    return row ? { key: row.key, clusterId: row.cluster_id, operationId: row.operation_id, createdAt: row.created_at } : null;
  }

  async setActionOperation(key: string, operationId: string): Promise<void> {
    await this.db.run('UPDATE health_actions SET operation_id = $1 WHERE key = $2', [operationId, key]);
  }

  /** Gives a claim up (its operation could not start), so a later sweep may try again. */
  async releaseAction(key: string): Promise<void> {
    await this.db.run('DELETE FROM health_actions WHERE key = $1 AND operation_id IS NULL', [key]);
  }
}
