import { OpenAPIHono } from '@hono/zod-openapi';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { ApiDeps } from './deps.js';
import { renderDocs } from './docs.js';
import { fieldErrors, Problem, problemResponse, type FieldError } from './problem.js';
import { audit, authenticate } from './auth.js';
import { apiLog, apiMetrics } from './metrics.js';
import { accessRoutes } from './routes/access.js';
import { addonRoutes } from './routes/addons.js';
import { eventRoutes } from './routes/events.js';
import { functionRoutes } from './routes/functions.js';
import { clusterOperationRoutes, clusterRoutes } from './routes/clusters.js';
import { fleetHealthRoutes, healthRoutes } from './routes/health.js';
import { operationRoutes } from './routes/operations.js';

const targets: Record<string, FieldError['in']> = { json: 'body', query: 'query', param: 'path', header: 'header' };

/** The largest request body the API reads; anything bigger is refused with 413. */
const maxBodyBytes = 1024 * 1024;

/**
 * Kumo's HTTP API: thin handlers that validate, then call the store or Temporal.
 * Every error is an RFC 9457 problem document; bad input is a 400 naming the fields.
 * @example const res = await createApp(deps).request('/v1/clusters');
 */
export function createApp(deps: ApiDeps) {
  const app = new OpenAPIHono({
    defaultHook: (result, c) => {
      if (!result.success) {
        const where = targets[result.target] ?? 'body';
        const errors = fieldErrors(result.error, where);
        const summary = errors.map((e) => `${e.field}: ${e.message}`).join('; ');
        return problemResponse(c, 400, 'invalid-request', `the request ${where} is invalid: ${summary}`, { errors });
      }
      return undefined;
    },
  });

  const metrics = apiMetrics(deps);
  app.use('*', metrics.middleware);
  app.get('/metrics', metrics.handler);

  // Also bounds bodies sent without a Content-Length (chunked), as they are read.
  app.use('/v1/*', bodyLimit({ maxSize: maxBodyBytes, onError: (c) => problemResponse(c, 413, 'too-large', `the body may be at most ${maxBodyBytes} bytes`) }));
  app.use('/v1/*', async (c, next) => {
    if (c.req.method === 'POST' || c.req.method === 'PUT' || c.req.method === 'PATCH') {
      const length = Number(c.req.header('content-length') ?? '0');
      if (length > maxBodyBytes) return problemResponse(c, 413, 'too-large', `the body may be at most ${maxBodyBytes} bytes`);
      const type = c.req.header('content-type') ?? '';
      const hasBody = length > 0 || c.req.header('transfer-encoding') !== undefined;
      // Binary-mode CloudEvents carry their data in any content type (api/routes/events.ts checks them).
      const binaryEvent = c.req.path === '/v1/events' && c.req.header('ce-specversion') !== undefined;
      if (hasBody && !binaryEvent && !/^application\/(.+\+)?json\b/i.test(type)) {
        return problemResponse(c, 415, 'unsupported-media-type', 'send the body as JSON with Content-Type: application/json', {
          errors: [{ field: 'content-type', in: 'header', message: `expected application/json, got "${type || 'nothing'}"` }],
        });
      }
    }
    await next();
  });
  app.use('*', authenticate(deps.store));
  app.use('/v1/*', audit(deps.store));

  app.route('/', healthRoutes(deps));
  app.route('/', fleetHealthRoutes(deps));
  app.route('/', accessRoutes(deps));
  app.route('/', clusterRoutes(deps));
  app.route('/', clusterOperationRoutes(deps));
  app.route('/', addonRoutes(deps));
  app.route('/', functionRoutes(deps));
  app.route('/', eventRoutes(deps));
  app.route('/', operationRoutes(deps));

  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: {
      title: 'Kumo API',
      version: '0.1.0',
      description: 'Control plane for managed Kubernetes and the Function Service. Long operations run as Temporal workflows; each answer that starts one carries its operation.',
    },
    tags: [
      { name: 'clusters', description: 'Managed Kubernetes clusters' },
      { name: 'snapshots', description: 'etcd snapshots, their schedule, and restore' },
      { name: 'operations', description: 'Long-running operations (Temporal workflows)' },
      { name: 'health', description: 'Liveness and readiness' },
      { name: 'add-ons', description: 'The add-on catalog, add-ons per cluster, fleet rollouts' },
      { name: 'functions', description: 'The Function Service' },
      { name: 'events', description: 'Events to functions: bindings (events, cron), pipelines, HTTP and Alertmanager events, deliveries' },
      { name: 'access', description: 'Tokens and the audit log' },
    ],
    security: [{ bearer: [] }],
  });
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    description: 'A Kumo token. Roles: viewer (reads), operator (also runs operations), admin (also manages tokens).',
  });
  app.get('/docs', (c) => c.html(renderDocs(app.getOpenAPI31Document({ openapi: '3.1.0', info: { title: 'Kumo API', version: '0.1.0' } }))));
  app.get('/', (c) => c.redirect('/docs'));

  app.notFound((c) => problemResponse(c, 404, 'not-found', `no route for ${c.req.method} ${c.req.path}`));
  app.onError((err, c) => {
    if (err instanceof Problem) return problemResponse(c, err.status, err.kind, err.detail, err.extensions);
    if (err instanceof HTTPException) {
      // Hono's own refusals, e.g. a body that is not JSON.
      const status = err.status as ContentfulStatusCode;
      const detail = err.message || 'the request could not be read';
      const errors = status === 400 ? [{ field: '(root)', in: 'body' as const, message: detail }] : undefined;
      return problemResponse(c, status, status === 400 ? 'invalid-request' : 'http-error', detail, errors ? { errors } : {});
    }
    apiLog().error({ path: c.req.path, err }, 'unhandled API error');
    return problemResponse(c, 500, 'internal', 'an unexpected error occurred; it has been logged');
  });

  return app;
}
