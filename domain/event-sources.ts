import { createHash } from 'node:crypto';
import { z } from '@hono/zod-openapi';
import type { CloudEvent } from './event.js';

/**
 * Turning what arrives into CloudEvents: OpenStack's oslo.messaging
 * notifications and Alertmanager's webhooks, and the key Kumo files each event
 * under. Apart from domain/event.ts because it hashes (node:crypto), which the
 * workflow bundle must not import.
 */

/** Kumo's id of an event: a CloudEvent is unique by source and id, so the key is derived from both. */
export function eventKey(source: string, id: string): string {
  return `evt-${createHash('sha256').update(`${source}\n${id}`).digest('hex').slice(0, 32)}`;
}

// ─── OpenStack (oslo.messaging) notifications ─────────────────────────────────

/** Context keys of an oslo message that are safe to keep (the request's identity, never its token). */
const keptContext: Record<string, string> = {
  _context_request_id: 'openstackrequestid',
  _context_global_request_id: 'openstackglobalid',
  _context_project_id: 'openstackproject',
  _context_tenant: 'openstackproject',
  _context_user_id: 'openstackuser',
  _context_user: 'openstackuser',
};

/** Keys whose values never leave the parser (tokens, passwords, keys). */
const secretKey = /token|password|passwd|secret|credential|private_?key|api_?key/i;

