// kumo ops: list, show, watch and cancel operations; `followOperation` is what every --wait runs.
import { ApiError, exitCodes, seg } from './client.js';
import { integer, str, usage, type Context, type Flags, type Group, waitOption } from './command.js';
import { durationBetween, fields, formatDuration, json, ProgressLine, relativeTime, table, timestamp } from './output.js';
import { replayCommand } from './replay.js';

export interface Step {
  name: string;
  status: 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'skipped';
  startedAt?: string;
  finishedAt?: string;
  detail?: string;
}

/** An operation as GET /v1/operations/{id} answers it. */
export interface Operation {
  id: string;
  kind: string;
  target: string;
  status: 'running' | 'succeeded' | 'failed' | 'cancelled';
  step: string | null;
  detail?: string;
  steps: Step[];
  startedAt: string;
  finishedAt: string | null;
  failure: { step: string; type: string; message: string; attempts: number } | null;
  attempt?: number;
  lastError?: string;
  workflowId: string;
  runId: string | null;
  result?: unknown;
  links: { self: string; temporalUI?: string };
}

const ended = new Set(['succeeded', 'failed', 'cancelled', 'skipped']);
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
const spinner = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/** How long a watch keeps trying while the API does not answer before it gives up (exit 7). */
const unreachableGraceMs = 30_000;

/**
 * Follows an operation until it ends: each step as it starts and ends, its progress
 * and retries, rewritten in place on a terminal and line by line otherwise. With
 * `-o json` it prints only the final operation document. Exit code 0 when it
 * succeeded, 1 when it failed or was cancelled.
 */
export async function followOperation(ctx: Context, id: string): Promise<number> {
  const { painter } = ctx;
  const seen = new Map<string, string>();
  const live = ctx.tty && ctx.output === 'table' ? new ProgressLine(ctx.stdout) : null;
  let lastDetail = '';
  let lastError = '';
  let frame = 0;
  let failingSince: number | null = null;
  let announced = false;

  for (;;) {
    let op: Operation;
    try {
      op = await ctx.client.get<Operation>(`/v1/operations/${seg(id)}`);
      failingSince = null;
    } catch (err) {
      // A restarting API or a blip: keep trying for a while, then give up.
      if (err instanceof ApiError && err.exitCode === exitCodes.unreachable) {
        failingSince ??= Date.now();
        if (Date.now() - failingSince < unreachableGraceMs) {
          await sleep(ctx.pollMs);
          continue;
        }
      }
      live?.clear();
      throw err;
    }
    const done = op.status !== 'running';

    if (ctx.output === 'json') {
      if (done) {
        ctx.print(json(op));
        return outcome(op);
      }
      await sleep(ctx.pollMs);
      continue;
    }

    if (!announced) {
      ctx.print(`${painter.bold(`operation ${op.id}`)}  ${op.kind} ${op.target}`);
      announced = true;
    }
    // When each thing happened, from the operation's start: a step's own times when it has them.
    const elapsed = (at?: string) => `[${formatDuration((at ? Date.parse(at) : Date.now()) - Date.parse(op.startedAt)).padStart(6)}]`;
    const total = op.steps.length;
    const lines: string[] = [];
    op.steps.forEach((step, index) => {
      const before = seen.get(step.name);
      if (before === step.status) return;
      seen.set(step.name, step.status);
      const label = `${step.name} (${index + 1}/${total})`;
      if (step.status === 'running' && !live) lines.push(`${elapsed(step.startedAt)} ▸ ${label} started${step.detail ? `: ${step.detail}` : ''}`);
      else if (ended.has(step.status)) {
        const mark = step.status === 'succeeded' ? painter.paint('✓', 'green') : step.status === 'skipped' ? painter.dim('-') : painter.paint('✗', 'red');
        const took = step.startedAt && step.finishedAt ? ` in ${durationBetween(step.startedAt, step.finishedAt)}` : '';
        lines.push(`${elapsed(step.finishedAt ?? step.startedAt ?? op.finishedAt ?? undefined)} ${mark} ${label} ${painter.state(step.status)}${took}${step.detail && step.status !== 'succeeded' ? `: ${step.detail}` : ''}`);
      }
    });
    const current = op.steps.find((step) => step.status === 'running') ?? null;
    const detail = op.detail ?? current?.detail ?? '';
    if (!done && !live && current && detail && detail !== lastDetail) lines.push(`${elapsed()}   ${current.name}: ${detail}`);
    lastDetail = detail;
    const retrying = op.attempt && op.attempt > 1 && op.lastError ? `attempt ${op.attempt}, last error: ${op.lastError}` : '';
    if (!done && retrying && retrying !== lastError && !live) lines.push(`${elapsed()}   ${current?.name ?? op.step ?? ''}: ${retrying}`);
    lastError = retrying;

    if (lines.length) {
      live?.clear();
      ctx.print(lines.join('\n'));
    }
    if (done) {
      live?.clear();
      ctx.print(summary(ctx, op));
      return outcome(op);
    }
    if (live) {
      const doneSteps = op.steps.filter((step) => step.status === 'succeeded' || step.status === 'skipped').length;
      const parts = [`${spinner[frame++ % spinner.length]} ${current?.name ?? op.step ?? 'starting'}`, `${doneSteps}/${total} steps done`, formatDuration(Date.now() - Date.parse(op.startedAt))];
      if (detail) parts.push(detail);
      if (retrying) parts.push(retrying);
      live.update(parts.join(' · '));
    }
    await sleep(ctx.pollMs);
  }
}

