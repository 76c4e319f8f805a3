import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Runs Schemathesis (installed by scripts/setup.sh into `.tools/fuzz-venv`)
 * against Kumo's OpenAPI document, and reads its JUnit report.
 */

/** The checks every run makes: no 5xx, answers as documented, invalid input refused with a 4xx. */
export const fuzzChecks = [
  'not_a_server_error',
  'response_schema_conformance',
  'status_code_conformance',
  'content_type_conformance',
  'negative_data_rejection',
] as const;

/** Every test phase of Schemathesis 4: the spec's examples, boundary values, random data, sequences of calls. */
export const allPhases = ['examples', 'coverage', 'fuzzing', 'stateful'] as const;
export type Phase = (typeof allPhases)[number];

/**
 * The bounded run test/fuzz.test.ts makes (and `npm run fuzz -- --bounded`): the
 * spec's examples, boundary values and random data, 20 cases per operation and phase.
 */
export const boundedRun = { maxExamples: 20, phases: ['examples', 'coverage', 'fuzzing'] as Phase[], workers: 2 };

/** Simulator and poll timings for a fuzzed stack: add-ons get healthy quickly, as in the add-on tests. */
export const fuzzStackEnv: Record<string, string> = { SIM_WORKLOAD_READY_MS: '300', KUMO_ADDON_POLL_S: '1' };

/** The `st` command: `SCHEMATHESIS_BIN`, else the one the setup installed in `.tools/`; null when there is none. */
export function schemathesisBinary(): string | null {
  const fromEnv = process.env.SCHEMATHESIS_BIN;
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : null;
  const local = fileURLToPath(new URL('../.tools/fuzz-venv/bin/st', import.meta.url));
  return existsSync(local) ? local : null;
}

export interface FuzzOptions {
  /** The API's base URL; the document is read from `<apiUrl>/openapi.json`. */
  apiUrl: string;
  /** A bearer token sent on every request (an admin's, so that every operation is reachable). */
  token: string;
  /** Test cases per operation and phase. */
  maxExamples: number;
  phases: readonly Phase[];
  /** Concurrent Schemathesis workers. */
  workers: number;
  seed?: number;
  /** Schemathesis' own time budget for the whole run, in seconds. */
  maxTime?: number;
  /** More `st run` arguments, as given. */
  extraArgs?: readonly string[];
}

/** The `st run` arguments for a run. The token goes in as a header; Schemathesis masks it in what it prints. */
export function schemathesisArgs(options: FuzzOptions & { junitPath: string }): string[] {
  const args = [
    'run',
    `${options.apiUrl}/openapi.json`,
    '--header',
    `Authorization: Bearer ${options.token}`,
    '--checks',
    fuzzChecks.join(','),
    '--phases',
    options.phases.join(','),
    '--max-examples',
    String(options.maxExamples),
    '--workers',
    String(options.workers),
    '--request-timeout',
    '30',
    '--generation-database',
    'none',
    '--report',
    'junit',
    '--report-junit-path',
    options.junitPath,
    '--no-color',
  ];
  if (options.seed !== undefined) args.push('--seed', String(options.seed));
  if (options.maxTime !== undefined) args.push('--max-time', String(options.maxTime));
  args.push(...(options.extraArgs ?? []));
  return args;
}

/** The command line to show a person, the token replaced. */
export function printableCommand(binary: string, args: readonly string[], token: string): string {
  return [binary, ...args].map((arg) => (/[\s"']/.test(arg) ? `'${arg}'` : arg)).join(' ').replaceAll(token, '<token>');
}

export interface RunResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  durationMs: number;
  /** Everything it printed, stdout and stderr together. */
  output: string;
}

/**
 * Runs `st` in `cwd` to its end, or kills it (its whole process group) after
 * `timeoutMs`. With `echo`, its output is also passed on as it comes.
 */
export function runSchemathesis(binary: string, args: readonly string[], options: { timeoutMs: number; cwd: string; echo?: NodeJS.WritableStream }): Promise<RunResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, {
      // Its own folder: Hypothesis may leave a .hypothesis/ behind in the working directory.
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      env: { ...process.env, PYTHONUNBUFFERED: '1', NO_COLOR: '1', SCHEMATHESIS_TELEMETRY: 'false' },
    });
    let output = '';
    let timedOut = false;
    const collect = (chunk: Buffer) => {
      output += chunk.toString();
      options.echo?.write(chunk);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const killGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid) process.kill(-child.pid, signal);
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup('SIGTERM');
      setTimeout(() => killGroup('SIGKILL'), 5000).unref();
    }, options.timeoutMs);
    // Never leave it behind when this process is stopped.
    const onExit = () => killGroup('SIGKILL');
    process.once('exit', onExit);
    child.once('error', (err) => {
      clearTimeout(timer);
      process.off('exit', onExit);
      reject(err);
    });
    child.once('close', (exitCode, signal) => {
      clearTimeout(timer);
      process.off('exit', onExit);
      resolve({ exitCode, signal, timedOut, durationMs: Date.now() - started, output });
    });
  });
}

