import { Chaos } from './context.js';
import { finishNotes, judge, newRow, runWave, type Row, type WaveItem } from './engine.js';
import { osloNotification, ReliablePublisher, waitForConsumer } from '../test/helpers/amqp.js';
import { applyAddon, createCluster, ensureFleet, ensureFunctionsCluster, functionSource, replaceNode, scaleAny, scaleUp, takeSnapshot, updateCluster, type AnyKind } from './trials.js';

/**
 * The disruptions that are not a worker kill: the Temporal dev server restarted
 * under running operations, and 30% of Rancher calls failing.
 */

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * Creates, scales and an add-on apply running side by side; the Temporal dev
 * server is killed (SIGKILL) and started again on the same SQLite file in the
 * middle. Every one must resume and succeed, with the same invariants as after a
 * worker kill.
 */
export async function runTemporalRestart(chaos: Chaos, slots = { creates: [101, 102, 103], scales: [111, 112], addons: [113] }): Promise<Row> {
  const row = newRow('temporal restart mid-operations');
  const startedAt = Date.now();
  try {
    const items: WaveItem[] = [];
    const add = async (kind: AnyKind, kindSlots: number[]) => {
      for (const target of await kind.prepare(chaos, kindSlots)) items.push({ kind, target });
    };
    await add(createCluster, slots.creates);
    await add(scaleUp, slots.scales);
    await add(applyAddon, slots.addons);
    const exitsBefore = chaos.unexpectedWorkerExits.length;
    await runWave(chaos, row, items, { disrupt: () => chaos.restartTemporal(), label: 'temporal restart' });
    const exits = chaos.unexpectedWorkerExits.length - exitsBefore;
    row.notes.push(exits ? `the worker exited ${exits}× and was started again by the harness` : 'the worker rode it out');
    if (exits) row.problems.push(`the worker did not survive a restart of Temporal (it exited ${exits}×; the harness started another)`);
  } catch (err) {
    row.problems.push(`the scenario could not run: ${errorText(err)}`);
  }
  row.ms = Date.now() - startedAt;
  finishNotes(row);
  return row;
}

/**
 * 50 operations while 30% of Rancher's /v3 answers are 503: 10 creates, and on
 * 8 clusters a chain of scale, snapshot, update, add-on apply and node
 * replacement (one operation per cluster at a time, as Kumo requires). Each
 * must end succeeded, or failed with one of Kumo's failure types and its step
 * named; none may run past its bound; and nothing may be duplicated.
 */
export async function runFaults(chaos: Chaos, options: { errorRate?: number; concurrency?: number } = {}): Promise<Row> {
  const errorRate = options.errorRate ?? 0.3;
  const row = newRow(`${Math.round(errorRate * 100)}% transient faults (503)`);
  const startedAt = Date.now();
  const chains = [201, 202, 203, 204, 205, 206, 207, 208];
  const creates = [221, 222, 223, 224, 225, 226, 227, 228, 229, 230];
  const chain: AnyKind[] = [scaleAny, takeSnapshot, updateCluster, applyAddon, replaceNode];
  try {
    await ensureFleet(chaos, chains);
    const callsBefore = (await chaos.stack.sim('/admin/calls')).total as number;
    await chaos.stack.sim('/admin/faults', { body: { errorRate, errorStatus: 503 } });
    let injected = 0;
    try {
      const limit = limiter(options.concurrency ?? 6);
      const one = (kind: AnyKind, slot: number) =>
        limit(async () => {
          row.runs++;
          let target: unknown;
          let id: string;
          try {
            [target] = await kind.prepare(chaos, [slot]);
            id = await kind.start(chaos, target);
          } catch (err) {
            row.problems.push(`${kind.name} on slot ${slot}: could not start: ${errorText(err)}`);
            return;
          }
          const operation = await chaos.waitForEnd(id, kind.endTimeoutMs + 6 * 60_000);
          await judge(chaos, row, { kind, target }, operation, true);
          chaos.log(`faults: ${kind.name} slot ${slot}: ${operation?.status}${operation?.failure ? ` ${operation.failure.type}@${operation.failure.step}` : ''} (${row.runs} started)`);
        });
      await Promise.all([
        ...creates.map((slot) => one(createCluster, slot)),
        ...chains.map(async (slot) => {
          for (const kind of chain) await one(kind, slot);
        }),
      ]);
      const calls = await chaos.stack.sim('/admin/calls');
      const recent = (calls.recent as Array<{ path: string; status: number }>).filter((call) => call.path.startsWith('/v3'));
      injected = recent.filter((call) => call.status === 503).length;
      row.notes.push(`${(calls.total as number) - callsBefore} calls to the stand-in; ${injected} of the last ${recent.length} /v3 answers were 503`);
    } finally {
      await chaos.stack.sim('/admin/faults', { method: 'DELETE' });
    }
    if (!injected) row.problems.push('no fault was injected');
  } catch (err) {
    row.problems.push(`the scenario could not run: ${errorText(err)}`);
  }
  row.ms = Date.now() - startedAt;
  finishNotes(row);
  return row;
}

/**
 * 1,000 oslo notifications published to the real RabbitMQ while the broker is
 * restarted in the middle (a clean stop and start, with Kumo's consumer
 * connected and messages in flight), the publisher sending again whatever the
 * broker did not confirm, as oslo.messaging does. Every notification must become
 * exactly one event delivered to the bound function (0 lost), and the function
 * must have run once per notification (0 dispatched twice), redeliveries being
 * recognised by their message_id.
 */
