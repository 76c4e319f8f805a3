import { activityInfo, heartbeat } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { ProviderError } from '../domain/errors.js';

/**
 * Turns whatever an activity threw into a Temporal failure whose `type` is one of
 * Kumo's failure types, non-retryable when no retry can help, with the attempt
 * number in its details so the operation can report how many tries it took.
 */
export function toFailure(err: unknown): Error {
  const attempt = safeAttempt();
  // Cancellation must reach the SDK as it is, or the activity would be retried.
  if (err instanceof ApplicationFailure || err instanceof CancelledFailure) return err;
  if (err instanceof ProviderError) {
    return ApplicationFailure.create({
      type: err.type,
      message: err.message,
      nonRetryable: !err.retryable,
      details: [{ attempt }],
    });
  }
  const message = err instanceof Error ? err.message : String(err);
  return ApplicationFailure.create({ type: 'Internal', message, nonRetryable: false, details: [{ attempt }] });
}

/**
 * Wraps every function of an activity object so its errors go through
 * {@link toFailure}. With `heartbeatEveryMs`, each also heartbeats (without
 * details) that often while it runs: a call to Helm or a cluster's API that
 * dies with its worker is then retried after the heartbeat timeout, not after
 * its whole start-to-close timeout. Only for activities that keep no progress
 * in their heartbeat details.
 */
export function classified<T extends Record<string, (...args: never[]) => Promise<unknown>>>(activities: T, options: { heartbeatEveryMs?: number } = {}): T {
  const wrapped: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(activities)) {
    wrapped[name] = async (...args: never[]) => {
      const beat = options.heartbeatEveryMs ? setInterval(safeHeartbeat, options.heartbeatEveryMs) : null;
      try {
        return await fn(...args);
      } catch (err) {
        throw toFailure(err);
      } finally {
        if (beat) clearInterval(beat);
      }
    };
  }
  return wrapped as T;
}

function safeHeartbeat(): void {
  try {
    heartbeat();
  } catch {
    // Not in an activity (a unit test calling the function directly).
  }
}

function safeAttempt(): number {
  try {
    return activityInfo().attempt;
  } catch {
    return 1;
  }
}
