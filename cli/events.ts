// kumo bindings / pipelines / events: events to functions, cron bindings, pipelines of functions, received events.
import { randomUUID } from 'node:crypto';
import { exitCodes, seg } from './client.js';
import { dataText, integer, readJsonFile, str, usage, waitOption, type Context, type Flags, type Group } from './command.js';
import { afterStart, type Operation } from './ops.js';
import { fields, json, relativeTime, table, timestamp } from './output.js';

interface DeliveryPolicy {
  attempts: number;
  backoffSeconds: number;
  backoffCoefficient: number;
  maxBackoffSeconds: number;
}

interface Target {
  kind: 'function' | 'pipeline';
  name: string;
}

interface Binding {
  name: string;
  function?: string;
  pipeline?: string;
  source?: string;
  filter: { type?: string; typePrefix?: string; attributes?: Record<string, string>; data?: Array<Record<string, unknown>> };
  schedule?: { cron?: string; every?: string; timezone: string; overlap: string; catchupWindowSeconds: number; data?: unknown };
  delivery: DeliveryPolicy;
  createdAt: string;
  scheduleId: string | null;
  nextFirings?: string[];
  links: { self: string; temporalSchedule?: string };
}

interface Pipeline {
  name: string;
  description: string | null;
  steps: Array<{ function: string; policy: DeliveryPolicy }>;
  createdAt: string;
  updatedAt: string;
  links: { self: string; runs: string };
}

/** One delivery of an event to a binding's target (also a function's invocation by events). */
export interface Delivery {
  id: string;
  event: string;
  binding: string | null;
  target: Target;
  status: string;
  attempts: number;
  maxAttempts: number;
  lastError: { type: string; message: string } | null;
  result: unknown;
  invocationId: string | null;
  operation: string | null;
  startedAt: string;
  finishedAt: string | null;
  links: { event: string; operation?: string };
}

interface EventView {
  id: string;
  cloudEvent: Record<string, unknown>;
  origin: string;
  trace: Record<string, string>;
  status: string;
  matched: Array<{ binding: string; target: Target }>;
  duplicates: number;
  receivedAt: string;
  finishedAt: string | null;
  deliveries?: Delivery[];
  links: { self: string; temporal?: string };
}

const eventStatuses = 'received, unmatched, dispatched, delivered, failed';
export const deliveryStatuses = 'pending, waiting, running, retrying, succeeded, dead-lettered';

const targetText = (target: Target): string => `${target.kind}/${target.name}`;

/** A delivery's last error on one line, cut for a table cell. */
export function lastErrorText(error: Delivery['lastError']): string {
  if (!error) return '';
  const text = `${error.type}: ${error.message.split('\n')[0] ?? ''}`;
  return text.length > 120 ? `${text.slice(0, 119)}…` : text;
}

/** "attempts/max" of a delivery. */
export const attemptsText = (delivery: Pick<Delivery, 'attempts' | 'maxAttempts'>): string => `${delivery.attempts}/${delivery.maxAttempts}`;

/** How a delivery is retried: "3 attempts, backoff 1s ×2 up to 60s". */
function policyText(policy: DeliveryPolicy): string {
  return `${policy.attempts} attempt${policy.attempts === 1 ? '' : 's'}, backoff ${policy.backoffSeconds}s ×${policy.backoffCoefficient} up to ${policy.maxBackoffSeconds}s`;
}

function bindingTarget(binding: Binding): string {
  return binding.function !== undefined ? `function/${binding.function}` : `pipeline/${binding.pipeline ?? ''}`;
}

/** One data condition as text: `$.state equals "active"`. */
function conditionText(condition: Record<string, unknown>): string {
  const [operator, value] = Object.entries(condition).find(([key]) => key !== 'path') ?? ['?', undefined];
  return `${String(condition.path)} ${operator} ${JSON.stringify(value)}`;
}

/** What an event binding matches besides its source, in a few words; "-" when anything. */
function filterText(binding: Binding): string {
  const filter = binding.filter;
  const parts: string[] = [];
  if (filter.type !== undefined) parts.push(`type=${filter.type}`);
  if (filter.typePrefix !== undefined) parts.push(`type=${filter.typePrefix}*`);
  for (const [name, value] of Object.entries(filter.attributes ?? {})) parts.push(`${name}=${value}`);
  if (filter.data?.length) parts.push(`${filter.data.length} data condition${filter.data.length === 1 ? '' : 's'}`);
  return parts.join(', ') || '-';
}

