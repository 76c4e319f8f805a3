import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { recordHistory, startTestStack, waitForOperation, type TestStack } from './helpers/stack.js';
import { waitFor } from './helpers/wait.js';

/**
 * The Function Service end to end: the API, the worker building images
 * daemonless with pip and pushing them to the real registry, the simulator
 * running each Knative revision as a real Python process from that image.
 */
describe('functions', { skip: process.env.KUMO_SKIP_FUNCTIONS === '1' ? 'KUMO_SKIP_FUNCTIONS=1' : false }, () => {
  let stack: TestStack;
  let clusterId: string;

  const handler = (result: string) =>
    [
      'import time',
      'import six',
      '',
      'def handle(event, context):',
      '    event = event or {}',
      '    if event.get("sleep"):',
      '        time.sleep(event["sleep"])',
      `    return {"result": ${result}, "six": six.__version__, "name": event.get("name")}`,
      '',
    ].join('\n');
  const spec = (name: string, files: Record<string, string>, extra: Record<string, unknown> = {}) => ({ name, source: { files }, ...extra });

  async function deploy(body: Record<string, unknown>, method = 'PUT'): Promise<any> {
    const response = await stack.api(method === 'PUT' ? `/v1/functions/${String(body.name)}` : '/v1/functions', { method, body });
    assert.equal(response.status, 202, JSON.stringify(response.body));
    return waitForOperation(stack, response.body.operation.id, 300_000);
  }
  const invoke = (name: string, event: unknown) => stack.api(`/v1/functions/${name}/invoke`, { method: 'POST', body: event });
  const fn = async (name: string) => (await stack.api(`/v1/functions/${name}`)).body;
  async function runtimeLogs(name: string): Promise<any[]> {
    const revision = (await fn(name)).revision;
    const { lines } = await stack.sim(`/admin/clusters/${clusterId}/knative/functions/${revision}/logs`);
    return (lines as string[]).flatMap((line) => {
      try {
        return [JSON.parse(line)];
      } catch {
        return [];
      }
    });
  }
  const manifestCount = () => {
    const dir = join(stack.dataDir, 'registry', 'storage', 'docker', 'registry', 'v2', 'repositories', 'functions', 'hello', '_manifests', 'revisions', 'sha256');
    return existsSync(dir) ? readdirSync(dir).length : 0;
  };
  async function manifest(image: string): Promise<any> {
    const [repoPath, digest] = image.slice(image.indexOf('/') + 1).split('@') as [string, string];
    const response = await fetch(`${stack.registryUrl}/v2/${repoPath}/manifests/${digest}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(response.status, 200, `the registry serves ${image} by digest`);
    return response.json();
  }

  before(async () => {
    stack = await startTestStack({ env: { KUMO_FUNCTION_READY_TIMEOUT_S: '60' } });
    assert.ok(stack.registryUrl, 'the embedded stack runs a registry');
    const created = await stack.api('/v1/clusters', { body: { name: 'functions', kubernetesVersion: 'v1.30.6-rancher1-1', nodePools: [{ name: 'all', roles: ['etcd', 'controlplane', 'worker'], quantity: 1 }] } });
    assert.equal(created.status, 202);
    assert.equal((await waitForOperation(stack, created.body.operation.id, 120_000)).status, 'succeeded');
    clusterId = (await stack.api('/v1/clusters/functions')).body.rancher.id;
  });
  after(async () => {
    await stack?.destroy();
  });

  test('bad registrations are refused before anything runs', async () => {
    for (const body of [
      {},
      spec('Bad_Name', { 'handler.py': 'x' }),
      spec('ok', {}),
      spec('ok', { '../evil.py': 'x' }),
      spec('ok', { 'handler.py': 'x' }, { handler: 'nodot' }),
      spec('ok', { 'handler.py': 'x' }, { env: { KUMO_HANDLER: 'x' } }),
      spec('ok', { 'handler.py': 'x' }, { minScale: 5, maxScale: 2 }),
      spec('ok', { 'handler.py': 'x' }, { runtime: 'python2' }),
      { name: 'ok', source: { tarball: 'bm90IGEgdGFy' } },
    ]) {
      const response = await stack.api('/v1/functions', { body });
      assert.equal(response.status, 400, `${JSON.stringify(body)} → ${response.status} ${JSON.stringify(response.body)}`);
      assert.ok(response.body.errors?.length, 'names the field');
    }
    assert.equal((await stack.api('/v1/functions')).body.items.length, 0);
    assert.equal((await stack.api('/v1/functions/nope')).status, 404);
    assert.equal((await stack.api('/v1/functions/nope/invoke', { method: 'POST', body: {} })).status, 404);
  });

  let firstImage = '';

  test('a function importing a real package is built, pushed by digest, deployed Ready and invoked', async () => {
    const operation = await deploy(spec('hello', { 'handler.py': handler('"v1"'), 'requirements.txt': 'six==1.16.0\n' }, { concurrency: 1, env: { GREETING: 'hi' } }), 'POST');
    assert.equal(operation.status, 'succeeded', JSON.stringify(operation.failure));
    recordHistory(stack, 'deployFunction-succeeded', operation);
    const hello = await fn('hello');
    assert.equal(hello.state, 'ready');
    assert.match(hello.image, /^127\.0\.0\.1:\d+\/functions\/hello@sha256:[0-9a-f]{64}$/);
    assert.deepEqual(hello.envNames, ['GREETING'], 'env names only: values may be secrets');
    firstImage = hello.image;
    const image = await manifest(hello.image);
    assert.equal(image.layers.length, 3);

    const result = await invoke('hello', { name: 'kumo' });
    assert.equal(result.status, 200, JSON.stringify(result.body));
    assert.deepEqual(result.body.result, { result: 'v1', six: '1.16.0', name: 'kumo' });
    assert.equal((await stack.api('/v1/functions', { body: spec('hello', { 'handler.py': 'x' }) })).status, 409, 'the name is taken');
  });

  test('a code-only change reuses the dependency layer', async () => {
    const operation = await deploy(spec('hello', { 'handler.py': handler('"v2"'), 'requirements.txt': 'six==1.16.0\n' }, { concurrency: 1 }));
    assert.equal(operation.status, 'succeeded', JSON.stringify(operation.failure));
    assert.equal(operation.result.dependenciesCached, true);
    const hello = await fn('hello');
    assert.notEqual(hello.image, firstImage);
    const [before, after] = [await manifest(firstImage), await manifest(hello.image)];
    assert.equal(after.layers[0].digest, before.layers[0].digest, 'same dependency layer');
    assert.notEqual(after.layers[2].digest, before.layers[2].digest, 'new code layer');
    assert.equal((await invoke('hello', {})).body.result.result, 'v2');
  });

  test('concurrency 1: five simultaneous invocations all complete, one at a time', async () => {
    const results = await Promise.all(Array.from({ length: 5 }, (_, i) => invoke('hello', { sleep: 0.3, name: `n${i}` })));
    assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 200, 200]);
    const lines = (await runtimeLogs('hello')).filter((line) => line.msg === 'invocation.start' || line.msg === 'invocation.end');
    let running = 0;
    let peak = 0;
    for (const line of lines) {
      running += line.msg === 'invocation.start' ? 1 : -1;
      peak = Math.max(peak, running);
    }
    assert.ok(lines.length >= 10, `start and end lines for each: ${lines.length}`);
    assert.equal(peak, 1, 'never two at once');
  });

  test('a syntax error fails the build naming the file and line; a requirement pip cannot resolve fails with its message; the old revision keeps serving', async () => {
    const syntax = await deploy(spec('hello', { 'handler.py': 'def handle(event, context):\n    return (\n', 'requirements.txt': 'six==1.16.0\n' }));
    assert.equal(syntax.status, 'failed');
    assert.equal(syntax.failure.type, 'InvalidSpec');
    assert.equal(syntax.failure.step, 'validate');
    assert.match(syntax.failure.message, /handler\.py, line \d/);

    const pip = await deploy(spec('hello', { 'handler.py': handler('"v3"'), 'requirements.txt': 'nosuchpackage-kumo-xyz==1.0\n' }));
    assert.equal(pip.status, 'failed');
    assert.equal(pip.failure.step, 'buildDependencies');
    assert.equal(pip.failure.type, 'InvalidSpec');
    assert.match(pip.failure.message, /No matching distribution|Could not find a version/);
    assert.equal((await invoke('hello', {})).body.result.result, 'v2');
  });

  test('a new revision that cannot start leaves traffic on the previous one, and the operation says why', async () => {
    const before = await fn('hello');
    const broken = await deploy(spec('hello', { 'handler.py': 'import nosuchmodule_kumo\n\ndef handle(event, context):\n    return 1\n' }));
    assert.equal(broken.status, 'failed');
    assert.equal(broken.failure.type, 'VerificationFailed');
    assert.match(broken.failure.message, /nosuchmodule_kumo/);
    assert.match(broken.failure.message, new RegExp(`traffic stays on ${before.revision}`));
    recordHistory(stack, 'deployFunction-rolled-back', broken);
    const after = await fn('hello');
    assert.equal(after.revision, before.revision);
    assert.equal(after.state, 'ready');
    assert.equal((await invoke('hello', {})).body.result.result, 'v2');
  });

  test('a handler that raises answers a typed error (never 200) with its traceback in the logs; one that runs too long is cut off', async () => {
    const source = [
      'import time',
      'def handle(event, context):',
      '    if event.get("fail"):',
      '        raise ValueError("bad input: " + event["fail"])',
      '    time.sleep(event.get("sleep", 0))',
      '    return "done"',
      '',
    ].join('\n');
    assert.equal((await deploy(spec('edgy', { 'handler.py': source }, { timeoutSeconds: 1 }), 'POST')).status, 'succeeded');
    const failed = await invoke('edgy', { fail: 'nope' });
    assert.equal(failed.status, 500);
    assert.equal(failed.body.error.type, 'HandlerError');
    assert.equal(failed.body.error.exception, 'ValueError');
    assert.doesNotMatch(JSON.stringify(failed.body), /Traceback/);
    const logs = await runtimeLogs('edgy');
    assert.ok(logs.some((line) => /Traceback/.test(line.traceback ?? '') && /bad input: nope/.test(line.traceback)), 'the traceback is in the logs');

    const slow = await invoke('edgy', { sleep: 30 });
    assert.equal(slow.status, 504);
    assert.equal(slow.body.error.type, 'Timeout');
    const fine = await invoke('edgy', {});
    assert.equal(fine.status, 200);
    assert.equal(fine.body.result, 'done');
  });

  test('a worker killed mid-build: the build completes, one manifest is pushed for it and the function points at it', async () => {
    const manifestsBefore = manifestCount();
    const response = await stack.api('/v1/functions/hello', { method: 'PUT', body: spec('hello', { 'handler.py': handler('"v4"'), 'requirements.txt': 'six==1.16.0\n' }, { concurrency: 1 }) });
    assert.equal(response.status, 202);
    const id = response.body.operation.id;
    await waitFor('the build under way', async () => {
      const op = (await stack.api(`/v1/operations/${id}`)).body;
      return ['buildDependencies', 'buildImage'].includes(op.step) && op.status === 'running' ? true : undefined;
    }, { timeoutMs: 120_000, intervalMs: 50 });
    await stack.killWorker();
    await stack.startWorker();
    const operation = await waitForOperation(stack, id, 300_000);
    assert.equal(operation.status, 'succeeded', JSON.stringify(operation.failure));
    assert.equal(manifestCount(), manifestsBefore + 1, 'one manifest for this build');
    const tags = (await (await fetch(`${stack.registryUrl}/v2/functions/hello/tags/list`)).json()) as { tags: string[] };
    assert.ok(tags.tags.includes(id));
    const tagged = await fetch(`${stack.registryUrl}/v2/functions/hello/manifests/${id}`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(`${new URL(stack.registryUrl ?? '').host}/functions/hello@${tagged.headers.get('docker-content-digest')}`, (await fn('hello')).image);
    assert.equal((await invoke('hello', {})).body.result.result, 'v4');
  });

  test('deleting a function removes its Knative Service', async () => {
    const response = await stack.api('/v1/functions/edgy', { method: 'DELETE' });
    assert.equal(response.status, 202);
    const operation = await waitForOperation(stack, response.body.operation.id);
    assert.equal(operation.status, 'succeeded');
    recordHistory(stack, 'deleteFunction-succeeded', operation);
    assert.equal((await stack.api('/v1/functions/edgy')).status, 404);
    const knative = await stack.sim(`/admin/clusters/${clusterId}/knative`);
    assert.ok(!JSON.stringify(knative).includes('"edgy'), 'no revision of edgy left');
  });
});
