import { existsSync, mkdirSync, mkdtempSync, readdirSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestStack, type TestStack } from '../test/helpers/stack.js';
import { Chaos, chaosEnv } from './context.js';
import { formatTable, isBroken, judge, newRow, runKillTrials, type Row } from './engine.js';
import { runBrokerRestart, runFaults, runTemporalRestart } from './scenarios.js';
import { killKinds } from './trials.js';

/**
 * `npm run chaos`: the embedded stack (the same one `npm start` runs) on free
 * ports and a temporary folder, then
 *   1. kill -9 of the worker at a random point of every workflow type the API can start,
 *   2. a restart of the Temporal dev server under running operations,
 *   3. 50 operations under 30% transient faults from the Rancher stand-in,
 *   4. (events: none yet),
 * and a table of what happened. Exits 1 when any invariant broke.
 *
 *   CHAOS_TRIALS=3        trials per workflow type (default 20)
 *   CHAOS_CONCURRENCY=2   at most this many operations per wave (default: each kind's own)
 *   CHAOS_ONLY=createCluster,restart,faults   only these rows (kind names, `restart`, `faults`, `broker`)
 *   CHAOS_KEEP_DATA=1     keep the stack's data folder (its logs) afterwards
 *   CHAOS_CALIBRATE=1     instead: run one operation of each kind undisturbed and print how long
 *                         it takes (what each kind's maxDelayMs should be about)
 */

const trials = positive('CHAOS_TRIALS', 20);
const maxConcurrency = positive('CHAOS_CONCURRENCY', Infinity);
const only = process.env.CHAOS_ONLY?.split(',').map((name) => name.trim()).filter(Boolean) ?? null;
const wanted = (name: string) => !only || only.some((entry) => name === entry || name.startsWith(`${entry} `));

function positive(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) {
    console.error(`${name} must be a positive integer (got "${raw}")`);
    process.exit(2);
  }
  return value;
}

async function main(): Promise<number> {
  const startedAt = Date.now();
  const dataDir = mkdtempSync(join(tmpdir(), 'kumo-chaos-'));
  console.error(`[chaos] ${trials} trial(s) per workflow type, ${availableParallelism()} cores; starting the stack`);
  let stack: TestStack | null = null;
  let chaos: Chaos | null = null;
  let stopping = false;
  const stop = async () => {
    if (stopping || !stack) return;
    stopping = true;
    chaos?.shutdown();
    if (process.env.CHAOS_KEEP_DATA === '1') {
      await stack.stop();
      console.error(`[chaos] data and logs kept in ${dataDir}`);
    } else {
      await stack.destroy();
    }
  };
  const rows: Row[] = [];
  const interrupted = (signal: string) => {
    console.error(`[chaos] ${signal}: stopping the stack`);
    void stop().finally(() => {
      // What finished before the signal still counts: print it.
      if (rows.length) console.log(`\nKumo chaos, interrupted by ${signal}: the rows that finished\n\n${formatTable(rows)}`);
      process.exit(130);
    });
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);

  let crashed: unknown = null;
  let leftovers = 0;
  try {
    // Kumo's processes keep their temporary files in the data folder, so what a killed worker leaves behind can be counted.
    const tmp = join(dataDir, 'tmp');
    mkdirSync(tmp, { recursive: true });
    stack = await startTestStack({ dataDir, rabbitmq: true, env: { ...chaosEnv, TMPDIR: tmp } });
    chaos = new Chaos(stack);
    if (process.env.CHAOS_CALIBRATE === '1') {
      await calibrate(chaos);
      return 0;
    }
    for (const kind of killKinds) {
      if (!wanted(kind.name)) continue;
      const reason = kind.unavailable?.(chaos) ?? null;
      if (reason) {
        rows.push({ ...newRow(`kill -9: ${kind.name}`), notApplicable: reason });
        continue;
      }
      chaos.log(`kill -9 during ${kind.name}: ${trials} trial(s)`);
      const row = await runKillTrials(chaos, kind, trials, maxConcurrency);
      rows.push(row);
      chaos.log(`${row.trial}: ${row.completed}/${row.runs} completed, ${row.stuck} stuck, ${row.duplicates} duplicates${isBroken(row) ? `, ${row.problems.length} broken invariant(s)` : ''} (${(row.ms / 1000).toFixed(0)} s)`);
    }
    if (wanted('restart')) {
      chaos.log('restarting Temporal under running operations');
      rows.push(await runTemporalRestart(chaos));
    }
    if (wanted('faults')) {
      chaos.log('50 operations under 30% transient faults');
      rows.push(await runFaults(chaos));
    }
    if (wanted('broker')) {
      chaos.log('restarting RabbitMQ in the middle of 1,000 notifications');
      rows.push(await runBrokerRestart(chaos));
    }
    leftovers = leftKubeconfigs(tmp);
    if (chaos.unexpectedWorkerExits.length) console.error(`[chaos] the worker exited on its own: ${chaos.unexpectedWorkerExits.join('; ')}`);
  } catch (err) {
    crashed = err;
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    await stop();
  }

  console.log(`\nKumo chaos: ${trials} trial(s) per workflow type, ${availableParallelism()} cores, ${((Date.now() - startedAt) / 60_000).toFixed(1)} min\n`);
  console.log(formatTable(rows));
  if (leftovers) {
    console.log(`\nleft on disk: ${leftovers} kubeconfig file(s) in kumo-helm-* folders under the worker's TMPDIR (Helm calls cut short by a kill -9; removed with the data folder)`);
  }
  const broken = rows.filter(isBroken);
  for (const row of broken) {
    console.log(`\n${row.trial}: broken invariants`);
    for (const problem of row.problems) console.log(`  - ${problem}`);
  }
  if (crashed) {
    console.log(`\nthe chaos run itself failed: ${crashed instanceof Error ? (crashed.stack ?? crashed.message) : String(crashed)}`);
    return 2;
  }
  console.log(broken.length ? `\n${broken.length} row(s) broke an invariant` : '\nevery invariant held');
  return broken.length ? 1 : 0;
}

/** Kubeconfigs the Helm adapter wrote for a call and never removed (its process was killed mid-call). */
function leftKubeconfigs(tmp: string): number {
  if (!existsSync(tmp)) return 0;
  return readdirSync(tmp).filter((entry) => entry.startsWith('kumo-helm-') && existsSync(join(tmp, entry, 'kubeconfig'))).length;
}

/** One undisturbed operation of each kind, its length from acceptance to end. */
async function calibrate(chaos: Chaos): Promise<void> {
  for (const kind of killKinds) {
    if (!wanted(kind.name) || kind.unavailable?.(chaos)) continue;
    const slot = 1000 + killKinds.indexOf(kind) + 1;
    const [target] = await kind.prepare(chaos, [slot]);
    const t0 = Date.now();
    const id = await kind.start(chaos, target);
    const accepted = Date.now();
    const operation = await chaos.waitForEnd(id, kind.endTimeoutMs);
    const row = newRow(kind.name);
    await judge(chaos, row, { kind, target }, operation, false);
    console.log(
      `${kind.name.padEnd(22)} accepted in ${String(accepted - t0).padStart(4)} ms, ran ${String(Date.parse(operation?.finishedAt ?? '') - Date.parse(operation?.startedAt ?? '')).padStart(6)} ms (maxDelayMs ${kind.maxDelayMs})${row.problems.length ? `  ${row.problems.join('; ')}` : ''}`,
    );
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(2);
  },
);