function scheduleText(schedule: NonNullable<Binding['schedule']>): string {
  return `${schedule.cron !== undefined ? `cron "${schedule.cron}"` : `every ${schedule.every ?? '?'}`} (${schedule.timezone})`;
}

function printBinding(ctx: Context, binding: Binding): void {
  const now = Date.now();
  const schedule = binding.schedule;
  ctx.print(
    fields([
      ['Name', binding.name],
      ['Target', bindingTarget(binding)],
      ['Source', schedule ? null : (binding.source ?? '(any)')],
      ['Type', binding.filter.type],
      ['Type prefix', binding.filter.typePrefix],
      ['Attributes', Object.entries(binding.filter.attributes ?? {}).map(([name, value]) => `${name}=${value}`).join(', ')],
      ['Data', (binding.filter.data ?? []).map(conditionText).join('; ')],
      ['Schedule', schedule ? `${scheduleText(schedule)}, overlap ${schedule.overlap}, catch-up window ${schedule.catchupWindowSeconds}s` : null],
      ['Schedule data', schedule?.data !== undefined ? JSON.stringify(schedule.data) : null],
      ['Schedule id', binding.scheduleId],
      ['Delivery', policyText(binding.delivery)],
      ['Created', timestamp(binding.createdAt, now)],
      ['Temporal UI', binding.links.temporalSchedule],
    ]),
  );
  if (!schedule || !binding.nextFirings) return;
  ctx.print('');
  ctx.print(ctx.painter.bold('Next firings'));
  ctx.print(binding.nextFirings.length ? binding.nextFirings.map((at) => `  ${timestamp(at, now) ?? at}`).join('\n') : ctx.painter.dim('  none'));
}

/**
 * The spec of `bindings create`: a file (-f), flags, or a file with flags overriding it.
 * @example bindingSpec('x', { function: 'f', type: 't' }) // { name: 'x', function: 'f', filter: { type: 't' } }
 */
export function bindingSpec(name: string | undefined, flags: Flags): Record<string, unknown> {
  const file = str(flags, 'file');
  const spec: Record<string, unknown> = {};
  if (file) {
    const parsed = readJsonFile(file, 'the binding spec');
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw usage(`the binding spec ${file} must be a JSON object`);
    Object.assign(spec, parsed);
  }
  const objectAt = (key: string): Record<string, unknown> => {
    const value = spec[key];
    return value && typeof value === 'object' && !Array.isArray(value) ? { ...(value as Record<string, unknown>) } : {};
  };
  if (name) spec.name = name;
  const fn = str(flags, 'function');
  const pipeline = str(flags, 'pipeline');
  if (fn !== undefined && pipeline !== undefined) throw usage('give --function or --pipeline, not both');
  if (fn !== undefined) {
    spec.function = fn;
    delete spec.pipeline;
  }
  if (pipeline !== undefined) {
    spec.pipeline = pipeline;
    delete spec.function;
  }
  const source = str(flags, 'source');
  if (source !== undefined) spec.source = source;
  const type = str(flags, 'type');
  const typePrefix = str(flags, 'type-prefix');
  if (type !== undefined && typePrefix !== undefined) throw usage('give --type or --type-prefix, not both');
  if (type !== undefined || typePrefix !== undefined) {
    const filter = objectAt('filter');
    delete filter.type;
    delete filter.typePrefix;
    if (type !== undefined) filter.type = type;
    if (typePrefix !== undefined) filter.typePrefix = typePrefix;
    spec.filter = filter;
  }
  const cron = str(flags, 'cron');
  const every = str(flags, 'every');
  if (cron !== undefined && every !== undefined) throw usage('give --cron or --every, not both');
  if (cron !== undefined || every !== undefined) {
    const schedule = objectAt('schedule');
    delete schedule.cron;
    delete schedule.every;
    if (cron !== undefined) schedule.cron = cron;
    if (every !== undefined) schedule.every = every;
    spec.schedule = schedule;
  }
  const attempts = integer(str(flags, 'attempts'), '--attempts');
  if (attempts !== undefined) spec.delivery = { ...objectAt('delivery'), attempts };
  if (!file) {
    const missing = [!name && '<name>', fn === undefined && pipeline === undefined && '--function or --pipeline'].filter(Boolean);
    if (missing.length) throw usage(`missing ${missing.join(', ')} (or give the whole spec with -f binding.json)`);
  } else if (spec.name === undefined) throw usage(`the binding spec ${file} has no name: give it as <name>`);
  return spec;
}

