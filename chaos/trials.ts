import { randomBytes } from 'node:crypto';
import type { HelmRevision } from '../providers/helm.js';
import { Chaos, type Json, type OperationView, type SimState } from './context.js';

/**
 * One kind of trial per workflow type the API can start: how to make its
 * targets ready, how to start it, and the invariants to check once it ended.
 * The same kinds serve the kill -9 trials, the Temporal restart and the fault
 * run (chaos/scenarios.ts) and the bounded test (test/chaos.test.ts).
 *
 * Every check returns what it found wrong, split into duplicates (a second
 * cluster, node pool, node, Helm revision or image made for one operation)
 * and other problems (a count short of what was asked, a record that disagrees
 * with Rancher, Helm or the registry). Exact invariants ("the pool has exactly
 * `quantity` live nodes") are checked when the operation succeeded; the
 * no-duplicate ones hold whatever the outcome.
 */

export interface Verdict {
  duplicates: string[];
  problems: string[];
}

export interface TrialKind<T> {
  /** Why it cannot run on this stack, if it cannot (say, no registry for functions). */
  unavailable?(chaos: Chaos): string | null;
  /** The row's name, e.g. `scaleNodePool (up)`. */
  name: string;
  /** The Temporal workflow type it drives. */
  workflow: string;
  /** How many of its operations run at once (on different targets) around one kill. */
  concurrency: number;
  /** The kill lands uniformly in [0, maxDelayMs] after the operation was accepted: about the operation's length here, so on average in its middle. */
  maxDelayMs: number;
  /** How long the operation may take after the disruption before it counts as stuck. */
  endTimeoutMs: number;
  /** Makes the targets of these slots ready (worker up, no faults), without disrupting anything. */
  prepare(chaos: Chaos, slots: number[]): Promise<T[]>;
  /** Starts the operation over the API; its id. */
  start(chaos: Chaos, target: T): Promise<string>;
  check(chaos: Chaos, target: T, operation: OperationView): Promise<Verdict>;
}

export type AnyKind = TrialKind<unknown>;
const kind = <T>(definition: TrialKind<T>): AnyKind => definition as unknown as AnyKind;

const minute = 60_000;
/**
 * Helm and Knative activities heartbeat (30 s timeout), so one in flight when the
 * worker dies is retried within about half a minute; the rest of the bound is the
 * add-on's own health wait and Helm's retries.
 */
const helmEndTimeoutMs = 6 * minute;

const verdict = (): Verdict => ({ duplicates: [], problems: [] });
const merge = (into: Verdict, from: Verdict): Verdict => {
  into.duplicates.push(...from.duplicates);
  into.problems.push(...from.problems);
  return into;
};

// ---------------------------------------------------------------------------
// The fleet: slot i is the cluster `chaos-<i>`, shared by every kind's trial i.
// ---------------------------------------------------------------------------

export const fleetVersion = 'v1.30.6-rancher1-1';
export const upgradeVersion = 'v1.31.2-rancher1-1';

export function fleetSpec(name: string) {
  return {
    name,
    kubernetesVersion: fleetVersion,
    labels: { fleet: 'chaos' },
    nodePools: [
      { name: 'control', roles: ['etcd', 'controlplane'], quantity: 1 },
      { name: 'workers', roles: ['worker'], quantity: 1 },
    ],
  };
}

/** The slots' clusters, created (without any disruption) where missing, replaced under a new name where not usable. */
export async function ensureFleet(chaos: Chaos, slots: number[]): Promise<string[]> {
  return Promise.all(
    slots.map(async (slot) => {
      let name = chaos.fleet.get(slot) ?? `chaos-${slot}`;
      let view = await chaos.cluster(name);
      if (view && view.state !== 'active') {
        chaos.log(`cluster ${name} is ${view.state}: slot ${slot} gets a new cluster`);
        name = `chaos-${slot}-${randomBytes(2).toString('hex')}`;
        view = null;
      }
      if (!view) {
        const id = await chaos.startOperation('POST', '/v1/clusters', fleetSpec(name));
        await chaos.mustSucceed(id, `setting up cluster ${name}`);
      }
      chaos.fleet.set(slot, name);
      return name;
    }),
  );
}

/**
 * Rancher agrees with Kumo about one cluster: one Rancher cluster of that name,
 * one pool per name, never more live nodes than a pool's quantity; and once the
 * operation succeeded, exactly `quantity` live nodes, all active, the quantity
 * the one Kumo recorded.
 */
