import { Client, Connection } from '@temporalio/client';
import { ingestEvent } from '../api/ingest.js';
import { ConfigError, loadConfig } from '../domain/config.js';
import { parseOsloNotification } from '../domain/event-sources.js';
import { createLogger } from '../domain/log.js';
import { createAmqpConsumer, parseAmqpBindings, type AmqpVerdict } from '../providers/amqp.js';
import { Store } from '../store/index.js';

const log = createLogger({ service: 'events', level: process.env.KUMO_LOG_LEVEL });

/**
 * The OpenStack event source: consumes oslo.messaging notifications from
 * RabbitMQ and hands each to Temporal (api/ingest.ts) before acknowledging it.
 * Without KUMO_AMQP_URL it says the source is off and exits.
 */
async function main(): Promise<void> {
  const config = loadConfig(process.env);
  if (!config.KUMO_AMQP_URL) {
    log.warn('the OpenStack event source is off: KUMO_AMQP_URL is not set');
    return;
  }
  const store = await Store.open(config.DATABASE_URL);
  const connection = Connection.lazy({ address: config.TEMPORAL_ADDRESS ?? `127.0.0.1:${config.TEMPORAL_PORT}` });
  const temporal = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
  const deps = { store, temporal, config };

  const consumer = createAmqpConsumer({
    url: config.KUMO_AMQP_URL,
    bindings: parseAmqpBindings(config.KUMO_AMQP_BINDINGS),
    queue: config.KUMO_AMQP_QUEUE,
    deadLetterQueue: config.KUMO_AMQP_DEAD_LETTER_QUEUE,
    prefetch: config.KUMO_AMQP_PREFETCH,
    durableExchanges: config.KUMO_AMQP_DURABLE_EXCHANGES === 'true',
    log: { info: (msg) => log.info(msg), warn: (msg) => log.warn(msg), error: (msg) => log.error(msg) },
    async handle(message): Promise<AmqpVerdict> {
      const parsed = parseOsloNotification(message.body, message.exchange);
      if (!parsed.ok) {
        log.warn({ exchange: message.exchange, routingKey: message.routingKey, reason: parsed.reason }, `malformed notification dead-lettered: ${parsed.reason}`);
        return { kind: 'dead-letter', reason: parsed.reason };
      }
      try {
        await ingestEvent(deps, {
          event: parsed.event,
          origin: 'openstack',
          trace: { exchange: message.exchange, routingKey: message.routingKey, envelope: parsed.envelope, ...(message.redelivered ? { redelivered: 'true' } : {}) },
        });
        return { kind: 'ack' };
      } catch (err) {
        // Temporal or the store is not there: the message goes back to the queue, nothing is lost.
        const reason = err instanceof Error ? err.message : String(err);
        log.warn({ id: parsed.event.id, type: parsed.event.type }, `notification not handed over yet (${reason}); it goes back to the queue`);
        return { kind: 'retry', reason };
      }
    },
  });
  void consumer.start();
  log.info('kumo events ready');

  const stop = () => {
    void consumer
      .close()
      .then(() => connection.close())
      .finally(() => store.close().finally(() => process.exit(0)));
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err) => {
  if (err instanceof ConfigError) log.fatal(err.message);
  else log.fatal({ err }, `the event source could not start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
