import { OpenAPIHono, z } from '@hono/zod-openapi';
import { roles } from '../../domain/auth.js';
import { hashToken, newTokenSecret, principalOf } from '../auth.js';
import type { ApiDeps } from '../deps.js';
import { Problem } from '../problem.js';
import { apiRoute, problem, problemResponses } from '../schemas.js';

const TokenSchema = z
  .object({
    name: z.string(),
    role: z.enum(roles),
    createdAt: z.string(),
    createdBy: z.string().nullable(),
    lastUsedAt: z.string().nullable(),
    revokedAt: z.string().nullable(),
  })
  .openapi('Token');

const AuditSchema = z
  .object({
    id: z.string(),
    at: z.string(),
    actor: z.string().openapi({ description: 'The name of the token used' }),
    role: z.enum(roles),
    method: z.string(),
    path: z.string(),
    status: z.number().int(),
    operationId: z.string().nullable(),
  })
  .openapi('AuditEntry');

const createToken = apiRoute({
  method: 'post',
  path: '/v1/tokens',
  tags: ['access'],
  summary: 'Create a bearer token (admin); its secret is shown once, only its hash is kept',
  request: {
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z
            .object({
              name: z.string().min(1).max(63).regex(/^[a-z0-9]([-a-z0-9_.@]*[a-z0-9])?$/, 'lowercase letters, digits and - _ . @'),
              role: z.enum(roles),
            })
            .strict(),
          example: { name: 'alice', role: 'operator' },
        },
      },
    },
  },
  responses: {
    201: { description: 'The token, with its secret (shown this once)', content: { 'application/json': { schema: TokenSchema.extend({ token: z.string() }) } } },
    409: problem('A token of that name exists'),
    ...problemResponses,
  },
});

const listTokens = apiRoute({
  method: 'get',
  path: '/v1/tokens',
  tags: ['access'],
  summary: 'Tokens (admin): names, roles, last use; never secrets',
  responses: { 200: { description: 'Tokens', content: { 'application/json': { schema: z.object({ items: z.array(TokenSchema) }) } } } },
});

const revokeToken = apiRoute({
  method: 'delete',
  path: '/v1/tokens/{name}',
  tags: ['access'],
  summary: 'Revoke a token (admin)',
  request: { params: z.object({ name: z.string().min(1).max(63).openapi({ param: { name: 'name', in: 'path' } }) }) },
  responses: { 204: { description: 'Revoked' }, 404: problem('No live token of that name'), 409: problem('It is the last admin token') },
});

const listAudit = apiRoute({
  method: 'get',
  path: '/v1/audit',
  tags: ['access'],
  summary: 'The audit log: every authenticated mutating request, newest first',
  request: {
    query: z.object({
      actor: z.string().max(63).optional(),
      // RFC 3339 date-times, as the document's `format: date-time` says: a UTC offset is allowed.
      since: z.iso.datetime({ offset: true }).optional().openapi({ example: '2026-11-30T00:00:00Z' }),
      limit: z.coerce.number().int().min(1).max(1000).default(100),
    }),
  },
  responses: { 200: { description: 'Audit entries', content: { 'application/json': { schema: z.object({ items: z.array(AuditSchema) }) } } }, ...problemResponses },
});

/** Tokens and the audit log. */
export function accessRoutes(deps: ApiDeps) {
  const app = new OpenAPIHono();

  app.openapi(createToken, async (c) => {
    const { name, role } = c.req.valid('json');
    const secret = newTokenSecret();
    const record = { name, role, createdAt: new Date().toISOString(), createdBy: principalOf(c)?.name ?? null, lastUsedAt: null, revokedAt: null };
    if (!(await deps.store.createToken(record, hashToken(secret)))) throw new Problem(409, 'already-exists', `a token named "${name}" exists (revoked tokens keep their name)`);
    return c.json({ ...record, token: secret }, 201);
  });

  app.openapi(listTokens, async (c) => c.json({ items: await deps.store.listTokens() }, 200));

  app.openapi(revokeToken, async (c) => {
    const { name } = c.req.valid('param');
    const live = (await deps.store.listTokens()).filter((token) => token.revokedAt === null);
    const target = live.find((token) => token.name === name);
    if (!target) throw new Problem(404, 'not-found', `no live token named "${name}"`);
    if (target.role === 'admin' && live.filter((token) => token.role === 'admin').length === 1) {
      throw new Problem(409, 'last-admin', `"${name}" is the last admin token; create another admin token first`);
    }
    await deps.store.revokeToken(name, new Date().toISOString());
    return c.body(null, 204);
  });

  app.openapi(listAudit, async (c) => {
    const { actor, since, limit } = c.req.valid('query');
    const from = since === undefined ? null : new Date(since);
    if (from && Number.isNaN(from.getTime())) {
      throw new Problem(400, 'invalid-request', `since: "${since}" is not a time`, { errors: [{ field: 'since', in: 'query', message: 'not a time' }] });
    }
    return c.json({ items: await deps.store.listAudit({ ...(actor ? { actor } : {}), ...(from ? { since: from.toISOString() } : {}), limit }) }, 200);
  });

  return app;
}
