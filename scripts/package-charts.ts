import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compareSemver, type AddonVersion, type CatalogAddon as DomainCatalogAddon } from '../domain/addon.js';
import { helmBinary, projectRoot } from './tools.js';

/**
 * Packages the add-on catalog's charts into a Helm chart repository folder:
 * for every add-on of charts/catalog.json and every one of its versions,
 * `helm package charts/<chart> --version V --app-version A`, then
 * `helm repo index`. A stamp (a hash of the charts/ tree and of the helm
 * version) skips all the work when nothing changed.
 *
 *   node --import tsx scripts/package-charts.ts
 */

/** One published release of an add-on: the chart's version and the application's. */
export type CatalogVersion = AddonVersion;

/** One add-on of catalog.json (the values schema is read from its chart). */
export type CatalogAddon = Omit<DomainCatalogAddon, 'valuesSchema'>;

export interface Catalog {
  addons: CatalogAddon[];
}

/** The charts' sources and the catalog. */
export const chartsSourceDir = join(projectRoot, 'charts');
/** Where the packaged charts and index.yaml go: a static chart repository. */
export const packagedChartsDir = join(projectRoot, '.tools', 'charts');

/** Bump when what this script produces changes, so that stamps of older runs no longer match. */
const FORMAT = 'kumo-charts/1';
const STAMP_FILE = '.stamp';
const LOCK_FILE = join(projectRoot, '.tools', 'charts.lock');
const HELM_CONCURRENCY = 4;

/** Raised when there is no runnable helm binary. */
export class HelmMissingError extends Error {
  override name = 'HelmMissingError';
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$/;
const APP_VERSION = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;

export { compareSemver };

/** Reads and checks charts/catalog.json: every problem is reported, by where it is. */
export async function readCatalog(dir: string = chartsSourceDir): Promise<Catalog> {
  const file = join(dir, 'catalog.json');
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new Error(`charts/catalog.json: ${err instanceof Error ? err.message : String(err)}`);
  }
  const problems: string[] = [];
  const isString = (value: unknown): value is string => typeof value === 'string' && value.trim() !== '';
  const addons = (raw as { addons?: unknown } | null)?.addons;
  if (!Array.isArray(addons) || addons.length === 0) throw new Error('charts/catalog.json: "addons" must be a non-empty array');
  const seen = new Set<string>();
  for (const [index, entry] of addons.entries()) {
    const at = `addons[${index}]`;
    const addon = (entry ?? {}) as Partial<Record<keyof CatalogAddon, unknown>>;
    for (const key of ['name', 'chart', 'title', 'description', 'namespace', 'release'] as const) {
      if (!isString(addon[key])) problems.push(`${at}.${key}: a non-empty string is required`);
    }
    for (const key of ['name', 'chart', 'namespace', 'release'] as const) {
      const value = addon[key];
      if (isString(value) && (!DNS_LABEL.test(value) || value.length > (key === 'release' ? 53 : 63))) problems.push(`${at}.${key}: "${value}" is not a DNS label`);
    }
    if (isString(addon.name)) {
      if (seen.has(addon.name)) problems.push(`${at}.name: "${addon.name}" appears twice`);
      seen.add(addon.name);
    }
    if (isString(addon.chart) && DNS_LABEL.test(addon.chart)) {
      const chartYaml = await readFile(join(dir, addon.chart, 'Chart.yaml'), 'utf8').catch(() => null);
      if (chartYaml === null) problems.push(`${at}.chart: charts/${addon.chart}/Chart.yaml does not exist`);
      else if (/^name:\s*["']?([^"'\s]+)/m.exec(chartYaml)?.[1] !== addon.chart) problems.push(`${at}.chart: charts/${addon.chart}/Chart.yaml does not name the chart "${addon.chart}"`);
    }
    if (!Array.isArray(addon.versions) || addon.versions.length === 0) {
      problems.push(`${at}.versions: a non-empty array is required`);
      continue;
    }
    let previous: string | undefined;
    for (const [v, item] of (addon.versions as unknown[]).entries()) {
      const { version, appVersion } = (item ?? {}) as Partial<Record<keyof CatalogVersion, unknown>>;
      if (typeof version !== 'string' || !SEMVER.test(version)) {
        problems.push(`${at}.versions[${v}].version: ${JSON.stringify(version)} is not a semver version`);
        continue;
      }
      if (typeof appVersion !== 'string' || !APP_VERSION.test(appVersion)) problems.push(`${at}.versions[${v}].appVersion: ${JSON.stringify(appVersion)} is not a version`);
      if (previous !== undefined && compareSemver(previous, version) >= 0) problems.push(`${at}.versions[${v}].version: ${version} does not come after ${previous} (versions are ascending)`);
      previous = version;
    }
  }
  if (problems.length > 0) throw new Error(`charts/catalog.json:\n  ${problems.join('\n  ')}`);
  return raw as Catalog;
}

function run(binary: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(binary, args, { cwd: projectRoot, env, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) return resolvePromise(stdout);
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EACCES') return reject(new HelmMissingError(`helm (${binary}) cannot be run (${code}): run \`npm run setup\` (it builds one into .tools/bin) or set HELM_BIN`));
      reject(new Error(`helm ${args.join(' ')} failed: ${(stderr || err.message).trim()}`));
    });
  });
}

