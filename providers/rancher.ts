import { ProviderError, type FailureType } from '../domain/errors.js';

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
  conditions?: Array<{ type: string; status: string; reason?: string; message?: string; lastHeartbeatTime?: string }>;
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
  const code = body?.code ?? '';
  const message = (body?.message ?? '').toLowerCase();
  if (status === 401) return 'Unauthorized';
  if (status === 403) return message.includes('quota') || code === 'QuotaExceeded' ? 'QuotaExceeded' : 'Unauthorized';
  if (status === 404) return 'NotFound';
  if (status === 409) return 'Transient';
  if (status === 422 && code === 'NotUnique') return 'AlreadyExists';
  if (status === 400 || status === 422) return 'InvalidSpec';
  if (status === 408 || status === 429 || status >= 500) return 'Transient';
  return 'Internal';
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
  };
}

/** Whether Rancher reports a node as Ready. */
export function isNodeReady(node: RancherNode): boolean {
  if (node.state !== 'active' && node.state !== 'cordoned') return false;
  const ready = node.conditions?.find((condition) => condition.type === 'Ready');
  return ready === undefined ? true : ready.status === 'True';
}
