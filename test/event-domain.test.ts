import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { alertEvents, AlertmanagerPayloadSchema, eventKey, parseOsloNotification } from '../domain/event-sources.js';
import {
  BindingSpecSchema,
  CloudEventSchema,
  cronProblem,
  eventFromBinary,
  matches,
  matchingBindings,
  parsePath,
  pipelineSteps,
  PipelineSpecSchema,
  type CloudEvent,
} from '../domain/event.js';

const vmCreated: CloudEvent = {
  specversion: '1.0',
  id: 'msg-1',
  source: 'openstack/nova',
  type: 'compute.instance.create.end',
  subject: 'vm-uuid-1',
  time: '2026-11-30T10:00:00.000Z',
  openstackpriority: 'INFO',
  data: { instance_id: 'vm-uuid-1', state: 'active', memory_mb: 2048, flavor: { name: 'm1.small' }, fixed_ips: [{ address: '10.0.0.5' }], 'display name': 'web 1' },
};

const binding = (spec: Record<string, unknown>) => BindingSpecSchema.parse({ name: 'b', function: 'f', ...spec });

describe('binding matching', () => {
  test('source: exact, or a prefix ending in *', () => {
    assert.equal(matches(binding({ source: 'openstack/nova' }), vmCreated), true);
    assert.equal(matches(binding({ source: 'openstack/cinder' }), vmCreated), false);
    assert.equal(matches(binding({ source: 'openstack/*' }), vmCreated), true);
    assert.equal(matches(binding({ source: 'openstack/nov' }), vmCreated), false, 'no implicit prefix');
    assert.equal(matches(binding({}), vmCreated), true, 'no source: any');
  });

  test('type exact or by prefix', () => {
    assert.equal(matches(binding({ filter: { type: 'compute.instance.create.end' } }), vmCreated), true);
    assert.equal(matches(binding({ filter: { type: 'compute.instance.create' } }), vmCreated), false);
    assert.equal(matches(binding({ filter: { typePrefix: 'compute.instance.' } }), vmCreated), true);
    assert.equal(matches(binding({ filter: { typePrefix: 'volume.' } }), vmCreated), false);
    assert.equal(BindingSpecSchema.safeParse({ name: 'b', function: 'f', filter: { type: 'a', typePrefix: 'b' } }).success, false);
  });

  test('attribute equality, extensions included', () => {
    assert.equal(matches(binding({ filter: { attributes: { subject: 'vm-uuid-1', openstackpriority: 'INFO' } } }), vmCreated), true);
    assert.equal(matches(binding({ filter: { attributes: { openstackpriority: 'ERROR' } } }), vmCreated), false);
    assert.equal(matches(binding({ filter: { attributes: { missing: 'x' } } }), vmCreated), false);
  });

  test('JSON-path conditions on the data, all of which must hold', () => {
    const data = (...conditions: unknown[]) => binding({ filter: { data: conditions } });
    assert.equal(matches(data({ path: '$.state', equals: 'active' }), vmCreated), true);
    assert.equal(matches(data({ path: '$.state', equals: 'error' }), vmCreated), false);
    assert.equal(matches(data({ path: '$.flavor.name', in: ['m1.small', 'm1.large'] }), vmCreated), true);
    assert.equal(matches(data({ path: '$.fixed_ips[0].address', prefix: '10.' }), vmCreated), true);
    assert.equal(matches(data({ path: '$.fixed_ips[1].address', exists: true }), vmCreated), false);
    assert.equal(matches(data({ path: '$.fixed_ips[1].address', exists: false }), vmCreated), true);
    assert.equal(matches(data({ path: '$.memory_mb', greaterThan: 1024 }, { path: '$.memory_mb', lessThan: 4096 }), vmCreated), true);
    assert.equal(matches(data({ path: '$.memory_mb', greaterThan: 4096 }), vmCreated), false);
    assert.equal(matches(data({ path: '$["display name"]', equals: 'web 1' }), vmCreated), true);
    assert.equal(matches(data({ path: '$.flavor', equals: { name: 'm1.small' } }), vmCreated), true, 'deep equality');
    assert.equal(matches(data({ path: '$.nothing', notEquals: 'x' }), vmCreated), true, 'an absent value is not equal to anything');
    assert.equal(matches(data({ path: '$.state', equals: 'active' }, { path: '$.flavor.name', equals: 'm1.large' }), vmCreated), false, 'all must hold');
  });

  test('a condition names one path and one operator; bad paths are refused', () => {
    assert.equal(BindingSpecSchema.safeParse({ name: 'b', function: 'f', filter: { data: [{ path: '$.a', equals: 1, prefix: 'x' }] } }).success, false);
    assert.equal(BindingSpecSchema.safeParse({ name: 'b', function: 'f', filter: { data: [{ path: '$.a' }] } }).success, false);
    assert.equal(BindingSpecSchema.safeParse({ name: 'b', function: 'f', filter: { data: [{ path: 'state', equals: 1 }] } }).success, false);
    assert.equal(BindingSpecSchema.safeParse({ name: 'b', function: 'f', filter: { data: [{ path: '$..x', equals: 1 }] } }).success, false);
    assert.equal(BindingSpecSchema.safeParse({ name: 'b', function: 'f', filter: { data: [{ path: '$.a', equals: null }] } }).success, true, 'equals null is a condition');
    assert.deepEqual(parsePath(`$.a[2]['b c']["d\\"e"]`), ['a', 2, 'b c', 'd"e']);
    assert.equal(parsePath('$.a[*]'), null);
  });

  test('a binding targets a function or a pipeline, and a cron binding has no filter', () => {
    assert.equal(BindingSpecSchema.safeParse({ name: 'b' }).success, false);
    assert.equal(BindingSpecSchema.safeParse({ name: 'b', function: 'f', pipeline: 'p' }).success, false);
    assert.equal(BindingSpecSchema.safeParse({ name: 'b', pipeline: 'p', schedule: { every: '10s' } }).success, true);
    assert.equal(BindingSpecSchema.safeParse({ name: 'b', function: 'f', schedule: { every: '10s' }, source: 'x' }).success, false);
    assert.equal(BindingSpecSchema.safeParse({ name: 'b', function: 'f', schedule: { every: '10s', cron: '* * * * *' } }).success, false);
  });

  test('a cron binding matches only its own firings; matches come in name order', () => {
    const cron = binding({ name: 'tick', schedule: { every: '1m' } });
    assert.equal(matches(cron, vmCreated), false);
    assert.equal(matches(cron, { ...vmCreated, source: 'kumo/schedules/tick' }), true);
    const found = matchingBindings([binding({ name: 'z' }), binding({ name: 'a', filter: { type: 'other' } }), binding({ name: 'm' })], vmCreated);
    assert.deepEqual(found.map((b) => b.name), ['m', 'z']);
  });
});

