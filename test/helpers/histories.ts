import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { projectRoot, temporalCli } from '../../scripts/tools.js';

/**
 * With KUMO_RECORD_HISTORIES=1, saves a run's history as the Temporal CLI
 * exports it (`temporal workflow show --output json`) under test/histories/ for
 * the replay test. Stack traces in it are made relative to the project, so no
 * path of the recording machine is saved.
 */
export function saveHistory(address: string, name: string, run: { workflowId: string; runId: string | null }): void {
  if (process.env.KUMO_RECORD_HISTORIES !== '1') return;
  const json = execFileSync(temporalCli(), ['workflow', 'show', '--workflow-id', run.workflowId, ...(run.runId ? ['--run-id', run.runId] : []), '--output', 'json', '--address', address], {
    encoding: 'utf8',
  });
  writeFileSync(new URL(`../histories/${name}.json`, import.meta.url), json.split(projectRoot).join('./'));
}
