import { ApplicationFailure, CancellationScope, isCancellation, proxyActivities, setHandler, sleep } from '@temporalio/workflow';
import type { FunctionActivities } from '../activities/function.js';
import type { KnativeStatus } from '../providers/knative.js';
import type { Resume } from '../domain/operation.js';
import { progressQuery } from './cluster.js';
import type { AddonActivities } from '../activities/addon.js';
import { describeFailure, Steps } from './steps.js';
import { timeouts } from './timeouts.js';

const store = proxyActivities<FunctionActivities & Pick<AddonActivities, 'closeOperation'>>(timeouts.store);
const build = proxyActivities<FunctionActivities>(timeouts.build);
const cluster = proxyActivities<FunctionActivities>(timeouts.helmCall);

export const deployFunctionSteps = ['validate', 'buildDependencies', 'buildImage', 'deploy', 'waitReady', 'rollback', 'record'] as const;
export const deleteFunctionSteps = ['deleteService', 'record'] as const;

export interface DeployFunctionInput {
  operationId: string;
  name: string;
  /** The functions cluster, and the namespace functions run in. */
  rancherId: string;
  namespace: string;
  /** The revision serving before this deploy, to go back to when the new one is not Ready. */
  previousRevision: string | null;
  readyTimeoutSeconds: number;
  pollSeconds: number;
  /** A retry of a failed deploy: the steps it completed are not run again. */
  resume?: Resume;
}

export interface DeployFunctionResult {
  image: string;
  revision: string;
  url: string | null;
  dependenciesCached: boolean;
}

/**
 * Builds a function into an OCI image and deploys it as a Knative Service
 * revision: validate the source, build the dependency layer (reused while
 * requirements.txt is unchanged), build and push the image (referred to by
 * digest from then on), apply the revision, wait until it is Ready. A revision
 * that does not become Ready leaves traffic on the one before (the Service's
 * template goes back to it) and the operation fails with Knative's reason.
 * The source and settings (env may hold secrets) are read from the store by the
 * activities; they are never in this workflow's input or history.
 */
export async function deployFunction(input: DeployFunctionInput): Promise<DeployFunctionResult> {
  const steps = new Steps(deployFunctionSteps, input.resume);
  setHandler(progressQuery, () => steps.snapshot());
  try {
    await steps.run('validate', () => build.validateFunction({ name: input.name }));
    const deps = await steps.run('buildDependencies', () => build.buildDependencies({ name: input.name }));
    const { image } = await steps.run('buildImage', () => build.buildImage({ name: input.name, operationId: input.operationId }));
    const { revision } = await steps.run('deploy', () =>
      cluster.deployRevision({ name: input.name, operationId: input.operationId, rancherId: input.rancherId, namespace: input.namespace, image }),
    );
    const status = await steps.run('waitReady', () => waitReady(input, revision));
    if (status?.revision?.ready === 'True') {
      steps.skip('rollback', 'the new revision is Ready');
      const url = status.url;
      await steps.run('record', () => store.recordFunction({ name: input.name, state: 'ready', image, revision, url, message: null }));
      await store.closeOperation({ operationId: input.operationId, status: 'succeeded', steps: steps.snapshot().steps, failure: null, result: { image, revision, url, dependenciesCached: deps.cached } });
      return { image, revision, url, dependenciesCached: deps.cached };
    }

    const why = status?.revision?.message ?? status?.revision?.reason ?? `not Ready within ${input.readyTimeoutSeconds}s`;
    let outcome = `revision ${revision} did not become Ready: ${why}`;
    if (input.previousRevision) {
      const previous = input.previousRevision;
      await steps.run('rollback', () => cluster.restoreRevision({ name: input.name, rancherId: input.rancherId, namespace: input.namespace, revision: previous }));
      outcome += `; traffic stays on ${previous}`;
      await store.recordFunction({ name: input.name, state: 'ready', message: outcome });
    } else {
      steps.skip('rollback', 'no earlier revision');
      await store.recordFunction({ name: input.name, state: 'failed', message: outcome });
    }
    throw ApplicationFailure.create({ type: 'VerificationFailed', message: outcome, nonRetryable: true });
  } catch (err) {
    const failure = describeFailure(steps.currentStep, err);
    await CancellationScope.nonCancellable(async () => {
      if (failure.type !== 'VerificationFailed') {
        await store.recordFunction({ name: input.name, state: input.previousRevision ? 'ready' : 'failed', message: `${failure.step}: ${failure.message}` });
      }
      await store.closeOperation({ operationId: input.operationId, status: isCancellation(err) ? 'cancelled' : 'failed', steps: steps.snapshot().steps, failure });
    });
    if (isCancellation(err)) throw err;
    throw ApplicationFailure.create({ type: failure.type, message: `${failure.step}: ${failure.message}`, nonRetryable: true, details: [failure] });
  }
}

/** Polls the revision until Knative says Ready (True or False) or the timeout passes. */
async function waitReady(input: DeployFunctionInput, revision: string): Promise<KnativeStatus | null> {
  const deadline = Date.now() + input.readyTimeoutSeconds * 1000;
  for (;;) {
    const status = await cluster.revisionStatus({ name: input.name, rancherId: input.rancherId, namespace: input.namespace, revision });
    const ready = status?.revision?.ready;
    if (ready === 'False' || (ready === 'True' && status?.url) || Date.now() + input.pollSeconds * 1000 > deadline) return status;
    await sleep(input.pollSeconds * 1000);
  }
}

export interface DeleteFunctionInput {
  operationId: string;
  name: string;
  rancherId: string;
  namespace: string;
  resume?: Resume;
}

/** Deletes a function's Knative Service, then its record. Its images stay in the registry. */
export async function deleteFunction(input: DeleteFunctionInput): Promise<void> {
  const steps = new Steps(deleteFunctionSteps, input.resume);
  setHandler(progressQuery, () => steps.snapshot());
  try {
    await steps.run('deleteService', () => cluster.deleteService({ name: input.name, rancherId: input.rancherId, namespace: input.namespace }));
    await steps.run('record', () => store.forgetFunction({ name: input.name }));
    await store.closeOperation({ operationId: input.operationId, status: 'succeeded', steps: steps.snapshot().steps, failure: null });
  } catch (err) {
    const failure = describeFailure(steps.currentStep, err);
    await CancellationScope.nonCancellable(async () => {
      await store.recordFunction({ name: input.name, state: 'failed', message: `${failure.step}: ${failure.message}` });
      await store.closeOperation({ operationId: input.operationId, status: isCancellation(err) ? 'cancelled' : 'failed', steps: steps.snapshot().steps, failure });
    });
    if (isCancellation(err)) throw err;
    throw ApplicationFailure.create({ type: failure.type, message: `${failure.step}: ${failure.message}`, nonRetryable: true, details: [failure] });
  }
}
