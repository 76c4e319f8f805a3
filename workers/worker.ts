import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createAddonActivities } from '../activities/addon.js';
import { createClusterActivities } from '../activities/cluster.js';
import { createEventActivities } from '../activities/event.js';
import { createFunctionActivities } from '../activities/function.js';
import { createHealthActivities } from '../activities/health.js';
import { ingestHealthEvent, postHealthWebhook, startAutoOperation } from '../api/automation.js';
import type { Config } from '../domain/config.js';
import { ProviderError } from '../domain/errors.js';
import { createHelmClient, type Helm } from '../providers/helm.js';
import { createKnativeClient } from '../providers/knative.js';
import { createKubeClient, type Kube } from '../providers/kube.js';
import { parsePrometheusService } from '../providers/prometheus.js';
import { createRegistryClient, type Registry } from '../providers/registry.js';
import { createRancherClient, type Rancher } from '../providers/rancher.js';
import { helmBinary } from '../scripts/tools.js';
import { AddonCatalog } from '../store/catalog.js';
import type { Store } from '../store/index.js';

/** Where the workflow bundle starts; the worker bundles it with webpack at start-up. */
export const workflowsPath = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

/**
 * Wires Kumo's worker: the workflows, and activities built from real adapters
 * configured by the environment.
 */
export async function createKumoWorker(options: {
  connection: NativeConnection;
  /** A client of the same Temporal: health sweeps hand events over and start operations with it, as the API does. */
  temporal: Client;
  config: Config;
  store: Store;
  /** A prebuilt bundle (tests and the stack build one and share it), else `workflowsPath` is bundled. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  identity?: string;
}): Promise<Worker> {
  const { connection, config, store, temporal } = options;
  const apiDeps = { store, temporal, config };
  const rancher = createRancherClient({
    url: config.RANCHER_URL,
    token: config.RANCHER_TOKEN,
    timeoutMs: config.RANCHER_TIMEOUT_MS,
    nodeTemplateId: config.RANCHER_NODE_TEMPLATE,
  });
  const kubeconfigs = kubeconfigCache(rancher);
  const kubeFor = kubeClients(kubeconfigs, config.RANCHER_TIMEOUT_MS);
  return Worker.create({
    connection,
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    ...(options.workflowBundle ? { workflowBundle: options.workflowBundle } : { workflowsPath }),
    activities: {
      ...createClusterActivities({ rancher, store, kubeFor, pollIntervalMs: config.KUMO_POLL_INTERVAL_MS }),
      ...createAddonActivities({
        store,
        catalog: AddonCatalog.load(config.KUMO_CHARTS_DIR),
        helmFor: helmClients(kubeconfigs, helmBinary(), config.RANCHER_TIMEOUT_MS),
        kubeFor,
        chartRepoUrl: config.KUMO_CHART_REPO_URL ?? null,
      }),
      ...createFunctionActivities({
        store,
        registry: registryOf(config),
        pullHost: config.KUMO_REGISTRY_PULL_HOST ?? (config.KUMO_REGISTRY_URL ? new URL(config.KUMO_REGISTRY_URL).host : 'registry.invalid'),
        repoPrefix: 'functions',
        cacheDir: resolve(config.KUMO_BUILD_CACHE_DIR),
        runtimeDir: fileURLToPath(new URL('../runtime/kumo_runtime', import.meta.url)),
        knativeFor: async (rancherId) => forgetOnUnauthorized(createKnativeClient(await kubeconfigs.get(rancherId), config.RANCHER_TIMEOUT_MS), () => kubeconfigs.forget(rancherId)),
      }),
      ...createEventActivities({ store }),
      ...createHealthActivities({
        store,
        rancher,
        kubeFor,
        prometheus: parsePrometheusService(config.KUMO_PROMETHEUS_SERVICE),
        probeTimeoutMs: config.KUMO_HEALTH_PROBE_TIMEOUT_MS,
        retentionDays: config.KUMO_HEALTH_RETENTION_DAYS,
        ingest: (event) => ingestHealthEvent(apiDeps, event),
        startOperation: (operation) => startAutoOperation(apiDeps, operation),
        postWebhook: postHealthWebhook,
      }),
    },
    ...(options.identity ? { identity: options.identity } : {}),
  });
}

/**
 * The registry function images go to. Without KUMO_REGISTRY_URL every call
 * fails as a configuration error (non-retryable), saying what to set.
 */
function registryOf(config: Config): Registry {
  if (config.KUMO_REGISTRY_URL) {
    return createRegistryClient({
      url: config.KUMO_REGISTRY_URL,
      timeoutMs: 120_000,
      ...(config.KUMO_REGISTRY_USERNAME ? { username: config.KUMO_REGISTRY_USERNAME } : {}),
      ...(config.KUMO_REGISTRY_PASSWORD ? { password: config.KUMO_REGISTRY_PASSWORD } : {}),
    });
  }
  const missing = () => Promise.reject(new ProviderError('InvalidSpec', 'no OCI registry is configured (set KUMO_REGISTRY_URL)'));
  return new Proxy({} as Registry, { get: () => missing });
}

/** Kubeconfigs per cluster, generated by Rancher once and kept in memory only (never in inputs or histories). */
export interface KubeconfigCache {
  get(rancherId: string): Promise<string>;
  forget(rancherId: string): void;
}

export function kubeconfigCache(rancher: Rancher): KubeconfigCache {
  const cache = new Map<string, Promise<string>>();
  return {
    get(rancherId) {
      let kubeconfig = cache.get(rancherId);
      if (!kubeconfig) {
        kubeconfig = rancher.generateKubeconfig(rancherId);
        // A failed fetch must not stick: the next call tries again.
        kubeconfig.catch(() => cache.delete(rancherId));
        cache.set(rancherId, kubeconfig);
      }
      return kubeconfig;
    },
    forget(rancherId) {
      cache.delete(rancherId);
    },
  };
}

/** Kubernetes clients per cluster, built from the kubeconfigs Rancher generates. */
export function kubeClients(kubeconfigs: KubeconfigCache, timeoutMs: number): (rancherId: string) => Promise<Kube> {
  return async (rancherId) => forgetOnUnauthorized(createKubeClient(await kubeconfigs.get(rancherId), timeoutMs), () => kubeconfigs.forget(rancherId));
}

/** Helm bound to a cluster, with the same kubeconfigs. */
function helmClients(kubeconfigs: KubeconfigCache, binary: string, timeoutMs: number): (rancherId: string) => Promise<Helm> {
  return async (rancherId) =>
    forgetOnUnauthorized(createHelmClient({ binary, kubeconfig: await kubeconfigs.get(rancherId), timeoutMs: Math.max(timeoutMs, 60_000) }), () => kubeconfigs.forget(rancherId));
}

/**
 * Wraps a client so that a 401 (the kubeconfig's token was revoked or rotated)
 * drops it from the cache and is retried: the retry fetches a fresh kubeconfig.
 */
function forgetOnUnauthorized<T extends object>(client: T, forget: () => void): T {
  const wrapped: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(client) as Array<[string, (...args: unknown[]) => Promise<unknown>]>) {
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
  return wrapped as T;
}
