import type { LogLevel, LogMetadata, Logger as TemporalLogger } from '@temporalio/worker';
import type { Logger } from '../domain/log.js';

const pinoLevels = { TRACE: 'trace', DEBUG: 'debug', INFO: 'info', WARN: 'warn', ERROR: 'error' } as const satisfies Record<LogLevel, string>;

/** Keys pino writes itself: a metadata field of the same name is renamed, not allowed to clobber them. */
const reservedKeys = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'service']);
/** Activity metadata left out: the task token completes the activity for whoever holds it, and is a long blob. */
const droppedKeys = new Set(['taskToken']);

/**
 * The Temporal SDK's `Logger` over pino: what the worker, its workflows
 * (`workflow.log`), its activities (`Context.current().log`) and, when forwarded,
 * the Rust core log becomes one JSON line each, with the SDK's metadata as
 * fields (sdkComponent, taskQueue, workflowId, workflowType, activityType, attempt, …).
 * @example Runtime.install({ logger: temporalLogger(createLogger({ service: 'worker' })) });
 */
export function temporalLogger(log: Logger): TemporalLogger {
  const write = (level: LogLevel, message: string, meta?: LogMetadata): void => {
    const method = pinoLevels[level] ?? 'info';
    if (!log.isLevelEnabled(method)) return;
    // Object.entries skips the SDK's symbol keys (its own timestamp).
    const fields: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(meta ?? {})) {
      if (!droppedKeys.has(key)) fields[reservedKeys.has(key) ? `temporal_${key}` : key] = value;
    }
    log[method](fields, message);
  };
  return {
    log: write,
    trace: (message, meta) => write('TRACE', message, meta),
    debug: (message, meta) => write('DEBUG', message, meta),
    info: (message, meta) => write('INFO', message, meta),
    warn: (message, meta) => write('WARN', message, meta),
    error: (message, meta) => write('ERROR', message, meta),
  };
}
