/**
 * Unit tests of the pure code: the cluster spec schema, configuration loading,
 * Rancher error classification and the provider error type.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ClusterSpecSchema, expectedNodeCount, type ClusterSpec } from '../domain/cluster.js';
import { ConfigError, loadConfig } from '../domain/config.js';
import { failureTypes, nonRetryableFailureTypes, ProviderError, type FailureType } from '../domain/errors.js';
import { classifyRancherError } from '../providers/rancher.js';

const validSpec = (): ClusterSpec => ({
  name: 'prod-eu-1',
  kubernetesVersion: 'v1.30.6-rancher1-1',
  description: 'production, EU',
  labels: { team: 'platform' },
  nodePools: [
    { name: 'control', roles: ['etcd', 'controlplane'], quantity: 3 },
    { name: 'workers', roles: ['worker'], quantity: 5 },
  ],
});

type Issue = { path: PropertyKey[]; message: string; code: string; keys?: string[] };

/** The issues a spec is refused with; fails the test when it is accepted. */
function issuesOf(input: unknown): Issue[] {
  const result = ClusterSpecSchema.safeParse(input);
  assert.equal(result.success, false, `expected ${JSON.stringify(input)} to be refused`);
  return result.error!.issues as Issue[];
}

/** Asserts the spec is refused and that an issue points exactly at `path`. */
function refusedAt(input: unknown, path: PropertyKey[], message?: RegExp): void {
  const issues = issuesOf(input);
  const hit = issues.find((issue) => JSON.stringify(issue.path) === JSON.stringify(path) && (!message || message.test(issue.message)));
  assert.ok(hit, `expected an issue at ${JSON.stringify(path)}${message ? ` matching ${message}` : ''}, got ${JSON.stringify(issues)}`);
}

/** The spec with its first pool's fields replaced. */
function withPool(fields: Record<string, unknown>): unknown {
  const spec = validSpec();
  return { ...spec, nodePools: [{ ...spec.nodePools[0], ...fields }, spec.nodePools[1]] };
}

function withoutKey(object: Record<string, unknown>, key: string): Record<string, unknown> {
  const copy = { ...object };
  delete copy[key];
  return copy;
}

