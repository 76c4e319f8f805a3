import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { Hono } from 'hono';
import { createApp } from '../api/app.js';
import { authenticate, ensureAdminToken } from '../api/auth.js';
import { apiMetrics, durationBuckets, metricsContentType } from '../api/metrics.js';
import { loadConfig } from '../domain/config.js';
import { createLogger } from '../domain/log.js';
import { newClusterOperation, type OperationKind } from '../domain/operation.js';
import { freePort } from '../scripts/tools.js';
import { Store } from '../store/index.js';
import { temporalLogger } from '../workers/logging.js';

// The app's own access log goes to stdout at KUMO_LOG_LEVEL; keep the test's output clean.
process.env.KUMO_LOG_LEVEL = 'silent';

// ---- a small, strict parser of the Prometheus text format 0.0.4 -------------------------------

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
interface Family {
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  help?: string;
  samples: Sample[];
}

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const labelName = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const floatText = /^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN)$/;

function parseValue(text: string, line: string): number {
  assert.match(text, floatText, `not a float in: ${line}`);
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  return Number(text);
}

/** `{a="x",b="y\"z"}` from `start` (at the `{`): the labels and the index after the `}`. */
function parseLabels(line: string, start: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  let i = start + 1;
  if (line[i] === '}') return { labels, end: i + 1 };
  for (;;) {
    const eq = line.indexOf('=', i);
    assert.ok(eq > i, `a label without a name or "=" in: ${line}`);
    const name = line.slice(i, eq);
    assert.match(name, labelName, `bad label name "${name}" in: ${line}`);
    assert.ok(!(name in labels), `label ${name} twice in: ${line}`);
    assert.equal(line[eq + 1], '"', `label value not quoted in: ${line}`);
    let value = '';
    for (i = eq + 2; ; i++) {
      const ch = line[i];
      assert.ok(ch !== undefined, `unterminated label value in: ${line}`);
      if (ch === '"') break;
      if (ch === '\\') {
        const next = line[++i];
        if (next === '\\') value += '\\';
        else if (next === '"') value += '"';
        else if (next === 'n') value += '\n';
        else assert.fail(`bad escape \\${next} in: ${line}`);
      } else value += ch;
    }
    labels[name] = value;
    i++;
    if (line[i] === '}') return { labels, end: i + 1 };
    assert.equal(line[i], ',', `expected "," or "}" after a label in: ${line}`);
    i++;
  }
}

/** The family a sample belongs to: its own name, or a histogram's (`_bucket`, `_sum`, `_count`). */
function familyOf(families: Map<string, Family>, name: string): Family | undefined {
  const own = families.get(name);
  if (own) return own;
  const suffix = /_(bucket|sum|count)$/.exec(name);
  if (!suffix) return undefined;
  const base = families.get(name.slice(0, -suffix[0].length));
  return base?.type === 'histogram' || (base?.type === 'summary' && suffix[1] !== 'bucket') ? base : undefined;
}

