import { ProviderError, type FailureType } from '../domain/errors.js';
import { classifyHttpStatus } from './http.js';

/** The fields of a Rancher v3 cluster that Kumo reads. */
export interface RancherCluster {
  id: string;
  name: string;
  state: string;
  transitioning?: string;
  transitioningMessage?: string;
  apiEndpoint?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  rancherKubernetesEngineConfig?: { kubernetesVersion?: string };
}

/** The fields of a Rancher v3 node pool that Kumo reads. */
export interface RancherNodePool {
  id: string;
  clusterId: string;
  name: string;
  hostnamePrefix: string;
  quantity: number;
  etcd: boolean;
  controlPlane: boolean;
  worker: boolean;
  state?: string;
  labels?: Record<string, string>;
}

/** The fields of a Rancher v3 node that Kumo reads. */
export interface RancherNode {
  id: string;
  clusterId: string;
  nodePoolId?: string;
  hostname?: string;
  requestedHostname?: string;
  nodeName?: string;
  state: string;
  etcd?: boolean;
  controlPlane?: boolean;
  worker?: boolean;
  unschedulable?: boolean;
  /** When Rancher created the node (RFC 3339). */
  created?: string;
  conditions?: Array<{ type: string; status: string; reason?: string; message?: string; lastHeartbeatTime?: string }>;
}

/** The fields of a Rancher v3 etcd backup that Kumo reads. */
export interface RancherEtcdBackup {
  id: string;
  name: string;
  clusterId: string;
  filename?: string;
  manual?: boolean;
  created?: string;
  state: string;
  labels?: Record<string, string>;
}

