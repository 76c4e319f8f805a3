/**
 * The data plane behind the simulated Knative Serving: one real local process
 * per Revision, run from its image's unpacked file system, and the
 * queue-proxy in front of it (at most `containerConcurrency` requests in
 * flight, the rest queued in order).
 *
 * A Runner goes: pulling (retried with backoff; `ImagePullBackOff` while it
 * fails) → starting (polling `GET /healthz` until 200, within the progress
 * deadline) → ready. A process that exits before it was ever ready fails the
 * Revision for good (`ExitCode<n>`); one that exits after it was ready is
 * restarted with backoff, as a kubelet restarts a container.
 *
 * The controller (knative.ts) decides which revisions run and reads the
 * runners' state; it is told of every change through `onChange`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, type WriteStream } from "node:fs";
import { request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer, type AddressInfo } from "node:net";
import { constants as osConstants } from "node:os";
import { basename, isAbsolute, join } from "node:path";
import { pullImage, PullError, type ImageConfig } from "./oci.js";

/** What the controller wants running for one Revision. */
export interface RevisionRun {
  clusterId: string;
  namespace: string;
  name: string;
  uid: string;
  service: string;
  configuration: string;
  image: string;
  command: string[] | null;
  args: string[] | null;
  workingDir: string | null;
  /** The container's resolved env (name/value), in order. */
  env: Array<{ name: string; value: string }>;
  containerConcurrency: number;
  timeoutSeconds: number;
  progressDeadlineMs: number;
  /** Set when the container's configuration cannot be satisfied (a missing Secret key…): the runner fails at once. */
  configError: string | null;
}

export type RunnerPhase = "pulling" | "starting" | "ready" | "backoff" | "failed" | "stopped";

/** Why a runner is not healthy: becomes the Revision's condition reason and message. */
export interface RunnerFailure {
  reason: string;
  message: string;
  /** Which Revision condition it belongs to. */
  condition: "ContainerHealthy" | "ResourcesAvailable";
}

/** A runner's state as the controller and the admin API see it. */
export interface RunnerView {
  clusterId: string;
  namespace: string;
  name: string;
  uid: string;
  image: string;
  phase: RunnerPhase;
  pid: number | null;
  port: number | null;
  ready: boolean;
  everReady: boolean;
  restarts: number;
  exitCode: number | null;
  signal: string | null;
  failure: RunnerFailure | null;
  imageDigest: string | null;
  containerConcurrency: number;
  timeoutSeconds: number;
  inFlight: number;
  queued: number;
  startedAt: string | null;
  readyAt: string | null;
}

const LOG_LINES = 500;
const LOG_FILE_LIMIT = 16 * 1024 * 1024;
const FAILURE_LINES = 10;
const FAILURE_BYTES = 2048;
const HEALTH_INTERVAL_MS = 100;
const HEALTH_TIMEOUT_MS = 1000;
const STOP_GRACE_MS = 2000;
const DRAIN_MS = 30_000;
const PULL_BACKOFF_MS = [1000, 2000, 4000, 8000, 16000, 30000];
const RESTART_BACKOFF_MS = [1000, 2000, 4000, 8000, 16000, 30000];
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer", "trailers", "transfer-encoding", "upgrade"]);

export function runKey(clusterId: string, namespace: string, name: string): string {
  return `${clusterId}/${namespace}/${name}`;
}

/** A free TCP port on the loopback interface (free when asked; the process binds it a moment later). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** Kubernetes' `$(VAR)` expansion in command and args (`$$(` escapes). */
function expand(value: string, env: Map<string, string>): string {
  return value.replace(/\$\$\(|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (match, name: string | undefined) => {
    if (name === undefined) return "$(";
    return env.get(name) ?? match;
  });
}

/** A path inside the container as components; `..` may not climb out of the root. */
function containerPath(path: string): string[] | null {
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length === 0) return null;
      out.pop();
    } else {
      out.push(part);
    }
  }
  return out;
}

