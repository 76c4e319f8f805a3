import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { failureTypes } from '../domain/errors.js';
import { createHelmClient, type Helm } from '../providers/helm.js';
import { helmBinary } from '../scripts/tools.js';
import type { TestStack } from '../test/helpers/stack.js';

/**
 * What the chaos trials share: the stack, JSON helpers for the API and the
 * simulator, bounded waits, and the views of Rancher (the simulator's admin
 * state), Helm (the real binary against a simulated cluster) and the registry
 * (its storage folder and tags) the invariants are checked against.
 */

/**
 * Loose JSON from HTTP answers, as the tests read it (test/ turns no-explicit-any
 * off for the same reason); the invariants check the fields they use.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any;

/** Timing that keeps every operation short but still stepwise, so a kill lands inside one. */
export const chaosEnv: Record<string, string> = {
  SIM_CLUSTER_PROVISION_MS: '1500',
  SIM_NODE_BOOT_MS: '1000',
  SIM_NODE_REMOVE_MS: '500',
  SIM_SNAPSHOT_MS: '800',
  SIM_RESTORE_MS: '1500',
  SIM_NODE_UPGRADE_MS: '600',
  SIM_WORKLOAD_READY_MS: '1000',
  KUMO_POLL_INTERVAL_MS: '250',
  KUMO_ADDON_POLL_S: '1',
  KUMO_ADDON_HEALTH_TIMEOUT_S: '120',
  KUMO_FUNCTION_READY_TIMEOUT_S: '60',
  // Only the runs the trials start: the scheduled reconcile would race them for the same clusters.
  KUMO_ADDON_RECONCILE_INTERVAL_S: '86400',
  KUMO_HEALTH_SWEEP_INTERVAL_S: '86400',
};

export interface OperationView {
  id: string;
  kind: string;
  target: string;
  status: 'running' | 'succeeded' | 'failed' | 'cancelled';
  step: string | null;
  detail?: string;
  steps: Array<{ name: string; status: string; detail?: string }>;
  failure: { step: string; type: string; message: string; attempts: number } | null;
  result?: unknown;
  startedAt: string;
  finishedAt: string | null;
  workflowId: string;
  runId: string | null;
}

export interface SimNode {
  id: string;
  hostname: string;
  clusterId: string;
  nodePoolId: string | null;
  state: string;
  info?: { kubernetes?: { kubeletVersion?: string } };
}
export interface SimState {
  clusters: Array<{ id: string; name: string; state: string; labels?: Record<string, string> }>;
  nodePools: Array<{ id: string; name: string; clusterId: string; quantity: number; state?: string }>;
  nodes: SimNode[];
  etcdBackups: Array<{ id: string; name: string; clusterId: string; state: string }>;
}

/** How an ended operation counts. */
export type Outcome = 'succeeded' | 'failed-typed' | 'untyped' | 'cancelled' | 'stuck';

const typed = new Set<string>(failureTypes.filter((type) => type !== 'Internal'));

/** Succeeded; failed with one of Kumo's failure types (not `Internal`, which means unclassified) and the step named; or not. */
export function outcomeOf(operation: OperationView | null): Outcome {
  if (!operation || operation.status === 'running') return 'stuck';
  if (operation.status === 'succeeded') return 'succeeded';
  if (operation.status === 'cancelled') return 'cancelled';
  const failure = operation.failure;
  return failure && typed.has(failure.type) && typeof failure.step === 'string' && failure.step.length > 0 ? 'failed-typed' : 'untyped';
}

export function describeOperation(operation: OperationView | null): string {
  if (!operation) return 'no answer';
  const failure = operation.failure ? ` ${operation.failure.type} at ${operation.failure.step}: ${operation.failure.message.slice(0, 300)}` : '';
  return `${operation.kind} ${operation.id} ${operation.status}${operation.status === 'running' ? ` (step ${operation.step ?? '-'}${operation.detail ? `: ${operation.detail}` : ''})` : ''}${failure}`;
}