describe('ClusterSpecSchema', () => {
  test('a valid spec parses to the same value, with or without the optional fields', () => {
    assert.deepEqual(ClusterSpecSchema.parse(validSpec()), validSpec());
    const minimal = {
      name: 'a',
      kubernetesVersion: 'v1.31.2-rancher1-1',
      nodePools: [{ name: 'all', roles: ['etcd', 'controlplane', 'worker'], quantity: 1 }],
    };
    assert.deepEqual(ClusterSpecSchema.parse(minimal), minimal);
    assert.equal(ClusterSpecSchema.safeParse({ ...validSpec(), name: 'a'.repeat(63) }).success, true, '63 characters is the limit');
  });

  test('every missing required field is refused at its own path', () => {
    for (const field of ['name', 'kubernetesVersion', 'nodePools']) {
      refusedAt(withoutKey(validSpec() as unknown as Record<string, unknown>, field), [field]);
    }
    for (const field of ['name', 'roles', 'quantity']) {
      const spec = validSpec();
      refusedAt({ ...spec, nodePools: [withoutKey(spec.nodePools[0]!, field), spec.nodePools[1]] }, ['nodePools', 0, field]);
    }
    refusedAt({ ...validSpec(), nodePools: [] }, ['nodePools']);
    refusedAt(withPool({ roles: [] }), ['nodePools', 0, 'roles'], /at least one role/);
    assert.equal(ClusterSpecSchema.safeParse(null).success, false);
  });

  test('fields of the wrong type are refused at their path', () => {
    refusedAt({ ...validSpec(), name: 42 }, ['name']);
    refusedAt({ ...validSpec(), kubernetesVersion: 1.3 }, ['kubernetesVersion']);
    refusedAt({ ...validSpec(), description: ['x'] }, ['description']);
    refusedAt({ ...validSpec(), labels: ['a'] }, ['labels']);
    refusedAt({ ...validSpec(), labels: { team: 7 } }, ['labels', 'team']);
    refusedAt({ ...validSpec(), nodePools: { name: 'all' } }, ['nodePools']);
    refusedAt({ ...validSpec(), nodePools: ['all'] }, ['nodePools', 0]);
    refusedAt(withPool({ quantity: '3' }), ['nodePools', 0, 'quantity']);
    refusedAt(withPool({ roles: 'etcd' }), ['nodePools', 0, 'roles']);
    refusedAt(withPool({ name: null }), ['nodePools', 0, 'name']);
  });

  test('a quantity of zero, below zero or with a fraction is refused at the pool quantity', () => {
    refusedAt(withPool({ quantity: 0 }), ['nodePools', 0, 'quantity'], /at least 1/);
    refusedAt(withPool({ quantity: -2 }), ['nodePools', 0, 'quantity'], /at least 1/);
    refusedAt(withPool({ quantity: 1.5 }), ['nodePools', 0, 'quantity'], /whole number/);
    refusedAt(withPool({ quantity: 501 }), ['nodePools', 0, 'quantity']);
    refusedAt(withPool({ quantity: Number.NaN }), ['nodePools', 0, 'quantity']);
  });

  test('an unknown role is refused at its index and a repeated role at the roles list', () => {
    refusedAt(withPool({ roles: ['etcd', 'master'] }), ['nodePools', 0, 'roles', 1]);
    refusedAt(withPool({ roles: ['etcd', 'controlplane', 'etcd'] }), ['nodePools', 0, 'roles'], /must not repeat/);
  });

  test('cluster and pool names that Rancher would refuse are refused at the name', () => {
    for (const name of ['Prod', 'prod_eu', '-prod', 'prod-', 'prod.eu', 'prod eu', '', 'a'.repeat(64), 'ünï']) {
      refusedAt({ ...validSpec(), name }, ['name']);
    }
    for (const name of ['Workers', 'work_ers', '-w', 'w-', 'a'.repeat(41)]) {
      refusedAt(withPool({ name }), ['nodePools', 0, 'name']);
    }
  });

  test('a second pool with a name already used is refused at that pool name', () => {
    const spec = validSpec();
    refusedAt({ ...spec, nodePools: [spec.nodePools[0], { ...spec.nodePools[1]!, name: 'control' }] }, ['nodePools', 1, 'name'], /duplicate node pool name "control"/);
  });

  test('a cluster without any pool for a role is refused at nodePools, naming that role', () => {
    const pool = (roles: string[]) => ({ ...validSpec(), nodePools: [{ name: 'p', roles, quantity: 1 }] });
    refusedAt(pool(['controlplane', 'worker']), ['nodePools'], /"etcd" role/);
    refusedAt(pool(['etcd', 'worker']), ['nodePools'], /"controlplane" role/);
    refusedAt(pool(['etcd', 'controlplane']), ['nodePools'], /"worker" role/);
    const issues = issuesOf(pool(['worker']));
    assert.equal(issues.filter((issue) => /no node pool has/.test(issue.message)).length, 2, 'each missing role is its own issue');
  });

  test('more than 1000 nodes in total is refused at nodePools', () => {
    const spec = validSpec();
    refusedAt(
      { ...spec, nodePools: [{ ...spec.nodePools[0]!, quantity: 500 }, { ...spec.nodePools[1]!, quantity: 500 }, { name: 'x', roles: ['worker'], quantity: 1 }] },
      ['nodePools'],
      /at most 1000 nodes \(asked for 1001\)/,
    );
  });

  test('an unknown field is refused, at the object holding it and naming the key', () => {
    const top = issuesOf({ ...validSpec(), replicas: 3 });
    assert.deepEqual(
      top.map((i) => ({ code: i.code, path: i.path, keys: i.keys })),
      [{ code: 'unrecognized_keys', path: [], keys: ['replicas'] }],
    );
    assert.match(top[0]!.message, /replicas/);
    const inPool = issuesOf(withPool({ size: 3 }));
    assert.deepEqual(
      inPool.map((i) => ({ code: i.code, path: i.path, keys: i.keys })),
      [{ code: 'unrecognized_keys', path: ['nodePools', 0], keys: ['size'] }],
    );
  });

  test('Kubernetes versions must be named the way Rancher names them', () => {
    for (const version of ['v1.30.6-rancher1-1', 'v1.30.6+rke2r1', 'v1.30.6+k3s1', 'v1.30.6']) {
      assert.equal(ClusterSpecSchema.safeParse({ ...validSpec(), kubernetesVersion: version }).success, true, version);
    }
    for (const version of ['1.30.6', 'v1.30', 'latest', 'v1.30.6-rancher1', 'v1.30.6-rke2r1', ' v1.30.6', '']) {
      refusedAt({ ...validSpec(), kubernetesVersion: version }, ['kubernetesVersion']);
    }
  });
});

describe('expectedNodeCount', () => {
  test('sums the quantities of every pool', () => {
    assert.equal(expectedNodeCount(validSpec()), 8);
    assert.equal(expectedNodeCount({ nodePools: [{ name: 'a', roles: ['worker'], quantity: 1 }] }), 1);
    assert.equal(expectedNodeCount({ nodePools: [] }), 0);
  });
});

