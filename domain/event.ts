import { z } from '@hono/zod-openapi';
import { FunctionNameSchema } from './function.js';
import type { Resume } from './operation.js';

/**
 * Kumo's one event model: everything that arrives (an OpenStack notification, an
 * HTTP call, an Alertmanager webhook, a schedule firing) becomes a CloudEvent 1.0
 * before it is matched against bindings. Pure code: parsing, matching, planning.
 */

/** A CloudEvent 1.0 as Kumo keeps it (structured-mode JSON: extensions sit beside the attributes). */
export interface CloudEvent {
  specversion: '1.0';
  id: string;
  source: string;
  type: string;
  subject?: string;
  /** RFC 3339; set to the arrival time when the producer gave none. */
  time: string;
  datacontenttype?: string;
  dataschema?: string;
  data?: unknown;
  /** Extension attributes (lowercase letters and digits, at most 20 characters). */
  [extension: string]: unknown;
}

/** Where an event came in. */
export const eventOrigins = ['openstack', 'http', 'alertmanager', 'schedule', 'health'] as const;
export type EventOrigin = (typeof eventOrigins)[number];

const coreAttributes = new Set(['specversion', 'id', 'source', 'type', 'subject', 'time', 'datacontenttype', 'dataschema', 'data', 'data_base64']);
const extensionName = /^[a-z0-9]{1,20}$/;
const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;

/** What a producer may send in structured mode (`application/cloudevents+json`). */
export const CloudEventSchema = z
  .object({
    specversion: z.literal('1.0'),
    id: z.string().min(1).max(256),
    source: z.string().min(1).max(512),
    type: z.string().min(1).max(256),
    subject: z.string().min(1).max(512).optional(),
    time: z.string().regex(rfc3339, 'an RFC 3339 timestamp').optional(),
    datacontenttype: z.string().min(1).max(256).optional(),
    dataschema: z.string().min(1).max(1024).optional(),
    data: z.unknown().optional(),
    data_base64: z.string().optional(),
  })
  .catchall(z.union([z.string().max(1024), z.number(), z.boolean()]))
  .superRefine((event, ctx) => {
    for (const key of Object.keys(event)) {
      if (!coreAttributes.has(key) && !extensionName.test(key)) {
        ctx.addIssue({ code: 'custom', path: [key], message: 'an extension attribute name is 1-20 lowercase letters or digits' });
      }
    }
    if (event.data !== undefined && event.data_base64 !== undefined) ctx.addIssue({ code: 'custom', path: ['data_base64'], message: 'send data or data_base64, not both' });
    if (/\u0000/.test(JSON.stringify(event))) ctx.addIssue({ code: 'custom', path: [], message: 'NUL characters are not allowed' });
  })
  .openapi('CloudEvent', {
    example: { specversion: '1.0', id: 'a7c5b9e0', source: 'ci/pipeline', type: 'com.example.build.finished', subject: 'build-42', data: { ok: true } },
  });
export type CloudEventInput = z.infer<typeof CloudEventSchema>;

/** A structured-mode event, completed: `time` defaults to the arrival time. */
export function normalizeEvent(input: CloudEventInput, receivedAt: string): CloudEvent {
  const { data_base64, ...rest } = input;
  const event: CloudEvent = { ...rest, specversion: '1.0', time: input.time ?? receivedAt };
  if (data_base64 !== undefined) event.data = Buffer.from(data_base64, 'base64').toString('utf8');
  return event;
}

/**
 * A binary-mode event: attributes in `ce-*` headers, the body is the data (JSON
 * when the content type says so). Returns the field at fault when it is not one.
 */
