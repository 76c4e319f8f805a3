import { heartbeat } from '@temporalio/activity';
import { ProviderError } from '../domain/errors.js';
import type { FunctionRecord, FunctionState } from '../domain/function.js';
import { buildCodeLayer, buildDependencyLayer, buildRuntimeLayer, imageConfig, pushImage, validateSource } from '../providers/builder.js';
import type { Knative, KnativeStatus } from '../providers/knative.js';
import type { Registry } from '../providers/registry.js';
import type { Store } from '../store/index.js';
import { classified } from './failure.js';

export interface FunctionActivityDeps {
  store: Store;
  registry: Registry;
  /** `host:port` the cluster pulls images from (the registry as the cluster sees it). */
  pullHost: string;
  /** Repository prefix: a function's images go to `<prefix>/<name>`. */
  repoPrefix: string;
  /** Where built layers are cached (the dependency layer by the hash of requirements.txt). */
  cacheDir: string;
  /** The runtime package the images are built on (runtime/kumo_runtime). */
  runtimeDir: string;
  knativeFor: (rancherId: string) => Promise<Knative>;
}

/** The Knative revision name of a deploy: derived from the operation, so applying it again changes nothing. */
export function revisionName(functionName: string, operationId: string): string {
  return `${functionName}-${operationId.slice(-10).toLowerCase()}`;
}

/**
 * The steps of a function deploy. Each is idempotent: layers are
 * content-addressed and built byte for byte the same, the image is tagged with
 * the operation id (so a retried push makes no second manifest), and the
 * Knative revision is named after the operation.
 */
export const createFunctionActivities = ({ store, registry, pullHost, repoPrefix, cacheDir, runtimeDir, knativeFor }: FunctionActivityDeps) => {
  const mustGet = async (name: string): Promise<FunctionRecord> => {
    const record = await store.getFunction(name);
    if (!record) throw new ProviderError('NotFound', `function ${name} is gone`);
    return record;
  };
  const requirementsOf = (record: FunctionRecord) => record.files['requirements.txt'] ?? '';
  const repoOf = (name: string) => `${repoPrefix}/${name}`;

  return classified({
    /** Checks the source compiles (file and line of a syntax error) and the handler's module is there. */
    async validateFunction({ name }: { name: string }): Promise<{ files: number }> {
      const record = await mustGet(name);
      const errors = await validateSource(record.files, record.settings.handler);
      if (errors.length) {
        throw new ProviderError('InvalidSpec', errors.map((e) => `${e.file}${e.line !== null ? `, line ${e.line}` : ''}: ${e.message}`).join('; '));
      }
      return { files: Object.keys(record.files).length };
    },

    /** pip installs requirements.txt into its own layer, reused while requirements.txt stays the same. */
    async buildDependencies({ name }: { name: string }): Promise<{ digest: string; cached: boolean }> {
      const record = await mustGet(name);
      const beat = setInterval(() => heartbeatSafe('pip'), 5000);
      try {
        const layer = await buildDependencyLayer({ requirements: requirementsOf(record), cacheDir });
        return { digest: layer.digest, cached: layer.cached === true };
      } finally {
        clearInterval(beat);
      }
    },

    /**
     * Builds the runtime and code layers, writes the image config and manifest and
     * pushes blobs then manifest, tagged with the operation id. Returns the image by digest.
     */
    async buildImage({ name, operationId }: { name: string; operationId: string }): Promise<{ image: string; digest: string; layers: string[] }> {
      const record = await mustGet(name);
      const beat = setInterval(() => heartbeatSafe('build'), 5000);
      try {
        const deps = await buildDependencyLayer({ requirements: requirementsOf(record), cacheDir });
        const runtime = await buildRuntimeLayer({ runtimeDir, cacheDir });
        const code = await buildCodeLayer({ files: record.files, cacheDir });
        const layers = [deps, runtime, code];
        const config = imageConfig({ layers, handler: record.settings.handler, env: { KUMO_FUNCTION: name }, labels: { 'io.kumo.function': name, 'io.kumo.operation': operationId } });
        const { digest } = await pushImage(registry, repoOf(name), operationId, { config, layers });
        return { image: `${pullHost}/${repoOf(name)}@${digest}`, digest, layers: layers.map((layer) => layer.digest) };
      } finally {
        clearInterval(beat);
      }
    },

    /** Applies the revision to the functions cluster's Knative Serving (the namespace made first). */
    async deployRevision(input: { name: string; operationId: string; rancherId: string; namespace: string; image: string }): Promise<{ revision: string }> {
      const record = await mustGet(input.name);
      const knative = await knativeFor(input.rancherId);
      await knative.ensureNamespace(input.namespace);
      const revision = revisionName(input.name, input.operationId);
      await knative.applyRevision({
        namespace: input.namespace,
        service: input.name,
        revision,
        image: input.image,
        env: record.settings.env,
        containerConcurrency: record.settings.concurrency,
        timeoutSeconds: record.settings.timeoutSeconds,
        minScale: record.settings.minScale,
        maxScale: record.settings.maxScale,
        labels: { 'kumo.io/function': input.name, 'kumo.io/operation': input.operationId },
      });
      return { revision };
    },

    async revisionStatus(input: { name: string; rancherId: string; namespace: string; revision: string }): Promise<KnativeStatus | null> {
      return (await knativeFor(input.rancherId)).status(input.namespace, input.name, input.revision);
    },

    /** Puts the Service back on the revision that served before a failed deploy. */
    async restoreRevision(input: { name: string; rancherId: string; namespace: string; revision: string }): Promise<void> {
      await (await knativeFor(input.rancherId)).restoreRevision(input.namespace, input.name, input.revision);
    },

    async deleteService(input: { name: string; rancherId: string; namespace: string }): Promise<void> {
      await (await knativeFor(input.rancherId)).deleteService(input.namespace, input.name);
    },

    async recordFunction(input: { name: string; state: FunctionState; image?: string | null; revision?: string | null; url?: string | null; message: string | null }): Promise<void> {
      const { name, ...patch } = input;
      await store.updateFunction(name, patch);
    },

    async forgetFunction({ name }: { name: string }): Promise<void> {
      await store.deleteFunction(name);
    },
  }, { heartbeatEveryMs: 5_000 });
};

export type FunctionActivities = ReturnType<typeof createFunctionActivities>;

function heartbeatSafe(detail: string): void {
  try {
    heartbeat(detail);
  } catch {
    // outside an activity (a direct call)
  }
}
