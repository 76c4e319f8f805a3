import { z } from '@hono/zod-openapi';

/** One published version of an add-on: the chart version and the application it ships. */
export interface AddonVersion {
  version: string;
  appVersion: string;
}

/** An add-on of the catalog: a chart the platform team maintains, in the versions published. */
export interface CatalogAddon {
  name: string;
  chart: string;
  title: string;
  description: string;
  /** The namespace and Helm release name it is installed under on every cluster. */
  namespace: string;
  release: string;
  /** Ascending. */
  versions: AddonVersion[];
  /** The chart's values.schema.json (JSON Schema draft-07). */
  valuesSchema: Record<string, unknown>;
}

export interface Catalog {
  addons: CatalogAddon[];
}

export const addonStates = ['installing', 'upgrading', 'deployed', 'failed', 'removing'] as const;
export type AddonState = (typeof addonStates)[number];

/**
 * An add-on on one cluster as Kumo manages it: `version` and `values` are what
 * runs (after a failed upgrade was rolled back, still the old ones), `revision`
 * the Helm revision Kumo last made or verified.
 */
export interface AddonRecord {
  clusterId: string;
  name: string;
  version: string;
  values: Record<string, unknown>;
  state: AddonState;
  revision: number | null;
  message: string | null;
  lastOperationId: string | null;
  updatedAt: string;
}

export const SemverSchema = z
  .string()
  .regex(/^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/, 'a chart version such as 1.2.0')
  .openapi({ example: '1.1.0' });

const ValuesSchema = z.record(z.string(), z.unknown()).openapi({ example: { output: { type: 'stdout' } } });

export const AddonRequestSchema = z
  .object({
    version: SemverSchema.optional().openapi({ description: 'The chart version; the latest published when absent.' }),
    values: ValuesSchema.default({}).openapi({ description: "Chart values, checked against the chart's values.schema.json before anything runs." }),
    healthTimeoutSeconds: z.number().int().min(10).max(3600).default(300).openapi({ description: 'How long the add-on may take to become healthy before it is rolled back.' }),
  })
  .strict()
  .openapi('AddonRequest');
export type AddonRequest = z.infer<typeof AddonRequestSchema>;

/** A wave's size: a count of clusters or a percentage of the targets, cumulative. */
export const WaveSchema = z.union([z.number().int().min(1).max(10_000), z.string().regex(/^(100|[1-9]\d?)%$/, 'a percentage from 1% to 100%')]);
export type Wave = z.infer<typeof WaveSchema>;

export const RolloutRequestSchema = z
  .object({
    version: SemverSchema,
    values: ValuesSchema.optional().openapi({ description: 'New values for every target; when absent each cluster keeps its own.' }),
    selector: z
      .object({
        clusters: z.array(z.string().min(1).max(63)).min(1).max(5000).optional(),
        labels: z.record(z.string(), z.string()).optional(),
      })
      .strict()
      .default({})
      .openapi({ description: 'Which clusters with the add-on enabled take part: by id and/or by labels. All of them when empty.' }),
    waves: z
      .array(WaveSchema)
      .min(1)
      .max(20)
      .default([1, '25%', '100%'])
      .openapi({ description: 'Cumulative sizes, e.g. [1, "10%", "100%"]: a canary, then up to 10% of the targets, then all. The last wave always extends to every target.' }),
    maxFailures: z.number().int().min(0).max(1000).default(0).openapi({ description: 'Cluster failures tolerated before the rollout stops and rolls the failing wave back.' }),
    maxParallel: z.number().int().min(1).max(50).default(5).openapi({ description: 'Clusters upgraded at once within a wave.' }),
    healthGate: z
      .object({
        soakSeconds: z.number().int().min(0).max(86_400).default(30),
        timeoutSeconds: z.number().int().min(10).max(3600).default(300),
      })
      .strict()
      .default({ soakSeconds: 30, timeoutSeconds: 300 })
      .openapi({ description: 'Each cluster must be healthy within timeoutSeconds of its upgrade; after a wave, every cluster of it must still be healthy after soakSeconds.' }),
  })
  .strict()
  .openapi('RolloutRequest');
export type RolloutRequest = z.infer<typeof RolloutRequestSchema>;

const SEMVER_PARTS = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$/;

