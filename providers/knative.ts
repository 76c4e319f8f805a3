import { CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { ProviderError } from '../domain/errors.js';
import { callKube } from './kube.js';

/** A revision of a Knative Service, as Kumo applies it. */
export interface KnativeRevisionSpec {
  namespace: string;
  service: string;
  /** The revision's name (`<service>-<suffix>`): naming it makes applying it again a no-op. */
  revision: string;
  /** The image by digest. */
  image: string;
  env: Record<string, string>;
  containerConcurrency: number;
  timeoutSeconds: number;
  minScale: number;
  maxScale: number;
  labels: Record<string, string>;
}

export type ConditionStatus = 'True' | 'False' | 'Unknown';

/** Where a revision and its Service stand. */
export interface KnativeStatus {
  revision: { name: string; ready: ConditionStatus; reason: string | null; message: string | null } | null;
  serviceReady: ConditionStatus;
  serviceMessage: string | null;
  latestReadyRevision: string | null;
  latestCreatedRevision: string | null;
  url: string | null;
  traffic: Array<{ revisionName: string; percent: number }>;
}

/** The port Kumo uses to run functions on a cluster with Knative Serving. */
export interface Knative {
  ensureNamespace(namespace: string): Promise<void>;
  /** Creates the Service or moves its template to this revision; nothing when it is there already. */
  applyRevision(spec: KnativeRevisionSpec): Promise<void>;
  /** The Service's status and, when named, one revision's; null when there is no Service. */
  status(namespace: string, service: string, revision?: string): Promise<KnativeStatus | null>;
  /** Puts the Service's template back to an existing revision (its spec is read from the Revision). */
  restoreRevision(namespace: string, service: string, revision: string): Promise<void>;
  /** Deletes the Service (its revisions go with it); an absent one is fine. */
  deleteService(namespace: string, service: string): Promise<void>;
}

const group = 'serving.knative.dev';
const version = 'v1';

interface Condition {
  type?: string;
  status?: string;
  reason?: string;
  message?: string;
}

interface KnativeObject {
  metadata?: { name?: string; annotations?: Record<string, string>; labels?: Record<string, string>; resourceVersion?: string };
  spec?: { template?: { metadata?: { name?: string } }; containers?: unknown[]; containerConcurrency?: number; timeoutSeconds?: number } & Record<string, unknown>;
  status?: { conditions?: Condition[]; latestReadyRevisionName?: string; latestCreatedRevisionName?: string; url?: string; traffic?: Array<{ revisionName?: string; percent?: number }> };
}

/**
 * The real adapter: Knative Serving's `serving.knative.dev/v1` API through the
 * cluster's Kubernetes API (the kubeconfig Rancher generates; it stays inside).
 */
export function createKnativeClient(kubeconfig: string, timeoutMs: number): Knative {
  const config = new KubeConfig();
  config.loadFromString(kubeconfig);
  const custom = config.makeApiClient(CustomObjectsApi);
  const core = config.makeApiClient(CoreV1Api);
  const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

  const call = <T>(what: string, fn: () => Promise<T>): Promise<T> => callKube('Knative', what, timeoutMs, fn);

  const get = async (plural: string, namespace: string, name: string): Promise<KnativeObject | null> => {
    try {
      return (await call(`get ${plural} ${namespace}/${name}`, () => custom.getNamespacedCustomObject({ group, version, namespace, plural, name }))) as KnativeObject;
    } catch (err) {
      if (err instanceof ProviderError && err.type === 'NotFound') return null;
      throw err;
    }
  };

  const setTemplate = async (namespace: string, service: string, template: Record<string, unknown>, labels: Record<string, string>) => {
    const existing = await get('services', namespace, service);
    const spec = { template, traffic: [{ latestRevision: true, percent: 100 }] };
    if (!existing) {
      const body = { apiVersion: `${group}/${version}`, kind: 'Service', metadata: { name: service, namespace, labels }, spec };
      try {
        await call(`create service ${namespace}/${service}`, () => custom.createNamespacedCustomObject({ group, version, namespace, plural: 'services', body }));
        return;
      } catch (err) {
        // Made meanwhile (a lost response to an earlier attempt): patch it below.
        if (!(err instanceof ProviderError && err.details.status === 409)) throw err;
      }
    }
    await call(`update service ${namespace}/${service}`, () =>
      custom.patchNamespacedCustomObject({ group, version, namespace, plural: 'services', name: service, body: { metadata: { labels }, spec } }, mergePatch),
    );
  };

  return {
    async ensureNamespace(namespace) {
      try {
        await call(`create namespace ${namespace}`, () => core.createNamespace({ body: { metadata: { name: namespace } } }));
      } catch (err) {
        if (!(err instanceof ProviderError && err.details.status === 409)) throw err;
      }
    },
    async applyRevision(spec) {
      const existing = await get('services', spec.namespace, spec.service);
      if (existing?.spec?.template?.metadata?.name === spec.revision) return;
      const template = {
        metadata: {
          name: spec.revision,
          annotations: { 'autoscaling.knative.dev/min-scale': String(spec.minScale), 'autoscaling.knative.dev/max-scale': String(spec.maxScale) },
          labels: spec.labels,
        },
        spec: {
          containerConcurrency: spec.containerConcurrency,
          timeoutSeconds: spec.timeoutSeconds,
          containers: [{ image: spec.image, ports: [{ containerPort: 8080 }], env: Object.entries(spec.env).map(([name, value]) => ({ name, value })) }],
        },
      };
      await setTemplate(spec.namespace, spec.service, template, spec.labels);
    },
    async status(namespace, service, revision) {
      const svc = await get('services', namespace, service);
      if (!svc) return null;
      const ready = svc.status?.conditions?.find((c) => c.type === 'Ready');
      let revisionStatus: KnativeStatus['revision'] = null;
      if (revision) {
        const rev = await get('revisions', namespace, revision);
        const revReady = rev?.status?.conditions?.find((c) => c.type === 'Ready');
        revisionStatus = { name: revision, ready: conditionStatus(revReady?.status), reason: revReady?.reason ?? (rev ? null : 'NotCreatedYet'), message: revReady?.message ?? null };
      }
      return {
        revision: revisionStatus,
        serviceReady: conditionStatus(ready?.status),
        serviceMessage: ready?.message ?? null,
        latestReadyRevision: svc.status?.latestReadyRevisionName ?? null,
        latestCreatedRevision: svc.status?.latestCreatedRevisionName ?? null,
        url: svc.status?.url ?? null,
        traffic: (svc.status?.traffic ?? []).map((t) => ({ revisionName: t.revisionName ?? '', percent: t.percent ?? 0 })),
      };
    },
    async restoreRevision(namespace, service, revision) {
      const rev = await get('revisions', namespace, revision);
      if (!rev?.spec) throw new ProviderError('NotFound', `revision ${namespace}/${revision} does not exist any more`);
      const svc = await get('services', namespace, service);
      if (svc?.spec?.template?.metadata?.name === revision) return;
      const annotations = Object.fromEntries(Object.entries(rev.metadata?.annotations ?? {}).filter(([key]) => key.startsWith('autoscaling.knative.dev/')));
      const { containers, containerConcurrency, timeoutSeconds } = rev.spec;
      await setTemplate(namespace, service, { metadata: { name: revision, annotations }, spec: { containers, containerConcurrency, timeoutSeconds } }, svc?.metadata?.labels ?? {});
    },
    async deleteService(namespace, service) {
      try {
        await call(`delete service ${namespace}/${service}`, () => custom.deleteNamespacedCustomObject({ group, version, namespace, plural: 'services', name: service }));
      } catch (err) {
        if (!(err instanceof ProviderError && err.type === 'NotFound')) throw err;
      }
    },
  };
}

function conditionStatus(value: string | undefined): ConditionStatus {
  return value === 'True' || value === 'False' ? value : 'Unknown';
}
