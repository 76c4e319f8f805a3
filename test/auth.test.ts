import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { createApp } from '../api/app.js';
import { ensureAdminToken } from '../api/auth.js';
import { allows, requiredRole } from '../domain/auth.js';
import { loadConfig } from '../domain/config.js';
import { freePort } from '../scripts/tools.js';
import { Store } from '../store/index.js';

describe('roles', () => {
  test('reads need viewer, changes operator, tokens admin; health, metrics and docs are public', () => {
    assert.equal(requiredRole('GET', '/v1/clusters'), 'viewer');
    assert.equal(requiredRole('POST', '/v1/clusters'), 'operator');
    assert.equal(requiredRole('DELETE', '/v1/functions/x'), 'operator');
    assert.equal(requiredRole('GET', '/v1/tokens'), 'admin');
    assert.equal(requiredRole('POST', '/v1/tokens/x'), 'admin');
    for (const path of ['/healthz', '/readyz', '/openapi.json', '/docs', '/metrics']) assert.equal(requiredRole('GET', path), null);
    assert.ok(allows('admin', 'operator') && allows('operator', 'viewer') && !allows('viewer', 'operator') && !allows('operator', 'admin'));
  });
});

/** Tokens, roles and the audit log through `app.request()` with a real store (Temporal is not needed for these). */
describe('tokens and the audit log', () => {
  let dir: string;
  let store: Store;
  let connection: Connection;
  let app: ReturnType<typeof createApp>;
  let adminSecret: string;

  const call = (path: string, token: string | null, init: { method?: string; body?: unknown } = {}) =>
    app.request(path, {
      method: init.method ?? 'GET',
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kumo-auth-'));
    store = await Store.open(`sqlite:${join(dir, 'kumo.db')}`);
    const address = `127.0.0.1:${await freePort()}`;
    connection = Connection.lazy({ address });
    const config = loadConfig({ TEMPORAL_ADDRESS: address, KUMO_DATA_DIR: dir });
    const first = await ensureAdminToken(store, config);
    assert.ok(first.created && first.file, 'the first start makes an admin token and writes it to a file');
    assert.equal(statSync(first.file).mode & 0o777, 0o600, 'readable by its owner only');
    adminSecret = readFileSync(first.file, 'utf8').trim();
    assert.equal((await ensureAdminToken(store, config)).created, false, 'only the first start');
    app = createApp({ store, temporal: new Client({ connection }), config });
  });
  after(async () => {
    await connection?.close().catch(() => undefined);
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('no token or an unknown one: 401 with a challenge; public endpoints need none', async () => {
    const none = await call('/v1/clusters', null);
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('content-type'), 'application/problem+json');
    assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
    assert.equal((await call('/v1/clusters', 'kumo_not_a_token')).status, 401);
    assert.equal((await app.request('/v1/clusters', { headers: { authorization: 'Basic abc' } })).status, 401);
    assert.equal((await call('/healthz', null)).status, 200);
    assert.equal((await call('/openapi.json', null)).status, 200);
  });

  test('an admin creates tokens whose secret is shown once and stored hashed; roles are enforced with 403', async () => {
    const created = await call('/v1/tokens', adminSecret, { method: 'POST', body: { name: 'vera', role: 'viewer' } });
    assert.equal(created.status, 201);
    const viewer = ((await created.json()) as { token: string }).token;
    assert.match(viewer, /^kumo_/);
    const operatorToken = ((await (await call('/v1/tokens', adminSecret, { method: 'POST', body: { name: 'otto', role: 'operator' } })).json()) as { token: string }).token;
    assert.equal((await call('/v1/tokens', adminSecret, { method: 'POST', body: { name: 'vera', role: 'admin' } })).status, 409);
    assert.equal((await call('/v1/tokens', adminSecret, { method: 'POST', body: { name: 'Bad Name', role: 'superuser' } })).status, 400);

    const listed = await (await call('/v1/tokens', adminSecret)).text();
    assert.ok(!listed.includes(viewer) && !listed.includes(adminSecret), 'no secret is ever listed');
    const raw = readFileSync(join(dir, 'kumo.db')).toString('latin1');
    assert.ok(!raw.includes(viewer) && !raw.includes(adminSecret), 'secrets are not stored, only their hashes');

    assert.equal((await call('/v1/clusters', viewer)).status, 200);
    const refused = await call('/v1/clusters', viewer, { method: 'POST', body: { name: 'x' } });
    assert.equal(refused.status, 403);
    const problem = (await refused.json()) as { requiredRole: string; role: string; detail: string };
    assert.equal(problem.requiredRole, 'operator');
    assert.match(problem.detail, /vera/);
    assert.equal((await call('/v1/tokens', operatorToken)).status, 403);
    assert.equal((await call('/v1/clusters', operatorToken, { method: 'POST', body: { name: 'x' } })).status, 400, 'an operator gets through to validation');

    assert.equal((await call('/v1/tokens/vera', adminSecret, { method: 'DELETE' })).status, 204);
    assert.equal((await call('/v1/clusters', viewer)).status, 401, 'a revoked token no longer works');
    assert.equal((await call('/v1/tokens/vera', adminSecret, { method: 'DELETE' })).status, 404);
    assert.equal((await call('/v1/tokens/admin', adminSecret, { method: 'DELETE' })).status, 409, 'the last admin token stays');
  });

  test('every authenticated mutating request is in the audit log, with who and the outcome; reads are not', async () => {
    const operatorToken = ((await (await call('/v1/tokens', adminSecret, { method: 'POST', body: { name: 'ada', role: 'operator' } })).json()) as { token: string }).token;
    await call('/v1/clusters', operatorToken, { method: 'POST', body: { name: 'x' } });
    await call('/v1/clusters', operatorToken);
    const entries = ((await (await call('/v1/audit?actor=ada', adminSecret)).json()) as { items: Array<{ actor: string; role: string; method: string; path: string; status: number }> }).items;
    assert.deepEqual(entries.map((e) => [e.actor, e.role, e.method, e.path, e.status]), [['ada', 'operator', 'POST', '/v1/clusters', 400]]);
    const all = ((await (await call('/v1/audit', adminSecret)).json()) as { items: Array<{ actor: string; path: string }> }).items;
    assert.ok(all.some((e) => e.actor === 'admin' && e.path === '/v1/tokens'), 'token creation is audited');
    assert.equal((await call('/v1/audit?since=yesterday', adminSecret)).status, 400);
  });
});