export const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, Math.max(0, ms)));

/** An API call that did not answer as expected (a start refused, say). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class Chaos {
  /** Kumo cluster ids the trials use, by slot: slot i is `chaos-<i>` unless it had to be replaced. */
  readonly fleet = new Map<number, string>();
  private expectedDown = false;
  /** Set once the stack is being stopped: a worker gone from then on is not replaced. */
  private stopping = false;
  private restarting: Promise<void> | null = null;
  /** Worker exits nobody asked for (a crash on its own), with when. */
  readonly unexpectedWorkerExits: string[] = [];

  constructor(
    readonly stack: TestStack,
    readonly log: (line: string) => void = (line) => process.stderr.write(`[chaos] ${line}\n`),
  ) {}

  get rancherToken(): string {
    return this.stack.env.RANCHER_TOKEN ?? 'kumo-sim-token';
  }

  /** A JSON call to the API that must answer `expect`; the body otherwise becomes an ApiError. */
  async call(method: string, path: string, body?: unknown, expect: number[] = [200, 202]): Promise<Json> {
    const response = await this.stack.api(path, { method, ...(body === undefined ? {} : { body }) });
    if (!expect.includes(response.status)) throw new ApiError(response.status, `${method} ${path}: ${response.status} ${JSON.stringify(response.body).slice(0, 500)}`);
    return response.body;
  }

  /** Starts an operation over the API and returns its id. */
  async startOperation(method: string, path: string, body?: unknown): Promise<string> {
    const answer = await this.call(method, path, body, [202]);
    const id = answer?.operation?.id ?? answer?.id;
    if (typeof id !== 'string') throw new ApiError(202, `${method} ${path}: no operation in ${JSON.stringify(answer).slice(0, 300)}`);
    return id;
  }

  async operation(id: string): Promise<OperationView> {
    return (await this.call('GET', `/v1/operations/${id}`)) as OperationView;
  }

  /**
   * Polls the operation until it has ended, at most `timeoutMs`; returns its last
   * view (still `running` when it did not end in time: stuck). Restarts a worker
   * that died on its own meanwhile, and records that.
   */
  async waitForEnd(id: string, timeoutMs: number): Promise<OperationView | null> {
    const deadline = Date.now() + timeoutMs;
    let last: OperationView | null = null;
    for (;;) {
      await this.ensureWorker();
      try {
        last = await this.operation(id);
        if (last.status !== 'running') return last;
      } catch {
        // the API may be briefly unable to answer (Temporal restarting): ask again
      }
      if (Date.now() > deadline) return last;
      await sleep(500);
    }
  }

  /** Waits until an operation has succeeded; anything else throws (for setting up, not for trials). */
  async mustSucceed(id: string, what: string, timeoutMs = 300_000): Promise<OperationView> {
    const operation = await this.waitForEnd(id, timeoutMs);
    if (operation?.status !== 'succeeded') throw new Error(`${what}: ${describeOperation(operation)}`);
    return operation;
  }

  /** kill -9 of the worker, and a new one. */
  async killWorker(): Promise<void> {
    await this.disrupt(async () => {
      await this.stack.killWorker();
      await this.stack.startWorker();
    });
  }

  /** The Temporal dev server killed and started again on the same database; a worker that did not survive it is replaced (and recorded). */
  async restartTemporal(): Promise<void> {
    await this.disrupt(() => this.stack.restartTemporal());
  }

  private async disrupt(what: () => Promise<void>): Promise<void> {
    await this.restarting;
    this.expectedDown = true;
    try {
      await what();
    } finally {
      this.expectedDown = false;
    }
  }

  /** From now on, a worker that exits is expected (the stack is being stopped). */
  shutdown(): void {
    this.stopping = true;
  }

  /** Starts a worker when the current one has exited without being asked to. */
  async ensureWorker(): Promise<void> {
    if (this.expectedDown || this.stopping) return;
    if (this.restarting) return this.restarting;
    const worker = this.stack.worker();
    if (worker && worker.exitCode === null && worker.signalCode === null) return;
    this.unexpectedWorkerExits.push(`${new Date().toISOString()}: worker ${worker ? `exited (${worker.exitCode ?? worker.signalCode})` : 'missing'}`);
    this.log(`the worker is gone without a kill (${worker ? `exit ${worker.exitCode ?? worker.signalCode}` : 'none'}): starting another`);
    this.restarting = this.stack
      .startWorker()
      .then(() => undefined)
      .finally(() => {
        this.restarting = null;
      });
    return this.restarting;
  }

  // ---- the Rancher stand-in ------------------------------------------------

  /** Every cluster, pool, node and etcd snapshot the simulator has (never faulted, so usable while faults are on). */
  async simState(): Promise<SimState> {
    return (await this.stack.sim('/admin/state')) as SimState;
  }

  async callCounts(): Promise<Record<string, number>> {
    return ((await this.stack.sim('/admin/calls')) as { byRoute: Record<string, number> }).byRoute;
  }

  /** A /v3 call with Kumo's Rancher token; faulted like Kumo's own calls while faults are on, so 5xx and 429 are tried again. */
  async rancher(method: string, path: string, body?: unknown): Promise<Json> {
    for (let attempt = 1; ; attempt++) {
      const response = await fetch(`${this.stack.simUrl}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.rancherToken}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await response.text();
      if (response.ok) return text ? JSON.parse(text) : undefined;
      if ((response.status >= 500 || response.status === 429) && attempt < 20) {
        await sleep(200);
        continue;
      }
      throw new Error(`${method} ${path}: ${response.status} ${text.slice(0, 300)}`);
    }
  }

  // ---- Kumo's view ---------------------------------------------------------

  async cluster(name: string): Promise<Json | null> {
    const response = await this.stack.api(`/v1/clusters/${name}`);
    if (response.status === 404) return null;
    if (response.status !== 200) throw new ApiError(response.status, `GET /v1/clusters/${name}: ${response.status}`);
    return response.body;
  }

  async rancherIdOf(name: string): Promise<string> {
    const cluster = await this.cluster(name);
    const id = cluster?.rancher?.id;
    if (typeof id !== 'string') throw new Error(`cluster ${name} has no Rancher id`);
    return id;
  }

  // ---- Helm on a simulated cluster -----------------------------------------

  async helm(cluster: string): Promise<Helm> {
    const rancherId = await this.rancherIdOf(cluster);
    const { config } = (await this.rancher('POST', `/v3/clusters/${rancherId}?action=generateKubeconfig`, {})) as { config: string };
    return createHelmClient({ binary: helmBinary(), kubeconfig: config, timeoutMs: 60_000 });
  }

  // ---- the OCI registry ----------------------------------------------------

  /** Manifests the registry stores for a function's repository (one file per distinct manifest). */
  manifestCount(fn: string): number {
    const dir = join(this.stack.dataDir, 'registry', 'storage', 'docker', 'registry', 'v2', 'repositories', 'functions', fn, '_manifests', 'revisions', 'sha256');
    return existsSync(dir) ? readdirSync(dir).length : 0;
  }

  async registryTags(fn: string): Promise<string[]> {
    if (!this.stack.registryUrl) return [];
    const response = await fetch(`${this.stack.registryUrl}/v2/functions/${fn}/tags/list`);
    if (response.status === 404) return [];
    return (((await response.json()) as { tags?: string[] | null }).tags ?? []) as string[];
  }

  /** The digest a tag points at. */
  async registryDigest(fn: string, tag: string): Promise<string | null> {
    if (!this.stack.registryUrl) return null;
    const response = await fetch(`${this.stack.registryUrl}/v2/functions/${fn}/manifests/${tag}`, {
      method: 'HEAD',
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    return response.ok ? response.headers.get('docker-content-digest') : null;
  }
}
