import { request } from 'node:https';
import { ApiException, AppsV1Api, CoreV1Api, Health, KubeConfig, PatchStrategy, setHeaderOptions, type V1Node, type V1Pod } from '@kubernetes/client-node';
import { ProviderError } from '../domain/errors.js';
import { classifyHttpStatus } from './http.js';

/** A node as Kumo needs it from a cluster's Kubernetes API. */
export interface KubeNode {
  name: string;
  unschedulable: boolean;
  ready: 'True' | 'False' | 'Unknown';
  lastHeartbeat: string | null;
  kubeletVersion: string | null;
  /** Every condition the kubelet reports, with when it last changed. */
  conditions: Array<{ type: string; status: 'True' | 'False' | 'Unknown'; since: string | null; reason?: string }>;
}

/** What a plain GET of one of the API server's paths answered. */
export interface KubeGet {
  status: number;
  body: string;
}

export type WorkloadKind = 'Deployment' | 'StatefulSet' | 'DaemonSet';

/** A workload's rollout state, from its status. */
export interface WorkloadStatus {
  kind: WorkloadKind;
  namespace: string;
  name: string;
  /** Replicas the live spec asks for (a DaemonSet: the nodes it should run on). */
  desired: number;
  ready: number;
  /** The controller has seen the latest spec and every replica runs it. */
  updated: boolean;
}

/** The port Kumo uses to talk to one downstream cluster's Kubernetes API. */
export interface Kube {
  livez(): Promise<boolean>;
  /**
   * A GET of a path on the API server (`/readyz?verbose`, a service proxy), with
   * the kubeconfig's credentials; any HTTP status is an answer, no answer throws.
   */
  get(path: string): Promise<KubeGet>;
  /** ComponentStatus (deprecated upstream, a soft signal): each component and whether it is healthy. */
  componentStatuses(): Promise<Array<{ name: string; healthy: boolean; message: string }>>;
  listNodes(): Promise<KubeNode[]>;
  getNode(name: string): Promise<KubeNode | null>;
  setUnschedulable(name: string, unschedulable: boolean): Promise<void>;
  /** Pods bound to a node, except mirror and DaemonSet pods (a drain leaves those). */
  listEvictablePods(node: string): Promise<Array<{ namespace: string; name: string }>>;
  /** Creates or replaces a ConfigMap's data. */
  putConfigMap(namespace: string, name: string, data: Record<string, string>): Promise<void>;
  /** A ConfigMap's data, or null when there is none. */
  getConfigMap(namespace: string, name: string): Promise<Record<string, string> | null>;
  /** Asks to evict a pod; `blocked` when a PodDisruptionBudget refuses for now. */
  evictPod(namespace: string, name: string): Promise<'evicted' | 'blocked' | 'gone'>;
  /** A workload's status, or null when it does not exist. */
  getWorkload(kind: WorkloadKind, namespace: string, name: string): Promise<WorkloadStatus | null>;
  /** What `kubectl rollout restart` does: a new pod-template annotation, so every pod is replaced. */
  restartWorkload(kind: WorkloadKind, namespace: string, name: string, at: string): Promise<void>;
}

/**
 * The real adapter over `@kubernetes/client-node`, built from the kubeconfig
 * Rancher generates (it points at Rancher's proxy for the cluster). The
 * kubeconfig is a secret: it stays inside this object.
 */
