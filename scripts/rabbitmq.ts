import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, open, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer, connect as tcpConnect } from 'node:net';
import { delimiter, join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import amqp from 'amqplib';
import { freePort } from './tools.js';

/**
 * The RabbitMQ broker the embedded stack runs for the OpenStack event source:
 * Debian's `rabbitmq-server` 3.10 package (scripts/setup.sh installs it). Kumo
 * starts it itself, as the user it runs as, with its own config and a private
 * `epmd`, on loopback ports, keeping the node's data under `dataDir/mnesia`; the
 * package's own service and its `rabbitmq` user are never used. A production
 * deployment points Kumo at the cloud's real broker instead.
 *
 * The default `guest`/`guest` user, allowed over loopback (`loopback_users = none`):
 * it listens on 127.0.0.1 only.
 *
 * Each process runs in a process group of its own, so that stopping reaches the
 * `rabbitmq-server` shell wrapper, the `beam.smp` it starts and the helpers that
 * one starts. Should the Node process die without closing the broker, an `exit`
 * hook SIGKILLs the groups, and a watchdog inside each group (a `sh` loop polling
 * Node's pid every second) kills its group when Node is gone without that hook
 * having run (SIGKILL, a signal's default action).
 */
export interface RabbitMQServer {
  /** amqp://guest:guest@127.0.0.1:<port> */
  url: string;
  port: number;
  /** SIGTERM the broker (clean shutdown), keeping its data dir: start() brings the same node back on the same port with its durable queues and persistent messages. */
  stop(): Promise<void>;
  /** Starts it again after stop(), on the same port, same data; resolves when it accepts AMQP connections. */
  start(): Promise<void>;
  /** Kill -9 the broker's process group (a crash), for chaos trials. */
  kill(): Promise<void>;
  /** Stops the broker and its epmd for good. */
  close(): Promise<void>;
}

const DEFAULT_BINARY = '/usr/lib/rabbitmq/bin/rabbitmq-server';
const READY_TIMEOUT_MS = 60_000;
const EPMD_READY_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 15_000;
const KILL_TIMEOUT_MS = 5_000;
const CONNECT_TIMEOUT_MS = 2_000;
const ATTEMPTS = 3;
const LOG_TAIL_LINES = 6;
const ADDRESS_IN_USE = /eaddrinuse|address already in use/i;

/** A port was taken ("eaddrinuse"): the AMQP listener's (`amqp`), or the distribution's or epmd's. */
class PortInUseError extends Error {
  constructor(
    message: string,
    readonly amqp: boolean,
  ) {
    super(message);
  }
}

/** The broker's start script: `RABBITMQ_SERVER`, else Debian's `/usr/lib/rabbitmq/bin/rabbitmq-server`; null when there is none. */
export function rabbitmqBinary(): string | null {
  const fromEnv = process.env.RABBITMQ_SERVER;
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : null;
  return existsSync(DEFAULT_BINARY) ? DEFAULT_BINARY : null;
}

/** Erlang's port mapper daemon: the one on PATH, else the one Debian's erlang-base ships. */
function epmdBinary(): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, 'epmd');
    if (existsSync(candidate)) return candidate;
  }
  return existsSync('/usr/lib/erlang/bin/epmd') ? '/usr/lib/erlang/bin/epmd' : null;
}

// ---------------------------------------------------------------------------
// Process groups

/**
 * `sh -c` script that starts a watchdog in the background, then execs the
 * command (which keeps the group's pid). The watchdog shares the group, so
 * signalling the group ends it too; when Node's pid is gone it SIGKILLs the group.
 */
const GUARD_SCRIPT = [
  'parent=$1; shift',
  '( while kill -0 "$parent" 2>/dev/null; do sleep 1; done; kill -9 0 ) </dev/null >/dev/null 2>&1 &',
  'exec "$@"',
].join('\n');

/** Groups that may still have processes: SIGKILLed when Node exits. */
const liveGroups = new Set<number>();
let exitHookInstalled = false;

