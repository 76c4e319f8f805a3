import { createHash } from 'node:crypto';
import { OpenAPIHono, z } from '@hono/zod-openapi';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { functionStates, functionWorkflowId, FunctionSpecSchema, maxSourceBytes, type FunctionRecord, type FunctionSpec } from '../../domain/function.js';
import { newOperation as newOperationRecord, searchAttributes, type OperationRecord } from '../../domain/operation.js';
import { filesOfTarball, TarballError } from '../../domain/tarball.js';
import { deleteFunctionSteps, deployFunctionSteps, type DeleteFunctionInput, type DeployFunctionInput } from '../../workflows/function.js';
import type { ApiDeps } from '../deps.js';
import { Problem } from '../problem.js';
import { apiRoute, OperationSchema, problem, problemResponses } from '../schemas.js';
import { newOperationId, startFinishingFirst } from './clusters.js';
import { storedView } from './operations.js';

const NameParam = z.object({ name: z.string().min(1).max(40).openapi({ param: { name: 'name', in: 'path' }, example: 'on-vm-created' }) });

const FunctionSchema = z
  .object({
    name: z.string(),
    runtime: z.string(),
    handler: z.string(),
    envNames: z.array(z.string()).openapi({ description: 'The environment variables set (their values are not shown: they may be secrets)' }),
    concurrency: z.number().int(),
    eventConcurrency: z.number().int(),
    timeoutSeconds: z.number().int(),
    minScale: z.number().int(),
    maxScale: z.number().int(),
    files: z.array(z.object({ path: z.string(), bytes: z.number().int() })),
    sourceHash: z.string(),
    state: z.enum(functionStates),
    image: z.string().nullable().openapi({ description: 'The image that runs, by digest' }),
    revision: z.string().nullable().openapi({ description: 'The Knative revision serving it' }),
    url: z.string().nullable(),
    message: z.string().nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
    links: z.object({ self: z.string(), invoke: z.string(), lastOperation: z.string().optional() }),
  })
  .openapi('Function');

const exampleSpec = {
  name: 'hello',
  runtime: 'python3.11',
  handler: 'handler.handle',
  source: {
    files: {
      'handler.py': 'import six\n\ndef handle(event, context):\n    return {"hello": (event or {}).get("name", "world"), "six": six.__version__}\n',
      'requirements.txt': 'six==1.16.0\n',
    },
  },
  concurrency: 1,
  timeoutSeconds: 30,
};

const temporalDown = problem('Temporal cannot be reached; nothing was started');

const accepted202 = { description: 'Deploy started', content: { 'application/json': { schema: z.object({ function: FunctionSchema, operation: OperationSchema }) } } };

const createRouteDef = apiRoute({
  method: 'post',
  path: '/v1/functions',
  tags: ['functions'],
  summary: 'Register a Python function: build its image and deploy it',
  description:
    'The handler contract is `def handle(event, context)` returning a JSON-serialisable value (see runtime/README.md). Starts a `function.deploy` operation: validate the source, build the dependency layer from requirements.txt (reused while it is unchanged), build and push the image to the registry, deploy it as a Knative Service revision and wait until it is Ready.',
  request: { body: { required: true, content: { 'application/json': { schema: FunctionSpecSchema, example: exampleSpec } } } },
  responses: { 202: accepted202, 409: problem('A function of that name exists, or there is no functions cluster'), ...problemResponses, 503: temporalDown },
});

const putRoute = apiRoute({
  method: 'put',
  path: '/v1/functions/{name}',
  tags: ['functions'],
  summary: 'Create or update a function (a new build and deploy)',
  request: { params: NameParam, body: { required: true, content: { 'application/json': { schema: FunctionSpecSchema, example: exampleSpec } } } },
  responses: { 202: accepted202, 409: problem('A deploy of this function is running, or there is no functions cluster'), ...problemResponses, 503: temporalDown },
});

const listRoute = apiRoute({
  method: 'get',
  path: '/v1/functions',
  tags: ['functions'],
  summary: 'Functions, by name',
  responses: { 200: { description: 'Functions', content: { 'application/json': { schema: z.object({ items: z.array(FunctionSchema) }) } } } },
});

const getRoute = apiRoute({
  method: 'get',
  path: '/v1/functions/{name}',
  tags: ['functions'],
  summary: 'A function: settings, state, the image and revision that run, its URL',
  request: { params: NameParam },
  responses: { 200: { description: 'The function', content: { 'application/json': { schema: FunctionSchema } } }, 404: problem('No such function') },
});