describe('loadConfig', () => {
  /** The ConfigError an environment is refused with. */
  function configError(env: Record<string, string | undefined>): ConfigError {
    try {
      loadConfig(env);
    } catch (err) {
      assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
      assert.equal(err.name, 'ConfigError');
      return err;
    }
    assert.fail(`expected ${JSON.stringify(env)} to be refused`);
  }
  /** Whether the message has a line for exactly this variable (PORT is not TEMPORAL_PORT). */
  const names = (error: Error, variable: string) => new RegExp(`^\\s+${variable}: `, 'm').test(error.message);

  test('an empty environment gives the embedded stack defaults', () => {
    assert.deepEqual(loadConfig({}), {
      PORT: 8080,
      HOST: '127.0.0.1',
      TEMPORAL_NAMESPACE: 'default',
      TEMPORAL_TASK_QUEUE: 'kumo',
      TEMPORAL_PORT: 7233,
      TEMPORAL_UI_PORT: 8233,
      DATABASE_URL: 'sqlite:.data/kumo.db',
      RANCHER_URL: 'http://127.0.0.1:8090',
      RANCHER_TOKEN: 'kumo-sim-token',
      RANCHER_NODE_TEMPLATE: 'cattle-global-nt:nt-kumo-default',
      RANCHER_TIMEOUT_MS: 10_000,
      SIM_PORT: 8090,
      KUMO_POLL_INTERVAL_MS: 1_000,
      KUMO_CLUSTER_READY_TIMEOUT_S: 1_800,
      KUMO_ADDON_RECONCILE_INTERVAL_S: 300,
      KUMO_ADDON_POLL_S: 3,
      KUMO_ADDON_HEALTH_TIMEOUT_S: 300,
      KUMO_HEALTH_SWEEP_INTERVAL_S: 60,
      KUMO_HEALTH_CONCURRENCY: 16,
      KUMO_HEALTH_PROBE_TIMEOUT_MS: 5_000,
      KUMO_HEALTH_RETENTION_DAYS: 14,
      KUMO_PROMETHEUS_SERVICE: 'kumo-monitoring/kumo-monitoring-prometheus:9090',
      KUMO_FUNCTIONS_CLUSTER: 'functions',
      KUMO_FUNCTIONS_NAMESPACE: 'functions',
      KUMO_BUILD_CACHE_DIR: '.data/build-cache',
      KUMO_FUNCTION_READY_TIMEOUT_S: 120,
      KUMO_AMQP_BINDINGS: 'nova:notifications.*,cinder:notifications.*,neutron:notifications.*,glance:notifications.*,keystone:notifications.*,openstack:notifications.*',
      KUMO_AMQP_QUEUE: 'kumo.notifications',
      KUMO_AMQP_DEAD_LETTER_QUEUE: 'kumo.notifications.dead',
      KUMO_AMQP_PREFETCH: 64,
      KUMO_AMQP_DURABLE_EXCHANGES: 'false',
      KUMO_LOG_LEVEL: 'info',
      KUMO_DATA_DIR: '.data',
    });
  });

  test('set variables are parsed, and empty ones count as unset', () => {
    const config = loadConfig({
      PORT: '9000',
      TEMPORAL_ADDRESS: 'temporal.internal:7233',
      DATABASE_URL: 'postgres://kumo:pw@db/kumo',
      RANCHER_URL: 'https://rancher.example.com',
      RANCHER_TIMEOUT_MS: '2500',
      HOST: '',
      UNRELATED: 'ignored',
    });
    assert.equal(config.PORT, 9000);
    assert.equal(config.TEMPORAL_ADDRESS, 'temporal.internal:7233');
    assert.equal(config.DATABASE_URL, 'postgres://kumo:pw@db/kumo');
    assert.equal(config.RANCHER_URL, 'https://rancher.example.com');
    assert.equal(config.RANCHER_TIMEOUT_MS, 2500);
    assert.equal(config.HOST, '127.0.0.1');
    assert.equal('UNRELATED' in config, false);
  });

  test('a bad PORT is a ConfigError naming PORT', () => {
    for (const port of ['abc', '0', '65536', '80.5', '-1']) {
      const error = configError({ PORT: port });
      assert.ok(names(error, 'PORT'), `${port}: ${error.message}`);
      assert.equal(error.message.split('\n').length, 2, 'one header line and one line for PORT');
    }
  });

  test('a bad TEMPORAL_ADDRESS is a ConfigError naming TEMPORAL_ADDRESS', () => {
    for (const address of ['localhost', 'http://temporal:7233', 'temporal:port', 'host :7233']) {
      assert.ok(names(configError({ TEMPORAL_ADDRESS: address }), 'TEMPORAL_ADDRESS'), address);
    }
  });

  test('a bad DATABASE_URL is a ConfigError naming it without showing its value', () => {
    const secret = 'mysql://kumo:hunter2-secret@db.internal/kumo';
    const error = configError({ DATABASE_URL: secret });
    assert.ok(names(error, 'DATABASE_URL'));
    assert.ok(!error.message.includes(secret));
    assert.ok(!error.message.includes('hunter2'));
  });

  test('a bad RANCHER_URL is a ConfigError naming RANCHER_URL', () => {
    for (const url of ['not a url', 'http://', '://rancher']) {
      assert.ok(names(configError({ RANCHER_URL: url }), 'RANCHER_URL'), url);
    }
  });

  test(
    'a RANCHER_URL that is not http or https is refused',
    {},
    () => {
      for (const url of ['rancher.example.com:443', 'localhost:8090', 'ftp://rancher.example.com']) {
        assert.ok(names(configError({ RANCHER_URL: url }), 'RANCHER_URL'), url);
      }
    },
  );

  test('several bad variables give one ConfigError with a line for each, and never the token or database URL', () => {
    const token = 'token-abcde:s3cr3t-rancher-token';
    const database = 'mongodb://admin:db-secret@mongo/kumo';
    const error = configError({
      PORT: 'eighty',
      TEMPORAL_ADDRESS: 'temporal',
      DATABASE_URL: database,
      RANCHER_URL: 'rancher',
      RANCHER_TOKEN: token,
    });
    for (const variable of ['PORT', 'TEMPORAL_ADDRESS', 'DATABASE_URL', 'RANCHER_URL']) assert.ok(names(error, variable), variable);
    assert.equal(names(error, 'RANCHER_TOKEN'), false, 'the token itself is fine');
    assert.ok(!error.message.includes(token) && !error.message.includes('s3cr3t'), 'the token never appears');
    assert.ok(!error.message.includes(database) && !error.message.includes('db-secret'), 'the database URL never appears');
    assert.match(error.message, /\(got "eighty"\)/, 'harmless values are shown to help');
  });
});