export interface JunitSummary {
  /** Every operation tested (`GET /v1/clusters`, …), as the report names them; not the stateful phase's "Stateful tests". */
  operations: string[];
  /** The operations with a failure or an error, and the first lines of what went wrong. */
  failed: Array<{ operation: string; message: string }>;
  skipped: string[];
  failures: number;
  errors: number;
}

/** Reads Schemathesis' JUnit XML: one `<testcase>` per operation, with `<failure>`, `<error>` or `<skipped>` inside. */
export function summarizeJunit(xml: string): JunitSummary {
  const summary: JunitSummary = { operations: [], failed: [], skipped: [], failures: 0, errors: 0 };
  const testcase = /<testcase\b([^>]*?)(?:\/>|>([\s\S]*?)<\/testcase>)/g;
  for (const match of xml.matchAll(testcase)) {
    const name = unescapeXml(/\bname="([^"]*)"/.exec(match[1] ?? '')?.[1] ?? '(unnamed)');
    const body = match[2] ?? '';
    // One test case per operation ("GET /v1/clusters"); the stateful phase adds one of its own.
    if (/^[A-Z]+ \//.test(name)) summary.operations.push(name);
    const failures = [...body.matchAll(/<(failure|error)\b([^>]*?)(?:\/>|>([\s\S]*?)<\/\1>)/g)];
    for (const failure of failures) {
      if (failure[1] === 'failure') summary.failures++;
      else summary.errors++;
      // The text names each check that failed ("- ST103 Undocumented status code") and what came back.
      const text = unescapeXml(failure[3] ?? '');
      const wanted = text.split('\n').filter((line) => /^\s*(- |Received:|Documented:|\[\d{3}\])/.test(line));
      const message = wanted.length ? wanted.join('\n') : unescapeXml(/\bmessage="([^"]*)"/.exec(failure[2] ?? '')?.[1] ?? text);
      summary.failed.push({ operation: name, message: message.trim().split('\n').slice(0, 16).join('\n') });
    }
    if (!failures.length && /<skipped\b/.test(body)) summary.skipped.push(name);
  }
  return summary;
}

