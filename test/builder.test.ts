import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { ProviderError } from '../domain/errors.js';
import {
  buildCodeLayer,
  buildDependencyLayer,
  buildRuntimeLayer,
  imageConfig,
  imageManifest,
  normaliseRequirements,
  pushImage,
  validateSource,
  type Layer,
} from '../providers/builder.js';
import { createRegistryClient, mediaTypes, sha256Digest } from '../providers/registry.js';
import { registryBinary, startRegistry, type RegistryServer } from '../scripts/registry.js';

/** A minimal tar reader for the assertions: ustar headers, pax `path` records. */
function readTar(tar: Buffer): Array<{ path: string; type: string; mode: number; uid: number; gid: number; mtime: number; uname: string; data: Buffer }> {
  const out: Array<{ path: string; type: string; mode: number; uid: number; gid: number; mtime: number; uname: string; data: Buffer }> = [];
  let offset = 0;
  let paxPath: string | null = null;
  const field = (block: Buffer, start: number, length: number) => block.subarray(start, start + length).toString('utf8').replace(/\0.*$/s, '');
  while (offset + 512 <= tar.length) {
    const block = tar.subarray(offset, offset + 512);
    if (block.every((byte) => byte === 0)) break;
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : (block[i] ?? 0);
    assert.equal(parseInt(field(block, 148, 8), 8), sum, 'header checksum');
    const size = parseInt(field(block, 124, 12), 8);
    const type = field(block, 156, 1);
    const data = tar.subarray(offset + 512, offset + 512 + size);
    offset += 512 + Math.ceil(size / 512) * 512;
    if (type === 'x') {
      const match = /\d+ path=([^\n]*)\n/.exec(data.toString('utf8'));
      paxPath = match?.[1] ?? null;
      continue;
    }
    out.push({
      path: paxPath ?? field(block, 0, 100),
      type,
      mode: parseInt(field(block, 100, 8), 8),
      uid: parseInt(field(block, 108, 8), 8),
      gid: parseInt(field(block, 116, 8), 8),
      mtime: parseInt(field(block, 136, 12), 8),
      uname: field(block, 265, 32),
      data: Buffer.from(data),
    });
    paxPath = null;
  }
  return out;
}

const layerTar = (layer: Layer) => readTar(gunzipSync(readFileSync(layer.path)));

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

const handlerSource = 'import json\n\n\ndef handle(event, context=None):\n    return {"echo": event}\n';

