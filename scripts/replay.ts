// Replay of workflow runs against this checkout's workflow code: does a change break runs in flight?
//
// A module (`replayHistories`, used by `kumo ops replay` and test/replay-tool.test.ts) and a command:
//
//   npm run replay -- --since 7d                      # every run Temporal started in the last 7 days
//   npm run replay -- --since 24h --workflow-type createCluster --limit 50
//   npm run replay -- --since 7d --address temporal.internal:7233 --namespace kumo
//   npm run replay -- --history test/histories/createCluster-succeeded.json ...   # saved histories
//   npm run replay -- --since 7d --workflows path/to/other/workflows/index.ts     # another copy of the code
//
// Without --address it connects to TEMPORAL_ADDRESS, else 127.0.0.1:TEMPORAL_PORT (the embedded dev
// server of `npm start`), in TEMPORAL_NAMESPACE (flag --namespace). It lists the executions started
// since then (`StartTime > '<iso>'`, at most --limit, default 500), fetches each history, bundles the
// workflows once (workers/worker.ts's `workflowsPath`, or --workflows) and replays every history
// against that bundle. It prints one line per run (workflow id, type, result, first diverging event);
// --json prints the reports instead. Saved histories (--history) are the JSON of
// `temporal workflow show --output json`, of `GET /v1/operations/{id}/history`, or of test/histories/.
//
// Exit codes: 0 every run replays, 1 some run does not (non-deterministic, or its replay failed),
// 2 usage error, 7 Temporal cannot be reached.
//
// The first diverging event: the SDK's nondeterminism message names an event id only sometimes
// ("HistoryEvent(id: 12, ...)"); when it does not, the run is replayed again cut short at each
// workflow task (a bisection) to find the task whose commands no longer match, and within it the
// event the message names (e.g. the scheduled activity 'createNodePools'), else its first command event.
import { existsSync, readFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { isMainModule } from './tools.js';
import { historyFromJSON, historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import type { temporal } from '@temporalio/proto';
import type { Worker, WorkflowBundleWithSourceMap } from '@temporalio/worker';

type History = temporal.api.history.v1.IHistory;

export interface ReplayReport {
  /** What the history was given as: a file name, an operation id, a workflow id. */
  name: string;
  workflowId?: string;
  runId?: string;
  workflowType: string;
  ok: boolean;
  error?: {
    kind: 'nondeterminism' | 'failure';
    message: string;
    /** The first event of the history the code no longer matches, when it could be found. */
    eventId?: number;
    eventType?: string;
  };
}

export interface HistoryInput {
  name: string;
  /** A history as JSON (`temporal workflow show --output json`) or as the SDK's proto object. */
  history: unknown;
  /** The run's ids when the caller knows them; else they are read from the history. */
  workflowId?: string;
  runId?: string;
}

export interface ReplayOptions {
  /** The workflows' entry (an index.ts exporting every workflow); default this checkout's workflows/index.ts. */
  workflowsPath?: string;
  /** A bundle built already (then workflowsPath is not used). */
  workflowBundle?: WorkflowBundleWithSourceMap;
}

/** A history ready to replay: its JSON (to look events up) and its proto (for the SDK). */
interface Prepared {
  input: HistoryInput;
  json: JsonHistory;
  proto: History;
  workflowId: string;
  runId?: string;
  workflowType: string;
}

interface JsonEvent {
  eventId: string | number;
  eventType: string;
  [attributes: string]: unknown;
}

interface JsonHistory {
  events: JsonEvent[];
}

const quiet = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };

/**
 * Installs a Temporal runtime that logs nothing, unless one is installed already: the replay
 * worker's own error logs repeat what the reports say.
 */
async function quietRuntime(): Promise<void> {
  const { Runtime } = await import('@temporalio/worker');
  try {
    Runtime.install({ logger: quiet, telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' }, forward: {} } } });
  } catch {
    // a runtime exists already (a test or the caller installed one): keep it
  }
}

/** Bundles the workflows (several seconds, webpack): this checkout's, or those at `workflowsPath`. */
export async function bundleWorkflows(workflowsPath?: string): Promise<WorkflowBundleWithSourceMap> {
  const { bundleWorkflowCode } = await import('@temporalio/worker');
  const path = workflowsPath ?? (await import('../workers/worker.js')).workflowsPath;
  return bundleWorkflowCode({ workflowsPath: path, logger: quiet });
}

/**
 * Replays each history against the workflow code (bundled once) and says for each whether it
 * still replays; for a non-deterministic one, the first event of the history that no longer matches.
 * @example const [report] = await replayHistories([{ name: 'a.json', history: JSON.parse(text) }]);
 */
export async function replayHistories(histories: HistoryInput[], options: ReplayOptions = {}): Promise<ReplayReport[]> {
  const reports: Array<ReplayReport | undefined> = new Array(histories.length);
  const ready: Array<{ at: number; item: Prepared }> = [];
  histories.forEach((input, at) => {
    try {
      ready.push({ at, item: prepare(input) });
    } catch (err) {
      reports[at] = { name: input.name, workflowType: 'unknown', ok: false, error: { kind: 'failure', message: `not a workflow history: ${messageOf(err)}` } };
    }
  });
  if (ready.length) {
    await quietRuntime();
    const { Worker } = await import('@temporalio/worker');
    const workflowBundle = options.workflowBundle ?? (await bundleWorkflows(options.workflowsPath));
    const errors: Array<Error | undefined> = [];
    const runIds: string[] = [];
    try {
      // One replay worker for all of them, one history at a time.
      const feed = ready.map(({ item }) => ({ history: item.proto, workflowId: item.workflowId }));
      for await (const result of Worker.runReplayHistories({ workflowBundle }, feed)) {
        errors.push(result.error);
        runIds.push(result.runId);
      }
    } catch (err) {
      // The worker itself broke down: what was not replayed yet fails with its reason.
      while (errors.length < ready.length) errors.push(new Error(`the replay did not run: ${messageOf(err)}`));
    }
    for (const [index, { at, item }] of ready.entries()) {
      const error = errors[index];
      const runId = item.input.runId ?? runIds[index] ?? item.runId;
      const report: ReplayReport = { name: item.input.name, workflowId: item.workflowId, ...(runId ? { runId } : {}), workflowType: item.workflowType, ok: !error };
      if (error) {
        const message = innerMessage(error.message);
        if (error.name === 'DeterminismViolationError') {
          const event = await locateDivergence(Worker, workflowBundle, item, message);
          report.error = { kind: 'nondeterminism', message, ...(event ? { eventId: Number(event.eventId), eventType: event.eventType } : {}) };
        } else {
          report.error = { kind: 'failure', message };
        }
      }
      reports[at] = report;
    }
  }
  return reports as ReplayReport[];
}

function prepare(input: HistoryInput): Prepared {
  const given = input.history as { events?: Array<{ eventId?: unknown }> } | null;
  if (!given || typeof given !== 'object' || !Array.isArray(given.events) || !given.events.length) throw new Error('it has no events');
  // JSON has string event ids; the SDK's proto objects have Longs.
  const isJson = typeof given.events[0]?.eventId === 'string' || typeof given.events[0]?.eventId === 'number';
  const json = (isJson ? given : JSON.parse(historyToJSON(given as temporal.api.history.v1.History))) as JsonHistory;
  const proto = isJson ? historyFromJSON(json) : (given as History);
  const started = json.events[0]?.workflowExecutionStartedEventAttributes as
    | { workflowType?: { name?: string }; workflowId?: string; originalExecutionRunId?: string }
    | undefined;
  if (!started) throw new Error('its first event is not WorkflowExecutionStarted');
  return {
    input,
    json,
    proto,
    // Workflow code may read its workflow id: replay with the real one when it is known.
    workflowId: input.workflowId ?? started.workflowId ?? input.name,
    ...(input.runId ?? started.originalExecutionRunId ? { runId: input.runId ?? started.originalExecutionRunId } : {}),
    workflowType: started.workflowType?.name ?? 'unknown',
  };
}

const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * The SDK wraps Core's message ("Replay failed with a nondeterminism error. ... Details: Workflow
 * activation completion failed: Failure { failure: Some(Failure { message: "[TMPRL1100] ..." ... })");
 * the inner one says what went wrong.
 */
export function innerMessage(message: string): string {
  const inner = /\bmessage: "((?:[^"\\]|\\.)*)"/.exec(message);
  return inner ? inner[1]!.replace(/\\"/g, '"').replace(/\\\\/g, '\\') : message;
}

/** The event id a nondeterminism message names, if it names one. */
export function eventIdIn(message: string): number | undefined {
  const match = /HistoryEvent\(\s*id:\s*(\d+)/i.exec(message) ?? /\bevent(?:[ _]?id)?[:=]?\s*#?(\d+)\b/i.exec(message);
  return match ? Number(match[1]) : undefined;
}

/** Events a workflow task's commands produce: where code and history disagree. */
const commandEvents = new Set(
  [
    'ACTIVITY_TASK_SCHEDULED',
    'ACTIVITY_TASK_CANCEL_REQUESTED',
    'TIMER_STARTED',
    'TIMER_CANCELED',
    'MARKER_RECORDED',
    'START_CHILD_WORKFLOW_EXECUTION_INITIATED',
    'SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED',
    'REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED',
    'UPSERT_WORKFLOW_SEARCH_ATTRIBUTES',
    'WORKFLOW_PROPERTIES_MODIFIED',
    'WORKFLOW_EXECUTION_COMPLETED',
    'WORKFLOW_EXECUTION_FAILED',
    'WORKFLOW_EXECUTION_CANCELED',
    'WORKFLOW_EXECUTION_CONTINUED_AS_NEW',
    'WORKFLOW_EXECUTION_UPDATE_ACCEPTED',
    'WORKFLOW_EXECUTION_UPDATE_COMPLETED',
    'NEXUS_OPERATION_SCHEDULED',
    'NEXUS_OPERATION_CANCEL_REQUESTED',
  ].map((type) => `EVENT_TYPE_${type}`),
);

/** EVENT_TYPE_ACTIVITY_TASK_SCHEDULED (and the older ActivityTaskScheduled) as one form. */
const canonical = (type: string): string =>
  type.startsWith('EVENT_TYPE_') ? type : `EVENT_TYPE_${type.replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase()}`;

/**
 * A history event type as the Temporal UI shows it.
 * @example eventTypeName('EVENT_TYPE_ACTIVITY_TASK_SCHEDULED') // "ActivityTaskScheduled"
 */
export function eventTypeName(type: string): string {
  if (!type.startsWith('EVENT_TYPE_')) return type;
  return type
    .slice('EVENT_TYPE_'.length)
    .toLowerCase()
    .replace(/(^|_)([a-z])/g, (_, _sep: string, letter: string) => letter.toUpperCase());
}

/** Every string in an event's attributes (payload data left out): activity types, ids, names. */
function stringsOf(value: unknown, out: Set<string> = new Set()): Set<string> {
  if (typeof value === 'string') out.add(value);
  else if (Array.isArray(value)) for (const item of value) stringsOf(item, out);
  else if (value && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) if (key !== 'payloads' && key !== 'data' && key !== 'header') stringsOf(item, out);
  }
  return out;
}

/**
 * The first event the code no longer matches: the one the message names by id; else, found by
 * replaying the history cut short after each workflow task started (a bisection, on one replay
 * worker), the event of the first mismatching task that the message names, else its first command event.
 */
async function locateDivergence(
  worker: typeof Worker,
  workflowBundle: WorkflowBundleWithSourceMap,
  item: Prepared,
  message: string,
): Promise<JsonEvent | null> {
  const events = item.json.events;
  const byId = eventIdIn(message);
  if (byId !== undefined) return events.find((event) => Number(event.eventId) === byId) ?? null;

  const started = events.flatMap((event, index) => (canonical(event.eventType) === 'EVENT_TYPE_WORKFLOW_TASK_STARTED' ? [index] : []));
  if (!started.length) return null;
  // The history up to and including the k-th WorkflowTaskStarted replays every earlier task's
  // commands: find the smallest k whose prefix fails (the whole history fails).
  let low = 0;
  let high = started.length; // started.length stands for the whole history
  let probe = -1;
  let failed = false;
  async function* prefixes() {
    while (low < high) {
      probe = Math.floor((low + high) / 2);
      yield { history: historyFromJSON({ ...item.json, events: events.slice(0, started[probe]! + 1) }), workflowId: item.workflowId };
      if (failed) high = probe;
      else low = probe + 1;
    }
  }
  try {
    for await (const result of worker.runReplayHistories({ workflowBundle }, prefixes())) failed = result.error !== undefined;
  } catch {
    return null;
  }
  // Events after the previous task started, up to the one (or the end) where the mismatch shows.
  const from = low === 0 ? 0 : started[low - 1]! + 1;
  const to = low < started.length ? started[low]! + 1 : events.length;
  const region = events.slice(from, to);
  const completed = region.findIndex((event) => canonical(event.eventType) === 'EVENT_TYPE_WORKFLOW_TASK_COMPLETED');
  const candidates = completed >= 0 ? region.slice(completed + 1) : region;
  const named = [...message.matchAll(/'([^']+)'/g)].map((match) => match[1]!);
  const commands = candidates.filter((event) => commandEvents.has(canonical(event.eventType)));
  for (const event of commands) {
    const strings = stringsOf(Object.fromEntries(Object.entries(event).filter(([key]) => key.endsWith('Attributes'))));
    if (named.some((name) => strings.has(name))) return event;
  }
  return commands[0] ?? (completed >= 0 ? region[completed]! : null);
}

// ---------------------------------------------------------------------------------------------
// The command: npm run replay -- ...

const exit = { ok: 0, diverged: 1, usage: 2, unreachable: 7 } as const;

class UsageError extends Error {}

const help = `Usage: npm run replay -- --since D [--address host:port] [--namespace NS] [--limit N] [--workflow-type T] [--workflows path] [--json]
       npm run replay -- --history file.json [file.json ...] [--workflows path] [--json]

Replays workflow runs against this checkout's workflow code (or --workflows, a workflows index.ts).

  --since D           runs started in the last D (30m, 24h, 7d, 2w)
  --address A         the Temporal frontend (default TEMPORAL_ADDRESS, else 127.0.0.1:TEMPORAL_PORT)
  --namespace NS      the namespace (default TEMPORAL_NAMESPACE, else "default")
  --limit N           replay at most N runs (default 500)
  --workflow-type T   only runs of this workflow type
  --history F ...     replay saved history files instead (temporal workflow show --output json)
  --workflows P       the workflows' entry file to replay against (default workflows/index.ts)
  --json              print the reports as JSON

Exit codes: 0 every run replays, 1 some run does not, 2 usage error, 7 Temporal cannot be reached.`;

/**
 * A duration like 30m, 24h, 7d, 90s or 2w, in milliseconds.
 * @example sinceMs('7d') // 604_800_000
 */
function sinceMs(value: string): number {
  const match = /^(\d+)\s*(s|m|h|d|w)$/.exec(value.trim());
  if (!match) throw new UsageError(`--since takes a duration such as 30m, 24h or 7d, got "${value}"`);
  return Number(match[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[match[2] as 's' | 'm' | 'h' | 'd' | 'w'];
}

/** The first diverging event of a report, for a table cell. */
export function divergenceText(report: ReplayReport): string {
  if (report.ok || !report.error) return '-';
  if (report.error.eventId === undefined) return report.error.kind === 'failure' ? '(replay failed)' : '(not found)';
  return `${report.error.eventId} ${report.error.eventType ? eventTypeName(report.error.eventType) : ''}`.trim();
}

const resultText = (report: ReplayReport): string => (report.ok ? 'ok' : report.error?.kind === 'nondeterminism' ? 'NON-DETERMINISTIC' : 'FAILED');

function printReports(reports: ReplayReport[], write: (text: string) => void): void {
  const rows = reports.map((report) => [report.workflowId ?? report.name, report.workflowType, resultText(report), divergenceText(report)]);
  const headers = ['WORKFLOW ID', 'TYPE', 'RESULT', 'FIRST DIVERGING EVENT'];
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) => cells.map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ');
  write([line(headers), ...rows.map(line)].join('\n'));
  const failed = reports.filter((report) => !report.ok);
  if (failed.length) write('');
  for (const report of failed) write(`${report.workflowId ?? report.name}${report.runId ? ` (run ${report.runId})` : ''}: ${report.error?.message ?? ''}`);
  write('');
  write(`${reports.length - failed.length} of ${reports.length} runs replay on this code${failed.length ? `; ${failed.length} do not` : ''}`);
}

/** Lists the runs started since the cutoff and fetches their histories. */
async function fetchFromTemporal(options: { address: string; namespace: string; cutoff: Date; limit: number; workflowType?: string }): Promise<HistoryInput[]> {
  const { Client, Connection } = await import('@temporalio/client');
  let connection: Awaited<ReturnType<typeof Connection.connect>>;
  try {
    connection = await Connection.connect({ address: options.address, connectTimeout: '5s' });
  } catch (err) {
    throw Object.assign(new Error(`cannot reach Temporal at ${options.address}: ${messageOf(err)}`), { exitCode: exit.unreachable });
  }
  try {
    const client = new Client({ connection, namespace: options.namespace });
    const clauses = [`StartTime > '${options.cutoff.toISOString()}'`];
    if (options.workflowType) clauses.push(`WorkflowType = '${options.workflowType.replace(/'/g, "\\'")}'`);
    const runs: Array<{ workflowId: string; runId: string }> = [];
    try {
      for await (const info of client.workflow.list({ query: clauses.join(' AND '), pageSize: Math.min(options.limit, 1000) })) {
        runs.push({ workflowId: info.workflowId, runId: info.runId });
        if (runs.length >= options.limit) break;
      }
    } catch (err) {
      const code = (err as { cause?: { code?: number } }).cause?.code ?? (err as { code?: number }).code;
      // gRPC 14 UNAVAILABLE, 4 DEADLINE_EXCEEDED; 5 NOT_FOUND is an unknown namespace.
      if (code === 14 || code === 4) throw Object.assign(new Error(`cannot reach Temporal at ${options.address}: ${messageOf(err)}`), { exitCode: exit.unreachable });
      if (code === 5 || (err as Error).name === 'NamespaceNotFoundError') throw new UsageError(`Temporal at ${options.address} has no namespace "${options.namespace}"`);
      throw err;
    }
    const histories: HistoryInput[] = new Array(runs.length);
    let next = 0;
    // A few fetches at a time.
    await Promise.all(
      Array.from({ length: Math.min(8, runs.length) }, async () => {
        while (next < runs.length) {
          const at = next++;
          const run = runs[at]!;
          const history = await client.workflow.getHandle(run.workflowId, run.runId).fetchHistory();
          histories[at] = { name: `${run.workflowId}/${run.runId}`, history: JSON.parse(historyToJSON(history)) as unknown, workflowId: run.workflowId, runId: run.runId };
        }
      }),
    );
    return histories;
  } finally {
    await connection.close();
  }
}

/** Runs `npm run replay -- …` and returns its exit code. */
export async function main(argv: string[], env: Record<string, string | undefined> = process.env): Promise<number> {
  const out = (text: string) => process.stdout.write(`${text}\n`);
  const err = (text: string) => process.stderr.write(`${text}\n`);
  try {
    let values;
    let positionals: string[];
    try {
      ({ values, positionals } = parseArgs({
        args: argv,
        options: {
          since: { type: 'string' },
          address: { type: 'string' },
          namespace: { type: 'string' },
          limit: { type: 'string' },
          'workflow-type': { type: 'string' },
          history: { type: 'string', multiple: true },
          workflows: { type: 'string' },
          json: { type: 'boolean' },
          help: { type: 'boolean', short: 'h' },
        },
        allowPositionals: true,
        strict: true,
      }));
    } catch (error) {
      throw new UsageError(messageOf(error).split('\n')[0]!.replace(/\. To specify a positional argument.*$/, ''));
    }
    if (values.help) {
      out(help);
      return exit.ok;
    }
    // `--history a.json b.json`: the files after the first come as positionals.
    const files = values.history ? [...values.history, ...positionals] : [];
    if (!values.history && positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    if (values.history && values.since) throw new UsageError('give --since (runs from Temporal) or --history (saved files), not both');
    if (!values.history && !values.since) throw new UsageError('give --since D (e.g. 7d) to replay recent runs, or --history file.json');
    let workflowsPath: string | undefined;
    if (values.workflows) {
      workflowsPath = resolve(values.workflows);
      if (!existsSync(workflowsPath)) throw new UsageError(`--workflows: no such file ${values.workflows}`);
    }

    let histories: HistoryInput[];
    if (values.history) {
      histories = files.map((file) => {
        let text: string;
        try {
          text = readFileSync(file, 'utf8');
        } catch (error) {
          throw new UsageError(`cannot read ${file}: ${messageOf(error)}`);
        }
        try {
          return { name: basename(file), history: JSON.parse(text) as unknown };
        } catch (error) {
          throw new UsageError(`${file} is not valid JSON: ${messageOf(error)}`);
        }
      });
    } else {
      const limit = values.limit === undefined ? 500 : Number(values.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new UsageError(`--limit takes a whole number of at least 1, got "${values.limit}"`);
      const { loadConfig } = await import('../domain/config.js');
      let config;
      try {
        config = loadConfig(env);
      } catch (error) {
        throw new UsageError(messageOf(error));
      }
      const address = values.address ?? config.TEMPORAL_ADDRESS ?? `127.0.0.1:${config.TEMPORAL_PORT}`;
      if (!/^[^\s:/]+:\d+$/.test(address)) throw new UsageError(`--address takes host:port, got "${address}"`);
      const namespace = values.namespace ?? config.TEMPORAL_NAMESPACE;
      const cutoff = new Date(Date.now() - sinceMs(values.since!));
      err(`listing runs started since ${cutoff.toISOString()} in ${address}, namespace ${namespace}`);
      histories = await fetchFromTemporal({ address, namespace, cutoff, limit, ...(values['workflow-type'] ? { workflowType: values['workflow-type'] } : {}) });
      if (!histories.length) {
        if (values.json) out('[]');
        else out('no runs started in that time: nothing to replay');
        return exit.ok;
      }
    }

    err(`bundling the workflows of ${workflowsPath ? values.workflows : 'this checkout'} and replaying ${histories.length} run${histories.length === 1 ? '' : 's'}...`);
    const reports = await replayHistories(histories, workflowsPath ? { workflowsPath } : {});
    if (values.json) out(JSON.stringify(reports, null, 2));
    else printReports(reports, out);
    return reports.every((report) => report.ok) ? exit.ok : exit.diverged;
  } catch (error) {
    if (error instanceof UsageError) {
      err(`error: ${error.message}`);
      err('');
      err(help);
      return exit.usage;
    }
    err(`error: ${error instanceof Error ? error.message : String(error)}`);
    const code = (error as { exitCode?: number }).exitCode;
    return typeof code === 'number' ? code : exit.diverged;
  }
}


if (isMainModule(import.meta.url)) process.exitCode = await main(process.argv.slice(2));
