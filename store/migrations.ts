import type { Db } from './db.js';

/**
 * Schema migrations, in order. Each is plain SQL that both SQLite and PostgreSQL
 * accept: TEXT for ids, JSON and ISO-8601 timestamps, so one query layer serves both.
 * Never edit a migration that has shipped; add the next one.
 */
export const migrations: ReadonlyArray<{ version: number; name: string; sql: string[] }> = [
  {
    version: 1,
    name: 'clusters and operations',
    sql: [
      `CREATE TABLE clusters (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        kubernetes_version TEXT NOT NULL,
        description TEXT,
        labels TEXT NOT NULL,
        state TEXT NOT NULL,
        rancher_id TEXT,
        rancher_state TEXT,
        api_endpoint TEXT,
        node_pools TEXT NOT NULL,
        nodes TEXT NOT NULL,
        last_operation_id TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      )`,
      `CREATE TABLE operations (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        status TEXT NOT NULL,
        step TEXT,
        detail TEXT,
        steps TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        failure TEXT,
        workflow_id TEXT NOT NULL,
        run_id TEXT
      )`,
      `CREATE INDEX operations_started ON operations (started_at, id)`,
      `CREATE INDEX operations_target ON operations (target, started_at)`,
      `CREATE INDEX operations_status ON operations (status, started_at)`,
    ],
  },
  {
    version: 2,
    name: 'etcd snapshots',
    sql: [
      `CREATE TABLE snapshots (
        id TEXT PRIMARY KEY,
        cluster_id TEXT NOT NULL,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        manual INTEGER NOT NULL,
        operation_id TEXT,
        created_at TEXT NOT NULL
      )`,
      `CREATE INDEX snapshots_cluster ON snapshots (cluster_id, created_at)`,
    ],
  },
  {
    version: 3,
    name: 'add-ons and operation results',
    sql: [
      `CREATE TABLE addons (
        cluster_id TEXT NOT NULL,
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        values_json TEXT NOT NULL,
        state TEXT NOT NULL,
        revision INTEGER,
        message TEXT,
        last_operation_id TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (cluster_id, name)
      )`,
      `CREATE INDEX addons_name ON addons (name, cluster_id)`,
      `ALTER TABLE operations ADD COLUMN result TEXT`,
    ],
  },
  {
    version: 4,
    name: 'functions',
    sql: [
      `CREATE TABLE functions (
        name TEXT PRIMARY KEY,
        settings TEXT NOT NULL,
        files TEXT NOT NULL,
        source_hash TEXT NOT NULL,
        state TEXT NOT NULL,
        image TEXT,
        revision TEXT,
        url TEXT,
        message TEXT,
        last_operation_id TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      )`,
    ],
  },
  {
    version: 5,
    name: 'tokens and the audit log',
    sql: [
      `CREATE TABLE tokens (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        created_by TEXT,
        last_used_at TEXT,
        revoked_at TEXT
      )`,
      `CREATE TABLE audit (
        id TEXT PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        role TEXT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        status INTEGER NOT NULL,
        operation_id TEXT
      )`,
      `CREATE INDEX audit_at ON audit (at, id)`,
    ],
  },
  {
    version: 6,
    name: 'operation inputs, for retries',
    sql: [`ALTER TABLE operations ADD COLUMN input TEXT`, `ALTER TABLE operations ADD COLUMN retry_of TEXT`],
  },
  {
    version: 7,
    name: 'events: bindings, pipelines, received events, deliveries, function slots',
    sql: [
      `CREATE TABLE bindings (
        name TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        schedule_id TEXT,
        created_at TEXT NOT NULL
      )`,
      `CREATE TABLE pipelines (
        name TEXT PRIMARY KEY,
        description TEXT,
        steps TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      )`,
      `CREATE TABLE events (
        key TEXT PRIMARY KEY,
        ce_id TEXT NOT NULL,
        source TEXT NOT NULL,
        type TEXT NOT NULL,
        event TEXT NOT NULL,
        origin TEXT NOT NULL,
        trace TEXT NOT NULL,
        status TEXT NOT NULL,
        matched TEXT NOT NULL,
        duplicates INTEGER NOT NULL DEFAULT 0,
        received_at TEXT NOT NULL,
        finished_at TEXT
      )`,
      `CREATE INDEX events_received ON events (received_at, key)`,
      `CREATE INDEX events_ce_id ON events (ce_id)`,
      `CREATE TABLE deliveries (
        id TEXT PRIMARY KEY,
        event_key TEXT NOT NULL,
        binding TEXT,
        target_kind TEXT NOT NULL,
        target_name TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        last_error TEXT,
        result TEXT,
        invocation_id TEXT,
        operation_id TEXT,
        started_at TEXT NOT NULL,
        finished_at TEXT
      )`,
      `CREATE INDEX deliveries_event ON deliveries (event_key)`,
      `CREATE INDEX deliveries_target ON deliveries (target_name, started_at)`,
      `CREATE TABLE function_slots (
        function_name TEXT NOT NULL,
        holder TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        PRIMARY KEY (function_name, holder)
      )`,
    ],
  },
  {
    version: 8,
    name: 'fleet health: policies, per-cluster state, history, sweeps, automatic actions',
    sql: [
      `ALTER TABLE operations ADD COLUMN reason TEXT`,
      `CREATE TABLE health_policies (
        scope TEXT PRIMARY KEY,
        policy TEXT NOT NULL,
        updated_at TEXT NOT NULL
      )`,
      `CREATE TABLE cluster_health (
        cluster_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        state TEXT NOT NULL,
        observed_at TEXT NOT NULL,
        version INTEGER NOT NULL
      )`,
      `CREATE TABLE health_history (
        id TEXT PRIMARY KEY,
        cluster_id TEXT NOT NULL,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        detail TEXT NOT NULL
      )`,
      `CREATE INDEX health_history_cluster ON health_history (cluster_id, at, id)`,
      `CREATE INDEX health_history_at ON health_history (at)`,
      `CREATE TABLE health_sweeps (
        id TEXT PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        clusters INTEGER NOT NULL DEFAULT 0,
        summary TEXT
      )`,
      `CREATE INDEX health_sweeps_started ON health_sweeps (started_at)`,
      `CREATE TABLE health_actions (
        key TEXT PRIMARY KEY,
        cluster_id TEXT NOT NULL,
        operation_id TEXT,
        created_at TEXT NOT NULL
      )`,
    ],
  },
];

/**
 * Brings the schema up to date. Safe to call from several processes at once:
 * the whole run holds the write lock (SQLite) or an advisory lock (PostgreSQL).
 */
export async function migrate(db: Db): Promise<number> {
  return db.transaction(async (tx) => {
    if (tx.dialect === 'postgres') await tx.run('SELECT pg_advisory_xact_lock(4242001)');
    await tx.run(`CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`);
    const done = new Set((await tx.all<{ version: number }>('SELECT version FROM schema_migrations')).map((row) => Number(row.version)));
    let applied = 0;
    for (const migration of migrations) {
      if (done.has(migration.version)) continue;
      for (const statement of migration.sql) await tx.run(statement);
      await tx.run('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [
        migration.version,
        migration.name,
        new Date().toISOString(),
      ]);
      applied++;
    }
    return applied;
  });
}