describe('the image builder', () => {
  let work: string;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'kumo-builder-test-'));
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  describe('validateSource', () => {
    test('good source has no errors', async () => {
      assert.deepEqual(await validateSource({ 'handler.py': handlerSource, 'lib/util.py': 'X = 1\n', 'requirements.txt': 'six==1.16.0\n' }, 'handler.handle'), []);
      assert.deepEqual(await validateSource({ 'pkg/__init__.py': 'async def run(event):\n    return 1\n' }, 'pkg.run'), []);
    });

    test('a syntax error comes back with its file and line', async () => {
      const errors = await validateSource({ 'handler.py': handlerSource, 'lib/broken.py': 'x = 1\n\ndef f(:\n    pass\n' }, 'handler.handle');
      assert.equal(errors.length, 1);
      assert.equal(errors[0]?.file, 'lib/broken.py');
      assert.equal(errors[0]?.line, 3);
      assert.match(errors[0]?.message ?? '', /SyntaxError/);
      // Errors the compiler (not the parser) finds, too.
      const late = await validateSource({ 'handler.py': 'def handle(e):\n    return e\nreturn 1\n' }, 'handler.handle');
      assert.deepEqual(late.map((e) => [e.file, e.line]), [['handler.py', 3]]);
    });

    test('the handler module must be among the files, and define the function', async () => {
      const missing = await validateSource({ 'main.py': handlerSource }, 'handler.handle');
      assert.equal(missing.length, 1);
      assert.equal(missing[0]?.file, 'handler.py');
      assert.match(missing[0]?.message ?? '', /not among the files/);
      const undefinedFunction = await validateSource({ 'handler.py': 'def other():\n    pass\n' }, 'handler.handle');
      assert.match(undefinedFunction[0]?.message ?? '', /'handle' is not defined/);
      const notModuleFunction = await validateSource({ 'handler.py': handlerSource }, 'handle');
      assert.match(notModuleFunction[0]?.message ?? '', /module\.function/);
    });

    test('file names must be relative, without .., and reasonable', async () => {
      const errors = await validateSource({ 'handler.py': handlerSource, '../escape.py': '', '/etc/passwd': '', 'a/../../b.py': '', 'sp ace.py': '', [`${'x'.repeat(250)}.py`]: '', 'big.txt': 'x'.repeat(1024 * 1024 + 1) }, 'handler.handle');
      const files = errors.map((e) => e.file);
      for (const name of ['../escape.py', '/etc/passwd', 'a/../../b.py', 'sp ace.py', `${'x'.repeat(250)}.py`, 'big.txt']) assert.ok(files.includes(name), `${name} refused: ${JSON.stringify(errors)}`);
      assert.ok(!files.includes('handler.py'));
    });
  });

  describe('layers', () => {
    test('the same code gives byte-identical layers; other code another digest', async () => {
      const files = { 'handler.py': handlerSource, 'lib/util.py': 'X = 1\n', [`deep/${'d'.repeat(90)}/${'e'.repeat(40)}/mod.py`]: 'Y = 2\n' };
      const first = await buildCodeLayer({ files, cacheDir: join(work, 'code-a') });
      // Another cache folder, and the files in another order: nothing is shared, the bytes are the same.
      const reordered = Object.fromEntries(Object.entries(files).reverse());
      const second = await buildCodeLayer({ files: reordered, cacheDir: join(work, 'code-b') });
      assert.equal(first.cached, false);
      assert.equal(second.cached, false);
      assert.equal(second.digest, first.digest);
      assert.equal(second.diffId, first.diffId);
      assert.deepEqual(readFileSync(second.path), readFileSync(first.path));
      assert.equal(first.size, readFileSync(first.path).length);
      assert.equal(first.digest, sha256Digest(readFileSync(first.path)));
      assert.equal(first.diffId, sha256Digest(gunzipSync(readFileSync(first.path))));
      assert.equal(first.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');

      const again = await buildCodeLayer({ files, cacheDir: join(work, 'code-a') });
      assert.equal(again.cached, true);
      assert.equal(again.digest, first.digest);

      const changed = await buildCodeLayer({ files: { ...files, 'handler.py': `${handlerSource}# changed\n` }, cacheDir: join(work, 'code-a') });
      assert.notEqual(changed.digest, first.digest);
    });

    test('layer entries are sorted, owned by root, dated 0, 0644/0755, long names in pax', async () => {
      const longName = `deep/${'d'.repeat(90)}/${'e'.repeat(40)}/mod.py`;
      const layer = await buildCodeLayer({ files: { 'handler.py': handlerSource, [longName]: 'Y = 2\n' }, cacheDir: join(work, 'code-c') });
      const entries = layerTar(layer);
      const paths = entries.map((e) => e.path);
      assert.deepEqual(paths.slice(0, 3), ['opt/', 'opt/kumo/', 'opt/kumo/code/']);
      assert.deepEqual([...paths].sort((a, b) => Buffer.compare(Buffer.from(a.replace(/\/$/, '')), Buffer.from(b.replace(/\/$/, '')))), paths);
      for (const entry of entries) {
        assert.equal(entry.uid, 0);
        assert.equal(entry.gid, 0);
        assert.equal(entry.mtime, 0);
        assert.equal(entry.uname, '');
        assert.equal(entry.mode, entry.type === '5' ? 0o755 : 0o644, entry.path);
      }
      const handler = entries.find((e) => e.path === 'opt/kumo/code/handler.py');
      assert.equal(handler?.data.toString(), handlerSource);
      const long = entries.find((e) => e.path === `opt/kumo/code/${longName}`);
      assert.equal(long?.data.toString(), 'Y = 2\n');
      // Python's tarfile reads it the same way (an independent reader).
      const listed = execFileSync('python3', ['-c', 'import sys, tarfile; print("\\n".join(m.name for m in tarfile.open(sys.argv[1])))', layer.path], { encoding: 'utf8' });
      assert.ok(listed.split('\n').includes(`opt/kumo/code/${longName}`), listed);
    });

    test('the runtime layer packs the package under opt/kumo/runtime/kumo_runtime/, without __pycache__', async () => {
      const runtime = join(work, 'runtime', 'kumo_runtime');
      mkdirSync(join(runtime, '__pycache__'), { recursive: true });
      writeFileSync(join(runtime, '__init__.py'), '');
      writeFileSync(join(runtime, '__main__.py'), 'print("runtime")\n');
      writeFileSync(join(runtime, '__pycache__', '__main__.cpython-311.pyc'), 'bytecode');
      writeFileSync(join(runtime, 'tool.sh'), '#!/bin/sh\n');
      chmodSync(join(runtime, 'tool.sh'), 0o775);
      // The package folder or the folder holding it.
      const layer = await buildRuntimeLayer({ runtimeDir: runtime, cacheDir: join(work, 'rt') });
      const same = await buildRuntimeLayer({ runtimeDir: join(work, 'runtime'), cacheDir: join(work, 'rt-2') });
      assert.equal(same.digest, layer.digest);
      const entries = layerTar(layer);
      assert.deepEqual(
        entries.filter((e) => e.type === '0').map((e) => [e.path, e.mode]),
        [
          ['opt/kumo/runtime/kumo_runtime/__init__.py', 0o644],
          ['opt/kumo/runtime/kumo_runtime/__main__.py', 0o644],
          ['opt/kumo/runtime/kumo_runtime/tool.sh', 0o755],
        ],
      );
      await rejectsWith(buildRuntimeLayer({ runtimeDir: join(work, 'code-a'), cacheDir: join(work, 'rt') }), 'InvalidSpec', /__main__/);
    });

    test('requirements are normalised; options and local paths are refused', async () => {
      assert.deepEqual(normaliseRequirements('# deps\r\nsix==1.16.0   # pinned\n\n  requests >= 2 \\\n  ; python_version > "3"\n'), ['six==1.16.0', 'requests >= 2 ; python_version > "3"']);
      for (const bad of ['-e .', '--index-url http://evil/simple', '-r other.txt', './local', 'pkg @ file:///etc/passwd']) {
        await rejectsWith(buildDependencyLayer({ requirements: `${bad}\n`, cacheDir: join(work, 'deps-bad') }), 'InvalidSpec', /requirements\.txt line 1/);
      }
    });

    test('empty requirements give an empty layer, without pip', async () => {
      const layer = await buildDependencyLayer({ requirements: '# nothing\n\n', cacheDir: join(work, 'deps-empty') });
      assert.deepEqual(layerTar(layer).map((e) => e.path), ['opt/', 'opt/kumo/', 'opt/kumo/deps/']);
    });

    describe('a dependency layer from PyPI', () => {
      let pythonLog: string;
      let python: string;
      before(() => {
        // A python3 that notes each pip run, to tell a cached layer from a built one.
        pythonLog = join(work, 'python.log');
        python = join(work, 'python-wrapper.sh');
        writeFileSync(python, `#!/bin/sh\ncase "$*" in *"-m pip"*) echo pip >> "${pythonLog}";; esac\nexec python3 "$@"\n`);
        chmodSync(python, 0o755);
      });
      const pipRuns = () => {
        try {
          return readFileSync(pythonLog, 'utf8').split('\n').filter(Boolean).length;
        } catch {
          return 0;
        }
      };

      test('is built once (six==1.16.0), then comes from the cache without pip', async (t) => {
        const cacheDir = join(work, 'deps');
        let first: Layer;
        try {
          first = await buildDependencyLayer({ requirements: 'six==1.16.0\n', cacheDir, python, timeoutMs: 120_000 });
        } catch (err) {
          if (err instanceof ProviderError && err.type === 'Transient') return t.skip(`the package index is not reachable: ${err.message}`);
          throw err;
        }
        assert.equal(first.cached, false);
        assert.equal(pipRuns(), 1);
        const entries = layerTar(first);
        assert.ok(entries.some((e) => e.path === 'opt/kumo/deps/six.py'), entries.map((e) => e.path).join('\n'));
        assert.ok(entries.some((e) => e.path.startsWith('opt/kumo/deps/six-1.16.0.dist-info/')));
        assert.ok(!entries.some((e) => e.path.includes('__pycache__')));

        // The same requirements, written differently: the cached layer, no pip.
        const second = await buildDependencyLayer({ requirements: '# again\nsix==1.16.0   \n\n', cacheDir, python });
        assert.equal(second.cached, true);
        assert.equal(second.digest, first.digest);
        assert.equal(second.path, first.path);
        assert.equal(pipRuns(), 1);
      });

      test('a requirement pip cannot satisfy is InvalidSpec with pip\'s own message', async (t) => {
        const before = pipRuns();
        try {
          await buildDependencyLayer({ requirements: 'nosuchpackage-kumo-xyz==1.0\n', cacheDir: join(work, 'deps'), python, timeoutMs: 120_000 });
          assert.fail('pip should have failed');
        } catch (err) {
          assert.ok(err instanceof ProviderError, String(err));
          if (err.type === 'Transient') return t.skip(`the package index is not reachable: ${err.message}`);
          assert.equal(err.type, 'InvalidSpec', err.message);
          assert.match(err.message, /No matching distribution found for nosuchpackage-kumo-xyz==1\.0/);
        }
        assert.equal(pipRuns(), before + 1);
      });
    });
  });

  describe('image config and manifest', () => {
    const layer = (n: number): Layer => ({ digest: sha256Digest(`blob${n}`), diffId: sha256Digest(`tar${n}`), size: 100 + n, path: `/nonexistent/${n}`, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' });

    test('the config sets the runtime\'s entrypoint, environment and layers, with no timestamp', () => {
      const bytes = imageConfig({ layers: [layer(1), layer(2)], handler: 'handler.handle', env: { ZED: '1', ALPHA: 'a=b' }, labels: { 'io.kumo.function': 'demo' } });
      const config = JSON.parse(bytes.toString());
      assert.equal(config.architecture, 'amd64');
      assert.equal(config.os, 'linux');
      assert.equal(config.created, undefined);
      assert.equal(config.history, undefined);
      assert.deepEqual(config.config.Env, ['PYTHONPATH=deps:runtime', 'KUMO_CODE_DIR=code', 'KUMO_HANDLER=handler.handle', 'ALPHA=a=b', 'ZED=1']);
      assert.deepEqual(config.config.Entrypoint, ['python3', '-m', 'kumo_runtime']);
      assert.equal(config.config.WorkingDir, '/opt/kumo');
      assert.deepEqual(config.config.ExposedPorts, { '8080/tcp': {} });
      assert.deepEqual(config.config.Labels, { 'io.kumo.function': 'demo' });
      assert.deepEqual(config.rootfs, { type: 'layers', diff_ids: [layer(1).diffId, layer(2).diffId] });
      // Deterministic: the same inputs in another order give the same bytes.
      assert.deepEqual(imageConfig({ layers: [layer(1), layer(2)], handler: 'handler.handle', env: { ALPHA: 'a=b', ZED: '1' }, labels: { 'io.kumo.function': 'demo' } }), bytes);
      assert.throws(() => imageConfig({ layers: [], handler: 'handler.handle', env: { PYTHONPATH: '/x' } }), /set by the runtime/);
    });

    test('the manifest describes the config and the layers', () => {
      const config = imageConfig({ layers: [layer(1)], handler: 'h.f', env: {} });
      const manifest = JSON.parse(imageManifest({ config, layers: [layer(1)] }).toString());
      assert.equal(manifest.schemaVersion, 2);
      assert.equal(manifest.mediaType, 'application/vnd.oci.image.manifest.v1+json');
      assert.deepEqual(manifest.config, { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256Digest(config), size: config.length });
      assert.deepEqual(manifest.layers, [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layer(1).digest, size: 101 }]);
    });
  });

  describe('an image pushed to the real registry', { skip: registryBinary() === null ? 'no docker-registry binary: run `bash scripts/setup.sh` as root or set REGISTRY_BIN' : false }, () => {
    let server: RegistryServer;
    before(async () => {
      server = await startRegistry({ dataDir: join(work, 'registry') });
    });
    after(async () => {
      await server?.close();
    });

    test('pulls back by digest: manifest, config and layers, every digest verified', async () => {
      const registry = createRegistryClient({ url: server.url, timeoutMs: 10_000 });
      const cacheDir = join(work, 'image-cache');
      const runtimeDir = join(work, 'image-runtime', 'kumo_runtime');
      mkdirSync(runtimeDir, { recursive: true });
      writeFileSync(join(runtimeDir, '__main__.py'), 'print("runtime")\n');
      const layers = [
        await buildDependencyLayer({ requirements: '', cacheDir }),
        await buildRuntimeLayer({ runtimeDir, cacheDir }),
        await buildCodeLayer({ files: { 'handler.py': handlerSource }, cacheDir }),
      ];
      const config = imageConfig({ layers, handler: 'handler.handle', env: { KUMO_FUNCTION: 'demo' }, labels: { 'io.kumo.function': 'demo' } });
      const { digest } = await pushImage(registry, 'kumo/functions/demo', 'op-1', { config, layers });
      assert.equal(digest, sha256Digest(imageManifest({ config, layers })));
      // Pushing again (a retried activity) changes nothing.
      assert.deepEqual(await pushImage(registry, 'kumo/functions/demo', 'op-1', { config, layers }), { digest });
      assert.deepEqual(await registry.listTags('kumo/functions/demo'), ['op-1']);

      const pulled = await registry.getManifest('kumo/functions/demo', digest);
      assert.ok(pulled);
      assert.equal(pulled.digest, digest);
      assert.equal(pulled.mediaType, mediaTypes.ociManifest);
      const manifest = JSON.parse(pulled.body.toString());
      const configBlob = await registry.getBlob('kumo/functions/demo', manifest.config.digest);
      assert.ok(configBlob);
      assert.deepEqual(configBlob, config);
      const pulledConfig = JSON.parse(configBlob.toString());
      assert.equal(manifest.layers.length, 3);
      let code: ReturnType<typeof readTar> = [];
      for (const [index, descriptor] of (manifest.layers as Array<{ digest: string; size: number; mediaType: string }>).entries()) {
        const blob = await registry.getBlob('kumo/functions/demo', descriptor.digest);
        assert.ok(blob);
        assert.equal(blob.length, descriptor.size);
        assert.equal(descriptor.mediaType, mediaTypes.ociLayerGzip);
        const tar = gunzipSync(blob);
        assert.equal(sha256Digest(tar), pulledConfig.rootfs.diff_ids[index]);
        if (index === 2) code = readTar(tar);
      }
      const handler = code.find((e) => e.path === 'opt/kumo/code/handler.py');
      assert.equal(handler?.data.toString(), handlerSource);
    });
  });
});