export async function runBrokerRestart(chaos: Chaos, total = 1000): Promise<Row> {
  const row = newRow(`RabbitMQ restart mid ${total.toLocaleString('en')} notifications`);
  const broker = chaos.stack.rabbitmq;
  if (!broker || !chaos.stack.amqpUrl) return { ...row, notApplicable: 'n/a: no RabbitMQ (rabbitmq-server is not installed), the OpenStack event source is off' };
  if (!chaos.stack.registryUrl) return { ...row, notApplicable: 'n/a: no OCI registry, so no function to deliver to' };
  const startedAt = Date.now();
  const fn = 'chaos-events';
  try {
    const clusterId = await ensureFunctionsCluster(chaos);
    if ((await chaos.stack.api(`/v1/functions/${fn}`)).status !== 200) await chaos.mustSucceed(await chaos.startOperation('POST', '/v1/functions', functionSource(fn)), `deploying ${fn}`);
    if ((await chaos.stack.api('/v1/bindings/chaos-events')).status !== 200) {
      const created = await chaos.stack.api('/v1/bindings', { body: { name: 'chaos-events', function: fn, source: 'openstack/nova', filter: { type: 'compute.instance.create.end' } } });
      if (created.status !== 201) throw new Error(`the binding could not be created: ${created.status} ${JSON.stringify(created.body)}`);
    }
    await waitForConsumer(chaos.stack.amqpUrl, chaos.stack.env.KUMO_AMQP_QUEUE ?? 'kumo.notifications');
    const messages = Array.from({ length: total }, (_, i) => osloNotification('compute.instance.create.end', { instance_id: `vm-${i}`, state: 'active' }));
    const ids = new Set(messages.map((m) => m.messageId));
    const sender = new ReliablePublisher(chaos.stack.amqpUrl);
    try {
      for (const [i, message] of messages.entries()) {
        if (i === total / 2) {
          chaos.log('broker: stopping RabbitMQ mid-stream');
          await broker.stop();
          await broker.start();
          chaos.log('broker: started again');
        }
        await sender.send('nova', 'notifications.info', message.body);
      }
    } finally {
      await sender.close();
    }
    row.runs = total;

    // Every event delivered, within a bound: the ones that are not are stuck.
    const deadline = Date.now() + 10 * 60_000;
    let events = new Map<string, { status: string; duplicates: number }>();
    for (;;) {
      events = await eventsBySource(chaos, 'openstack/nova', ids);
      const settled = [...events.values()].filter((e) => e.status === 'delivered' || e.status === 'failed').length;
      if (settled === total || Date.now() > deadline) break;
      await new Promise((done) => setTimeout(done, 2000));
    }
    const lost = [...ids].filter((id) => !events.has(id)).length;
    row.completed = [...events.values()].filter((e) => e.status === 'delivered').length;
    row.failedTyped = [...events.values()].filter((e) => e.status === 'failed').length;
    row.stuck = total - lost - row.completed - row.failedTyped;
    const recognised = [...events.values()].reduce((sum, e) => sum + e.duplicates, 0);

    const revision = (await chaos.stack.api(`/v1/functions/${fn}`)).body.revision as string;
    const { lines } = (await chaos.stack.sim(`/admin/clusters/${clusterId}/knative/functions/${revision}/logs?tail=1000000`)) as { lines: string[] };
    const runs = new Map<string, number>();
    for (const line of lines) {
      try {
        const record = JSON.parse(line) as { msg?: string; ceId?: string };
        if (record.msg === 'invocation.start' && record.ceId && ids.has(record.ceId)) runs.set(record.ceId, (runs.get(record.ceId) ?? 0) + 1);
      } catch {
        // not a log record
      }
    }
    row.duplicates = [...runs.values()].filter((n) => n > 1).length;
    if (lost) row.problems.push(`${lost} notification(s) lost: no event recorded`);
    if (row.stuck) row.problems.push(`${row.stuck} event(s) not delivered within 10 minutes`);
    if (row.failedTyped) row.problems.push(`${row.failedTyped} event(s) failed delivery`);
    if (row.duplicates) row.problems.push(`${row.duplicates} notification(s) ran the function more than once`);
    const ran = [...runs.values()].filter((n) => n >= 1).length;
    if (ran !== row.completed) row.problems.push(`the function ran for ${ran} notifications, ${row.completed} events are delivered`);
    row.notes.push(`${recognised} redeliveries recognised, 0 dispatched again`, `lost ${lost}`);
  } catch (err) {
    row.problems.push(`the scenario could not run: ${errorText(err)}`);
  }
  row.ms = Date.now() - startedAt;
  finishNotes(row);
  return row;
}

/** The events of one source whose CloudEvent ids are among `ids`, by id. */
async function eventsBySource(chaos: Chaos, source: string, ids: Set<string>): Promise<Map<string, { status: string; duplicates: number }>> {
  const out = new Map<string, { status: string; duplicates: number }>();
  let cursor: string | null = null;
  do {
    const page = (await chaos.stack.api(`/v1/events?source=${encodeURIComponent(source)}&limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)).body as {
      items: Array<{ cloudEvent: { id: string }; status: string; duplicates: number }>;
      nextCursor: string | null;
    };
    for (const item of page.items) if (ids.has(item.cloudEvent.id)) out.set(item.cloudEvent.id, { status: item.status, duplicates: item.duplicates });
    cursor = page.nextCursor;
  } while (cursor);
  return out;
}

/** Runs at most `n` of the given tasks at once. */
function limiter(n: number): <T>(task: () => Promise<T>) => Promise<T> {
  let active = 0;
  const queue: Array<() => void> = [];
  return async <T>(task: () => Promise<T>): Promise<T> => {
    // A finished task hands its place straight to the next one waiting.
    if (active >= n) await new Promise<void>((go) => queue.push(go));
    else active++;
    try {
      return await task();
    } finally {
      const next = queue.shift();
      if (next) next();
      else active--;
    }
  };
}
