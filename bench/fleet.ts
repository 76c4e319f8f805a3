import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRancherClient, isNodeReady, type RancherCluster } from '../providers/rancher.js';
import { terminate } from '../scripts/stack.js';
import { projectRoot } from '../scripts/tools.js';
import { highWaterMark } from './memory.js';

/**
 * Fleet scale: how long Kumo's Rancher adapter takes to read a whole fleet's
 * inventory — every cluster with its Ready condition, every node pool, every
 * node with its conditions — from the simulator seeded (POST /admin/seed) with
 * already-provisioned clusters. The simulator runs as its own process without a
 * state file, as `npm run sim` with SIM_STATE_FILE=memory does, so the reads
 * are HTTP round trips to another process as they would be to Rancher.
 */
export interface FleetSize {
  clusters: number;
  nodes: number;
}

export interface FleetResult extends FleetSize {
  /** Median wall time of a whole read: list clusters, then node pools and nodes of each. */
  readMs: number;
  /** Every counted read's wall time (`reads` of them, one above 10,000 nodes). */
  readsMs: number[];
  msPer1000Nodes: number;
  /** Time the simulator took to seed what this size adds to the previous one (not part of the read). */
  seedMs: number;
  requests: number;
  readyNodes: number;
  activeClusters: number;
  pools: number;
  /** Peak resident memory of the simulator process so far, holding this fleet (VmHWM). */
  simPeakRssBytes: number | null;
}

const token = 'kumo-bench-sim-token';

/** Sizes: the seed fleet, a middle one, and Rancher's documented scale. */
export const defaultFleetSizes: FleetSize[] = [
  { clusters: 130, nodes: 2000 },
  { clusters: 500, nodes: 7500 },
  { clusters: 2000, nodes: 30000 },
];

/**
 * One simulator, grown from size to size (sizes must grow): each step seeds the
 * clusters and nodes it adds, then reads the whole fleet. The first read, of the
 * smallest fleet, warms the simulator up and is not counted. `concurrency`
 * requests run at a time, as several activities of a worker would; the fleet is
 * read `reads` times (the median counts), once above 10,000 nodes to keep the
 * bench short. With `profileDir` the simulator runs under `node --cpu-prof`, and
 * its profile lands there when it stops.
 */
export async function benchFleet(sizes: FleetSize[], options: { concurrency: number; reads: number; profileDir?: string | undefined }): Promise<FleetResult[]> {
  sizes.forEach((size, i) => {
    const before = sizes[i - 1] ?? { clusters: 0, nodes: 0 };
    if (size.clusters < 1 || size.clusters <= before.clusters || size.nodes - before.nodes < size.clusters - before.clusters) {
      throw new Error('fleet sizes must grow, each adding clusters and at least one node per added cluster');
    }
  });
  const results: FleetResult[] = [];
  const sim = await startSimProcess(options.profileDir);
  try {
    let seeded: FleetSize = { clusters: 0, nodes: 0 };
    for (const [i, size] of sizes.entries()) {
      const t = performance.now();
      await seedFleet(sim.url, { clusters: size.clusters - seeded.clusters, nodes: size.nodes - seeded.nodes });
      const seedMs = performance.now() - t;
      seeded = size;
      if (i === 0) await readInventory(sim.url, size.clusters, options.concurrency);
      const reads = size.nodes > 10_000 ? 1 : options.reads;
      results.push({ ...(await measure(sim.url, size, options.concurrency, reads)), seedMs, simPeakRssBytes: highWaterMark(sim.pid) });
    }
  } finally {
    await sim.stop();
  }
  return results;
}

/** Adds `size.clusters` clusters with `size.nodes` nodes in all: nodesPerCluster is whole, so the first clusters get one node more. */
export async function seedFleet(url: string, size: FleetSize): Promise<void> {
  const per = Math.floor(size.nodes / size.clusters);
  const extra = size.nodes - per * size.clusters;
  if (extra > 0) await seed(url, { clusters: extra, nodesPerCluster: per + 1, pools: 2 });
  if (size.clusters - extra > 0) await seed(url, { clusters: size.clusters - extra, nodesPerCluster: per, pools: 2 });
}

async function measure(url: string, size: FleetSize, concurrency: number, times: number): Promise<Omit<FleetResult, 'simPeakRssBytes' | 'seedMs'>> {
  const reads: Inventory[] = [];
  for (let i = 0; i < times; i++) reads.push(await readInventory(url, size.clusters, concurrency));
  const readsMs = reads.map((read) => read.ms);
  const readMs = median(readsMs);
  const last = reads[reads.length - 1] as Inventory;
  if (last.clusters !== size.clusters || last.nodes !== size.nodes) {
    throw new Error(`fleet read found ${last.clusters} clusters / ${last.nodes} nodes, seeded ${size.clusters} / ${size.nodes}`);
  }
  return {
    ...size,
    readMs,
    readsMs,
    msPer1000Nodes: readMs / (size.nodes / 1000),
    requests: last.requests,
    readyNodes: last.readyNodes,
    activeClusters: last.activeClusters,
    pools: last.pools,
  };
}

