import type { Db } from './db.js';
import type {
  BindingRecord,
  BindingSpec,
  CloudEvent,
  DeliveryRecord,
  DeliveryStatus,
  DeliveryTarget,
  EventOrigin,
  EventRecord,
  EventStatus,
  MatchedBinding,
  PipelineRecord,
  PipelineStep,
} from '../domain/event.js';

interface BindingRow {
  name: string;
  spec: string;
  schedule_id: string | null;
  created_at: string;
}

interface PipelineRow {
  name: string;
  description: string | null;
  steps: string;
  created_at: string;
  updated_at: string;
}

interface EventRow {
  key: string;
  event: string;
  origin: string;
  trace: string;
  status: string;
  matched: string;
  duplicates: number | string;
  received_at: string;
  finished_at: string | null;
}

interface DeliveryRow {
  id: string;
  event_key: string;
  binding: string | null;
  target_kind: string;
  target_name: string;
  status: string;
  attempts: number | string;
  max_attempts: number | string;
  last_error: string | null;
  result: string | null;
  invocation_id: string | null;
  operation_id: string | null;
  started_at: string;
  finished_at: string | null;
}

export interface EventFilterQuery {
  status?: EventStatus;
  source?: string;
  type?: string;
  limit: number;
  /** `received_at|key` of the last item of the previous page. */
  cursor?: string;
}

/** Results are kept small: a delivery's result beyond this is cut and marked so. */
const maxResultBytes = 16 * 1024;

/**
 * The event side of Kumo's store: bindings and pipelines (desired state), every
 * event that arrived with what it matched, each delivery's outcome, and the
 * per-function slots that bound how many deliveries run at once.
 */
export class EventStore {
  constructor(private readonly db: Db) {}

  // ── bindings ──

  /** False when a binding of that name exists. */
  async createBinding(spec: BindingSpec, createdAt: string): Promise<boolean> {
    const { changes } = await this.db.run('INSERT INTO bindings (name, spec, schedule_id, created_at) VALUES ($1, $2, NULL, $3) ON CONFLICT (name) DO NOTHING', [
      spec.name,
      JSON.stringify(spec),
      createdAt,
    ]);
    return changes > 0;
  }

  async setBindingSchedule(name: string, scheduleId: string | null): Promise<void> {
    await this.db.run('UPDATE bindings SET schedule_id = $1 WHERE name = $2', [scheduleId, name]);
  }

  async getBinding(name: string): Promise<BindingRecord | null> {
    const rows = await this.db.all<BindingRow>('SELECT * FROM bindings WHERE name = $1', [name]);
    return rows[0] ? toBinding(rows[0]) : null;
  }

  async listBindings(filter: { function?: string; pipeline?: string } = {}): Promise<BindingRecord[]> {
    const all = (await this.db.all<BindingRow>('SELECT * FROM bindings ORDER BY name')).map(toBinding);
    return all.filter((b) => (filter.function === undefined || b.function === filter.function) && (filter.pipeline === undefined || b.pipeline === filter.pipeline));
  }

  async deleteBinding(name: string): Promise<boolean> {
    return (await this.db.run('DELETE FROM bindings WHERE name = $1', [name])).changes > 0;
  }

  // ── pipelines ──

