import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import type { Stack } from '../scripts/stack.js';
import { temporalCli } from '../scripts/tools.js';
import { benchFunctionBuild } from './build.js';
import { benchDispatch } from './dispatch.js';
import { benchFleet, defaultFleetSizes } from './fleet.js';
import { benchSweep } from './health.js';
import { childPids, PeakRss } from './memory.js';
import { benchOverhead, type OverheadRow } from './overhead.js';
import { startBenchStack } from './stack.js';

/**
 * `npm run bench`: measures Kumo against bare Temporal side by side, in one run,
 * and prints ratios (absolute times on a shared machine mean little). See
 * bench/README.md for every measure, its target and the environment knobs.
 *
 * 1. Orchestration overhead (bench/overhead.ts): a Kumo-style operation of N
 *    no-op steps against a bare workflow of N no-op activities.
 * 2. API start latency — POST /v1/clusters (validation, store writes, workflow
 *    start, answer) against a bare `client.workflow.start` on the same dev server,
 *    interleaved so both see the same machine load. No worker runs then, so the
 *    started workflows stay queued and do not load the machine.
 * 3. Peak memory of the API and the worker: the worker is started after the two
 *    measures above and runs the cluster creations they queued.
 * 4. Fleet scale (bench/fleet.ts): reading a seeded simulator's whole inventory.
 * 5. Function builds (bench/build.ts): a first build against a rebuild after a
 *    code-only change.
 * 6. Event dispatch (bench/dispatch.ts): oslo notifications from RabbitMQ to
 *    started dispatch workflows, against a bare consume-and-ack loop.
 * 7. Fleet health sweep (bench/health.ts): one sweep over the seed's fleet
 *    (130 clusters, 2,000 nodes) against the Schedule's interval it must fit in.
 */