const deleteRouteDef = apiRoute({
  method: 'delete',
  path: '/v1/functions/{name}',
  tags: ['functions'],
  summary: 'Delete a function (its Knative Service; images stay in the registry)',
  request: { params: NameParam },
  responses: {
    202: { description: 'Delete started', content: { 'application/json': { schema: z.object({ operation: OperationSchema }) } } },
    404: problem('No such function'),
    409: problem('A deploy of this function is running'),
    503: temporalDown,
  },
});

/** The runtime's own error document (runtime/README.md), passed on as it answered. */
const InvocationErrorSchema = z
  .object({ error: z.object({ type: z.string(), message: z.string().optional() }).passthrough() })
  .openapi('InvocationError');

const invokeRoute = apiRoute({
  method: 'post',
  path: '/v1/functions/{name}/invoke',
  tags: ['functions'],
  summary: 'Invoke a function with an event and wait for its result',
  description:
    "The body is the event (JSON). The answer is the runtime's: `200 { result, invocationId, durationMs }`, or an error document `{ error: { type, … } }` with 500 (`HandlerError`: the handler raised; the traceback is in the function's logs), 504 (`Timeout`: cut off after timeoutSeconds) or 400 (`InvalidEvent`). CloudEvents binary-mode headers (`ce-*`) are passed on.",
  request: { params: NameParam, body: { required: false, content: { 'application/json': { schema: z.unknown(), example: { name: 'kumo' } } } } },
  responses: {
    200: { description: "The handler's result", content: { 'application/json': { schema: z.object({ result: z.unknown(), invocationId: z.string(), durationMs: z.number() }) } } },
    400: {
      description: 'The request is invalid (a problem document), or the runtime refused the event (`InvalidEvent`)',
      content: { ...problemResponses[400].content, 'application/json': { schema: InvocationErrorSchema } },
    },
    404: problem('No such function'),
    409: problem('The function has no Ready revision yet'),
    500: { description: 'The handler raised, or its result is not JSON (`HandlerError`, `ResultNotSerializable`, …)', content: { 'application/json': { schema: InvocationErrorSchema } } },
    502: problem('The function did not answer'),
    504: { description: 'The invocation ran longer than timeoutSeconds (`Timeout`)', content: { 'application/json': { schema: InvocationErrorSchema } } },
  },
  // The event goes to the function as sent: the runtime reads it (and answers InvalidEvent for what is not JSON).
}, { rawBody: true });

