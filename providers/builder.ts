import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { ProviderError } from '../domain/errors.js';
import { mediaTypes, sha256Digest, type Registry } from './registry.js';

/**
 * Kumo's daemonless OCI image builder for the Function Service: no Docker, no
 * buildah. It writes the layers itself (a minimal ustar/pax tar writer below,
 * gzip from Node's zlib) and the image config and manifest as JSON, and pushes
 * them with the registry client.
 *
 * Layers are deterministic: entries sorted by path, uid/gid 0, no user or group
 * names, mtime 0, modes 0644/0755, no `created` in the config, gzip at a fixed
 * level (Node's gzip header carries mtime 0). The same inputs give the same
 * bytes and so the same digests, which is what makes a retried build push
 * nothing new. (Byte-identical across machines as long as zlib's deflate is the
 * same version.)
 *
 * The image, from the bottom:
 *   1. dependencies  opt/kumo/deps/…                  pip install --target of requirements.txt
 *   2. runtime       opt/kumo/runtime/kumo_runtime/…  the runtime package (runtime/kumo_runtime)
 *   3. code          opt/kumo/code/…                  the function's files
 * with WorkingDir /opt/kumo, PYTHONPATH=deps:runtime and the entrypoint
 * `python3 -m kumo_runtime`.
 *
 * Honest limitation: the image has no base layer. A real deployment would put
 * these layers on a python base image (python:3.11-slim) of the same Python as
 * the one that ran pip; as built here, the image runs only where the platform
 * supplies python3 in the container's filesystem.
 */

export const LAYER_MEDIA_TYPE = 'application/vnd.oci.image.layer.v1.tar+gzip' as const;

export interface Layer {
  /** sha256:… of the .tar.gz: the blob's digest. */
  digest: string;
  /** sha256:… of the uncompressed tar: the config's rootfs diff_id. */
  diffId: string;
  /** Bytes of the .tar.gz. */
  size: number;
  /** The .tar.gz on disk (in the cache folder). */
  path: string;
  mediaType: typeof LAYER_MEDIA_TYPE;
  /** True when the layer came from the cache without being built again. */
  cached?: boolean;
}

export interface SourceError {
  file: string;
  /** 1-based; null when the error is not about one line. */
  line: number | null;
  message: string;
}

/** Where each layer's files go in the image. */
export const imageLayout = {
  root: 'opt/kumo',
  deps: 'opt/kumo/deps',
  runtime: 'opt/kumo/runtime/kumo_runtime',
  code: 'opt/kumo/code',
  workingDir: '/opt/kumo',
  port: 8080,
} as const;

/** Limits on a function's source: a function is code, not data. */
export const sourceLimits = { maxFiles: 1000, maxFileBytes: 1024 * 1024, maxTotalBytes: 4 * 1024 * 1024, maxPathLength: 200 } as const;

/** Bumped whenever the bytes a layer is built into change: old cache entries are then not reused. */
const LAYER_FORMAT = 'kumo-layer-v1';
const GZIP_LEVEL = 6;
const PIP_TIMEOUT_MS = 10 * 60 * 1000;
const PYTHON_CHECK_TIMEOUT_MS = 60 * 1000;

function pythonOf(explicit?: string): string {
  return explicit || process.env.KUMO_PYTHON || 'python3';
}

// ---------------------------------------------------------------------------
// The tar writer
// ---------------------------------------------------------------------------

/** One entry of a layer: a directory, or a regular file whose bytes are in memory or in a file on disk. */
export interface TarEntry {
  /** Relative, `/`-separated, no trailing slash. */
  path: string;
  type: 'file' | 'dir';
  mode: number;
  size: number;
  data?: Buffer;
  /** A file on disk to read the bytes from (its size must still be `size`). */
  source?: string;
}

const BLOCK = 512;
const MAX_OCTAL_SIZE = 0o77777777777;