class Runner {
  phase: RunnerPhase = "pulling";
  child: ChildProcess | null = null;
  pid: number | null = null;
  /** The process group of the last process started (its pid). */
  private groupPid: number | null = null;
  port: number | null = null;
  restarts = 0;
  everReady = false;
  exitCode: number | null = null;
  signal: string | null = null;
  failure: RunnerFailure | null = null;
  imageDigest: string | null = null;
  startedAt: number | null = null;
  readyAt: number | null = null;
  readonly lines: string[] = [];
  private partial = { stdout: "", stderr: "" };
  private log: WriteStream | null = null;
  private logBytes = 0;
  private config: ImageConfig | null = null;
  private readonly abort = new AbortController();
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopping: Promise<void> | null = null;
  /** Set when the simulator closes: a drain ends at once. */
  closing = false;
  private exited: Promise<void> = Promise.resolve();
  private bootTS = Date.now();
  /** Which start of the process the health polling belongs to. */
  private attempt = 0;
  inFlight = 0;
  private readonly waiters: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];

  constructor(
    readonly run: RevisionRun,
    readonly dir: string,
    private readonly changed: () => void,
  ) {}

  get rootfs(): string {
    return join(this.dir, "rootfs");
  }

  get logFile(): string {
    return join(this.dir, "output.log");
  }

  get stopped(): boolean {
    return this.stopping !== null;
  }

  view(): RunnerView {
    return {
      clusterId: this.run.clusterId,
      namespace: this.run.namespace,
      name: this.run.name,
      uid: this.run.uid,
      image: this.run.image,
      phase: this.phase,
      pid: this.pid,
      port: this.port,
      ready: this.phase === "ready",
      everReady: this.everReady,
      restarts: this.restarts,
      exitCode: this.exitCode,
      signal: this.signal,
      failure: this.failure === null ? null : { ...this.failure },
      imageDigest: this.imageDigest,
      containerConcurrency: this.run.containerConcurrency,
      timeoutSeconds: this.run.timeoutSeconds,
      inFlight: this.inFlight,
      queued: this.waiters.length,
      startedAt: this.startedAt === null ? null : new Date(this.startedAt).toISOString(),
      readyAt: this.readyAt === null ? null : new Date(this.readyAt).toISOString(),
    };
  }

  private later(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.stopped) fn();
    }, ms);
    timer.unref();
    this.timers.add(timer);
  }

  private set(update: Partial<Pick<Runner, "phase" | "failure">>): void {
    Object.assign(this, update);
    if (this.phase === "failed") {
      for (const w of this.waiters.splice(0)) w.reject(new Error(`revision ${this.run.name} failed: ${this.failure?.message ?? "unknown"}`));
    }
    this.pump();
    this.changed();
  }

  start(): void {
    this.bootTS = Date.now();
    mkdirSync(this.dir, { recursive: true });
    this.log = createWriteStream(this.logFile, { flags: "a" });
    this.log.on("error", () => {
      this.log = null;
    });
    if (this.run.configError !== null) {
      this.set({ phase: "failed", failure: { reason: "CreateContainerConfigError", message: this.run.configError, condition: "ContainerHealthy" } });
      return;
    }
    this.pull(0);
  }

  private pull(attempt: number): void {
    this.phase = "pulling";
    rmSync(this.rootfs, { recursive: true, force: true });
    pullImage(this.run.image, this.rootfs, this.abort.signal).then(
      (pulled) => {
        if (this.stopped) return;
        this.config = pulled.config;
        this.imageDigest = pulled.digest;
        this.failure = null;
        void this.spawnProcess();
      },
      (err: unknown) => {
        if (this.stopped) return;
        const detail = err instanceof PullError ? err.message : err instanceof Error ? err.message : String(err);
        if (!(err instanceof PullError)) console.error(`rancher simulator: pulling ${this.run.image} failed:`, err);
        this.set({
          phase: "pulling",
          failure: { reason: "ImagePullBackOff", message: `Back-off pulling image "${this.run.image}": ${detail}`, condition: "ResourcesAvailable" },
        });
        this.later(PULL_BACKOFF_MS[Math.min(attempt, PULL_BACKOFF_MS.length - 1)] ?? 30000, () => this.pull(attempt + 1));
      },
    );
  }

  /** argv, cwd and env of the container, as a container runtime would make them from the image config and the container spec. */
  private processSpec(port: number): { argv: string[]; cwd: string; env: Record<string, string> } | RunnerFailure {
    const config = this.config ?? { entrypoint: [], cmd: [], env: [], workingDir: "" };
    const run = this.run;
    const env = new Map<string, string>();
    for (const line of config.env) {
      const eq = line.indexOf("=");
      if (eq > 0) env.set(line.slice(0, eq), line.slice(eq + 1));
    }
    for (const e of run.env) env.set(e.name, expand(e.value, env));
    env.set("PORT", String(port));
    env.set("K_SERVICE", run.service);
    env.set("K_REVISION", run.name);
    env.set("K_CONFIGURATION", run.configuration);
    env.set("KUMO_CONCURRENCY", String(run.containerConcurrency));
    env.set("KUMO_TIMEOUT_SECONDS", String(run.timeoutSeconds));
    // The executable (python3…) is the host's: the process runs here, not in a container.
    env.set("PATH", process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin");
    const entrypoint = run.command ?? config.entrypoint;
    const cmd = run.args ?? (run.command !== null ? [] : config.cmd);
    const argv = [...entrypoint, ...cmd].map((a) => expand(a, env));
    if (argv.length === 0) return { reason: "CreateContainerError", message: "no command specified: the image has no Entrypoint or Cmd and the container no command", condition: "ContainerHealthy" };
    const wd = containerPath(run.workingDir ?? (config.workingDir || "/"));
    if (wd === null) return { reason: "CreateContainerError", message: `working directory ${JSON.stringify(run.workingDir ?? config.workingDir)} leaves the image`, condition: "ContainerHealthy" };
    const cwd = join(this.rootfs, ...wd);
    mkdirSync(cwd, { recursive: true });
    const exe = argv[0] ?? "";
    if (isAbsolute(exe)) {
      // An absolute path means the image's file when it has one, else the host's program of that name.
      const parts = containerPath(exe);
      const inImage = parts === null ? null : join(this.rootfs, ...parts);
      if (inImage !== null && existsSync(inImage) && statSync(inImage).isFile()) argv[0] = inImage;
      else if (!existsSync(exe)) argv[0] = basename(exe);
    }
    return { argv, cwd, env: Object.fromEntries(env) };
  }

  private async spawnProcess(): Promise<void> {
    if (this.stopped) return;
    let port: number;
    try {
      port = await freePort();
    } catch (err) {
      this.set({ phase: "backoff", failure: { reason: "CreateContainerError", message: `no free port: ${(err as Error).message}`, condition: "ContainerHealthy" } });
      this.later(1000, () => void this.spawnProcess());
      return;
    }
    if (this.stopped) return;
    const spec = this.processSpec(port);
    if ("reason" in spec) {
      this.set({ phase: "failed", failure: spec });
      return;
    }
    this.attempt += 1;
    const attempt = this.attempt;
    this.port = port;
    this.exitCode = null;
    this.signal = null;
    this.startedAt = Date.now();
    let child: ChildProcess;
    try {
      // Its own process group, so that stopping it also stops whatever it started.
      child = spawn(spec.argv[0] ?? "", spec.argv.slice(1), { cwd: spec.cwd, env: spec.env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    } catch (err) {
      this.set({ phase: "failed", failure: { reason: "CreateContainerError", message: (err as Error).message, condition: "ContainerHealthy" } });
      return;
    }
    this.child = child;
    this.pid = child.pid ?? null;
    this.groupPid = this.pid;
    this.phase = "starting";
    let resolveExit: () => void = () => undefined;
    this.exited = new Promise<void>((resolve) => {
      resolveExit = resolve;
    });
    child.stdout?.on("data", (chunk: Buffer) => this.output("stdout", chunk));
    child.stderr?.on("data", (chunk: Buffer) => this.output("stderr", chunk));
    let spawnError: Error | null = null;
    child.on("error", (err) => {
      spawnError = err;
    });
    child.on("close", (code, signal) => {
      this.flushPartial();
      if (spawnError !== null) {
        // As a container runtime reports an executable it cannot start.
        this.output("stderr", Buffer.from(`exec ${JSON.stringify(spec.argv[0])}: ${(spawnError as Error).message}\n`));
        code = 127;
        signal = null;
      }
      this.exitedWith(attempt, code, signal);
      resolveExit();
    });
    this.changed();
    this.pollHealth(attempt);
  }

  private pollHealth(attempt: number): void {
    if (this.stopped || attempt !== this.attempt || this.phase !== "starting" || this.port === null) return;
    // The first start has the progress deadline; a restart after a crash waits as long as the process lives.
    if (!this.everReady && Date.now() - this.bootTS > this.run.progressDeadlineMs) {
      const seconds = Math.round(this.run.progressDeadlineMs / 100) / 10;
      this.set({
        phase: "failed",
        failure: {
          reason: "ProgressDeadlineExceeded",
          message: `Initial scale was never achieved: GET /healthz on port ${this.port} did not answer 200 within ${seconds}s`,
          condition: "ResourcesAvailable",
        },
      });
      this.killGroup("SIGKILL");
      return;
    }
    const req = httpRequest({ host: "127.0.0.1", port: this.port, path: "/healthz", method: "GET", timeout: HEALTH_TIMEOUT_MS, agent: false, headers: { "k-kubelet-probe": "queue", "user-agent": "kube-probe/sim" } }, (res) => {
      res.resume();
      if (res.statusCode === 200 && !this.stopped && attempt === this.attempt && this.phase === "starting") {
        this.everReady = true;
        this.readyAt = Date.now();
        this.set({ phase: "ready", failure: null });
      } else {
        this.later(HEALTH_INTERVAL_MS, () => this.pollHealth(attempt));
      }
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => this.later(HEALTH_INTERVAL_MS, () => this.pollHealth(attempt)));
    req.end();
  }

  private exitedWith(attempt: number, code: number | null, signal: NodeJS.Signals | null): void {
    if (attempt !== this.attempt) return;
    // Like a container's cgroup, whatever the process started goes with it.
    this.killGroup("SIGKILL");
    this.child = null;
    this.pid = null;
    this.exitCode = code ?? (signal !== null ? 128 + (osConstants.signals[signal] ?? 0) : null);
    this.signal = signal;
    if (this.stopped) {
      this.phase = "stopped";
      return;
    }
    if (this.phase === "failed") {
      // Killed at its progress deadline; the failure says why.
      this.changed();
      return;
    }
    const failure: RunnerFailure = {
      reason: `ExitCode${this.exitCode ?? 0}`,
      message: `Container failed with: ${this.lastLines() || "container exited with no error"}`,
      condition: "ContainerHealthy",
    };
    if (!this.everReady) {
      this.set({ phase: "failed", failure });
      return;
    }
    const delay = RESTART_BACKOFF_MS[Math.min(this.restarts, RESTART_BACKOFF_MS.length - 1)] ?? 30000;
    this.restarts += 1;
    this.set({ phase: "backoff", failure });
    this.later(delay, () => void this.spawnProcess());
  }

  /** The last lines of output, as Kubernetes' FallbackToLogsOnError termination message (bounded). */
  private lastLines(): string {
    const lines = this.lines.filter((l) => l.trim() !== "").slice(-FAILURE_LINES);
    let text = lines.join("\n");
    if (text.length > FAILURE_BYTES) text = text.slice(text.length - FAILURE_BYTES);
    return text;
  }

  private output(stream: "stdout" | "stderr", chunk: Buffer): void {
    // Paths read as they would inside the container (/opt/kumo/...), not where the simulator unpacked the image.
    const own = chunk.toString("utf8").split(this.rootfs).join("");
    if (this.log !== null && this.logBytes < LOG_FILE_LIMIT) {
      this.logBytes += Buffer.byteLength(own);
      this.log.write(own);
    }
    const text = this.partial[stream] + own;
    const parts = text.split("\n");
    this.partial[stream] = parts.pop() ?? "";
    if (this.partial[stream].length > 16384) {
      parts.push(this.partial[stream]);
      this.partial[stream] = "";
    }
    for (const line of parts) this.pushLine(line.replace(/\r$/, ""));
  }

  private flushPartial(): void {
    for (const stream of ["stdout", "stderr"] as const) {
      if (this.partial[stream] !== "") this.pushLine(this.partial[stream]);
      this.partial[stream] = "";
    }
  }

  private pushLine(line: string): void {
    this.lines.push(line);
    if (this.lines.length > LOG_LINES) this.lines.splice(0, this.lines.length - LOG_LINES);
  }

  private killGroup(signal: NodeJS.Signals): void {
    const group = this.groupPid;
    if (group === null) return;
    try {
      process.kill(-group, signal);
    } catch {
      const child = this.child;
      const pid = child?.pid;
      if (child === null || pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
      try {
        process.kill(pid, signal);
      } catch {
        // gone already
      }
    }
  }

  /** Kills every process the runner started, synchronously (for process exit). */
  killNow(): void {
    this.killGroup("SIGKILL");
  }

  /**
   * Stops the process (SIGTERM to its group, SIGKILL after a grace period).
   * With `drainMs`, requests in flight or queued are first given that long to
   * finish (a revision traffic moved away from); queued ones left are refused.
   */
  stop(drainMs = 0): Promise<void> {
    this.stopping ??= (async () => {
      this.abort.abort();
      if (drainMs > 0 && this.phase === "ready") {
        const until = Date.now() + drainMs;
        while ((this.inFlight > 0 || this.waiters.length > 0) && Date.now() < until && !this.closing) {
          await new Promise<void>((resolve) => setTimeout(resolve, 50).unref());
        }
      }
      for (const t of this.timers) clearTimeout(t);
      this.timers.clear();
      for (const w of this.waiters.splice(0)) w.reject(new Error(`revision ${this.run.name} was stopped`));
      if (this.child !== null) {
        this.killGroup("SIGTERM");
        const grace = setTimeout(() => this.killGroup("SIGKILL"), STOP_GRACE_MS);
        await Promise.race([this.exited, new Promise<void>((resolve) => setTimeout(resolve, STOP_GRACE_MS * 2).unref())]);
        clearTimeout(grace);
      }
      // Whatever the process left behind in its group goes too.
      this.killGroup("SIGKILL");
      this.phase = "stopped";
      this.pid = null;
      await new Promise<void>((resolve) => {
        if (this.log === null) return resolve();
        this.log.end(() => resolve());
        this.log = null;
      });
    })();
    return this.stopping;
  }

  // ---- queue-proxy --------------------------------------------------------------------------------

  private pump(): void {
    const limit = this.run.containerConcurrency;
    while (this.phase === "ready" && this.waiters.length > 0 && (limit <= 0 || this.inFlight < limit)) {
      const next = this.waiters.shift();
      if (next === undefined) break;
      this.inFlight += 1;
      next.resolve();
    }
  }

  /** Waits (in FIFO order) for a free slot on a ready process. */
  acquire(signal: AbortSignal): Promise<void> {
    if (this.stopped) return Promise.reject(new Error(`revision ${this.run.name} is not running`));
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        resolve: () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        },
        reject: (err: Error) => {
          signal.removeEventListener("abort", onAbort);
          reject(err);
        },
      };
      const onAbort = (): void => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal.reason instanceof Error ? signal.reason : new Error("aborted"));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(waiter);
      this.pump();
    });
  }

  release(): void {
    this.inFlight = Math.max(0, this.inFlight - 1);
    this.pump();
  }
}