/** Functions: register, update, list, delete, invoke. */
export function functionRoutes(deps: ApiDeps) {
  const app = new OpenAPIHono();

  const deploy = async (spec: FunctionSpec, existing: FunctionRecord | null): Promise<{ record: FunctionRecord; operation: OperationRecord }> => {
    const files = sourceFiles(spec);
    const cluster = await deps.store.getCluster(deps.config.KUMO_FUNCTIONS_CLUSTER);
    if (!cluster?.rancherId || (cluster.state !== 'active' && cluster.state !== 'failed')) {
      throw new Problem(409, 'no-functions-cluster', `functions run on the cluster "${deps.config.KUMO_FUNCTIONS_CLUSTER}" (KUMO_FUNCTIONS_CLUSTER), which ${cluster ? `is ${cluster.state}` : 'does not exist'}; create it first with POST /v1/clusters`);
    }
    if (existing?.lastOperationId) {
      const last = await deps.store.getOperation(existing.lastOperationId);
      if (last?.status === 'running') throw new Problem(409, 'operation-running', `operation ${last.id} is running on function "${spec.name}"; one at a time`, { operation: `/v1/operations/${last.id}` });
    }
    const now = new Date().toISOString();
    const { source: _source, ...settings } = spec;
    const record: FunctionRecord = {
      name: spec.name,
      settings,
      files,
      sourceHash: hashFiles(files),
      state: 'deploying',
      image: existing?.image ?? null,
      revision: existing?.revision ?? null,
      url: existing?.url ?? null,
      message: null,
      lastOperationId: null,
      createdAt: existing?.createdAt ?? now,
      updatedAt: now,
    };
    const operation = newOperation('function.deploy', spec.name, deployFunctionSteps);
    if (!(await deps.store.saveFunction(record, operation, existing ? { lastOperationId: existing.lastOperationId } : null))) {
      throw new Problem(409, existing ? 'conflict' : 'already-exists', existing ? `function "${spec.name}" changed meanwhile; try again` : `a function named "${spec.name}" exists; PUT /v1/functions/${spec.name} updates it`);
    }
    const input: DeployFunctionInput = {
      operationId: operation.id,
      name: spec.name,
      rancherId: cluster.rancherId,
      namespace: deps.config.KUMO_FUNCTIONS_NAMESPACE,
      previousRevision: existing?.revision ?? null,
      readyTimeoutSeconds: deps.config.KUMO_FUNCTION_READY_TIMEOUT_S,
      pollSeconds: 1,
    };
    await start(deps, operation, 'deployFunction', input);
    return { record: { ...record, lastOperationId: operation.id }, operation };
  };

  app.openapi(createRouteDef, async (c) => {
    const spec = c.req.valid('json');
    const { record, operation } = await deploy(spec, null);
    c.header('Location', `/v1/operations/${operation.id}`);
    return c.json({ function: view(record), operation: storedView(deps, (await deps.store.getOperation(operation.id)) ?? operation) }, 202);
  });

  app.openapi(putRoute, async (c) => {
    const { name } = c.req.valid('param');
    const spec = c.req.valid('json');
    if (spec.name !== name) throw new Problem(400, 'invalid-request', `the body names "${spec.name}", the path "${name}"`, { errors: [{ field: 'name', in: 'body', message: 'must match the path' }] });
    const { record, operation } = await deploy(spec, await deps.store.getFunction(name));
    c.header('Location', `/v1/operations/${operation.id}`);
    return c.json({ function: view(record), operation: storedView(deps, (await deps.store.getOperation(operation.id)) ?? operation) }, 202);
  });

  app.openapi(listRoute, async (c) => c.json({ items: (await deps.store.listFunctions()).map(view) }, 200));

  app.openapi(getRoute, async (c) => c.json(view(await mustGet(deps, c.req.valid('param').name)), 200));

  app.openapi(deleteRouteDef, async (c) => {
    const { name } = c.req.valid('param');
    const record = await mustGet(deps, name);
    if (record.lastOperationId) {
      const last = await deps.store.getOperation(record.lastOperationId);
      if (last?.status === 'running') throw new Problem(409, 'operation-running', `operation ${last.id} is running on function "${name}"`, { operation: `/v1/operations/${last.id}` });
    }
    const cluster = await deps.store.getCluster(deps.config.KUMO_FUNCTIONS_CLUSTER);
    if (!cluster?.rancherId) throw new Problem(409, 'no-functions-cluster', `the functions cluster "${deps.config.KUMO_FUNCTIONS_CLUSTER}" does not exist`);
    const operation = newOperation('function.delete', name, deleteFunctionSteps);
    if (!(await deps.store.saveFunction({ ...record, state: 'deleting', updatedAt: new Date().toISOString() }, operation, { lastOperationId: record.lastOperationId }))) {
      throw new Problem(409, 'conflict', `function "${name}" changed meanwhile; try again`);
    }
    const input: DeleteFunctionInput = { operationId: operation.id, name, rancherId: cluster.rancherId, namespace: deps.config.KUMO_FUNCTIONS_NAMESPACE };
    await start(deps, operation, 'deleteFunction', input);
    c.header('Location', `/v1/operations/${operation.id}`);
    return c.json({ operation: storedView(deps, (await deps.store.getOperation(operation.id)) ?? operation) }, 202);
  });

  app.openapi(invokeRoute, async (c) => {
    const { name } = c.req.valid('param');
    const record = await mustGet(deps, name);
    if (!record.url) throw new Problem(409, 'not-ready', `function "${name}" has no Ready revision yet (${record.state}${record.message ? `: ${record.message}` : ''})`);
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    for (const [key, value] of Object.entries(c.req.header())) if (/^ce-|^x-request-id$/i.test(key)) headers[key] = value;
    let response: Response;
    try {
      response = await fetch(record.url, {
        method: 'POST',
        headers,
        body: await c.req.text(),
        signal: AbortSignal.timeout((record.settings.timeoutSeconds + 15) * 1000),
      });
    } catch (err) {
      throw new Problem(502, 'function-unreachable', `function "${name}" did not answer: ${err instanceof Error ? err.message : String(err)}`);
    }
    const text = await response.text();
    return new Response(text, { status: response.status, headers: { 'content-type': response.headers.get('content-type') ?? 'application/json' } }) as never;
  });

  return app;
}