export const bindingsGroup: Group = {
  name: 'bindings',
  aliases: ['binding'],
  summary: 'bind events (or a cron schedule) to a function or a pipeline',
  commands: [
    {
      name: 'ls',
      aliases: ['list'],
      summary: 'list bindings',
      options: {
        function: { type: 'string', arg: 'F', help: 'only bindings that deliver to this function' },
        pipeline: { type: 'string', arg: 'P', help: 'only bindings that deliver to this pipeline' },
      },
      async run(ctx, _args, flags) {
        const query = new URLSearchParams();
        const fn = str(flags, 'function');
        const pipeline = str(flags, 'pipeline');
        if (fn) query.set('function', fn);
        if (pipeline) query.set('pipeline', pipeline);
        const body = await ctx.client.get<{ items: Binding[] }>(`/v1/bindings${query.toString() ? `?${query}` : ''}`);
        if (ctx.output === 'json') {
          ctx.print(json(body));
          return exitCodes.ok;
        }
        if (!body.items.length) {
          ctx.note('No bindings.');
          return exitCodes.ok;
        }
        const now = Date.now();
        ctx.print(
          table(
            ['NAME', 'TARGET', 'SOURCE', 'FILTER', 'SCHEDULE', 'ATTEMPTS', 'CREATED'],
            body.items.map((b) => [
              b.name,
              bindingTarget(b),
              b.schedule ? '-' : (b.source ?? '(any)'),
              b.schedule ? '-' : filterText(b),
              b.schedule ? scheduleText(b.schedule) : '-',
              String(b.delivery.attempts),
              relativeTime(b.createdAt, now),
            ]),
          ),
        );
        return exitCodes.ok;
      },
    },
    {
      name: 'get',
      aliases: ['show'],
      args: ['<name>'],
      summary: 'show a binding: what it matches, its target, retries; a cron binding with its schedule and next firings',
      async run(ctx, [name]) {
        const binding = await ctx.client.get<Binding>(`/v1/bindings/${seg(name!)}`);
        if (ctx.output === 'json') ctx.print(json(binding));
        else printBinding(ctx, binding);
        return exitCodes.ok;
      },
    },
    {
      name: 'create',
      args: ['[name]'],
      summary: 'create a binding from a spec file, or from flags',
      description:
        'The body of POST /v1/bindings: from -f (a JSON file, "-" for stdin), or built from the flags; flags given with -f override the file. ' +
        'An event binding delivers every event whose source and type match to the function or pipeline; a cron binding (--cron or --every) fires it on a schedule instead. ' +
        'The function or pipeline must exist (else 400, exit 6).',
      options: {
        file: { type: 'string', short: 'f', arg: 'binding.json', help: 'the binding spec as JSON ("-" for stdin)' },
        function: { type: 'string', arg: 'F', help: 'deliver to this function' },
        pipeline: { type: 'string', arg: 'P', help: 'deliver to this pipeline' },
        source: { type: 'string', arg: 'S', help: 'only events from this source (exactly, or a prefix ending in *); default any' },
        type: { type: 'string', arg: 'T', help: 'only events of this type, exactly' },
        'type-prefix': { type: 'string', arg: 'P', help: 'only events whose type starts with P' },
        cron: { type: 'string', arg: 'expr', help: 'a cron binding: five-field cron (minute hour day month weekday) or @hourly, @daily… (UTC)' },
        every: { type: 'string', arg: 'D', help: 'a cron binding firing every D (30s, 5m, 2h)' },
        attempts: { type: 'string', arg: 'N', help: 'attempts of each delivery before it is dead-lettered (default 3)' },
      },
      examples: [
        'kumo bindings create vm-created --function on-vm-created --source openstack/nova --type compute.instance.create.end',
        'kumo bindings create nightly --pipeline cleanup --cron "0 3 * * *"',
        'kumo bindings create -f binding.json',
      ],
      async run(ctx, [name], flags) {
        const spec = bindingSpec(name, flags);
        const { body } = await ctx.client.request<{ binding: Binding }>('POST', '/v1/bindings', { body: spec });
        if (ctx.output === 'json') {
          ctx.print(json(body));
          return exitCodes.ok;
        }
        printBinding(ctx, body.binding);
        if (body.binding.schedule) ctx.note(ctx.painter.dim(`its next firings: kumo bindings get ${body.binding.name}`));
        return exitCodes.ok;
      },
    },
    {
      name: 'delete',
      aliases: ['rm'],
      args: ['<name>'],
      summary: 'delete a binding (and the schedule of a cron binding); running deliveries finish',
      async run(ctx, [name]) {
        await ctx.client.request('DELETE', `/v1/bindings/${seg(name!)}`);
        ctx.note(`binding "${name}" deleted`);
        return exitCodes.ok;
      },
    },
  ],
};

