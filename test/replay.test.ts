import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { bundleWorkflowCode, DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { workflowsPath } from '../workers/worker.js';

/**
 * Replays every saved history under test/histories/ against the current workflow
 * code: a change that would break runs in flight fails here, before it ships.
 * Histories are the Temporal CLI's JSON export (`temporal workflow show --output json`);
 * `KUMO_RECORD_HISTORIES=1 node --import tsx --test test/workflow.test.ts` records fresh ones.
 */
const historiesDir = fileURLToPath(new URL('./histories/', import.meta.url));
const histories = readdirSync(historiesDir)
  .filter((file) => file.endsWith('.json'))
  .map((file) => ({ file, history: JSON.parse(readFileSync(`${historiesDir}${file}`, 'utf8')) as unknown }));

const quiet = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: console.error };

describe('replay of saved workflow histories', () => {
  Runtime.install({ logger: new DefaultLogger('ERROR'), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' }, forward: {} } } });

  test('there is a saved history for every workflow type', async () => {
    const types = new Set(
      histories.map(({ history }) => (history as any).events[0].workflowExecutionStartedEventAttributes.workflowType.name as string),
    );
    const exported = Object.keys(await import('../workflows/index.js')).sort();
    assert.deepEqual([...types].sort(), exported);
    assert.ok(histories.length >= 4, 'success, failure, retry and cancellation are all covered');
  });

  test('every saved history replays against the current workflow code', async () => {
    const workflowBundle = await bundleWorkflowCode({ workflowsPath, logger: quiet });
    for (const { file, history } of histories) {
      await assert.doesNotReject(Worker.runReplayHistory({ workflowBundle }, history, file), `${file} no longer replays`);
    }
  });

  test('a deliberately reordered workflow is caught as non-deterministic', async () => {
    const workflowBundle = await bundleWorkflowCode({
      workflowsPath: fileURLToPath(new URL('./fixtures/changed-workflows.ts', import.meta.url)),
      logger: quiet,
    });
    const succeeded = histories.find(({ file }) => file === 'createCluster-succeeded.json');
    assert.ok(succeeded);
    await assert.rejects(Worker.runReplayHistory({ workflowBundle }, succeeded.history, 'changed'), (err: Error) => err.name === 'DeterminismViolationError');
  });
});