export interface CreateClusterRequest {
  name: string;
  kubernetesVersion: string;
  description?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

export interface CreateNodePoolRequest {
  clusterId: string;
  name: string;
  hostnamePrefix: string;
  quantity: number;
  etcd: boolean;
  controlPlane: boolean;
  worker: boolean;
  labels: Record<string, string>;
}

/**
 * The port Kumo uses to talk to Rancher's v3 management API. Every method throws
 * a classified {@link ProviderError}; none of them retries on its own (Temporal does).
 */
export interface Rancher {
  findClusterByName(name: string): Promise<RancherCluster | null>;
  getCluster(id: string): Promise<RancherCluster>;
  createCluster(request: CreateClusterRequest): Promise<RancherCluster>;
  deleteCluster(id: string): Promise<void>;
  listNodePools(clusterId: string): Promise<RancherNodePool[]>;
  createNodePool(request: CreateNodePoolRequest): Promise<RancherNodePool>;
  updateNodePool(id: string, patch: { quantity: number }): Promise<RancherNodePool>;
  listNodes(clusterId: string): Promise<RancherNode[]>;
  /** A node, or null when Rancher no longer has it. */
  getNode(id: string): Promise<RancherNode | null>;
  /** Deletes a node; its pool keeps its quantity by creating a replacement. Absent already is fine. */
  deleteNode(id: string): Promise<void>;
  /** Changes a cluster's settings; a new Kubernetes version makes Rancher upgrade its nodes. */
  updateCluster(
    id: string,
    update: { kubernetesVersion?: string; description?: string; labels?: Record<string, string>; maxUnavailableWorker?: number },
  ): Promise<RancherCluster>;
  /** A kubeconfig for the cluster (through Rancher's proxy). A secret. */
  generateKubeconfig(id: string): Promise<string>;
  createEtcdBackup(clusterId: string, name: string, labels: Record<string, string>): Promise<RancherEtcdBackup>;
  listEtcdBackups(clusterId: string): Promise<RancherEtcdBackup[]>;
  /** A backup, or null when Rancher does not have it. */
  getEtcdBackup(id: string): Promise<RancherEtcdBackup | null>;
  deleteEtcdBackup(id: string): Promise<void>;
  restoreFromEtcdBackup(clusterId: string, backupId: string): Promise<void>;
}

export interface RancherClientOptions {
  /** Rancher's base URL; the API lives at `<url>/v3`. */
  url: string;
  /** Bearer token. Kept inside the client; never part of an error message. */
  token: string;
  /** Per-request timeout. */
  timeoutMs: number;
  /** The node template new pools use. */
  nodeTemplateId: string;
}

interface NormanError {
  type?: string;
  status?: number;
  code?: string;
  message?: string;
  fieldName?: string;
}

/**
 * Maps an HTTP answer from Rancher to a failure type, once, here.
 * Norman reports bad input as 422 (codes InvalidFormat, MissingRequired, NotUnique…),
 * quota refusals as 403 PermissionDenied with a quota message.
 */
export function classifyRancherError(status: number, body: NormanError | undefined): FailureType {
  return classifyHttpStatus(status, body?.code ?? '', body?.message ?? '');
}

/**
 * The real adapter: plain HTTP against Rancher's v3 API (or the simulator, which
 * speaks the same API).
 */
export function createRancherClient(options: RancherClientOptions): Rancher {
  const base = options.url.replace(/\/+$/, '');

  async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const what = `${method} ${path.split('?')[0]}`;
    let response: Response;
    try {
      response = await fetch(`${base}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${options.token}`,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(options.timeoutMs),
      });
    } catch (err) {
      if (err instanceof Error && err.name === 'TimeoutError') throw new ProviderError('Transient', `Rancher ${what}: timed out after ${options.timeoutMs} ms`);
      // fetch says "fetch failed" (with a cause) when the network fails; any other
      // error is a request it could not even build, which no retry fixes. Its
      // message may quote the URL, so it is not passed on.
      const cause = (err as { cause?: { code?: string } }).cause;
      if (err instanceof TypeError && err.message === 'fetch failed') {
        throw new ProviderError('Transient', `Rancher ${what}: network error${cause?.code ? ` (${cause.code})` : ''}`);
      }
      throw new ProviderError('Internal', `Rancher ${what}: the request could not be sent (${err instanceof Error ? err.name : 'error'}); check RANCHER_URL`);
    }
    const text = await response.text().catch(() => '');
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (!response.ok) {
      const norman = (parsed && typeof parsed === 'object' ? parsed : undefined) as NormanError | undefined;
      const type = classifyRancherError(response.status, norman);
      const field = norman?.fieldName ? ` (field ${norman.fieldName})` : '';
      const message = norman?.message || response.statusText || 'no message';
      throw new ProviderError(type, `Rancher ${what} answered ${response.status} ${norman?.code ?? ''}: ${message}${field}`.replace(/\s+:/, ':'), {
        status: response.status,
        ...(norman?.code ? { code: norman.code } : {}),
        ...(norman?.fieldName ? { field: norman.fieldName } : {}),
      });
    }
    if (parsed === undefined && method !== 'DELETE') {
      throw new ProviderError('Transient', `Rancher ${what} answered ${response.status} without a JSON body`);
    }
    return parsed as T;
  }

  const list = async <T>(path: string): Promise<T[]> => (await call<{ data: T[] }>('GET', path)).data ?? [];
  const q = encodeURIComponent;

  return {
    async findClusterByName(name) {
      const found = await list<RancherCluster>(`/v3/clusters?name=${q(name)}`);
      return found.find((cluster) => cluster.name === name && cluster.state !== 'removing') ?? null;
    },
    getCluster: (id) => call<RancherCluster>('GET', `/v3/clusters/${q(id)}`),
    createCluster: (request) =>
      call<RancherCluster>('POST', '/v3/clusters', {
        type: 'cluster',
        name: request.name,
        description: request.description ?? '',
        labels: request.labels,
        annotations: request.annotations,
        rancherKubernetesEngineConfig: { kubernetesVersion: request.kubernetesVersion },
      }),
    async deleteCluster(id) {
      try {
        await call('DELETE', `/v3/clusters/${q(id)}`);
      } catch (err) {
        if (err instanceof ProviderError && err.type === 'NotFound') return;
        throw err;
      }
    },
    listNodePools: (clusterId) => list<RancherNodePool>(`/v3/nodepools?clusterId=${q(clusterId)}`),
    createNodePool: (request) =>
      call<RancherNodePool>('POST', '/v3/nodepools', {
        type: 'nodePool',
        ...request,
        nodeTemplateId: options.nodeTemplateId,
        drainBeforeDelete: true,
      }),
    updateNodePool: (id, patch) => call<RancherNodePool>('PUT', `/v3/nodepools/${q(id)}`, patch),
    listNodes: (clusterId) => list<RancherNode>(`/v3/nodes?clusterId=${q(clusterId)}`),
    getNode: (id) => orNull(call<RancherNode>('GET', `/v3/nodes/${q(id)}`)),
    async deleteNode(id) {
      await orNull(call('DELETE', `/v3/nodes/${q(id)}`));
    },
    updateCluster: (id, update) =>
      call<RancherCluster>('PUT', `/v3/clusters/${q(id)}`, {
        ...(update.description !== undefined ? { description: update.description } : {}),
        ...(update.labels ? { labels: update.labels } : {}),
        ...(update.kubernetesVersion
          ? {
              rancherKubernetesEngineConfig: {
                kubernetesVersion: update.kubernetesVersion,
                upgradeStrategy: { maxUnavailableControlplane: '1', maxUnavailableWorker: String(update.maxUnavailableWorker ?? 1) },
              },
            }
          : {}),
      }),
    async generateKubeconfig(id) {
      const output = await call<{ config?: string }>('POST', `/v3/clusters/${q(id)}?action=generateKubeconfig`, {});
      if (!output.config) throw new ProviderError('Transient', 'Rancher generateKubeconfig answered without a config');
      return output.config;
    },
    createEtcdBackup: (clusterId, name, labels) =>
      call<RancherEtcdBackup>('POST', '/v3/etcdbackups', { type: 'etcdBackup', clusterId, name, manual: true, labels }),
    listEtcdBackups: (clusterId) => list<RancherEtcdBackup>(`/v3/etcdbackups?clusterId=${q(clusterId)}`),
    getEtcdBackup: (id) => orNull(call<RancherEtcdBackup>('GET', `/v3/etcdbackups/${q(id)}`)),
    async deleteEtcdBackup(id) {
      await orNull(call('DELETE', `/v3/etcdbackups/${q(id)}`));
    },
    async restoreFromEtcdBackup(clusterId, backupId) {
      await call('POST', `/v3/clusters/${q(clusterId)}?action=restoreFromEtcdBackup`, { etcdBackupId: backupId, restoreRkeConfig: '' });
    },
  };
}

/** The value, or null when Rancher said 404. */
async function orNull<T>(pending: Promise<T>): Promise<T | null> {
  try {
    return await pending;
  } catch (err) {
    if (err instanceof ProviderError && err.type === 'NotFound') return null;
    throw err;
  }
}

/** Whether Rancher reports a node as Ready. */
export function isNodeReady(node: RancherNode): boolean {
  if (node.state !== 'active' && node.state !== 'cordoned') return false;
  const ready = node.conditions?.find((condition) => condition.type === 'Ready');
  return ready === undefined ? true : ready.status === 'True';
}
