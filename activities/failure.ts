import { activityInfo } from '@temporalio/activity';
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

/** Wraps every function of an activity object so its errors go through {@link toFailure}. */
export function classified<T extends Record<string, (...args: never[]) => Promise<unknown>>>(activities: T): T {
  const wrapped: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(activities)) {
    wrapped[name] = async (...args: never[]) => {
      try {
        return await fn(...args);
      } catch (err) {
        throw toFailure(err);
      }
    };
  }
  return wrapped as T;
}

function safeAttempt(): number {
  try {
    return activityInfo().attempt;
  } catch {
    return 1;
  }
}
