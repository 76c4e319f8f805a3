import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort } from '../scripts/tools.js';
import { waitFor } from './helpers/wait.js';

/**
 * The Python function runtime (runtime/kumo_runtime), run the way a function's
 * image runs it: `python3 -m kumo_runtime` with the runtime on PYTHONPATH, the
 * user's code in a folder named by KUMO_CODE_DIR, relative to the working dir.
 */

const runtimeDir = fileURLToPath(new URL('../runtime/', import.meta.url));
/** Generous bounds: only there so that a broken runtime fails the test instead of hanging it. */
const START_TIMEOUT_MS = 20_000;
const CALL_TIMEOUT_MS = 30_000;

// Log lines and response bodies are free-form JSON; the assertions check their shape.
type Json = any;

/** The handler most tests call: what it does is chosen by the event. */
const BASIC_HANDLER = `import time


def handle(event, context):
    action = event.get("action") if isinstance(event, dict) else None
    if action == "fail":
        raise ValueError("the widget is broken")
    if action == "sleep":
        time.sleep(event["seconds"])
        return {"slept": event["seconds"]}
    if action == "talk":
        print("printed by the handler")
        context.logger.info("logged by the handler")
        return "talked"
    return {
        "event": event,
        "invocationId": context.invocation_id,
        "function": context.function,
        "revision": context.revision,
        "cloudevent": context.cloudevent,
        "requestId": context.request_id,
        "remaining": context.remaining_seconds(),
        "deadline": context.deadline,
    }
`;

let workDir: string;
const started: ChildProcess[] = [];

interface Runtime {
  base: string;
  process: ChildProcess;
  /** Every stdout line parsed so far (each must be a JSON object). */
  logs: Json[];
  /** Stdout lines that were not JSON objects: there should be none. */
  strayLines: string[];
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Writes a function's files into `workDir/<name>/`. */
async function writeFunction(name: string, files: Record<string, string>): Promise<void> {
  const dir = join(workDir, name);
  await mkdir(dir, { recursive: true });
  for (const [file, text] of Object.entries(files)) await writeFile(join(dir, file), text);
}

/** Starts `python3 -m kumo_runtime` in `workDir` for the code in `codeDir`; does not wait for it. */
async function spawnRuntime(codeDir: string, env: Record<string, string> = {}): Promise<Runtime> {
  const port = await freePort();
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !/^(KUMO_|K_REVISION$|PORT$|PYTHON)/.test(key)),
  );
  const child = spawn('python3', ['-m', 'kumo_runtime'], {
    cwd: workDir,
    env: {
      ...inherited,
      PYTHONPATH: runtimeDir,
      PYTHONDONTWRITEBYTECODE: '1',
      PORT: String(port),
      KUMO_CODE_DIR: codeDir,
      KUMO_HANDLER: 'handler.handle',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.push(child);
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  const runtime: Runtime = { base: `http://127.0.0.1:${port}`, process: child, logs: [], strayLines: [], stderr: () => stderr, exited };
  let stderr = '';
  let pending = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      if (line.trim() === '') continue;
      try {
        const parsed = JSON.parse(line);
        if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) runtime.logs.push(parsed);
        else runtime.strayLines.push(line);
      } catch {
        runtime.strayLines.push(line);
      }
    }
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return runtime;
}

/** Starts the runtime and waits until /healthz answers 200. */
async function startRuntime(codeDir: string, env: Record<string, string> = {}): Promise<Runtime> {
  const runtime = await spawnRuntime(codeDir, env);
  let exitCode: number | null | undefined;
  void runtime.exited.then((code) => (exitCode = code));
  await waitFor(
    'the runtime to answer /healthz',
    async () => {
      if (exitCode !== undefined) {
        throw new Error(`the runtime exited with ${exitCode}: ${JSON.stringify(runtime.logs)} ${runtime.stderr()}`);
      }
      const res = await fetch(`${runtime.base}/healthz`, { signal: AbortSignal.timeout(2_000) });
      return res.status === 200 ? await res.json() : undefined;
    },
    { timeoutMs: START_TIMEOUT_MS, intervalMs: 50 },
  );
  return runtime;
}

