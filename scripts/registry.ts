import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { stringify } from 'yaml';
import { freePort } from './tools.js';

/**
 * The OCI registry the embedded stack runs for the Function Service: CNCF
 * distribution 2.8 as Debian packages it (`docker-registry`, which
 * scripts/setup.sh installs). Kumo starts it itself, with its own config, on a
 * loopback port, storing blobs under `dataDir/storage`; the package's own
 * service (systemd unit or init script on :5000) is never used. A production
 * deployment points Kumo at a real registry's URL instead.
 *
 * No auth and plain HTTP: it listens on loopback only.
 */
export interface RegistryServer {
  /** e.g. http://127.0.0.1:41234 (no trailing slash). */
  url: string;
  /** host:port, as image references name the registry, e.g. 127.0.0.1:41234. */
  host: string;
  pid: number;
  /** SIGTERM, then SIGKILL when it has not exited within a few seconds. */
  close(): Promise<void>;
}

const DEFAULT_BINARY = '/usr/bin/docker-registry';
const READY_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;

/** The registry binary: `REGISTRY_BIN`, else Debian's `/usr/bin/docker-registry`, else one on PATH; null when there is none. */
export function registryBinary(): string | null {
  const fromEnv = process.env.REGISTRY_BIN;
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : null;
  if (existsSync(DEFAULT_BINARY)) return DEFAULT_BINARY;
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (!dir) continue;
    for (const name of ['docker-registry', 'registry']) {
      const candidate = join(dir, name);
      if (existsSync(candidate)) return candidate;
    }
  }
  return null;
}

/** The registry's config: distribution reads YAML, and JSON-compatible YAML is what `yaml` writes. */
function registryConfig(dataDir: string, host: string, port: number): string {
  return stringify({
    version: 0.1,
    log: { level: 'warn', accesslog: { disabled: true }, formatter: 'text' },
    storage: {
      filesystem: { rootdirectory: join(dataDir, 'storage') },
      delete: { enabled: true },
      // No stale-upload purging job in the background of tests and the dev stack.
      maintenance: { uploadpurging: { enabled: false } },
    },
    http: {
      addr: `${host.includes(':') ? `[${host}]` : host}:${port}`,
      // Signs upload state; a fresh one each start (uploads do not outlive a restart here).
      secret: randomBytes(24).toString('hex'),
      headers: { 'X-Content-Type-Options': ['nosniff'] },
    },
    health: { storagedriver: { enabled: false } },
  });
}

/** The environment without REGISTRY_*: distribution reads those as config overrides (REGISTRY_BIN would be refused as an unknown field). */
function registryEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('REGISTRY_')) env[key] = value;
  return env;
}

/**
 * Starts the registry and resolves once `GET /v2/` answers 200. Port 0 (the
 * default) picks a free port, retrying with another one should it be taken in
 * the meantime. Its output goes to `dataDir/registry.log`.
 */
export async function startRegistry(options: { dataDir: string; port?: number; host?: string }): Promise<RegistryServer> {
  const binary = registryBinary();
  if (!binary) throw new Error('no OCI registry binary: the Function Service needs Debian\'s docker-registry (run `npm run setup` as root) or REGISTRY_BIN');
  const dataDir = resolve(options.dataDir);
  const host = options.host ?? '127.0.0.1';
  await mkdir(join(dataDir, 'storage'), { recursive: true });
  const attempts = options.port ? 1 : 3;
  let lastError: Error | null = null;
  for (let attempt = 0; attempt < attempts; attempt++) {
    const port = options.port || (await freePort());
    try {
      return await launch(binary, dataDir, host, port);
    } catch (err) {
      lastError = err as Error;
      if (!/address already in use/i.test(lastError.message)) break;
    }
  }
  throw lastError ?? new Error('the registry did not start');
}

async function launch(binary: string, dataDir: string, host: string, port: number): Promise<RegistryServer> {
  const configPath = join(dataDir, 'registry.yml');
  await writeFile(configPath, registryConfig(dataDir, host, port), { mode: 0o600 });
  const logPath = join(dataDir, 'registry.log');
  const log = await open(logPath, 'a');
  const child = spawn(binary, ['serve', configPath], { cwd: dataDir, env: registryEnv(), stdio: ['ignore', log.fd, log.fd] });
  await log.close();
  const exited = new Promise<number | null>((resolveExit) => {
    child.once('exit', (code, signal) => resolveExit(code ?? (signal ? -1 : null)));
    child.once('error', () => resolveExit(-1));
  });
  let exitCode: number | null | undefined;
  void exited.then((code) => {
    exitCode = code;
  });

  const urlHost = host.includes(':') ? `[${host}]` : host;
  const url = `http://${urlHost}:${port}`;

  const close = async (): Promise<void> => {
    if (exitCode !== undefined || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const stopped = await Promise.race([exited.then(() => true), delay(STOP_TIMEOUT_MS).then(() => false)]);
    if (!stopped) {
      child.kill('SIGKILL');
      await exited;
    }
  };

  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (exitCode !== undefined) {
      const tail = (await readFile(logPath, 'utf8').catch(() => '')).trim().split('\n').slice(-5).join(' | ');
      throw new Error(`the registry exited (code ${exitCode}) before it answered: ${tail || 'no output'}`);
    }
    try {
      const response = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1_000) });
      await response.arrayBuffer();
      if (response.status === 200) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      await close();
      throw new Error(`the registry did not answer GET /v2/ within ${READY_TIMEOUT_MS} ms (see ${logPath})`);
    }
    await delay(50);
  }
  if (child.pid === undefined) throw new Error('the registry has no pid');
  return { url, host: `${urlHost}:${port}`, pid: child.pid, close };
}
