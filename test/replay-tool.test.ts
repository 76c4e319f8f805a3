// The replay tool (scripts/replay.ts and `kumo ops replay`): saved histories against this checkout's
// workflows and against test/fixtures/changed-workflows.ts, a deliberately non-deterministic copy.
// No stack: the histories are the files of test/histories/.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { eventIdIn, eventTypeName, innerMessage, replayHistories } from '../scripts/replay.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const historiesDir = join(root, 'test', 'histories');
const changed = join(root, 'test', 'fixtures', 'changed-workflows.ts');
const files = readdirSync(historiesDir).filter((file) => file.endsWith('.json')).sort();
const load = (file: string) => ({ name: file, history: JSON.parse(readFileSync(join(historiesDir, file), 'utf8')) as unknown });

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `node --import tsx <args>` from the project root, without an API configured. */
function node(args: string[], timeoutMs = 120_000): Promise<Run> {
  const env: Record<string, string | undefined> = { ...process.env, KUMO_URL: undefined, KUMO_TOKEN: undefined, NO_COLOR: '1' };
  return new Promise((done) => {
    execFile(process.execPath, ['--import', 'tsx', ...args], { cwd: root, env, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      done({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

const show = (run: Run) => `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;

describe('replay tool', () => {
  test('reading the SDK messages: the inner message, an event id, event type names', () => {
    const wrapped =
      'Replay failed with a nondeterminism error. This means that the workflow code as written is not compatible with the history that was fed in. ' +
      'Details: Workflow activation completion failed: Failure { failure: Some(Failure { message: "[TMPRL1100] Nondeterminism error: Timer machine does not handle this event: HistoryEvent(id: 29, ActivityTaskScheduled)", source: "" }) }';
    assert.equal(innerMessage(wrapped), '[TMPRL1100] Nondeterminism error: Timer machine does not handle this event: HistoryEvent(id: 29, ActivityTaskScheduled)');
    assert.equal(innerMessage('plain'), 'plain');
    assert.equal(eventIdIn(innerMessage(wrapped)), 29);
    assert.equal(eventIdIn('Nondeterminism error: command mismatch (event 12 of 40)'), 12);
    assert.equal(eventIdIn("Activity type of scheduled event 'createNodePools' does not match activity type of activity command 'recordInventory'"), undefined);
    assert.equal(eventTypeName('EVENT_TYPE_ACTIVITY_TASK_SCHEDULED'), 'ActivityTaskScheduled');
    assert.equal(eventTypeName('TimerStarted'), 'TimerStarted');
  });

  test('every saved history replays against this checkout', async () => {
    assert.ok(files.length >= 4);
    const reports = await replayHistories(files.map(load));
    assert.equal(reports.length, files.length);
    for (const [index, report] of reports.entries()) {
      assert.equal(report.name, files[index]);
      assert.ok(report.ok, `${report.name} does not replay: ${JSON.stringify(report.error)}`);
      assert.notEqual(report.workflowType, 'unknown');
      assert.ok(report.workflowId && report.runId, `${report.name} has its workflow and run ids`);
    }
  });

  test('the changed copy: non-determinism with the first diverging event; other failures are told apart', async () => {
    const succeeded = load('createCluster-succeeded.json');
    const reports = await replayHistories([succeeded, load('deleteCluster.json'), { name: 'not-a-history', history: { hello: 'world' } }], { workflowsPath: changed });
    const [report, missing, garbage] = reports;
    assert.ok(report && missing && garbage);
    assert.equal(report.ok, false);
    assert.equal(report.workflowType, 'createCluster');
    assert.equal(report.error?.kind, 'nondeterminism', JSON.stringify(report));
    assert.match(report.error.message, /Nondeterminism/);
    assert.equal(typeof report.error.eventId, 'number', JSON.stringify(report));
    // It is the event the reordered code no longer matches: createNodePools scheduled where the code now records the inventory.
    const event = (succeeded.history as { events: Array<Record<string, any>> }).events.find((e) => Number(e.eventId) === report.error?.eventId);
    assert.ok(event);
    assert.equal(report.error.eventType, event.eventType);
    assert.equal(event.eventType, 'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED');
    assert.equal(event.activityTaskScheduledEventAttributes.activityType.name, 'createNodePools');
    // The changed copy exports createCluster only: another workflow type fails to replay, without an event.
    assert.equal(missing.ok, false);
    assert.equal(missing.error?.kind, 'failure');
    assert.match(missing.error.message, /deleteCluster/);
    assert.equal(garbage.ok, false);
    assert.equal(garbage.error?.kind, 'failure');
    assert.match(garbage.error.message, /not a workflow history/);
  });

  test('kumo ops replay --history: exit 0 on this code, 1 with the diverging event on the changed copy', async () => {
    const history = 'test/histories/createCluster-succeeded.json';
    const [clean, diverged] = await Promise.all([
      node(['cli/main.ts', 'ops', 'replay', '--history', history]),
      node(['cli/main.ts', 'ops', 'replay', '--history', history, '--workflows', 'test/fixtures/changed-workflows.ts']),
    ]);
    assert.equal(clean.code, 0, show(clean));
    assert.match(clean.stdout, /replays cleanly on this code/);
    assert.match(clean.stderr, /bundling/);
    assert.equal(diverged.code, 1, show(diverged));
    assert.match(diverged.stdout, /not deterministic on this code/);
    assert.match(diverged.stdout, /first diverging event:\s+\d+ ActivityTaskScheduled/i);
    assert.match(diverged.stdout, /Nondeterminism error/);
  });

  test('npm run replay -- --history: exit 0 when the saved run replays', async () => {
    const run = await node(['scripts/replay.ts', '--history', 'test/histories/createCluster-succeeded.json']);
    assert.equal(run.code, 0, show(run));
    assert.match(run.stdout, /cluster\/wf-ok\/mutation\s+createCluster\s+ok/);
    assert.match(run.stdout, /1 of 1 runs replay on this code/);
  });
});