function octal(value: number, width: number): string {
  // width - 1 digits and a NUL
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function header(fields: { name: string; mode: number; size: number; typeflag: string }): Buffer {
  const block = Buffer.alloc(BLOCK, 0);
  block.write(fields.name, 0, 100, 'utf8');
  block.write(octal(fields.mode, 8), 100, 8, 'ascii');
  block.write(octal(0, 8), 108, 8, 'ascii'); // uid
  block.write(octal(0, 8), 116, 8, 'ascii'); // gid
  block.write(octal(fields.size, 12), 124, 12, 'ascii');
  block.write(octal(0, 12), 136, 12, 'ascii'); // mtime
  block.write('        ', 148, 8, 'ascii'); // checksum placeholder
  block.write(fields.typeflag, 156, 1, 'ascii');
  block.write('ustar\0', 257, 6, 'ascii');
  block.write('00', 263, 2, 'ascii');
  // uname and gname stay empty; devmajor/devminor are zero.
  block.write(octal(0, 8), 329, 8, 'ascii');
  block.write(octal(0, 8), 337, 8, 'ascii');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return block;
}

/** A pax record: "<length> <key>=<value>\n", the length counting itself. */
function paxRecord(key: string, value: string): Buffer {
  const body = ` ${key}=${value}\n`;
  const bodyLength = Buffer.byteLength(body);
  let length = bodyLength + 1;
  while (String(length).length + bodyLength !== length) length = String(length).length + bodyLength;
  return Buffer.from(`${length}${body}`, 'utf8');
}

function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest, 0);
}

/** The header block(s) of one entry: a pax extended header first when the name does not fit ustar's 100 bytes of ASCII. */
function entryHeaders(entry: TarEntry): Buffer[] {
  if (entry.size > MAX_OCTAL_SIZE) throw new ProviderError('InvalidSpec', `layer: ${entry.path} is larger than 8 GiB`);
  const name = entry.type === 'dir' ? `${entry.path}/` : entry.path;
  const typeflag = entry.type === 'dir' ? '5' : '0';
  const size = entry.type === 'dir' ? 0 : entry.size;
  const mode = entry.mode & 0o7777;
  if (Buffer.byteLength(name) <= 100 && /^[\x20-\x7e]*$/.test(name)) return [header({ name, mode, size, typeflag })];
  const records = paxRecord('path', name);
  // The ustar name of a pax entry is only a fallback for readers without pax: a truncated ASCII form.
  const fallback = name.replace(/[^\x20-\x7e]/g, '_').slice(-99);
  return [header({ name: '././@PaxHeader', mode: 0o644, size: records.length, typeflag: 'x' }), records, padding(records.length), header({ name: fallback, mode, size, typeflag })];
}

function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Adds every ancestor directory of the entries (and of `root`), sorts by path and refuses duplicates. */
export function normaliseEntries(entries: TarEntry[], root: string): TarEntry[] {
  const byPath = new Map<string, TarEntry>();
  const addDirs = (path: string) => {
    const parts = path.split('/');
    for (let i = 1; i <= parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      const existing = byPath.get(dir);
      if (existing && existing.type !== 'dir') throw new ProviderError('InvalidSpec', `layer: ${dir} is both a file and a folder`);
      if (!existing) byPath.set(dir, { path: dir, type: 'dir', mode: 0o755, size: 0 });
    }
  };
  addDirs(root);
  for (const entry of entries) {
    const parent = entry.path.split('/').slice(0, -1).join('/');
    if (parent) addDirs(parent);
    const existing = byPath.get(entry.path);
    if (existing && (existing.type !== 'dir' || entry.type !== 'dir')) throw new ProviderError('InvalidSpec', `layer: ${entry.path} appears twice`);
    byPath.set(entry.path, entry);
  }
  return [...byPath.values()].sort((a, b) => compareBytes(a.path, b.path));
}

/** The tar stream of sorted entries, as chunks; ends with the two zero blocks. */
async function* tarChunks(entries: TarEntry[]): AsyncGenerator<Buffer> {
  for (const entry of entries) {
    yield* entryHeaders(entry);
    if (entry.type !== 'file') continue;
    if (entry.data) {
      if (entry.data.length !== entry.size) throw new ProviderError('Internal', `layer: ${entry.path} has ${entry.data.length} bytes, not ${entry.size}`);
      if (entry.size) yield entry.data;
    } else if (entry.source) {
      let read = 0;
      for await (const chunk of createReadStream(entry.source)) {
        const buffer = chunk as Buffer;
        read += buffer.length;
        if (read > entry.size) break;
        yield buffer;
      }
      if (read !== entry.size) throw new ProviderError('Transient', `layer: ${entry.path} changed while it was packed`);
    } else if (entry.size) {
      throw new ProviderError('Internal', `layer: ${entry.path} has no data`);
    }
    yield padding(entry.size);
  }
  yield Buffer.alloc(BLOCK * 2, 0);
}