export function eventFromBinary(headers: Record<string, string>, body: string, receivedAt: string): { event: CloudEvent } | { field: string; message: string } {
  const attributes: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    const key = name.toLowerCase();
    if (!key.startsWith('ce-')) continue;
    try {
      attributes[key.slice(3)] = decodeURIComponent(value);
    } catch {
      return { field: key, message: 'not a valid percent-encoded value' };
    }
  }
  const contentType = headers['content-type'] ?? headers['Content-Type'];
  let data: unknown = body;
  if (body === '') data = undefined;
  else if (!contentType || /^application\/(.+\+)?json\b/i.test(contentType)) {
    try {
      data = JSON.parse(body);
    } catch {
      return { field: 'body', message: 'the data is not JSON, though the content type says it is' };
    }
  }
  const candidate = { ...attributes, ...(contentType ? { datacontenttype: contentType } : {}), ...(data === undefined ? {} : { data }) };
  const parsed = CloudEventSchema.safeParse(candidate);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path.join('.') ?? '';
    return { field: path === 'data' ? 'body' : path ? `ce-${path}` : 'ce-specversion', message: issue?.message ?? 'invalid' };
  }
  return { event: normalizeEvent(parsed.data, receivedAt) };
}

// ─── Bindings ──────────────────────────────────────────────────────────────────

export const BindingNameSchema = z
  .string()
  .min(1)
  .max(50)
  .regex(/^[a-z]([-a-z0-9]*[a-z0-9])?$/, 'lowercase letters, digits and dashes, starting with a letter')
  .openapi({ example: 'vm-created' });

export const PipelineNameSchema = BindingNameSchema.openapi({ example: 'enrich-and-notify' });

/** A condition on the event's data: one path, one operator. */
export const DataConditionSchema = z
  .object({
    path: z
      .string()
      .min(1)
      .max(256)
      .refine((path) => parsePath(path) !== null, 'a JSON path such as $.payload.state or $.items[0]["display name"]')
      .openapi({ example: '$.payload.state' }),
    equals: z.unknown().optional(),
    notEquals: z.unknown().optional(),
    in: z.array(z.unknown()).min(1).max(100).optional(),
    exists: z.boolean().optional(),
    prefix: z.string().max(256).optional(),
    greaterThan: z.number().optional(),
    lessThan: z.number().optional(),
  })
  .strict()
  .superRefine((condition, ctx) => {
    const operators = conditionOperators.filter((op) => condition[op] !== undefined || (op === 'equals' && 'equals' in condition) || (op === 'notEquals' && 'notEquals' in condition));
    if (operators.length !== 1) ctx.addIssue({ code: 'custom', path: [], message: `give exactly one of ${conditionOperators.join(', ')}` });
  })
  .openapi('DataCondition', { example: { path: '$.payload.state', equals: 'active' } });
export type DataCondition = z.infer<typeof DataConditionSchema>;
const conditionOperators = ['equals', 'notEquals', 'in', 'exists', 'prefix', 'greaterThan', 'lessThan'] as const;

export const EventFilterSchema = z
  .object({
    type: z.string().min(1).max(256).optional().openapi({ description: 'The event type, exactly.', example: 'compute.instance.create.end' }),
    typePrefix: z.string().min(1).max(256).optional().openapi({ description: 'The event type starts with this.', example: 'compute.instance.' }),
    attributes: z
      .record(z.string().regex(/^[a-z0-9]{1,20}$/, 'a CloudEvents attribute name'), z.string().max(1024))
      .optional()
      .openapi({ description: 'CloudEvents attributes (subject, extensions…) equal to these values.', example: { openstackpriority: 'INFO' } }),
    data: z.array(DataConditionSchema).max(20).optional().openapi({ description: 'Conditions on the data; all must hold.' }),
  })
  .strict()
  .refine((filter) => !(filter.type && filter.typePrefix), { message: 'give type or typePrefix, not both', path: ['typePrefix'] })
  .openapi('EventFilter');
export type EventFilter = z.infer<typeof EventFilterSchema>;

