import amqp, { type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib';

/** One notification as it came off the queue. */
export interface AmqpMessage {
  body: string;
  exchange: string;
  routingKey: string;
  redelivered: boolean;
}

/**
 * What the handler decided: `ack` (the event is durably handed over), a dead
 * letter with the reason (malformed; it is moved to the dead-letter queue), or
 * `retry` (Kumo cannot take it now: it goes back to the queue after a pause).
 */
export type AmqpVerdict = { kind: 'ack' } | { kind: 'dead-letter'; reason: string } | { kind: 'retry'; reason: string };

export interface AmqpConsumerOptions {
  /** amqp://user:pass@host:port/vhost (a secret: never logged as is). */
  url: string;
  bindings: Array<{ exchange: string; routingKey: string }>;
  queue: string;
  deadLetterQueue: string;
  prefetch: number;
  durableExchanges: boolean;
  handle(message: AmqpMessage): Promise<AmqpVerdict>;
  log: { info(msg: string): void; warn(msg: string): void; error(msg: string): void };
  /** Pause before a `retry` message is put back (so a Kumo outage is not a hot loop). */
  retryDelayMs?: number;
}

export interface AmqpConsumerStatus {
  connected: boolean;
  consumed: number;
  acked: number;
  deadLettered: number;
  requeued: number;
  connects: number;
  lastError: string | null;
}

export interface AmqpConsumer {
  /** Connects (retrying until it can) and consumes; resolves once the first connection consumes or `close` is called. */
  start(): Promise<void>;
  status(): AmqpConsumerStatus;
  close(): Promise<void>;
}

/** The URL with its password blanked, for log lines. */
export function redactAmqpUrl(url: string): string {
  return url.replace(/^(amqps?:\/\/[^:@/]*:)[^@/]*@/, '$1[redacted]@');
}

/**
 * Kumo's consumer of oslo.messaging notifications: its own durable queue bound
 * to each service's topic exchange (never oslo's shared `notifications.info`
 * queue, whose other consumers would compete for messages), manual acks, a
 * bounded prefetch. A message is acknowledged only after the handler says the
 * event is durably handed over; a malformed one is published to the dead-letter
 * queue with the reason (confirmed by the broker) before it is acknowledged.
 * A lost connection (a broker restart) is re-established with backoff; the
 * messages that were in flight are redelivered by the broker, and the handler
 * recognises them.
 */
export function createAmqpConsumer(options: AmqpConsumerOptions): AmqpConsumer {
  const status: AmqpConsumerStatus = { connected: false, consumed: 0, acked: 0, deadLettered: 0, requeued: 0, connects: 0, lastError: null };
  let connection: ChannelModel | null = null;
  let closed = false;
  let started: (() => void) | null = null;
  let retryTimer: NodeJS.Timeout | null = null;
  const where = redactAmqpUrl(options.url);

  const declare = async (conn: ChannelModel): Promise<ConfirmChannel> => {
    // Each exchange on a channel of its own: one declared differently by OpenStack
    // (durable or not) closes only that channel, and the exchange is still used.
    for (const exchange of new Set(options.bindings.map((b) => b.exchange))) {
      const probe = await conn.createChannel();
      probe.on('error', () => undefined);
      try {
        await probe.assertExchange(exchange, 'topic', { durable: options.durableExchanges, autoDelete: false });
        await probe.close();
      } catch (err) {
        options.log.warn(`exchange ${exchange} exists with other settings (${err instanceof Error ? err.message : String(err)}); using it as it is`);
      }
    }
    const channel = await conn.createConfirmChannel();
    await channel.assertQueue(options.queue, { durable: true });
    await channel.assertQueue(options.deadLetterQueue, { durable: true });
    for (const binding of options.bindings) await channel.bindQueue(options.queue, binding.exchange, binding.routingKey);
    await channel.prefetch(options.prefetch);
    return channel;
  };

  const onMessage = async (channel: ConfirmChannel, message: ConsumeMessage): Promise<void> => {
    status.consumed++;
    const input: AmqpMessage = {
      body: message.content.toString('utf8'),
      exchange: message.fields.exchange,
      routingKey: message.fields.routingKey,
      redelivered: message.fields.redelivered,
    };
    let verdict: AmqpVerdict;
    try {
      verdict = await options.handle(input);
    } catch (err) {
      verdict = { kind: 'retry', reason: err instanceof Error ? err.message : String(err) };
    }
    try {
      if (verdict.kind === 'ack') {
        channel.ack(message);
        status.acked++;
      } else if (verdict.kind === 'dead-letter') {
        channel.sendToQueue(options.deadLetterQueue, message.content, {
          persistent: true,
          contentType: message.properties.contentType as string | undefined,
          headers: { ...(message.properties.headers ?? {}), 'x-kumo-reason': verdict.reason, 'x-kumo-exchange': input.exchange, 'x-kumo-routing-key': input.routingKey, 'x-kumo-dead-lettered-at': new Date().toISOString() },
        });
        await channel.waitForConfirms();
        channel.ack(message);
        status.deadLettered++;
      } else {
        status.lastError = verdict.reason;
        await new Promise((done) => setTimeout(done, options.retryDelayMs ?? 1000));
        channel.nack(message, false, true);
        status.requeued++;
      }
    } catch (err) {
      // The channel went away (a broker restart): the broker redelivers the message.
      status.lastError = err instanceof Error ? err.message : String(err);
    }
  };

  const connect = async (attempt: number): Promise<void> => {
    if (closed) return;
    try {
      const conn = await amqp.connect(options.url, { timeout: 5000 });
      conn.on('error', (err: Error) => {
        status.lastError = err.message;
      });
      conn.on('close', () => {
        status.connected = false;
        connection = null;
        if (!closed) {
          options.log.warn(`lost the connection to RabbitMQ at ${where}; reconnecting`);
          schedule(1);
        }
      });
      const channel = await declare(conn);
      channel.on('error', (err: Error) => {
        status.lastError = err.message;
      });
      await channel.consume(options.queue, (message) => {
        if (message) void onMessage(channel, message);
      });
      connection = conn;
      status.connected = true;
      status.connects++;
      options.log.info(`consuming OpenStack notifications from ${where} (queue ${options.queue}: ${options.bindings.map((b) => `${b.exchange}/${b.routingKey}`).join(', ')})`);
      started?.();
      started = null;
      if (closed) await conn.close().catch(() => undefined);
    } catch (err) {
      status.lastError = err instanceof Error ? err.message : String(err);
      if (attempt === 1 || attempt % 20 === 0) options.log.warn(`RabbitMQ at ${where} is not reachable (${status.lastError}); retrying`);
      schedule(attempt + 1);
    }
  };

  const schedule = (attempt: number) => {
    if (closed || retryTimer) return;
    const delay = Math.min(250 * 2 ** Math.min(attempt - 1, 5), 5000);
    retryTimer = setTimeout(() => {
      retryTimer = null;
      void connect(attempt);
    }, delay);
  };

  return {
    start() {
      return new Promise<void>((resolve) => {
        started = resolve;
        void connect(1);
      });
    },
    status: () => ({ ...status }),
    async close() {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      started?.();
      const conn = connection;
      connection = null;
      if (conn) await conn.close().catch(() => undefined);
    },
  };
}

/** Parses `exchange:routing-key,…` (KUMO_AMQP_BINDINGS). */
export function parseAmqpBindings(text: string): Array<{ exchange: string; routingKey: string }> {
  return text
    .split(',')
    .map((pair) => pair.trim())
    .filter(Boolean)
    .map((pair) => {
      const at = pair.indexOf(':');
      return { exchange: pair.slice(0, at), routingKey: pair.slice(at + 1) };
    });
}