/** Replaces the values of secret-looking keys, anywhere in a payload. */
export function redactSecrets(value: unknown, depth = 0): unknown {
  if (depth > 32 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((item) => redactSecrets(item, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) out[key] = secretKey.test(key) ? '[redacted]' : redactSecrets(item, depth + 1);
  return out;
}

export type OsloResult = { ok: true; event: CloudEvent; envelope: '2.0' | 'none' } | { ok: false; reason: string };

/**
 * Turns an oslo.messaging notification into a CloudEvent. Accepts the 2.0
 * envelope (`{"oslo.version": "2.0", "oslo.message": "<json>"}`, decoded twice)
 * and the plain form. `id` is the message_id (so a redelivery has the same key),
 * `source` is `openstack/<exchange>`, `type` the event_type, `subject` the
 * resource's id when the payload names one, `data` the payload. Request context
 * is kept only as identity extensions; `_context_auth_token` and anything
 * secret-looking never reach the event.
 */
export function parseOsloNotification(body: string, exchange: string): OsloResult {
  let outer: unknown;
  try {
    outer = JSON.parse(body);
  } catch {
    return { ok: false, reason: 'the body is not JSON' };
  }
  if (outer === null || typeof outer !== 'object' || Array.isArray(outer)) return { ok: false, reason: 'the body is not a JSON object' };
  let message = outer as Record<string, unknown>;
  let envelope: '2.0' | 'none' = 'none';
  if ('oslo.version' in message || 'oslo.message' in message) {
    if (message['oslo.version'] !== '2.0') return { ok: false, reason: `unsupported oslo.version ${JSON.stringify(message['oslo.version'])} (2.0 is understood)` };
    if (typeof message['oslo.message'] !== 'string') return { ok: false, reason: 'oslo.message is not a string' };
    try {
      const inner: unknown = JSON.parse(message['oslo.message']);
      if (inner === null || typeof inner !== 'object' || Array.isArray(inner)) return { ok: false, reason: 'oslo.message is not a JSON object' };
      message = inner as Record<string, unknown>;
      envelope = '2.0';
    } catch {
      return { ok: false, reason: 'oslo.message is not JSON' };
    }
  }
  const eventType = message.event_type;
  const messageId = message.message_id;
  if (typeof eventType !== 'string' || eventType === '' || eventType.length > 256) return { ok: false, reason: 'event_type is missing or not a string' };
  if (typeof messageId !== 'string' || messageId === '' || messageId.length > 256) return { ok: false, reason: 'message_id is missing or not a string' };
  if (!('payload' in message)) return { ok: false, reason: 'payload is missing' };
  const time = osloTime(message.timestamp);
  if (time === null) return { ok: false, reason: `timestamp ${JSON.stringify(message.timestamp)} is not a time` };
  if (/\u0000/.test(JSON.stringify(message))) return { ok: false, reason: 'the message holds NUL characters' };

  const payload = redactSecrets(message.payload);
  const event: CloudEvent = {
    specversion: '1.0',
    id: messageId,
    source: `openstack/${exchange}`,
    type: eventType,
    time,
    datacontenttype: 'application/json',
    data: payload,
  };
  const subject = resourceId(payload);
  if (subject) event.subject = subject;
  if (typeof message.publisher_id === 'string') event.openstackpublisher = message.publisher_id.slice(0, 256);
  if (typeof message.priority === 'string') event.openstackpriority = message.priority.toUpperCase().slice(0, 16);
  for (const [key, attribute] of Object.entries(keptContext)) {
    const value = message[key];
    if (typeof value === 'string' && value && event[attribute] === undefined) event[attribute] = value.slice(0, 256);
  }
  return { ok: true, event, envelope };
}

/** oslo writes `str(utcnow())`: "2024-05-01 12:00:00.123456", UTC without a zone. */
function osloTime(value: unknown): string | null {
  if (value === undefined || value === null) return new Date(0).toISOString();
  if (typeof value !== 'string') return null;
  const m = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$/.exec(value.trim());
  if (!m) return null;
  const fraction = m[3] ? m[3].slice(0, 4).padEnd(4, '0') : '.000';
  const zone = m[4] ? (m[4] === 'Z' ? 'Z' : m[4].includes(':') ? m[4] : `${m[4].slice(0, 3)}:${m[4].slice(3)}`) : 'Z';
  const date = new Date(`${m[1]}T${m[2]}${fraction}${zone}`);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/** The id of the resource a payload is about: versioned (nova_object.data.uuid) or legacy (instance_id, volume_id, id…). */
function resourceId(payload: unknown): string | null {
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) return null;
  const p = payload as Record<string, unknown>;
  const versioned = p['nova_object.data'];
  if (versioned && typeof versioned === 'object' && typeof (versioned as Record<string, unknown>).uuid === 'string') return String((versioned as Record<string, unknown>).uuid);
  for (const key of ['instance_id', 'volume_id', 'snapshot_id', 'image_id', 'resource_id', 'id']) {
    const value = p[key];
    if (typeof value === 'string' && value) return value.slice(0, 256);
  }
  for (const key of ['port', 'network', 'subnet', 'router', 'floatingip', 'security_group']) {
    const inner = p[key];
    if (inner && typeof inner === 'object' && typeof (inner as Record<string, unknown>).id === 'string') return String((inner as Record<string, unknown>).id);
  }
  return null;
}

// ─── Alertmanager ──────────────────────────────────────────────────────────────

const AlertSchema = z
  .object({
    status: z.enum(['firing', 'resolved']),
    labels: z.record(z.string(), z.string().max(4096)),
    annotations: z.record(z.string(), z.string().max(16_384)).default({}),
    startsAt: z.string().max(64),
    endsAt: z.string().max(64).optional(),
    generatorURL: z.string().max(4096).optional(),
    fingerprint: z.string().max(128).optional(),
  })
  .passthrough();

/** Prometheus Alertmanager's webhook payload (version 4). */
export const AlertmanagerPayloadSchema = z
  .object({
    version: z.string().max(8).optional(),
    groupKey: z.string().max(4096).optional(),
    truncatedAlerts: z.number().int().min(0).optional(),
    status: z.enum(['firing', 'resolved']),
    receiver: z.string().min(1).max(256),
    groupLabels: z.record(z.string(), z.string()).default({}),
    commonLabels: z.record(z.string(), z.string()).default({}),
    commonAnnotations: z.record(z.string(), z.string()).default({}),
    externalURL: z.string().max(4096).optional(),
    alerts: z.array(AlertSchema).min(1).max(1000),
  })
  .passthrough()
  .openapi('AlertmanagerWebhook', {
    example: {
      version: '4',
      status: 'firing',
      receiver: 'kumo',
      alerts: [{ status: 'firing', labels: { alertname: 'NodeDown', instance: 'node-1' }, annotations: {}, startsAt: '2026-11-30T10:00:00Z', fingerprint: 'c4d6b1f0a1b2c3d4' }],
    },
  });
export type AlertmanagerPayload = z.infer<typeof AlertmanagerPayloadSchema>;

/**
 * One CloudEvent per alert: `type` is `prometheus.alert.firing` or
 * `prometheus.alert.resolved`, `subject` the alert's name, `data` the alert
 * with its labels. The id is stable for the same alert in the same state, so
 * Alertmanager's repeat notifications do not run a function twice.
 */
export function alertEvents(payload: AlertmanagerPayload, receivedAt: string): CloudEvent[] {
  return payload.alerts.map((alert) => {
    const fingerprint = alert.fingerprint ?? createHash('sha256').update(JSON.stringify(Object.entries(alert.labels).sort())).digest('hex').slice(0, 16);
    const id = createHash('sha256').update(`${fingerprint}\n${alert.status}\n${alert.startsAt}\n${alert.status === 'resolved' ? (alert.endsAt ?? '') : ''}`).digest('hex').slice(0, 32);
    const event: CloudEvent = {
      specversion: '1.0',
      id,
      source: `alertmanager/${payload.receiver}`,
      type: `prometheus.alert.${alert.status}`,
      time: receivedAt,
      datacontenttype: 'application/json',
      data: {
        status: alert.status,
        labels: alert.labels,
        annotations: alert.annotations,
        startsAt: alert.startsAt,
        ...(alert.endsAt ? { endsAt: alert.endsAt } : {}),
        ...(alert.generatorURL ? { generatorURL: alert.generatorURL } : {}),
        fingerprint,
        ...(payload.groupKey ? { groupKey: payload.groupKey } : {}),
        ...(payload.externalURL ? { externalURL: payload.externalURL } : {}),
      },
    };
    if (alert.labels.alertname) event.subject = alert.labels.alertname.slice(0, 512);
    return event;
  });
}

