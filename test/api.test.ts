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

/**
 * The API through `app.request()`, with a real store and a Temporal client that
 * points at a port where nothing listens: what a user sees while Temporal is down.
 */
describe('the API while Temporal is unreachable', () => {
  let dir: string;
  let store: Store;
  let connection: Connection;
  let app: ReturnType<typeof createApp>;
  const token = 'kumo_api_test_token_0123456789';
  const auth = { authorization: `Bearer ${token}` };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kumo-api-'));
    store = await Store.open(`sqlite:${join(dir, 'kumo.db')}`);
    const address = `127.0.0.1:${await freePort()}`;
    connection = Connection.lazy({ address });
    const config = loadConfig({ TEMPORAL_ADDRESS: address, TEMPORAL_UI_URL: 'http://127.0.0.1:8233' });
    await ensureAdminToken(store, { ...config, KUMO_ADMIN_TOKEN: token });
    app = createApp({ store, temporal: new Client({ connection }), config });
  });
  after(async () => {
    await connection?.close().catch(() => undefined);
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const spec = {
    name: 'while-down',
    kubernetesVersion: 'v1.30.6-rancher1-1',
    nodePools: [{ name: 'all', roles: ['etcd', 'controlplane', 'worker'], quantity: 1 }],
  };

  test('healthz answers and readyz says Temporal is what fails', async () => {
    assert.equal((await app.request('/healthz')).status, 200);
    const ready = await app.request('/readyz');
    assert.equal(ready.status, 503);
    const body = (await ready.json()) as { checks: Record<string, string> };
    assert.equal(body.checks.store, 'ok');
    assert.notEqual(body.checks.temporal, 'ok');
  });

  test('a create answers 503 within seconds and leaves no cluster or operation behind', async () => {
    const started = Date.now();
    const response = await app.request('/v1/clusters', { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify(spec) });
    assert.equal(response.status, 503);
    assert.equal(response.headers.get('content-type'), 'application/problem+json');
    assert.ok(Date.now() - started < 15_000, 'bounded, not hanging');
    assert.equal(await store.getCluster('while-down'), null);
    assert.equal((await store.listOperations({ limit: 10 })).items.length, 0);
  });

  test('the OpenAPI document lists every endpoint and the docs page renders it', async () => {
    const doc = (await (await app.request('/openapi.json')).json()) as { openapi: string; paths: Record<string, Record<string, unknown>> };
    assert.equal(doc.openapi, '3.1.0');
    for (const [path, method] of [
      ['/v1/clusters', 'post'],
      ['/v1/clusters', 'get'],
      ['/v1/clusters/{id}', 'get'],
      ['/v1/operations', 'get'],
      ['/v1/operations/{id}', 'get'],
      ['/v1/operations/{id}/cancel', 'post'],
      ['/healthz', 'get'],
      ['/readyz', 'get'],
    ] as const) {
      assert.ok(doc.paths[path]?.[method], `${method.toUpperCase()} ${path} is documented`);
    }
    const docs = await app.request('/docs');
    assert.equal(docs.status, 200);
    const html = await docs.text();
    assert.match(html, /POST<\/span> <code>\/v1\/clusters<\/code>/);
    assert.doesNotMatch(html, /<script/);
  });

  test('an unknown field is named in the error, not just its parent', async () => {
    const response = await app.request('/v1/clusters', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ ...spec, nodepools: [] }),
    });
    assert.equal(response.status, 400);
    const body = (await response.json()) as { errors: Array<{ field: string; in: string }> };
    assert.deepEqual(body.errors, [{ field: 'nodepools', in: 'body', message: 'unknown field' }]);
  });
});
