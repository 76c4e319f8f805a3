import { Chaos, describeOperation, outcomeOf, sleep, type OperationView } from './context.js';
import type { AnyKind } from './trials.js';

/**
 * Runs trials in waves: up to `concurrency` operations of a kind, each on its own
 * target, started so that the disruption (a kill -9 of the worker, or a restart
 * of Temporal) lands a random delay after each was accepted: operation j starts
 * at `t0 + max(d) − d_j` and the disruption comes at `t0 + max(d)`, with `d_j`
 * uniform in [0, maxDelayMs]. Then every operation must end within its bound,
 * as expected, and pass its kind's invariants.
 */

export interface Row {
  trial: string;
  runs: number;
  completed: number;
  failedTyped: number;
  stuck: number;
  duplicates: number;
  /** Short notes for the table. */
  notes: string[];
  /** Every broken invariant, in full (printed under the table). */
  problems: string[];
  /** Operations still running when the disruption came, and the steps they were in. */
  midRun: number;
  disrupted: number;
  stepsHit: Map<string, number>;
  /** Set when the row cannot run here (printed instead of numbers). */
  notApplicable?: string;
  ms: number;
}

export function newRow(trial: string): Row {
  return { trial, runs: 0, completed: 0, failedTyped: 0, stuck: 0, duplicates: 0, notes: [], problems: [], midRun: 0, disrupted: 0, stepsHit: new Map(), ms: 0 };
}

export interface WaveItem {
  kind: AnyKind;
  target: unknown;
}

export interface WaveOptions {
  /** What happens mid-operation. */
  disrupt: () => Promise<void>;
  /** A typed failure is acceptable (faults), not a broken invariant. */
  failureExpected?: boolean;
  label: string;
}

interface Started {
  item: WaveItem;
  id: string | null;
  error: string | null;
  acceptedAt: number;
}

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Runs one wave and adds what happened to the row. */
export async function runWave(chaos: Chaos, row: Row, items: WaveItem[], options: WaveOptions): Promise<void> {
  const delays = items.map((item) => Math.random() * item.kind.maxDelayMs);
  const longest = Math.max(0, ...delays);
  const t0 = Date.now();
  const started: Started[] = await Promise.all(
    items.map(async (item, j) => {
      await sleep(t0 + longest - (delays[j] ?? 0) - Date.now());
      try {
        const id = await item.kind.start(chaos, item.target);
        return { item, id, error: null, acceptedAt: Date.now() };
      } catch (err) {
        return { item, id: null, error: errorText(err), acceptedAt: Date.now() };
      }
    }),
  );
  await sleep(t0 + longest - Date.now());

  // Where each operation stands at the moment of the disruption.
  const before = await Promise.all(started.map((s) => (s.id ? chaos.operation(s.id).catch(() => null) : null)));
  const disruptedAt = Date.now();
  await options.disrupt();
  const downMs = Date.now() - disruptedAt;
  for (const view of before) {
    if (!view) continue;
    row.disrupted++;
    if (view.status === 'running') {
      row.midRun++;
      const step = view.step ?? '(starting)';
      row.stepsHit.set(step, (row.stepsHit.get(step) ?? 0) + 1);
    }
  }
  const hit = before.map((view, j) => `${started[j]?.item.kind.name}@${view?.status === 'running' ? (view.step ?? 'start') : (view?.status ?? '?')}+${Math.round(disruptedAt - (started[j]?.acceptedAt ?? disruptedAt))}ms`);
  chaos.log(`${options.label}: ${started.filter((s) => s.id).length} started; disrupted (${Math.round(downMs)} ms) at ${hit.join(', ')}`);

  const ended = await Promise.all(started.map((s) => (s.id ? chaos.waitForEnd(s.id, s.item.kind.endTimeoutMs) : Promise.resolve(null))));
  for (const [j, s] of started.entries()) {
    row.runs++;
    if (!s.id) {
      row.problems.push(`${s.item.kind.name}: the start was refused: ${s.error}`);
      continue;
    }
    const operation = ended[j] ?? null;
    await judge(chaos, row, s.item, operation, options.failureExpected === true);
  }
  const took = Date.now() - t0;
  chaos.log(`${options.label}: ended after ${(took / 1000).toFixed(1)} s: ${ended.map((op) => (op ? `${op.status}${op.failure ? ` ${op.failure.type}@${op.failure.step}` : ''}` : 'not started')).join(', ')}`);
}

