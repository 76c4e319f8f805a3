import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { BindingSpecSchema } from '../domain/event.js';
import { rabbitmqBinary } from '../scripts/rabbitmq.js';
import type { Stack } from '../scripts/stack.js';
import { Store } from '../store/index.js';
import { childPids, PeakRss } from './memory.js';
import { startBenchStack } from './stack.js';

export interface DispatchBench {
  notifications: number;
  /** Kumo: oslo notifications per second, from the first publish to the last dispatch workflow started. */
  kumoPerSecond: number;
  /** A bare amqplib consume-and-ack loop on the same broker, same prefetch, measured the same way. */
  barePerSecond: number;
  /** Bare `client.workflow.start` calls per second on the same dev server, 64 in flight: the ceiling a workflow per event puts on dispatch. */
  workflowStartsPerSecond: number;
  /** Peak RSS of the event source process. */
  eventsPeakRssBytes: number | null;
}

/**
 * Event dispatch: oslo notifications published to a real RabbitMQ, taken by
 * Kumo's event source (parse, record in the store, match, start a
 * `dispatchEvent` workflow, then ack), against a bare consume-and-ack loop on
 * the same broker. Both are timed from the first publish to the last message
 * handled, publishing as fast as the broker confirms. No worker runs: the
 * dispatch workflows are started, not run, so the machine does only the
 * hand-over being measured. The binding is written to the store directly (no
 * function needs to exist to be started against).
 */
export async function benchDispatch(notifications: number): Promise<DispatchBench | null> {
  if (!rabbitmqBinary()) return null;
  const dataDir = mkdtempSync(join(tmpdir(), 'kumo-bench-events-'));
  let stack: Stack | null = null;
  let broker: ChannelModel | null = null;
  try {
    stack = await startBenchStack(dataDir, {
      sim: false,
      worker: false,
      rabbitmqPort: 0,
      env: { KUMO_AMQP_BINDINGS: 'nova:notifications.*' },
    });
    const peaks = new PeakRss();
    peaks.watch('events', childPids('workers/events.ts')[0]);
    peaks.start();
    const store = await Store.open(stack.env.DATABASE_URL!);
    await store.events.createBinding(BindingSpecSchema.parse({ name: 'bench', function: 'bench-fn', source: 'openstack/nova', filter: { type: 'compute.instance.create.end' } }), new Date().toISOString());

    broker = await amqp.connect(stack.amqpUrl!);
    broker.on('error', () => undefined);
    const channel = await broker.createConfirmChannel();
    await waitForConsumer(broker, 'kumo.notifications');

    // Warm-up: the first messages pay for connections, prepared statements, JIT.
    await publishAll(channel, 'nova', 'notifications.info', 50);
    await waitUntil(async () => (await dispatched(store)) >= 50, 60_000);

    const before = await dispatched(store);
    let t = performance.now();
    await publishAll(channel, 'nova', 'notifications.info', notifications);
    await waitUntil(async () => (await dispatched(store)) >= before + notifications, 600_000);
    const kumoSeconds = (performance.now() - t) / 1000;
    await store.close();

    // The bare loop: its own queue on the same exchange, the same prefetch and manual acks.
    const bare = await broker.createChannel();
    await bare.assertQueue('bench.bare', { durable: true });
    await bare.bindQueue('bench.bare', 'nova', 'bench.bare');
    await bare.prefetch(Number(stack.env.KUMO_AMQP_PREFETCH ?? 64));
    let acked = 0;
    let done: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => (done = resolve));
    await consumeAndAck(bare, 'bench.bare', () => {
      acked++;
      if (acked === 50 + notifications) done();
    });
    await publishAll(channel, 'nova', 'bench.bare', 50);
    await waitUntil(async () => acked >= 50, 60_000);
    t = performance.now();
    await publishAll(channel, 'nova', 'bench.bare', notifications);
    await finished;
    const bareSeconds = (performance.now() - t) / 1000;
    const memory = peaks.stop();
    const startSeconds = await timeWorkflowStarts(stack.temporalAddress, notifications, Number(stack.env.KUMO_AMQP_PREFETCH ?? 64));
    return {
      notifications,
      kumoPerSecond: notifications / kumoSeconds,
      barePerSecond: notifications / bareSeconds,
      workflowStartsPerSecond: notifications / startSeconds,
      eventsPeakRssBytes: memory.get('events') ?? null,
    };
  } finally {
    await broker?.close().catch(() => undefined);
    await stack?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function consumeAndAck(channel: Channel, queue: string, onAck: () => void): Promise<void> {
  await channel.consume(queue, (message) => {
    if (!message) return;
    channel.ack(message);
    onAck();
  });
}

/** Publishes `count` oslo-enveloped notifications, then waits for the broker's confirms. */
async function publishAll(channel: amqp.ConfirmChannel, exchange: string, routingKey: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const id = randomUUID();
    const message = {
      message_id: id,
      publisher_id: 'compute.bench',
      event_type: 'compute.instance.create.end',
      priority: 'INFO',
      timestamp: '2026-11-30 10:00:00.000001',
      payload: { instance_id: id, state: 'active' },
    };
    const body = Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(message) }));
    if (!channel.publish(exchange, routingKey, body, { persistent: true })) await new Promise((resolve) => channel.once('drain', resolve));
  }
  await channel.waitForConfirms();
}

async function dispatched(store: Store): Promise<number> {
  return (await store.events.eventCounts()).filter((row) => row.status === 'dispatched').reduce((sum, row) => sum + row.count, 0);
}

async function waitForConsumer(broker: ChannelModel, queue: string): Promise<void> {
  await waitUntil(async () => {
    const probe = await broker.createChannel();
    probe.on('error', () => undefined);
    try {
      return (await probe.checkQueue(queue)).consumerCount > 0;
    } catch {
      return false;
    } finally {
      await probe.close().catch(() => undefined);
    }
  }, 60_000);
}

async function waitUntil(probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`bench: timed out after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Seconds for `count` bare workflow starts, `inFlight` at a time (no worker: they are only started). */
async function timeWorkflowStarts(address: string, count: number, inFlight: number): Promise<number> {
  const connection = await Connection.connect({ address });
  const client = new Client({ connection });
  try {
    let next = 0;
    const t = performance.now();
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < count) {
          const i = next++;
          await client.workflow.start('dispatchEvent', { taskQueue: 'bench-bare', workflowId: `bench-start-${i}`, args: [] });
        }
      }),
    );
    return (performance.now() - t) / 1000;
  } finally {
    await connection.close();
  }
}
