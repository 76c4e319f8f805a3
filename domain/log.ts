import { hostname } from 'node:os';
import { pino, type DestinationStream, type Level, type Logger } from 'pino';

export type { Logger } from 'pino';

/** The levels KUMO_LOG_LEVEL may name, quietest last. */
export const logLevels = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = Level | 'silent';

/**
 * Fields that may hold a secret, wherever a log call puts them: replaced by
 * `[redacted]` before the line is written. Top-level and one level down (pino's
 * `*` matches a single key).
 */
export const redactedFields = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  '*.headers.authorization',
  ...['token', 'password', 'kubeconfig', 'RANCHER_TOKEN', 'KUMO_REGISTRY_PASSWORD', 'KUMO_ADMIN_TOKEN', 'DATABASE_URL', 'KUMO_AMQP_URL'].flatMap((key) => [key, `*.${key}`]),
];

/** What a secret looks like inside free text: a bearer credential, or a generated Kumo token secret (`kumo_` and 43 characters). */
const secretInText = /(Bearer\s+)\S+|kumo_[A-Za-z0-9_-]{40,}|(amqps?:\/\/[^:@/\s]*:)[^@/\s]*@/gi;

/** Free text with bearer credentials and Kumo token secrets blanked out. */
export function scrubSecrets(text: string): string {
  return text.replace(secretInText, (_match, bearer: string | undefined, amqpUser: string | undefined) => (amqpUser ? `${amqpUser}[redacted]@` : `${bearer ?? ''}[redacted]`));
}

/** pino's error serializer (type, message, stack, cause), with secrets scrubbed from the text. */
function serializeError(err: unknown): unknown {
  if (!(err instanceof Error)) return typeof err === 'string' ? scrubSecrets(err) : err;
  const serialized = pino.stdSerializers.err(err);
  serialized.message = scrubSecrets(serialized.message);
  serialized.stack = scrubSecrets(serialized.stack);
  return serialized;
}

/**
 * A structured JSON logger: one line per entry, `{ level, time, service, msg, ... }`,
 * with the level as a word and the time in ISO 8601. Secrets are redacted by field
 * ({@link redactedFields}) and scrubbed from messages. An unknown level falls back
 * to `info` and says so.
 * @example const log = createLogger({ service: 'api', level: process.env.KUMO_LOG_LEVEL });
 */
export function createLogger(options: { service: string; level?: string | undefined; destination?: DestinationStream }): Logger {
  const wanted = options.level?.trim().toLowerCase() || 'info';
  const known = (logLevels as readonly string[]).includes(wanted);
  const logger = pino(
    {
      level: known ? wanted : 'info',
      base: { pid: process.pid, hostname: hostname(), service: options.service },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: serializeError, error: serializeError },
      redact: { paths: redactedFields, censor: '[redacted]' },
      hooks: {
        // Messages are free text: a credential pasted into one is blanked out too.
        logMethod(args, method) {
          const scrubbed = args.map((arg) => (typeof arg === 'string' ? scrubSecrets(arg) : arg)) as typeof args;
          return method.apply(this, scrubbed);
        },
      },
    },
    options.destination,
  );
  if (!known) logger.warn({ requestedLevel: options.level }, `unknown log level "${options.level}": logging at info (use one of ${logLevels.join(', ')})`);
  return logger;
}
