import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * The little SQL surface the store needs, over SQLite (embedded default) and
 * PostgreSQL (production). Statements use PostgreSQL's `$1` placeholders; the
 * SQLite side rewrites them.
 */
export interface Db {
  readonly dialect: 'sqlite' | 'postgres';
  all<T>(sql: string, params?: unknown[]): Promise<T[]>;
  run(sql: string, params?: unknown[]): Promise<{ changes: number }>;
  /** Runs `fn` in one transaction that holds the database's write lock from the start. */
  transaction<T>(fn: (db: Db) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/**
 * Opens `sqlite:<file>` or `postgres://…`.
 * @example const db = await openDb('sqlite:.data/kumo.db');
 */
export async function openDb(url: string): Promise<Db> {
  if (url.startsWith('sqlite:')) return openSqlite(url.slice('sqlite:'.length));
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) return openPostgres(url);
  throw new Error('DATABASE_URL must start with sqlite: or postgres://');
}

async function openSqlite(file: string): Promise<Db> {
  const { default: Database } = await import('better-sqlite3');
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
  const sqlite = new Database(file);
  // The API and the worker are separate processes on one file: WAL lets readers
  // run beside the writer, and the busy timeout makes writers queue, not fail.
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('busy_timeout = 10000');
  sqlite.pragma('foreign_keys = ON');

  const cache = new Map<string, { text: string; order: number[] }>();
  const prepare = (sql: string, params: unknown[]) => {
    let entry = cache.get(sql);
    if (!entry) {
      const order: number[] = [];
      const text = sql.replace(/\$(\d+)/g, (_, n: string) => {
        order.push(Number(n) - 1);
        return '?';
      });
      entry = { text, order };
      cache.set(sql, entry);
    }
    const statement = sqlite.prepare(entry.text);
    const values = entry.order.map((i) => toSqlite(params[i]));
    return { statement, values };
  };

  let depth = 0;
  const db: Db = {
    dialect: 'sqlite',
    async all<T>(sql: string, params: unknown[] = []) {
      const { statement, values } = prepare(sql, params);
      return (statement.reader ? statement.all(...values) : (statement.run(...values), [])) as T[];
    },
    async run(sql, params = []) {
      const { statement, values } = prepare(sql, params);
      return { changes: statement.run(...values).changes };
    },
    async transaction(fn) {
      // better-sqlite3 is synchronous, but `fn` is async: hold the lock with an
      // explicit BEGIN IMMEDIATE so another process cannot interleave writes.
      if (depth > 0) return fn(db);
      depth++;
      sqlite.exec('BEGIN IMMEDIATE');
      try {
        const result = await fn(db);
        sqlite.exec('COMMIT');
        return result;
      } catch (err) {
        sqlite.exec('ROLLBACK');
        throw err;
      } finally {
        depth--;
      }
    },
    async close() {
      sqlite.close();
    },
  };
  return db;
}

function toSqlite(value: unknown): unknown {
  if (value === undefined) return null;
  if (typeof value === 'boolean') return value ? 1 : 0;
  return value;
}

async function openPostgres(url: string): Promise<Db> {
  const { default: pg } = await import('pg');
  const pool = new pg.Pool({ connectionString: url, max: 5 });
  // Fail fast on a wrong URL or a server that is down.
  await pool.query('SELECT 1');

  type Queryable = { query: (sql: string, params?: unknown[]) => Promise<{ rows: unknown[]; rowCount: number | null }> };
  const over = (client: Queryable, inTransaction: boolean): Db => ({
    dialect: 'postgres',
    async all<T>(sql: string, params: unknown[] = []) {
      return (await client.query(sql, params)).rows as T[];
    },
    async run(sql, params = []) {
      return { changes: (await client.query(sql, params)).rowCount ?? 0 };
    },
    async transaction(fn) {
      if (inTransaction) return fn(over(client, true));
      const connection = await pool.connect();
      try {
        await connection.query('BEGIN');
        const result = await fn(over(connection, true));
        await connection.query('COMMIT');
        return result;
      } catch (err) {
        await connection.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        connection.release();
      }
    },
    async close() {
      if (!inTransaction) await pool.end();
    },
  });
  return over(pool, false);
}
