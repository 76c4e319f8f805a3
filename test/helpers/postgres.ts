/**
 * A throw-away PostgreSQL server for tests: Debian's server binaries, a temp
 * data directory, trust auth, loopback only. Nothing outlives `stop()`.
 *
 * PostgreSQL refuses to run as root, so when the tests run as root the server
 * (and initdb) run as the `postgres` system user, or `nobody` when that user
 * does not exist. They are spawned with that user's uid/gid directly rather
 * than through `runuser`: runuser answers a forwarded SIGTERM with SIGKILL two
 * seconds later, which would cut a clean shutdown short, and the pid we signal
 * is then the postmaster's own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from '../../scripts/tools.js';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

export type PostgresServer = { url: string; stop(): Promise<void> };
export type PostgresSkip = { skipped: string };

const PG_ROOT = '/usr/lib/postgresql';
const READY_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;
const DATABASE = 'kumo_test';

/** The bin directory of the newest installed PostgreSQL server, or null. */
export function findPostgresBin(): string | null {
  let versions: string[];
  try {
    versions = readdirSync(PG_ROOT);
  } catch {
    return null;
  }
  const usable = versions
    .filter((v) => /^\d+(\.\d+)?$/.test(v) && existsSync(join(PG_ROOT, v, 'bin', 'postgres')) && existsSync(join(PG_ROOT, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return usable[0] ? join(PG_ROOT, usable[0], 'bin') : null;
}

/** uid/gid of a system user from /etc/passwd, or null when it does not exist. */
function systemUser(name: string): { uid: number; gid: number } | null {
  let passwd: string;
  try {
    passwd = readFileSync('/etc/passwd', 'utf8');
  } catch {
    return null;
  }
  for (const line of passwd.split('\n')) {
    const [user, , uid, gid] = line.split(':');
    if (user === name && uid !== undefined && gid !== undefined) return { uid: Number(uid), gid: Number(gid) };
  }
  return null;
}


interface RunAs {
  uid: number;
  gid: number;
}

/** Runs a command to completion; rejects with its output when it fails or exceeds `timeoutMs`. */
function run(command: string, args: string[], runAs: RunAs | null, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C', LANG: 'C' },
      ...(runAs ?? {}),
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(output);
      else reject(new Error(`${command} ${args.join(' ')} exited with ${code ?? signal}: ${output.trim()}`));
    });
  });
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (exited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, timeoutMs);
    const onExit = () => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

/**
 * Starts a private PostgreSQL server with one empty database and answers its URL,
 * or why it cannot (no server binaries, no unprivileged user to run it as).
 */
export async function startPostgres(): Promise<PostgresServer | PostgresSkip> {
  const bin = findPostgresBin();
  if (!bin) return { skipped: `PostgreSQL server not installed: no ${PG_ROOT}/<version>/bin/postgres (run \`bash scripts/setup.sh --test\`)` };

  let runAs: RunAs | null = null;
  if (process.getuid?.() === 0) {
    runAs = systemUser('postgres') ?? systemUser('nobody');
    if (!runAs) return { skipped: 'PostgreSQL refuses to run as root and neither a "postgres" nor a "nobody" user exists' };
  }

  const root = mkdtempSync(join(tmpdir(), 'kumo-pg-'));
  const dataDir = join(root, 'data');
  const socketDir = join(root, 'socket');
  const cleanup = () => rmSync(root, { recursive: true, force: true });
  let server: ChildProcess | null = null;

  try {
    // Only the server's user may use the data directory; the root must be traversable for it.
    for (const dir of [dataDir, socketDir]) {
      mkdirSync(dir, { mode: 0o700 });
      if (runAs) chownSync(dir, runAs.uid, runAs.gid);
    }
    if (runAs) {
      chownSync(root, runAs.uid, runAs.gid);
      chmodSync(root, 0o700);
    }

    await run(join(bin, 'initdb'), ['-D', dataDir, '--auth=trust', '--username=postgres', '--encoding=UTF8', '--locale=C', '--no-sync'], runAs, 60_000);

    let lastError = '';
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      let log = '';
      const child = spawn(
        join(bin, 'postgres'),
        [
          '-D', dataDir,
          '-p', String(port),
          '-k', socketDir,
          '-c', 'listen_addresses=127.0.0.1',
          // A test database: speed over durability.
          '-c', 'fsync=off',
          '-c', 'synchronous_commit=off',
          '-c', 'full_page_writes=off',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C', LANG: 'C' }, ...(runAs ?? {}) },
      );
      child.stdout?.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)));
      child.stderr?.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)));
      child.once('error', (err) => (log += `\nspawn failed: ${err.message}`));
      server = child;
      // Should the test process die without running its hooks, take the server with it.
      const killOnExit = () => child.kill('SIGKILL');
      process.once('exit', killOnExit);
      child.once('exit', () => process.off('exit', killOnExit));

      const deadline = Date.now() + READY_TIMEOUT_MS;
      let ready = false;
      while (!ready && !exited(child) && Date.now() < deadline) {
        try {
          await run(join(bin, 'pg_isready'), ['-q', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres'], null, 5_000);
          ready = true;
        } catch {
          await delay(100);
        }
      }
      if (ready) {
        await run(join(bin, 'createdb'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', DATABASE], null, 30_000);
        const started = child;
        let stopping: Promise<void> | null = null;
        return {
          url: `postgres://postgres@127.0.0.1:${port}/${DATABASE}`,
          stop: () => (stopping ??= stopServer(started).finally(cleanup)),
        };
      }
      lastError = exited(child) ? `postgres exited with ${child.exitCode ?? child.signalCode}: ${log.trim()}` : `postgres did not answer pg_isready within ${READY_TIMEOUT_MS} ms: ${log.trim()}`;
      await stopServer(child);
      server = null;
    }
    throw new Error(`could not start PostgreSQL: ${lastError}`);
  } catch (err) {
    if (server) await stopServer(server);
    cleanup();
    throw err;
  }
}

/** SIGTERM (smart shutdown), then SIGKILL if it has not exited in time. */
async function stopServer(child: ChildProcess): Promise<void> {
  if (exited(child)) return;
  child.kill('SIGTERM');
  if (await waitForExit(child, STOP_TIMEOUT_MS)) return;
  child.kill('SIGKILL');
  await waitForExit(child, 5_000);
}
