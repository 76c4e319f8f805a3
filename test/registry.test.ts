import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ProviderError } from '../domain/errors.js';
import { createRegistryClient, mediaTypes, sha256Digest, type Registry } from '../providers/registry.js';
import { registryBinary, startRegistry, type RegistryServer } from '../scripts/registry.js';
import { freePort } from '../scripts/tools.js';

const noRegistry = registryBinary() === null ? 'no docker-registry binary: run `bash scripts/setup.sh` as root (it installs Debian\'s docker-registry) or set REGISTRY_BIN' : false;

/** Asserts the promise rejects with a ProviderError of that type (and a message matching `pattern`). */
async function rejectsWith(promise: Promise<unknown>, type: string, pattern?: RegExp): Promise<ProviderError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ProviderError, `expected a ProviderError, got ${String(err)}`);
    assert.equal(err.type, type, err.message);
    if (pattern) assert.match(err.message, pattern);
    return err;
  }
  assert.fail(`expected a ${type} ProviderError`);
}

describe('the OCI registry client against a real registry (distribution)', { skip: noRegistry }, () => {
  let dataDir: string;
  let server: RegistryServer;
  let registry: Registry;

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'kumo-registry-test-'));
    server = await startRegistry({ dataDir, port: 0 });
    registry = createRegistryClient({ url: server.url, timeoutMs: 10_000 });
  });
  after(async () => {
    await server?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('the registry listens on loopback and answers /v2/', async () => {
    assert.match(server.host, /^127\.0\.0\.1:\d+$/);
    assert.equal(server.url, `http://${server.host}`);
    assert.ok(server.pid > 0);
    const response = await fetch(`${server.url}/v2/`);
    assert.equal(response.status, 200);
  });

  test('a blob is pushed once; the second push finds it; it reads back verified', async () => {
    const data = Buffer.from(`blob ${Date.now()}`);
    const digest = sha256Digest(data);
    assert.equal(await registry.blobExists('kumo/blobs', digest), false);
    assert.equal(await registry.pushBlob('kumo/blobs', digest, data), 'pushed');
    assert.equal(await registry.pushBlob('kumo/blobs', digest, data), 'exists');
    assert.equal(await registry.blobExists('kumo/blobs', digest), true);
    assert.deepEqual(await registry.getBlob('kumo/blobs', digest), data);
  });

  test('a blob streams from a file', async () => {
    const data = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
    const path = join(dataDir, 'big.bin');
    writeFileSync(path, data);
    const digest = sha256Digest(data);
    assert.equal(await registry.pushBlob('kumo/files', digest, { path, size: data.length }), 'pushed');
    assert.deepEqual(await registry.getBlob('kumo/files', digest), data);
  });

  test('a digest that does not match the data is refused, by the client and by the registry', async () => {
    const data = Buffer.from('the real bytes');
    const wrong = sha256Digest('other bytes');
    await rejectsWith(registry.pushBlob('kumo/mismatch', wrong, data), 'InvalidSpec', /digest/);
    // A file is not hashed by the client: the registry checks it and answers DIGEST_INVALID.
    const path = join(dataDir, 'mismatch.bin');
    writeFileSync(path, data);
    await rejectsWith(registry.pushBlob('kumo/mismatch', wrong, { path, size: data.length }), 'InvalidSpec', /DIGEST_INVALID/);
    assert.equal(await registry.blobExists('kumo/mismatch', wrong), false);
    // A manifest PUT by a digest that is not its own.
    await rejectsWith(registry.putManifest('kumo/mismatch', wrong, Buffer.from('{}'), mediaTypes.ociManifest), 'InvalidSpec', /digest/);
  });

  test('manifests round-trip by tag and by digest; tags list; deletes', async () => {
    const repo = 'kumo/images/demo';
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
    const layer = Buffer.from('not really a tar, the registry does not care');
    await registry.pushBlob(repo, sha256Digest(config), config);
    await registry.pushBlob(repo, sha256Digest(layer), layer);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: mediaTypes.ociManifest,
        config: { mediaType: mediaTypes.ociConfig, digest: sha256Digest(config), size: config.length },
        layers: [{ mediaType: mediaTypes.ociLayerGzip, digest: sha256Digest(layer), size: layer.length }],
      }),
    );
    const digest = await registry.putManifest(repo, 'v1', manifest, mediaTypes.ociManifest);
    assert.equal(digest, sha256Digest(manifest));
    // The same bytes again (a retried push): the same digest.
    assert.equal(await registry.putManifest(repo, 'v1', manifest, mediaTypes.ociManifest), digest);
    assert.equal(await registry.putManifest(repo, 'v2', manifest, mediaTypes.ociManifest), digest);

    const byTag = await registry.getManifest(repo, 'v1');
    assert.ok(byTag);
    assert.equal(byTag.digest, digest);
    assert.equal(byTag.mediaType, mediaTypes.ociManifest);
    assert.deepEqual(byTag.body, manifest);
    const byDigest = await registry.getManifest(repo, digest);
    assert.deepEqual(byDigest, byTag);

    assert.deepEqual((await registry.listTags(repo)).sort(), ['v1', 'v2']);
    assert.equal(await registry.getManifest(repo, 'nosuchtag'), null);

    assert.equal(await registry.deleteManifest(repo, digest), 'deleted');
    assert.equal(await registry.getManifest(repo, digest), null);
    assert.equal(await registry.getManifest(repo, 'v1'), null);
    assert.equal(await registry.deleteManifest(repo, digest), 'absent');
  });

  test('a manifest naming a blob the repository lacks is InvalidSpec', async () => {
    const missing = sha256Digest('never pushed');
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: mediaTypes.ociManifest,
        config: { mediaType: mediaTypes.ociConfig, digest: missing, size: 12 },
        layers: [],
      }),
    );
    await rejectsWith(registry.putManifest('kumo/broken', 'v1', manifest, mediaTypes.ociManifest), 'InvalidSpec', /MANIFEST_BLOB_UNKNOWN|MANIFEST_INVALID/);
  });

  test('unknown repositories and blobs are null, false or empty, not errors', async () => {
    const digest = sha256Digest('nothing');
    assert.equal(await registry.getBlob('kumo/nosuchrepo', digest), null);
    assert.equal(await registry.blobExists('kumo/nosuchrepo', digest), false);
    assert.equal(await registry.getManifest('kumo/nosuchrepo', 'latest'), null);
    assert.deepEqual(await registry.listTags('kumo/nosuchrepo'), []);
  });

  test('names, tags and digests the spec does not allow are refused before any request', async () => {
    await rejectsWith(registry.listTags('Kumo/Upper'), 'InvalidSpec', /repository name/);
    await rejectsWith(registry.listTags('../etc'), 'InvalidSpec');
    await rejectsWith(registry.getBlob('kumo/x', 'md5:abc'), 'InvalidSpec', /digest/);
    await rejectsWith(registry.getManifest('kumo/x', 'bad tag!'), 'InvalidSpec');
  });

  test('close stops the registry', async () => {
    const other = await startRegistry({ dataDir: join(dataDir, 'second') });
    assert.notEqual(other.url, server.url);
    await other.close();
    await assert.rejects(fetch(`${other.url}/v2/`));
    await other.close(); // twice is fine
  });
});

