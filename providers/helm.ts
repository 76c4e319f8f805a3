import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProviderError, type FailureType } from '../domain/errors.js';

/** A release as `helm list` / `helm status` report it. */
export interface HelmRelease {
  name: string;
  namespace: string;
  revision: number;
  /** deployed, failed, pending-install, pending-upgrade, pending-rollback, superseded, uninstalled… */
  status: string;
  chart: string;
  appVersion: string;
  updated: string;
}

/** One revision of a release, from `helm history`. */
export interface HelmRevision {
  revision: number;
  status: string;
  chart: string;
  description: string;
  updated: string;
}

export interface UpgradeRequest {
  release: string;
  namespace: string;
  /** A chart reference helm understands: a folder, a .tgz, `repo/name` or `oci://…`. */
  chart: string;
  /** A chart repository URL; `chart` is then the chart's name in it. */
  repo?: string;
  version?: string;
  values: Record<string, unknown>;
  /** Recorded as the revision's description: Kumo writes the operation's key here to find its own work again. */
  description?: string;
  /** Wait until the release's resources are ready, up to `timeoutSeconds`. */
  wait: boolean;
  timeoutSeconds: number;
}

/** The port Kumo uses to drive Helm on one cluster. */
export interface Helm {
  list(namespace?: string): Promise<HelmRelease[]>;
  /** The release, or null when there is none. */
  status(release: string, namespace: string): Promise<HelmRelease | null>;
  history(release: string, namespace: string): Promise<HelmRevision[]>;
  /** `helm upgrade --install`: installs or upgrades, idempotent for the same chart and values. */
  upgradeInstall(request: UpgradeRequest): Promise<HelmRelease>;
  rollback(release: string, namespace: string, revision: number, timeoutSeconds: number): Promise<void>;
  /** The rendered manifest of the release's current revision. */
  manifest(release: string, namespace: string): Promise<string>;
  /** Uninstalls; an absent release is fine. */
  uninstall(release: string, namespace: string, timeoutSeconds: number): Promise<void>;
}

/**
 * The real adapter: runs the `helm` binary against one cluster. The kubeconfig
 * (a secret) is written to a private temporary file for the duration of each
 * call only, and never appears in arguments, errors or logs.
 */
