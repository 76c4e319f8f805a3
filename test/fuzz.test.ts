import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { createApp } from '../api/app.js';
import { ensureAdminToken } from '../api/auth.js';
import { loadConfig } from '../domain/config.js';
import { freePort } from '../scripts/tools.js';
import { Store } from '../store/index.js';
import { collectAftermath, formatAftermath } from '../fuzz/aftermath.js';
import { boundedRun, formatSummary, fuzzStackEnv, runFuzz, schemathesisBinary } from '../fuzz/schemathesis.js';
import { seedStack } from '../fuzz/seed.js';
import { startTestStack, type TestStack } from './helpers/stack.js';

/**
 * What the fuzzer found, pinned: each answers the same whatever it generates
 * next time. Through `app.request()` with a real store, Temporal unreachable.
 */
describe('what the fuzzer found', () => {
  let dir: string;
  let store: Store;
  let connection: Connection;
  let app: ReturnType<typeof createApp>;
  const token = 'kumo_fuzz_test_token_0123456789';
  const auth = { authorization: `Bearer ${token}` };
  const send = (path: string, init: { method?: string; body?: string; headers?: Record<string, string> } = {}) =>
    app.request(path, { method: init.method ?? 'GET', headers: { ...auth, ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}), ...init.headers }, ...(init.body !== undefined ? { body: init.body } : {}) });
  const problem = async (response: Response) => {
    assert.equal(response.headers.get('content-type'), 'application/problem+json');
    return (await response.json()) as { status: number; errors?: Array<{ field: string; in: string; message: string }> };
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kumo-fuzz-api-'));
    store = await Store.open(`sqlite:${join(dir, 'kumo.db')}`);
    const address = `127.0.0.1:${await freePort()}`;
    connection = Connection.lazy({ address });
    const config = loadConfig({ TEMPORAL_ADDRESS: address });
    await ensureAdminToken(store, { ...config, KUMO_ADMIN_TOKEN: token });
    app = createApp({ store, temporal: new Client({ connection }), config });
  });
  after(async () => {
    await connection?.close().catch(() => undefined);
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('every /v1 operation documents 401 and 403, every write 413 and 415; the public ones need no token', async () => {
    const doc = (await (await app.request('/openapi.json')).json()) as { paths: Record<string, Record<string, { responses: Record<string, unknown>; security?: unknown[] }>> };
    let checked = 0;
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(methods)) {
        const codes = Object.keys(operation.responses);
        if (path.startsWith('/v1/')) {
          checked++;
          for (const code of ['401', '403']) assert.ok(codes.includes(code), `${method.toUpperCase()} ${path} documents ${code}`);
          if (['post', 'put', 'patch'].includes(method)) for (const code of ['400', '413', '415']) assert.ok(codes.includes(code), `${method.toUpperCase()} ${path} documents ${code}`);
        } else {
          assert.deepEqual(operation.security, [], `${method.toUpperCase()} ${path} is public`);
        }
      }
    }
    assert.ok(checked > 30);
  });

  test('NUL in a path or query parameter is a 400, not a store error (PostgreSQL refuses NUL in text)', async () => {
    for (const path of ['/v1/clusters/a%00b', '/v1/operations/op-%00', '/v1/functions/f%00', '/v1/clusters/a/addons/l%00', '/v1/operations?kind=a%00b', '/v1/audit?actor=a%00']) {
      const response = await send(path);
      assert.equal(response.status, 400, path);
      const body = await problem(response);
      assert.match(body.errors?.[0]?.message ?? '', /NUL/, path);
    }
  });

  test('NUL anywhere in a JSON body is a 400 naming the field, before anything starts', async () => {
    const response = await send('/v1/clusters/prod-eu-1', { method: 'PATCH', body: JSON.stringify({ description: 'a\u0000b' }) });
    assert.equal(response.status, 400);
    assert.deepEqual((await problem(response)).errors, [{ field: 'description', in: 'body', message: 'must not contain NUL characters (U+0000)' }]);
    const key = await send('/v1/clusters/prod-eu-1', { method: 'PATCH', body: JSON.stringify({ labels: { 'a\u0000': 'b' } }) });
    assert.equal(key.status, 400);
    assert.equal((await problem(key)).errors?.[0]?.field, 'labels.a\u0000');
    assert.equal((await store.listOperations({ limit: 10 })).items.length, 0);
  });

  test('a required body that is missing is a 400, not an empty object', async () => {
    for (const [method, path] of [
      ['PUT', '/v1/clusters/prod-eu-1/addons/logging'],
      ['PATCH', '/v1/clusters/prod-eu-1'],
      ['POST', '/v1/clusters'],
    ] as const) {
      const response = await send(path, { method });
      assert.equal(response.status, 400, `${method} ${path}`);
      assert.deepEqual((await problem(response)).errors, [{ field: '(root)', in: 'body', message: 'a body is required' }]);
    }
  });

  test('the audit log takes an RFC 3339 time with an offset, as format date-time promises', async () => {
    const response = await send('/v1/audit?since=2026-11-30T01%3A00%3A00%2B01%3A00');
    assert.equal(response.status, 200);
  });
});

