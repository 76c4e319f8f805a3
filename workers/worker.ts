import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createClusterActivities } from '../activities/cluster.js';
import type { Config } from '../domain/config.js';
import { ProviderError } from '../domain/errors.js';
import { createKubeClient, type Kube } from '../providers/kube.js';
import { createRancherClient, type Rancher } from '../providers/rancher.js';
import type { Store } from '../store/index.js';

/** Where the workflow bundle starts; the worker bundles it with webpack at start-up. */
export const workflowsPath = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

/**
 * Wires Kumo's worker: the workflows, and activities built from real adapters
 * configured by the environment.
 */
export async function createKumoWorker(options: {
  connection: NativeConnection;
  config: Config;
  store: Store;
  /** A prebuilt bundle (tests and the stack build one and share it), else `workflowsPath` is bundled. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  identity?: string;
}): Promise<Worker> {
  const { connection, config, store } = options;
  const rancher = createRancherClient({
    url: config.RANCHER_URL,
    token: config.RANCHER_TOKEN,
    timeoutMs: config.RANCHER_TIMEOUT_MS,
    nodeTemplateId: config.RANCHER_NODE_TEMPLATE,
  });
  return Worker.create({
    connection,
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    ...(options.workflowBundle ? { workflowBundle: options.workflowBundle } : { workflowsPath }),
    activities: {
      ...createClusterActivities({ rancher, store, kubeFor: kubeClients(rancher, config.RANCHER_TIMEOUT_MS), pollIntervalMs: config.KUMO_POLL_INTERVAL_MS }),
    },
    ...(options.identity ? { identity: options.identity } : {}),
  });
}

/**
 * Kubernetes clients per cluster, built from kubeconfigs Rancher generates. The
 * kubeconfig (a secret) lives only in this process's memory, never in workflow
 * inputs or histories.
 */
export function kubeClients(rancher: Rancher, timeoutMs: number): (rancherId: string) => Promise<Kube> {
  const clients = new Map<string, Promise<Kube>>();
  return (rancherId) => {
    let client = clients.get(rancherId);
    if (!client) {
      client = rancher
        .generateKubeconfig(rancherId)
        .then((kubeconfig) => forgetOnUnauthorized(createKubeClient(kubeconfig, timeoutMs), () => clients.delete(rancherId)));
      // A failed fetch must not stick: the next call tries again.
      client.catch(() => clients.delete(rancherId));
      clients.set(rancherId, client);
    }
    return client;
  };
}

/**
 * Wraps a client so that a 401 (the kubeconfig's token was revoked or rotated)
 * drops it from the cache and is retried: the retry fetches a fresh kubeconfig.
 */
function forgetOnUnauthorized(kube: Kube, forget: () => void): Kube {
  const wrapped: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(kube) as Array<[string, (...args: unknown[]) => Promise<unknown>]>) {
    wrapped[name] = async (...args: unknown[]) => {
      try {
        return await fn(...args);
      } catch (err) {
        if (!(err instanceof ProviderError && err.type === 'Unauthorized')) throw err;
        forget();
        // Retryable now: the next attempt asks Rancher for a fresh kubeconfig.
        throw new ProviderError('Transient', `${err.message} (kubeconfig refused; a fresh one is fetched on retry)`, err.details);
      }
    };
  }
  return wrapped as unknown as Kube;
}