export async function clusterInvariants(chaos: Chaos, name: string, settled: boolean, state?: SimState): Promise<Verdict> {
  const out = verdict();
  const sim = state ?? (await chaos.simState());
  const named = sim.clusters.filter((cluster) => cluster.name === name);
  if (named.length > 1) out.duplicates.push(`${named.length} Rancher clusters named ${name} (${named.map((c) => `${c.id} ${c.state}`).join(', ')})`);
  if (named.length === 0) {
    out.problems.push(`no Rancher cluster named ${name}`);
    return out;
  }
  const kumo = await chaos.cluster(name);
  if (!kumo) {
    out.problems.push(`Kumo has no cluster ${name}`);
    return out;
  }
  const rancherId: string = kumo.rancher?.id;
  const own = named.find((cluster) => cluster.id === rancherId);
  if (!own) {
    out.problems.push(`Kumo names Rancher cluster ${rancherId} for ${name}, Rancher has ${named.map((c) => c.id).join(', ')}`);
    return out;
  }
  const pools = sim.nodePools.filter((pool) => pool.clusterId === rancherId);
  for (const spec of kumo.nodePools as Array<{ name: string; quantity: number }>) {
    const same = pools.filter((pool) => pool.name === spec.name);
    if (same.length > 1) out.duplicates.push(`${name}: ${same.length} node pools named ${spec.name}`);
    const pool = same[0];
    if (!pool) {
      out.problems.push(`${name}: Rancher has no node pool ${spec.name}`);
      continue;
    }
    const live = sim.nodes.filter((node) => node.nodePoolId === pool.id && node.state !== 'removing');
    if (live.length > pool.quantity) out.duplicates.push(`${name}/${spec.name}: ${live.length} live nodes for quantity ${pool.quantity} (${live.map((n) => n.hostname).join(', ')})`);
    if (settled) {
      if (live.length < pool.quantity) out.problems.push(`${name}/${spec.name}: ${live.length} live nodes for quantity ${pool.quantity}`);
      if (pool.quantity !== spec.quantity) out.problems.push(`${name}/${spec.name}: Rancher's quantity is ${pool.quantity}, Kumo recorded ${spec.quantity}`);
      const notActive = live.filter((node) => node.state !== 'active');
      if (notActive.length) out.problems.push(`${name}/${spec.name}: nodes not active after success: ${notActive.map((n) => `${n.hostname} ${n.state}`).join(', ')}`);
    }
  }
  const strays = pools.filter((pool) => !(kumo.nodePools as Array<{ name: string }>).some((spec) => spec.name === pool.name));
  if (strays.length) out.problems.push(`${name}: Rancher pools Kumo does not know: ${strays.map((p) => p.name).join(', ')}`);
  return out;
}

const poolQuantity = async (chaos: Chaos, name: string, pool: string): Promise<number> =>
  ((await chaos.cluster(name))?.nodePools as Array<{ name: string; quantity: number }>).find((candidate) => candidate.name === pool)?.quantity ?? 0;

// ---------------------------------------------------------------------------
// Cluster operations
// ---------------------------------------------------------------------------

export const createCluster = kind<{ name: string }>({
  name: 'createCluster',
  workflow: 'createCluster',
  concurrency: 4,
  maxDelayMs: 3000,
  endTimeoutMs: 4 * minute,
  async prepare(chaos, slots) {
    return slots.map((slot) => {
      const name = `chaos-${slot}`;
      chaos.fleet.set(slot, name);
      return { name };
    });
  },
  start: (chaos, { name }) => chaos.startOperation('POST', '/v1/clusters', fleetSpec(name)),
  async check(chaos, { name }, operation) {
    const out = await clusterInvariants(chaos, name, operation.status === 'succeeded');
    if (operation.status === 'succeeded' && (await chaos.cluster(name))?.state !== 'active') out.problems.push(`${name} is not active after its create succeeded`);
    return out;
  },
});

export const updateCluster = kind<{ name: string; version: string | null; labels: Record<string, string> }>({
  name: 'updateCluster',
  workflow: 'updateCluster',
  concurrency: 4,
  maxDelayMs: 2500,
  endTimeoutMs: 4 * minute,
  async prepare(chaos, slots) {
    const names = await ensureFleet(chaos, slots);
    return Promise.all(
      names.map(async (name) => {
        const view = await chaos.cluster(name);
        // An upgrade once per cluster (there is no downgrade); a change of labels afterwards.
        const version = view?.kubernetesVersion === fleetVersion ? upgradeVersion : null;
        return { name, version, labels: { fleet: 'chaos', change: randomBytes(3).toString('hex') } };
      }),
    );
  },
  start: (chaos, { name, version, labels }) => chaos.startOperation('PATCH', `/v1/clusters/${name}`, version ? { kubernetesVersion: version, labels } : { labels }),
  async check(chaos, { name, version, labels }, operation) {
    const state = await chaos.simState();
    const out = await clusterInvariants(chaos, name, operation.status === 'succeeded', state);
    if (operation.status !== 'succeeded') return out;
    const view = await chaos.cluster(name);
    if (JSON.stringify(view?.labels) !== JSON.stringify(labels)) out.problems.push(`${name}: labels ${JSON.stringify(view?.labels)}, asked ${JSON.stringify(labels)}`);
    if (version) {
      if (view?.kubernetesVersion !== version) out.problems.push(`${name}: Kumo records ${view?.kubernetesVersion}, asked ${version}`);
      const want = version.replace(/-rancher.*$/, '');
      const stale = state.nodes.filter((node) => node.clusterId === view?.rancher?.id && node.state !== 'removing' && node.info?.kubernetes?.kubeletVersion !== want);
      if (stale.length) out.problems.push(`${name}: nodes not at ${want}: ${stale.map((n) => `${n.hostname} ${n.info?.kubernetes?.kubeletVersion}`).join(', ')}`);
    }
    return out;
  },
});