/**
 * Schemathesis against the whole stack (the `npm run fuzz -- --bounded` run):
 * every operation of /openapi.json with the spec's examples, boundary values
 * and random data, valid and invalid. No 5xx, every answer as documented
 * (status, media type, schema), and invalid input refused with a 4xx.
 */
const binary = schemathesisBinary();
const schemathesisTimeoutMs = 8 * 60_000;

describe('API fuzzing (Schemathesis)', { timeout: schemathesisTimeoutMs + 5 * 60_000 }, () => {
  if (!binary) {
    test('the bounded fuzz run', { skip: 'schemathesis is not installed: `bash scripts/setup.sh` installs it into .tools/fuzz-venv (or set SCHEMATHESIS_BIN)' }, () => undefined);
    return;
  }
  let stack: TestStack;
  let reportDir: string;

  before(async () => {
    reportDir = mkdtempSync(join(tmpdir(), 'kumo-fuzz-report-'));
    stack = await startTestStack({ env: fuzzStackEnv });
    await seedStack(stack.apiUrl, stack.adminToken);
  });
  after(async () => {
    await stack?.destroy();
    if (reportDir) rmSync(reportDir, { recursive: true, force: true });
  });

  test('every operation answers as documented, and refuses invalid input with a 4xx', async () => {
    const seed = process.env.KUMO_FUZZ_SEED ? Number(process.env.KUMO_FUZZ_SEED) : 20261130;
    const result = await runFuzz(binary, { ...boundedRun, apiUrl: stack.apiUrl, token: stack.adminToken, seed, reportDir, timeoutMs: schemathesisTimeoutMs });
    const summary = formatSummary(result);
    const output = result.passes.map((pass) => pass.result.output.slice(-6000)).join('\n');
    console.log(summary);
    assert.ok(!result.passes.some((pass) => pass.result.timedOut), `schemathesis ran past ${schemathesisTimeoutMs / 1000} s:\n${summary}`);
    assert.equal(result.exitCode, 0, `schemathesis found problems (seed ${seed}):\n${summary}\n${output}`);
    assert.ok(result.summary.operations.length > 30, `only ${result.summary.operations.length} operations were tested:\n${summary}`);
    assert.equal(result.summary.failures + result.summary.errors, 0, summary);

    // The answers were right; was what they started right too? No 500 was logged.
    const aftermath = await collectAftermath(stack.apiUrl, stack.adminToken, join(stack.dataDir, 'logs', 'api.log'));
    console.log(formatAftermath(aftermath));
    assert.deepEqual(aftermath.unhandled, [], formatAftermath(aftermath));
  });
});