interface Inventory {
  ms: number;
  clusters: number;
  nodes: number;
  requests: number;
  readyNodes: number;
  activeClusters: number;
  pools: number;
}

/** One read of the whole inventory through Kumo's adapter, as a fleet-wide sync would do it. */
async function readInventory(url: string, expectedClusters: number, concurrency: number): Promise<Inventory> {
  const rancher = createRancherClient({ url, token, timeoutMs: 120_000, nodeTemplateId: 'bench' });
  let requests = 0;
  let readyNodes = 0;
  let nodes = 0;
  let pools = 0;
  let activeClusters = 0;
  const t = performance.now();
  // The adapter has no call for the whole cluster collection (Kumo looks clusters up by name),
  // so the list is one plain GET with the adapter's headers.
  const clusters = await listClusters(url, expectedClusters);
  requests += 1;
  for (const cluster of clusters) {
    const ready = (cluster as RancherCluster & { conditions?: Array<{ type: string; status: string }> }).conditions?.find((c) => c.type === 'Ready');
    if (cluster.state === 'active' && ready?.status === 'True') activeClusters += 1;
  }
  let next = 0;
  const reader = async () => {
    while (next < clusters.length) {
      const cluster = clusters[next++] as RancherCluster;
      const [clusterPools, clusterNodes] = await Promise.all([rancher.listNodePools(cluster.id), rancher.listNodes(cluster.id)]);
      requests += 2;
      pools += clusterPools.length;
      nodes += clusterNodes.length;
      for (const node of clusterNodes) if (isNodeReady(node)) readyNodes += 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, reader));
  return { ms: performance.now() - t, clusters: clusters.length, nodes, requests, readyNodes, activeClusters, pools };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

async function seed(url: string, body: { clusters: number; nodesPerCluster: number; pools: number }): Promise<void> {
  const response = await fetch(`${url}/admin/seed`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (response.status !== 201) throw new Error(`POST /admin/seed: ${response.status} ${await response.text()}`);
  await response.arrayBuffer();
}

async function listClusters(url: string, expected: number): Promise<RancherCluster[]> {
  // Norman pages at 1000 by default; ask for the whole collection in one page.
  const response = await fetch(`${url}/v3/clusters?limit=${Math.max(1000, expected + 1)}`, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' } });
  if (!response.ok) throw new Error(`GET /v3/clusters: ${response.status}`);
  const body = (await response.json()) as { data: RancherCluster[]; pagination?: { partial?: boolean } };
  if (body.pagination?.partial) throw new Error('GET /v3/clusters answered a partial page');
  return body.data;
}

interface SimProcess {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

async function startSimProcess(profileDir?: string): Promise<SimProcess> {
  const args = ['--import', 'tsx', ...(profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : []), 'sim/main.ts'];
  const child = spawn(process.execPath, args, {
    cwd: projectRoot,
    env: { ...process.env, SIM_PORT: '0', SIM_STATE_FILE: 'memory', SIM_TOKEN: token },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`the simulator did not start within 30 s:\n${seen}`)), 30_000);
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      const match = /rancher simulator listening on (\S+)/.exec(seen);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the simulator exited (${code}) before it listened:\n${seen}`));
    });
  });
  return { url, pid: child.pid ?? 0, stop: () => terminate(child) };
}


/** Runs on its own: `node --import tsx bench/fleet.ts [clusters/nodes ...]`, with BENCH_FLEET_PROFILE=1 for CPU profiles of the simulator. */
if (import.meta.url === `file://${process.argv[1]}`) {
  const sizes = process.argv.slice(2).map((arg) => {
    const [clusters, nodes] = arg.split('/').map(Number);
    return { clusters: clusters ?? 0, nodes: nodes ?? 0 };
  });
  const profileDir = process.env.BENCH_FLEET_PROFILE ? mkdtempSync(join(tmpdir(), 'kumo-bench-prof-')) : undefined;
  benchFleet(sizes.length ? sizes : defaultFleetSizes, { concurrency: Number(process.env.BENCH_FLEET_CONCURRENCY ?? 8), reads: Number(process.env.BENCH_FLEET_READS ?? 3), profileDir }).then(
    (results) => {
      console.table(
        results.map(({ simPeakRssBytes, ...r }) => ({
          ...r,
          readMs: Math.round(r.readMs),
          msPer1000Nodes: Math.round(r.msPer1000Nodes),
          seedMs: Math.round(r.seedMs),
          simPeakRssMiB: simPeakRssBytes === null ? null : Math.round(simPeakRssBytes / 2 ** 20),
        })),
      );
      if (profileDir) console.log(`profiles: ${readdirSync(profileDir).map((f) => join(profileDir, f)).join(' ')}`);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