export const pipelinesGroup: Group = {
  name: 'pipelines',
  aliases: ['pipeline'],
  summary: "pipelines of functions: each step's result is the next step's input",
  commands: [
    {
      name: 'ls',
      aliases: ['list'],
      summary: 'list pipelines',
      async run(ctx) {
        const body = await ctx.client.get<{ items: Pipeline[] }>('/v1/pipelines');
        if (ctx.output === 'json') {
          ctx.print(json(body));
          return exitCodes.ok;
        }
        if (!body.items.length) {
          ctx.note('No pipelines.');
          return exitCodes.ok;
        }
        const now = Date.now();
        ctx.print(table(['NAME', 'STEPS', 'DESCRIPTION', 'UPDATED'], body.items.map((p) => [p.name, p.steps.map((step) => step.function).join(' → '), p.description ?? '', relativeTime(p.updatedAt, now)])));
        return exitCodes.ok;
      },
    },
    {
      name: 'get',
      aliases: ['show'],
      args: ['<name>'],
      summary: 'show a pipeline: its steps and how each is retried',
      async run(ctx, [name]) {
        const pipeline = await ctx.client.get<Pipeline>(`/v1/pipelines/${seg(name!)}`);
        if (ctx.output === 'json') {
          ctx.print(json(pipeline));
          return exitCodes.ok;
        }
        const now = Date.now();
        ctx.print(
          fields([
            ['Name', pipeline.name],
            ['Description', pipeline.description],
            ['Created', timestamp(pipeline.createdAt, now)],
            ['Updated', timestamp(pipeline.updatedAt, now)],
            ['Runs', `kumo ops ls --kind pipeline.run --target pipeline/${pipeline.name}`],
          ]),
        );
        ctx.print('');
        ctx.print(ctx.painter.bold('Steps'));
        ctx.print(table(['#', 'FUNCTION', 'RETRIES'], pipeline.steps.map((step, index) => [String(index + 1), step.function, policyText(step.policy)])));
        return exitCodes.ok;
      },
    },
    {
      name: 'apply',
      summary: 'create or replace a pipeline from a spec file (PUT by its name)',
      description: 'The file is the body of PUT /v1/pipelines/<name>, named by its "name". Every step\'s function must exist (else 400, exit 6). Runs already started keep the steps they started with.',
      options: { file: { type: 'string', short: 'f', arg: 'pipeline.json', help: 'the pipeline spec as JSON ("-" for stdin)' } },
      examples: ['kumo pipelines apply -f pipeline.json   # {"name": "enrich-and-notify", "steps": ["enrich", {"function": "notify", "attempts": 5}]}'],
      async run(ctx, _args, flags) {
        const file = str(flags, 'file');
        if (!file) throw usage('missing -f pipeline.json');
        const spec = readJsonFile(file, 'the pipeline spec');
        if (!spec || typeof spec !== 'object' || Array.isArray(spec)) throw usage(`the pipeline spec ${file} must be a JSON object`);
        const name = (spec as { name?: unknown }).name;
        if (typeof name !== 'string' || !name) throw usage(`the pipeline spec ${file} has no "name"`);
        const { status, body } = await ctx.client.request<{ pipeline: Pipeline }>('PUT', `/v1/pipelines/${seg(name)}`, { body: spec });
        if (ctx.output === 'json') ctx.print(json(body));
        else ctx.print(`pipeline "${name}" ${status === 201 ? 'created' : 'replaced'}: ${body.pipeline.steps.map((step) => step.function).join(' → ')}`);
        return exitCodes.ok;
      },
    },
    {
      name: 'run',
      args: ['<name>'],
      summary: "run a pipeline with an input (the first step's input)",
      description: "A run is an operation (pipeline.run) with one step per function: `kumo ops get` shows each step's output, `kumo ops retry` runs it again from its failed step.",
      options: {
        data: { type: 'string', short: 'd', arg: 'json', help: "the first step's input, as JSON text (default null)" },
        file: { type: 'string', short: 'f', arg: 'input.json', help: 'the input, from a JSON file ("-" for stdin)' },
        ...waitOption,
      },
      examples: ['kumo pipelines run enrich-and-notify --data \'{"instance": "vm-1"}\' --wait'],
      async run(ctx, [name], flags) {
        const input = dataText(flags, 'the input');
        const { body } = await ctx.client.request<{ operation: Operation }>('POST', `/v1/pipelines/${seg(name!)}/runs`, input === undefined ? {} : { raw: input });
        return afterStart(ctx, body, body.operation, flags, `running pipeline ${name}`);
      },
    },
    {
      name: 'delete',
      aliases: ['rm'],
      args: ['<name>'],
      summary: 'delete a pipeline (not while bindings deliver to it)',
      async run(ctx, [name]) {
        await ctx.client.request('DELETE', `/v1/pipelines/${seg(name!)}`);
        ctx.note(`pipeline "${name}" deleted`);
        return exitCodes.ok;
      },
    },
  ],
};