/** The uncompressed tar of the entries, in memory (small layers, and tests). */
export async function tarBuffer(entries: TarEntry[]): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of tarChunks(entries)) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function hashing(hash: ReturnType<typeof createHash>, counter?: { bytes: number }): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      if (counter) counter.bytes += chunk.length;
      callback(null, chunk);
    },
  });
}

interface CacheMeta {
  format: string;
  digest: string;
  diffId: string;
  size: number;
}

/** The layer cached under `name` in cacheDir, or null. */
async function cachedLayer(cacheDir: string, name: string): Promise<Layer | null> {
  const path = join(cacheDir, 'layers', `${name}.tar.gz`);
  try {
    const meta = JSON.parse(await readFile(`${path}.json`, 'utf8')) as CacheMeta;
    const info = await stat(path);
    if (meta.format !== LAYER_FORMAT || info.size !== meta.size || !/^sha256:[a-f0-9]{64}$/.test(meta.digest)) return null;
    return { digest: meta.digest, diffId: meta.diffId, size: meta.size, path, mediaType: LAYER_MEDIA_TYPE, cached: true };
  } catch {
    return null;
  }
}

/** Writes the entries as `cacheDir/layers/<name>.tar.gz` (atomically: a temporary file renamed), with its digests beside it. */
async function writeLayer(cacheDir: string, name: string, entries: TarEntry[]): Promise<Layer> {
  const dir = join(cacheDir, 'layers');
  await mkdir(dir, { recursive: true });
  const path = join(dir, `${name}.tar.gz`);
  const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const diffHash = createHash('sha256');
  const blobHash = createHash('sha256');
  const counter = { bytes: 0 };
  try {
    await pipeline(Readable.from(tarChunks(entries)), hashing(diffHash), createGzip({ level: GZIP_LEVEL }), hashing(blobHash, counter), createWriteStream(temporary, { mode: 0o644 }));
    await rename(temporary, path);
  } catch (err) {
    await rm(temporary, { force: true });
    throw err;
  }
  const meta: CacheMeta = { format: LAYER_FORMAT, digest: `sha256:${blobHash.digest('hex')}`, diffId: `sha256:${diffHash.digest('hex')}`, size: counter.bytes };
  const metaTemporary = `${path}.json.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(metaTemporary, JSON.stringify(meta));
  await rename(metaTemporary, `${path}.json`);
  return { digest: meta.digest, diffId: meta.diffId, size: meta.size, path, mediaType: LAYER_MEDIA_TYPE, cached: false };
}

/** Builds of the same layer at once in this process share one build. */
const inflight = new Map<string, Promise<Layer>>();

/** What a build hands over: the entries to pack, and what to remove once they are packed. */
interface Built {
  entries: TarEntry[];
  cleanup?: () => Promise<void>;
}

async function cachedOrBuilt(cacheDir: string, name: string, build: () => Promise<Built>): Promise<Layer> {
  const root = resolve(cacheDir);
  const key = join(root, name);
  const running = inflight.get(key);
  if (running) return running;
  const work = (async () => {
    const hit = await cachedLayer(root, name);
    if (hit) return hit;
    const built = await build();
    try {
      return await writeLayer(root, name, built.entries);
    } finally {
      await built.cleanup?.();
    }
  })();
  inflight.set(key, work);
  try {
    return await work;
  } finally {
    inflight.delete(key);
  }
}

/** The key of in-memory entries: their paths, modes and bytes. */
function contentKey(kind: string, entries: TarEntry[]): string {
  const hash = createHash('sha256').update(`${LAYER_FORMAT}\0${GZIP_LEVEL}\0${kind}\0`);
  for (const entry of [...entries].sort((a, b) => compareBytes(a.path, b.path))) {
    hash.update(`${entry.type}\0${entry.path}\0${entry.mode.toString(8)}\0${entry.size}\0`);
    if (entry.data) hash.update(createHash('sha256').update(entry.data).digest());
  }
  return hash.digest('hex');
}

/**
 * The entries of a folder on disk under `prefix`: regular files (0755 when
 * executable, else 0644) and directories, `__pycache__` and *.pyc left out.
 * A symbolic link to a file is packed as that file; other links are skipped.
 */
async function folderEntries(dir: string, prefix: string, read: boolean): Promise<TarEntry[]> {
  const entries: TarEntry[] = [];
  const walk = async (absolute: string, relative: string) => {
    for (const name of (await readdir(absolute)).sort(compareBytes)) {
      if (name === '__pycache__' || name.endsWith('.pyc')) continue;
      const path = join(absolute, name);
      const inLayer = `${relative}/${name}`;
      let info = await lstat(path);
      if (info.isSymbolicLink()) {
        const target = await stat(path).catch(() => null);
        if (!target?.isFile()) continue;
        info = target;
      }
      if (info.isDirectory()) {
        entries.push({ path: inLayer, type: 'dir', mode: 0o755, size: 0 });
        await walk(path, inLayer);
      } else if (info.isFile()) {
        const mode = info.mode & 0o111 ? 0o755 : 0o644;
        entries.push(read ? { path: inLayer, type: 'file', mode, size: info.size, data: await readFile(path) } : { path: inLayer, type: 'file', mode, size: info.size, source: path });
      }
    }
  };
  await walk(dir, prefix);
  return entries;
}

// ---------------------------------------------------------------------------
// Source validation
// ---------------------------------------------------------------------------

const PATH_SEGMENT = /^[A-Za-z0-9._-]+$/;
const HANDLER = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$/;

/** Why a source file's name is refused, or null when it is fine. */
function badPath(name: string): string | null {
  if (!name) return 'a file name is empty';
  if (name.length > sourceLimits.maxPathLength) return `the path is longer than ${sourceLimits.maxPathLength} characters`;
  if (name.startsWith('/')) return 'the path must be relative, not absolute';
  const segments = name.split('/');
  for (const segment of segments) {
    if (segment === '..') return 'the path must not contain ..';
    if (segment === '' || segment === '.') return 'the path has an empty or "." segment';
    if (!PATH_SEGMENT.test(segment)) return 'the path may hold only letters, digits, dots, dashes, underscores and slashes';
  }
  return null;
}

/** The module file of a handler `pkg.mod.func` among the files: pkg/mod.py or pkg/mod/__init__.py. */
function handlerModule(handler: string, files: Record<string, string>): { module: string; func: string; file: string | null; expected: string } {
  const parts = handler.split('.');
  const func = parts.pop() ?? '';
  const module = parts.join('.');
  const base = parts.join('/');
  const candidates = [`${base}.py`, `${base}/__init__.py`];
  return { module, func, file: candidates.find((candidate) => Object.hasOwn(files, candidate)) ?? null, expected: candidates[0] ?? '' };
}

/**
 * Compiles each file with the built-in compile() (nothing is run) and, for the
 * handler's module, looks for a top-level definition of the handler's name.
 * Reads {"files": {name: source}, "handler": {"file", "func"} | null} on stdin,
 * writes a JSON list of {file, line, message}.
 */
const PYTHON_CHECK = String.raw`
import ast, json, sys, warnings
warnings.simplefilter("ignore")
request = json.load(sys.stdin)
errors = []
def names(body, out):
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        out.add(sub.id)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name):
            out.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    out.add("*")
                else:
                    out.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, (ast.If, ast.Try, ast.With, ast.AsyncWith, ast.For, ast.While)):
            for field in ("body", "orelse", "finalbody"):
                names(getattr(node, field, []) or [], out)
            for handler in getattr(node, "handlers", []) or []:
                names(handler.body, out)