/** Compares two semver versions (build metadata ignored): negative, zero or positive. */
export function compareSemver(a: string, b: string): number {
  const pa = SEMVER_PARTS.exec(a);
  const pb = SEMVER_PARTS.exec(b);
  if (!pa || !pb) throw new Error(`not a semver version: ${pa ? b : a}`);
  for (let i = 1; i <= 3; i++) {
    const diff = Number(pa[i]) - Number(pb[i]);
    if (diff !== 0) return diff;
  }
  const preA = pa[4];
  const preB = pb[4];
  if (preA === undefined || preB === undefined) return preA === preB ? 0 : preA === undefined ? 1 : -1;
  const idsA = preA.split('.');
  const idsB = preB.split('.');
  for (let i = 0; i < Math.max(idsA.length, idsB.length); i++) {
    const x = idsA[i];
    const y = idsB[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const nx = /^\d+$/.test(x);
    const ny = /^\d+$/.test(y);
    if (nx && ny && Number(x) !== Number(y)) return Number(x) - Number(y);
    if (nx !== ny) return nx ? -1 : 1;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/**
 * Splits the ordered targets into waves. Sizes are cumulative: `[1, "10%", "100%"]`
 * over 20 clusters gives 1, then 1 more (10% = 2), then the other 18. A percentage
 * rounds up, so a wave of a small fleet is never empty by rounding; waves that
 * would add nothing are dropped, and the last wave always takes every target left.
 * @example planWaves(['a', 'b', 'c', 'd'], [1, '50%', '100%']) // [['a'], ['b'], ['c', 'd']]
 */
export function planWaves<T>(targets: readonly T[], waves: readonly Wave[]): T[][] {
  const out: T[][] = [];
  let done = 0;
  for (const [index, wave] of waves.entries()) {
    const last = index === waves.length - 1;
    const wanted = last ? targets.length : Math.min(targets.length, typeof wave === 'number' ? wave : Math.ceil((Number(wave.slice(0, -1)) / 100) * targets.length));
    if (wanted <= done) continue;
    out.push(targets.slice(done, wanted));
    done = wanted;
  }
  return out;
}

/** Whether a cluster's labels carry every label of the selector. */
export function matchesSelector(cluster: { id: string; labels: Record<string, string> }, selector: { clusters?: string[] | undefined; labels?: Record<string, string> | undefined }): boolean {
  if (selector.clusters && !selector.clusters.includes(cluster.id)) return false;
  return Object.entries(selector.labels ?? {}).every(([key, value]) => cluster.labels[key] === value);
}

/** What a per-cluster status in a rollout can be. */
export const rolloutClusterStatuses = ['pending', 'upgrading', 'upgraded', 'failed', 'rolled-back', 'skipped'] as const;
export type RolloutClusterStatus = (typeof rolloutClusterStatuses)[number];

export interface RolloutClusterProgress {
  clusterId: string;
  wave: number;
  status: RolloutClusterStatus;
  fromVersion: string;
  /** The Helm revision live before, and the one the rollout made. */
  fromRevision: number | null;
  toRevision: number | null;
  operationId: string | null;
  message: string | null;
}

export type RolloutState = 'running' | 'paused' | 'succeeded' | 'failed' | 'aborted';

/** A fleet rollout as its workflow reports it, live (query) and at the end (result). */
export interface RolloutReport {
  addon: string;
  version: string;
  state: RolloutState;
  /** 1-based wave in progress (or where it stopped); 0 before the first. */
  currentWave: number;
  waves: Array<{ index: number; clusters: string[]; status: 'pending' | 'running' | 'passed' | 'failed' | 'rolled-back' | 'not-started' }>;
  clusters: RolloutClusterProgress[];
  failures: number;
  maxFailures: number;
  message: string | null;
}

/** Release name and namespace an add-on uses on every cluster. */
export function releaseOf(addon: Pick<CatalogAddon, 'release' | 'namespace'>): { release: string; namespace: string } {
  return { release: addon.release, namespace: addon.namespace };
}

/** The Temporal workflow id of an add-on's fleet rollout: one at a time per add-on. */
export function rolloutWorkflowId(addon: string): string {
  return `addon/${addon}/rollout`;
}

/** The Temporal Schedule that reconciles every managed add-on. */
export const addonReconcileScheduleId = 'addons/reconcile';

/** Whether two sets of values are the same, whatever the order of their keys. */
export function sameValues(a: unknown, b: unknown): boolean {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, sortKeys(v)]));
  return value;
}