interface EventPage {
  items: EventView[];
  nextCursor: string | null;
}

export const eventsGroup: Group = {
  name: 'events',
  aliases: ['event'],
  summary: 'received events: list, show with their deliveries, send one',
  commands: [
    {
      name: 'ls',
      aliases: ['list'],
      summary: 'list received events, newest first',
      options: {
        status: { type: 'string', arg: 'S', help: `only events with this status (${eventStatuses})` },
        source: { type: 'string', arg: 'S', help: 'only events from this source' },
        type: { type: 'string', arg: 'T', help: 'only events of this type' },
        limit: { type: 'string', arg: 'N', help: 'show at most N events (default 50)' },
      },
      examples: ['kumo events ls --status failed', 'kumo events ls --source openstack/nova --limit 200'],
      async run(ctx, _args, flags) {
        const limit = integer(str(flags, 'limit'), '--limit') ?? 50;
        if (limit < 1) throw usage('--limit must be at least 1');
        const items: EventView[] = [];
        let cursor: string | null = null;
        let nextCursor: string | null = null;
        for (;;) {
          const query = new URLSearchParams({ limit: String(Math.min(500, limit - items.length)) });
          for (const name of ['status', 'source', 'type']) {
            const value = str(flags, name);
            if (value) query.set(name, value);
          }
          if (cursor) query.set('cursor', cursor);
          const page: EventPage = await ctx.client.get<EventPage>(`/v1/events?${query}`);
          items.push(...page.items);
          nextCursor = page.nextCursor;
          if (!page.nextCursor || items.length >= limit) break;
          cursor = page.nextCursor;
        }
        if (ctx.output === 'json') {
          ctx.print(json({ items, nextCursor }));
          return exitCodes.ok;
        }
        if (!items.length) {
          ctx.note('No events.');
          return exitCodes.ok;
        }
        const now = Date.now();
        ctx.print(
          table(
            ['ID', 'SOURCE', 'TYPE', 'STATUS', 'MATCHED', 'RECEIVED'],
            items.map((e) => [e.id, String(e.cloudEvent.source ?? ''), String(e.cloudEvent.type ?? ''), ctx.painter.state(e.status), e.matched.map((m) => m.binding).join(',') || '-', relativeTime(e.receivedAt, now)]),
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
      summary: 'show an event: its attributes and data, what it matched, what each delivery did',
      description: "<id> is Kumo's event id (evt-…), or the CloudEvent's own id when only one event has it.",
      async run(ctx, [id]) {
        const event = await ctx.client.get<EventView>(`/v1/events/${seg(id!)}`);
        if (ctx.output === 'json') {
          ctx.print(json(event));
          return exitCodes.ok;
        }
        const { painter } = ctx;
        const now = Date.now();
        const ce = event.cloudEvent;
        const text = (value: unknown) => (value === undefined || value === null ? null : String(value));
        ctx.print(
          fields([
            ['ID', event.id],
            ['CloudEvent id', text(ce.id)],
            ['Source', text(ce.source)],
            ['Type', text(ce.type)],
            ['Subject', text(ce.subject)],
            ['Time', text(ce.time)],
            ['Origin', event.origin],
            ['Status', painter.state(event.status)],
            ['Matched', event.matched.map((m) => `${m.binding} → ${targetText(m.target)}`).join(', ') || '-'],
            ['Duplicates', event.duplicates || null],
            ['Trace', Object.entries(event.trace).map(([key, value]) => `${key}=${value}`).join(', ')],
            ['Received', timestamp(event.receivedAt, now)],
            ['Finished', timestamp(event.finishedAt, now)],
            ['Temporal UI', event.links.temporal],
          ]),
        );
        if (ce.data !== undefined) {
          ctx.print('');
          ctx.print(painter.bold('Data'));
          ctx.print(json(ce.data));
        }
        ctx.print('');
        ctx.print(painter.bold('Deliveries'));
        const deliveries = event.deliveries ?? [];
        if (!deliveries.length) ctx.print(painter.dim(event.status === 'unmatched' ? 'none: no binding matched' : 'none yet'));
        else {
          ctx.print(
            table(
              ['BINDING', 'TARGET', 'STATUS', 'ATTEMPTS', 'LAST ERROR'],
              deliveries.map((d) => [d.binding ?? '-', targetText(d.target) + (d.operation ? ` (${d.operation})` : ''), painter.state(d.status), attemptsText(d), lastErrorText(d.lastError)]),
            ),
          );
        }
        return exitCodes.ok;
      },
    },
    {
      name: 'send',
      summary: 'send a CloudEvent (structured mode) and print its id and status',
      description:
        'POST /v1/events with the event as application/cloudevents+json; it is matched against the bindings and dispatched before the answer. ' +
        'Exit 0 for a new event (202) and for one seen before (200: same source and id, not dispatched again).',
      options: {
        source: { type: 'string', arg: 'S', help: "the event's source (required)" },
        type: { type: 'string', arg: 'T', help: "the event's type (required)" },
        id: { type: 'string', arg: 'I', help: "the event's id (default a random UUID); the same source and id again is a duplicate" },
        subject: { type: 'string', arg: 'X', help: "the event's subject" },
        data: { type: 'string', short: 'd', arg: 'json', help: 'the data, as JSON text' },
        file: { type: 'string', short: 'f', arg: 'data.json', help: 'the data, from a JSON file ("-" for stdin)' },
      },
      examples: ['kumo events send --source ci/builds --type com.example.build.finished --subject build-42 --data \'{"ok": true}\''],
      async run(ctx, _args, flags) {
        const source = str(flags, 'source');
        const type = str(flags, 'type');
        const missing = [!source && '--source', !type && '--type'].filter(Boolean);
        if (missing.length) throw usage(`missing ${missing.join(', ')}`);
        const data = dataText(flags, 'the data');
        const subject = str(flags, 'subject');
        const cloudEvent = {
          specversion: '1.0',
          id: str(flags, 'id') ?? randomUUID(),
          source,
          type,
          ...(subject !== undefined ? { subject } : {}),
          ...(data !== undefined ? { datacontenttype: 'application/json', data: JSON.parse(data) as unknown } : {}),
        };
        const { status, body } = await ctx.client.request<{ event: EventView }>('POST', '/v1/events', { body: cloudEvent, contentType: 'application/cloudevents+json' });
        if (ctx.output === 'json') {
          ctx.print(json(body));
          return exitCodes.ok;
        }
        const event = body.event;
        ctx.print(`event ${event.id} ${ctx.painter.state(event.status)}${status === 200 ? ' (seen before: same source and id, not dispatched again)' : ''}`);
        for (const m of event.matched) ctx.print(`  → ${m.binding}: ${targetText(m.target)}`);
        ctx.note(ctx.painter.dim(`details: kumo events get ${event.id}`));
        return exitCodes.ok;
      },
    },
  ],
};
