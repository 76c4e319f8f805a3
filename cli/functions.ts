// kumo fn: deploy a folder of Python as a function, list, show, invoke, delete.
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { ApiError, CliError, exitCodes, seg } from './client.js';
import { dataText, integer, list, pairs, str, usage, waitOption, type Group } from './command.js';
import { attemptsText, deliveryStatuses, lastErrorText, type Delivery } from './events.js';
import { afterStart, type Operation } from './ops.js';
import { fields, json, relativeTime, table, timestamp } from './output.js';

interface FunctionView {
  name: string;
  runtime: string;
  handler: string;
  envNames: string[];
  concurrency: number;
  /** Event deliveries running at once; 0 = no limit (absent from older APIs). */
  eventConcurrency?: number;
  timeoutSeconds: number;
  minScale: number;
  maxScale: number;
  files: Array<{ path: string; bytes: number }>;
  sourceHash: string;
  state: string;
  image: string | null;
  revision: string | null;
  url: string | null;
  message: string | null;
  createdAt: string;
  updatedAt: string;
  links: { self: string; invoke: string; lastOperation?: string };
}

/**
 * Every regular file under `dir` by its relative path ("/"-separated), skipping
 * dotfiles and dot-folders, __pycache__ and *.pyc; symbolic links are not followed.
 */
