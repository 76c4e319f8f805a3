/**
 * The failure types Kumo reports. A provider classifies an error once, where it
 * happens; activities turn it into an `ApplicationFailure` with one of these
 * types; the API shows it to operators unchanged.
 */
export const failureTypes = [
  /** The request is wrong and retrying cannot help (Rancher said 400/422). */
  'InvalidSpec',
  /** A quota or limit of the target system refused the request. */
  'QuotaExceeded',
  /** Something Kumo expected to exist does not. */
  'NotFound',
  /** Kumo's credentials were refused (401/403 without a quota reason). */
  'Unauthorized',
  /** An object of that name exists and does not belong to this operation. */
  'AlreadyExists',
  /** A transient fault (timeouts, 5xx, 429, connection errors); retried. */
  'Transient',
  /** A wait ran past its deadline (e.g. nodes never became ready). */
  'Timeout',
  /** An operation finished but its result is not what it should be (e.g. a restore brought back other state). */
  'VerificationFailed',
  /** The operation was cancelled by a user. */
  'Cancelled',
  /** Anything unclassified: a bug to look at. */
  'Internal',
] as const;

export type FailureType = (typeof failureTypes)[number];

/** Failure types that no retry can fix: activities fail at once with these. */
export const nonRetryableFailureTypes: readonly FailureType[] = [
  'InvalidSpec',
  'QuotaExceeded',
  'NotFound',
  'Unauthorized',
  'AlreadyExists',
  'Timeout',
  'VerificationFailed',
  'Cancelled',
];

export function isFailureType(value: unknown): value is FailureType {
  return typeof value === 'string' && (failureTypes as readonly string[]).includes(value);
}

/**
 * An error from an external system, already classified. Providers throw it;
 * activities map it to a Temporal failure of the same type.
 */
export class ProviderError extends Error {
  override readonly name = 'ProviderError';
  constructor(
    readonly type: FailureType,
    message: string,
    readonly details: { status?: number; code?: string; field?: string } = {},
  ) {
    super(message);
  }

  get retryable(): boolean {
    return !nonRetryableFailureTypes.includes(this.type);
  }
}