/** How a binding's deliveries are retried; after the last attempt the event is dead-lettered with the last error. */
export const DeliveryPolicySchema = z
  .object({
    attempts: z.number().int().min(1).max(100).default(3),
    backoffSeconds: z.number().min(0.1).max(3600).default(1).openapi({ description: 'Wait before the first retry.' }),
    backoffCoefficient: z.number().min(1).max(10).default(2),
    maxBackoffSeconds: z.number().min(0.1).max(86_400).default(60),
  })
  .strict()
  .refine((p) => p.maxBackoffSeconds >= p.backoffSeconds, { message: 'must be at least backoffSeconds', path: ['maxBackoffSeconds'] })
  .openapi('DeliveryPolicy');
export type DeliveryPolicy = z.infer<typeof DeliveryPolicySchema>;

export const overlapPolicies = ['skip', 'bufferOne', 'bufferAll', 'cancelOther', 'terminateOther', 'allowAll'] as const;

export const ScheduleSpecSchema = z
  .object({
    cron: z
      .string()
      .max(128)
      .refine((cron) => cronProblem(cron) === null, { error: (issue) => cronProblem(String(issue.input)) ?? 'invalid' })
      .optional()
      .openapi({ description: 'Five-field cron (minute hour day-of-month month day-of-week), or @hourly, @daily, @weekly, @monthly, @yearly.', example: '0 3 * * *' }),
    every: z
      .string()
      .regex(/^[1-9]\d{0,5}(s|m|h)$/, 'a duration such as 30s, 5m or 2h')
      .optional()
      .openapi({ description: 'A fixed interval instead of a cron expression.', example: '5m' }),
    timezone: z
      .string()
      .max(64)
      .refine((zone) => validTimeZone(zone), 'an IANA time zone such as Europe/Berlin')
      .default('UTC'),
    overlap: z.enum(overlapPolicies).default('skip').openapi({ description: 'What happens when a run is still going at the next firing (Temporal overlap policy).' }),
    catchupWindowSeconds: z.number().int().min(10).max(7 * 86_400).default(60).openapi({ description: 'Firings missed (Kumo or Temporal down) within this window still run after recovery.' }),
    data: z.unknown().optional().openapi({ description: 'The data of each fired event.' }),
  })
  .strict()
  .refine((s) => (s.cron === undefined) !== (s.every === undefined), { message: 'give cron or every (one of them)', path: ['cron'] })
  .openapi('ScheduleSpec');
export type ScheduleSpec = z.infer<typeof ScheduleSpecSchema>;

export const BindingSpecSchema = z
  .object({
    name: BindingNameSchema,
    function: FunctionNameSchema.optional(),
    pipeline: PipelineNameSchema.optional(),
    source: z
      .string()
      .min(1)
      .max(512)
      .optional()
      .openapi({ description: 'The events\' source, exactly, or a prefix ending in `*` (e.g. `openstack/*`). Any source when absent.', example: 'openstack/nova' }),
    filter: EventFilterSchema.default({}),
    schedule: ScheduleSpecSchema.optional().openapi({ description: 'A cron binding: a Temporal Schedule fires it; it matches no other event.' }),
    delivery: DeliveryPolicySchema.default({ attempts: 3, backoffSeconds: 1, backoffCoefficient: 2, maxBackoffSeconds: 60 }),
  })
  .strict()
  .superRefine((spec, ctx) => {
    if ((spec.function === undefined) === (spec.pipeline === undefined)) ctx.addIssue({ code: 'custom', path: ['function'], message: 'give function or pipeline (one of them)' });
    if (spec.schedule && (spec.source !== undefined || Object.keys(spec.filter).length > 0)) {
      ctx.addIssue({ code: 'custom', path: ['schedule'], message: 'a cron binding has no source or filter: its schedule is what fires it' });
    }
  })
  .openapi('BindingSpec', {
    example: { name: 'vm-created', function: 'on-vm-created', source: 'openstack/nova', filter: { type: 'compute.instance.create.end', data: [{ path: '$.state', equals: 'active' }] } },
  });
export type BindingSpec = z.infer<typeof BindingSpecSchema>;