export const takeSnapshot = kind<{ name: string }>({
  name: 'takeSnapshot',
  workflow: 'takeSnapshot',
  concurrency: 4,
  maxDelayMs: 1500,
  endTimeoutMs: 4 * minute,
  async prepare(chaos, slots) {
    return (await ensureFleet(chaos, slots)).map((name) => ({ name }));
  },
  start: (chaos, { name }) => chaos.startOperation('POST', `/v1/clusters/${name}/snapshots`, {}),
  async check(chaos, { name }, operation) {
    const state = await chaos.simState();
    const out = await clusterInvariants(chaos, name, operation.status === 'succeeded', state);
    const mine = state.etcdBackups.filter((backup) => backup.name === `kumo-${operation.id}`);
    if (mine.length > 1) out.duplicates.push(`${name}: ${mine.length} etcd snapshots named kumo-${operation.id}`);
    if (operation.status === 'succeeded') {
      if (mine.length === 0) out.problems.push(`${name}: no etcd snapshot kumo-${operation.id}`);
      else if (mine.some((backup) => backup.state !== 'active')) out.problems.push(`${name}: snapshot kumo-${operation.id} is ${mine.map((b) => b.state).join(', ')}`);
    }
    return out;
  },
});

export const restoreFromSnapshot = kind<{ name: string; snapshot: string }>({
  name: 'restoreFromSnapshot',
  workflow: 'restoreFromSnapshot',
  concurrency: 4,
  maxDelayMs: 2500,
  endTimeoutMs: 4 * minute,
  async prepare(chaos, slots) {
    const names = await ensureFleet(chaos, slots);
    return Promise.all(
      names.map(async (name) => {
        let items = (await chaos.call('GET', `/v1/clusters/${name}/snapshots`)).items as Array<{ id: string; state: string }>;
        if (!items.some((snapshot) => snapshot.state === 'active')) {
          await chaos.mustSucceed(await chaos.startOperation('POST', `/v1/clusters/${name}/snapshots`, {}), `a snapshot of ${name} to restore`);
          items = (await chaos.call('GET', `/v1/clusters/${name}/snapshots`)).items;
        }
        const snapshot = items.find((candidate) => candidate.state === 'active');
        if (!snapshot) throw new Error(`${name} has no active snapshot`);
        return { name, snapshot: snapshot.id };
      }),
    );
  },
  start: (chaos, { name, snapshot }) => chaos.startOperation('POST', `/v1/clusters/${name}/restore`, { snapshot }),
  async check(chaos, { name }, operation) {
    const out = await clusterInvariants(chaos, name, operation.status === 'succeeded');
    if (operation.status !== 'succeeded') return out;
    const verify = operation.steps.find((step) => step.name === 'verifyRestored');
    if (verify?.status !== 'succeeded') out.problems.push(`${name}: verifyRestored is ${verify?.status} (${verify?.detail ?? ''})`);
    if ((await chaos.cluster(name))?.state !== 'active') out.problems.push(`${name} is not active after its restore succeeded`);
    return out;
  },
});

type ScaleTarget = { name: string; from: number; to: number };

async function checkScale(chaos: Chaos, { name, to }: ScaleTarget, operation: OperationView): Promise<Verdict> {
  const out = await clusterInvariants(chaos, name, operation.status === 'succeeded');
  if (operation.status === 'succeeded') {
    const quantity = await poolQuantity(chaos, name, 'workers');
    if (quantity !== to) out.problems.push(`${name}/workers: Kumo records quantity ${quantity}, asked ${to}`);
  }
  return out;
}

export const scaleUp = kind<ScaleTarget>({
  name: 'scaleNodePool (up)',
  workflow: 'scaleNodePool',
  concurrency: 4,
  maxDelayMs: 2000,
  endTimeoutMs: 4 * minute,
  async prepare(chaos, slots) {
    const names = await ensureFleet(chaos, slots);
    return Promise.all(names.map(async (name) => {
      const from = await poolQuantity(chaos, name, 'workers');
      return { name, from, to: from + 1 };
    }));
  },
  start: (chaos, { name, to }) => chaos.startOperation('POST', `/v1/clusters/${name}/nodepools/workers/scale`, { quantity: to }),
  check: checkScale,
});

export const scaleDown = kind<ScaleTarget>({
  name: 'scaleNodePool (down)',
  workflow: 'scaleNodePool',
  concurrency: 4,
  maxDelayMs: 1500,
  endTimeoutMs: 4 * minute,
  async prepare(chaos, slots) {
    const names = await ensureFleet(chaos, slots);
    return Promise.all(names.map(async (name) => {
      let from = await poolQuantity(chaos, name, 'workers');
      if (from < 2) {
        await chaos.mustSucceed(await chaos.startOperation('POST', `/v1/clusters/${name}/nodepools/workers/scale`, { quantity: 2 }), `scaling ${name} up to scale it down`);
        from = 2;
      }
      return { name, from, to: from - 1 };
    }));
  },
  start: (chaos, { name, to }) => chaos.startOperation('POST', `/v1/clusters/${name}/nodepools/workers/scale`, { quantity: to }),
  check: checkScale,
});

