// The `kumo` CLI: run as a child process (bin/kumo.mjs, as `npx kumo` does) against the whole stack.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { parsePool } from '../cli/clusters.js';
import { setPath } from '../cli/command.js';
import { bindingSpec } from '../cli/events.js';
import { readSourceFiles } from '../cli/functions.js';
import { groups, main } from '../cli/main.js';
import { parseSince } from '../cli/ops.js';
import { formatDuration, relativeTime, table } from '../cli/output.js';
import { parseWaves } from '../cli/addons.js';
import { freePort } from '../scripts/tools.js';
import { startTestStack, type TestStack } from './helpers/stack.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin', 'kumo.mjs');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `kumo args…` as a child process, bounded by `timeoutMs`. */
function kumo(args: string[], env: Record<string, string> = {}, timeoutMs = 120_000): Promise<Run> {
  const base: Record<string, string | undefined> = { ...process.env, KUMO_URL: undefined, KUMO_TOKEN: undefined, NO_COLOR: undefined };
  return new Promise((done) => {
    execFile(process.execPath, [bin, ...args], { cwd: root, env: { ...base, ...env }, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      done({ code, stdout, stderr });
    });
  });
}

const show = (run: Run) => `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;

/** Runs main() in this process with captured output (for the many quick help checks). */
async function inProcess(args: string[]): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await main(args, { env: {}, stdout: { write: (text: string) => (stdout += text) }, stderr: { write: (text: string) => (stderr += text) } });
  return { code, stdout, stderr };
}

describe('kumo CLI without an API', () => {
  test('helpers: relative times, durations, --since, pools, --set, waves, tables', () => {
    const now = Date.parse('2024-05-01T12:00:00Z');
    assert.equal(relativeTime('2024-05-01T11:57:00Z', now), '3m ago');
    assert.equal(relativeTime('2024-05-01T09:00:00Z', now), '3h ago');
    assert.equal(relativeTime('2024-04-28T12:00:00Z', now), '3d ago');
    assert.equal(relativeTime('2024-05-01T12:00:40Z', now), 'in 40s');
    assert.equal(formatDuration(192_000), '3m12s');
    assert.equal(formatDuration(4200), '4.2s');
    assert.equal(parseSince('24h'), 86_400_000);
    assert.equal(parseSince('30m'), 1_800_000);
    assert.equal(parseSince('7d'), 7 * 86_400_000);
    assert.throws(() => parseSince('yesterday'));
    assert.deepEqual(parsePool('all:etcd,controlplane,worker:1'), { name: 'all', roles: ['etcd', 'controlplane', 'worker'], quantity: 1 });
    assert.throws(() => parsePool('all:etcd'));
    assert.throws(() => parsePool('all:master:1'));
    assert.deepEqual(setPath(setPath({}, 'output.type=stdout'), 'replicas=2'), { output: { type: 'stdout' }, replicas: 2 });
    assert.deepEqual(parseWaves('1,10%,100%'), [1, '10%', '100%']);
    assert.equal(table(['NAME', 'STATE'], [['a', 'active'], ['long-name', 'failed']]), 'NAME       STATE\na          active\nlong-name  failed');
  });

  test('bindings, pipelines and events are groups; bindings create builds its spec from flags over a file', async () => {
    for (const [name, alias] of [['bindings', 'binding'], ['pipelines', 'pipeline'], ['events', 'event']] as const) {
      const help = await inProcess([alias, '--help']);
      assert.equal(help.code, 0, show(help));
      assert.match(help.stdout, new RegExp(`^kumo ${name}: `, 'm'));
    }
    assert.match((await inProcess(['fn', '--help'])).stdout, /^  invocations <name>/m);
    assert.match((await inProcess(['fn', 'deploy', '--help'])).stdout, /--event-concurrency N/);
    assert.deepEqual(bindingSpec('x', { function: 'f', source: 's', type: 't', attempts: '5' }), { name: 'x', function: 'f', source: 's', filter: { type: 't' }, delivery: { attempts: 5 } });
    assert.deepEqual(bindingSpec('nightly', { pipeline: 'p', cron: '0 3 * * *' }), { name: 'nightly', pipeline: 'p', schedule: { cron: '0 3 * * *' } });
    const dir = mkdtempSync(join(tmpdir(), 'kumo-cli-binding-'));
    try {
      const file = join(dir, 'binding.json');
      writeFileSync(file, JSON.stringify({ name: 'a', function: 'f', filter: { typePrefix: 'x.', attributes: { subject: 'y' } } }));
      assert.deepEqual(bindingSpec(undefined, { file, pipeline: 'p', type: 'x.y' }), { name: 'a', pipeline: 'p', filter: { type: 'x.y', attributes: { subject: 'y' } } });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    for (const args of [['bindings', 'create', 'x'], ['bindings', 'create', '--function', 'f'], ['bindings', 'create', 'x', '--function', 'f', '--pipeline', 'p'], ['bindings', 'create', 'x', '--function', 'f', '--cron', '@daily', '--every', '5m'], ['events', 'send', '--type', 't'], ['events', 'send', '--source', 's', '--type', 't', '--data', '{nope'], ['pipelines', 'apply']]) {
      const run = await inProcess(args);
      assert.equal(run.code, 2, `${args.join(' ')}: ${show(run)}`);
    }
  });

  test('fn deploy reads every regular file but dotfiles, __pycache__ and *.pyc', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kumo-cli-fn-'));
    try {
      writeFileSync(join(dir, 'handler.py'), 'def handle(event, context):\n    return 1\n');
      writeFileSync(join(dir, 'requirements.txt'), 'six==1.16.0\n');
      writeFileSync(join(dir, '.env'), 'SECRET=1\n');
      writeFileSync(join(dir, 'old.pyc'), 'x');
      mkdirSync(join(dir, '__pycache__'));
      writeFileSync(join(dir, '__pycache__', 'handler.cpython-311.pyc'), 'x');
      mkdirSync(join(dir, '.git'));
      writeFileSync(join(dir, '.git', 'HEAD'), 'ref');
      mkdirSync(join(dir, 'lib'));
      writeFileSync(join(dir, 'lib', 'util.py'), 'X = 1\n');
      assert.deepEqual(Object.keys(readSourceFiles(dir)).sort(), ['handler.py', 'lib/util.py', 'requirements.txt']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('--help works for kumo and every command group (child process), and every command (in process)', async () => {
    const top = await kumo(['--help']);
    assert.equal(top.code, 0, show(top));
    assert.match(top.stdout, /Exit codes:/);
    for (const code of ['0', '1', '2', '3', '4', '5', '6', '7']) assert.match(top.stdout, new RegExp(`^  ${code}  `, 'm'));
    for (const group of groups) {
      const run = await kumo([group.name, '--help']);
      assert.equal(run.code, 0, show(run));
      for (const command of group.commands) assert.match(run.stdout, new RegExp(`^  ${command.name}\\b`, 'm'), `${group.name} --help lists ${command.name}`);
      for (const command of group.commands) {
        const help = await inProcess([group.name, command.name, '--help']);
        assert.equal(help.code, 0, show(help));
        assert.match(help.stdout, new RegExp(`^Usage: kumo ${group.name} ${command.name}`, 'm'));
      }
    }
    const version = await kumo(['--version']);
    assert.equal(version.code, 0, show(version));
    assert.match(version.stdout, /^\d+\.\d+\.\d+/);
  });

  test('usage errors exit 2 with the usage', async () => {
    const unknown = await kumo(['frobnicate']);
    assert.equal(unknown.code, 2, show(unknown));
    assert.match(unknown.stderr, /unknown command "frobnicate"/);
    assert.match(unknown.stderr, /Usage: kumo/);
    const unknownSub = await inProcess(['clusters', 'frobnicate']);
    assert.equal(unknownSub.code, 2, show(unknownSub));
    assert.match(unknownSub.stderr, /Usage: kumo clusters <command>/);
    const unknownFlag = await inProcess(['clusters', 'ls', '--bogus']);
    assert.equal(unknownFlag.code, 2, show(unknownFlag));
    assert.match(unknownFlag.stderr, /--bogus/);
    assert.match(unknownFlag.stderr, /Usage: kumo clusters ls/);
    const missing = await inProcess(['clusters', 'scale', 'a', 'b']);
    assert.equal(missing.code, 2, show(missing));
    assert.match(missing.stderr, /missing argument <quantity>/);
    const notNumber = await inProcess(['clusters', 'scale', 'a', 'b', 'many']);
    assert.equal(notNumber.code, 2, show(notNumber));
    const createIncomplete = await inProcess(['clusters', 'create', '--name', 'x']);
    assert.equal(createIncomplete.code, 2, show(createIncomplete));
    assert.match(createIncomplete.stderr, /missing --version, --pool/);
    const badOutput = await inProcess(['-o', 'yaml', 'clusters', 'ls']);
    assert.equal(badOutput.code, 2, show(badOutput));
    const nothing = await inProcess([]);
    assert.equal(nothing.code, 2, show(nothing));
  });

  test('an unreachable API exits 7', async () => {
    const port = await freePort();
    const run = await kumo(['clusters', 'ls'], { KUMO_URL: `http://127.0.0.1:${port}` }, 30_000);
    assert.equal(run.code, 7, show(run));
    assert.match(run.stderr, /cannot reach the Kumo API/);
    const flag = await kumo(['--url', `http://127.0.0.1:${port}`, 'ops', 'get', 'op-x'], {}, 30_000);
    assert.equal(flag.code, 7, show(flag));
  });
});