export function readSourceFiles(dir: string): Record<string, string> {
  const files: Record<string, string> = {};
  const walk = (folder: string, prefix: string) => {
    for (const entry of readdirSync(folder, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (entry.name.startsWith('.') || entry.name === '__pycache__' || entry.name.endsWith('.pyc')) continue;
      const path = join(folder, entry.name);
      const relative = prefix ? `${prefix}/${entry.name}` : entry.name;
      if (entry.isDirectory()) walk(path, relative);
      else if (entry.isFile()) files[relative] = readFileSync(path, 'utf8');
    }
  };
  walk(dir, '');
  return files;
}

export const functionsGroup: Group = {
  name: 'fn',
  aliases: ['functions', 'function'],
  summary: 'the Function Service: deploy Python functions, invoke them',
  commands: [
    {
      name: 'ls',
      aliases: ['list'],
      summary: 'list functions',
      async run(ctx) {
        const body = await ctx.client.get<{ items: FunctionView[] }>('/v1/functions');
        if (ctx.output === 'json') {
          ctx.print(json(body));
          return exitCodes.ok;
        }
        if (!body.items.length) {
          ctx.note('No functions.');
          return exitCodes.ok;
        }
        const now = Date.now();
        ctx.print(
          table(
            ['NAME', 'STATE', 'HANDLER', 'CONCURRENCY', 'TIMEOUT', 'REVISION', 'UPDATED'],
            body.items.map((fn) => [fn.name, ctx.painter.state(fn.state), fn.handler, String(fn.concurrency), `${fn.timeoutSeconds}s`, fn.revision ?? '-', relativeTime(fn.updatedAt, now)]),
          ),
        );
        return exitCodes.ok;
      },
    },
    {
      name: 'get',
      aliases: ['show'],
      args: ['<name>'],
      summary: 'show a function: state, image, revision, URL, files',
      async run(ctx, [name]) {
        const fn = await ctx.client.get<FunctionView>(`/v1/functions/${seg(name!)}`);
        if (ctx.output === 'json') {
          ctx.print(json(fn));
          return exitCodes.ok;
        }
        const now = Date.now();
        ctx.print(
          fields([
            ['Name', fn.name],
            ['State', ctx.painter.state(fn.state)],
            ['Message', fn.message],
            ['Runtime', fn.runtime],
            ['Handler', fn.handler],
            ['Concurrency', fn.concurrency === 0 ? '0 (no limit)' : fn.concurrency],
            ['Event concurrency', fn.eventConcurrency === undefined ? null : fn.eventConcurrency === 0 ? '0 (no limit)' : fn.eventConcurrency],
            ['Timeout', `${fn.timeoutSeconds}s`],
            ['Scale', `${fn.minScale}..${fn.maxScale}`],
            ['Env', fn.envNames.join(', ') || null],
            ['Image', fn.image],
            ['Revision', fn.revision],
            ['URL', fn.url],
            ['Source', fn.sourceHash],
            ['Last operation', fn.links.lastOperation?.split('/').pop()],
            ['Created', timestamp(fn.createdAt, now)],
            ['Updated', timestamp(fn.updatedAt, now)],
          ]),
        );
        ctx.print('');
        ctx.print(ctx.painter.bold('Files'));
        ctx.print(table(['PATH', 'BYTES'], fn.files.map((file) => [file.path, String(file.bytes)])));
        return exitCodes.ok;
      },
    },
    {
      name: 'deploy',
      args: ['<dir>'],
      summary: 'build and deploy the Python code in a folder (create or update the function)',
      description:
        'Sends every regular file under <dir> (not dotfiles, __pycache__ or *.pyc) as the source, with PUT /v1/functions/<name>: the settings given here replace the previous ones, and settings not given take their defaults.',
      options: {
        name: { type: 'string', arg: 'N', help: "the function's name (default: the folder's name)" },
        handler: { type: 'string', arg: 'module.fn', help: 'the handler (default handler.handle)' },
        env: { type: 'string', multiple: true, arg: 'K=V', help: 'an environment variable (repeatable)' },
        concurrency: { type: 'string', arg: 'N', help: 'invocations one instance runs at once; 0 = no limit (default 0)' },
        'event-concurrency': { type: 'string', arg: 'N', help: 'event deliveries (bindings, pipeline steps) running at once; the others wait their turn; 0 = no limit (default 0)' },
        timeout: { type: 'string', arg: 'S', help: 'seconds an invocation may run (default 30)' },
        'min-scale': { type: 'string', arg: 'N', help: 'instances kept running (default 0)' },
        'max-scale': { type: 'string', arg: 'N', help: 'most instances (default 10)' },
        ...waitOption,
      },
      examples: ['kumo fn deploy ./hello --concurrency 1 --timeout 30 --wait'],
      async run(ctx, [dir], flags) {
        const folder = resolve(dir!);
        let stat;
        try {
          stat = lstatSync(folder);
        } catch {
          throw usage(`no folder ${dir}`);
        }
        if (!stat.isDirectory()) throw usage(`${dir} is not a folder`);
        const files = readSourceFiles(folder);
        if (!Object.keys(files).length) throw usage(`${dir} holds no files to deploy`);
        const name = str(flags, 'name') ?? basename(folder);
        const env = list(flags, 'env');
        const spec = {
          name,
          source: { files },
          handler: str(flags, 'handler'),
          ...(env.length ? { env: pairs(env, 'env') } : {}),
          concurrency: integer(str(flags, 'concurrency'), '--concurrency'),
          eventConcurrency: integer(str(flags, 'event-concurrency'), '--event-concurrency'),
          timeoutSeconds: integer(str(flags, 'timeout'), '--timeout'),
          minScale: integer(str(flags, 'min-scale'), '--min-scale'),
          maxScale: integer(str(flags, 'max-scale'), '--max-scale'),
        };
        const { body } = await ctx.client.request<{ function: FunctionView; operation: Operation }>('PUT', `/v1/functions/${seg(name)}`, { body: spec });
        return afterStart(ctx, body, body.operation, flags, `deploying ${name} (${Object.keys(files).length} files)`);
      },
    },
    {
      name: 'invoke',
      aliases: ['call'],
      args: ['<name>'],
      summary: 'invoke a function with an event and print its result',
      description: "Prints the handler's result (with -o json the whole answer: result, invocationId, durationMs). A handler that raised or timed out exits 1 with its error.",
      options: {
        data: { type: 'string', short: 'd', arg: 'json', help: 'the event, as JSON text' },
        file: { type: 'string', short: 'f', arg: 'event.json', help: 'the event, from a JSON file ("-" for stdin)' },
      },
      examples: ['kumo fn invoke hello --data \'{"name": "kumo"}\''],
      async run(ctx, [name], flags) {
        const event = dataText(flags, 'the event') ?? 'null';
        const answer = await ctx.client.request<{ result?: unknown; invocationId?: string; durationMs?: number; error?: { type?: string; message?: string; exception?: string } }>(
          'POST',
          `/v1/functions/${seg(name!)}/invoke`,
          // The function's own error answers (raised, timed out, refused event) are results too.
          { raw: event, accept: [400, 500, 504], timeoutMs: 16 * 60_000 },
        );
        const body = answer.body;
        if (answer.status >= 400 && !body?.error) {
          // Not the function's answer but the API's own problem (bad input, say): as any error.
          throw new ApiError(answer.status, 'POST', `/v1/functions/${name}/invoke`, body, `invoke answered ${answer.status}`);
        }
        if (ctx.output === 'json') {
          ctx.print(json(body));
          return answer.status < 400 ? exitCodes.ok : exitCodes.failed;
        }
        if (answer.status >= 400 && body?.error) {
          const error = body.error;
          throw new CliError(`the function answered ${answer.status}: ${error.type ?? 'error'}${error.exception ? ` (${error.exception})` : ''}${error.message ? `: ${error.message}` : ''}`, exitCodes.failed, [
            `its logs have the details (traceback); kumo fn get ${name}`,
          ]);
        }
        ctx.print(json(body?.result ?? null));
        if (body?.invocationId) ctx.note(ctx.painter.dim(`invocation ${body.invocationId} in ${body.durationMs ?? '?'}ms`));
        return exitCodes.ok;
      },
    },
    {
      name: 'invocations',
      args: ['<name>'],
      summary: "a function's invocations by events and pipelines (its deliveries), newest first",
      options: {
        status: { type: 'string', arg: 'S', help: `only deliveries with this status (${deliveryStatuses})` },
        limit: { type: 'string', arg: 'N', help: 'show at most N (default 50, at most 500)' },
      },
      examples: ['kumo fn invocations on-vm-created --status dead-lettered'],
      async run(ctx, [name], flags) {
        const query = new URLSearchParams();
        const status = str(flags, 'status');
        const limit = integer(str(flags, 'limit'), '--limit');
        if (status) query.set('status', status);
        if (limit !== undefined) query.set('limit', String(limit));
        const body = await ctx.client.get<{ items: Delivery[] }>(`/v1/functions/${seg(name!)}/invocations${query.toString() ? `?${query}` : ''}`);
        if (ctx.output === 'json') {
          ctx.print(json(body));
          return exitCodes.ok;
        }
        if (!body.items.length) {
          ctx.note('No invocations by events.');
          return exitCodes.ok;
        }
        const now = Date.now();
        ctx.print(
          table(
            ['EVENT', 'BINDING', 'STATUS', 'ATTEMPTS', 'STARTED', 'LAST ERROR'],
            body.items.map((d) => [d.event, d.binding ?? (d.operation ? `pipeline run ${d.operation}` : '-'), ctx.painter.state(d.status), attemptsText(d), relativeTime(d.startedAt, now), lastErrorText(d.lastError)]),
          ),
        );
        return exitCodes.ok;
      },
    },
    {
      name: 'delete',
      aliases: ['rm'],
      args: ['<name>'],
      summary: 'delete a function (its Knative Service; images stay in the registry)',
      options: { ...waitOption },
      async run(ctx, [name], flags) {
        const { body } = await ctx.client.request<{ operation: Operation }>('DELETE', `/v1/functions/${seg(name!)}`);
        return afterStart(ctx, body, body.operation, flags, `deleting ${name}`);
      },
    },
  ],
};
