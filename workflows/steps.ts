import { ActivityFailure, ApplicationFailure, isCancellation, TimeoutFailure, uuid4 } from '@temporalio/workflow';
import { isFailureType } from '../domain/errors.js';
import type { OperationFailure, Progress, Resume, StepRecord } from '../domain/operation.js';

/**
 * Tracks an operation's steps inside a workflow: what runs now, what finished and
 * when. Workflow time is deterministic, so the timestamps replay identically.
 */
export class Steps {
  private readonly steps: StepRecord[];
  private current: string | null = null;

  /** With `resume`, the steps a failed operation completed are not run again: their recorded results are returned. */
  constructor(
    names: readonly string[],
    private readonly resume?: Resume,
  ) {
    this.steps = names.map((name) => ({ name, status: 'pending' }));
  }

  /** Runs one named step, marking it running, then succeeded (keeping its result) or failed. */
  async run<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const step = this.find(name);
    if (this.resume && Object.hasOwn(this.resume.results, name)) {
      const result = this.resume.results[name];
      step.status = 'skipped';
      step.detail = `reused from ${this.resume.from}`;
      step.reusedFrom = this.resume.from;
      step.result = result;
      return (result === null ? undefined : result) as T;
    }
    step.status = 'running';
    step.startedAt = new Date().toISOString();
    this.current = name;
    try {
      const result = await fn();
      step.status = 'succeeded';
      step.result = result === undefined ? null : result;
      return result;
    } catch (err) {
      step.status = isCancellation(err) ? 'cancelled' : 'failed';
      throw err;
    } finally {
      step.finishedAt = new Date().toISOString();
    }
  }

  /** Marks a step as not needed in this run (e.g. no drain for an unreachable node). */
  skip(name: string, detail?: string): void {
    const step = this.find(name);
    step.status = 'skipped';
    if (detail) step.detail = detail;
  }

  /** The step that was running last (the failed one, after a failure). */
  get currentStep(): string | null {
    return this.current;
  }

  snapshot(): Progress {
    return { step: this.current, steps: this.steps.map((step) => ({ ...step })) };
  }

  private find(name: string): StepRecord {
    const step = this.steps.find((candidate) => candidate.name === name);
    if (!step) throw new Error(`unknown step ${name}`);
    return step;
  }
}

/**
 * Reads a failure the way operators need it: the step, Kumo's failure type, the
 * message of the root cause and the attempts the activity made.
 */
export function describeFailure(step: string | null, err: unknown): OperationFailure {
  const where = step ?? 'start';
  if (isCancellation(err)) return { step: where, type: 'Cancelled', message: 'cancelled by request', attempts: 1 };
  const cause = err instanceof ActivityFailure && err.cause ? err.cause : err;
  if (cause instanceof ApplicationFailure) {
    const detail = cause.details?.[0] as { attempt?: number } | undefined;
    return {
      step: where,
      type: isFailureType(cause.type) ? cause.type : 'Internal',
      message: cause.message,
      attempts: typeof detail?.attempt === 'number' ? detail.attempt : 1,
    };
  }
  if (cause instanceof TimeoutFailure) {
    return { step: where, type: 'Timeout', message: `activity timed out (${cause.timeoutType})`, attempts: 1 };
  }
  return { step: where, type: 'Internal', message: cause instanceof Error ? cause.message : String(cause), attempts: 1 };
}

/** A new operation id for an operation a workflow starts itself (deterministic: the SDK's seeded uuid4). */
export function newOperationId(): string {
  return `op-${uuid4().replace(/-/g, '').slice(0, 18)}`;
}
