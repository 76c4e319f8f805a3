// kumo tokens / kumo audit: bearer tokens with roles, and the audit log (admin).
import { exitCodes, seg } from './client.js';
import { integer, str, usage, type Group } from './command.js';
import { json, relativeTime, table } from './output.js';

interface TokenView {
  name: string;
  role: string;
  createdAt: string;
  createdBy: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

interface AuditView {
  id: string;
  at: string;
  actor: string;
  role: string;
  method: string;
  path: string;
  status: number;
  operationId: string | null;
}

const roles = ['viewer', 'operator', 'admin'];

export const tokensGroup: Group = {
  name: 'tokens',
  aliases: ['token'],
  summary: 'API tokens and their roles (admin)',
  commands: [
    {
      name: 'create',
      args: ['<name>'],
      summary: 'create a token; its secret is printed once and cannot be shown again',
      options: { role: { type: 'string', arg: 'viewer|operator|admin', help: 'what the token may do (default viewer)' } },
      examples: ['kumo tokens create ci-bot --role operator'],
      async run(ctx, [name], flags) {
        const role = str(flags, 'role') ?? 'viewer';
        if (!roles.includes(role)) throw usage(`--role must be one of ${roles.join(', ')}`);
        const { body } = await ctx.client.request<TokenView & { token: string }>('POST', '/v1/tokens', { body: { name, role } });
        if (ctx.output === 'json') ctx.print(json(body));
        else {
          ctx.print(body.token);
          ctx.note(`token "${body.name}" (${body.role}) created; keep the secret above, it is not stored and cannot be shown again`);
        }
        return exitCodes.ok;
      },
    },
    {
      name: 'ls',
      aliases: ['list'],
      summary: 'list tokens (never their secrets)',
      async run(ctx) {
        const body = await ctx.client.get<{ items: TokenView[] }>('/v1/tokens');
        if (ctx.output === 'json') ctx.print(json(body));
        else {
          const now = Date.now();
          ctx.print(
            table(
              ['NAME', 'ROLE', 'CREATED', 'BY', 'LAST USED', 'REVOKED'],
              body.items.map((t) => [t.name, t.role, relativeTime(t.createdAt, now), t.createdBy ?? '-', t.lastUsedAt ? relativeTime(t.lastUsedAt, now) : 'never', t.revokedAt ? relativeTime(t.revokedAt, now) : '-']),
            ),
          );
        }
        return exitCodes.ok;
      },
    },
    {
      name: 'revoke',
      aliases: ['rm', 'delete'],
      args: ['<name>'],
      summary: 'revoke a token (the last admin token cannot be revoked)',
      async run(ctx, [name]) {
        await ctx.client.request('DELETE', `/v1/tokens/${seg(name ?? '')}`);
        ctx.note(`token "${name}" revoked`);
        return exitCodes.ok;
      },
    },
  ],
};

export const auditGroup: Group = {
  name: 'audit',
  summary: 'the audit log: who changed what, when',
  commands: [
    {
      name: 'ls',
      aliases: ['list'],
      summary: 'audit entries, newest first',
      options: {
        actor: { type: 'string', arg: 'NAME', help: 'only this token' },
        since: { type: 'string', arg: '24h|7d|30m', help: 'only this recent' },
        limit: { type: 'string', arg: 'N', help: 'at most N entries (default 100)' },
      },
      async run(ctx, _args, flags) {
        const query = new URLSearchParams();
        const actor = str(flags, 'actor');
        if (actor) query.set('actor', actor);
        const since = str(flags, 'since');
        if (since) {
          const match = /^(\d+)([smhd])$/.exec(since);
          if (!match) throw usage('--since takes a duration such as 30m, 24h or 7d');
          const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as 's' | 'm' | 'h' | 'd'];
          query.set('since', new Date(Date.now() - Number(match[1]) * unit).toISOString());
        }
        query.set('limit', String(integer(str(flags, 'limit'), '--limit') ?? 100));
        const body = await ctx.client.get<{ items: AuditView[] }>(`/v1/audit?${query.toString()}`);
        if (ctx.output === 'json') ctx.print(json(body));
        else if (!body.items.length) ctx.note('No audit entries.');
        else {
          const now = Date.now();
          ctx.print(table(['WHEN', 'WHO', 'ROLE', 'REQUEST', 'STATUS', 'OPERATION'], body.items.map((e) => [relativeTime(e.at, now), e.actor, e.role, `${e.method} ${e.path}`, String(e.status), e.operationId ?? '-'])));
        }
        return exitCodes.ok;
      },
    },
  ],
};