/** Stops a runtime: SIGTERM, then SIGKILL if it is still there after a bounded wait. */
async function stopRuntime(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

interface Answer {
  status: number;
  body: Json;
  headers: Headers;
}

async function invoke(runtime: Runtime, body: unknown, opts: { raw?: string; headers?: Record<string, string>; path?: string } = {}): Promise<Answer> {
  const payload = opts.raw ?? (body === undefined ? undefined : JSON.stringify(body));
  const res = await fetch(runtime.base + (opts.path ?? '/invoke'), {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...opts.headers },
    body: payload,
    signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
  });
  return { status: res.status, body: await res.json(), headers: res.headers };
}

/** The log lines with this `msg` (runtime events carry neither `stream` nor `logger`). */
const linesOf = (runtime: Runtime, msg: string) => runtime.logs.filter((line) => line.msg === msg && !line.stream && !line.logger);

/** Waits for a log line matching `match` (lines can trail the HTTP answer by a moment). */
const logLine = (runtime: Runtime, what: string, match: (line: Json) => boolean) =>
  waitFor(what, () => runtime.logs.find(match), { timeoutMs: 10_000, intervalMs: 20 });

/** `promise`, or a failure naming `what` if it takes longer than `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Whether a process with this pid still exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'kumo-runtime-'));
});

after(async () => {
  await Promise.all(started.map(stopRuntime));
  await rm(workDir, { recursive: true, force: true });
});

describe('a running function', () => {
  let runtime: Runtime;

  before(async () => {
    await writeFunction('basic', { 'handler.py': BASIC_HANDLER });
    runtime = await startRuntime('basic', { KUMO_FUNCTION: 'greeter', K_REVISION: 'greeter-00001', KUMO_TIMEOUT_SECONDS: '1' });
  });

  test('the handler result comes back with the invocation id and duration', async () => {
    const res = await invoke(runtime, { hello: 'world' });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body.result.event, { hello: 'world' });
    assert.equal(typeof res.body.invocationId, 'string');
    assert.equal(res.body.result.invocationId, res.body.invocationId);
    assert.equal(res.headers.get('x-kumo-invocation-id'), res.body.invocationId);
    assert.equal(typeof res.body.durationMs, 'number');
    assert.equal(res.body.result.function, 'greeter');
    assert.equal(res.body.result.revision, 'greeter-00001');
    assert.ok(res.body.result.remaining > 0 && res.body.result.remaining <= 1, `remaining ${res.body.result.remaining}`);
    assert.equal(res.body.result.cloudevent, null);

    const root = await invoke(runtime, undefined, { path: '/' });
    assert.equal(root.status, 200);
    assert.equal(root.body.result.event, null, 'an empty body is a null event');
  });

  test('the event, CloudEvent headers and X-Request-Id reach the handler context', async () => {
    const res = await invoke(runtime, { order: 42 }, {
      headers: {
        'ce-id': 'evt-1',
        'ce-source': '/orders',
        'ce-type': 'com.example.order.created',
        'ce-subject': 'order-42',
        'ce-time': '2024-05-01T12:00:00Z',
        'ce-specversion': '1.0',
        'x-request-id': 'req-7',
      },
    });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body.result.event, { order: 42 });
    assert.equal(res.body.result.requestId, 'req-7');
    assert.deepEqual(res.body.result.cloudevent, {
      id: 'evt-1',
      source: '/orders',
      type: 'com.example.order.created',
      subject: 'order-42',
      time: '2024-05-01T12:00:00Z',
      specversion: '1.0',
      datacontenttype: 'application/json',
    });
  });

  test('a raising handler answers 500 HandlerError; the traceback is in the logs, not the answer', async () => {
    const res = await invoke(runtime, { action: 'fail' });
    assert.equal(res.status, 500);
    assert.equal(res.body.error.type, 'HandlerError');
    assert.equal(res.body.error.exception, 'ValueError');
    assert.equal(res.body.error.message, 'the widget is broken');
    const id = res.body.error.invocationId;
    assert.equal(typeof id, 'string');
    assert.doesNotMatch(JSON.stringify(res.body), /Traceback|handler\.py/);

    const end = await logLine(runtime, 'the failed invocation.end line', (line) => line.msg === 'invocation.end' && line.invocationId === id);
    assert.equal(end.level, 'error');
    assert.equal(end.status, 'error');
    assert.equal(end.error.exception, 'ValueError');
    assert.match(end.traceback, /Traceback \(most recent call last\)/);
    assert.match(end.traceback, /handler\.py", line \d+, in handle/);
    assert.match(end.traceback, /ValueError: the widget is broken/);
  });

  test('print() and context.logger become JSON log lines with the invocation id', async () => {
    const res = await invoke(runtime, { action: 'talk' });
    assert.equal(res.status, 200);
    const id = res.body.invocationId;
    const printed = await logLine(runtime, 'the printed line', (line) => line.msg === 'printed by the handler');
    assert.equal(printed.invocationId, id);
    assert.equal(printed.stream, 'stdout');
    const logged = await logLine(runtime, 'the logger line', (line) => line.msg === 'logged by the handler');
    assert.equal(logged.invocationId, id);
    assert.equal(logged.level, 'info');
    assert.equal(logged.function, 'greeter');
    assert.equal(logged.revision, 'greeter-00001');
  });

  test('invalid JSON is refused with 400 InvalidEvent', async () => {
    const res = await invoke(runtime, undefined, { raw: '{"not": json' });
    assert.equal(res.status, 400);
    assert.equal(res.body.error.type, 'InvalidEvent');
    assert.match(res.body.error.message, /not valid JSON/);
  });

  test('a handler running past the timeout is stopped with 504, and the next call works', async () => {
    const res = await invoke(runtime, { action: 'sleep', seconds: 60 });
    assert.equal(res.status, 504);
    assert.equal(res.body.error.type, 'Timeout');
    assert.match(res.body.error.message, /exceeded 1s/);
    const id = res.body.error.invocationId;

    const start = await logLine(runtime, 'the timed-out invocation.start line', (line) => line.msg === 'invocation.start' && line.invocationId === id);
    const end = await logLine(runtime, 'the timed-out invocation.end line', (line) => line.msg === 'invocation.end' && line.invocationId === id);
    assert.equal(end.status, 'timeout');
    // Cut off for real: the worker process that ran it is gone, not left sleeping.
    await waitFor(`worker ${start.worker} to be gone`, () => (alive(start.worker) ? undefined : true), { timeoutMs: 10_000, intervalMs: 50 });

    const next = await invoke(runtime, { after: 'timeout' });
    assert.equal(next.status, 200);
    assert.deepEqual(next.body.result.event, { after: 'timeout' });
  });

  test('every stdout line is a JSON object with ts, level and msg', () => {
    assert.deepEqual(runtime.strayLines, []);
    for (const line of runtime.logs) {
      assert.equal(typeof line.ts, 'string');
      assert.ok(!Number.isNaN(Date.parse(line.ts)), `ts ${line.ts}`);
      assert.equal(typeof line.level, 'string');
      assert.equal(typeof line.msg, 'string');
      assert.equal(line.function, 'greeter');
    }
    assert.equal(linesOf(runtime, 'startup').length, 1);
  });
});

describe('a function with KUMO_CONCURRENCY=1', () => {
  let runtime: Runtime;

  before(async () => {
    await writeFunction('serial', { 'handler.py': BASIC_HANDLER });
    runtime = await startRuntime('serial', { KUMO_CONCURRENCY: '1', KUMO_TIMEOUT_SECONDS: '20' });
  });

  test('five simultaneous calls all complete, one at a time', async () => {
    const answers = await Promise.all(Array.from({ length: 5 }, () => invoke(runtime, { action: 'sleep', seconds: 0.2 })));
    assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200, 200]);
    const ids = new Set(answers.map((a) => a.body.invocationId as string));
    assert.equal(ids.size, 5);

    await waitFor('five invocation.end lines', () => (linesOf(runtime, 'invocation.end').filter((l) => ids.has(l.invocationId)).length === 5 ? true : undefined));
    const lines = runtime.logs.filter((line) => (line.msg === 'invocation.start' || line.msg === 'invocation.end') && ids.has(line.invocationId));
    assert.equal(lines.length, 10);
    // Each start is followed by its own end before the next start, in the log and on the clock.
    for (let i = 0; i < lines.length; i += 2) {
      const [start, end] = [lines[i], lines[i + 1]];
      assert.equal(start.msg, 'invocation.start');
      assert.equal(end.msg, 'invocation.end');
      assert.equal(end.invocationId, start.invocationId);
      assert.ok(end.monotonicMs >= start.monotonicMs);
      if (i > 0) assert.ok(start.monotonicMs >= lines[i - 1].monotonicMs, 'a start before the previous end');
    }
  });
});

describe('a function that cannot be loaded', () => {
  /** Runs the runtime on the code and returns its exit code and startup.failed line. */
  async function failedStart(codeDir: string, env: Record<string, string> = {}) {
    const runtime = await spawnRuntime(codeDir, env);
    const code = await within(runtime.exited, START_TIMEOUT_MS, 'the runtime to exit');
    const failed = linesOf(runtime, 'startup.failed');
    assert.equal(failed.length, 1, `one startup.failed line: ${JSON.stringify(runtime.logs)} ${runtime.stderr()}`);
    assert.deepEqual(runtime.strayLines, []);
    return { code, failed: failed[0] };
  }

  test('a syntax error exits 1, naming the file and line', async () => {
    await writeFunction('syntax', { 'handler.py': 'import json\n\ndef handle(event, context)\n    return event\n' });
    const { code, failed } = await failedStart('syntax');
    assert.equal(code, 1);
    assert.equal(failed.level, 'error');
    assert.equal(failed.error.type, 'SyntaxError');
    assert.equal(failed.error.file, 'handler.py');
    assert.equal(failed.error.line, 3);
    assert.match(failed.traceback, /SyntaxError/);
  });

  test('importing a missing module exits 1 with ModuleNotFoundError', async () => {
    await writeFunction('missing', { 'handler.py': 'import kumo_no_such_module\n\ndef handle(event, context):\n    return event\n' });
    const { code, failed } = await failedStart('missing');
    assert.equal(code, 1);
    assert.equal(failed.error.type, 'ModuleNotFoundError');
    assert.match(failed.error.message, /kumo_no_such_module/);
    assert.match(failed.traceback, /handler\.py", line 1/);
  });

  test('a handler name the module does not define exits 1 with HandlerNotFound', async () => {
    await writeFunction('misnamed', { 'handler.py': 'def handler(event, context):\n    return event\n' });
    const { code, failed } = await failedStart('misnamed');
    assert.equal(code, 1);
    assert.equal(failed.error.type, 'HandlerNotFound');
    assert.match(failed.error.message, /handle/);
  });
});

describe('stopping a function', () => {
  test('SIGTERM shuts down cleanly: exit 0, a shutdown line, no worker left', async () => {
    await writeFunction('stopping', { 'handler.py': BASIC_HANDLER });
    const runtime = await startRuntime('stopping');
    assert.equal((await invoke(runtime, { ok: true })).status, 200);
    const workers = runtime.logs.filter((line) => line.msg === 'worker.started').map((line) => line.worker as number);
    assert.ok(workers.length >= 1);

    runtime.process.kill('SIGTERM');
    assert.equal(await within(runtime.exited, 15_000, 'the runtime to exit'), 0);
    assert.equal(linesOf(runtime, 'shutdown').length, 1);
    await waitFor('the workers to be gone', () => (workers.some(alive) ? undefined : true), { timeoutMs: 10_000, intervalMs: 50 });
  });
});
