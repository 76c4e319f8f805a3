import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { workloadsOf } from '../activities/addon.js';
import { compareSemver, matchesSelector, planWaves, RolloutRequestSchema, sameValues } from '../domain/addon.js';
import { AddonCatalog } from '../store/catalog.js';

describe('rollout planning', () => {
  const twenty = Array.from({ length: 20 }, (_, i) => `c${i + 1}`);

  test('waves are cumulative: a canary, then up to a share of the fleet, then the rest', () => {
    assert.deepEqual(planWaves(twenty, [1, '10%', '100%']).map((w) => w.length), [1, 1, 18]);
    assert.deepEqual(planWaves(twenty, [1, 5, 10, '100%']).map((w) => w.length), [1, 4, 5, 10]);
    assert.deepEqual(planWaves(twenty, [1, 5, 10, '100%'])[2], ['c6', 'c7', 'c8', 'c9', 'c10']);
  });

  test('percentages round up, waves that add nothing are dropped, and the last wave takes every target left', () => {
    assert.deepEqual(planWaves(['a', 'b', 'c'], [1, '10%', '50%']), [['a'], ['b', 'c']]);
    assert.deepEqual(planWaves(['a', 'b', 'c'], [1, '34%', '100%']), [['a'], ['b'], ['c']]);
    assert.deepEqual(planWaves(['a', 'b', 'c', 'd'], [2, 1, '100%']), [['a', 'b'], ['c', 'd']]);
    assert.deepEqual(planWaves(['a', 'b'], [5]), [['a', 'b']]);
    assert.deepEqual(planWaves([], [1, '100%']), []);
    const all = planWaves(twenty, ['25%', '50%']);
    assert.deepEqual(all.flat(), twenty, 'every target exactly once, in order');
  });

  test('the request schema refuses empty waves, zero and percentages out of range, and applies defaults', () => {
    for (const waves of [[], [0], ['0%'], ['101%'], ['ten']]) {
      assert.equal(RolloutRequestSchema.safeParse({ version: '1.0.0', waves }).success, false, JSON.stringify(waves));
    }
    const parsed = RolloutRequestSchema.parse({ version: '1.0.0' });
    assert.deepEqual(parsed.waves, [1, '25%', '100%']);
    assert.equal(parsed.maxFailures, 0);
    assert.equal(RolloutRequestSchema.safeParse({ version: '1.0.0', unknown: 1 }).success, false);
  });

  test('selectors match by cluster id and by labels', () => {
    const cluster = { id: 'eu-1', labels: { env: 'prod', region: 'eu' } };
    assert.ok(matchesSelector(cluster, {}));
    assert.ok(matchesSelector(cluster, { labels: { env: 'prod' } }));
    assert.ok(!matchesSelector(cluster, { labels: { env: 'dev' } }));
    assert.ok(matchesSelector(cluster, { clusters: ['eu-1', 'eu-2'], labels: { region: 'eu' } }));
    assert.ok(!matchesSelector(cluster, { clusters: ['eu-2'] }));
  });

  test('versions compare as semver and values compare whatever their key order', () => {
    assert.ok(compareSemver('1.10.0', '1.9.9') > 0);
    assert.ok(compareSemver('1.0.0-rc.1', '1.0.0') < 0);
    assert.equal(compareSemver('2.0.0', '2.0.0'), 0);
    assert.ok(sameValues({ a: 1, b: { c: 2, d: 3 } }, { b: { d: 3, c: 2 }, a: 1 }));
    assert.ok(!sameValues({ a: 1 }, { a: 2 }));
  });
});

describe('the add-on catalog', () => {
  const catalog = AddonCatalog.load();

  test('is read from charts/, versions in order, each with its chart schema', () => {
    const logging = catalog.find('logging');
    assert.ok(logging);
    assert.deepEqual(logging.versions.map((v) => v.version), [...logging.versions.map((v) => v.version)].sort(compareSemver));
    assert.equal(catalog.latest(logging), logging.versions.at(-1)?.version);
    assert.equal(catalog.find('nope'), undefined);
  });

  test("values are checked against the chart's schema, naming each wrong field", () => {
    assert.deepEqual(catalog.validate('logging', {}), []);
    assert.deepEqual(catalog.validate('logging', { output: { type: 'stdout' } }), []);
    const errors = catalog.validate('logging', { flushSeconds: 'soon', output: { type: 'carrier-pigeon', colour: 1 }, extra: true });
    const fields = errors.map((e) => e.field).sort();
    assert.ok(fields.includes('values.flushSeconds'), JSON.stringify(errors));
    assert.ok(fields.includes('values.extra'), JSON.stringify(errors));
    assert.ok(fields.includes('values.output.type'), JSON.stringify(errors));
    assert.ok(fields.includes('values.output.colour'), JSON.stringify(errors));
  });
});

describe('reading a release manifest', () => {
  test('finds its workloads with the replicas they ask for', () => {
    const manifest = [
      '---',
      '# Source: x/templates/cm.yaml',
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg',
      '---',
      'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3',
      '---',
      'apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\n  namespace: other',
      '---',
      'apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db',
    ].join('\n');
    assert.deepEqual(workloadsOf(manifest, 'ns'), [
      { kind: 'Deployment', namespace: 'ns', name: 'web', wanted: 3 },
      { kind: 'DaemonSet', namespace: 'other', name: 'agent', wanted: null },
      { kind: 'StatefulSet', namespace: 'ns', name: 'db', wanted: 1 },
    ]);
    assert.deepEqual(workloadsOf('', 'ns'), []);
  });
});
