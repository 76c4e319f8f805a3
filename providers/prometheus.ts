import type { Sample } from '../domain/health.js';
import { ProviderError } from '../domain/errors.js';
import type { Kube } from './kube.js';

/** Where a cluster's Prometheus answers, as a Kubernetes Service (the monitoring add-on's). */
export interface PrometheusService {
  namespace: string;
  name: string;
  port: number;
}

/** The port Kumo uses to ask one cluster's Prometheus an instant query. */
export interface Prometheus {
  /** The instant vector of `expr` now: one sample per series (a scalar is one sample without labels). */
  query(expr: string): Promise<Sample[]>;
}

/** `kumo-monitoring/kumo-monitoring-prometheus:9090`, the monitoring add-on's Service. */
export function parsePrometheusService(value: string): PrometheusService {
  const match = /^([a-z0-9-]+)\/([a-z0-9-]+):(\d{1,5})$/.exec(value);
  if (!match) throw new Error(`"${value}" is not <namespace>/<service>:<port>`);
  return { namespace: match[1]!, name: match[2]!, port: Number(match[3]) };
}

interface PrometheusAnswer {
  status?: string;
  error?: string;
  data?: { resultType?: string; result?: unknown };
}

/**
 * Prometheus's HTTP API reached through the cluster's Kubernetes API service
 * proxy (`/api/v1/namespaces/<ns>/services/http:<name>:<port>/proxy/...`), the
 * way Rancher's own monitoring pages reach it: no extra endpoint or credential
 * beyond the cluster's kubeconfig.
 */
export function prometheusViaKube(kube: Kube, service: PrometheusService): Prometheus {
  const base = `/api/v1/namespaces/${service.namespace}/services/http:${service.name}:${service.port}/proxy/api/v1/query`;
  return {
    async query(expr) {
      const answer = await kube.get(`${base}?query=${encodeURIComponent(expr)}`);
      if (answer.status === 404 && answer.body.includes('"kind"')) {
        throw new ProviderError('NotFound', `Prometheus service ${service.namespace}/${service.name} not found (is the monitoring add-on installed?)`);
      }
      let parsed: PrometheusAnswer;
      try {
        parsed = JSON.parse(answer.body) as PrometheusAnswer;
      } catch {
        throw new ProviderError('Transient', `Prometheus answered ${answer.status} without JSON`);
      }
      if (answer.status !== 200 || parsed.status !== 'success') {
        throw new ProviderError(answer.status >= 500 || answer.status === 0 ? 'Transient' : 'InvalidSpec', `Prometheus answered ${answer.status}: ${parsed.error ?? 'no error text'}`);
      }
      return toSamples(parsed.data);
    },
  };
}

/** Samples of an instant query's `data` (vector or scalar); values that are not numbers are skipped. */
export function toSamples(data: PrometheusAnswer['data']): Sample[] {
  if (data?.resultType === 'scalar' && Array.isArray(data.result)) {
    const value = Number(data.result[1]);
    return Number.isFinite(value) ? [{ labels: {}, value }] : [];
  }
  if (data?.resultType !== 'vector' || !Array.isArray(data.result)) return [];
  const samples: Sample[] = [];
  for (const item of data.result as Array<{ metric?: Record<string, string>; value?: [number, string] }>) {
    const value = Number(item.value?.[1]);
    if (!Number.isFinite(value)) continue;
    const { __name__: _name, ...labels } = item.metric ?? {};
    samples.push({ labels, value });
  }
  return samples;
}