export interface RuntimeOptions {
  /** The folder under which `knative/<cluster>/<namespace>/<revision>/` are made. */
  dataDir: string;
  /** Called (synchronously, often) whenever a runner's state changes. */
  onChange: () => void;
}

function sendJson(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

export class KnativeRuntime {
  private readonly runners = new Map<string, Runner>();
  private readonly stopping = new Set<Promise<void>>();
  /** Runners being stopped (draining or dying): no longer in `runners`, but their processes may still live. */
  private readonly stoppingRunners = new Set<Runner>();
  /** The revisions each cluster's folder was last swept for, and the clusters last kept (to look at the disk only on change). */
  private readonly swept = new Map<string, string>();
  private liveClusters: Set<string> | null = null;
  private closed = false;
  private readonly onExit = (): void => {
    for (const r of [...this.runners.values(), ...this.stoppingRunners]) r.killNow();
  };

  constructor(private readonly opts: RuntimeOptions) {
    // No orphans even when the simulator's process exits without close().
    process.on("exit", this.onExit);
  }

  get root(): string {
    return join(this.opts.dataDir, "knative");
  }

  revisionDir(clusterId: string, namespace: string, name: string): string {
    return join(this.root, clusterId, namespace, name);
  }

  view(clusterId: string, namespace: string, name: string, uid?: string): RunnerView | undefined {
    const r = this.runners.get(runKey(clusterId, namespace, name));
    if (r === undefined || (uid !== undefined && r.run.uid !== uid)) return undefined;
    return r.view();
  }

  views(clusterId: string): RunnerView[] {
    return [...this.runners.values()].filter((r) => r.run.clusterId === clusterId).map((r) => r.view());
  }

  /** The captured output of a revision: in memory while its runner exists, else the tail of its log file. */
  logs(clusterId: string, namespace: string, name: string, tail = LOG_LINES): string[] | undefined {
    const r = this.runners.get(runKey(clusterId, namespace, name));
    if (r !== undefined && tail <= LOG_LINES) return r.lines.slice(-tail);
    const file = join(this.revisionDir(clusterId, namespace, name), "output.log");
    try {
      const text = readFileSync(file, "utf8");
      const lines = text.split("\n");
      if (lines[lines.length - 1] === "") lines.pop();
      return lines.slice(-tail);
    } catch {
      return undefined;
    }
  }

  /**
   * Makes the cluster's runners match `wanted`: starts what is missing (or
   * was another object of the same name), stops what is no longer wanted,
   * and removes the folders of revisions that no longer exist.
   */
  sync(clusterId: string, wanted: RevisionRun[], existing: Set<string>): void {
    if (this.closed) return;
    const want = new Map(wanted.map((w) => [runKey(w.clusterId, w.namespace, w.name), w]));
    for (const [key, runner] of [...this.runners]) {
      if (runner.run.clusterId !== clusterId) continue;
      const w = want.get(key);
      if (w !== undefined && w.uid === runner.run.uid) continue;
      this.runners.delete(key);
      // A revision that still exists but is no longer needed finishes its requests first, as Knative drains a pod.
      const stillExists = w === undefined && existing.has(`${runner.run.namespace}/${runner.run.name}`);
      this.stopRunner(runner, stillExists ? DRAIN_MS : 0);
    }
    for (const [key, w] of want) {
      if (this.runners.has(key)) continue;
      const runner = new Runner(w, this.revisionDir(w.clusterId, w.namespace, w.name), this.opts.onChange);
      this.runners.set(key, runner);
      runner.start();
    }
    this.sweep(clusterId, existing);
  }

  /** Removes the folders of a cluster's revisions that are not in `existing` (`<ns>/<name>` keys); only when that set changed. */
  private sweep(clusterId: string, existing: Set<string>): void {
    const signature = [...existing].sort().join("\n");
    if (this.swept.get(clusterId) === signature) return;
    this.swept.set(clusterId, signature);
    const clusterDir = join(this.root, clusterId);
    let namespaces: string[];
    try {
      namespaces = readdirSync(clusterDir);
    } catch {
      return;
    }
    for (const ns of namespaces) {
      let names: string[];
      try {
        names = readdirSync(join(clusterDir, ns));
      } catch {
        continue;
      }
      for (const name of names) {
        if (existing.has(`${ns}/${name}`) || this.runners.has(runKey(clusterId, ns, name))) continue;
        rmSync(join(clusterDir, ns, name), { recursive: true, force: true });
      }
      if (names.every((n) => !existsSync(join(clusterDir, ns, n)))) rmSync(join(clusterDir, ns), { recursive: true, force: true });
    }
  }

  /** Stops the runners of clusters not in `live` and removes those clusters' folders. */
  keepClusters(live: Set<string>): void {
    if (this.closed) return;
    // Called before every request: the same clusters as last time (compared without sorting) is nothing to do.
    const last = this.liveClusters;
    if (last !== null && last.size === live.size && everyIn(live, last)) return;
    this.liveClusters = new Set(live);
    for (const id of [...this.swept.keys()]) if (!live.has(id)) this.swept.delete(id);
    for (const [key, runner] of [...this.runners]) {
      if (live.has(runner.run.clusterId)) continue;
      this.runners.delete(key);
      const dir = join(this.root, runner.run.clusterId);
      this.stopRunner(runner, 0, () => rmSync(dir, { recursive: true, force: true }));
    }
    let clusters: string[];
    try {
      clusters = readdirSync(this.root);
    } catch {
      return;
    }
    for (const id of clusters) {
      const busy = [...this.runners.values(), ...this.stoppingRunners].some((r) => r.run.clusterId === id);
      if (!live.has(id) && !busy) rmSync(join(this.root, id), { recursive: true, force: true });
    }
  }

  private stopRunner(runner: Runner, drainMs: number, after?: () => void): void {
    this.stoppingRunners.add(runner);
    const tracked = runner
      .stop(drainMs)
      .then(() => after?.())
      .catch((err: unknown) => console.error("rancher simulator: stopping a revision failed:", err))
      .finally(() => {
        this.stopping.delete(tracked);
        this.stoppingRunners.delete(runner);
        if (!this.closed) this.opts.onChange();
      });
    this.stopping.add(tracked);
  }

  /**
   * The queue-proxy: forwards the request to the revision's process once it
   * is ready and has a free slot (FIFO), within `timeoutMs` (else 504).
   */
  async proxy(clusterId: string, namespace: string, name: string, uid: string, req: IncomingMessage, res: ServerResponse, path: string, timeoutMs: number): Promise<void> {
    const runner = this.runners.get(runKey(clusterId, namespace, name));
    if (runner === undefined || runner.run.uid !== uid || runner.stopped || runner.phase === "failed") {
      req.resume();
      sendJson(res, 503, { message: `revision ${namespace}/${name} has no running process` });
      return;
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new Error("timeout")), timeoutMs);
    timer.unref();
    const onClientGone = (): void => {
      if (!res.writableFinished) controller.abort(new Error("client went away"));
    };
    res.on("close", onClientGone);
    try {
      try {
        await runner.acquire(controller.signal);
      } catch (err) {
        req.resume();
        if (controller.signal.aborted && (err as Error).message === "timeout") {
          sendJson(res, 504, { message: `revision ${namespace}/${name} did not take the request within ${Math.round(timeoutMs / 1000)}s` });
        } else {
          sendJson(res, 503, { message: (err as Error).message });
        }
        return;
      }
      try {
        await this.forward(runner, req, res, path, controller.signal, timeoutMs);
      } finally {
        runner.release();
      }
    } finally {
      clearTimeout(timer);
      res.off("close", onClientGone);
    }
  }

  private forward(runner: Runner, req: IncomingMessage, res: ServerResponse, path: string, signal: AbortSignal, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const port = runner.port;
      if (port === null || runner.phase !== "ready") {
        req.resume();
        sendJson(res, 503, { message: `revision ${runner.run.namespace}/${runner.run.name} is not ready` });
        resolve();
        return;
      }
      const headers: Record<string, string | string[]> = {};
      const connectionTokens = new Set(
        String(req.headers.connection ?? "")
          .split(",")
          .map((t) => t.trim().toLowerCase())
          .filter((t) => t !== ""),
      );
      for (const [key, value] of Object.entries(req.headers)) {
        if (value === undefined || HOP_BY_HOP.has(key) || connectionTokens.has(key)) continue;
        headers[key] = value;
      }
      const remote = req.socket.remoteAddress;
      if (remote !== undefined) headers["x-forwarded-for"] = typeof headers["x-forwarded-for"] === "string" ? `${headers["x-forwarded-for"]}, ${remote}` : remote;
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      const upstream = httpRequest({ host: "127.0.0.1", port, method: req.method, path, headers, agent: false }, (up) => {
        const out: Record<string, string | string[]> = {};
        const upTokens = new Set(
          String(up.headers.connection ?? "")
            .split(",")
            .map((t) => t.trim().toLowerCase()),
        );
        for (const [key, value] of Object.entries(up.headers)) {
          if (value === undefined || HOP_BY_HOP.has(key) || upTokens.has(key)) continue;
          out[key] = value;
        }
        res.writeHead(up.statusCode ?? 502, up.statusMessage, out);
        up.pipe(res);
        up.on("end", finish);
        up.on("error", () => {
          res.destroy();
          finish();
        });
        up.on("close", finish);
      });
      const onAbort = (): void => {
        upstream.destroy();
        if (!res.headersSent) {
          sendJson(res, 504, { message: `revision ${runner.run.namespace}/${runner.run.name} did not answer within ${Math.round(timeoutMs / 1000)}s` });
        } else {
          res.destroy();
        }
        finish();
      };
      signal.addEventListener("abort", onAbort, { once: true });
      upstream.on("error", (err) => {
        if (done) return;
        if (!res.headersSent) sendJson(res, 502, { message: `revision ${runner.run.namespace}/${runner.run.name}: ${err.message}` });
        else res.destroy();
        finish();
      });
      req.pipe(upstream);
    });
  }

  /** Stops every process and waits for them (bounded); no runner starts afterwards. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.runners.values()];
    this.runners.clear();
    for (const r of [...all, ...this.stoppingRunners]) r.closing = true;
    for (const r of all) this.stopRunner(r, 0);
    await Promise.all([...this.stopping]);
    process.off("exit", this.onExit);
  }
}

function everyIn(items: Set<string>, set: Set<string>): boolean {
  for (const item of items) if (!set.has(item)) return false;
  return true;
}