/** Counts an ended operation and checks its kind's invariants. */
export async function judge(chaos: Chaos, row: Row, item: WaveItem, operation: OperationView | null, failureExpected: boolean): Promise<void> {
  const outcome = outcomeOf(operation);
  const what = `${item.kind.name}: ${describeOperation(operation)}`;
  if (outcome === 'succeeded') row.completed++;
  else if (outcome === 'failed-typed') {
    row.failedTyped++;
    if (!failureExpected) row.problems.push(`unexpected failure: ${what}`);
  } else if (outcome === 'stuck') {
    row.stuck++;
    row.problems.push(`stuck (still running after ${Math.round(item.kind.endTimeoutMs / 1000)} s): ${what}`);
    return;
  } else row.problems.push(`${outcome === 'untyped' ? 'untyped failure' : outcome}: ${what}`);
  if (!operation) return;
  try {
    const verdict = await item.kind.check(chaos, item.target, operation);
    row.duplicates += verdict.duplicates.length;
    for (const duplicate of verdict.duplicates) row.problems.push(`duplicate (${item.kind.name} ${operation.id}): ${duplicate}`);
    for (const problem of verdict.problems) row.problems.push(`${item.kind.name} ${operation.id}: ${problem}`);
  } catch (err) {
    row.problems.push(`${item.kind.name} ${operation.id}: the check itself failed: ${errorText(err)}`);
  }
}

/**
 * The kill -9 trials of one kind: `trials` operations in waves of the kind's
 * concurrency (at most `maxConcurrency`), slots 1..trials, one kill per wave.
 */
export async function runKillTrials(chaos: Chaos, kind: AnyKind, trials: number, maxConcurrency = Infinity, firstSlot = 1): Promise<Row> {
  const row = newRow(`kill -9: ${kind.name}`);
  const startedAt = Date.now();
  const slots = Array.from({ length: trials }, (_, i) => firstSlot + i);
  const size = Math.max(1, Math.min(kind.concurrency, maxConcurrency));
  const waves = Math.ceil(slots.length / size);
  for (let w = 0; w < waves; w++) {
    const wave = slots.slice(w * size, (w + 1) * size);
    let targets: unknown[];
    try {
      targets = await kind.prepare(chaos, wave);
    } catch (err) {
      row.runs += wave.length;
      row.problems.push(`${kind.name}: could not set up slots ${wave.join(', ')}: ${errorText(err)}`);
      continue;
    }
    await runWave(
      chaos,
      row,
      targets.map((target) => ({ kind, target })),
      { disrupt: () => chaos.killWorker(), label: `kill -9 ${kind.name} wave ${w + 1}/${waves}` },
    );
  }
  row.ms = Date.now() - startedAt;
  finishNotes(row);
  return row;
}

/**
 * One wave of operations of mixed kinds (each on its own target) and one kill -9
 * of the worker at a random point of each: the bounded version the test suite runs.
 */
export async function runMixedKillWave(chaos: Chaos, trial: string, plan: Array<{ kind: AnyKind; slots: number[] }>): Promise<Row> {
  const row = newRow(trial);
  const startedAt = Date.now();
  const items: WaveItem[] = [];
  for (const { kind, slots } of plan) for (const target of await kind.prepare(chaos, slots)) items.push({ kind, target });
  await runWave(chaos, row, items, { disrupt: () => chaos.killWorker(), label: trial });
  row.ms = Date.now() - startedAt;
  finishNotes(row);
  return row;
}

/** The row's notes: how many operations the disruption caught mid-run, and in which steps. */
export function finishNotes(row: Row): void {
  if (row.disrupted) {
    const steps = [...row.stepsHit.entries()].sort((a, b) => b[1] - a[1]).map(([step, count]) => `${step} ${count}`);
    row.notes.unshift(`mid-run ${row.midRun}/${row.disrupted}${steps.length ? ` (${steps.join(', ')})` : ''}`);
  }
  if (row.problems.length) row.notes.push(`BROKEN: ${row.problems.length} invariant(s), see below`);
  row.notes.push(`${(row.ms / 1000).toFixed(0)} s`);
}

/** The table `npm run chaos` prints. */
export function formatTable(rows: Row[]): string {
  const header = ['trial', 'runs', 'completed', 'failed-typed', 'stuck', 'duplicates', 'notes'];
  const body = rows.map((row) =>
    row.notApplicable
      ? [row.trial, '-', '-', '-', '-', '-', row.notApplicable]
      : [row.trial, String(row.runs), String(row.completed), String(row.failedTyped), String(row.stuck), String(row.duplicates), row.notes.join('; ')],
  );
  const widths = header.map((title, i) => Math.max(title.length, ...body.map((cells) => (i === header.length - 1 ? 0 : (cells[i] ?? '').length))));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), line(header.map((_, i) => '-'.repeat(i === header.length - 1 ? 5 : (widths[i] ?? 0)))), ...body.map(line)].join('\n');
}

export const isBroken = (row: Row) => row.problems.length > 0;