trees = {}
for name, source in request["files"].items():
    try:
        trees[name] = compile(source, name, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
        compile(trees[name], name, "exec", dont_inherit=True)
    except SyntaxError as error:
        trees.pop(name, None)
        errors.append({"file": name, "line": error.lineno, "message": "%s: %s" % (type(error).__name__, error.msg)})
    except (ValueError, UnicodeError) as error:
        trees.pop(name, None)
        errors.append({"file": name, "line": None, "message": str(error)})
handler = request.get("handler")
if handler and handler["file"] in trees:
    defined = set()
    names(trees[handler["file"]].body, defined)
    if "*" not in defined and handler["func"] not in defined:
        errors.append({"file": handler["file"], "line": None, "message": "the handler function %r is not defined at the top level of %s" % (handler["func"], handler["file"])})
json.dump(errors, sys.stdout)
`;

function runPython(python: string, args: string[], input: string | null, timeoutMs: number, env: NodeJS.ProcessEnv = process.env): Promise<{ stdout: string; stderr: string; code: number | null; error: (Error & { code?: unknown; killed?: boolean }) | null }> {
  return new Promise((resolveRun) => {
    const child = execFile(python, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 32 * 1024 * 1024, env }, (err, stdout, stderr) => {
      const error = err as (Error & { code?: unknown; killed?: boolean }) | null;
      resolveRun({ stdout: String(stdout), stderr: String(stderr), code: error ? (typeof error.code === 'number' ? error.code : null) : 0, error });
    });
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input ?? '');
  });
}

function pythonMissing(python: string, error: { code?: unknown } | null): ProviderError | null {
  if (error?.code === 'ENOENT' || error?.code === 'EACCES') return new ProviderError('Internal', `the builder's python (${basename(python)}) cannot be run: install python3 or set KUMO_PYTHON`);
  return null;
}