  /** Creates or replaces a pipeline; returns whether it existed. */
  async putPipeline(record: PipelineRecord): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const existed = (await tx.all<{ name: string }>('SELECT name FROM pipelines WHERE name = $1', [record.name])).length > 0;
      await tx.run(
        `INSERT INTO pipelines (name, description, steps, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO UPDATE SET description = $2, steps = $3, updated_at = $5`,
        [record.name, record.description, JSON.stringify(record.steps), record.createdAt, record.updatedAt],
      );
      return existed;
    });
  }

  async getPipeline(name: string): Promise<PipelineRecord | null> {
    const rows = await this.db.all<PipelineRow>('SELECT * FROM pipelines WHERE name = $1', [name]);
    return rows[0] ? toPipeline(rows[0]) : null;
  }

  async listPipelines(): Promise<PipelineRecord[]> {
    return (await this.db.all<PipelineRow>('SELECT * FROM pipelines ORDER BY name')).map(toPipeline);
  }

  async deletePipeline(name: string): Promise<boolean> {
    return (await this.db.run('DELETE FROM pipelines WHERE name = $1', [name])).changes > 0;
  }

  // ── events ──

  /**
   * Records an event as it arrives. A second arrival of the same event (same
   * key) is counted as a duplicate, and the first record is returned with
   * `isNew: false`.
   */
  async receiveEvent(input: { key: string; event: CloudEvent; origin: EventOrigin; trace: Record<string, string>; receivedAt: string }): Promise<{ isNew: boolean; record: EventRecord }> {
    return this.db.transaction(async (tx) => {
      const { changes } = await tx.run(
        `INSERT INTO events (key, ce_id, source, type, event, origin, trace, status, matched, duplicates, received_at, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'received', '[]', 0, $8, NULL) ON CONFLICT (key) DO NOTHING`,
        [input.key, input.event.id, input.event.source, input.event.type, JSON.stringify(input.event), input.origin, JSON.stringify(input.trace), input.receivedAt],
      );
      if (changes === 0) await tx.run('UPDATE events SET duplicates = duplicates + 1 WHERE key = $1', [input.key]);
      const rows = await tx.all<EventRow>('SELECT * FROM events WHERE key = $1', [input.key]);
      return { isNew: changes > 0, record: toEvent(rows[0]!) };
    });
  }

  /** Records what an event matched and where it stands (unmatched, dispatched). */
  async setEventMatched(key: string, status: EventStatus, matched: MatchedBinding[], finishedAt: string | null = null): Promise<void> {
    await this.db.run('UPDATE events SET status = $1, matched = $2, finished_at = $3 WHERE key = $4', [status, JSON.stringify(matched), finishedAt, key]);
  }

  /** Marks an event dispatched, unless its deliveries already ended (a fast dispatch finishes before the caller gets here). */
  async markDispatched(key: string): Promise<void> {
    await this.db.run(`UPDATE events SET status = 'dispatched' WHERE key = $1 AND status = 'received'`, [key]);
  }

  /** Records how an event's deliveries ended. */
  async finishEvent(key: string, status: EventStatus, finishedAt: string): Promise<void> {
    await this.db.run('UPDATE events SET status = $1, finished_at = $2 WHERE key = $3', [status, finishedAt, key]);
  }

  async getEvent(key: string): Promise<EventRecord | null> {
    const rows = await this.db.all<EventRow>('SELECT * FROM events WHERE key = $1', [key]);
    return rows[0] ? toEvent(rows[0]) : null;
  }

  /** Events with this CloudEvent id (from any source). */
  async eventsWithId(ceId: string): Promise<EventRecord[]> {
    return (await this.db.all<EventRow>('SELECT * FROM events WHERE ce_id = $1 ORDER BY received_at LIMIT 10', [ceId])).map(toEvent);
  }

  /** Newest first. */
  async listEvents(filter: EventFilterQuery): Promise<{ items: EventRecord[]; nextCursor: string | null }> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (clause: string, value: unknown) => {
      params.push(value);
      where.push(clause.replace('?', `$${params.length}`));
    };
    if (filter.status) add('status = ?', filter.status);
    if (filter.source) add('source = ?', filter.source);
    if (filter.type) add('type = ?', filter.type);
    if (filter.cursor) {
      const [at, key] = filter.cursor.split('|');
      params.push(at, key);
      where.push(`(received_at < $${params.length - 1} OR (received_at = $${params.length - 1} AND key < $${params.length}))`);
    }
    params.push(filter.limit + 1);
    const rows = await this.db.all<EventRow>(
      `SELECT * FROM events ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY received_at DESC, key DESC LIMIT $${params.length}`,
      params,
    );
    const items = rows.slice(0, filter.limit).map(toEvent);
    const last = items[items.length - 1];
    return { items, nextCursor: rows.length > filter.limit && last ? `${last.receivedAt}|${last.key}` : null };
  }

  /** Counts by status, for the metrics endpoint and tests. */
  async eventCounts(): Promise<Array<{ origin: string; status: string; count: number; duplicates: number }>> {
    const rows = await this.db.all<{ origin: string; status: string; count: number | string; duplicates: number | string | null }>(
      'SELECT origin, status, COUNT(*) AS count, SUM(duplicates) AS duplicates FROM events GROUP BY origin, status ORDER BY origin, status',
    );
    return rows.map((row) => ({ origin: row.origin, status: row.status, count: Number(row.count), duplicates: Number(row.duplicates ?? 0) }));
  }

  // ── deliveries ──

  /** Records a delivery when it starts; a retried start finds it there and leaves it. */
  async startDelivery(input: { id: string; eventKey: string; binding: string | null; target: DeliveryTarget; maxAttempts: number; operationId?: string | null; startedAt: string }): Promise<void> {
    await this.db.run(
      `INSERT INTO deliveries (id, event_key, binding, target_kind, target_name, status, attempts, max_attempts, last_error, result, invocation_id, operation_id, started_at, finished_at)
       VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, NULL, NULL, NULL, $7, $8, NULL) ON CONFLICT (id) DO NOTHING`,
      [input.id, input.eventKey, input.binding, input.target.kind, input.target.name, input.maxAttempts, input.operationId ?? null, input.startedAt],
    );
  }

  async updateDelivery(
    id: string,
    patch: Partial<{ status: DeliveryStatus; attempts: number; lastError: { type: string; message: string } | null; result: unknown; invocationId: string | null; operationId: string | null; finishedAt: string | null }>,
  ): Promise<void> {
    const sets: string[] = [];
    const params: unknown[] = [];
    const set = (column: string, value: unknown) => {
      params.push(value);
      sets.push(`${column} = $${params.length}`);
    };
    if (patch.status !== undefined) set('status', patch.status);
    if (patch.attempts !== undefined) set('attempts', patch.attempts);
    if (patch.lastError !== undefined) set('last_error', patch.lastError === null ? null : JSON.stringify(patch.lastError));
    if (patch.result !== undefined) set('result', boundedJson(patch.result));
    if (patch.invocationId !== undefined) set('invocation_id', patch.invocationId);
    if (patch.operationId !== undefined) set('operation_id', patch.operationId);
    if (patch.finishedAt !== undefined) set('finished_at', patch.finishedAt);
    if (!sets.length) return;
    params.push(id);
    await this.db.run(`UPDATE deliveries SET ${sets.join(', ')} WHERE id = $${params.length}`, params);
  }

  async getDelivery(id: string): Promise<DeliveryRecord | null> {
    const rows = await this.db.all<DeliveryRow>('SELECT * FROM deliveries WHERE id = $1', [id]);
    return rows[0] ? toDelivery(rows[0]) : null;
  }

  async deliveriesOf(eventKey: string): Promise<DeliveryRecord[]> {
    return (await this.db.all<DeliveryRow>('SELECT * FROM deliveries WHERE event_key = $1 ORDER BY started_at, id', [eventKey])).map(toDelivery);
  }

  /** A function's invocations by Kumo (deliveries and pipeline steps), newest first. */
  async invocationsOf(functionName: string, filter: { status?: DeliveryStatus; limit: number }): Promise<DeliveryRecord[]> {
    const params: unknown[] = [functionName];
    let where = `target_kind = 'function' AND target_name = $1`;
    if (filter.status) {
      params.push(filter.status);
      where += ` AND status = $${params.length}`;
    }
    params.push(filter.limit);
    return (await this.db.all<DeliveryRow>(`SELECT * FROM deliveries WHERE ${where} ORDER BY started_at DESC, id DESC LIMIT $${params.length}`, params)).map(toDelivery);
  }

  // ── per-function slots ──

  /**
   * Takes one of a function's `limit` slots for `holder` for `ttlSeconds`; true
   * when it holds one (a holder asking again keeps its slot and extends it). A
   * slot whose holder vanished (a crashed worker) frees itself when it expires.
   */
  async acquireSlot(functionName: string, holder: string, limit: number, ttlSeconds: number, now = new Date()): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      if (tx.dialect === 'postgres') await tx.run('SELECT pg_advisory_xact_lock(hashtext($1))', [`kumo-slots:${functionName}`]);
      const nowIso = now.toISOString();
      const expires = new Date(now.getTime() + ttlSeconds * 1000).toISOString();
      await tx.run('DELETE FROM function_slots WHERE function_name = $1 AND expires_at < $2', [functionName, nowIso]);
      const mine = await tx.run('UPDATE function_slots SET expires_at = $1 WHERE function_name = $2 AND holder = $3', [expires, functionName, holder]);
      if (mine.changes > 0) return true;
      const [row] = await tx.all<{ n: number | string }>('SELECT COUNT(*) AS n FROM function_slots WHERE function_name = $1', [functionName]);
      if (Number(row?.n ?? 0) >= limit) return false;
      await tx.run('INSERT INTO function_slots (function_name, holder, expires_at) VALUES ($1, $2, $3)', [functionName, holder, expires]);
      return true;
    });
  }

  async releaseSlot(functionName: string, holder: string): Promise<void> {
    await this.db.run('DELETE FROM function_slots WHERE function_name = $1 AND holder = $2', [functionName, holder]);
  }

  async slotsInUse(functionName: string): Promise<number> {
    const [row] = await this.db.all<{ n: number | string }>('SELECT COUNT(*) AS n FROM function_slots WHERE function_name = $1 AND expires_at >= $2', [functionName, new Date().toISOString()]);
    return Number(row?.n ?? 0);
  }
}