const env = (name: string, fallback: number): number => {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a non-negative number`);
  return value;
};
const samples = env('BENCH_SAMPLES', 200);
const overheadSamples = env('BENCH_OVERHEAD_SAMPLES', 10);
const overheadSteps = (process.env.BENCH_OVERHEAD_STEPS ?? '1,10,50').split(',').map(Number);
const drainSeconds = env('BENCH_DRAIN_SECONDS', 150);
const fleetSizes = process.env.BENCH_FLEET_SIZES
  ? process.env.BENCH_FLEET_SIZES.split(',').map((size) => {
      const [clusters, nodes] = size.split('/').map(Number);
      return { clusters: clusters ?? 0, nodes: nodes ?? 0 };
    })
  : defaultFleetSizes;
const fleetConcurrency = env('BENCH_FLEET_CONCURRENCY', 8);
const fleetReads = Math.max(1, env('BENCH_FLEET_READS', 3));
const buildSamples = env('BENCH_BUILD_SAMPLES', 3);
const dispatchNotifications = env('BENCH_DISPATCH_NOTIFICATIONS', 1000);
const fleetProfile = Boolean(process.env.BENCH_FLEET_PROFILE);
const sweepSamples = env('BENCH_SWEEPS', 3);
const sweepConcurrency = Math.max(1, env('BENCH_SWEEP_CONCURRENCY', 16));
const sweepInterval = Math.max(1, env('BENCH_SWEEP_INTERVAL_S', 60));
const benchToken = `kumo_bench_${randomBytes(16).toString('hex')}`;

interface Row {
  measure: string;
  kumo: number;
  /** The bare/baseline figure, when the measure has one. */
  baseline: number | null;
  ratio: number | null;
  target: string;
  /** Whether the target is met; null when there is none. */
  met: boolean | null;
  /** Decimals to print. */
  digits: number;
}

interface Drain {
  /** Workflows on Kumo's task queue: the cluster creations the latency measure started, and any Kumo starts itself. */
  workflows: number;
  finished: number;
  seconds: number;
}

async function main(): Promise<void> {
  const started = performance.now();
  const loadBefore = loadavg();
  const dataDir = mkdtempSync(join(tmpdir(), 'kumo-bench-'));
  const rows: Row[] = [];
  let overhead: OverheadRow[] = [];
  let latency: { kumo: number[]; bare: number[] } = { kumo: [], bare: [] };
  let drain: Drain | null = null;
  let memory = new Map<string, number>();
  let stack: Stack | null = null;
  try {
    stack = await startBenchStack(dataDir, {
      sim: true,
      worker: false,
      env: { KUMO_ADMIN_TOKEN: benchToken },
    });
    const peaks = new PeakRss();
    // The stack runs the API as a child of this process; no other child runs api/main.ts.
    peaks.watch('api', childPids('api/main.ts')[0]);
    peaks.start();

    progress('API start latency');
    latency = await benchStartLatency(stack);
    progress(`orchestration overhead (N = ${overheadSteps.join(', ')}; ${overheadSamples} samples each)`);
    overhead = await benchOverhead({ temporalAddress: stack.temporalAddress, dataDir, ns: overheadSteps, samples: overheadSamples, warmup: 3 });

    progress('worker memory: the worker runs the queued cluster creations');
    const worker = await stack.startWorker();
    peaks.watch('worker', worker.pid);
    drain = await drainQueue(stack, drainSeconds);
    memory = peaks.stop();
  } finally {
    await stack?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }

  progress(`fleet scale (${fleetSizes.map((s) => `${s.clusters}/${s.nodes}`).join(', ')})`);
  // With BENCH_FLEET_PROFILE, the simulator runs under --cpu-prof; summarise with bench/cpuprofile.ts.
  const profileDir = fleetProfile ? mkdtempSync(join(tmpdir(), 'kumo-bench-profile-')) : undefined;
  const fleet = await benchFleet(fleetSizes, { concurrency: fleetConcurrency, reads: fleetReads, profileDir });
  if (profileDir) console.log(`[bench] simulator CPU profiles in ${profileDir}: node --import tsx bench/cpuprofile.ts ${profileDir}/*.cpuprofile`);
  progress('function build');
  const build = buildSamples > 0 ? await benchFunctionBuild(buildSamples) : null;
  progress(`event dispatch (${dispatchNotifications} notifications)`);
  const dispatch = dispatchNotifications > 0 ? await benchDispatch(dispatchNotifications) : null;
  progress(`fleet health sweep (130/2,000, ${sweepSamples} sweeps, ${sweepConcurrency} at once)`);
  const sweep = sweepSamples > 0 ? await benchSweep({ clusters: 130, nodes: 2000 }, { sweeps: sweepSamples, concurrency: sweepConcurrency, intervalSeconds: sweepInterval }) : null;

  for (const row of overhead) {
    rows.push(compare(`overhead N=${row.n}, median (ms)`, row.kumoMs, row.bareMs, 1, '≤ 1.3×', (ratio) => ratio <= 1.3));
  }
  rows.push(compare('start latency p50 (ms)', pct(latency.kumo, 50), pct(latency.bare, 50), 2, '', null));
  rows.push(compare('start latency p99 (ms)', pct(latency.kumo, 99), pct(latency.bare, 99), 2, '≤ 2×', (ratio) => ratio <= 2));
  const smallest = fleet[0];
  for (const size of fleet) {
    const label = `${size.clusters}/${size.nodes.toLocaleString('en')}`;
    const limit = size.clusters <= 130 && size.nodes <= 2000 ? 10 : size.clusters >= 2000 || size.nodes >= 30000 ? 120 : null;
    rows.push({
      measure: `fleet read ${label} (s)`,
      kumo: size.readMs / 1000,
      baseline: null,
      ratio: null,
      target: limit === null ? '' : `≤ ${limit} s`,
      met: limit === null ? null : size.readMs / 1000 <= limit,
      digits: 1,
    });
  }
  for (const size of fleet) {
    if (!smallest) break;
    rows.push(compare(`fleet ms per 1k nodes ${size.clusters}/${size.nodes.toLocaleString('en')}`, size.msPer1000Nodes, smallest.msPer1000Nodes, 0, size === smallest ? 'linear: ≈ 1×' : '', null));
  }
  if (build) {
    rows.push(compare('build first / rebuild (ms)', build.firstMs, build.rebuildMs, 0, '≥ 10×', (ratio) => ratio >= 10));
  }
  if (dispatch) {
    rows.push(compare('event dispatch (notifications/s)', dispatch.kumoPerSecond, dispatch.barePerSecond, 0, '≥ 0.5×', (ratio) => ratio >= 0.5));
    rows.push(compare('event dispatch / bare workflow starts (per s)', dispatch.kumoPerSecond, dispatch.workflowStartsPerSecond, 0, '', null));
    if (dispatch.eventsPeakRssBytes) memory.set('event source', dispatch.eventsPeakRssBytes);
  }
  if (sweep) {
    rows.push(compare(`health sweep 130/2,000 / ${sweep.intervalSeconds} s interval (s)`, sweep.medianMs / 1000, sweep.intervalSeconds, 1, '≤ 0.5×', (ratio) => ratio <= 0.5));
    rows.push(compare('health sweep slowest / median (ms)', sweep.maxMs, sweep.medianMs, 0, '', null));
  }
  const largest = fleet[fleet.length - 1];
  if (largest?.simPeakRssBytes) memory.set(`sim (${largest.clusters}/${largest.nodes.toLocaleString('en')})`, largest.simPeakRssBytes);
  for (const [name, bytes] of memory) {
    rows.push({ measure: `${name} peak RSS (MiB)`, kumo: bytes / 2 ** 20, baseline: null, ratio: null, target: '', met: null, digits: 0 });
  }

  const machine = {
    cores: availableParallelism(),
    cpu: cpus()[0]?.model ?? 'unknown',
    memoryBytes: totalmem(),
    node: process.version,
    temporalCli: temporalVersion(),
    /** 1-minute load averages when the run started and ended: a shared machine shows here. */
    loadAverage: { start: round(loadBefore[0]), end: round(loadavg()[0]) },
  };
  const minutes = (performance.now() - started) / 60_000;
  console.log(`\nKumo benchmarks — ${machine.cores} cores (${machine.cpu}), ${(machine.memoryBytes / 2 ** 30).toFixed(0)} GiB, Node ${machine.node}, ${machine.temporalCli}; ${minutes.toFixed(1)} min; load ${machine.loadAverage.start} → ${machine.loadAverage.end}\n`);
  printTable(rows);
  if (!build) console.log('\nfunction build: skipped (no docker-registry installed, or BENCH_BUILD_SAMPLES=0)');
  if (!dispatch) console.log('\nevent dispatch: skipped (no rabbitmq-server installed, or BENCH_DISPATCH_NOTIFICATIONS=0)');
  if (drain) console.log(`\nworker memory window: ${drain.finished}/${drain.workflows} workflows queued on Kumo's task queue (the latency measure's cluster creations) finished in ${drain.seconds.toFixed(0)} s`);

  const result = {
    date: new Date().toISOString(),
    machine,
    minutes,
    settings: { samples, overheadSamples, overheadSteps, drainSeconds, fleetSizes, fleetConcurrency, fleetReads, buildSamples, dispatchNotifications, sweepSamples, sweepConcurrency, sweepInterval },
    rows: rows.map(({ digits: _digits, ...row }) => row),
    overhead,
    startLatency: { samples, kumoP50: pct(latency.kumo, 50), bareP50: pct(latency.bare, 50), kumoP99: pct(latency.kumo, 99), bareP99: pct(latency.bare, 99) },
    fleet,
    memory: Object.fromEntries(memory),
    drain,
    functionBuild: build ? { ...build, ratio: build.firstMs / build.rebuildMs } : null,
    eventDispatch: dispatch ? { ...dispatch, ratio: dispatch.kumoPerSecond / dispatch.barePerSecond } : null,
    healthSweep: sweep,
  };
  mkdirSync(join('bench', 'results'), { recursive: true });
  const file = join('bench', 'results', `${result.date.slice(0, 10)}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nwritten to ${file}`);
}