export function createKubeClient(kubeconfig: string, timeoutMs: number): Kube {
  const config = new KubeConfig();
  config.loadFromString(kubeconfig);
  const core = config.makeApiClient(CoreV1Api);
  const health = new Health(config);
  const apps = config.makeApiClient(AppsV1Api);

  const call = <T>(what: string, fn: () => Promise<T>): Promise<T> => callKube('Kubernetes', what, timeoutMs, fn);

  return {
    async livez() {
      // Through client-node, so the kubeconfig's TLS settings (certificate-authority-data) apply.
      try {
        return await health.livez({ signal: AbortSignal.timeout(timeoutMs) });
      } catch {
        return false;
      }
    },
    async get(path) {
      const cluster = config.getCurrentCluster();
      if (!cluster) throw new ProviderError('InvalidSpec', 'the kubeconfig names no cluster');
      const url = new URL(cluster.server.replace(/\/$/, '') + path);
      const options: import('node:https').RequestOptions = { method: 'GET', headers: {} };
      await config.applyToHTTPSOptions(options);
      return new Promise<KubeGet>((resolveGet, reject) => {
        const req = request(url, { ...options, timeout: timeoutMs }, (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size <= 4 * 1024 * 1024) chunks.push(chunk);
          });
          res.on('end', () => resolveGet({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', (err) => reject(new ProviderError('Transient', `Kubernetes GET ${url.pathname}: ${err.message}`)));
        });
        req.on('timeout', () => req.destroy(new Error(`timed out after ${timeoutMs} ms`)));
        req.on('error', (err) => reject(new ProviderError('Transient', `Kubernetes GET ${url.pathname}: ${err.message}`)));
        req.end();
      });
    },
    async componentStatuses() {
      const list = await call('list componentstatuses', () => core.listComponentStatus());
      return list.items.map((item) => {
        const healthy = item.conditions?.find((condition) => condition.type === 'Healthy');
        return { name: item.metadata?.name ?? '', healthy: healthy?.status === 'True', message: healthy?.message ?? healthy?.error ?? '' };
      });
    },
    async listNodes() {
      const list = await call('list nodes', () => core.listNode());
      return list.items.map(toKubeNode);
    },
    async getNode(name) {
      try {
        return toKubeNode(await call(`get node ${name}`, () => core.readNode({ name })));
      } catch (err) {
        if (err instanceof ProviderError && err.type === 'NotFound') return null;
        throw err;
      }
    },
    async setUnschedulable(name, unschedulable) {
      await call(`${unschedulable ? 'cordon' : 'uncordon'} ${name}`, () =>
        core.patchNode({ name, body: { spec: { unschedulable } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch)),
      );
    },
    async listEvictablePods(node) {
      const list = await call(`list pods on ${node}`, () => core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${node}` }));
      return list.items
        .filter((pod: V1Pod) => pod.spec?.nodeName === node)
        .filter((pod: V1Pod) => !pod.metadata?.ownerReferences?.some((owner) => owner.kind === 'DaemonSet'))
        .filter((pod: V1Pod) => !pod.metadata?.annotations?.['kubernetes.io/config.mirror'])
        .map((pod: V1Pod) => ({ namespace: pod.metadata?.namespace ?? 'default', name: pod.metadata?.name ?? '' }));
    },
    async putConfigMap(namespace, name, data) {
      const body = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace }, data };
      try {
        await call(`create configmap ${namespace}/${name}`, () => core.createNamespacedConfigMap({ namespace, body }));
      } catch (err) {
        if (!(err instanceof ProviderError && err.details.status === 409)) throw err;
        await call(`replace configmap ${namespace}/${name}`, () => core.replaceNamespacedConfigMap({ name, namespace, body }));
      }
    },
    async getConfigMap(namespace, name) {
      try {
        return (await call(`get configmap ${namespace}/${name}`, () => core.readNamespacedConfigMap({ name, namespace }))).data ?? {};
      } catch (err) {
        if (err instanceof ProviderError && err.type === 'NotFound') return null;
        throw err;
      }
    },
    async evictPod(namespace, name) {
      try {
        await call(`evict ${namespace}/${name}`, () =>
          core.createNamespacedPodEviction({ name, namespace, body: { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name, namespace } } }),
        );
        return 'evicted';
      } catch (err) {
        if (err instanceof ProviderError && err.details.status === 429) return 'blocked';
        if (err instanceof ProviderError && err.type === 'NotFound') return 'gone';
        throw err;
      }
    },
    async getWorkload(kind, namespace, name) {
      const what = `get ${kind.toLowerCase()} ${namespace}/${name}`;
      try {
        if (kind === 'Deployment') {
          const d = await call(what, () => apps.readNamespacedDeployment({ name, namespace }));
          const desired = d.spec?.replicas ?? 1;
          const s = d.status ?? {};
          const current = (s.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0);
          return { kind, namespace, name, desired, ready: Math.min(s.availableReplicas ?? 0, s.readyReplicas ?? 0), updated: current && (s.updatedReplicas ?? 0) >= desired };
        }
        if (kind === 'StatefulSet') {
          const d = await call(what, () => apps.readNamespacedStatefulSet({ name, namespace }));
          const desired = d.spec?.replicas ?? 1;
          const s = d.status;
          const current = (s?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0);
          return { kind, namespace, name, desired, ready: s?.readyReplicas ?? 0, updated: current && (s?.updatedReplicas ?? 0) >= desired };
        }
        const d = await call(what, () => apps.readNamespacedDaemonSet({ name, namespace }));
        const s = d.status;
        const desired = s?.desiredNumberScheduled ?? 0;
        const current = (s?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0);
        return { kind, namespace, name, desired, ready: s?.numberReady ?? 0, updated: current && (s?.updatedNumberScheduled ?? 0) >= desired };
      } catch (err) {
        if (err instanceof ProviderError && err.type === 'NotFound') return null;
        throw err;
      }
    },
    async restartWorkload(kind, namespace, name, at) {
      const body = { spec: { template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': at } } } } };
      const options = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);
      const what = `restart ${kind.toLowerCase()} ${namespace}/${name}`;
      if (kind === 'Deployment') await call(what, () => apps.patchNamespacedDeployment({ name, namespace, body }, options));
      else if (kind === 'StatefulSet') await call(what, () => apps.patchNamespacedStatefulSet({ name, namespace, body }, options));
      else await call(what, () => apps.patchNamespacedDaemonSet({ name, namespace, body }, options));
    },
  };
}

function toKubeNode(node: V1Node): KubeNode {
  const ready = node.status?.conditions?.find((condition) => condition.type === 'Ready');
  const status = ready?.status === 'True' || ready?.status === 'False' ? ready.status : 'Unknown';
  const heartbeat = ready?.lastHeartbeatTime;
  return {
    name: node.metadata?.name ?? '',
    unschedulable: node.spec?.unschedulable === true,
    ready: status,
    lastHeartbeat: heartbeat ? new Date(heartbeat).toISOString() : null,
    kubeletVersion: node.status?.nodeInfo?.kubeletVersion ?? null,
    conditions: (node.status?.conditions ?? []).map((condition) => ({
      type: condition.type,
      status: condition.status === 'True' || condition.status === 'False' ? condition.status : 'Unknown',
      since: condition.lastTransitionTime ? new Date(condition.lastTransitionTime).toISOString() : null,
      ...(condition.reason ? { reason: condition.reason } : {}),
    })),
  };
}

/**
 * One call to a cluster's API through client-node, bounded by `timeoutMs`, its
 * failure mapped to a typed error. `api` names the API in messages.
 */
export async function callKube<T>(api: string, what: string, timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      fn(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new ProviderError('Transient', `${api} ${what}: timed out after ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } catch (err) {
    throw classifyKubeError(api, what, err);
  } finally {
    clearTimeout(timer);
  }
}

/** Maps a client-node failure to a typed error; the message never carries the kubeconfig. */
function classifyKubeError(api: string, what: string, err: unknown): ProviderError {
  if (err instanceof ProviderError) return err;
  if (err instanceof ApiException) {
    const body = typeof err.body === 'string' ? safeJson(err.body) : (err.body as { message?: string; reason?: string } | undefined);
    const status = err.code;
    const type = classifyHttpStatus(status, body?.reason ?? '', body?.message ?? '');
    return new ProviderError(type, `${api} ${what} answered ${status}${body?.message ? `: ${body.message}` : ''}`, { status });
  }
  return new ProviderError('Transient', `${api} ${what}: ${err instanceof Error ? err.message.split('\n')[0] : 'request failed'}`);
}

function safeJson(text: string): { message?: string; reason?: string } | undefined {
  try {
    return JSON.parse(text) as { message?: string; reason?: string };
  } catch {
    return undefined;
  }
}