export interface BindingRecord extends BindingSpec {
  createdAt: string;
  /** The Temporal Schedule of a cron binding. */
  scheduleId: string | null;
}

/** What a delivery goes to. */
export type DeliveryTarget = { kind: 'function'; name: string } | { kind: 'pipeline'; name: string };

export function targetOf(binding: Pick<BindingSpec, 'function' | 'pipeline'>): DeliveryTarget {
  return binding.function !== undefined ? { kind: 'function', name: binding.function } : { kind: 'pipeline', name: binding.pipeline ?? '' };
}

/** The Temporal Schedule that fires a cron binding. */
export function bindingScheduleId(name: string): string {
  return `binding/${name}`;
}

/** Whether an event matches a binding (cron bindings match only their own firings). */
export function matches(binding: Pick<BindingSpec, 'name' | 'source' | 'filter' | 'schedule'>, event: CloudEvent): boolean {
  if (binding.schedule) return event.source === scheduleSource(binding.name);
  if (binding.source !== undefined) {
    if (binding.source.endsWith('*') ? !event.source.startsWith(binding.source.slice(0, -1)) : event.source !== binding.source) return false;
  }
  const filter = binding.filter;
  if (filter.type !== undefined && event.type !== filter.type) return false;
  if (filter.typePrefix !== undefined && !event.type.startsWith(filter.typePrefix)) return false;
  for (const [name, value] of Object.entries(filter.attributes ?? {})) {
    const actual = event[name];
    if (actual === undefined || actual === null || String(actual) !== value) return false;
  }
  for (const condition of filter.data ?? []) if (!holds(condition, event.data)) return false;
  return true;
}