function killLiveGroupsSync(): void {
  for (const pgid of liveGroups) signalGroup(pgid, 'SIGKILL');
  liveGroups.clear();
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // The group is gone already.
  }
}

/** A live (not zombie) process, from /proc/<pid>/stat. */
interface ProcessEntry {
  pid: number;
  ppid: number;
  pgrp: number;
}

/**
 * The live processes, from /proc (Linux); null where there is none. Zombies are
 * left out: one whose parent does not reap it (PID 1 in some containers) is dead
 * but would look alive to a signal 0 forever.
 */
function liveProcesses(): ProcessEntry[] | null {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return null;
  }
  const processes: ProcessEntry[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let text: string;
    try {
      text = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // Exited meanwhile.
    }
    // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') continue;
    processes.push({ pid: Number(entry), ppid: Number(fields[1]), pgrp: Number(fields[2]) });
  }
  return processes;
}

/**
 * The group's live processes and their descendants: beam.smp's `erl_child_setup`
 * calls setsid, leaving the group, and goes when beam.smp does. Null without /proc.
 */
function groupTree(pgid: number, processes = liveProcesses()): Set<number> | null {
  if (!processes) return null;
  const tree = new Set(processes.filter((p) => p.pgrp === pgid).map((p) => p.pid));
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of processes) {
      if (!tree.has(p.pid) && tree.has(p.ppid)) {
        tree.add(p.pid);
        grew = true;
      }
    }
  }
  return tree;
}

/** Whether the group (or, without /proc, any process of it) still has a live process. */
function groupAlive(pgid: number): boolean {
  const tree = groupTree(pgid);
  if (tree) return tree.size > 0;
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

interface Group {
  /** The group's leader, and so the group id. */
  pid: number;
  /** Resolves with the leader's exit code (or signal name) once it has exited. */
  exited: Promise<number | string>;
  /** The leader's exit code or signal name; undefined while it runs. */
  exitStatus(): number | string | undefined;
}

async function spawnGroup(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, logPath: string): Promise<Group> {
  const log = await open(logPath, 'a');
  let child;
  try {
    child = spawn('/bin/sh', ['-c', GUARD_SCRIPT, 'kumo-guard', String(process.pid), command, ...args], {
      cwd,
      env,
      detached: true,
      stdio: ['ignore', log.fd, log.fd],
    });
  } finally {
    await log.close();
  }
  let status: number | string | undefined;
  const exited = new Promise<number | string>((resolveExit) => {
    child.once('exit', (code, signal) => {
      status = code ?? signal ?? -1;
      resolveExit(status);
    });
    child.once('error', (err) => {
      status = `spawn error: ${err.message}`;
      resolveExit(status);
    });
  });
  const pid = child.pid;
  if (pid === undefined) {
    await exited;
    throw new Error(`could not start ${command}: ${String(status)}`);
  }
  // The group outlives its leader only when something escaped; forget it once it is empty.
  void exited.then(() => {
    if (!groupAlive(pid)) liveGroups.delete(pid);
  });
  liveGroups.add(pid);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', killLiveGroupsSync);
  }
  return { pid, exited, exitStatus: () => status };
}

/**
 * Polls until the leader has exited and neither its group nor any process of
 * `known` (adding descendants as they show) is alive; false on timeout.
 */
async function waitGone(group: Group, known: Set<number>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const processes = liveProcesses();
    if (processes) {
      for (const pid of groupTree(group.pid, processes) ?? []) known.add(pid);
      const live = new Set(processes.map((p) => p.pid));
      if (group.exitStatus() !== undefined && ![...known].some((pid) => live.has(pid))) return true;
    } else if (group.exitStatus() !== undefined && !groupAlive(group.pid)) {
      return true;
    }
    if (Date.now() > deadline) return false;
    await delay(50);
  }
}

