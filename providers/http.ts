import type { FailureType } from '../domain/errors.js';

/**
 * The failure type of an HTTP answer, for the APIs Kumo calls (Rancher's Norman
 * API and Kubernetes alike). `code` and `message` refine 403 and 422.
 */
export function classifyHttpStatus(status: number, code: string, message: string): FailureType {
  const text = message.toLowerCase();
  if (status === 401) return 'Unauthorized';
  if (status === 403) return text.includes('quota') || code === 'QuotaExceeded' ? 'QuotaExceeded' : 'Unauthorized';
  if (status === 404) return 'NotFound';
  if (status === 409) return 'Transient';
  if (status === 422 && code === 'NotUnique') return 'AlreadyExists';
  if (status === 400 || status === 422) return 'InvalidSpec';
  if (status === 408 || status === 429 || status >= 500) return 'Transient';
  return 'Internal';
}