/** Runs `fn` over `items`, at most `limit` at a time. */
async function eachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** A hash of every file under `dir` (paths and contents, in a stable order). */
async function hashTree(dir: string): Promise<string> {
  const hash = createHash('sha256');
  const walk = async (current: string): Promise<void> => {
    const entries = (await readdir(current, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const path = join(current, entry.name);
      const rel = relative(dir, path).split(sep).join('/');
      if (entry.isDirectory()) {
        hash.update(`d\0${rel}\0`);
        await walk(path);
      } else if (entry.isFile() || entry.isSymbolicLink()) {
        hash.update(`f\0${rel}\0`);
        hash.update(await readFile(path));
        hash.update('\0');
      }
    }
  };
  await walk(dir);
  return hash.digest('hex');
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** True when the lock file's owner is gone (or the lock is too old to be real). */
async function lockIsStale(path: string): Promise<boolean> {
  try {
    const [text, info] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
    if (Date.now() - info.mtimeMs > 10 * 60_000) return true;
    const pid = Number(text.trim());
    if (!Number.isInteger(pid) || pid <= 0) return Date.now() - info.mtimeMs > 5_000; // being written, or garbage
    try {
      process.kill(pid, 0);
      return false;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ESRCH';
    }
  } catch {
    return false; // gone already: the next attempt takes it
  }
}

/** Runs `fn` holding the packaging lock, so that concurrent packagings (setup, tests, the stack) do not interleave. */
async function withLock<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      const handle = await open(LOCK_FILE, 'wx');
      try {
        await handle.writeFile(String(process.pid));
      } finally {
        await handle.close();
      }
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (await lockIsStale(LOCK_FILE)) {
        await rm(LOCK_FILE, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error('another chart packaging has held .tools/charts.lock for 3 minutes: remove that file if none is running');
      await sleep(100);
    }
  }
  try {
    return await fn();
  } finally {
    await rm(LOCK_FILE, { force: true });
  }
}

let inFlight: Promise<string> | undefined;

/**
 * Packages every version of every catalog add-on into .tools/charts and
 * indexes it; returns that folder. Does nothing when the stamp says the
 * charts/ tree and the helm version are those of the last packaging.
 */
export function packageCharts(options: { log?: (line: string) => void } = {}): Promise<string> {
  inFlight ??= doPackage(options.log ?? (() => {})).finally(() => {
    inFlight = undefined;
  });
  return inFlight;
}

async function doPackage(log: (line: string) => void): Promise<string> {
  let helm: string;
  try {
    helm = helmBinary();
  } catch (err) {
    throw new HelmMissingError(err instanceof Error ? err.message : String(err));
  }
  const outDir = packagedChartsDir;
  const env = { ...process.env };
  const helmVersion = (await run(helm, ['version'], env)).trim();
  const catalog = await readCatalog();
  const expected = catalog.addons.flatMap((addon) => addon.versions.map((v) => ({ addon, ...v, file: `${addon.chart}-${v.version}.tgz` })));

  const stampOf = async () => `${createHash('sha256').update(`${FORMAT}\0${helmVersion}\0${await hashTree(chartsSourceDir)}`).digest('hex')}\n`;
  const upToDate = async (stamp: string): Promise<boolean> => {
    const current = await readFile(join(outDir, STAMP_FILE), 'utf8').catch(() => '');
    if (current !== stamp) return false;
    const present = new Set(await readdir(outDir).catch(() => [] as string[]));
    return present.has('index.yaml') && expected.every((entry) => present.has(entry.file));
  };
  if (await upToDate(await stampOf())) return outDir;

  await mkdir(join(projectRoot, '.tools'), { recursive: true });
  return withLock(async () => {
    const stamp = await stampOf(); // again: the tree may have changed, or another process packaged meanwhile
    if (await upToDate(stamp)) return outDir;
    const work = await mkdtemp(join(projectRoot, '.tools', 'charts-build-'));
    try {
      // Helm writes nothing outside this build folder.
      const helmEnv = { ...env, HELM_CACHE_HOME: join(work, 'home', 'cache'), HELM_CONFIG_HOME: join(work, 'home', 'config'), HELM_DATA_HOME: join(work, 'home', 'data') };
      const built = join(work, 'out');
      await mkdir(built);
      await eachLimited(expected, HELM_CONCURRENCY, async (entry) => {
        await run(helm, ['package', join('charts', entry.addon.chart), '--version', entry.version, '--app-version', entry.appVersion, '--destination', built], helmEnv);
      });
      await run(helm, ['repo', 'index', built], helmEnv);

      // Into place: archives first, the index next, the stamp last, so that a
      // reader never sees an index naming an archive that is not there yet.
      await mkdir(outDir, { recursive: true });
      await rm(join(outDir, STAMP_FILE), { force: true });
      const files = await readdir(built);
      for (const file of files.filter((name) => name.endsWith('.tgz'))) await rename(join(built, file), join(outDir, file));
      await rename(join(built, 'index.yaml'), join(outDir, 'index.yaml'));
      const keep = new Set([...files, STAMP_FILE]);
      for (const stale of await readdir(outDir)) if (!keep.has(stale)) await rm(join(outDir, stale), { recursive: true, force: true });
      await writeFile(join(outDir, STAMP_FILE), stamp);
      log(`packaged ${expected.length} chart versions (${catalog.addons.map((a) => `${a.name} ${a.versions.map((v) => v.version).join('/')}`).join(', ')}) into ${relative(projectRoot, outDir)}`);
      return outDir;
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
}

const invokedDirectly = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  packageCharts({ log: (line) => process.stderr.write(`[charts] ${line}\n`) }).catch((err: unknown) => {
    process.stderr.write(`[charts] ${err instanceof HelmMissingError ? 'helm is missing: ' : 'packaging failed: '}${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