describe('the OCI registry client: protocol details and failures (a scripted server)', () => {
  let server: Server;
  let url: string;
  const seen: Array<{ method: string; url: string; authorization?: string }> = [];
  let handler: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void = (_req, res) => res.end();

  before(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        seen.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization });
        handler(req, res, Buffer.concat(chunks));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  test('a relative Location with a query keeps its query and gets the digest added', async () => {
    const data = Buffer.from('uploaded monolithically');
    const digest = sha256Digest(data);
    let put: { url: string; body: Buffer } | null = null;
    handler = (req, res, body) => {
      if (req.method === 'HEAD') return res.writeHead(404).end();
      if (req.method === 'POST') return res.writeHead(202, { location: '/v2/kumo/rel/blobs/uploads/abc?_state=xyz' }).end();
      if (req.method === 'PUT') {
        put = { url: req.url ?? '', body };
        return res.writeHead(201, { 'docker-content-digest': digest }).end();
      }
      res.writeHead(500).end();
    };
    const registry = createRegistryClient({ url, timeoutMs: 5_000 });
    assert.equal(await registry.pushBlob('kumo/rel', digest, data), 'pushed');
    assert.ok(put);
    const target = new URL((put as { url: string }).url, url);
    assert.equal(target.pathname, '/v2/kumo/rel/blobs/uploads/abc');
    assert.equal(target.searchParams.get('_state'), 'xyz');
    assert.equal(target.searchParams.get('digest'), digest);
    assert.deepEqual((put as { body: Buffer }).body, data);
  });

  test('an absolute Location is used as given', async () => {
    const data = Buffer.from('absolute');
    const digest = sha256Digest(data);
    let putPath = '';
    handler = (req, res) => {
      if (req.method === 'HEAD') return res.writeHead(404).end();
      if (req.method === 'POST') return res.writeHead(202, { location: `${url}/elsewhere/upload/1` }).end();
      if (req.method === 'PUT') {
        putPath = req.url ?? '';
        return res.writeHead(201, { 'docker-content-digest': digest }).end();
      }
      res.writeHead(500).end();
    };
    assert.equal(await createRegistryClient({ url, timeoutMs: 5_000 }).pushBlob('kumo/abs', digest, data), 'pushed');
    assert.equal(putPath, `/elsewhere/upload/1?digest=${encodeURIComponent(digest)}`);
  });

  test('a registry that reports another digest for a manifest fails verification', async () => {
    handler = (_req, res) => res.writeHead(201, { 'docker-content-digest': sha256Digest('something else') }).end();
    await rejectsWith(createRegistryClient({ url, timeoutMs: 5_000 }).putManifest('kumo/x', 'v1', Buffer.from('{}'), mediaTypes.ociManifest), 'VerificationFailed');
  });

  test('a blob whose bytes do not match its digest fails verification', async () => {
    handler = (_req, res) => res.writeHead(200).end('tampered');
    await rejectsWith(createRegistryClient({ url, timeoutMs: 5_000 }).getBlob('kumo/x', sha256Digest('original')), 'VerificationFailed');
  });

  test('status codes map to failure types; credentials never appear in messages', async () => {
    const password = 's3cret-registry-password';
    const registry = createRegistryClient({ url, timeoutMs: 5_000, username: 'kumo', password });
    const answer = (status: number, code?: string) => {
      handler = (_req, res) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(code ? JSON.stringify({ errors: [{ code, message: `scripted ${code}`, detail: { password } }] }) : '');
      };
    };
    const cases: Array<[number, string | undefined, string]> = [
      [401, 'UNAUTHORIZED', 'Unauthorized'],
      [403, 'DENIED', 'Unauthorized'],
      [400, 'MANIFEST_INVALID', 'InvalidSpec'],
      [400, 'NAME_INVALID', 'InvalidSpec'],
      [404, 'NAME_UNKNOWN', 'NotFound'],
      [429, 'TOOMANYREQUESTS', 'Transient'],
      [500, undefined, 'Transient'],
      [503, undefined, 'Transient'],
    ];
    for (const [status, code, type] of cases) {
      answer(status, code);
      const err = await rejectsWith(registry.putManifest('kumo/x', 'v1', Buffer.from('{}'), mediaTypes.ociManifest), type);
      assert.equal(err.details.status, status);
      assert.ok(!err.message.includes(password), err.message);
      assert.ok(!err.message.includes(Buffer.from(`kumo:${password}`).toString('base64')), err.message);
    }
    // Basic auth was sent to the registry's own origin.
    assert.equal(seen.at(-1)?.authorization, `Basic ${Buffer.from(`kumo:${password}`).toString('base64')}`);
  });

  test('credentials in the URL are taken out of it and sent as basic auth', async () => {
    handler = (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name: 'kumo/x', tags: ['a'] }));
    const withCredentials = url.replace('http://', 'http://user:pa%40ss@');
    assert.deepEqual(await createRegistryClient({ url: withCredentials, timeoutMs: 5_000 }).listTags('kumo/x'), ['a']);
    assert.equal(seen.at(-1)?.authorization, `Basic ${Buffer.from('user:pa@ss').toString('base64')}`);
  });

  test('tag lists follow the Link header across pages', async () => {
    handler = (req, res) => {
      const last = new URL(req.url ?? '', url).searchParams.get('last');
      if (!last) return res.writeHead(200, { link: '</v2/kumo/paged/tags/list?n=2&last=b>; rel="next"' }).end(JSON.stringify({ tags: ['a', 'b'] }));
      res.writeHead(200).end(JSON.stringify({ tags: ['c'] }));
    };
    assert.deepEqual(await createRegistryClient({ url, timeoutMs: 5_000 }).listTags('kumo/paged'), ['a', 'b', 'c']);
  });

  test('a registry that does not answer, or is not there, is Transient', async () => {
    const silent = createTcpServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const address = silent.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    try {
      await rejectsWith(createRegistryClient({ url: `http://127.0.0.1:${port}`, timeoutMs: 200 }).listTags('kumo/x'), 'Transient', /timed out/);
    } finally {
      silent.close();
    }
    const closed = await freePort();
    await rejectsWith(createRegistryClient({ url: `http://127.0.0.1:${closed}`, timeoutMs: 2_000 }).blobExists('kumo/x', sha256Digest('x')), 'Transient', /ECONNREFUSED/);
  });

  test('sha256Digest is sha256 in hex', () => {
    assert.equal(sha256Digest('abc'), `sha256:${createHash('sha256').update('abc').digest('hex')}`);
  });
});