/** Signals the whole group and waits for it (and its descendants) to be gone; SIGKILL to all of them when `signal` did not end them in time. */
async function terminate(group: Group, signal: NodeJS.Signals, timeoutMs: number): Promise<void> {
  const known = groupTree(group.pid) ?? new Set<number>();
  signalGroup(group.pid, signal);
  if (!(await waitGone(group, known, timeoutMs))) {
    signalGroup(group.pid, 'SIGKILL');
    for (const pid of known) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
    await waitGone(group, known, KILL_TIMEOUT_MS);
  }
  liveGroups.delete(group.pid);
}

// ---------------------------------------------------------------------------
// Logs and readiness

/** The log written since `offset` (this launch's part of the appended log). */
async function logSince(logPath: string, offset: number): Promise<string> {
  const text = await readFile(logPath).catch(() => Buffer.alloc(0));
  return text.subarray(Math.min(offset, text.length)).toString('utf8');
}

function tail(text: string): string {
  const lines = text.trim().split('\n').filter((line) => line.trim() !== '');
  return lines.slice(-LOG_TAIL_LINES).join(' | ') || 'no output';
}

async function logSize(logPath: string): Promise<number> {
  return (await stat(logPath).catch(() => null))?.size ?? 0;
}

function tcpAccepts(port: number): Promise<boolean> {
  return new Promise((resolveAccepts) => {
    const socket = tcpConnect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolveAccepts(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Whether nothing listens on the loopback port (a bind with SO_REUSEADDR, as the broker's own). */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolveFree) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolveFree(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolveFree(true)));
  });
}

/** A free loopback port not among `taken`. */
async function freePortExcept(taken: number[]): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const port = await freePort();
    if (!taken.includes(port)) return port;
  }
  throw new Error('no free port found');
}

// ---------------------------------------------------------------------------
// epmd and the broker

interface Ports {
  amqp: number;
  dist: number;
  epmd: number;
}

async function startEpmd(binary: string, dataDir: string, port: number): Promise<Group> {
  const logPath = join(dataDir, 'rabbitmq.log');
  const offset = await logSize(logPath);
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.ERL_EPMD_PORT;
  delete env.ERL_EPMD_ADDRESS;
  // In the foreground (no -daemon): a child of ours, gone when its group is.
  const group = await spawnGroup(binary, ['-port', String(port), '-address', '127.0.0.1'], dataDir, env, logPath);
  const deadline = Date.now() + EPMD_READY_TIMEOUT_MS;
  for (;;) {
    if (group.exitStatus() !== undefined) {
      await terminate(group, 'SIGKILL', KILL_TIMEOUT_MS);
      const output = await logSince(logPath, offset);
      const message = `epmd exited (code ${String(group.exitStatus())}) on port ${port}: ${tail(output)}`;
      // epmd finding something on its port exits 0 silently (it takes it for another epmd); a failed bind says so.
      if (group.exitStatus() === 0 || ADDRESS_IN_USE.test(output) || /bind/i.test(output)) throw new PortInUseError(`${message} (port taken: eaddrinuse)`, false);
      throw new Error(message);
    }
    if (await tcpAccepts(port)) return group;
    if (Date.now() > deadline) {
      await terminate(group, 'SIGKILL', KILL_TIMEOUT_MS);
      throw new Error(`epmd did not listen on port ${port} within ${EPMD_READY_TIMEOUT_MS} ms`);
    }
    await delay(50);
  }
}