describe('cron expressions', () => {
  test('five fields with ranges, steps, lists and names; macros', () => {
    for (const ok of ['* * * * *', '*/5 * * * *', '0 3 * * 1-5', '0 0 1,15 * *', '30 2 * jan-mar mon', '@daily', '@hourly', '0 0 * * 7']) assert.equal(cronProblem(ok), null, ok);
  });
  test('what is wrong is named', () => {
    assert.match(cronProblem('* * * *') ?? '', /5 fields/);
    assert.match(cronProblem('60 * * * *') ?? '', /minute/);
    assert.match(cronProblem('* 24 * * *') ?? '', /hour/);
    assert.match(cronProblem('* * 0 * *') ?? '', /day of month/);
    assert.match(cronProblem('* * * foo *') ?? '', /month/);
    assert.match(cronProblem('*/0 * * * *') ?? '', /step/);
    const parsed = BindingSpecSchema.safeParse({ name: 'b', function: 'f', schedule: { cron: '61 * * * *' } });
    assert.equal(parsed.success, false);
    assert.deepEqual(parsed.error?.issues[0]?.path, ['schedule', 'cron']);
  });
});

describe('oslo.messaging notifications', () => {
  const inner = {
    message_id: '9f1c5e0a-0000-4000-8000-000000000001',
    publisher_id: 'compute.cmp-01',
    event_type: 'compute.instance.create.end',
    priority: 'INFO',
    timestamp: '2024-05-01 12:00:00.123456',
    payload: { instance_id: '178b0921-aaaa', state: 'active', image_meta: { admin_password: 'hunter2' } },
    _context_request_id: 'req-1',
    _context_project_id: 'proj-1',
    _context_user_id: 'user-1',
    _context_auth_token: 'gAAAA-secret-token',
    _unique_id: 'u1',
  };

  test('the 2.0 envelope is decoded twice into a CloudEvent', () => {
    const result = parseOsloNotification(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(inner) }), 'nova');
    assert.equal(result.ok, true);
    if (!result.ok) return;
    assert.equal(result.envelope, '2.0');
    const e = result.event;
    assert.equal(e.id, inner.message_id);
    assert.equal(e.source, 'openstack/nova');
    assert.equal(e.type, 'compute.instance.create.end');
    assert.equal(e.subject, '178b0921-aaaa');
    assert.equal(e.time, '2024-05-01T12:00:00.123Z');
    assert.equal(e.openstackpublisher, 'compute.cmp-01');
    assert.equal(e.openstackpriority, 'INFO');
    assert.equal(e.openstackproject, 'proj-1');
    assert.equal(e.openstackrequestid, 'req-1');
    assert.deepEqual((e.data as Record<string, unknown>).state, 'active');
  });

  test('the plain form is understood too', () => {
    const result = parseOsloNotification(JSON.stringify(inner), 'nova');
    assert.equal(result.ok && result.envelope, 'none');
  });

  test('the auth token and secret-looking payload fields never reach the event', () => {
    const result = parseOsloNotification(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(inner) }), 'nova');
    const text = JSON.stringify(result);
    assert.doesNotMatch(text, /gAAAA-secret-token/);
    assert.doesNotMatch(text, /hunter2/);
    assert.match(text, /\[redacted\]/);
  });

  test('versioned payloads give the resource uuid as subject', () => {
    const versioned = { ...inner, payload: { 'nova_object.name': 'InstanceActionPayload', 'nova_object.data': { uuid: 'u-123', state: 'active' } } };
    const result = parseOsloNotification(JSON.stringify(versioned), 'nova');
    assert.equal(result.ok && result.event.subject, 'u-123');
  });

  test('malformed messages say why', () => {
    const reason = (body: string) => {
      const r = parseOsloNotification(body, 'nova');
      return r.ok ? null : r.reason;
    };
    assert.match(reason('not json') ?? '', /not JSON/);
    assert.match(reason('[1]') ?? '', /not a JSON object/);
    assert.match(reason(JSON.stringify({ 'oslo.version': '1.0', 'oslo.message': '{}' })) ?? '', /oslo.version/);
    assert.match(reason(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': '{bad' })) ?? '', /oslo.message is not JSON/);
    assert.match(reason(JSON.stringify({ ...inner, event_type: undefined })) ?? '', /event_type/);
    assert.match(reason(JSON.stringify({ ...inner, message_id: 7 })) ?? '', /message_id/);
    assert.match(reason(JSON.stringify({ ...inner, payload: undefined })) ?? '', /payload/);
    assert.match(reason(JSON.stringify({ ...inner, timestamp: 'yesterday' })) ?? '', /timestamp/);
  });
});

describe('CloudEvents over HTTP', () => {
  test('structured mode: required attributes, extension names', () => {
    assert.equal(CloudEventSchema.safeParse({ specversion: '1.0', id: '1', source: 's', type: 't' }).success, true);
    assert.equal(CloudEventSchema.safeParse({ specversion: '0.3', id: '1', source: 's', type: 't' }).success, false);
    assert.equal(CloudEventSchema.safeParse({ specversion: '1.0', source: 's', type: 't' }).success, false);
    assert.equal(CloudEventSchema.safeParse({ specversion: '1.0', id: '1', source: 's', type: 't', Bad_Ext: 'x' }).success, false);
    assert.equal(CloudEventSchema.safeParse({ specversion: '1.0', id: '1', source: 's', type: 't', myext: 'x' }).success, true);
    assert.equal(CloudEventSchema.safeParse({ specversion: '1.0', id: '1', source: 's', type: 't', time: 'noon' }).success, false);
  });

  test('binary mode: ce-* headers, JSON data by content type, the wrong header named', () => {
    const ok = eventFromBinary({ 'ce-specversion': '1.0', 'ce-id': 'x1', 'ce-source': 'ci', 'ce-type': 'build.done', 'ce-subject': 'a%20b', 'content-type': 'application/json' }, '{"ok":true}', '2026-01-01T00:00:00.000Z');
    assert.ok('event' in ok);
    if ('event' in ok) {
      assert.deepEqual(ok.event.data, { ok: true });
      assert.equal(ok.event.subject, 'a b');
      assert.equal(ok.event.time, '2026-01-01T00:00:00.000Z');
    }
    const text = eventFromBinary({ 'ce-specversion': '1.0', 'ce-id': 'x1', 'ce-source': 'ci', 'ce-type': 't', 'content-type': 'text/plain' }, 'hello', 'now');
    assert.ok('event' in text && text.event.data === 'hello');
    const missing = eventFromBinary({ 'ce-specversion': '1.0', 'ce-id': 'x1', 'ce-type': 't' }, '', 'now');
    assert.deepEqual('field' in missing && missing.field, 'ce-source');
    const badJson = eventFromBinary({ 'ce-specversion': '1.0', 'ce-id': 'x1', 'ce-source': 's', 'ce-type': 't', 'content-type': 'application/json' }, '{', 'now');
    assert.deepEqual('field' in badJson && badJson.field, 'body');
  });

  test("an event's key is stable by source and id, and differs across sources", () => {
    assert.equal(eventKey('a', '1'), eventKey('a', '1'));
    assert.notEqual(eventKey('a', '1'), eventKey('b', '1'));
    assert.match(eventKey('a', '1'), /^evt-[0-9a-f]{32}$/);
  });
});

describe('Alertmanager webhooks', () => {
  const payload = AlertmanagerPayloadSchema.parse({
    version: '4',
    groupKey: '{}:{alertname="NodeDown"}',
    status: 'firing',
    receiver: 'kumo',
    groupLabels: {},
    commonLabels: {},
    commonAnnotations: {},
    externalURL: 'http://am',
    alerts: [
      { status: 'firing', labels: { alertname: 'NodeDown', instance: 'n1' }, annotations: { summary: 'n1 down' }, startsAt: '2026-11-30T10:00:00Z', endsAt: '0001-01-01T00:00:00Z', fingerprint: 'aaa' },
      { status: 'resolved', labels: { alertname: 'DiskFull', instance: 'n2' }, annotations: {}, startsAt: '2026-11-30T09:00:00Z', endsAt: '2026-11-30T09:30:00Z', fingerprint: 'bbb' },
    ],
  });

  test('each alert becomes a CloudEvent with its labels, firing or resolved', () => {
    const events = alertEvents(payload, '2026-11-30T10:01:00.000Z');
    assert.equal(events.length, 2);
    assert.deepEqual(events.map((e) => e.type), ['prometheus.alert.firing', 'prometheus.alert.resolved']);
    assert.deepEqual(events.map((e) => e.subject), ['NodeDown', 'DiskFull']);
    assert.equal(events[0]?.source, 'alertmanager/kumo');
    assert.deepEqual((events[0]?.data as { labels: unknown }).labels, { alertname: 'NodeDown', instance: 'n1' });
  });

  test('the same alert in the same state has the same id; resolving it gives a new one', () => {
    const [a] = alertEvents(payload, 'now');
    const [b] = alertEvents(payload, 'later');
    assert.equal(a?.id, b?.id);
    const resolved = alertEvents({ ...payload, alerts: [{ ...payload.alerts[0]!, status: 'resolved', endsAt: '2026-11-30T11:00:00Z' }] }, 'now');
    assert.notEqual(resolved[0]?.id, a?.id);
  });
});

describe('pipelines', () => {
  test("steps take the pipeline's policy unless they name their own", () => {
    const spec = PipelineSpecSchema.parse({ name: 'p', steps: ['a', { function: 'b', attempts: 5 }], delivery: { attempts: 2 } });
    const steps = pipelineSteps(spec);
    assert.deepEqual(steps.map((s) => [s.function, s.policy.attempts]), [['a', 2], ['b', 5]]);
    assert.equal(PipelineSpecSchema.safeParse({ name: 'p', steps: [] }).success, false);
    assert.equal(PipelineSpecSchema.safeParse({ name: 'p', steps: ['Bad Name'] }).success, false);
  });
});