function boundedJson(value: unknown): string | null {
  if (value === undefined) return null;
  const text = JSON.stringify(value ?? null);
  if (Buffer.byteLength(text) <= maxResultBytes) return text;
  return JSON.stringify({ truncated: true, bytes: Buffer.byteLength(text), head: text.slice(0, 1024) });
}

function toBinding(row: BindingRow): BindingRecord {
  return { ...(JSON.parse(row.spec) as BindingSpec), createdAt: row.created_at, scheduleId: row.schedule_id };
}

function toPipeline(row: PipelineRow): PipelineRecord {
  return { name: row.name, description: row.description, steps: JSON.parse(row.steps) as PipelineStep[], createdAt: row.created_at, updatedAt: row.updated_at };
}

function toEvent(row: EventRow): EventRecord {
  return {
    key: row.key,
    event: JSON.parse(row.event) as CloudEvent,
    origin: row.origin as EventOrigin,
    trace: JSON.parse(row.trace) as Record<string, string>,
    status: row.status as EventStatus,
    matched: JSON.parse(row.matched) as MatchedBinding[],
    duplicates: Number(row.duplicates),
    receivedAt: row.received_at,
    finishedAt: row.finished_at,
  };
}

function toDelivery(row: DeliveryRow): DeliveryRecord {
  return {
    id: row.id,
    eventKey: row.event_key,
    binding: row.binding,
    target: { kind: row.target_kind as DeliveryTarget['kind'], name: row.target_name },
    status: row.status as DeliveryStatus,
    attempts: Number(row.attempts),
    maxAttempts: Number(row.max_attempts),
    lastError: row.last_error ? (JSON.parse(row.last_error) as { type: string; message: string }) : null,
    result: row.result === null ? null : (JSON.parse(row.result) as unknown),
    invocationId: row.invocation_id,
    operationId: row.operation_id,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
  };
}