/** The environment without RABBITMQ_* and epmd settings of the parent, plus ours. */
function brokerEnv(dataDir: string, ports: Ports): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('RABBITMQ_') && key !== 'ERL_EPMD_PORT' && key !== 'ERL_EPMD_ADDRESS' && key !== 'CONF_ENV_FILE') env[key] = value;
  }
  return {
    ...env,
    // The Erlang cookie is written to $HOME/.erlang.cookie.
    HOME: dataDir,
    ERL_EPMD_PORT: String(ports.epmd),
    RABBITMQ_NODENAME: `kumo-${ports.amqp}@localhost`,
    RABBITMQ_DIST_PORT: String(ports.dist),
    // Erlang distribution on loopback only, like everything else here.
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
    RABBITMQ_MNESIA_BASE: join(dataDir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dataDir, 'log'),
    RABBITMQ_LOGS: '-',
    RABBITMQ_CONFIG_FILE: join(dataDir, 'rabbitmq.conf'),
    // Never the system's /etc/rabbitmq/rabbitmq-env.conf or advanced.config.
    RABBITMQ_CONF_ENV_FILE: join(dataDir, 'rabbitmq-env.conf'),
    RABBITMQ_ADVANCED_CONFIG_FILE: join(dataDir, 'advanced.config'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dataDir, 'enabled_plugins'),
    RABBITMQ_PID_FILE: join(dataDir, 'pid'),
  };
}

async function writeBrokerConfig(dataDir: string, port: number): Promise<void> {
  await mkdir(join(dataDir, 'mnesia'), { recursive: true });
  await mkdir(join(dataDir, 'log'), { recursive: true });
  await writeFile(join(dataDir, 'rabbitmq.conf'), `listeners.tcp.default = 127.0.0.1:${port}\nloopback_users = none\n`, { mode: 0o600 });
  await writeFile(join(dataDir, 'rabbitmq-env.conf'), '# Kumo sets the broker\'s environment itself (scripts/rabbitmq.ts).\n');
  await writeFile(join(dataDir, 'enabled_plugins'), '[].\n');
}

function brokerUrl(port: number): string {
  return `amqp://guest:guest@127.0.0.1:${port}`;
}

async function startBroker(binary: string, dataDir: string, ports: Ports): Promise<Group> {
  // Readiness is an AMQP connection to the port: another broker already there would answer it.
  if (!(await portFree(ports.amqp))) throw new PortInUseError(`the AMQP port ${ports.amqp} is taken (eaddrinuse)`, true);
  await writeBrokerConfig(dataDir, ports.amqp);
  const logPath = join(dataDir, 'rabbitmq.log');
  const offset = await logSize(logPath);
  const group = await spawnGroup(binary, [], dataDir, brokerEnv(dataDir, ports), logPath);
  const url = brokerUrl(ports.amqp);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastError = '';
  for (;;) {
    if (group.exitStatus() !== undefined) {
      await terminate(group, 'SIGKILL', KILL_TIMEOUT_MS);
      const output = await logSince(logPath, offset);
      const message = `RabbitMQ exited (code ${String(group.exitStatus())}) before it accepted AMQP connections on port ${ports.amqp}: ${tail(output)}`;
      // could_not_start_listener is the AMQP listener; otherwise it is the distribution port.
      if (ADDRESS_IN_USE.test(output)) {
        const amqpPort = /could_not_start_listener/.test(output);
        throw new PortInUseError(`${message} (${amqpPort ? `AMQP port ${ports.amqp}` : `distribution port ${ports.dist}`} taken: eaddrinuse)`, amqpPort);
      }
      throw new Error(message);
    }
    try {
      const connection = await amqp.connect(url, { timeout: CONNECT_TIMEOUT_MS });
      await connection.close().catch(() => undefined);
      return group;
    } catch (err) {
      lastError = (err as Error).message;
    }
    if (Date.now() > deadline) {
      await terminate(group, 'SIGTERM', STOP_TIMEOUT_MS);
      throw new Error(`RabbitMQ did not accept AMQP connections on port ${ports.amqp} within ${READY_TIMEOUT_MS} ms (last error: ${lastError}; see ${logPath})`);
    }
    await delay(250);
  }
}

/**
 * Starts a broker (and its own epmd) and resolves once it accepts AMQP
 * connections. Port 0 (the default) picks a free port; the Erlang distribution
 * and epmd ports are always picked free. A port taken meanwhile ("eaddrinuse")
 * is retried with other ones. Output goes to `dataDir/rabbitmq.log`.
 */