async function benchStartLatency(stack: Stack): Promise<{ kumo: number[]; bare: number[] }> {
  const connection = await Connection.connect({ address: stack.temporalAddress });
  const client = new Client({ connection });
  try {
    const kumo: number[] = [];
    const bare: number[] = [];
    const spec = (name: string) =>
      JSON.stringify({ name, kubernetesVersion: 'v1.30.6-rancher1-1', nodePools: [{ name: 'all', roles: ['etcd', 'controlplane', 'worker'], quantity: 1 }] });
    // Warm both paths (connections, prepared statements, JIT) before measuring.
    for (let i = 0; i < 20; i++) {
      await postCluster(stack.apiUrl, spec(`warm-${i}`));
      await client.workflow.start('createCluster', { taskQueue: 'bench-bare', workflowId: `bench-warm-${i}`, args: [] });
    }
    for (let i = 0; i < samples; i++) {
      let t = performance.now();
      await postCluster(stack.apiUrl, spec(`bench-${i}`));
      kumo.push(performance.now() - t);
      t = performance.now();
      await client.workflow.start('createCluster', { taskQueue: 'bench-bare', workflowId: `bench-bare-${i}`, args: [] });
      bare.push(performance.now() - t);
    }
    return { kumo, bare };
  } finally {
    await connection.close();
  }
}