/** The bindings an event goes to, in name order. */
export function matchingBindings<B extends Pick<BindingSpec, 'name' | 'source' | 'filter' | 'schedule'>>(bindings: readonly B[], event: CloudEvent): B[] {
  return bindings.filter((binding) => matches(binding, event)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function holds(condition: DataCondition, data: unknown): boolean {
  const path = parsePath(condition.path);
  if (!path) return false;
  const found = lookup(data, path);
  if (condition.exists !== undefined) return found.present === condition.exists;
  // An absent value equals nothing, so it is "not equal" to anything.
  if (!found.present) return 'notEquals' in condition;
  const value = found.value;
  if ('equals' in condition) return deepEqual(value, condition.equals);
  if ('notEquals' in condition) return !deepEqual(value, condition.notEquals);
  if (condition.in !== undefined) return condition.in.some((candidate) => deepEqual(value, candidate));
  if (condition.prefix !== undefined) return typeof value === 'string' && value.startsWith(condition.prefix);
  if (condition.greaterThan !== undefined) return typeof value === 'number' && value > condition.greaterThan;
  if (condition.lessThan !== undefined) return typeof value === 'number' && value < condition.lessThan;
  return false;
}

type PathSegment = string | number;

/**
 * Parses the JSON-path subset bindings use: `$`, then `.name`, `["any name"]` or
 * `[index]` segments. No filters or wildcards: a condition names one value.
 */
export function parsePath(path: string): PathSegment[] | null {
  if (!path.startsWith('$')) return null;
  const segments: PathSegment[] = [];
  let i = 1;
  while (i < path.length) {
    const c = path[i];
    if (c === '.') {
      const match = /^[A-Za-z_][A-Za-z0-9_\-]*/.exec(path.slice(i + 1));
      if (!match) return null;
      segments.push(match[0]);
      i += 1 + match[0].length;
    } else if (c === '[') {
      const rest = path.slice(i);
      const index = /^\[(\d{1,6})\]/.exec(rest);
      const quoted = /^\[(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')\]/.exec(rest);
      if (index) {
        segments.push(Number(index[1]));
        i += index[0].length;
      } else if (quoted) {
        segments.push((quoted[1] ?? quoted[2] ?? '').replace(/\\(.)/g, '$1'));
        i += quoted[0].length;
      } else return null;
    } else return null;
  }
  return segments;
}

function lookup(data: unknown, path: PathSegment[]): { present: boolean; value?: unknown } {
  let current: unknown = data;
  for (const segment of path) {
    if (typeof segment === 'number') {
      if (!Array.isArray(current) || segment >= current.length) return { present: false };
      current = current[segment];
    } else {
      if (current === null || typeof current !== 'object' || Array.isArray(current) || !Object.hasOwn(current, segment)) return { present: false };
      current = (current as Record<string, unknown>)[segment];
    }
  }
  return { present: true, value: current };
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((item, i) => deepEqual(item, b[i]));
  const ak = Object.keys(a as object);
  const bk = Object.keys(b as object);
  return ak.length === bk.length && ak.every((key) => Object.hasOwn(b as object, key) && deepEqual((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]));
}

// ─── Cron ──────────────────────────────────────────────────────────────────────

const cronFields: Array<{ name: string; min: number; max: number; names?: string[] }> = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'] },
  { name: 'day of week', min: 0, max: 7, names: ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] },
];
const cronMacros = new Set(['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly']);

/** Null when `cron` is a valid five-field expression (or a macro), else what is wrong with it. */
export function cronProblem(cron: string): string | null {
  const text = cron.trim();
  if (cronMacros.has(text.toLowerCase())) return null;
  const parts = text.split(/\s+/);
  if (parts.length !== 5) return `a cron expression has 5 fields (minute hour day-of-month month day-of-week), this one ${parts.length}`;
  for (let f = 0; f < 5; f++) {
    const field = cronFields[f]!;
    for (const item of parts[f]!.split(',')) {
      const m = /^(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:\/(\d+))?$/i.exec(item);
      if (!m) return `the ${field.name} field "${parts[f]}" is not valid`;
      if (m[2] !== undefined && (Number(m[2]) < 1 || Number(m[2]) > field.max)) return `the step in the ${field.name} field must be 1-${field.max}`;
      if (m[1] === '*') continue;
      for (const bound of m[1]!.split('-')) {
        const value = /^\d+$/.test(bound) ? Number(bound) : field.names ? field.names.indexOf(bound.toLowerCase()) + (field.name === 'month' ? 1 : 0) : NaN;
        if (!Number.isInteger(value) || value < field.min || value > field.max || (field.names && !/^\d+$/.test(bound) && value < field.min)) {
          return `the ${field.name} field allows ${field.min}-${field.max}${field.names ? ' or names' : ''}, not "${bound}"`;
        }
      }
    }
  }
  return null;
}

function validTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** The source of the events a cron binding's schedule fires. */
export function scheduleSource(binding: string): string {
  return `kumo/schedules/${binding}`;
}

/** The event a schedule firing becomes; its id is the firing's workflow id, unique per firing. */
export function scheduledEvent(binding: string, firingId: string, firedAt: string, data: unknown): CloudEvent {
  return { specversion: '1.0', id: firingId, source: scheduleSource(binding), type: 'kumo.schedule.fired', subject: binding, time: firedAt, ...(data === undefined ? {} : { datacontenttype: 'application/json', data }) };
}

// ─── Pipelines, events and deliveries as the store keeps them ─────────────────

export const PipelineStepSchema = z.union([
  FunctionNameSchema,
  z
    .object({
      function: FunctionNameSchema,
      attempts: z.number().int().min(1).max(100).optional(),
      backoffSeconds: z.number().min(0.1).max(3600).optional(),
    })
    .strict(),
]);

export const PipelineSpecSchema = z
  .object({
    name: PipelineNameSchema,
    description: z.string().max(1024).optional(),
    steps: z.array(PipelineStepSchema).min(1).max(20),
    delivery: DeliveryPolicySchema.default({ attempts: 3, backoffSeconds: 1, backoffCoefficient: 2, maxBackoffSeconds: 60 }).openapi({ description: 'How each step is retried, unless the step says otherwise.' }),
  })
  .strict()
  .openapi('PipelineSpec', { example: { name: 'enrich-and-notify', steps: ['enrich', 'classify', { function: 'notify', attempts: 5 }] } });
export type PipelineSpec = z.infer<typeof PipelineSpecSchema>;

export interface PipelineStep {
  function: string;
  policy: DeliveryPolicy;
}

export interface PipelineRecord {
  name: string;
  description: string | null;
  steps: PipelineStep[];
  createdAt: string;
  updatedAt: string;
}

/** A pipeline's steps with each one's retry policy spelled out. */
export function pipelineSteps(spec: PipelineSpec): PipelineStep[] {
  return spec.steps.map((step) =>
    typeof step === 'string'
      ? { function: step, policy: spec.delivery }
      : { function: step.function, policy: { ...spec.delivery, ...(step.attempts !== undefined ? { attempts: step.attempts } : {}), ...(step.backoffSeconds !== undefined ? { backoffSeconds: step.backoffSeconds, maxBackoffSeconds: Math.max(spec.delivery.maxBackoffSeconds, step.backoffSeconds) } : {}) } },
  );
}

/** The step names of a pipeline run (also its operation's steps): `1-enrich`, `2-classify`, … */
export function pipelineStepNames(steps: readonly PipelineStep[]): string[] {
  return steps.map((step, i) => `${i + 1}-${step.function}`);
}

export const eventStatuses = ['received', 'unmatched', 'dispatched', 'delivered', 'failed'] as const;
export type EventStatus = (typeof eventStatuses)[number];

/** One binding an event matched, as recorded when it was matched. */
export interface MatchedBinding {
  binding: string;
  target: DeliveryTarget;
  policy: DeliveryPolicy;
}

export interface EventRecord {
  key: string;
  event: CloudEvent;
  origin: EventOrigin;
  /** Where it came from, to trace it: exchange and routing key, the HTTP caller, the schedule. */
  trace: Record<string, string>;
  status: EventStatus;
  matched: MatchedBinding[];
  /** How many more times the same event arrived (redeliveries, repeats), each recognised and not dispatched again. */
  duplicates: number;
  receivedAt: string;
  finishedAt: string | null;
}

export const deliveryStatuses = ['pending', 'waiting', 'running', 'retrying', 'succeeded', 'dead-lettered'] as const;
export type DeliveryStatus = (typeof deliveryStatuses)[number];

/** One delivery of an event to a binding's target: what the function (or the pipeline run) did. */
export interface DeliveryRecord {
  id: string;
  eventKey: string;
  binding: string | null;
  target: DeliveryTarget;
  status: DeliveryStatus;
  attempts: number;
  maxAttempts: number;
  lastError: { type: string; message: string } | null;
  /** The function's result (truncated when large), or the pipeline run's last output. */
  result: unknown;
  invocationId: string | null;
  /** The pipeline run's operation, for pipeline deliveries. */
  operationId: string | null;
  startedAt: string;
  finishedAt: string | null;
}

/** The workflow that dispatches an event: one per event, so a redelivery cannot start a second one. */
export function dispatchWorkflowId(key: string): string {
  return `event/${key}`;
}

/** A delivery's id: one per event and binding. */
export function deliveryId(key: string, binding: string): string {
  return `${key}/${binding}`;
}

export interface RunPipelineInput {
  operationId: string;
  pipeline: string;
  /** The pipeline's steps as they were when the run started (an edit of the pipeline does not change a run, nor its retry). */
  steps: PipelineStep[];
  eventKey: string;
  /** The binding's delivery this run serves, settled when the run ends (a retry that succeeds settles it too). */
  deliveryId: string | null;
  /** Record the operation from inside the workflow (runs started by a dispatch); the API records its own. */
  open: boolean;
  startedAt: string;
  /** A retry: the steps the failed run completed are not run again; their outputs are reused. */
  resume?: Resume;
}