/**
 * Checks a function's source before anything is built: file names (relative,
 * no `..`, a safe alphabet, bounded), sizes, the handler (`module.function`,
 * its module among the files, the function defined at its top level), and that
 * every .py file compiles with the builder's python3 — a syntax error comes
 * back with its file and line. Nothing of the source is run. Resolves to the
 * errors ([] when the source is fine).
 */
export async function validateSource(files: Record<string, string>, handler: string, options: { python?: string } = {}): Promise<SourceError[]> {
  const errors: SourceError[] = [];
  const names = Object.keys(files).sort(compareBytes);
  if (names.length === 0) errors.push({ file: '', line: null, message: 'there are no source files' });
  if (names.length > sourceLimits.maxFiles) errors.push({ file: '', line: null, message: `there are ${names.length} files; at most ${sourceLimits.maxFiles} are allowed` });
  let total = 0;
  const good: string[] = [];
  for (const name of names) {
    const problem = badPath(name);
    if (problem) {
      errors.push({ file: name.slice(0, 300), line: null, message: problem });
      continue;
    }
    const content = files[name];
    if (typeof content !== 'string') {
      errors.push({ file: name, line: null, message: 'the file content must be text' });
      continue;
    }
    const bytes = Buffer.byteLength(content);
    total += bytes;
    if (bytes > sourceLimits.maxFileBytes) {
      errors.push({ file: name, line: null, message: `the file has ${bytes} bytes; at most ${sourceLimits.maxFileBytes} are allowed` });
      continue;
    }
    good.push(name);
  }
  if (total > sourceLimits.maxTotalBytes) errors.push({ file: '', line: null, message: `the source has ${total} bytes; at most ${sourceLimits.maxTotalBytes} are allowed` });
  for (const name of good) {
    // A file whose path is a folder of another file's cannot be packed.
    if (good.some((other) => other.startsWith(`${name}/`))) errors.push({ file: name, line: null, message: 'the path is both a file and a folder' });
  }

  let handlerCheck: { file: string; func: string } | null = null;
  if (!HANDLER.test(handler)) {
    errors.push({ file: '', line: null, message: `the handler ${JSON.stringify(handler.slice(0, 200))} is not module.function (e.g. handler.handle)` });
  } else {
    const { module, func, file, expected } = handlerModule(handler, files);
    if (!file) errors.push({ file: expected, line: null, message: `the handler's module ${module} is not among the files (expected ${expected})` });
    else if (good.includes(file)) handlerCheck = { file, func };
  }

  const sources: Record<string, string> = {};
  for (const name of good) if (name.endsWith('.py')) sources[name] = files[name] as string;
  if (Object.keys(sources).length) {
    const python = pythonOf(options.python);
    // -I: isolated (no PYTHON* variables, no user site); the check only compiles.
    const result = await runPython(python, ['-I', '-c', PYTHON_CHECK], JSON.stringify({ files: sources, handler: handlerCheck }), PYTHON_CHECK_TIMEOUT_MS);
    const missing = pythonMissing(python, result.error);
    if (missing) throw missing;
    if (result.error) {
      if (result.error.killed) throw new ProviderError('Transient', `checking the source timed out after ${PYTHON_CHECK_TIMEOUT_MS} ms`);
      throw new ProviderError('Internal', `checking the source failed: ${result.stderr.trim().split('\n').slice(-3).join(' ').slice(0, 500)}`);
    }
    for (const error of JSON.parse(result.stdout) as SourceError[]) errors.push({ file: error.file, line: typeof error.line === 'number' ? error.line : null, message: String(error.message) });
  }
  return errors;
}

