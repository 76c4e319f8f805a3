/** What a token may do: each role includes the ones before it. */
export const roles = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof roles)[number];

/** Whether `held` is at least `needed`. */
export function allows(held: Role, needed: Role): boolean {
  return roles.indexOf(held) >= roles.indexOf(needed);
}

/**
 * The role a request needs: reads need `viewer`, anything that changes state
 * `operator`, and the tokens themselves `admin`. Null for the public endpoints
 * (health, metrics, the API's own documentation).
 */
export function requiredRole(method: string, path: string): Role | null {
  if (!path.startsWith('/v1/')) return null;
  if (path === '/v1/tokens' || path.startsWith('/v1/tokens/')) return 'admin';
  return method === 'GET' || method === 'HEAD' ? 'viewer' : 'operator';
}

/** A token as the API shows it: never its secret. */
export interface TokenRecord {
  name: string;
  role: Role;
  createdAt: string;
  createdBy: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

/** One line of the audit log: who did what, when, with what outcome. */
export interface AuditRecord {
  id: string;
  at: string;
  actor: string;
  role: Role;
  method: string;
  path: string;
  status: number;
  operationId: string | null;
}
