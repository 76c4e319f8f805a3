import { Chaos } from './context.js';
import { finishNotes, judge, newRow, runWave, type Row, type WaveItem } from './engine.js';
import { applyAddon, createCluster, ensureFleet, replaceNode, scaleAny, scaleUp, takeSnapshot, updateCluster, type AnyKind } from './trials.js';

/**
 * The disruptions that are not a worker kill: the Temporal dev server restarted
 * under running operations, and 30% of Rancher calls failing.
 */

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * Creates, scales and an add-on apply running side by side; the Temporal dev
 * server is killed (SIGKILL) and started again on the same SQLite file in the
 * middle. Every one must resume and succeed, with the same invariants as after a
 * worker kill.
 */
export async function runTemporalRestart(chaos: Chaos, slots = { creates: [101, 102, 103], scales: [111, 112], addons: [113] }): Promise<Row> {
  const row = newRow('temporal restart mid-operations');
  const startedAt = Date.now();
  try {
    const items: WaveItem[] = [];
    const add = async (kind: AnyKind, kindSlots: number[]) => {
      for (const target of await kind.prepare(chaos, kindSlots)) items.push({ kind, target });
    };
    await add(createCluster, slots.creates);
    await add(scaleUp, slots.scales);
    await add(applyAddon, slots.addons);
    const exitsBefore = chaos.unexpectedWorkerExits.length;
    await runWave(chaos, row, items, { disrupt: () => chaos.restartTemporal(), label: 'temporal restart' });
    const exits = chaos.unexpectedWorkerExits.length - exitsBefore;
    row.notes.push(exits ? `the worker exited ${exits}× and was started again by the harness` : 'the worker rode it out');
    if (exits) row.problems.push(`the worker did not survive a restart of Temporal (it exited ${exits}×; the harness started another)`);
  } catch (err) {
    row.problems.push(`the scenario could not run: ${errorText(err)}`);
  }
  row.ms = Date.now() - startedAt;
  finishNotes(row);
  return row;
}

/**
 * 50 operations while 30% of Rancher's /v3 answers are 503: 10 creates, and on
 * 8 clusters a chain of scale, snapshot, update, add-on apply and node
 * replacement (one operation per cluster at a time, as Kumo requires). Each
 * must end succeeded, or failed with one of Kumo's failure types and its step
 * named; none may run past its bound; and nothing may be duplicated.
 */
export async function runFaults(chaos: Chaos, options: { errorRate?: number; concurrency?: number } = {}): Promise<Row> {
  const errorRate = options.errorRate ?? 0.3;
  const row = newRow(`${Math.round(errorRate * 100)}% transient faults (503)`);
  const startedAt = Date.now();
  const chains = [201, 202, 203, 204, 205, 206, 207, 208];
  const creates = [221, 222, 223, 224, 225, 226, 227, 228, 229, 230];
  const chain: AnyKind[] = [scaleAny, takeSnapshot, updateCluster, applyAddon, replaceNode];
  try {
    await ensureFleet(chaos, chains);
    const callsBefore = (await chaos.stack.sim('/admin/calls')).total as number;
    await chaos.stack.sim('/admin/faults', { body: { errorRate, errorStatus: 503 } });
    let injected = 0;
    try {
      const limit = limiter(options.concurrency ?? 6);
      const one = (kind: AnyKind, slot: number) =>
        limit(async () => {
          row.runs++;
          let target: unknown;
          let id: string;
          try {
            [target] = await kind.prepare(chaos, [slot]);
            id = await kind.start(chaos, target);
          } catch (err) {
            row.problems.push(`${kind.name} on slot ${slot}: could not start: ${errorText(err)}`);
            return;
          }
          const operation = await chaos.waitForEnd(id, kind.endTimeoutMs + 6 * 60_000);
          await judge(chaos, row, { kind, target }, operation, true);
          chaos.log(`faults: ${kind.name} slot ${slot}: ${operation?.status}${operation?.failure ? ` ${operation.failure.type}@${operation.failure.step}` : ''} (${row.runs} started)`);
        });
      await Promise.all([
        ...creates.map((slot) => one(createCluster, slot)),
        ...chains.map(async (slot) => {
          for (const kind of chain) await one(kind, slot);
        }),
      ]);
      const calls = await chaos.stack.sim('/admin/calls');
      const recent = (calls.recent as Array<{ path: string; status: number }>).filter((call) => call.path.startsWith('/v3'));
      injected = recent.filter((call) => call.status === 503).length;
      row.notes.push(`${(calls.total as number) - callsBefore} calls to the stand-in; ${injected} of the last ${recent.length} /v3 answers were 503`);
    } finally {
      await chaos.stack.sim('/admin/faults', { method: 'DELETE' });
    }
    if (!injected) row.problems.push('no fault was injected');
  } catch (err) {
    row.problems.push(`the scenario could not run: ${errorText(err)}`);
  }
  row.ms = Date.now() - startedAt;
  finishNotes(row);
  return row;
}

/** Operations on events (RabbitMQ, cron, alerts) do not exist yet. */
export function eventsRow(): Row {
  return { ...newRow('events under faults'), notApplicable: 'n/a: no event sources yet' };
}

/** Runs at most `n` of the given tasks at once. */
function limiter(n: number): <T>(task: () => Promise<T>) => Promise<T> {
  let active = 0;
  const queue: Array<() => void> = [];
  return async <T>(task: () => Promise<T>): Promise<T> => {
    // A finished task hands its place straight to the next one waiting.
    if (active >= n) await new Promise<void>((go) => queue.push(go));
    else active++;
    try {
      return await task();
    } finally {
      const next = queue.shift();
      if (next) next();
      else active--;
    }
  };
}
