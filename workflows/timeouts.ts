import type { ActivityOptions } from '@temporalio/workflow';
import { nonRetryableFailureTypes } from '../domain/errors.js';

const nonRetryableErrorTypes = [...nonRetryableFailureTypes];

/**
 * Named timeout and retry presets. Every activity call uses one of these, so no
 * step ever runs with the SDK's defaults by accident.
 */
export const timeouts = {
  /** One call to Rancher's API: short, retried with backoff for about three minutes. */
  rancherCall: {
    startToCloseTimeout: '15s',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '20s', maximumAttempts: 12, nonRetryableErrorTypes },
  },
  /** A write to Kumo's own store: quick, retried patiently (a locked SQLite file clears). */
  store: {
    startToCloseTimeout: '10s',
    retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 30, nonRetryableErrorTypes },
  },
  /**
   * One Helm command or a call to a cluster's API: retried with backoff for a few minutes (a pending release clears).
   * The activity heartbeats while it runs, so a worker that dies mid-call is noticed within 30 s, not 4 minutes.
   */
  helmCall: {
    startToCloseTimeout: '4m',
    heartbeatTimeout: '30s',
    retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 10, nonRetryableErrorTypes },
  },
  /** A build step (pip, packing layers, pushing to the registry): long, heartbeating, retried a few times. */
  build: {
    startToCloseTimeout: '15m',
    heartbeatTimeout: '20s',
    retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5, nonRetryableErrorTypes },
  },
  /**
   * A long wait on Rancher that heartbeats every poll: a dead worker is noticed
   * within the heartbeat timeout and the wait resumes on another.
   */
  /**
   * One cluster's health check: a handful of bounded probes and store writes,
   * heartbeating between them (a dead worker is noticed within 20 s). Retried a
   * little; a cluster whose check keeps failing is reported as such and checked
   * again by the next sweep.
   */
  healthCheck: {
    startToCloseTimeout: '2m',
    heartbeatTimeout: '20s',
    retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 3, nonRetryableErrorTypes },
  },
  rancherWait: (waitSeconds: number): ActivityOptions => ({
    startToCloseTimeout: `${waitSeconds + 120}s`,
    heartbeatTimeout: '10s',
    retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 10, nonRetryableErrorTypes },
  }),
} satisfies Record<string, ActivityOptions | ((...args: never[]) => ActivityOptions)>;
