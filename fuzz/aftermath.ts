import { existsSync, readFileSync } from 'node:fs';

/**
 * What a fuzz run left behind that its checks do not see: answers can all be
 * fine while the work they started goes wrong. Input the API let through that
 * Rancher refused (`InvalidSpec`), unclassified failures (`Internal`), steps
 * retried again and again, and errors the API logged as unhandled.
 */
export interface Aftermath {
  operations: number;
  /** Operations that failed as `Internal` or `InvalidSpec`: input the API should have refused, or a bug. */
  suspicious: Array<{ id: string; kind: string; target: string; type: string; message: string }>;
  /** Running operations whose current step is being retried, with its last error. */
  retrying: Array<{ id: string; kind: string; step: string | null; attempt: number; lastError: string }>;
  /** Lines of the API's log about unhandled errors (the 500s). */
  unhandled: string[];
}

interface OperationView {
  id: string;
  kind: string;
  target: string;
  status: string;
  step: string | null;
  failure: { type: string; message: string } | null;
  attempt?: number;
  lastError?: string;
}

export async function collectAftermath(apiUrl: string, token: string, apiLog?: string): Promise<Aftermath> {
  const get = async <T>(path: string): Promise<T> => {
    const response = await fetch(`${apiUrl}${path}`, { headers: { authorization: `Bearer ${token}` } });
    if (!response.ok) throw new Error(`GET ${path}: ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  };
  const operations: OperationView[] = [];
  let cursor: string | null = null;
  do {
    const page: { items: OperationView[]; nextCursor: string | null } = await get(`/v1/operations?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    operations.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor && operations.length < 5000);

  const suspicious = operations
    .filter((operation) => operation.status === 'failed' && (operation.failure?.type === 'Internal' || operation.failure?.type === 'InvalidSpec'))
    .map((operation) => ({ id: operation.id, kind: operation.kind, target: operation.target, type: operation.failure?.type ?? '', message: operation.failure?.message ?? '' }));

  const retrying: Aftermath['retrying'] = [];
  for (const operation of operations.filter((candidate) => candidate.status === 'running').slice(0, 100)) {
    const live = await get<OperationView>(`/v1/operations/${encodeURIComponent(operation.id)}`);
    if (live.status === 'running' && (live.attempt ?? 1) > 2 && live.lastError) {
      retrying.push({ id: live.id, kind: live.kind, step: live.step, attempt: live.attempt ?? 1, lastError: live.lastError });
    }
  }

  const unhandled = apiLog && existsSync(apiLog) ? readFileSync(apiLog, 'utf8').split('\n').filter((line) => line.includes('unhandled API error')) : [];
  return { operations: operations.length, suspicious, retrying, unhandled };
}

export function formatAftermath(aftermath: Aftermath): string {
  const lines = [`== what the run left behind: ${aftermath.operations} operations ==`];
  lines.push(`failed as Internal or InvalidSpec: ${aftermath.suspicious.length}`);
  for (const s of aftermath.suspicious.slice(0, 20)) lines.push(`  ${s.id} ${s.kind} ${s.target}: ${s.type}: ${s.message.slice(0, 300)}`);
  lines.push(`running and retrying a step: ${aftermath.retrying.length}`);
  for (const r of aftermath.retrying.slice(0, 20)) lines.push(`  ${r.id} ${r.kind} at ${r.step ?? '?'} (attempt ${r.attempt}): ${r.lastError.slice(0, 300)}`);
  lines.push(`unhandled errors in the API's log: ${aftermath.unhandled.length}`);
  for (const line of aftermath.unhandled.slice(0, 10)) lines.push(`  ${line.slice(0, 500)}`);
  return lines.join('\n');
}