/** Up from one worker, else down by one: always a valid scale, whatever earlier operations left (the fault run). */
export const scaleAny = kind<ScaleTarget>({
  name: 'scaleNodePool',
  workflow: 'scaleNodePool',
  concurrency: 4,
  maxDelayMs: 2500,
  endTimeoutMs: 4 * minute,
  async prepare(chaos, slots) {
    const names = await ensureFleet(chaos, slots);
    return Promise.all(names.map(async (name) => {
      const from = await poolQuantity(chaos, name, 'workers');
      return { name, from, to: from >= 2 ? from - 1 : from + 1 };
    }));
  },
  start: (chaos, { name, to }) => chaos.startOperation('POST', `/v1/clusters/${name}/nodepools/workers/scale`, { quantity: to }),
  check: checkScale,
});

export const replaceNode = kind<{ name: string; victim: string; before: string[] }>({
  name: 'replaceNode',
  workflow: 'replaceNode',
  concurrency: 4,
  maxDelayMs: 2500,
  endTimeoutMs: 4 * minute,
  async prepare(chaos, slots) {
    const names = await ensureFleet(chaos, slots);
    const state = await chaos.simState();
    return Promise.all(names.map(async (name) => {
      const view = await chaos.cluster(name);
      const pool = state.nodePools.find((candidate) => candidate.clusterId === view?.rancher?.id && candidate.name === 'workers');
      const live = state.nodes.filter((node) => node.nodePoolId === pool?.id && node.state !== 'removing').map((node) => node.hostname).sort();
      const victim = live[0];
      if (!victim) throw new Error(`${name} has no worker node to replace`);
      return { name, victim, before: live };
    }));
  },
  start: (chaos, { name, victim }) => chaos.startOperation('POST', `/v1/clusters/${name}/nodes/${victim}/replace`, {}),
  async check(chaos, { name, victim, before }, operation) {
    const state = await chaos.simState();
    const out = await clusterInvariants(chaos, name, operation.status === 'succeeded', state);
    const view = await chaos.cluster(name);
    const pool = state.nodePools.find((candidate) => candidate.clusterId === view?.rancher?.id && candidate.name === 'workers');
    const live = state.nodes.filter((node) => node.nodePoolId === pool?.id && node.state !== 'removing').map((node) => node.hostname);
    const fresh = live.filter((hostname) => !before.includes(hostname));
    if (fresh.length > 1) out.duplicates.push(`${name}: ${fresh.length} replacements for ${victim} (${fresh.join(', ')})`);
    if (operation.status === 'succeeded') {
      if (live.includes(victim)) out.problems.push(`${name}: ${victim} is still there`);
      if (fresh.length !== 1) out.problems.push(`${name}: ${fresh.length} replacements for ${victim}`);
      const gone = before.filter((hostname) => hostname !== victim && !live.includes(hostname));
      if (gone.length) out.problems.push(`${name}: nodes other than ${victim} went: ${gone.join(', ')}`);
    }
    return out;
  },
});

export const deleteCluster = kind<{ name: string; rancherId: string }>({
  name: 'deleteCluster',
  workflow: 'deleteCluster',
  concurrency: 4,
  maxDelayMs: 1200,
  endTimeoutMs: 4 * minute,
  async prepare(chaos, slots) {
    const names = await ensureFleet(chaos, slots);
    return Promise.all(names.map(async (name) => ({ name, rancherId: await chaos.rancherIdOf(name) })));
  },
  start: (chaos, { name }) => chaos.startOperation('DELETE', `/v1/clusters/${name}`),
  async check(chaos, { name, rancherId }, operation) {
    const out = verdict();
    const state = await chaos.simState();
    const named = state.clusters.filter((cluster) => cluster.name === name);
    if (named.length > 1) out.duplicates.push(`${named.length} Rancher clusters named ${name}`);
    if (operation.status !== 'succeeded') return out;
    if (named.length) out.problems.push(`Rancher still has ${name} (${named.map((c) => c.state).join(', ')}) after its delete succeeded`);
    if (await chaos.cluster(name)) out.problems.push(`Kumo still lists ${name} after its delete succeeded`);
    const pools = state.nodePools.filter((pool) => pool.clusterId === rancherId).length;
    const nodes = state.nodes.filter((node) => node.clusterId === rancherId).length;
    if (pools || nodes) out.problems.push(`${name}: ${pools} node pools and ${nodes} nodes left in Rancher`);
    return out;
  },
});

// ---------------------------------------------------------------------------
// Add-ons
// ---------------------------------------------------------------------------

const catalog: Record<string, { namespace: string; release: string; versions: string[] }> = {
  logging: { namespace: 'kumo-logging', release: 'kumo-logging', versions: ['1.0.0', '1.1.0', '2.0.0'] },
  monitoring: { namespace: 'kumo-monitoring', release: 'kumo-monitoring', versions: ['1.0.0', '1.1.0', '1.2.0'] },
  ingress: { namespace: 'kumo-ingress', release: 'kumo-ingress', versions: ['1.0.0', '1.1.0'] },
};
const addonOf = (addon: string) => {
  const found = catalog[addon];
  if (!found) throw new Error(`no add-on ${addon}`);
  return found;
};