function unescapeXml(text: string): string {
  return text
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&#(\d+);/g, (_, code: string) => String.fromCodePoint(Number(code)))
    .replace(/&#x([0-9a-f]+);/gi, (_, code: string) => String.fromCodePoint(parseInt(code, 16)))
    .replace(/&amp;/g, '&');
}

/**
 * The operations run in a pass of their own, after all the others. Schemathesis
 * reuses values it saw in earlier answers (GET /v1/tokens lists the token names),
 * and once POST /v1/tokens has made a second admin token, DELETE /v1/tokens/admin
 * is allowed: it revokes the very token the fuzzer sends, and every later request
 * would only see 401. In a pass of its own it sees no names from earlier answers.
 */
export const lastPassOperations = ['DELETE /v1/tokens/{name}'] as const;

export interface FuzzPass {
  name: string;
  command: string;
  junitPath: string;
  result: RunResult;
  summary: JunitSummary | null;
}

export interface FuzzResult {
  /** 0 when every pass exited 0. */
  exitCode: number;
  durationMs: number;
  passes: FuzzPass[];
  /** The passes' JUnit reports together. */
  summary: JunitSummary;
}

/**
 * The whole fuzz run: every operation but {@link lastPassOperations}, then those.
 * Reports go to `reportDir` (junit-main.xml, junit-last.xml); Schemathesis runs in
 * a temporary folder of its own.
 */
export async function runFuzz(
  binary: string,
  options: FuzzOptions & { reportDir: string; timeoutMs: number; echo?: NodeJS.WritableStream; log?: (line: string) => void },
): Promise<FuzzResult> {
  const started = Date.now();
  const deadline = started + options.timeoutMs;
  const only = (flag: string) => lastPassOperations.flatMap((name) => [flag, name]);
  const plan = [
    { name: 'main', args: only('--exclude-name') },
    { name: 'last', args: only('--include-name') },
  ];
  const passes: FuzzPass[] = [];
  const workDir = mkdtempSync(join(tmpdir(), 'kumo-fuzz-'));
  try {
    for (const { name, args: filter } of plan) {
      const junitPath = join(options.reportDir, `junit-${name}.xml`);
      rmSync(junitPath, { force: true });
      const args = schemathesisArgs({ ...options, junitPath, extraArgs: [...filter, ...(options.extraArgs ?? [])] });
      const command = printableCommand(binary, args, options.token);
      options.log?.(`pass "${name}": ${command}`);
      let result = await runSchemathesis(binary, args, { timeoutMs: Math.max(1000, deadline - Date.now()), cwd: workDir, ...(options.echo ? { echo: options.echo } : {}) });
      let summary = existsSync(junitPath) ? summarizeJunit(readFileSync(junitPath, 'utf8')) : null;
      if (result.exitCode !== 0 && !result.timedOut && summary && onlyToolCrashes(readFileSync(junitPath, 'utf8'), summary)) {
        // CPython 3.11's ast.parse, which Hypothesis calls to describe a lambda, is not safe
        // across threads ("AST constructor recursion depth mismatch", a SystemError): that is the
        // fuzzer crashing, not a finding. The pass runs again on one worker.
        options.log?.(`pass "${name}": Hypothesis crashed in CPython's ast (not a finding); running it again on one worker`);
        const serial = schemathesisArgs({ ...options, workers: 1, junitPath, extraArgs: [...filter, ...(options.extraArgs ?? [])] });
        rmSync(junitPath, { force: true });
        result = await runSchemathesis(binary, serial, { timeoutMs: Math.max(1000, deadline - Date.now()), cwd: workDir, ...(options.echo ? { echo: options.echo } : {}) });
        summary = existsSync(junitPath) ? summarizeJunit(readFileSync(junitPath, 'utf8')) : null;
      }
      passes.push({ name, command, junitPath, result, summary });
      if (result.timedOut) break;
    }
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
  const summary: JunitSummary = { operations: [], failed: [], skipped: [], failures: 0, errors: 0 };
  for (const pass of passes) {
    if (!pass.summary) continue;
    summary.operations.push(...pass.summary.operations);
    summary.failed.push(...pass.summary.failed);
    summary.skipped.push(...pass.summary.skipped);
    summary.failures += pass.summary.failures;
    summary.errors += pass.summary.errors;
  }
  const failedPass = passes.find((pass) => pass.result.exitCode !== 0);
  const exitCode = passes.length < plan.length ? 1 : failedPass ? (failedPass.result.exitCode ?? 1) : 0;
  return { exitCode, durationMs: Date.now() - started, passes, summary };
}

/** Whether every problem of a pass is the fuzzer's own crash in CPython's ast module (no failure of Kumo's). */
export function onlyToolCrashes(junitXml: string, summary: JunitSummary): boolean {
  const crashes = junitXml.split('AST constructor recursion depth mismatch').length - 1;
  return summary.failures === 0 && summary.errors > 0 && crashes >= summary.errors;
}

/** A few lines for a person: what ran, how long, what failed. */
export function formatSummary(result: FuzzResult): string {
  const lines = ['== Kumo fuzz summary =='];
  for (const pass of result.passes) {
    const r = pass.result;
    lines.push(`pass "${pass.name}": exit ${r.exitCode ?? r.signal}${r.timedOut ? ' (timed out)' : ''} in ${(r.durationMs / 1000).toFixed(1)} s, ${pass.summary ? `${pass.summary.operations.length} operations` : 'no JUnit report'}`);
  }
  const s = result.summary;
  lines.push(`operations tested: ${s.operations.length}, failures: ${s.failures}, errors: ${s.errors}, skipped: ${s.skipped.length}; ${(result.durationMs / 1000).toFixed(1)} s`);
  for (const { operation, message } of s.failed) lines.push(`  ✗ ${operation}`, ...message.split('\n').map((line) => `      ${line}`));
  lines.push(result.exitCode === 0 ? 'result: passed' : `result: FAILED (exit ${result.exitCode})`);
  return lines.join('\n');
}