// ---------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------

/** The code layer: the function's files under opt/kumo/code/ (0644). */
export async function buildCodeLayer(options: { files: Record<string, string>; cacheDir: string }): Promise<Layer> {
  const entries: TarEntry[] = [];
  for (const [name, content] of Object.entries(options.files)) {
    const problem = badPath(name);
    if (problem) throw new ProviderError('InvalidSpec', `source file ${JSON.stringify(name.slice(0, 200))}: ${problem}`, { field: 'files' });
    const data = Buffer.from(content, 'utf8');
    entries.push({ path: `${imageLayout.code}/${name}`, type: 'file', mode: 0o644, size: data.length, data });
  }
  const sorted = normaliseEntries(entries, imageLayout.code);
  return cachedOrBuilt(options.cacheDir, `code-${contentKey('code', sorted)}`, async () => ({ entries: sorted }));
}

/**
 * The runtime layer: the runtime package under opt/kumo/runtime/kumo_runtime/.
 * `runtimeDir` is the package folder (runtime/kumo_runtime), or the folder
 * holding it (runtime/); it must have a __main__.py (the entrypoint is
 * `python3 -m kumo_runtime`).
 */
export async function buildRuntimeLayer(options: { runtimeDir: string; cacheDir: string }): Promise<Layer> {
  let dir = resolve(options.runtimeDir);
  const nested = join(dir, 'kumo_runtime');
  if ((await stat(nested).catch(() => null))?.isDirectory()) dir = nested;
  if (!(await stat(join(dir, '__main__.py')).catch(() => null))?.isFile()) {
    throw new ProviderError('InvalidSpec', `the runtime folder ${basename(dir)} is not the kumo_runtime package (no __main__.py)`);
  }
  const sorted = normaliseEntries(await folderEntries(dir, imageLayout.runtime, true), imageLayout.runtime);
  return cachedOrBuilt(options.cacheDir, `runtime-${contentKey('runtime', sorted)}`, async () => ({ entries: sorted }));
}

/**
 * requirements.txt reduced to what matters: comments, blank lines and
 * line continuations gone, whitespace collapsed. Refuses pip options (-r, -e,
 * --index-url, …) and local paths: a function's requirements name packages.
 */
