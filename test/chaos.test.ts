import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Chaos, chaosEnv } from '../chaos/context.js';
import { formatTable, runMixedKillWave } from '../chaos/engine.js';
import { createCluster, ensureFleet, scaleDown, scaleUp } from '../chaos/trials.js';
import { startTestStack, type TestStack } from './helpers/stack.js';

/**
 * The bounded version of `npm run chaos`, with its own trial code: three
 * operations (a create, a scale-up, a scale-down) side by side and one kill -9
 * of the worker a random delay into each. Every one must succeed, and Rancher
 * must show exactly one cluster per name and `quantity` live nodes per pool.
 *
 * (Add-on and function operations are left to `npm run chaos`, which has the time
 * for their Helm calls and health waits.)
 */
describe('chaos: kill -9 at a random point (bounded)', () => {
  let stack: TestStack;
  let chaos: Chaos;

  before(async () => {
    stack = await startTestStack({ env: chaosEnv });
    chaos = new Chaos(stack, (line) => {
      if (process.env.KUMO_TEST_ECHO) process.stderr.write(`[chaos] ${line}\n`);
    });
  });
  after(async () => {
    await stack?.destroy();
  });

  test('a create, a scale-up and a scale-down, the worker killed in the middle: all complete, nothing duplicated', async () => {
    await ensureFleet(chaos, [2, 3]);
    const row = await runMixedKillWave(chaos, 'kill -9: createCluster + scaleNodePool', [
      { kind: createCluster, slots: [1] },
      { kind: scaleUp, slots: [2] },
      { kind: scaleDown, slots: [3] },
    ]);
    const table = formatTable([row]);
    assert.deepEqual(row.problems, [], `${table}\n${row.problems.join('\n')}`);
    assert.equal(row.runs, 3, table);
    assert.equal(row.disrupted, 3, 'the kill came while each had started');
    assert.equal(row.completed, 3, table);
    assert.equal(row.stuck, 0, table);
    assert.equal(row.duplicates, 0, table);

    // The worker the harness started after the kill is the one running.
    const worker = stack.worker();
    assert.ok(worker && worker.exitCode === null, 'a worker runs after the kill');
    assert.deepEqual(chaos.unexpectedWorkerExits, []);
  });
});