describe('kumo CLI against the stack', () => {
  let stack: TestStack;
  let env: Record<string, string>;
  // The auth layer takes its admin token from KUMO_ADMIN_TOKEN when set; without auth it is unused.
  const adminToken = `kumo_cli_test_${randomBytes(16).toString('hex')}`;

  before(async () => {
    stack = await startTestStack({ env: { KUMO_ADMIN_TOKEN: adminToken } });
    const token = stack.env.KUMO_ADMIN_TOKEN ?? adminToken;
    env = { KUMO_URL: stack.apiUrl, KUMO_TOKEN: token, KUMO_POLL_MS: '300' };
  });

  after(async () => {
    await stack?.destroy();
  });

  test('clusters create --wait follows the operation step by step and exits 0', async () => {
    const run = await kumo(['clusters', 'create', '--name', 'cli-a', '--version', 'v1.30.6-rancher1-1', '--pool', 'all:etcd,controlplane,worker:1', '--wait'], env, 120_000);
    assert.equal(run.code, 0, show(run));
    for (const step of ['validate', 'createRancherCluster', 'createNodePools', 'waitUntilActive', 'recordInventory']) assert.match(run.stdout, new RegExp(`${step} \\(\\d/5\\)`), show(run));
    assert.match(run.stdout, /operation op-\S+ succeeded in/);
  });

  test('clusters ls shows it; -o json clusters get prints the API document', async () => {
    const list = await kumo(['clusters', 'ls'], env);
    assert.equal(list.code, 0, show(list));
    assert.match(list.stdout, /^NAME\s+STATE\s+VERSION/m);
    assert.match(list.stdout, /^cli-a\s+active\s+v1\.30\.6-rancher1-1\s+1\/1/m);
    const get = await kumo(['-o', 'json', 'clusters', 'get', 'cli-a'], env);
    assert.equal(get.code, 0, show(get));
    const cluster = JSON.parse(get.stdout);
    assert.equal(cluster.name, 'cli-a');
    assert.equal(cluster.state, 'active');
    const human = await kumo(['clusters', 'get', 'cli-a'], env);
    assert.equal(human.code, 0, show(human));
    assert.match(human.stdout, /Node pools/);
    assert.match(human.stdout, /ago\)/);
  });

  let scaleId = '';

  test('clusters scale --wait exits 0; ops ls --kind lists it; ops get shows its steps', async () => {
    const run = await kumo(['clusters', 'scale', 'cli-a', 'all', '2', '--wait'], env, 120_000);
    assert.equal(run.code, 0, show(run));
    assert.match(run.stdout, /setQuantity/);
    assert.match(run.stdout, /waitForNodes/);

    const list = await kumo(['ops', 'ls', '--kind', 'cluster.scale'], env);
    assert.equal(list.code, 0, show(list));
    assert.match(list.stdout, /cluster\.scale\s+cluster\/cli-a\s+succeeded/);
    assert.match(list.stdout, /ago|just now/);
    const page = JSON.parse((await kumo(['-o', 'json', 'ops', 'ls', '--kind', 'cluster.scale', '--since', '1h'], env)).stdout);
    assert.equal(page.items.length, 1);
    scaleId = page.items[0].id;
    assert.equal(page.items[0].kind, 'cluster.scale');

    const get = await kumo(['ops', 'get', scaleId], env);
    assert.equal(get.code, 0, show(get));
    assert.match(get.stdout, /^Status:\s+succeeded/m);
    for (const step of ['setQuantity', 'waitForNodes', 'recordInventory']) assert.match(get.stdout, new RegExp(`^\\d\\s+${step}\\s+succeeded`, 'm'), show(get));

    const watch = await kumo(['ops', 'watch', scaleId], env, 30_000);
    assert.equal(watch.code, 0, show(watch));
    assert.match(watch.stdout, /succeeded/);
  });

  test('API errors map to exit codes: 404 → 4, 400 → 6 with the field, 409 → 5', async () => {
    const missing = await kumo(['clusters', 'get', 'nope'], env);
    assert.equal(missing.code, 4, show(missing));
    assert.match(missing.stderr, /Not Found \(404\)/);

    const invalid = await kumo(['clusters', 'scale', 'cli-a', 'all', '0'], env);
    assert.equal(invalid.code, 6, show(invalid));
    assert.match(invalid.stderr, /\(400\)/);
    assert.match(invalid.stderr, /^\s+quantity: /m);

    const duplicate = await kumo(['clusters', 'create', '--name', 'cli-a', '--version', 'v1.30.6-rancher1-1', '--pool', 'all:etcd,controlplane,worker:1'], env);
    assert.equal(duplicate.code, 5, show(duplicate));
    assert.match(duplicate.stderr, /Conflict \(409\)/);

    const opMissing = await kumo(['ops', 'get', 'op-nope'], env);
    assert.equal(opMissing.code, 4, show(opMissing));
  });

  test('a wrong token exits 3', async () => {
    const run = await kumo(['clusters', 'ls'], { ...env, KUMO_TOKEN: 'not-a-token' });
    assert.equal(run.code, 3, show(run));
    assert.match(run.stderr, /\(401\)/);
  });

  test('tokens are created with the CLI; a viewer token cannot change anything (exit 3); the audit log names who did what', async () => {
    const created = await kumo(['tokens', 'create', 'cli-viewer', '--role', 'viewer'], env);
    assert.equal(created.code, 0, show(created));
    const secret = created.stdout.trim();
    assert.match(secret, /^kumo_/);
    const viewer = { ...env, KUMO_TOKEN: secret };
    assert.equal((await kumo(['clusters', 'ls'], viewer)).code, 0);
    const refused = await kumo(['clusters', 'scale', 'cli-a', 'all', '3'], viewer);
    assert.equal(refused.code, 3, show(refused));
    assert.match(refused.stderr, /operator/);
    assert.equal((await kumo(['tokens', 'ls'], viewer)).code, 3, 'tokens are for admins');

    const listed = await kumo(['-o', 'json', 'tokens', 'ls'], env);
    assert.ok(!listed.stdout.includes(secret), 'secrets are never listed');
    const audit = await kumo(['-o', 'json', 'audit', 'ls', '--since', '1h'], env);
    assert.equal(audit.code, 0, show(audit));
    const entries = JSON.parse(audit.stdout).items as Array<{ actor: string; method: string; path: string; status: number; operationId: string | null }>;
    const create = entries.find((e) => e.path === '/v1/clusters' && e.method === 'POST' && e.status === 202);
    assert.ok(create, show(audit));
    assert.equal(create.actor, 'admin');
    assert.match(create.operationId ?? '', /^op-/);
    assert.ok(entries.some((e) => e.path === '/v1/tokens' && e.status === 201), 'token creation is audited');
    assert.ok(!entries.some((e) => e.actor === 'cli-viewer' && e.status < 400), 'the viewer changed nothing');
    const human = await kumo(['audit', 'ls', '--actor', 'admin'], env);
    assert.match(human.stdout, /POST \/v1\/clusters/);
  });

  test('events: ls on an empty stack, send (unmatched), get with its deliveries', async () => {
    const empty = await kumo(['events', 'ls'], env);
    assert.equal(empty.code, 0, show(empty));
    assert.equal(empty.stdout, '');
    assert.match(empty.stderr, /No events\./);

    const sent = await kumo(['events', 'send', '--source', 's', '--type', 't', '--data', '{"a":1}'], env);
    assert.equal(sent.code, 0, show(sent));
    const match = /^event (evt-[0-9a-f]{32}) unmatched$/m.exec(sent.stdout);
    assert.ok(match, show(sent));
    const eventId = match[1]!;

    const get = await kumo(['events', 'get', eventId], env);
    assert.equal(get.code, 0, show(get));
    assert.match(get.stdout, new RegExp(`^ID:\\s+${eventId}$`, 'm'));
    assert.match(get.stdout, /^Source:\s+s$/m);
    assert.match(get.stdout, /^Type:\s+t$/m);
    assert.match(get.stdout, /^Status:\s+unmatched$/m);
    assert.match(get.stdout, /"a": 1/);
    assert.match(get.stdout, /^Deliveries\nnone: no binding matched$/m);

    const listed = JSON.parse((await kumo(['-o', 'json', 'events', 'ls', '--source', 's'], env)).stdout);
    assert.deepEqual(listed.items.map((e: { id: string }) => e.id), [eventId]);
  });

  test('bindings create with an unknown function is a 400 naming the field (exit 6); pipelines ls is empty', async () => {
    const bad = await kumo(['bindings', 'create', 'x', '--function', 'nope'], env);
    assert.equal(bad.code, 6, show(bad));
    assert.match(bad.stderr, /\(400\)/);
    assert.match(bad.stderr, /^\s+function: no function named "nope"$/m);

    const pipelines = await kumo(['pipelines', 'ls'], env);
    assert.equal(pipelines.code, 0, show(pipelines));
    assert.equal(pipelines.stdout, '');
    assert.match(pipelines.stderr, /No pipelines\./);
  });
});