function outcome(op: Operation): number {
  return op.status === 'succeeded' ? exitCodes.ok : exitCodes.failed;
}

function summary(ctx: Context, op: Operation): string {
  const { painter } = ctx;
  const took = durationBetween(op.startedAt, op.finishedAt);
  if (op.status === 'succeeded') return `${painter.paint('✓', 'green')} operation ${op.id} ${painter.state('succeeded')} in ${took}`;
  const lines = [`${painter.paint('✗', 'red')} operation ${op.id} ${painter.state(op.status)} after ${took}`];
  if (op.failure) {
    lines.push(`  step:     ${op.failure.step}`, `  type:     ${op.failure.type}`, `  message:  ${op.failure.message}`, `  attempts: ${op.failure.attempts}`);
  }
  lines.push(`  details:  kumo ops get ${op.id}`);
  if (op.links.temporalUI) lines.push(`  temporal: ${op.links.temporalUI}`);
  return lines.join('\n');
}

/**
 * After a command started an operation: prints the API's answer (`-o json`) or a
 * line naming the operation, then with --wait follows it until it ends.
 */
export async function afterStart(ctx: Context, answer: unknown, operation: Pick<Operation, 'id' | 'kind' | 'target'> | null | undefined, flags: Flags, what: string): Promise<number> {
  const wait = flags.wait === true && !!operation;
  if (ctx.output === 'json' && !wait) ctx.print(json(answer));
  if (!operation) return exitCodes.ok;
  if (wait) return followOperation(ctx, operation.id);
  if (ctx.output === 'table') {
    ctx.print(`${what}: operation ${operation.id} (${operation.kind} ${operation.target}) started`);
    ctx.print(ctx.painter.dim(`follow it with: kumo ops watch ${operation.id}`));
  }
  return exitCodes.ok;
}

/**
 * A duration like 30m, 24h, 7d, 90s or 2w, in milliseconds.
 * @example parseSince('24h') // 86_400_000
 */
export function parseSince(value: string): number {
  const match = /^(\d+)\s*(s|m|h|d|w)$/.exec(value.trim());
  if (!match) throw usage(`--since takes a duration such as 30m, 24h or 7d, got "${value}"`);
  const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[match[2] as 's' | 'm' | 'h' | 'd' | 'w'];
  return Number(match[1]) * unit;
}

interface OperationPage {
  items: Operation[];
  nextCursor: string | null;
}