function parseExposition(text: string): Map<string, Family> {
  assert.ok(text.endsWith('\n'), 'the exposition ends with a line feed');
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const comment = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      assert.ok(comment, `a comment other than HELP or TYPE: ${line}`);
      const [, kind, name = '', rest = ''] = comment;
      assert.match(name, metricName, `bad metric name in: ${line}`);
      const family = families.get(name) ?? { type: 'untyped' as const, samples: [] };
      if (kind === 'TYPE') {
        assert.ok(['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest), `bad type in: ${line}`);
        assert.ok(!seen.has(`type:${name}`), `TYPE of ${name} twice`);
        assert.equal(family.samples.length, 0, `TYPE of ${name} after its samples`);
        seen.add(`type:${name}`);
        family.type = rest as Family['type'];
      } else {
        assert.ok(!seen.has(`help:${name}`), `HELP of ${name} twice`);
        assert.doesNotMatch(rest.replace(/\\[\\n]/g, ''), /\\/, `bad escape in HELP: ${line}`);
        seen.add(`help:${name}`);
        family.help = rest;
      }
      families.set(name, family);
      continue;
    }
    const name = /^[^{ ]+/.exec(line)?.[0] ?? '';
    assert.match(name, metricName, `bad sample name in: ${line}`);
    let rest = line.slice(name.length);
    let labels: Record<string, string> = {};
    if (rest.startsWith('{')) {
      const parsed = parseLabels(line, name.length);
      labels = parsed.labels;
      rest = line.slice(parsed.end);
    }
    const value = /^ (\S+)$/.exec(rest);
    assert.ok(value?.[1], `expected " <value>" in: ${line}`);
    const family = familyOf(families, name);
    assert.ok(family && seen.has(`type:${[...families].find(([, f]) => f === family)?.[0]}`), `sample of an undeclared TYPE: ${line}`);
    const series = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    assert.ok(!seen.has(series), `the same series twice: ${line}`);
    seen.add(series);
    family.samples.push({ name, labels, value: parseValue(value[1], line) });
  }
  // Histograms: per label set, cumulative buckets in ascending `le`, ending in +Inf equal to _count, and a _sum.
  for (const [name, family] of families) {
    if (family.type !== 'histogram') continue;
    const groups = new Map<string, { buckets: Array<[number, number]>; sum?: number; count?: number }>();
    for (const sample of family.samples) {
      const { le, ...others } = sample.labels;
      const key = JSON.stringify(Object.entries(others).sort());
      const group = groups.get(key) ?? { buckets: [] };
      if (sample.name === `${name}_bucket`) {
        assert.ok(le !== undefined, `${name}_bucket without le`);
        group.buckets.push([parseValue(le, `le="${le}"`), sample.value]);
      } else {
        assert.equal(le, undefined, `le on ${sample.name}`);
        if (sample.name === `${name}_sum`) group.sum = sample.value;
        else if (sample.name === `${name}_count`) group.count = sample.value;
        else assert.fail(`${sample.name} in histogram ${name}`);
      }
      groups.set(key, group);
    }
    for (const [key, group] of groups) {
      assert.ok(group.buckets.length > 0 && group.sum !== undefined && group.count !== undefined, `${name}${key}: buckets, _sum and _count`);
      for (let i = 1; i < group.buckets.length; i++) {
        assert.ok(group.buckets[i]![0] > group.buckets[i - 1]![0], `${name}${key}: le ascending`);
        assert.ok(group.buckets[i]![1] >= group.buckets[i - 1]![1], `${name}${key}: buckets cumulative`);
      }
      const last = group.buckets[group.buckets.length - 1]!;
      assert.equal(last[0], Infinity, `${name}${key}: the last bucket is le="+Inf"`);
      assert.equal(last[1], group.count, `${name}${key}: the +Inf bucket equals _count`);
    }
  }
  return families;
}

/** The value of one series, 0 when it is absent. */
function valueOf(families: Map<string, Family>, family: string, sample: string, labels: Record<string, string>): number {
  const match = families.get(family)?.samples.find((s) => s.name === sample && Object.keys(labels).length === Object.keys(s.labels).length && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return match?.value ?? 0;
}

describe('the Prometheus text parser of this test', () => {
  test('reads escapes and refuses what the format does not allow', () => {
    const ok = parseExposition('# HELP a_total A \\\\ help\\n.\n# TYPE a_total counter\na_total{x="q\\"uo\\\\te\\n"} 1.5e3\n\n# TYPE g gauge\ng -Inf\n');
    assert.equal(ok.get('a_total')?.samples[0]?.labels.x, 'q"uo\\te\n');
    assert.equal(ok.get('a_total')?.samples[0]?.value, 1500);
    for (const bad of [
      'a 1\n', // no TYPE
      '# TYPE a counter\na{x="1} 1\n', // unterminated
      '# TYPE a counter\na{x=1} 1\n', // unquoted
      '# TYPE a counter\na{x="\\t"} 1\n', // bad escape
      '# TYPE a counter\na{1x="a"} 1\n', // bad label name
      '# TYPE a counter\na one\n', // not a float
      '# TYPE a counter\na 1', // no final line feed
      '# a comment\n',
      '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', // not cumulative
      '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n', // no +Inf
      '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n', // +Inf != count
    ]) {
      assert.throws(() => parseExposition(bad), assert.AssertionError, JSON.stringify(bad));
    }
  });
});

// ---- the API's /metrics -----------------------------------------------------------------------

describe('GET /metrics', () => {
  let dir: string;
  let store: Store;
  let connection: Connection;
  let app: ReturnType<typeof createApp>;
  const token = 'kumo_metrics_test_token_0123456789';
  const auth = { authorization: `Bearer ${token}` };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kumo-metrics-'));
    store = await Store.open(`sqlite:${join(dir, 'kumo.db')}`);
    const address = `127.0.0.1:${await freePort()}`;
    connection = Connection.lazy({ address });
    const config = loadConfig({ TEMPORAL_ADDRESS: address, KUMO_DATA_DIR: dir });
    await ensureAdminToken(store, { ...config, KUMO_ADMIN_TOKEN: token });
    app = createApp({ store, temporal: new Client({ connection }), config });
  });
  after(async () => {
    await connection?.close().catch(() => undefined);
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const scrape = async () => {
    const response = await app.request('/metrics');
    assert.equal(response.status, 200, 'public: no token needed');
    assert.equal(response.headers.get('content-type'), metricsContentType);
    assert.equal(metricsContentType, 'text/plain; version=0.0.4; charset=utf-8');
    const text = await response.text();
    return { text, families: parseExposition(text) };
  };

  test('counts requests by method, route pattern and status, with a duration histogram', async () => {
    const before = await scrape();
    const rawId = 'raw-id-4f9c2e';
    const made: Array<[string, string, Record<string, string>, string, number]> = [
      ['GET', '/healthz', {}, '/healthz', 200],
      ['GET', '/healthz', {}, '/healthz', 200],
      ['GET', '/v1/clusters', auth, '/v1/clusters', 200],
      ['GET', `/v1/clusters/${rawId}`, auth, '/v1/clusters/:id', 404],
      ['GET', `/v1/no-such-thing/${rawId}`, auth, 'unmatched', 404],
      ['GET', '/v1/clusters', {}, '/v1/clusters', 401],
      ['GET', `/v1/operations/${rawId}`, {}, '/v1/operations/:id', 401],
    ];
    for (const [method, path, headers, , status] of made) {
      assert.equal((await app.request(path, { method, headers })).status, status, `${method} ${path}`);
    }
    const after = await scrape();

    // What moved: exactly the requests made, plus the first scrape itself.
    const expected = new Map<string, number>([[JSON.stringify(['GET', '/metrics', '200']), 1]]);
    for (const [method, , , route, status] of made) {
      const key = JSON.stringify([method, route, String(status)]);
      expected.set(key, (expected.get(key) ?? 0) + 1);
    }
    const moved = new Map<string, number>();
    for (const sample of after.families.get('kumo_http_requests_total')?.samples ?? []) {
      const { method = '', route = '', status = '' } = sample.labels;
      assert.deepEqual(Object.keys(sample.labels).sort(), ['method', 'route', 'status']);
      const delta = sample.value - valueOf(before.families, 'kumo_http_requests_total', 'kumo_http_requests_total', sample.labels);
      if (delta !== 0) moved.set(JSON.stringify([method, route, status]), delta);
    }
    assert.deepEqual(Object.fromEntries([...moved].sort()), Object.fromEntries([...expected].sort()));

    // Route labels are patterns: no raw id anywhere in the exposition.
    assert.ok(!after.text.includes(rawId), 'no raw id in any label');
    const routes = new Set((after.families.get('kumo_http_requests_total')?.samples ?? []).map((s) => s.labels.route));
    for (const route of routes) assert.ok(route === 'unmatched' || route?.startsWith('/'), `route label ${route}`);

    // The histogram counts the same requests, with the buckets from 5 ms to 10 s.
    const histogram = after.families.get('kumo_http_request_duration_seconds');
    assert.equal(histogram?.type, 'histogram');
    const count = (route: string) => valueOf(after.families, 'kumo_http_request_duration_seconds', 'kumo_http_request_duration_seconds_count', { method: 'GET', route });
    const countBefore = (route: string) => valueOf(before.families, 'kumo_http_request_duration_seconds', 'kumo_http_request_duration_seconds_count', { method: 'GET', route });
    assert.equal(count('/healthz') - countBefore('/healthz'), 2);
    assert.equal(count('/v1/clusters') - countBefore('/v1/clusters'), 2);
    assert.equal(count('unmatched') - countBefore('unmatched'), 1);
    const les = histogram!.samples.filter((s) => s.name.endsWith('_bucket') && s.labels.route === '/healthz').map((s) => s.labels.le);
    assert.deepEqual(les, [...durationBuckets.map(String), '+Inf']);
    assert.equal(les[0], '0.005');
    assert.equal(les[les.length - 2], '10');

    // The process's own metrics.
    for (const [name, type] of [
      ['process_resident_memory_bytes', 'gauge'],
      ['process_cpu_seconds_total', 'counter'],
      ['nodejs_eventloop_lag_seconds', 'gauge'],
    ] as const) {
      const family = after.families.get(name);
      assert.equal(family?.type, type, name);
      assert.ok(family.samples.length === 1 && family.samples[0]!.value >= 0 && Number.isFinite(family.samples[0]!.value), name);
    }
    assert.ok(valueOf(after.families, 'process_resident_memory_bytes', 'process_resident_memory_bytes', {}) > 1e6);
  });

  test('operation counters come from the store', async () => {
    const before = await scrape();
    const total = (families: Map<string, Family>, kind: string, status: string) => valueOf(families, 'kumo_operations_total', 'kumo_operations_total', { kind, status });
    const failures = (families: Map<string, Family>, kind: string, type: string) => valueOf(families, 'kumo_operation_failures_total', 'kumo_operation_failures_total', { kind, type });
    const running = (families: Map<string, Family>, kind: string) => valueOf(families, 'kumo_operations_running', 'kumo_operations_running', { kind });
    assert.equal(before.families.get('kumo_operations_total')?.type, 'counter');
    assert.equal(before.families.get('kumo_operation_failures_total')?.type, 'counter');
    assert.equal(before.families.get('kumo_operations_running')?.type, 'gauge');
    assert.equal(valueOf(before.families, 'kumo_store_up', 'kumo_store_up', {}), 1);

    let n = 0;
    const open = async (kind: OperationKind) => {
      const op = newClusterOperation({ id: `op-metrics-${++n}`, kind, clusterId: `c${n}`, steps: ['one'], startedAt: new Date(Date.UTC(2030, 0, 1, 0, 0, n)).toISOString() });
      await store.openOperation(op, null);
      return op.id;
    };
    const finish = (id: string, status: 'succeeded' | 'failed' | 'cancelled', type?: 'QuotaExceeded' | 'Timeout' | 'Cancelled') =>
      store.finishOperation(id, {
        status,
        steps: [{ name: 'one', status: status === 'succeeded' ? 'succeeded' : status }],
        step: null,
        failure: type ? { step: 'one', type, message: 'nope', attempts: 1 } : null,
        finishedAt: new Date().toISOString(),
      });
    await open('cluster.create');
    await open('cluster.create');
    await finish(await open('cluster.scale'), 'failed', 'QuotaExceeded');
    await finish(await open('cluster.scale'), 'failed', 'Timeout');
    await finish(await open('cluster.scale'), 'failed', 'Timeout');
    await finish(await open('function.deploy'), 'succeeded');
    await finish(await open('addon.apply'), 'cancelled', 'Cancelled');

    const after = await scrape();
    assert.equal(total(after.families, 'cluster.create', 'running') - total(before.families, 'cluster.create', 'running'), 2);
    assert.equal(running(after.families, 'cluster.create') - running(before.families, 'cluster.create'), 2);
    assert.equal(total(after.families, 'cluster.scale', 'failed') - total(before.families, 'cluster.scale', 'failed'), 3);
    assert.equal(running(after.families, 'cluster.scale') - running(before.families, 'cluster.scale'), 0);
    assert.equal(total(after.families, 'function.deploy', 'succeeded') - total(before.families, 'function.deploy', 'succeeded'), 1);
    assert.equal(total(after.families, 'addon.apply', 'cancelled') - total(before.families, 'addon.apply', 'cancelled'), 1);
    assert.equal(failures(after.families, 'cluster.scale', 'QuotaExceeded') - failures(before.families, 'cluster.scale', 'QuotaExceeded'), 1);
    assert.equal(failures(after.families, 'cluster.scale', 'Timeout') - failures(before.families, 'cluster.scale', 'Timeout'), 2);
    assert.equal(failures(after.families, 'addon.apply', 'Cancelled') - failures(before.families, 'addon.apply', 'Cancelled'), 1);
    assert.equal(failures(after.families, 'function.deploy', 'Internal'), 0);
    const sum = (families: Map<string, Family>, name: string) => (families.get(name)?.samples ?? []).reduce((acc, s) => acc + s.value, 0);
    assert.equal(sum(after.families, 'kumo_operations_total') - sum(before.families, 'kumo_operations_total'), 7);
    assert.equal(sum(after.families, 'kumo_operations_running') - sum(before.families, 'kumo_operations_running'), 2);
  });
});

// ---- logs -------------------------------------------------------------------------------------

/** A pino destination that keeps the lines it is given, parsed. */
function capture() {
  const lines: string[] = [];
  return {
    lines,
    entries: () => lines.map((line) => JSON.parse(line) as Record<string, any>),
    destination: { write: (chunk: string) => void lines.push(...chunk.split('\n').filter(Boolean)) },
  };
}

describe('logs', () => {
  test('JSON lines with level, time, service and msg; secrets are redacted', () => {
    const out = capture();
    const log = createLogger({ service: 'api', level: 'debug', destination: out.destination });
    const bearer = 'kumo_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG';
    log.info(
      { req: { method: 'GET', headers: { authorization: `Bearer ${bearer}`, accept: 'application/json' } }, password: 'hunter2-top-level', body: { password: 'hunter2-nested', name: 'otto' }, env: { RANCHER_TOKEN: 'rancher-secret-1' } },
      `called with Bearer ${bearer}`,
    );
    log.error({ err: new Error(`request failed: Authorization: Bearer ${bearer}`) }, 'it failed');
    log.trace('too detailed: not written');
    const text = out.lines.join('\n');
    for (const secret of [bearer, 'hunter2-top-level', 'hunter2-nested', 'rancher-secret-1']) assert.ok(!text.includes(secret), `${secret} is not logged`);
    const [first, second, third] = out.entries();
    assert.equal(third, undefined);
    assert.equal(first?.level, 'info');
    assert.equal(first?.service, 'api');
    assert.ok(!Number.isNaN(Date.parse(first?.time)), 'an ISO time');
    assert.equal(first?.msg, 'called with Bearer [redacted]');
    assert.equal(first?.req.headers.authorization, '[redacted]');
    assert.equal(first?.req.headers.accept, 'application/json');
    assert.equal(first?.password, '[redacted]');
    assert.equal(first?.body.password, '[redacted]');
    assert.equal(first?.body.name, 'otto');
    assert.equal(first?.env.RANCHER_TOKEN, '[redacted]');
    assert.equal(second?.level, 'error');
    assert.match(second?.err.message, /Bearer \[redacted\]/);
  });

  test('an unknown level falls back to info and says so', () => {
    const out = capture();
    const log = createLogger({ service: 'worker', level: 'chatty', destination: out.destination });
    log.debug('not written');
    log.info('written');
    assert.deepEqual(out.entries().map((e) => [e.level, e.service]), [['warn', 'worker'], ['info', 'worker']]);
  });

  test('the access log: one line per request with the route pattern, status, duration, actor and operation', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kumo-access-'));
    const store = await Store.open(`sqlite:${join(dir, 'kumo.db')}`);
    try {
      const secret = 'kumo_access_log_test_token_0123456789';
      await ensureAdminToken(store, { ...loadConfig({ KUMO_DATA_DIR: dir }), KUMO_ADMIN_TOKEN: secret });
      const out = capture();
      const metrics = apiMetrics({ store }, { logger: createLogger({ service: 'api', destination: out.destination }) });
      const app = new Hono();
      app.use('*', metrics.middleware);
      app.use('*', authenticate(store));
      app.post('/v1/things/:id', (c) => c.body(null, 202, { location: '/v1/operations/op-42' }));
      app.get('/metrics', metrics.handler);
      assert.equal((await app.request('/v1/things/t-1', { method: 'POST', headers: { authorization: `Bearer ${secret}` } })).status, 202);
      assert.equal((await app.request('/v1/things/t-2', { method: 'POST' })).status, 401);
      assert.equal((await app.request('/metrics')).status, 200);
      assert.ok(!out.lines.join('\n').includes(secret), 'the token is never logged');
      const entries = out.entries();
      assert.equal(entries.length, 2, 'a line per request; scrapes at debug level only');
      assert.deepEqual(
        entries.map(({ msg, method, route, path, status, actor, operationId }) => ({ msg, method, route, path, status, actor, operationId })),
        [
          { msg: 'request', method: 'POST', route: '/v1/things/:id', path: '/v1/things/t-1', status: 202, actor: 'admin', operationId: 'op-42' },
          { msg: 'request', method: 'POST', route: '/v1/things/:id', path: '/v1/things/t-2', status: 401, actor: null, operationId: null },
        ],
      );
      for (const entry of entries) assert.ok(typeof entry.durationMs === 'number' && entry.durationMs >= 0);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the Temporal SDK's logs go to pino with their metadata", () => {
    const out = capture();
    const logger = temporalLogger(createLogger({ service: 'worker', destination: out.destination }));
    logger.info('Activity started', { sdkComponent: 'activity', workflowId: 'cluster/prod/mutation', activityType: 'createCluster', taskToken: 'c2VjcmV0LXRhc2stdG9rZW4', [Symbol.for('log_timestamp')]: 1n });
    logger.log('WARN', 'core says', { level: 'x', target: 'temporal_sdk_core' });
    logger.debug('below info: not written');
    assert.ok(!out.lines.join('\n').includes('c2VjcmV0LXRhc2stdG9rZW4'), 'no task token');
    assert.deepEqual(
      out.entries().map(({ level, service, msg, workflowId, activityType, temporal_level }) => ({ level, service, msg, workflowId, activityType, temporal_level })),
      [
        { level: 'info', service: 'worker', msg: 'Activity started', workflowId: 'cluster/prod/mutation', activityType: 'createCluster', temporal_level: undefined },
        { level: 'warn', service: 'worker', msg: 'core says', workflowId: undefined, activityType: undefined, temporal_level: 'x' },
      ],
    );
  });
});
