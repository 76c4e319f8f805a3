import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { startStack } from '../scripts/stack.js';
import { freePort } from '../scripts/tools.js';
import { benchFunctionBuild } from './build.js';

/**
 * `npm run bench`: measures Kumo against bare Temporal side by side, in one run,
 * and prints ratios (absolute times on a shared machine mean little).
 *
 * Function builds: a first build against a rebuild after a code-only change
 * (bench/build.ts).
 *
 * API start latency — POST /v1/clusters (validation, store writes, workflow
 * start, answer) against a bare `client.workflow.start` on the same dev server,
 * interleaved so both see the same machine load. No worker runs, so the started
 * workflows stay queued and do not load the machine.
 */
const samples = Number(process.env.BENCH_SAMPLES ?? 200);
const benchToken = `kumo_bench_${randomBytes(16).toString('hex')}`;

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'kumo-bench-'));
  const stack = await startStack({
    dataDir,
    apiPort: await freePort(),
    simPort: await freePort(),
    temporal: { mode: 'embedded', port: await freePort(), uiPort: 0, ui: false, persist: false },
    sim: true,
    worker: false,
    env: { KUMO_ADMIN_TOKEN: benchToken },
  });
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
    const rows = [
      { measure: 'start latency p50 (ms)', kumo: pct(kumo, 50), bare: pct(bare, 50) },
      { measure: 'start latency p99 (ms)', kumo: pct(kumo, 99), bare: pct(bare, 99) },
    ].map((row) => ({ ...row, ratio: row.kumo / row.bare }));
    console.log(`\nKumo benchmarks (${samples} samples each, interleaved; ${availableParallelism()} cores)\n`);
    console.log(`${'measure'.padEnd(26)}${'kumo'.padStart(10)}${'bare'.padStart(10)}${'ratio'.padStart(8)}  target`);
    for (const row of rows) {
      const target = row.measure.includes('p99') ? '≤ 2×' : '';
      console.log(`${row.measure.padEnd(26)}${row.kumo.toFixed(2).padStart(10)}${row.bare.toFixed(2).padStart(10)}${`${row.ratio.toFixed(2)}×`.padStart(8)}  ${target}`);
    }
    const build = await benchFunctionBuild(Number(process.env.BENCH_BUILD_SAMPLES ?? 3));
    if (build) {
      const ratio = build.firstMs / build.rebuildMs;
      console.log(`\nfunction build (median of ${build.samples}, each from an empty layer cache)`);
      console.log(`${'measure'.padEnd(26)}${'first'.padStart(10)}${'rebuild'.padStart(10)}${'ratio'.padStart(8)}  target`);
      console.log(`${'build + push (ms)'.padEnd(26)}${build.firstMs.toFixed(0).padStart(10)}${build.rebuildMs.toFixed(0).padStart(10)}${`${ratio.toFixed(1)}×`.padStart(8)}  ≥ 10× (code-only change)`);
    } else {
      console.log('\nfunction build: skipped (no docker-registry installed)');
    }
    const result = {
      date: new Date().toISOString(),
      machine: { cores: availableParallelism(), cpu: cpus()[0]?.model, memoryBytes: totalmem(), node: process.version },
      samples,
      rows,
      functionBuild: build ? { ...build, ratio: build.firstMs / build.rebuildMs } : null,
    };
    const file = join('bench', 'results', `${result.date.slice(0, 10)}.json`);
    writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`\nwritten to ${file}`);
  } finally {
    await connection.close();
    await stack.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function postCluster(apiUrl: string, body: string): Promise<void> {
  const response = await fetch(`${apiUrl}/v1/clusters`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${benchToken}` }, body });
  if (response.status !== 202) throw new Error(`POST /v1/clusters: ${response.status} ${await response.text()}`);
  await response.arrayBuffer();
}

function pct(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