/** Waits until the worker has run every workflow queued on Kumo's task queue, or `seconds` pass. */
async function drainQueue(stack: Stack, seconds: number): Promise<Drain> {
  const connection = await Connection.connect({ address: stack.temporalAddress });
  const client = new Client({ connection });
  const taskQueue = stack.env.TEMPORAL_TASK_QUEUE ?? 'kumo';
  const t = performance.now();
  try {
    const total = (await client.workflow.count(`TaskQueue = '${taskQueue}'`)).count;
    let running = total;
    while (running > 0 && performance.now() - t < seconds * 1000) {
      await new Promise((done) => setTimeout(done, 2000));
      running = (await client.workflow.count(`TaskQueue = '${taskQueue}' AND ExecutionStatus = 'Running'`)).count;
    }
    return { workflows: total, finished: total - running, seconds: (performance.now() - t) / 1000 };
  } finally {
    await connection.close();
  }
}

async function postCluster(apiUrl: string, body: string): Promise<void> {
  const response = await fetch(`${apiUrl}/v1/clusters`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${benchToken}` }, body });
  if (response.status !== 202) throw new Error(`POST /v1/clusters: ${response.status} ${await response.text()}`);
  await response.arrayBuffer();
}

function compare(measure: string, kumo: number, baseline: number, digits: number, target: string, check: ((ratio: number) => boolean) | null): Row {
  const ratio = kumo / baseline;
  return { measure, kumo, baseline, ratio, target, met: check ? check(ratio) : null, digits };
}

function printTable(rows: Row[]): void {
  const width = Math.max(...rows.map((row) => row.measure.length)) + 2;
  console.log(`${'measure'.padEnd(width)}${'kumo'.padStart(10)}${'bare/base'.padStart(11)}${'ratio'.padStart(8)}  target`);
  for (const row of rows) {
    const verdict = row.met === null ? '' : row.met ? '  ok' : '  MISSED';
    console.log(
      `${row.measure.padEnd(width)}${row.kumo.toFixed(row.digits).padStart(10)}${(row.baseline === null ? '—' : row.baseline.toFixed(row.digits)).padStart(11)}${(row.ratio === null ? '—' : `${row.ratio.toFixed(2)}×`).padStart(8)}  ${row.target}${verdict}`,
    );
  }
}

function temporalVersion(): string {
  try {
    return execFileSync(temporalCli(), ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    return 'temporal CLI version unknown';
  }
}

function round(value: number | undefined): number {
  return Math.round((value ?? 0) * 100) / 100;
}

function progress(what: string): void {
  console.log(`[bench] ${what}…`);
}

function pct(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

main().then(
  // The Temporal SDK's runtime may hold the event loop; everything it ran has been shut down by now.
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
