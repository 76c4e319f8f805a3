import {
  ApplicationFailure,
  CancellationScope,
  condition,
  defineQuery,
  defineSignal,
  executeChild,
  isCancellation,
  ParentClosePolicy,
  proxyActivities,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { AddonActivities, AddonInspection, ManagedAddon } from '../activities/addon.js';
import { planWaves, sameValues, type RolloutClusterProgress, type RolloutReport, type Wave } from '../domain/addon.js';
import { clusterMutationWorkflowId, searchAttributes, type OperationKind, type Resume } from '../domain/operation.js';
import { progressQuery } from './cluster.js';
import { describeFailure, newOperationId, Steps } from './steps.js';
import { timeouts } from './timeouts.js';

const store = proxyActivities<AddonActivities>(timeouts.store);
const helm = proxyActivities<AddonActivities>(timeouts.helmCall);

/** What a single-cluster add-on operation does. */
export type AddonMode = 'apply' | 'restart' | 'rollback';

export const addonSteps: Record<AddonMode, readonly string[]> = {
  apply: ['upgrade', 'waitHealthy', 'rollback', 'record'],
  restart: ['restart', 'waitHealthy', 'record'],
  rollback: ['rollback', 'waitHealthy', 'record'],
};
export const removeAddonSteps = ['uninstall', 'record'] as const;

export interface ApplyAddonInput {
  operationId: string;
  clusterId: string;
  rancherId: string;
  addon: string;
  /** What should run afterwards. */
  version: string;
  values: Record<string, unknown>;
  mode: AddonMode;
  /** apply: roll back to the previous revision when the add-on is not healthy in time. */
  rollbackOnFailure: boolean;
  /** rollback: the revision to go back to, and the one being undone. */
  toRevision?: number;
  failedRevision?: number;
  healthTimeoutSeconds: number;
  pollSeconds: number;
  /** Set when a workflow (a rollout, a reconcile) starts this one: it records its own operation. */
  open?: { kind: OperationKind; startedAt: string };
  /** A retry of a failed operation: the steps it completed are not run again. */
  resume?: Resume;
}

export interface ApplyAddonResult {
  revision: number;
  previousRevision: number | null;
  summary: string;
}

/**
 * Installs, reconfigures or upgrades one add-on on one cluster (`apply`), restarts
 * its unready workloads (`restart`, a repair) or returns it to an earlier revision
 * (`rollback`); then waits until it is healthy. An `apply` that does not become
 * healthy in time is rolled back to the revision that ran before (a first install
 * is uninstalled), and the operation fails saying which revision is live.
 * Runs under the cluster's mutation workflow id, like every change to a cluster.
 */
export async function applyAddon(input: ApplyAddonInput): Promise<ApplyAddonResult> {
  const steps = new Steps(addonSteps[input.mode], input.resume);
  setHandler(progressQuery, () => steps.snapshot());
  if (input.open) {
    const info = workflowInfo();
    await store.openOperation({
      id: input.operationId,
      kind: input.open.kind,
      target: `cluster/${input.clusterId}`,
      clusterId: input.clusterId,
      steps: addonSteps[input.mode],
      workflowId: info.workflowId,
      runId: info.runId,
      startedAt: input.open.startedAt,
    });
  }
  const mark = (state: 'installing' | 'upgrading' | 'deployed' | 'failed', message: string | null, extra: { version?: string; values?: Record<string, unknown>; revision?: number | null } = {}) =>
    store.markAddon({ clusterId: input.clusterId, name: input.addon, state, message, operationId: input.operationId, versionIfNew: input.version, ...extra });

  let revision: number | null = null;
  let previousRevision: number | null = null;
  try {
    await mark('upgrading', null);
    if (input.mode === 'apply') {
      const made = await steps.run('upgrade', () =>
        helm.upgradeRelease({ operationId: input.operationId, rancherId: input.rancherId, addon: input.addon, version: input.version, values: input.values }),
      );
      revision = made.revision;
      previousRevision = made.previousRevision;
    } else if (input.mode === 'restart') {
      await steps.run('restart', () => helm.restartAddon({ rancherId: input.rancherId, addon: input.addon, at: new Date().toISOString() }));
    } else {
      const { toRevision, failedRevision } = input;
      if (toRevision === undefined || failedRevision === undefined) {
        throw ApplicationFailure.create({ type: 'InvalidSpec', message: 'a rollback needs toRevision and failedRevision', nonRetryable: true });
      }
      previousRevision = failedRevision;
      revision = (await steps.run('rollback', () => helm.rollbackRelease({ rancherId: input.rancherId, addon: input.addon, toRevision, failedRevision }))).revision;
    }

    const health = await steps.run('waitHealthy', () => waitHealthy(input, revision));
    if (health.healthy) {
      if (input.mode === 'apply') steps.skip('rollback', 'healthy');
      const live = revision ?? health.release?.revision ?? null;
      await steps.run('record', () => mark('deployed', null, { version: input.version, values: input.values, revision: live }));
      await store.closeOperation({ operationId: input.operationId, status: 'succeeded', steps: steps.snapshot().steps, failure: null, result: { revision: live, summary: health.summary } });
      return { revision: live ?? 0, previousRevision, summary: health.summary };
    }

    // Not healthy in time.
    let outcome = `not healthy after ${input.healthTimeoutSeconds}s: ${health.summary}`;
    if (input.mode === 'apply' && input.rollbackOnFailure && revision !== null) {
      const failed = revision;
      await steps.run('rollback', async () => {
        if (previousRevision === null) {
          await helm.uninstallRelease({ rancherId: input.rancherId, addon: input.addon });
          outcome += '; it was a first install, so it was uninstalled';
          await store.forgetAddon({ clusterId: input.clusterId, name: input.addon });
        } else {
          const back = previousRevision;
          const rolled = await helm.rollbackRelease({ rancherId: input.rancherId, addon: input.addon, toRevision: back, failedRevision: failed });
          outcome += `; rolled back to revision ${back} (now revision ${rolled.revision})`;
          await mark('deployed', `${input.version} failed: ${outcome}`, { revision: rolled.revision });
        }
      });
    } else {
      if (input.mode === 'apply') steps.skip('rollback', 'not asked');
      await mark(input.mode === 'apply' ? 'failed' : 'deployed', outcome);
    }
    throw ApplicationFailure.create({ type: 'VerificationFailed', message: outcome, nonRetryable: true });
  } catch (err) {
    const failure = describeFailure(steps.currentStep, err);
    await CancellationScope.nonCancellable(async () => {
      if (failure.type !== 'VerificationFailed') {
        // The step itself failed: what runs is unknown until the next inspection; say why.
        await mark(revision === null && previousRevision === null ? 'failed' : 'deployed', `${failure.step}: ${failure.message}`).catch(() => undefined);
      }
      await store.closeOperation({ operationId: input.operationId, status: isCancellation(err) ? 'cancelled' : 'failed', steps: steps.snapshot().steps, failure });
    });
    if (isCancellation(err)) throw err;
    throw ApplicationFailure.create({ type: failure.type, message: `${failure.step}: ${failure.message}`, nonRetryable: true, details: [failure] });
  }
}

/** Polls the add-on's health until it is healthy at `revision` or the timeout passes. */
async function waitHealthy(input: ApplyAddonInput, revision: number | null): Promise<AddonInspection> {
  const deadline = Date.now() + input.healthTimeoutSeconds * 1000;
  for (;;) {
    const state = await helm.inspectAddon({ rancherId: input.rancherId, addon: input.addon, expectedRevision: revision });
    if (state.healthy || Date.now() + input.pollSeconds * 1000 > deadline) return state;
    await sleep(input.pollSeconds * 1000);
  }
}

export interface RemoveAddonInput {
  operationId: string;
  clusterId: string;
  rancherId: string;
  addon: string;
  resume?: Resume;
}

/** Disables an add-on on a cluster: uninstalls its release and forgets it. */
export async function removeAddon(input: RemoveAddonInput): Promise<void> {
  const steps = new Steps(removeAddonSteps, input.resume);
  setHandler(progressQuery, () => steps.snapshot());
  try {
    await store.markAddon({ clusterId: input.clusterId, name: input.addon, state: 'removing', message: null, operationId: input.operationId });
    await steps.run('uninstall', () => helm.uninstallRelease({ rancherId: input.rancherId, addon: input.addon }));
    await steps.run('record', () => store.forgetAddon({ clusterId: input.clusterId, name: input.addon }));
    await store.closeOperation({ operationId: input.operationId, status: 'succeeded', steps: steps.snapshot().steps, failure: null });
  } catch (err) {
    const failure = describeFailure(steps.currentStep, err);
    await CancellationScope.nonCancellable(async () => {
      await store.markAddon({ clusterId: input.clusterId, name: input.addon, state: 'failed', message: `${failure.step}: ${failure.message}`, operationId: input.operationId });
      await store.closeOperation({ operationId: input.operationId, status: isCancellation(err) ? 'cancelled' : 'failed', steps: steps.snapshot().steps, failure });
    });
    if (isCancellation(err)) throw err;
    throw ApplicationFailure.create({ type: failure.type, message: `${failure.step}: ${failure.message}`, nonRetryable: true, details: [failure] });
  }
}

// ---------------------------------------------------------------------------
// Fleet rollout
// ---------------------------------------------------------------------------

export const rolloutProgressQuery = defineQuery<RolloutReport>('rolloutProgress');
export const pauseRolloutSignal = defineSignal('pause');
export const resumeRolloutSignal = defineSignal('resume');
export const abortRolloutSignal = defineSignal<[{ reason?: string }]>('abort');

export const rolloutSteps = ['plan', 'rollout', 'report'] as const;

export interface RolloutAddonInput {
  operationId: string;
  addon: string;
  version: string;
  /** New values for every target; null keeps each cluster's own. */
  values: Record<string, unknown> | null;
  selector: { clusters?: string[]; labels?: Record<string, string> };
  waves: Wave[];
  maxFailures: number;
  maxParallel: number;
  healthGate: { soakSeconds: number; timeoutSeconds: number };
  pollSeconds: number;
}

/**
 * Upgrades an add-on across the fleet in waves: a canary first, then growing
 * waves. Each cluster is upgraded by its own `applyAddon` child under the
 * cluster's mutation id (so it waits for nothing and interleaves with nothing),
 * which rolls that cluster back when it is not healthy in time. After a wave,
 * the health gate: every cluster of the wave still healthy after the soak.
 * More failures than `maxFailures` stop the rollout, roll the failing wave back
 * and leave later waves untouched. Pause, resume and abort are signals; the
 * report is a query while it runs and the operation's result afterwards.
 */
export async function rolloutAddon(input: RolloutAddonInput): Promise<RolloutReport> {
  const steps = new Steps(rolloutSteps);
  let paused = false;
  let aborted: string | null = null;
  const report: RolloutReport = {
    addon: input.addon,
    version: input.version,
    state: 'running',
    currentWave: 0,
    waves: [],
    clusters: [],
    failures: 0,
    maxFailures: input.maxFailures,
    message: null,
  };
  setHandler(progressQuery, () => steps.snapshot());
  setHandler(rolloutProgressQuery, () => ({ ...report, state: report.state === 'running' && paused ? 'paused' : report.state }));
  setHandler(pauseRolloutSignal, () => {
    paused = true;
  });
  setHandler(resumeRolloutSignal, () => {
    paused = false;
  });
  setHandler(abortRolloutSignal, ({ reason }) => {
    aborted = reason ?? 'aborted by request';
  });

  const byCluster = new Map<string, { progress: RolloutClusterProgress; target: ManagedAddon }>();
  const save = (detail: string) => store.reportProgress({ operationId: input.operationId, detail, result: report });

  try {
    const targets = await steps.run('plan', () => helm.listRolloutTargets({ addon: input.addon, selector: input.selector }));
    const waves = planWaves(targets, input.waves);
    for (const [index, wave] of waves.entries()) {
      report.waves.push({ index: index + 1, clusters: wave.map((t) => t.clusterId), status: 'pending' });
      for (const target of wave) {
        const same = target.version === input.version && (input.values === null || sameValues(target.values, input.values));
        const progress: RolloutClusterProgress = {
          clusterId: target.clusterId,
          wave: index + 1,
          status: same ? 'skipped' : 'pending',
          fromVersion: target.version,
          fromRevision: target.revision,
          toRevision: null,
          operationId: null,
          message: same ? `already at ${input.version}` : null,
        };
        report.clusters.push(progress);
        byCluster.set(target.clusterId, { progress, target });
      }
    }
    if (!targets.length) report.message = 'no cluster with this add-on deployed matches the selector';

    await steps.run('rollout', async () => {
      for (const [index, wave] of waves.entries()) {
        const waveReport = report.waves[index];
        if (!waveReport) break;
        await condition(() => !paused || aborted !== null);
        if (aborted !== null) break;
        report.currentWave = index + 1;
        waveReport.status = 'running';
        await save(`wave ${index + 1}/${waves.length}: upgrading ${wave.length} cluster(s)`);

        const entries = wave.map((t) => byCluster.get(t.clusterId)).filter((e): e is NonNullable<typeof e> => e !== undefined && e.progress.status === 'pending');
        await inParallel(entries, input.maxParallel, () => aborted === null && !paused && report.failures <= input.maxFailures, () => aborted !== null || report.failures > input.maxFailures, (entry) => upgradeOne(entry));

        if (report.failures <= input.maxFailures && aborted === null) {
          // The health gate: the wave must still be healthy after the soak.
          // An abort cuts the soak short.
          if (input.healthGate.soakSeconds > 0) await condition(() => aborted !== null, input.healthGate.soakSeconds * 1000);
          const upgraded = entries.filter((e) => e.progress.status === 'upgraded');
          const checks = await Promise.all(
            upgraded.map((e) => helm.inspectAddon({ rancherId: e.target.rancherId, addon: input.addon, expectedRevision: e.progress.toRevision }).catch((err: unknown) => ({ healthy: false, summary: errorText(err) }))),
          );
          for (const [i, check] of checks.entries()) {
            const entry = upgraded[i];
            if (!entry || check.healthy) continue;
            report.failures++;
            entry.progress.message = `failed the health gate after ${input.healthGate.soakSeconds}s: ${check.summary}`;
            await rollbackOne(entry, 'failed');
          }
        }
        if (report.failures > input.maxFailures) {
          report.message = `${report.failures} cluster(s) failed in wave ${index + 1} (at most ${input.maxFailures} allowed): wave rolled back, rollout stopped`;
          await inParallel(
            entries.filter((e) => e.progress.status === 'upgraded'),
            input.maxParallel,
            () => true,
            () => false,
            (entry) => rollbackOne(entry, 'rolled-back'),
          );
          waveReport.status = 'rolled-back';
          break;
        }
        if (aborted !== null) {
          waveReport.status = 'failed';
          break;
        }
        waveReport.status = 'passed';
      }
      for (const wave of report.waves) if (wave.status === 'pending') wave.status = 'not-started';
    });

    if (aborted !== null) {
      report.state = 'aborted';
      report.message = `aborted: ${aborted as string}`;
    } else report.state = report.failures > input.maxFailures ? 'failed' : 'succeeded';
    await steps.run('report', () => save(report.message ?? `${report.clusters.filter((c) => c.status === 'upgraded').length} cluster(s) at ${input.version}`));
    const failed = report.state === 'failed';
    await store.closeOperation({
      operationId: input.operationId,
      status: report.state === 'aborted' ? 'cancelled' : failed ? 'failed' : 'succeeded',
      steps: steps.snapshot().steps,
      failure: failed ? { step: 'rollout', type: 'VerificationFailed', message: report.message ?? 'rollout failed', attempts: 1 } : report.state === 'aborted' ? { step: 'rollout', type: 'Cancelled', message: report.message ?? 'aborted', attempts: 1 } : null,
      result: report,
    });
    if (failed) throw ApplicationFailure.create({ type: 'VerificationFailed', message: report.message ?? 'rollout failed', nonRetryable: true, details: [report] });
    return report;
  } catch (err) {
    if (err instanceof ApplicationFailure && err.type === 'VerificationFailed') throw err;
    const failure = describeFailure(steps.currentStep, err);
    report.state = 'failed';
    report.message = failure.message;
    await CancellationScope.nonCancellable(() =>
      store.closeOperation({ operationId: input.operationId, status: isCancellation(err) ? 'cancelled' : 'failed', steps: steps.snapshot().steps, failure, result: report }),
    );
    throw err;
  }

  async function upgradeOne(entry: { progress: RolloutClusterProgress; target: ManagedAddon }): Promise<void> {
    const { progress, target } = entry;
    progress.status = 'upgrading';
    progress.operationId = newOperationId();
    try {
      const result = await runOnCluster(target, {
        operationId: progress.operationId,
        version: input.version,
        values: input.values ?? target.values,
        mode: 'apply',
        rollbackOnFailure: true,
        kind: 'addon.apply',
      });
      progress.status = 'upgraded';
      progress.toRevision = result.revision;
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        progress.status = 'skipped';
        progress.message = 'another operation was running on the cluster; not upgraded';
        return;
      }
      progress.status = 'failed';
      progress.message = errorText(err);
      report.failures++;
    }
  }

  async function rollbackOne(entry: { progress: RolloutClusterProgress; target: ManagedAddon }, status: 'failed' | 'rolled-back'): Promise<void> {
    const { progress, target } = entry;
    if (progress.toRevision === null || progress.fromRevision === null) return;
    const operationId = newOperationId();
    try {
      await runOnCluster(target, {
        operationId,
        version: target.version,
        values: target.values,
        mode: 'rollback',
        rollbackOnFailure: false,
        toRevision: progress.fromRevision,
        failedRevision: progress.toRevision,
        kind: 'addon.rollback',
      });
      progress.status = status;
      if (status === 'rolled-back') progress.message = `rolled back to ${target.version} (revision ${progress.fromRevision}) with its wave`;
      else progress.message = `${progress.message ?? ''}; rolled back to ${target.version}`;
    } catch (err) {
      progress.status = 'failed';
      progress.message = `rollback failed: ${errorText(err)}`;
    }
  }

  function runOnCluster(
    target: ManagedAddon,
    run: { operationId: string; version: string; values: Record<string, unknown>; mode: AddonMode; rollbackOnFailure: boolean; toRevision?: number; failedRevision?: number; kind: OperationKind },
  ): Promise<ApplyAddonResult> {
    const { kind, ...rest } = run;
    return applyAddonOnCluster({
      ...rest,
      clusterId: target.clusterId,
      rancherId: target.rancherId,
      addon: input.addon,
      healthTimeoutSeconds: input.healthGate.timeoutSeconds,
      pollSeconds: input.pollSeconds,
      open: { kind, startedAt: new Date().toISOString() },
    });
  }
}