export function normaliseRequirements(text: string): string[] {
  const joined = text.replace(/\r\n?/g, '\n').replace(/\\\n/g, ' ');
  const lines: string[] = [];
  joined.split('\n').forEach((raw, index) => {
    const line = raw.replace(/(^|\s)#.*$/, '').trim().replace(/\s+/g, ' ');
    if (!line) return;
    const where = `requirements.txt line ${index + 1}`;
    if (line.startsWith('-')) throw new ProviderError('InvalidSpec', `${where}: pip options (${line.split(' ')[0]}) are not allowed; name packages only`, { field: 'requirements.txt' });
    if (/^[./~]/.test(line) || /(^|[\s@])file:/i.test(line)) throw new ProviderError('InvalidSpec', `${where}: local paths are not allowed; name packages only`, { field: 'requirements.txt' });
    lines.push(line);
  });
  return lines;
}

interface PythonInfo {
  implementation: string;
  version: string;
  platform: string;
  soabi: string;
}

const pythonInfos = new Map<string, Promise<PythonInfo>>();

/** The builder's python: what decides which wheels pip picks (part of the dependency layer's key). */
function pythonInfo(python: string): Promise<PythonInfo> {
  let info = pythonInfos.get(python);
  if (!info) {
    info = (async () => {
      const script = 'import json, platform, sys, sysconfig; print(json.dumps({"implementation": sys.implementation.name, "version": platform.python_version(), "platform": sysconfig.get_platform(), "soabi": sysconfig.get_config_var("SOABI") or ""}))';
      const result = await runPython(python, ['-I', '-c', script], null, PYTHON_CHECK_TIMEOUT_MS);
      const missing = pythonMissing(python, result.error);
      if (missing) throw missing;
      if (result.error) throw new ProviderError('Internal', `the builder's python failed: ${result.stderr.trim().slice(0, 300)}`);
      return JSON.parse(result.stdout) as PythonInfo;
    })();
    pythonInfos.set(python, info);
    info.catch(() => pythonInfos.delete(python));
  }
  return info;
}

/** Text that reads as a network fault between pip and the package index. */
const PIP_NETWORK = /NewConnectionError|Max retries exceeded|Retrying \(Retry\(|Temporary failure in name resolution|Name or service not known|Connection (refused|reset|aborted)|ConnectTimeoutError|ReadTimeoutError|timed out|Network is unreachable|ProxyError|Could not fetch URL|HTTP error 5\d\d|SSLError|IncompleteRead/i;

/** pip's message for an error: its ERROR lines (else its last lines), credentials in URLs blanked out. */
function pipMessage(stderr: string): string {
  const lines = stderr.split('\n').map((line) => line.trimEnd()).filter(Boolean);
  const errors = lines.filter((line) => line.startsWith('ERROR:')).map((line) => line.slice('ERROR:'.length).trim());
  const chosen = errors.length ? errors : lines.slice(-8);
  return chosen.join('; ').replace(/\/\/[^/\s@]+@/g, '//***@').slice(0, 2000);
}

/**
 * The dependency layer: `pip install --target` of requirements.txt, packed
 * under opt/kumo/deps/. Cached in cacheDir by the sha256 of the normalised
 * requirements, the python's version and platform: the same requirements give
 * the cached layer (`cached: true`) without running pip. Empty requirements
 * give an empty layer (only the opt/kumo/deps/ folder) without running pip.
 *
 * Only wheels are installed (`--only-binary=:all:`) unless `allowSourceBuilds`:
 * building an sdist runs the package's own setup code on the builder's host.
 * A requirement pip cannot satisfy is InvalidSpec with pip's error lines; a
 * failure to reach the index is Transient.
 */
export async function buildDependencyLayer(options: { requirements: string; cacheDir: string; python?: string; timeoutMs?: number; allowSourceBuilds?: boolean }): Promise<Layer> {
  const requirements = normaliseRequirements(options.requirements);
  const python = pythonOf(options.python);
  if (requirements.length === 0) {
    const sorted = normaliseEntries([], imageLayout.deps);
    return cachedOrBuilt(options.cacheDir, `deps-${contentKey('deps', sorted)}`, async () => ({ entries: sorted }));
  }
  const info = await pythonInfo(python);
  const allowSource = options.allowSourceBuilds === true;
  const key = createHash('sha256')
    .update(JSON.stringify({ format: LAYER_FORMAT, gzip: GZIP_LEVEL, requirements, python: info, allowSource }))
    .digest('hex');
  return cachedOrBuilt(options.cacheDir, `deps-${key}`, async () => {
    const work = await mkdtemp(join(tmpdir(), 'kumo-pip-'));
    const cleanup = () => rm(work, { recursive: true, force: true });
    try {
      const target = join(work, 'target');
      const file = join(work, 'requirements.txt');
      await writeFile(file, `${requirements.join('\n')}\n`);
      const timeoutMs = options.timeoutMs ?? PIP_TIMEOUT_MS;
      const args = ['-m', 'pip', 'install', '--no-compile', '--disable-pip-version-check', '--no-input', '--no-warn-script-location', ...(allowSource ? [] : ['--only-binary=:all:']), '--target', target, '-r', file];
      const result = await runPython(python, args, null, timeoutMs, { ...process.env, PIP_ROOT_USER_ACTION: 'ignore', PIP_NO_INPUT: '1', PYTHONDONTWRITEBYTECODE: '1' });
      const missing = pythonMissing(python, result.error);
      if (missing) throw missing;
      if (result.error) {
        if (result.error.killed) throw new ProviderError('Transient', `pip install timed out after ${timeoutMs} ms`);
        const message = pipMessage(result.stderr || result.stdout);
        throw new ProviderError(PIP_NETWORK.test(result.stderr) ? 'Transient' : 'InvalidSpec', `pip install: ${message}`, { field: 'requirements.txt' });
      }
      const entries = await folderEntries(target, imageLayout.deps, false).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return [];
        throw err;
      });
      // Entries read their files lazily: `work` goes once the tar is written.
      return { entries: normaliseEntries(entries, imageLayout.deps), cleanup };
    } catch (err) {
      await cleanup();
      throw err;
    }
  });
}

// ---------------------------------------------------------------------------
// Config, manifest, push
// ---------------------------------------------------------------------------

/** A JSON object with sorted keys: the same map gives the same bytes whatever order it was built in. */
function sortedRecord(record: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => compareBytes(a, b)));
}