describe('classifyRancherError', () => {
  const cases: Array<[number, { code?: string; message?: string } | undefined, FailureType]> = [
    [401, { code: 'Unauthorized', message: 'must authenticate' }, 'Unauthorized'],
    [401, undefined, 'Unauthorized'],
    [403, { code: 'PermissionDenied', message: 'clusters.management.cattle.io is forbidden' }, 'Unauthorized'],
    [403, { code: 'PermissionDenied', message: 'node quota exceeded: this would make 12 nodes, the quota is 10' }, 'QuotaExceeded'],
    [403, { code: 'PermissionDenied', message: 'Exceeded QUOTA for project' }, 'QuotaExceeded'],
    [403, { code: 'QuotaExceeded' }, 'QuotaExceeded'],
    [403, undefined, 'Unauthorized'],
    [404, { code: 'NotFound', message: 'cluster c-x not found' }, 'NotFound'],
    [409, { code: 'Conflict', message: 'the object has been modified' }, 'Transient'],
    [422, { code: 'NotUnique', message: 'cluster name "a" is already in use' }, 'AlreadyExists'],
    [422, { code: 'InvalidFormat', message: 'kubernetesVersion is not supported' }, 'InvalidSpec'],
    [422, { code: 'MissingRequired' }, 'InvalidSpec'],
    [422, undefined, 'InvalidSpec'],
    [400, { code: 'InvalidBodyContent' }, 'InvalidSpec'],
    [408, undefined, 'Transient'],
    [429, { code: 'TooManyRequests' }, 'Transient'],
    [500, { code: 'ServerError' }, 'Transient'],
    [502, undefined, 'Transient'],
    [503, { code: 'ServerError', message: 'service unavailable' }, 'Transient'],
    [418, undefined, 'Internal'],
  ];
  for (const [status, body, expected] of cases) {
    test(`${status} ${body?.code ?? '(no body)'}${body?.message ? ` "${body.message}"` : ''} is ${expected}`, () => {
      assert.equal(classifyRancherError(status, body), expected);
    });
  }
});

describe('ProviderError', () => {
  test('is retryable only for Transient and Internal failures', () => {
    for (const type of failureTypes) {
      const error = new ProviderError(type, 'x');
      assert.equal(error.retryable, type === 'Transient' || type === 'Internal', type);
      assert.equal(error.retryable, !nonRetryableFailureTypes.includes(type), type);
    }
  });

  test('carries its type, message, details and name and is an Error', () => {
    const error = new ProviderError('AlreadyExists', 'name taken', { status: 422, code: 'NotUnique', field: 'name' });
    assert.ok(error instanceof Error);
    assert.equal(error.name, 'ProviderError');
    assert.equal(error.type, 'AlreadyExists');
    assert.equal(error.message, 'name taken');
    assert.deepEqual(error.details, { status: 422, code: 'NotUnique', field: 'name' });
    assert.deepEqual(new ProviderError('Transient', 'x').details, {});
  });
});
