import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startStack, type Stack } from '../../scripts/stack.js';
import { freePort } from '../../scripts/tools.js';
import { saveHistory } from './histories.js';

/** Simulator and poll timings that keep end-to-end tests quick but still stepwise. */
export const fastTiming = {
  SIM_CLUSTER_PROVISION_MS: '800',
  SIM_NODE_BOOT_MS: '600',
  SIM_NODE_REMOVE_MS: '300',
  KUMO_POLL_INTERVAL_MS: '200',
};

export interface TestStack extends Stack {
  dataDir: string;
  /** The admin token the stack was started with; `api()` sends it unless told otherwise. */
  adminToken: string;
  ports: { api: number; sim: number; temporal: number };
  /** JSON over HTTP against the API. */
  api(path: string, init?: { method?: string; body?: unknown; raw?: string; headers?: Record<string, string>; token?: string | null }): Promise<{ status: number; headers: Headers; body: any }>;
  /** The simulator's admin API. */
  sim(path: string, init?: { method?: string; body?: unknown }): Promise<any>;
  /** Stops the stack and removes its data. */
  destroy(): Promise<void>;
}

/**
 * The `npm start` stack on free ports and a temporary data folder, with the
 * Temporal dev server persisting to SQLite (so a restart test can restart it).
 */
export async function startTestStack(options: { dataDir?: string; ports?: TestStack['ports']; env?: Record<string, string>; rabbitmq?: boolean } = {}): Promise<TestStack> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'kumo-test-'));
  const ports = options.ports ?? { api: await freePort(), sim: await freePort(), temporal: await freePort() };
  // The first start of a data folder makes this the admin token; a restart on the same folder keeps it.
  const tokenFile = join(dataDir, 'test-admin-token');
  const adminToken = options.env?.KUMO_ADMIN_TOKEN ?? (existsSync(tokenFile) ? readFileSync(tokenFile, 'utf8') : `kumo_test_${randomBytes(16).toString('hex')}`);
  writeFileSync(tokenFile, adminToken, { mode: 0o600 });
  const stack = await startStack({
    dataDir,
    apiPort: ports.api,
    simPort: ports.sim,
    temporal: { mode: 'embedded', port: ports.temporal, uiPort: 0, ui: false, persist: true },
    sim: true,
    // A broker only for the tests of the OpenStack event source: it costs seconds and memory.
    rabbitmqPort: options.rabbitmq ? 0 : false,
    // Health sweeps only where a test asks for them: elsewhere their events would mix with the test's own.
    env: { ...fastTiming, KUMO_HEALTH_SWEEP_INTERVAL_S: '86400', KUMO_ADMIN_TOKEN: adminToken, ...options.env },
    ...(process.env.KUMO_TEST_ECHO ? { echo: process.stderr } : {}),
  });
  return {
    ...stack,
    dataDir,
    ports,
    adminToken,
    async api(path, init = {}) {
      const headers: Record<string, string> = { ...init.headers };
      const token = init.token === undefined ? adminToken : init.token;
      if (token !== null) headers.authorization ??= `Bearer ${token}`;
      let body: string | undefined = init.raw;
      if (init.body !== undefined) {
        body = JSON.stringify(init.body);
        headers['content-type'] ??= 'application/json';
      }
      const response = await fetch(`${stack.apiUrl}${path}`, { method: init.method ?? (body ? 'POST' : 'GET'), headers, body });
      const text = await response.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
      return { status: response.status, headers: response.headers, body: parsed };
    },
    async sim(path, init = {}) {
      const response = await fetch(`${stack.simUrl}${path}`, {
        method: init.method ?? (init.body === undefined ? 'GET' : 'PUT'),
        headers: init.body === undefined ? {} : { 'content-type': 'application/json' },
        body: init.body === undefined ? undefined : JSON.stringify(init.body),
      });
      if (!response.ok) throw new Error(`simulator ${path}: ${response.status} ${await response.text()}`);
      const text = await response.text();
      return text ? JSON.parse(text) : undefined;
    },
    async destroy() {
      await stack.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Waits until an operation has ended and returns it. */
export async function waitForOperation(stack: TestStack, id: string, timeoutMs = 60_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { status, body } = await stack.api(`/v1/operations/${id}`);
    if (status !== 200) throw new Error(`GET /v1/operations/${id}: ${status} ${JSON.stringify(body)}`);
    if (body.status !== 'running') return body;
    if (Date.now() > deadline) throw new Error(`operation ${id} still running after ${timeoutMs} ms: ${JSON.stringify(body)}`);
    await new Promise((done) => setTimeout(done, 250));
  }
}

/** A small valid cluster spec. */
export function clusterSpec(name: string, overrides: Record<string, unknown> = {}) {
  return {
    name,
    kubernetesVersion: 'v1.30.6-rancher1-1',
    nodePools: [
      { name: 'control', roles: ['etcd', 'controlplane'], quantity: 1 },
      { name: 'workers', roles: ['worker'], quantity: 2 },
    ],
    ...overrides,
  };
}

/** Saves an operation's workflow history for the replay test (see saveHistory). */
export function recordHistory(stack: TestStack, name: string, operation: { workflowId: string; runId: string | null }): void {
  saveHistory(stack.temporalAddress, name, operation);
}
