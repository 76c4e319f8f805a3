import { OpenAPIHono, z } from '@hono/zod-openapi';
import type { ApiDeps } from '../deps.js';
import { apiRoute } from '../schemas.js';

const CheckSchema = z.object({ status: z.enum(['ok', 'failing']), checks: z.record(z.string(), z.string()) });

const healthz = apiRoute({
  method: 'get',
  path: '/healthz',
  tags: ['health'],
  summary: 'The API process is alive',
  responses: { 200: { description: 'Alive', content: { 'application/json': { schema: z.object({ status: z.literal('ok') }) } } } },
});

const readyz = apiRoute({
  method: 'get',
  path: '/readyz',
  tags: ['health'],
  summary: 'Ready to serve: Temporal and the store both answer',
  responses: {
    200: { description: 'Ready', content: { 'application/json': { schema: CheckSchema } } },
    503: { description: 'Not ready; `checks` says what fails', content: { 'application/json': { schema: CheckSchema } } },
  },
});

export function healthRoutes(deps: ApiDeps) {
  const app = new OpenAPIHono();
  app.openapi(healthz, (c) => c.json({ status: 'ok' as const }, 200));
  app.openapi(readyz, async (c) => {
    const checks: Record<string, string> = {};
    const probe = async (name: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
        checks[name] = 'ok';
      } catch (err) {
        checks[name] = err instanceof Error ? err.message.split('\n')[0] ?? 'failed' : 'failed';
      }
    };
    await Promise.all([
      probe('store', () => deps.store.ping()),
      probe('temporal', () =>
        deps.temporal.withDeadline(Date.now() + 2000, () =>
          deps.temporal.workflowService.describeNamespace({ namespace: deps.config.TEMPORAL_NAMESPACE }),
        ),
      ),
    ]);
    const ok = Object.values(checks).every((value) => value === 'ok');
    return c.json({ status: ok ? ('ok' as const) : ('failing' as const), checks }, ok ? 200 : 503);
  });
  return app;
}