function sourceFiles(spec: FunctionSpec): Record<string, string> {
  let files: Record<string, string>;
  if ('files' in spec.source) files = spec.source.files;
  else {
    try {
      files = filesOfTarball(spec.source.tarball, maxSourceBytes);
    } catch (err) {
      if (!(err instanceof TarballError)) throw err;
      throw new Problem(400, 'invalid-request', `source.tarball: ${err.message}`, { errors: [{ field: 'source.tarball', in: 'body', message: err.message }] });
    }
  }
  const bytes = Object.values(files).reduce((sum, text) => sum + Buffer.byteLength(text), 0);
  if (bytes > maxSourceBytes) {
    throw new Problem(400, 'invalid-request', `the source is ${bytes} bytes; at most ${maxSourceBytes}`, { errors: [{ field: 'source', in: 'body', message: `at most ${maxSourceBytes} bytes` }] });
  }
  return files;
}

function hashFiles(files: Record<string, string>): string {
  const hash = createHash('sha256');
  for (const path of Object.keys(files).sort()) hash.update(`${path}\0${files[path] ?? ''}\0`);
  return `sha256:${hash.digest('hex')}`;
}

export function newOperation(kind: OperationRecord['kind'], name: string, steps: readonly string[]): OperationRecord {
  return newOperationRecord({ id: newOperationId(), kind, target: `function/${name}`, steps, startedAt: new Date().toISOString(), workflowId: functionWorkflowId(name) });
}

/** Starts an operation's workflow; when Temporal refuses, the records written for it are marked failed. */
export async function start(deps: ApiDeps, operation: OperationRecord, workflowType: string, input: unknown): Promise<void> {
  try {
    // A deploy records its end just before its workflow closes: a new one may find it still closing, and waits for that.
    const handle = await startFinishingFirst(deps, operation.workflowId, () =>
      deps.temporal.workflow.start(workflowType, {
        taskQueue: deps.config.TEMPORAL_TASK_QUEUE,
        workflowId: operation.workflowId,
        args: [input],
        workflowIdConflictPolicy: 'FAIL',
        workflowIdReusePolicy: 'ALLOW_DUPLICATE',
        searchAttributes: {
          [searchAttributes.operationId]: [operation.id],
          [searchAttributes.kind]: [operation.kind],
          [searchAttributes.target]: [operation.target],
        },
      }),
    );
    await deps.store.setOperationRun(operation.id, handle.firstExecutionRunId);
    await deps.store.setOperationInput(operation.id, input, operation.retryOf ?? null);
  } catch (err) {
    const failure = { step: 'start', type: 'Transient' as const, message: `the workflow could not be started: ${err instanceof Error ? err.message : String(err)}`, attempts: 1 };
    await deps.store.finishOperation(operation.id, { status: 'failed', steps: operation.steps, step: null, failure, finishedAt: new Date().toISOString() });
    const name = operation.target.slice('function/'.length);
    await deps.store.updateFunction(name, { state: 'failed', message: failure.message });
    if (err instanceof WorkflowExecutionAlreadyStartedError) throw new Problem(409, 'operation-running', `another operation is running on function "${name}"`);
    throw new Problem(503, 'temporal-unavailable', failure.message);
  }
}

async function mustGet(deps: ApiDeps, name: string): Promise<FunctionRecord> {
  const record = await deps.store.getFunction(name);
  if (!record) throw new Problem(404, 'not-found', `no function named "${name}"`);
  return record;
}

function view(record: FunctionRecord): z.infer<typeof FunctionSchema> {
  return {
    name: record.name,
    runtime: record.settings.runtime,
    handler: record.settings.handler,
    envNames: Object.keys(record.settings.env).sort(),
    concurrency: record.settings.concurrency,
    eventConcurrency: record.settings.eventConcurrency ?? 0,
    timeoutSeconds: record.settings.timeoutSeconds,
    minScale: record.settings.minScale,
    maxScale: record.settings.maxScale,
    files: Object.entries(record.files)
      .map(([path, text]) => ({ path, bytes: Buffer.byteLength(text) }))
      .sort((a, b) => (a.path < b.path ? -1 : 1)),
    sourceHash: record.sourceHash,
    state: record.state,
    image: record.image,
    revision: record.revision,
    url: record.url,
    message: record.message,
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
    links: {
      self: `/v1/functions/${record.name}`,
      invoke: `/v1/functions/${record.name}/invoke`,
      ...(record.lastOperationId ? { lastOperation: `/v1/operations/${record.lastOperationId}` } : {}),
    },
  };
}
