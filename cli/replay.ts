// kumo ops replay: replays an operation's workflow run (or a saved history) against this checkout's workflow code.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { exitCodes, seg } from './client.js';
import { readJsonFile, str, usage, type Command } from './command.js';
import { fields, json } from './output.js';
import type { Operation } from './ops.js';

export const replayCommand: Command = {
  name: 'replay',
  args: ['[id]'],
  summary: "replay an operation's workflow run against this checkout's workflow code (exit 0 replays, 1 does not)",
  description: [
    'Fetches the run\'s history (GET /v1/operations/<id>/history) and replays it against the workflows of the',
    'checkout the CLI runs from, as a worker started from it would: a change that breaks runs in flight is',
    'reported as non-deterministic with the first history event the code no longer matches. --history replays',
    'a saved history instead (the JSON of `temporal workflow show --output json`; no API needed). Bundling the',
    'workflows takes a few seconds. With -o json, prints the replay report.',
  ].join('\n'),
  options: {
    history: { type: 'string', arg: 'file.json', help: 'replay this saved history instead of fetching the operation\'s ("-" reads stdin)' },
    workflows: { type: 'string', arg: 'path', help: "the workflows' entry file to replay against (default this checkout's workflows/index.ts)" },
  },
  examples: [
    'kumo ops replay op-mx3o6o3a24668492de',
    'kumo ops replay --history test/histories/createCluster-succeeded.json',
    'kumo ops replay op-mx3o6o3a24668492de --workflows ../other-checkout/workflows/index.ts',
  ],
  async run(ctx, [id], flags) {
    const file = str(flags, 'history');
    if (id && file) throw usage('give an operation id or --history file.json, not both');
    if (!id && !file) throw usage('missing argument <id> (or --history file.json)');
    const workflowsFlag = str(flags, 'workflows');
    const workflowsPath = workflowsFlag ? resolve(workflowsFlag) : undefined;
    if (workflowsFlag && !existsSync(workflowsPath!)) throw usage(`--workflows: no such file ${workflowsFlag}`);

    let input: { name: string; history: unknown; workflowId?: string; runId?: string };
    let what: string;
    if (file) {
      input = { name: file, history: readJsonFile(file, 'history') };
      what = file === '-' ? 'the history on stdin' : file;
    } else {
      const op = await ctx.client.get<Operation>(`/v1/operations/${seg(id!)}`);
      const history = await ctx.client.get<unknown>(`/v1/operations/${seg(id!)}/history`);
      input = { name: op.id, history, workflowId: op.workflowId, ...(op.runId ? { runId: op.runId } : {}) };
      what = `operation ${op.id} (${op.kind} ${op.target})`;
    }

    ctx.note(ctx.painter.dim(`bundling the workflows of ${workflowsFlag ?? 'this checkout'} to replay against (a few seconds)...`));
    // Loaded here: the Temporal worker and webpack are heavy, and no other command needs them.
    const { replayHistories, eventTypeName } = await import('../scripts/replay.js');
    const [report] = await replayHistories([input], workflowsPath ? { workflowsPath } : {});
    if (!report) throw new Error('the replay gave no report');

    if (ctx.output === 'json') {
      ctx.print(json(report));
      return report.ok ? exitCodes.ok : exitCodes.failed;
    }
    const { painter } = ctx;
    const run = `${report.workflowType}, workflow ${report.workflowId ?? '?'}${report.runId ? ` run ${report.runId}` : ''}`;
    if (report.ok) {
      ctx.print(`${painter.paint('✓', 'green')} ${what} replays cleanly on this code`);
      ctx.print(painter.dim(`  ${run}`));
      return exitCodes.ok;
    }
    const error = report.error!;
    ctx.print(`${painter.paint('✗', 'red')} ${what} ${error.kind === 'nondeterminism' ? 'is not deterministic on this code' : 'does not replay on this code'}`);
    const event = error.eventId !== undefined ? `${error.eventId} ${error.eventType ? eventTypeName(error.eventType) : ''}`.trimEnd() : error.kind === 'nondeterminism' ? 'not found in the history (see the error)' : null;
    ctx.print(indent(fields([['Run', run], ['First diverging event', event], ['Error', error.message]])));
    return exitCodes.failed;
  },
};

const indent = (text: string): string => text.replace(/^/gm, '  ');
