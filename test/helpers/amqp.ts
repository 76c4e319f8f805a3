import { randomUUID } from 'node:crypto';
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';

/** An oslo.messaging notification as OpenStack publishes it (the 2.0 envelope), with its message_id. */
export function osloNotification(eventType: string, payload: unknown, messageId: string = randomUUID()): { messageId: string; body: string } {
  return {
    messageId,
    body: JSON.stringify({
      'oslo.version': '2.0',
      'oslo.message': JSON.stringify({
        message_id: messageId,
        publisher_id: 'compute.cmp-01',
        event_type: eventType,
        priority: 'INFO',
        timestamp: '2026-11-30 10:00:00.000001',
        payload,
        _context_request_id: 'req-1',
        _context_project_id: 'proj-1',
        _context_auth_token: 'gAAAAA-oslo-context-token-must-not-leak',
      }),
    }),
  };
}

/**
 * A publisher that, like oslo.messaging, publishes again what the broker did not
 * confirm: across a broker restart it reconnects and sends the message again
 * (so the consumer may see it twice, and must recognise it).
 */
export class ReliablePublisher {
  private connection: ChannelModel | null = null;
  private channel: ConfirmChannel | null = null;

  constructor(private readonly url: string) {}

  async send(exchange: string, routingKey: string, body: string, maxAttempts = 150): Promise<void> {
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      try {
        const channel = this.channel ?? (await this.reconnect());
        channel.publish(exchange, routingKey, Buffer.from(body), { persistent: true, contentType: 'application/json' });
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          channel.waitForConfirms(),
          new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('no confirm within 5 s')), 5000))),
        ]).finally(() => clearTimeout(timer));
        return;
      } catch {
        this.channel = null;
        await new Promise((done) => setTimeout(done, 200));
      }
    }
    throw new Error(`could not publish within ${maxAttempts} attempts`);
  }

  async close(): Promise<void> {
    const connection = this.connection;
    this.connection = null;
    this.channel = null;
    await connection?.close().catch(() => undefined);
  }

  private async reconnect(): Promise<ConfirmChannel> {
    await this.connection?.close().catch(() => undefined);
    const connection = await amqp.connect(this.url);
    connection.on('error', () => undefined);
    const channel = await connection.createConfirmChannel();
    channel.on('error', () => undefined);
    const closed = () => {
      if (this.channel === channel) this.channel = null;
    };
    connection.on('close', closed);
    channel.on('close', closed);
    this.connection = connection;
    this.channel = channel;
    return channel;
  }
}

/** Waits until `queue` has a consumer (Kumo's event source declared and took it). */
export async function waitForConsumer(url: string, queue: string, timeoutMs = 30_000): Promise<void> {
  const connection = await amqp.connect(url);
  connection.on('error', () => undefined);
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const probe = await connection.createChannel();
      probe.on('error', () => undefined);
      let consumers = 0;
      try {
        consumers = (await probe.checkQueue(queue)).consumerCount;
      } catch {
        // not declared yet
      } finally {
        await probe.close().catch(() => undefined);
      }
      if (consumers > 0) return;
      if (Date.now() > deadline) throw new Error(`no consumer on ${queue} within ${timeoutMs} ms`);
      await new Promise((done) => setTimeout(done, 200));
    }
  } finally {
    await connection.close().catch(() => undefined);
  }
}