const RESERVED_ENV = ['PYTHONPATH', 'KUMO_CODE_DIR', 'KUMO_HANDLER'];

/**
 * The OCI image config (as bytes: its digest is the config blob's). No
 * `created` and no history: the same layers and settings give the same bytes.
 */
export function imageConfig(options: { layers: Layer[]; handler: string; env: Record<string, string>; labels?: Record<string, string> }): Buffer {
  if (!HANDLER.test(options.handler)) throw new ProviderError('InvalidSpec', `the handler ${JSON.stringify(options.handler.slice(0, 200))} is not module.function`, { field: 'handler' });
  const userEnv: string[] = [];
  for (const [name, value] of Object.entries(sortedRecord(options.env))) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new ProviderError('InvalidSpec', `environment variable name ${JSON.stringify(name.slice(0, 100))} is not valid`, { field: 'env' });
    if (RESERVED_ENV.includes(name)) throw new ProviderError('InvalidSpec', `environment variable ${name} is set by the runtime`, { field: 'env' });
    userEnv.push(`${name}=${value}`);
  }
  const config = {
    architecture: 'amd64',
    os: 'linux',
    config: {
      Env: ['PYTHONPATH=deps:runtime', 'KUMO_CODE_DIR=code', `KUMO_HANDLER=${options.handler}`, ...userEnv],
      Entrypoint: ['python3', '-m', 'kumo_runtime'],
      WorkingDir: imageLayout.workingDir,
      ExposedPorts: { [`${imageLayout.port}/tcp`]: {} },
      Labels: sortedRecord(options.labels ?? {}),
    },
    rootfs: { type: 'layers', diff_ids: options.layers.map((layer) => layer.diffId) },
  };
  return Buffer.from(JSON.stringify(config), 'utf8');
}

/** The OCI image manifest (as bytes) for a config blob and its layers, bottom first. */
export function imageManifest(options: { config: Buffer; layers: Layer[] }): Buffer {
  const manifest = {
    schemaVersion: 2,
    mediaType: mediaTypes.ociManifest,
    config: { mediaType: mediaTypes.ociConfig, digest: sha256Digest(options.config), size: options.config.length },
    layers: options.layers.map((layer) => ({ mediaType: layer.mediaType, digest: layer.digest, size: layer.size })),
  };
  return Buffer.from(JSON.stringify(manifest), 'utf8');
}

/**
 * Pushes an image: the layers and the config (each skipped when the
 * repository has it), then the manifest under `tag`. Resolves to the
 * manifest's digest — the image is `<registry>/<repo>@<digest>`.
 */
export async function pushImage(registry: Registry, repo: string, tag: string, image: { config: Buffer; layers: Layer[] }): Promise<{ digest: string }> {
  const configDigest = sha256Digest(image.config);
  const layers = [...new Map(image.layers.map((layer) => [layer.digest, layer])).values()];
  // Two uploads at a time: enough to overlap round trips without flooding the registry.
  const queue = [...layers];
  const worker = async () => {
    for (let layer = queue.shift(); layer; layer = queue.shift()) await registry.pushBlob(repo, layer.digest, { path: layer.path, size: layer.size });
  };
  await Promise.all([worker(), worker()]);
  await registry.pushBlob(repo, configDigest, image.config);
  const digest = await registry.putManifest(repo, tag, imageManifest(image), mediaTypes.ociManifest);
  return { digest };
}