/** The step to show for an operation in a list: where it is, or where it failed. */
function stepOf(op: Operation): string {
  if (op.status === 'running') return op.step ?? '-';
  if (op.failure) return `${op.failure.step} (${op.failure.type})`;
  return '-';
}

export const opsGroup: Group = {
  name: 'ops',
  aliases: ['operations', 'op'],
  summary: 'long-running operations: list, show, watch, cancel',
  commands: [
    {
      name: 'ls',
      aliases: ['list'],
      summary: 'list operations, newest first',
      description: 'The API filters by kind, status and target; --since is applied here on startedAt, paging until older operations appear.',
      options: {
        failed: { type: 'boolean', help: 'only failed operations' },
        running: { type: 'boolean', help: 'only running operations' },
        status: { type: 'string', arg: 'S', help: 'only operations with this status (running, succeeded, failed, cancelled)' },
        kind: { type: 'string', arg: 'K', help: 'only this kind, e.g. cluster.scale, addon.apply, function.deploy' },
        target: { type: 'string', arg: 'T', help: 'only this target, e.g. cluster/prod-eu-1, addon/logging, function/hello' },
        since: { type: 'string', arg: 'D', help: 'only operations started in the last D (30m, 24h, 7d)' },
        limit: { type: 'string', arg: 'N', help: 'show at most N operations (default 50, or 500 with --since)' },
      },
      examples: ['kumo ops ls --failed --since 24h', 'kumo ops ls --kind cluster.scale --target cluster/prod-eu-1'],
      async run(ctx, _args, flags) {
        const statuses = [flags.failed ? 'failed' : null, flags.running ? 'running' : null, str(flags, 'status') ?? null].filter((s): s is string => s !== null);
        if (new Set(statuses).size > 1) throw usage('give one status: --failed, --running or --status');
        const since = str(flags, 'since');
        const cutoff = since ? Date.now() - parseSince(since) : null;
        const limit = integer(str(flags, 'limit'), '--limit') ?? (cutoff ? 500 : 50);
        if (limit < 1) throw usage('--limit must be at least 1');
        const items: Operation[] = [];
        let cursor: string | null = null;
        let nextCursor: string | null = null;
        for (;;) {
          const query = new URLSearchParams({ limit: String(Math.min(200, limit - items.length)) });
          if (statuses[0]) query.set('status', statuses[0]);
          const kind = str(flags, 'kind');
          const target = str(flags, 'target');
          if (kind) query.set('kind', kind);
          if (target) query.set('target', target);
          if (cursor) query.set('cursor', cursor);
          const page: OperationPage = await ctx.client.get<OperationPage>(`/v1/operations?${query}`);
          let older = false;
          for (const op of page.items) {
            if (cutoff !== null && Date.parse(op.startedAt) < cutoff) {
              older = true;
              break;
            }
            items.push(op);
          }
          nextCursor = older ? null : page.nextCursor;
          if (older || !page.nextCursor || items.length >= limit) break;
          cursor = page.nextCursor;
        }
        if (ctx.output === 'json') {
          ctx.print(json({ items, nextCursor }));
          return exitCodes.ok;
        }
        if (!items.length) {
          ctx.note('No operations.');
          return exitCodes.ok;
        }
        const now = Date.now();
        ctx.print(
          table(
            ['ID', 'KIND', 'TARGET', 'STATUS', 'STEP', 'STARTED', 'DURATION'],
            items.map((op) => [op.id, op.kind, op.target, ctx.painter.state(op.status), stepOf(op), relativeTime(op.startedAt, now), durationBetween(op.startedAt, op.finishedAt, now)]),
          ),
        );
        if (nextCursor) ctx.note(ctx.painter.dim(`more: raise --limit (showing ${items.length})`));
        return exitCodes.ok;
      },
    },
    {
      name: 'get',
      aliases: ['show'],
      args: ['<id>'],
      summary: 'show an operation: every step, the failure, the Temporal UI link',
      async run(ctx, [id]) {
        const op = await ctx.client.get<Operation>(`/v1/operations/${seg(id!)}`);
        if (ctx.output === 'json') {
          ctx.print(json(op));
          return exitCodes.ok;
        }
        printOperation(ctx, op);
        return exitCodes.ok;
      },
    },
    {
      name: 'watch',
      aliases: ['follow'],
      args: ['<id>'],
      summary: 'follow a running operation until it ends (exit 0 succeeded, 1 failed or cancelled)',
      description: 'Shows the current step, the steps done out of all, the elapsed time and the step\'s progress, rewritten in place on a terminal and one line per change otherwise. With -o json, prints the final operation document.',
      async run(ctx, [id]) {
        return followOperation(ctx, id!);
      },
    },
    {
      name: 'cancel',
      args: ['<id>'],
      summary: 'ask a running operation to stop (it cleans up and ends as cancelled)',
      async run(ctx, [id]) {
        const { body } = await ctx.client.request<Operation>('POST', `/v1/operations/${seg(id!)}/cancel`);
        if (ctx.output === 'json') ctx.print(json(body));
        else ctx.print(`cancellation of operation ${body.id} (${body.kind} ${body.target}) requested; follow it with: kumo ops watch ${body.id}`);
        return exitCodes.ok;
      },
    },
    {
      name: 'retry',
      args: ['<id>'],
      summary: 'retry a failed operation from its failed step (completed steps are reused, not run again)',
      options: waitOption,
      examples: ['kumo ops retry op-mfx2k1a9c3d4e5f6 --wait'],
      async run(ctx, [id], flags) {
        const { body } = await ctx.client.request<{ operation: Operation }>('POST', `/v1/operations/${seg(id!)}/retry`);
        return afterStart(ctx, body, body.operation, flags, `retry of ${id!}`);
      },
    },
    replayCommand,
  ],
};