// ---------------------------------------------------------------------------
// Drift and restart
// ---------------------------------------------------------------------------

export interface ReconcileAddonsInput {
  /** Given when the API starts a run by hand (it records the operation first); a scheduled run makes its own. */
  operationId?: string;
  healthTimeoutSeconds: number;
  pollSeconds: number;
  maxParallel: number;
}

export interface ReconcileRepair {
  clusterId: string;
  addon: string;
  problem: string;
  summary: string;
  action: 'reapply' | 'restart' | 'none';
  outcome: 'repaired' | 'failed' | 'skipped';
  operationId: string | null;
  message: string | null;
}

export interface ReconcileReport {
  checked: number;
  healthy: number;
  repairs: ReconcileRepair[];
}

export const reconcileSteps = ['inspect', 'repair', 'report'] as const;

/**
 * Finds managed add-ons that are stopped, missing, not deployed or at a revision
 * Kumo did not make, and repairs them: re-applies the recorded version and values
 * (Helm restores what was deleted or scaled down), or restarts workloads that are
 * present but not ready. Each repair is its own operation under the cluster's
 * mutation id; a busy cluster is left for the next run. Run by a Temporal Schedule.
 */
export async function reconcileAddons(input: ReconcileAddonsInput): Promise<ReconcileReport> {
  const steps = new Steps(reconcileSteps);
  setHandler(progressQuery, () => steps.snapshot());
  const info = workflowInfo();
  const operationId = input.operationId ?? newOperationId();
  await store.openOperation({
    id: operationId,
    kind: 'addon.reconcile',
    target: 'fleet/addons',
    clusterId: null,
    steps: reconcileSteps,
    workflowId: info.workflowId,
    runId: info.runId,
    startedAt: new Date().toISOString(),
  });
  const report: ReconcileReport = { checked: 0, healthy: 0, repairs: [] };
  try {
    const managed = await helm.listManagedAddons();
    const found: Array<{ addon: ManagedAddon; state: AddonInspection | { healthy: false; problem: 'unreachable'; summary: string } }> = [];
    await steps.run('inspect', () =>
      inParallel(managed, input.maxParallel, () => true, () => false, async (addon) => {
        const state = await helm
          .inspectAddon({ rancherId: addon.rancherId, addon: addon.name, expectedRevision: addon.revision })
          .catch((err: unknown) => ({ healthy: false as const, problem: 'unreachable' as const, summary: errorText(err) }));
        found.push({ addon, state });
      }),
    );
    report.checked = managed.length;
    report.healthy = found.filter((f) => f.state.healthy).length;
    const broken = found.filter((f) => !f.state.healthy).sort((a, b) => (a.addon.clusterId + a.addon.name < b.addon.clusterId + b.addon.name ? -1 : 1));
    await steps.run('repair', () =>
      inParallel(broken, input.maxParallel, () => true, () => false, async ({ addon, state }) => {
        const problem = state.problem ?? 'unhealthy';
        const repair: ReconcileRepair = { clusterId: addon.clusterId, addon: addon.name, problem, summary: state.summary, action: 'none', outcome: 'skipped', operationId: null, message: null };
        report.repairs.push(repair);
        if (problem === 'unreachable') {
          repair.message = 'the cluster could not be inspected; nothing done';
          return;
        }
        repair.action = problem === 'unhealthy' ? 'restart' : 'reapply';
        repair.operationId = newOperationId();
        try {
          await applyAddonOnCluster({
            operationId: repair.operationId,
            clusterId: addon.clusterId,
            rancherId: addon.rancherId,
            addon: addon.name,
            version: addon.version,
            values: addon.values,
            mode: repair.action === 'restart' ? 'restart' : 'apply',
            rollbackOnFailure: false,
            healthTimeoutSeconds: input.healthTimeoutSeconds,
            pollSeconds: input.pollSeconds,
            open: { kind: 'addon.repair', startedAt: new Date().toISOString() },
          });
          repair.outcome = 'repaired';
        } catch (err) {
          if (err instanceof WorkflowExecutionAlreadyStartedError) {
            repair.operationId = null;
            repair.message = 'another operation was running on the cluster; left for the next run';
            return;
          }
          repair.outcome = 'failed';
          repair.message = errorText(err);
        }
      }),
    );
    const repaired = report.repairs.filter((r) => r.outcome === 'repaired').length;
    await steps.run('report', () => store.reportProgress({ operationId, detail: `${report.checked} checked, ${report.healthy} healthy, ${repaired} repaired`, result: report }));
    await store.closeOperation({ operationId, status: 'succeeded', steps: steps.snapshot().steps, failure: null, result: report });
    return report;
  } catch (err) {
    const failure = describeFailure(steps.currentStep, err);
    await CancellationScope.nonCancellable(() => store.closeOperation({ operationId, status: isCancellation(err) ? 'cancelled' : 'failed', steps: steps.snapshot().steps, failure, result: report }));
    throw err;
  }
}

