import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Context, MiddlewareHandler } from 'hono';
import { allows, requiredRole, type Role, type TokenRecord } from '../domain/auth.js';
import type { Config } from '../domain/config.js';
import type { Store } from '../store/index.js';
import { problemResponse } from './problem.js';

/** Who made a request, once its token was checked. */
export interface Principal {
  name: string;
  role: Role;
}

/** Tokens are stored as the SHA-256 of their secret only. */
export function hashToken(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** A new token secret: 32 random bytes, recognisable by its prefix (secret scanners know `kumo_`). */
export function newTokenSecret(): string {
  return `kumo_${randomBytes(32).toString('base64url')}`;
}

const principals = new WeakMap<Request, Principal>();

/** The principal of a request the auth middleware let through. */
export function principalOf(c: Context): Principal | undefined {
  return principals.get(c.req.raw);
}

/**
 * Bearer tokens with roles: 401 without a (live) token, 403 with too weak a
 * role, both as problem documents. Health, metrics and the API documentation
 * are public. A token's last use is recorded at most once a minute.
 */
export function authenticate(store: Store): MiddlewareHandler {
  const touched = new Map<string, number>();
  return async (c, next) => {
    const needed = requiredRole(c.req.method, c.req.path);
    if (!needed) return next();
    const header = c.req.header('authorization') ?? '';
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const challenge = { 'www-authenticate': 'Bearer realm="kumo"' };
    if (!match?.[1]) {
      const response = problemResponse(c, 401, 'unauthorized', 'send a token: Authorization: Bearer <token> (create one with `kumo tokens create`)');
      for (const [key, value] of Object.entries(challenge)) response.headers.set(key, value);
      return response;
    }
    const token = await store.tokenByHash(hashToken(match[1]));
    if (!token) {
      const response = problemResponse(c, 401, 'unauthorized', 'the token is not known or was revoked');
      for (const [key, value] of Object.entries(challenge)) response.headers.set(key, value);
      return response;
    }
    if (!allows(token.role, needed)) {
      return problemResponse(c, 403, 'forbidden', `${c.req.method} ${c.req.path} needs the ${needed} role; token "${token.name}" is ${token.role}`, { requiredRole: needed, role: token.role });
    }
    principals.set(c.req.raw, { name: token.name, role: token.role });
    const now = Date.now();
    if ((touched.get(token.name) ?? 0) < now - 60_000) {
      touched.set(token.name, now);
      await store.touchToken(token.name, new Date(now).toISOString());
    }
    return next();
  };
}

/**
 * Writes every authenticated mutating request to the audit log: who, what,
 * when, the answer's status and the operation it started, if any. A failed
 * audit write fails the request's answer with 503, so nothing happens unaudited
 * without anyone being told.
 */
export function audit(store: Store): MiddlewareHandler {
  return async (c, next) => {
    await next();
    const principal = principalOf(c);
    if (!principal || c.req.method === 'GET' || c.req.method === 'HEAD') return;
    await store.appendAudit({
      id: `au-${Date.now().toString(36)}${randomUUID().slice(0, 8)}`,
      at: new Date().toISOString(),
      actor: principal.name,
      role: principal.role,
      method: c.req.method,
      // The path as asked, which may hold anything: a NUL (refused by the route with
      // 400) would make PostgreSQL refuse the audit row, and the answer with it.
      path: c.req.path.replaceAll('\0', '%00'),
      status: c.res.status,
      operationId: await operationIdOf(c.res),
    });
  };
}

/** The operation an answer started: from its Location header or its body. */
export async function operationIdOf(response: Response): Promise<string | null> {
  const location = /\/v1\/operations\/([^/?#]+)/.exec(response.headers.get('location') ?? '');
  if (location?.[1]) return location[1];
  if (!(response.headers.get('content-type') ?? '').includes('json')) return null;
  try {
    const body = (await response.clone().json()) as { operation?: { id?: unknown } | null };
    return typeof body?.operation?.id === 'string' ? body.operation.id : null;
  } catch {
    return null;
  }
}

/**
 * The first start of an installation has no token, so nobody could make one:
 * then an `admin` token is created, its secret from KUMO_ADMIN_TOKEN when set,
 * else random and written (readable by the owner only) to `<data dir>/admin-token`
 * for `npm start` to show. The secret is never logged.
 */
export async function ensureAdminToken(store: Store, config: Config): Promise<{ created: boolean; file: string | null }> {
  if ((await store.countTokens()) > 0) return { created: false, file: null };
  const secret = config.KUMO_ADMIN_TOKEN ?? newTokenSecret();
  const token: TokenRecord = { name: 'admin', role: 'admin', createdAt: new Date().toISOString(), createdBy: null, lastUsedAt: null, revokedAt: null };
  if (!(await store.createToken(token, hashToken(secret)))) return { created: false, file: null };
  if (config.KUMO_ADMIN_TOKEN) return { created: true, file: null };
  mkdirSync(config.KUMO_DATA_DIR, { recursive: true });
  const file = join(config.KUMO_DATA_DIR, 'admin-token');
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  return { created: true, file };
}
