/**
 * Gives the fuzzer something to find: the OpenAPI document's examples name the
 * cluster `prod-eu-1` and the add-on `logging`, so the examples phase reaches an
 * active cluster with an add-on (and its day-2 operations) instead of only 404s.
 */

export const seedCluster = 'prod-eu-1';

/** The fields of the API's answers the seeding reads. */
interface Answer {
  status?: string;
  failure?: unknown;
  operation?: { id: string };
}

export async function seedStack(apiUrl: string, token: string, log: (line: string) => void = () => undefined): Promise<void> {
  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${apiUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, body: (text ? JSON.parse(text) : {}) as Answer };
  };
  const waitFor = async (operationId: string, what: string) => {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const { status, body } = await call('GET', `/v1/operations/${operationId}`);
      if (status !== 200) throw new Error(`seeding: GET /v1/operations/${operationId} answered ${status}`);
      if (body.status === 'succeeded') return;
      if (body.status !== 'running') throw new Error(`seeding: ${what} ended ${body.status}: ${JSON.stringify(body.failure)}`);
      if (Date.now() > deadline) throw new Error(`seeding: ${what} still running after 120 s`);
      await new Promise((done) => setTimeout(done, 250));
    }
  };

  log(`seeding: cluster ${seedCluster}`);
  const created = await call('POST', '/v1/clusters', {
    name: seedCluster,
    kubernetesVersion: 'v1.30.6-rancher1-1',
    nodePools: [
      { name: 'control', roles: ['etcd', 'controlplane'], quantity: 3 },
      { name: 'workers', roles: ['worker'], quantity: 2 },
    ],
    labels: { env: 'fuzz' },
  });
  if (created.status !== 202) throw new Error(`seeding: POST /v1/clusters answered ${created.status}: ${JSON.stringify(created.body)}`);
  await waitFor(operationOf(created), `creating ${seedCluster}`);

  log(`seeding: add-on logging 1.0.0 on ${seedCluster}`);
  const addon = await call('PUT', `/v1/clusters/${seedCluster}/addons/logging`, { version: '1.0.0', values: { output: { type: 'stdout' } } });
  if (addon.status !== 202) throw new Error(`seeding: enabling logging answered ${addon.status}: ${JSON.stringify(addon.body)}`);
  await waitFor(operationOf(addon), 'enabling logging');

  log(`seeding: an etcd snapshot of ${seedCluster}`);
  const snapshot = await call('POST', `/v1/clusters/${seedCluster}/snapshots`, {});
  if (snapshot.status !== 202) throw new Error(`seeding: a snapshot answered ${snapshot.status}: ${JSON.stringify(snapshot.body)}`);
  await waitFor(operationOf(snapshot), 'the snapshot');
}

function operationOf(answer: { body: Answer }): string {
  const id = answer.body.operation?.id;
  if (!id) throw new Error(`seeding: the answer names no operation: ${JSON.stringify(answer.body)}`);
  return id;
}