export async function startRabbitMQ(options: { dataDir: string; port?: number }): Promise<RabbitMQServer> {
  const binary = rabbitmqBinary();
  if (!binary) throw new Error('no RabbitMQ: the OpenStack event source needs Debian\'s rabbitmq-server (run `npm run setup` as root) or RABBITMQ_SERVER');
  const epmd = epmdBinary();
  if (!epmd) throw new Error('no epmd on PATH: RabbitMQ needs Erlang\'s epmd (Debian\'s erlang-base)');
  const dataDir = resolve(options.dataDir);
  await mkdir(dataDir, { recursive: true });
  const amqpPort = options.port || 0;

  let lastError: Error | null = null;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const amqpChosen = amqpPort || (await freePort());
    const dist = await freePortExcept([amqpChosen]);
    const ports: Ports = { amqp: amqpChosen, dist, epmd: await freePortExcept([amqpChosen, dist]) };
    let epmdGroup: Group | null = null;
    try {
      epmdGroup = await startEpmd(epmd, dataDir, ports.epmd);
      const broker = await startBroker(binary, dataDir, ports);
      return serverHandle(binary, epmd, dataDir, ports, epmdGroup, broker);
    } catch (err) {
      if (epmdGroup) await terminate(epmdGroup, 'SIGTERM', KILL_TIMEOUT_MS);
      lastError = err as Error;
      // A port picked free was taken meanwhile: again with others (never another AMQP port than the one asked for).
      if (!(err instanceof PortInUseError) || (err.amqp && amqpPort)) break;
    }
  }
  throw lastError ?? new Error('RabbitMQ did not start');
}

function serverHandle(binary: string, epmdPath: string, dataDir: string, ports: Ports, firstEpmd: Group, firstBroker: Group): RabbitMQServer {
  let epmd: Group | null = firstEpmd;
  let broker: Group | null = firstBroker;
  let closed = false;

  // One operation at a time: a stop() racing a start() would leave a broker no one tracks.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = (operation: () => Promise<void>): Promise<void> => {
    const run = queue.then(operation);
    queue = run.catch(() => undefined);
    return run;
  };

  const stopBroker = async (signal: NodeJS.Signals): Promise<void> => {
    if (!broker) return;
    await terminate(broker, signal, signal === 'SIGKILL' ? KILL_TIMEOUT_MS : STOP_TIMEOUT_MS);
    broker = null;
  };

  return {
    url: brokerUrl(ports.amqp),
    port: ports.amqp,
    stop: () => serial(() => stopBroker('SIGTERM')),
    kill: () => serial(() => stopBroker('SIGKILL')),
    start: () =>
      serial(async () => {
        if (closed) throw new Error('this RabbitMQ broker was closed');
        if (broker && broker.exitStatus() === undefined) return;
        if (broker) await stopBroker('SIGKILL'); // It died on its own: whatever is left of its group.
        // The same epmd port (the node's name is registered there); a new one only should it have died.
        if (!epmd || epmd.exitStatus() !== undefined) {
          if (epmd) await terminate(epmd, 'SIGKILL', KILL_TIMEOUT_MS);
          epmd = null;
          epmd = await startEpmd(epmdPath, dataDir, ports.epmd);
        }
        // The same AMQP port and data; the distribution port may change should another process have taken it.
        for (let attempt = 0; ; attempt++) {
          try {
            broker = await startBroker(binary, dataDir, ports);
            return;
          } catch (err) {
            if (attempt + 1 >= ATTEMPTS || !(err instanceof PortInUseError) || err.amqp) throw err;
            ports.dist = await freePortExcept([ports.amqp, ports.epmd]);
          }
        }
      }),
    close: () =>
      serial(async () => {
        closed = true;
        await stopBroker('SIGTERM');
        if (epmd) await terminate(epmd, 'SIGTERM', KILL_TIMEOUT_MS);
        epmd = null;
      }),
  };
}