/** The add-on's Helm history on a cluster (empty when the release does not exist). */
export async function helmHistory(chaos: Chaos, cluster: string, addon: string): Promise<HelmRevision[]> {
  const { release, namespace } = addonOf(addon);
  const helm = await chaos.helm(cluster);
  if (!(await helm.status(release, namespace))) return [];
  return helm.history(release, namespace);
}

const lastRevision = (history: HelmRevision[]) => history.reduce((max, entry) => Math.max(max, entry.revision), 0);

/**
 * Helm's side of one add-on on one cluster: at most one release of that name, no
 * two revisions made for the same Kumo operation (`kumo <operationId>`), and the
 * revisions made since `before` exactly those `expected` (by operation).
 */
export async function helmInvariants(chaos: Chaos, cluster: string, addon: string, options: { before: number; expected: string[] | null }): Promise<Verdict> {
  const out = verdict();
  const { release } = addonOf(addon);
  const helm = await chaos.helm(cluster);
  const releases = (await helm.list()).filter((candidate) => candidate.name === release);
  if (releases.length > 1) out.duplicates.push(`${cluster}: ${releases.length} Helm releases named ${release}`);
  const history = releases.length ? await helmHistory(chaos, cluster, addon) : [];
  const byKey = new Map<string, number[]>();
  for (const entry of history) if (entry.description.startsWith('kumo ')) byKey.set(entry.description, [...(byKey.get(entry.description) ?? []), entry.revision]);
  for (const [key, revisions] of byKey) if (revisions.length > 1) out.duplicates.push(`${cluster}/${release}: revisions ${revisions.join(', ')} all made by "${key}"`);
  if (options.expected) {
    const made = history.filter((entry) => entry.revision > options.before);
    const want = options.expected.map((id) => `kumo ${id}`);
    const got = made.map((entry) => entry.description);
    if (made.length > want.length && !out.duplicates.length) out.duplicates.push(`${cluster}/${release}: ${made.length} revisions since ${options.before} for ${want.length} operation(s): ${made.map((e) => `${e.revision} "${e.description}" ${e.status}`).join('; ')}`);
    else if (JSON.stringify(got) !== JSON.stringify(want)) out.problems.push(`${cluster}/${release}: revisions since ${options.before} are ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  }
  return out;
}

/** Installs the add-on (without disruption) where it is not deployed; returns the version it runs. */
async function ensureAddon(chaos: Chaos, cluster: string, addon: string): Promise<string> {
  const current = await chaos.stack.api(`/v1/clusters/${cluster}/addons/${addon}`);
  if (current.status === 200 && current.body.state === 'deployed') return current.body.version as string;
  const version = addonOf(addon).versions[0] ?? '1.0.0';
  const id = await chaos.startOperation('PUT', `/v1/clusters/${cluster}/addons/${addon}`, { version, values: {} });
  await chaos.mustSucceed(id, `installing ${addon} on ${cluster}`);
  return version;
}

let flushCounter = 0;

export const applyAddon = kind<{ name: string; version: string; values: Record<string, unknown>; before: number }>({
  name: 'applyAddon',
  workflow: 'applyAddon',
  concurrency: 10,
  maxDelayMs: 4000,
  endTimeoutMs: helmEndTimeoutMs,
  async prepare(chaos, slots) {
    const names = await ensureFleet(chaos, slots);
    return Promise.all(names.map(async (name) => {
      const current = await chaos.stack.api(`/v1/clusters/${name}/addons/logging`);
      const installed = current.status === 200 ? current.body : null;
      // New values every time (the same ones again would start nothing).
      let flushSeconds = (flushCounter++ % 59) + 1;
      if (installed?.values?.flushSeconds === flushSeconds) flushSeconds = (flushSeconds % 59) + 1;
      const before = lastRevision(installed ? await helmHistory(chaos, name, 'logging') : []);
      return { name, version: (installed?.version as string | undefined) ?? '1.0.0', values: { flushSeconds }, before };
    }));
  },
  start: (chaos, { name, version, values }) => chaos.startOperation('PUT', `/v1/clusters/${name}/addons/logging`, { version, values }),
  async check(chaos, { name, before }, operation) {
    const ok = operation.status === 'succeeded';
    const out = await helmInvariants(chaos, name, 'logging', { before, expected: ok ? [operation.id] : null });
    if (!ok) return out;
    const helm = await chaos.helm(name);
    const status = await helm.status('kumo-logging', 'kumo-logging');
    const record = (await chaos.stack.api(`/v1/clusters/${name}/addons/logging`)).body;
    if (status?.status !== 'deployed') out.problems.push(`${name}: release kumo-logging is ${status?.status ?? 'missing'} after success`);
    if (record?.state !== 'deployed' || record?.revision !== status?.revision) out.problems.push(`${name}: Kumo records ${record?.state} revision ${record?.revision}, Helm has revision ${status?.revision}`);
    return out;
  },
});

export const removeAddon = kind<{ name: string }>({
  name: 'removeAddon',
  workflow: 'removeAddon',
  concurrency: 10,
  maxDelayMs: 700,
  endTimeoutMs: helmEndTimeoutMs,
  async prepare(chaos, slots) {
    const names = await ensureFleet(chaos, slots);
    await Promise.all(names.map((name) => ensureAddon(chaos, name, 'logging')));
    return names.map((name) => ({ name }));
  },
  start: (chaos, { name }) => chaos.startOperation('DELETE', `/v1/clusters/${name}/addons/logging`),
  async check(chaos, { name }, operation) {
    const out = await helmInvariants(chaos, name, 'logging', { before: 0, expected: null });
    if (operation.status !== 'succeeded') return out;
    const releases = (await (await chaos.helm(name)).list()).filter((release) => release.name === 'kumo-logging');
    if (releases.length) out.problems.push(`${name}: release kumo-logging is still there (${releases.map((r) => r.status).join(', ')})`);
    if ((await chaos.stack.api(`/v1/clusters/${name}/addons/logging`)).status !== 404) out.problems.push(`${name}: Kumo still records logging`);
    return out;
  },
});

type RolloutTarget = { addon: string; version: string; clusters: string[]; before: Record<string, number> };

const rolloutAddons = ['logging', 'monitoring', 'ingress'];

export const rolloutAddon = kind<RolloutTarget>({
  name: 'rolloutAddon',
  workflow: 'rolloutAddon',
  // One rollout per add-on at a time: the three catalog add-ons side by side, each on its own two clusters.
  concurrency: 3,
  maxDelayMs: 11000,
  endTimeoutMs: helmEndTimeoutMs + 2 * minute,
  async prepare(chaos, slots) {
    return Promise.all(slots.map(async (_slot, position) => {
      const addon = rolloutAddons[position % rolloutAddons.length] ?? 'logging';
      const clusters = await ensureFleet(chaos, [2 * position + 1, 2 * position + 2]);
      const versions = await Promise.all(clusters.map((cluster) => ensureAddon(chaos, cluster, addon)));
      // A version none of them runs, so every cluster is upgraded (alternating up and down the catalog).
      const version = addonOf(addon).versions.find((candidate) => !versions.includes(candidate)) ?? addonOf(addon).versions[0] ?? '1.0.0';
      const before: Record<string, number> = {};
      for (const cluster of clusters) before[cluster] = lastRevision(await helmHistory(chaos, cluster, addon));
      return { addon, version, clusters, before };
    }));
  },
  start: (chaos, { addon, version, clusters }) =>
    chaos.startOperation('POST', `/v1/addons/${addon}/rollouts`, {
      version,
      selector: { clusters },
      waves: [1, '100%'],
      maxFailures: 0,
      maxParallel: 2,
      healthGate: { soakSeconds: 0, timeoutSeconds: 60 },
    }),
  async check(chaos, { addon, version, clusters, before }, operation) {
    const out = verdict();
    const report = operation.result as Json;
    for (const cluster of clusters) {
      const progress = (report?.clusters as Json[] | undefined)?.find((candidate) => candidate.clusterId === cluster);
      const ok = operation.status === 'succeeded';
      const expected = ok ? (progress?.status === 'upgraded' && progress.operationId ? [progress.operationId as string] : []) : null;
      merge(out, await helmInvariants(chaos, cluster, addon, { before: before[cluster] ?? 0, expected }));
      if (!ok) continue;
      if (progress?.status !== 'upgraded') out.problems.push(`${cluster}: ${addon} ${progress?.status ?? 'not in the report'} (${progress?.message ?? ''})`);
      const status = await (await chaos.helm(cluster)).status(addonOf(addon).release, addonOf(addon).namespace);
      if (status?.chart !== `${addon}-${version}` || status.status !== 'deployed') out.problems.push(`${cluster}: ${addon} runs ${status?.chart} ${status?.status}, the rollout asked ${version}`);
    }
    return out;
  },
});

export const reconcileAddons = kind<{ name: string; before: number }>({
  name: 'reconcileAddons',
  workflow: 'reconcileAddons',
  // A reconcile looks at the whole fleet: two at once would race for the same repairs.
  concurrency: 1,
  maxDelayMs: 8000,
  endTimeoutMs: helmEndTimeoutMs + 2 * minute,
  async prepare(chaos, slots) {
    const names = await ensureFleet(chaos, slots);
    return Promise.all(names.map(async (name) => {
      await ensureAddon(chaos, name, 'logging');
      const before = lastRevision(await helmHistory(chaos, name, 'logging'));
      // Stopped as an operator might: the reconcile must find it and re-apply it.
      await chaos.stack.sim(`/admin/clusters/${await chaos.rancherIdOf(name)}/workloads/stop`, { method: 'POST', body: { namespace: 'kumo-logging', name: 'kumo-logging' } });
      return { name, before };
    }));
  },
  start: (chaos) => chaos.startOperation('POST', '/v1/addons/reconcile', {}),
  async check(chaos, { name, before }, operation) {
    const ok = operation.status === 'succeeded';
    const repairs = ((operation.result as Json)?.repairs ?? []) as Array<{ clusterId: string; addon: string; outcome: string; operationId: string | null; message: string | null }>;
    const mine = repairs.filter((repair) => repair.clusterId === name && repair.addon === 'logging');
    const repairId = mine.find((repair) => repair.outcome === 'repaired')?.operationId ?? null;
    const out = await helmInvariants(chaos, name, 'logging', { before, expected: ok && repairId ? [repairId] : null });
    if (!ok) return out;
    if (mine.length !== 1 || !repairId) out.problems.push(`${name}: the reconcile reported ${JSON.stringify(mine)} for the stopped logging add-on`);
    const record = (await chaos.stack.api(`/v1/clusters/${name}/addons/logging`)).body;
    if (record?.state !== 'deployed') out.problems.push(`${name}: logging is ${record?.state} after the repair`);
    return out;
  },
});

// ---------------------------------------------------------------------------
// Functions
// ---------------------------------------------------------------------------

function noRegistry(chaos: Chaos): string | null {
  return chaos.stack.registryUrl ? null : 'n/a: no OCI registry (docker-registry is not installed), the Function Service is off';
}

/** The cluster functions run on (KUMO_FUNCTIONS_CLUSTER), created once. */
export async function ensureFunctionsCluster(chaos: Chaos): Promise<string> {
  const name = chaos.stack.env.KUMO_FUNCTIONS_CLUSTER ?? 'functions';
  const view = await chaos.cluster(name);
  if (view?.state === 'active') return view.rancher.id as string;
  if (view) throw new Error(`the functions cluster is ${view.state}`);
  const id = await chaos.startOperation('POST', '/v1/clusters', {
    name,
    kubernetesVersion: fleetVersion,
    nodePools: [{ name: 'all', roles: ['etcd', 'controlplane', 'worker'], quantity: 1 }],
  });
  await chaos.mustSucceed(id, 'creating the functions cluster');
  return chaos.rancherIdOf(name);
}

/** A function's source, different every time, so every deploy pushes a manifest of its own. */
export function functionSource(name: string) {
  const nonce = randomBytes(6).toString('hex');
  return { name, source: { files: { 'handler.py': `def handle(event, context):\n    return {"function": "${name}", "build": "${nonce}"}\n` } }, concurrency: 1, timeoutSeconds: 10 };
}

async function knativeRevisions(chaos: Chaos, fn: string): Promise<Array<{ name: string; service: string; image: string; phase: string }>> {
  const clusterId = await chaos.rancherIdOf(chaos.stack.env.KUMO_FUNCTIONS_CLUSTER ?? 'functions');
  const { revisions } = (await chaos.stack.sim(`/admin/clusters/${clusterId}/knative`)) as { revisions: Array<{ name: string; service: string; image: string; phase: string }> };
  return revisions.filter((revision) => revision.service === fn);
}

async function functionExists(chaos: Chaos, fn: string): Promise<boolean> {
  return (await chaos.stack.api(`/v1/functions/${fn}`)).status === 200;
}

export const deployFunction = kind<{ fn: string; exists: boolean; manifestsBefore: number; revisionsBefore: number }>({
  name: 'deployFunction',
  workflow: 'deployFunction',
  unavailable: noRegistry,
  concurrency: 6,
  maxDelayMs: 3500,
  endTimeoutMs: helmEndTimeoutMs,
  async prepare(chaos, slots) {
    await ensureFunctionsCluster(chaos);
    return Promise.all(slots.map(async (slot) => {
      const fn = `chaos-fn-${slot}`;
      return { fn, exists: await functionExists(chaos, fn), manifestsBefore: chaos.manifestCount(fn), revisionsBefore: (await knativeRevisions(chaos, fn)).length };
    }));
  },
  start: (chaos, { fn, exists }) => (exists ? chaos.startOperation('PUT', `/v1/functions/${fn}`, functionSource(fn)) : chaos.startOperation('POST', '/v1/functions', functionSource(fn))),
  async check(chaos, { fn, manifestsBefore, revisionsBefore }, operation) {
    const out = verdict();
    const manifests = chaos.manifestCount(fn);
    const revisions = await knativeRevisions(chaos, fn);
    if (manifests > manifestsBefore + 1) out.duplicates.push(`${fn}: ${manifests - manifestsBefore} manifests pushed for one deploy`);
    if (revisions.length > revisionsBefore + 1) out.duplicates.push(`${fn}: ${revisions.length - revisionsBefore} Knative revisions made by one deploy`);
    if (operation.status !== 'succeeded') return out;
    if (manifests !== manifestsBefore + 1) out.problems.push(`${fn}: ${manifests - manifestsBefore} new manifests in the registry, expected 1`);
    const tags = await chaos.registryTags(fn);
    if (!tags.includes(operation.id)) out.problems.push(`${fn}: the registry has no tag ${operation.id}`);
    const digest = await chaos.registryDigest(fn, operation.id);
    const view = (await chaos.stack.api(`/v1/functions/${fn}`)).body;
    if (!digest || !String(view?.image).endsWith(`/functions/${fn}@${digest}`)) out.problems.push(`${fn}: runs ${view?.image}, the deploy pushed ${digest}`);
    if (view?.state !== 'ready') out.problems.push(`${fn} is ${view?.state} after its deploy succeeded`);
    if (revisions.filter((revision) => revision.image === view?.image).length !== 1) {
      out.problems.push(`${fn}: ${revisions.filter((revision) => revision.image === view?.image).length} Knative revisions run ${view?.image}`);
    }
    return out;
  },
});

export const deleteFunction = kind<{ fn: string }>({
  name: 'deleteFunction',
  workflow: 'deleteFunction',
  unavailable: noRegistry,
  concurrency: 10,
  maxDelayMs: 500,
  endTimeoutMs: helmEndTimeoutMs,
  async prepare(chaos, slots) {
    await ensureFunctionsCluster(chaos);
    return Promise.all(slots.map(async (slot) => {
      const fn = `chaos-fn-${slot}`;
      if (!(await functionExists(chaos, fn))) await chaos.mustSucceed(await chaos.startOperation('POST', '/v1/functions', functionSource(fn)), `deploying ${fn} to delete it`);
      return { fn };
    }));
  },
  start: (chaos, { fn }) => chaos.startOperation('DELETE', `/v1/functions/${fn}`),
  async check(chaos, { fn }, operation) {
    const out = verdict();
    if (operation.status !== 'succeeded') return out;
    if (await functionExists(chaos, fn)) out.problems.push(`Kumo still lists ${fn} after its delete succeeded`);
    const left = await knativeRevisions(chaos, fn);
    if (left.length) out.problems.push(`${fn}: Knative revisions left: ${left.map((r) => `${r.name} ${r.phase}`).join(', ')}`);
    return out;
  },
});

// ---------------------------------------------------------------------------
// Pipelines: a run is an operation; its steps invoke functions through events' delivery
// ---------------------------------------------------------------------------

const pipelineFunctions: Record<string, string> = {
  'chaos-add': 'import time\ndef handle(event, context):\n    time.sleep(0.3)\n    return {"n": event["n"] + 1}\n',
  'chaos-double': 'import time\ndef handle(event, context):\n    time.sleep(0.3)\n    return {"n": event["n"] * 2}\n',
};

/** The functions and the pipeline `chaos-math` (add one, double, add one), made once. */
async function ensurePipeline(chaos: Chaos): Promise<void> {
  await ensureFunctionsCluster(chaos);
  for (const [fn, code] of Object.entries(pipelineFunctions)) {
    if (await functionExists(chaos, fn)) continue;
    await chaos.mustSucceed(await chaos.startOperation('POST', '/v1/functions', { name: fn, source: { files: { 'handler.py': code } }, timeoutSeconds: 10 }), `deploying ${fn}`);
  }
  const pipeline = await chaos.stack.api('/v1/pipelines/chaos-math', {
    method: 'PUT',
    body: { name: 'chaos-math', steps: ['chaos-add', 'chaos-double', 'chaos-add'], delivery: { attempts: 5, backoffSeconds: 0.5, maxBackoffSeconds: 2 } },
  });
  if (pipeline.status !== 200 && pipeline.status !== 201) throw new Error(`the pipeline could not be made: ${pipeline.status} ${JSON.stringify(pipeline.body)}`);
}

export const runPipeline = kind<{ n: number }>({
  name: 'runPipeline',
  workflow: 'runPipeline',
  unavailable: noRegistry,
  concurrency: 6,
  maxDelayMs: 1500,
  endTimeoutMs: 3 * minute,
  async prepare(chaos, slots) {
    await ensurePipeline(chaos);
    return slots.map((slot) => ({ n: slot }));
  },
  start: (chaos, { n }) => chaos.startOperation('POST', '/v1/pipelines/chaos-math/runs', { n }),
  async check(_chaos, { n }, operation) {
    const out = verdict();
    if (operation.status !== 'succeeded') return out;
    const output = (operation.result as { output?: { n?: number } } | undefined)?.output?.n;
    if (output !== (n + 1) * 2 + 1) out.problems.push(`run ${operation.id} for n=${n}: output ${JSON.stringify(output)}, expected ${(n + 1) * 2 + 1}`);
    const notDone = operation.steps.filter((step) => step.status !== 'succeeded');
    if (notDone.length) out.problems.push(`run ${operation.id}: steps ${notDone.map((step) => `${step.name} ${step.status}`).join(', ')} after it succeeded`);
    return out;
  },
});

/**
 * The kill -9 trials, in the order they run: each leaves the fleet as the next
 * expects it (created, upgraded, snapshotted, restored, scaled, add-ons on, …,
 * deleted last).
 */
export const killKinds: AnyKind[] = [
  createCluster,
  updateCluster,
  takeSnapshot,
  restoreFromSnapshot,
  scaleUp,
  scaleDown,
  replaceNode,
  applyAddon,
  rolloutAddon,
  reconcileAddons,
  removeAddon,
  deployFunction,
  runPipeline,
  deleteFunction,
  deleteCluster,
];
