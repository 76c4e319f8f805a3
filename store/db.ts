import { mkdirSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';

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
  // The busy timeout first: switching to WAL needs the lock, and another
  // process may be opening the same new file at this very moment.
  sqlite.pragma('busy_timeout = 10000');
  for (let attempt = 1; ; attempt++) {
    try {
      sqlite.pragma('journal_mode = WAL');
      break;
    } catch (err) {
      if ((err as { code?: string }).code !== 'SQLITE_BUSY' || attempt >= 50) throw err;
      await new Promise((done) => setTimeout(done, 20 * attempt));
    }
  }
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

  // better-sqlite3 is synchronous but transactions here span awaits, so calls in
  // this process must not slip into another's open transaction (they would be
  // rolled back with it), nor wait on SQLite's busy lock while the holder needs
  // this same event loop to finish. One queue per database file, process-wide.
  const lock = fileLock(file);
  const all = async <T>(sql: string, params: unknown[] = []) => {
    const { statement, values } = prepare(sql, params);
    return (statement.reader ? statement.all(...values) : (statement.run(...values), [])) as T[];
  };
  const run = async (sql: string, params: unknown[] = []) => {
    const { statement, values } = prepare(sql, params);
    return { changes: statement.run(...values).changes };
  };
  const inTransaction: Db = {
    dialect: 'sqlite',
    all,
    run,
    transaction: (fn) => fn(inTransaction),
    close: async () => undefined,
  };
  const db: Db = {
    dialect: 'sqlite',
    all: (sql, params) => lock(() => all(sql, params)),
    run: (sql, params) => lock(() => run(sql, params)),
    transaction: (fn) =>
      lock(async () => {
        // IMMEDIATE takes the write lock now, so another process cannot interleave.
        sqlite.exec('BEGIN IMMEDIATE');
        try {
          const result = await fn(inTransaction);
          sqlite.exec('COMMIT');
          return result;
        } catch (err) {
          sqlite.exec('ROLLBACK');
          throw err;
        }
      }),
    async close() {
      await lock(async () => sqlite.close());
    },
  };
  return db;
}

const fileLocks = new Map<string, <T>(fn: () => Promise<T>) => Promise<T>>();

/** A FIFO async mutex per database file (`:memory:` databases each get their own). */
function fileLock(file: string): <T>(fn: () => Promise<T>) => Promise<T> {
  if (file === ':memory:') return newLock();
  const key = resolvePath(file);
  let lock = fileLocks.get(key);
  if (!lock) {
    lock = newLock();
    fileLocks.set(key, lock);
  }
  return lock;
}

function newLock(): <T>(fn: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(fn: () => Promise<T>) => {
    const result = tail.then(fn, fn);
    tail = result.catch(() => undefined);
    return result;
  };
}

function toSqlite(value: unknown): unknown {
  if (value === undefined) return null;
  if (typeof value === 'boolean') return value ? 1 : 0;
  return value;
}

async function openPostgres(url: string): Promise<Db> {
  const { default: pg } = await import('pg');
  const pool = new pg.Pool({ connectionString: url, max: 5 });
  // An idle client the server drops (restart, failover) must not crash the
  // process: the pool discards it and connects afresh on the next query.
  pool.on('error', (err) => console.error(JSON.stringify({ level: 'warn', msg: 'postgres pool: idle client failed', error: err.message })));
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