// ---------------------------------------------------------------------------

/**
 * Runs applyAddon as a child workflow under the cluster's mutation id, so it
 * interleaves with no other change to that cluster (a busy cluster refuses it
 * with WorkflowExecutionAlreadyStartedError). The child records its own operation.
 */
function applyAddonOnCluster(args: ApplyAddonInput & { open: NonNullable<ApplyAddonInput['open']> }): Promise<ApplyAddonResult> {
  return executeChild(applyAddon, {
    workflowId: clusterMutationWorkflowId(args.clusterId),
    workflowIdReusePolicy: 'ALLOW_DUPLICATE',
    parentClosePolicy: ParentClosePolicy.ABANDON,
    searchAttributes: {
      [searchAttributes.operationId]: [args.operationId],
      [searchAttributes.kind]: [args.open.kind],
      [searchAttributes.target]: [`cluster/${args.clusterId}`],
    },
    args: [args],
  });
}

/**
 * Runs `work` over `items`, at most `limit` at once, starting the next only while
 * `mayStart()` holds (waiting while it does not, unless `stop()` says to give up).
 */
async function inParallel<T>(items: readonly T[], limit: number, mayStart: () => boolean, stop: () => boolean, work: (item: T) => Promise<void>): Promise<void> {
  let running = 0;
  const all: Promise<void>[] = [];
  for (const item of items) {
    await condition(() => stop() || (running < limit && mayStart()));
    if (stop()) break;
    running++;
    all.push(
      work(item).finally(() => {
        running--;
      }),
    );
  }
  await Promise.all(all);
}

/** The root cause of a failed child or activity, in one line. */
function errorText(err: unknown): string {
  let cause: unknown = err;
  while (cause instanceof Error && cause.cause) cause = cause.cause;
  return cause instanceof Error ? cause.message : String(cause);
}
