import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startChartRepo, type ChartRepo } from '../scripts/chart-repo.js';
import { chartsSourceDir, compareSemver, packageCharts, readCatalog, type Catalog } from '../scripts/package-charts.js';
import { helmBinary } from '../scripts/tools.js';

/**
 * The add-on catalog's charts: packaged into a chart repository, served by the
 * local chart repository server, and rendered by the real helm from there.
 */

const ALLOWED_KINDS = new Set(['Deployment', 'DaemonSet', 'StatefulSet', 'Service', 'ConfigMap', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'IngressClass']);
/** Each chart's own image: its tag is the chart's appVersion (Prometheus and ingress-nginx put a "v" in front). */
const MAIN_IMAGE: Record<string, string> = {
  logging: 'fluent/fluent-bit',
  monitoring: 'prom/prometheus',
  ingress: 'registry.k8s.io/ingress-nginx/controller',
};
const HELM_CONCURRENCY = 4;

interface Rendered {
  kind: string;
  name: string;
  text: string;
}

/** Splits `helm template` output into its objects (kind, name, text), without a YAML library. */
function splitObjects(output: string): Rendered[] {
  return output
    .split(/^---\s*$/m)
    .map((text) => text.replace(/^#.*$/gm, '').trim())
    .filter((text) => text !== '')
    .map((text) => ({
      kind: /^kind:\s*(\S+)/m.exec(text)?.[1] ?? '',
      name: /^metadata:\n(?:\s+.*\n)*?\s{2}name:\s*(\S+)/m.exec(text)?.[1] ?? '',
      text,
    }));
}

const imagesOf = (text: string) => [...text.matchAll(/^\s*(?:-\s+)?image:\s*"?([^"\s]+)"?\s*$/gm)].map((m) => m[1] as string);
const stripV = (tag: string) => tag.replace(/^v/, '');

/** Runs fn over items, at most `limit` at a time, keeping the results in order. */
async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

describe('the add-on catalog charts', () => {
  const helm = helmBinary();
  let home: string;
  let repoDir: string;
  let repo: ChartRepo;
  let catalog: Catalog;
  let env: NodeJS.ProcessEnv;

  /** Runs helm with private cache/config/data folders: nothing reaches the user's home. */
  const runHelm = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(helm, args, { env, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
      });
    });
  const helmOk = async (args: string[]) => {
    const result = await runHelm(args);
    assert.equal(result.code, 0, `helm ${args.join(' ')} failed:\n${result.stderr}`);
    return result.stdout;
  };
  const versions = () => catalog.addons.flatMap((addon) => addon.versions.map((v) => ({ addon, ...v })));

  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'kumo-charts-test-'));
    env = { ...process.env, HELM_CACHE_HOME: join(home, 'cache'), HELM_CONFIG_HOME: join(home, 'config'), HELM_DATA_HOME: join(home, 'data') };
    repoDir = await packageCharts();
    repo = await startChartRepo({ dir: repoDir });
    catalog = await readCatalog();
  });
  after(async () => {
    await repo?.close();
    if (home) await rm(home, { recursive: true, force: true });
  });

  test('the catalog lists each add-on once, with a chart folder and ascending versions', async () => {
    assert.deepEqual(catalog.addons.map((a) => a.name).sort(), ['ingress', 'logging', 'monitoring']);
    for (const addon of catalog.addons) {
      assert.ok(addon.title && addon.description, `${addon.name}: title and description`);
      assert.match(addon.namespace, /^kumo-/);
      assert.ok(addon.versions.length >= 2, `${addon.name}: several published versions`);
      const sorted = [...addon.versions].sort((a, b) => compareSemver(a.version, b.version));
      assert.deepEqual(addon.versions, sorted, `${addon.name}: versions ascending`);
      assert.equal(new Set(addon.versions.map((v) => v.appVersion)).size, addon.versions.length, `${addon.name}: each version ships its own appVersion`);
      const dir = join(chartsSourceDir, addon.chart);
      for (const file of ['Chart.yaml', 'values.yaml', 'values.schema.json', 'templates/_helpers.tpl']) assert.ok(existsSync(join(dir, file)), `${addon.chart}/${file}`);
      assert.ok(!existsSync(join(dir, 'templates', 'tests')), `${addon.chart}: no helm tests (they would hang on the simulated cluster)`);
      const schema = JSON.parse(await readFile(join(dir, 'values.schema.json'), 'utf8'));
      assert.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#');
      assert.equal(schema.additionalProperties, false, `${addon.chart}: the schema refuses unknown keys`);
    }
    assert.ok(compareSemver('1.10.0', '1.9.0') > 0 && compareSemver('1.0.0-rc.1', '1.0.0') < 0 && compareSemver('1.0.0-alpha', '1.0.0-alpha.1') < 0);
  });

  test('helm lint --strict passes for every chart source and every packaged version', async () => {
    const targets = [...catalog.addons.map((a) => join(chartsSourceDir, a.chart)), ...versions().map((v) => join(repoDir, `${v.addon.chart}-${v.version}.tgz`))];
    const results = await mapLimited(targets, HELM_CONCURRENCY, (target) => runHelm(['lint', '--strict', target]));
    results.forEach((result, i) => assert.equal(result.code, 0, `helm lint ${targets[i]}:\n${result.stdout}${result.stderr}`));
  });

  test('every version renders from the chart repository: allowed kinds only, no hooks, images tagged with the appVersion', async () => {
    const all = versions();
    const outputs = await mapLimited(all, HELM_CONCURRENCY, (v) =>
      helmOk(['template', v.addon.release, v.addon.chart, '--repo', repo.url, '--version', v.version, '--namespace', v.addon.namespace]),
    );
    all.forEach((v, i) => {
      const where = `${v.addon.name} ${v.version}`;
      const objects = splitObjects(outputs[i] as string);
      assert.ok(objects.length >= 5, `${where}: objects rendered`);
      for (const object of objects) {
        assert.ok(ALLOWED_KINDS.has(object.kind), `${where}: ${object.kind} ${object.name} is not an allowed kind`);
        assert.doesNotMatch(object.text, /helm\.sh\/hook/, `${where}: ${object.kind} ${object.name} is a hook`);
        assert.match(object.text, new RegExp(`app\\.kubernetes\\.io/version: "?${v.appVersion.replace(/\./g, '\\.')}"?\\n`), `${where}: ${object.kind} ${object.name} version label`);
        assert.match(object.text, new RegExp(`helm\\.sh/chart: ${v.addon.chart}-${v.version.replace(/\./g, '\\.')}\\n`), `${where}: ${object.kind} ${object.name} chart label`);
        assert.match(object.text, /app\.kubernetes\.io\/managed-by: Helm\n/);
        assert.match(object.text, new RegExp(`app\\.kubernetes\\.io/instance: ${v.addon.release}\\n`));
      }
      const images = objects.flatMap((o) => imagesOf(o.text));
      assert.ok(images.length > 0, `${where}: images`);
      for (const image of images) {
        const [repository, tag] = [image.slice(0, image.lastIndexOf(':')), image.slice(image.lastIndexOf(':') + 1)];
        assert.ok(tag && tag !== 'latest' && !repository.includes('@'), `${where}: ${image} has a pinned tag`);
        if (repository === MAIN_IMAGE[v.addon.chart]) assert.equal(stripV(tag), v.appVersion, `${where}: ${image} is tagged with the appVersion`);
      }
      assert.ok(images.some((image) => image.startsWith(`${MAIN_IMAGE[v.addon.chart]}:`)), `${where}: the main image is deployed`);
    });
    // The chart repository's index knows every version with its appVersion.
    const index = await (await fetch(`${repo.url}/index.yaml`)).text();
    for (const v of all) assert.match(index, new RegExp(`appVersion: ${v.appVersion.replace(/\./g, '\\.')}\\n(?:.*\\n)*?\\s+- ${v.addon.chart}-${v.version.replace(/\./g, '\\.')}\\.tgz\\n\\s+version: ${v.version.replace(/\./g, '\\.')}\\n`));
  });

  test('the values steer what renders', async () => {
    const chart = (name: string) => join(chartsSourceDir, name);
    const valuesFile = join(home, 'values-forward.yaml');
    await writeFile(valuesFile, 'output:\n  type: forward\n  forward:\n    host: fluentd.logging.svc\n    port: 24225\nimage:\n  tag: "3.1.0"\ntolerations: []\n');
    const [forward, elastic, noGrafana, lb, defaults] = await mapLimited(
      [
        ['template', 'r', chart('logging'), '-f', valuesFile],
        ['template', 'r', chart('logging'), '--set', 'output.type=elasticsearch,output.elasticsearch.host=es.example,output.elasticsearch.index=app-logs'],
        ['template', 'r', chart('monitoring'), '--set', 'grafana.enabled=false,prometheus.retention=30d,prometheus.scrapeInterval=15s'],
        ['template', 'r', chart('ingress'), '--set', 'service.type=LoadBalancer,ingressClass.isDefaultClass=true,ingressClass.name=public,replicaCount=3'],
        ['template', 'r', chart('monitoring'), '--namespace', 'mon'],
      ],
      HELM_CONCURRENCY,
      helmOk,
    );
    assert.match(forward as string, /Name\s+forward\n\s+Match\s+\*\n\s+Host\s+fluentd\.logging\.svc\n\s+Port\s+24225/);
    assert.match(forward as string, /image: "fluent\/fluent-bit:3\.1\.0"/);
    assert.doesNotMatch(forward as string, /tolerations:/);
    // Explicit, not left to API-server defaulting: helm --wait reads it (and panics without it on the simulator).
    assert.match(forward as string, /updateStrategy:\n\s+type: RollingUpdate\n\s+rollingUpdate:\n\s+maxUnavailable: 1\n/);
    assert.match(elastic as string, /Name\s+es\n[\s\S]*Host\s+es\.example\n\s+Port\s+9200\n\s+Index\s+app-logs/);
    const monitoring = splitObjects(noGrafana as string);
    assert.ok(!monitoring.some((o) => o.text.includes('grafana')), 'no Grafana object when grafana.enabled=false');
    assert.match(noGrafana as string, /--storage\.tsdb\.retention\.time=30d/);
    assert.match(noGrafana as string, /scrape_interval: 15s/);
    const withGrafana = splitObjects(defaults as string);
    assert.deepEqual(withGrafana.filter((o) => o.kind === 'Deployment').map((o) => o.name).sort(), ['r-monitoring-grafana', 'r-monitoring-prometheus']);
    assert.match(defaults as string, /url: http:\/\/r-monitoring-prometheus\.mon\.svc:9090/, 'Grafana points at the Prometheus Service');
    assert.doesNotMatch(defaults as string, /GF_SECURITY_ADMIN_PASSWORD/, 'no admin password from values');
    const ingress = splitObjects(lb as string);
    const ingressClass = ingress.find((o) => o.kind === 'IngressClass');
    assert.ok(ingressClass && ingressClass.name === 'public' && ingressClass.text.includes('ingressclass.kubernetes.io/is-default-class: "true"'));
    assert.match(ingress.find((o) => o.kind === 'Service')?.text ?? '', /type: LoadBalancer/);
    assert.match(lb as string, /replicas: 3\n/);
    assert.match(lb as string, /--ingress-class=public\n/);
  });

  test('the schemas refuse typo\'d keys and wrong types, naming the field', async () => {
    const [logging, monitoring, ingress] = ['logging', 'monitoring', 'ingress'].map((name) => {
      const addon = catalog.addons.find((a) => a.chart === name);
      assert.ok(addon);
      return addon;
    }) as [Catalog['addons'][number], Catalog['addons'][number], Catalog['addons'][number]];
    const newest = (addon: Catalog['addons'][number]) => (addon.versions.at(-1) as { version: string }).version;
    const fromRepo = (addon: Catalog['addons'][number]) => ['template', addon.release, addon.chart, '--repo', repo.url, '--version', newest(addon)];
    const fromSource = (addon: Catalog['addons'][number]) => ['template', addon.release, join(chartsSourceDir, addon.chart)];
    const cases: Array<{ args: string[]; field: RegExp }> = [
      // From the chart repository: the packaged archives carry their schemas.
      { args: [...fromRepo(ingress), '--set', 'replicaCont=2'], field: /additional properties 'replicaCont' not allowed/ },
      { args: [...fromRepo(ingress), '--set-string', 'replicaCount=two'], field: /\/replicaCount'?: got string, want integer/ },
      { args: [...fromRepo(logging), '--set', 'output.type=kafka'], field: /\/output\/type'?: value must be one of/ },
      { args: [...fromRepo(monitoring), '--set', 'grafana.adminPassword=hunter2'], field: /\/grafana'?: additional properties 'adminPassword' not allowed/ },
      // From the sources: nested typos, types and ranges.
      { args: [...fromSource(logging), '--set', 'output.forwrd.host=x'], field: /\/output'?: additional properties 'forwrd' not allowed/ },
      { args: [...fromSource(logging), '--set', 'output.type=forward'], field: /\/output\/forward\/host'?: minLength/ },
      { args: [...fromSource(logging), '--set', 'flushSeconds=0'], field: /\/flushSeconds'?: minimum/ },
      { args: [...fromSource(logging), '--set', 'maxUnavailable=0'], field: /\/maxUnavailable'?: minimum/ },
      { args: [...fromSource(logging), '--set', 'resources.requests.cpus=1'], field: /\/resources\/requests'?: additional properties 'cpus' not allowed/ },
      { args: [...fromSource(monitoring), '--set', 'prometheus.retention=15 days'], field: /\/prometheus\/retention'?: .*(match|pattern)/ },
      { args: [...fromSource(monitoring), '--set', 'prometheus.service.port=70000'], field: /\/prometheus\/service\/port'?: maximum/ },
      { args: [...fromSource(monitoring), '--set-string', 'grafana.enabled=yes'], field: /\/grafana\/enabled'?: got string, want boolean/ },
      { args: [...fromSource(ingress), '--set', 'service.type=External'], field: /\/service\/type'?: value must be one of/ },
      { args: [...fromSource(ingress), '--set', 'ingressClass.isDefault=true'], field: /\/ingressClass'?: additional properties 'isDefault' not allowed/ },
      { args: [...fromSource(ingress), '--set', 'service.nodePorts.http=80'], field: /\/service\/nodePorts\/http/ },
    ];
    const results = await mapLimited(cases, HELM_CONCURRENCY, (c) => runHelm(c.args));
    results.forEach((result, i) => {
      const c = cases[i] as (typeof cases)[number];
      assert.notEqual(result.code, 0, `helm ${c.args.slice(-2).join(' ')} should be refused`);
      assert.match(result.stderr, /values don't meet the specifications of the schema/);
      assert.match(result.stderr, c.field, `helm ${c.args.slice(-2).join(' ')}:\n${result.stderr}`);
    });
  });

  test('the chart repository is read-only and serves only its own files', async () => {
    const raw = (method: string, path: string) =>
      new Promise<{ status: number; type: string | undefined; length: string | undefined; body: string; allow: string | undefined }>((resolve, reject) => {
        const url = new URL(repo.url);
        const req = request({ host: url.hostname, port: url.port, method, path }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (body += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], length: res.headers['content-length'], body, allow: res.headers.allow }));
        });
        req.on('error', reject);
        req.end();
      });
    const index = await raw('GET', '/index.yaml');
    assert.equal(index.status, 200);
    assert.match(index.type ?? '', /yaml/);
    assert.match(index.body, /^apiVersion: v1\nentries:/);
    const archive = `${catalog.addons[0]?.chart}-${catalog.addons[0]?.versions[0]?.version}.tgz`;
    const head = await raw('HEAD', `/${archive}`);
    assert.equal(head.status, 200);
    assert.equal(head.type, 'application/gzip');
    assert.ok(Number(head.length) > 100);
    assert.equal(head.body, '');
    const tgz = await fetch(`${repo.url}/${archive}`);
    assert.equal(tgz.status, 200);
    assert.deepEqual([...new Uint8Array(await tgz.arrayBuffer()).subarray(0, 2)], [0x1f, 0x8b], 'a gzip stream');
    for (const path of ['/../package.json', '/..%2fpackage.json', '/%2e%2e/package.json', '/..%2F..%2Fetc%2Fpasswd', '/%2e%2e%2fscripts%2ftools.ts', '//etc/passwd', '/.stamp', '/sub/index.yaml', '/index.yaml/', '/no-such-chart-1.0.0.tgz', '/', '/package.json', '/%zz']) {
      assert.equal((await raw('GET', path)).status, 404, `GET ${path}`);
    }
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const refused = await raw(method, '/index.yaml');
      assert.equal(refused.status, 405, method);
      assert.equal(refused.allow, 'GET, HEAD');
    }
  });

  test('packaging again is a no-op: the stamp says nothing changed', async () => {
    const stamp = await readFile(join(repoDir, '.stamp'), 'utf8');
    const indexBefore = await readFile(join(repoDir, 'index.yaml'), 'utf8');
    const started = Date.now();
    assert.equal(await packageCharts(), repoDir);
    assert.ok(Date.now() - started < 2_000);
    assert.equal(await readFile(join(repoDir, '.stamp'), 'utf8'), stamp);
    assert.equal(await readFile(join(repoDir, 'index.yaml'), 'utf8'), indexBefore, 'index.yaml untouched');
  });
});