export function createHelmClient(options: { binary: string; kubeconfig: string; timeoutMs: number }): Helm {
  async function run(args: string[], { timeoutMs = options.timeoutMs, what }: { timeoutMs?: number; what: string }): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'kumo-helm-'));
    const kubeconfig = join(dir, 'kubeconfig');
    await writeFile(kubeconfig, options.kubeconfig, { mode: 0o600 });
    try {
      return await new Promise<string>((resolve, reject) => {
        execFile(
          options.binary,
          [...args, '--kubeconfig', kubeconfig],
          { timeout: timeoutMs, maxBuffer: 32 * 1024 * 1024, env: { ...process.env, HELM_CACHE_HOME: join(dir, 'cache'), HELM_CONFIG_HOME: join(dir, 'config'), HELM_DATA_HOME: join(dir, 'data') } },
          (err, stdout, stderr) => {
            if (!err) return resolve(stdout);
            const killed = (err as { killed?: boolean }).killed;
            const full = (stderr || err.message).split(kubeconfig).join('<kubeconfig>').trim();
            // Keep the message whole but bounded: schema errors list one field a line.
            const message = full.replace(/^Error: /, '').split('\n').slice(0, 12).join(' ').slice(0, 2000);
            reject(new ProviderError(killed ? 'Timeout' : classifyHelmError(full), `helm ${what}: ${killed ? `timed out after ${timeoutMs} ms` : message}`));
          },
        );
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** `helm list` filtered to the one release: unlike `helm status`, it names the chart and version. */
  async function status(release: string, namespace: string): Promise<HelmRelease | null> {
    const out = await run(['list', '--output', 'json', '--all', '--namespace', namespace, '--filter', `^${escapeRegex(release)}$`], { what: `status ${release}` });
    return (JSON.parse(out || '[]') as RawRelease[]).map(toRelease).find((candidate) => candidate.name === release) ?? null;
  }

  return {
    async list(namespace) {
      const out = await run(['list', '--output', 'json', '--all', ...(namespace ? ['--namespace', namespace] : ['--all-namespaces'])], { what: 'list' });
      return (JSON.parse(out || '[]') as RawRelease[]).map(toRelease);
    },
    status,
    async history(release, namespace) {
      const out = await run(['history', release, '--namespace', namespace, '--output', 'json', '--max', '50'], { what: `history ${release}` });
      return (JSON.parse(out) as Array<{ revision: number; status: string; chart: string; description: string; updated: string }>).map((entry) => ({ ...entry }));
    },
    async upgradeInstall(request) {
      const dir = await mkdtemp(join(tmpdir(), 'kumo-values-'));
      try {
        const valuesFile = join(dir, 'values.json');
        // JSON is valid YAML: values go through a file, never the command line.
        await writeFile(valuesFile, JSON.stringify(request.values), { mode: 0o600 });
        await run(
          [
            'upgrade',
            request.release,
            request.chart,
            '--install',
            '--namespace',
            request.namespace,
            '--create-namespace',
            '--values',
            valuesFile,
            '--output',
            'json',
            ...(request.version ? ['--version', request.version] : []),
            ...(request.repo ? ['--repo', request.repo] : []),
            ...(request.description ? ['--description', request.description] : []),
            ...(request.wait ? ['--wait', '--timeout', `${request.timeoutSeconds}s`] : []),
          ],
          { timeoutMs: (request.timeoutSeconds + 30) * 1000, what: `upgrade ${request.release}` },
        );
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
      const release = await status(request.release, request.namespace);
      if (!release) throw new ProviderError('Transient', `helm upgrade ${request.release}: no release afterwards`);
      return release;
    },
    async rollback(release, namespace, revision, timeoutSeconds) {
      // No --wait: Kumo checks the add-on's health itself, and a rollback to a revision that
      // cannot become ready must not hold the release lock for the whole timeout.
      await run(['rollback', release, String(revision), '--namespace', namespace, '--timeout', `${timeoutSeconds}s`], {
        timeoutMs: (timeoutSeconds + 30) * 1000,
        what: `rollback ${release}`,
      });
    },
    async manifest(release, namespace) {
      return run(['get', 'manifest', release, '--namespace', namespace], { what: `get manifest ${release}` });
    },
    async uninstall(release, namespace, timeoutSeconds) {
      await run(['uninstall', release, '--namespace', namespace, '--ignore-not-found', '--wait', '--timeout', `${timeoutSeconds}s`], {
        timeoutMs: (timeoutSeconds + 30) * 1000,
        what: `uninstall ${release}`,
      });
    },
  };
}

interface RawRelease {
  name: string;
  namespace: string;
  revision: string;
  status: string;
  chart: string;
  app_version: string;
  updated: string;
}

function toRelease(raw: RawRelease): HelmRelease {
  return { name: raw.name, namespace: raw.namespace, revision: Number(raw.revision), status: raw.status, chart: raw.chart, appVersion: raw.app_version, updated: isoTime(raw.updated) };
}

/** Helm lists times in Go's default format ("2026-11-30 19:55:01.123456789 +0000 UTC"); ISO 8601 is what everything else reads. */
export function isoTime(value: string): string {
  const match = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(\.\d+)? ([+-])(\d\d)(\d\d)/.exec(value);
  if (!match) return value;
  const [, date, time, fraction = '', sign, hours, minutes] = match;
  return new Date(`${date}T${time}${fraction.slice(0, 4)}${sign}${hours}:${minutes}`).toISOString();
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Helm's failures are text; these are the ones that matter. A release another
 * operation holds (pending-*) is transient; a chart or values helm refuses is
 * not worth retrying.
 */
export function classifyHelmError(message: string): FailureType {
  const text = message.toLowerCase();
  if (text.includes('another operation (install/upgrade/rollback) is in progress')) return 'Transient';
  if (text.includes('release: not found') || (text.includes('not found') && text.includes('release'))) return 'NotFound';
  if (text.includes('unauthorized') || text.includes('provide credentials') || text.includes('forbidden')) return 'Unauthorized';
  if (text.includes('values don\'t meet the specifications') || text.includes('parse error') || text.includes('chart requires') || text.includes('unable to build kubernetes objects') || text.includes('invalid')) return 'InvalidSpec';
  if (text.includes('no such file') || text.includes('failed to download') || text.includes('chart not found')) return 'NotFound';
  if (text.includes('context deadline exceeded') || text.includes('timed out waiting')) return 'Timeout';
  return 'Transient';
}