/** An operation in full, for humans. */
export function printOperation(ctx: Context, op: Operation): void {
  const { painter } = ctx;
  const now = Date.now();
  ctx.print(
    fields([
      ['ID', op.id],
      ['Kind', op.kind],
      ['Target', op.target],
      ['Status', painter.state(op.status)],
      ['Step', op.status === 'running' ? op.step : null],
      ['Detail', op.status === 'running' ? op.detail : null],
      ['Attempt', op.attempt && op.attempt > 1 ? `${op.attempt}${op.lastError ? ` (last error: ${op.lastError})` : ''}` : null],
      ['Started', timestamp(op.startedAt, now)],
      ['Finished', timestamp(op.finishedAt, now)],
      ['Duration', durationBetween(op.startedAt, op.finishedAt, now) + (op.finishedAt ? '' : ' so far')],
      ['Workflow', `${op.workflowId}${op.runId ? ` (run ${op.runId})` : ''}`],
      ['Temporal UI', op.links.temporalUI],
    ]),
  );
  ctx.print('');
  ctx.print(painter.bold('Steps'));
  const clock = (iso: string | undefined) => (iso ? iso.slice(11, 19) : '-');
  ctx.print(
    table(
      ['#', 'STEP', 'STATUS', 'STARTED', 'FINISHED', 'DURATION', 'DETAIL'],
      op.steps.map((step, index) => [
        String(index + 1),
        step.name,
        painter.state(step.status),
        clock(step.startedAt),
        clock(step.finishedAt),
        step.startedAt ? durationBetween(step.startedAt, step.finishedAt ?? (step.status === 'running' ? null : step.startedAt), now) : '-',
        step.detail ?? '',
      ]),
    ),
  );
  if (op.failure) {
    ctx.print('');
    ctx.print(painter.bold('Failure'));
    ctx.print(fields([['Step', op.failure.step], ['Type', painter.paint(op.failure.type, 'red')], ['Message', op.failure.message], ['Attempts', op.failure.attempts]]));
  }
  if (op.result !== undefined && op.result !== null) {
    ctx.print('');
    ctx.print(painter.bold('Result'));
    ctx.print(json(op.result));
  }
}
