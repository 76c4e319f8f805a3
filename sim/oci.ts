/**
 * Pulling container images for the simulated Knative runtime: image
 * references, the OCI distribution API (manifest, config and layer blobs,
 * digests verified, anonymous bearer tokens), and a small tar reader that
 * unpacks gzip'd layers into a directory.
 *
 * Only regular files, directories and hard links are unpacked; symbolic
 * links, devices and FIFOs are skipped (the process runs on the host, and a
 * link could point anywhere on it). Absolute paths and `..` are refused.
 */
import { createHash } from "node:crypto";
import { copyFileSync, lstatSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { gunzip } from "node:zlib";

const gunzipAsync = promisify(gunzip);

const MANIFEST_TYPES = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
};
const ACCEPT = [MANIFEST_TYPES.ociManifest, MANIFEST_TYPES.dockerManifest, MANIFEST_TYPES.ociIndex, MANIFEST_TYPES.dockerList].join(", ");
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_LAYER_BYTES = 512 * 1024 * 1024;
const MAX_UNPACKED_LAYER_BYTES = 1024 * 1024 * 1024;
const REQUEST_TIMEOUT_MS = 60_000;

/** A failure to pull an image; its message is what the Revision's status shows. */
export class PullError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PullError";
  }
}

/** A parsed image reference, e.g. `127.0.0.1:5001/functions/hello@sha256:…`. */
export interface ImageRef {
  /** Registry host[:port]; `docker.io` when the reference names none. */
  registry: string;
  repository: string;
  tag: string | null;
  digest: string | null;
  /** The reference names no registry host (a Docker Hub short name such as `nginx:1`). */
  dockerHub: boolean;
}

const REF_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

/** Parses `[registry/]repository[:tag][@sha256:digest]`; undefined for a malformed reference. */
export function parseImageRef(image: string): ImageRef | undefined {
  let rest = image.trim();
  let digest: string | null = null;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST_RE.test(digest)) return undefined;
  }
  let tag: string | null = null;
  const slash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > slash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) return undefined;
  }
  const first = rest.split("/")[0] ?? "";
  const hasRegistry = rest.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost" || first.startsWith("["));
  const registry = hasRegistry ? first : "docker.io";
  let repository = hasRegistry ? rest.slice(first.length + 1) : rest;
  if (!hasRegistry && !repository.includes("/")) repository = `library/${repository}`;
  if (!REF_RE.test(repository)) return undefined;
  if (tag === null && digest === null) tag = "latest";
  return { registry, repository, tag, digest, dockerHub: !hasRegistry };
}

/** Registries on the loopback interface are spoken to over plain HTTP, all others over HTTPS. */
export function registryBaseUrl(registry: string): string {
  const host = registry.replace(/:\d+$/, "");
  const plain = host === "localhost" || host === "127.0.0.1" || /^127\./.test(host) || host === "[::1]";
  return `${plain ? "http" : "https"}://${registry}`;
}

/** What the image's config says about running it. */
export interface ImageConfig {
  entrypoint: string[];
  cmd: string[];
  env: string[];
  workingDir: string;
}

export interface PulledImage {
  /** The digest of the manifest that was unpacked (a platform's manifest when the reference names an index). */
  digest: string;
  config: ImageConfig;
  /** Files written, directories made, entries skipped (links, devices). */
  files: number;
  skipped: number;
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}

function sha256(data: Buffer): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** The part of a registry's error body worth showing, e.g. `MANIFEST_UNKNOWN: manifest unknown`. */
function registryErrorDetail(text: string): string {
  try {
    const body = JSON.parse(text) as unknown;
    if (isObject(body) && Array.isArray(body.errors)) {
      const parts = body.errors.filter(isObject).map((e) => [e.code, e.message].filter((p) => typeof p === "string" && p !== "").join(": "));
      if (parts.length > 0) return parts.join("; ");
    }
  } catch {
    // not JSON
  }
  return text.trim().slice(0, 300);
}

function describeFetchError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: unknown }).cause;
  if (cause instanceof Error && cause.message !== "") return `${err.message}: ${cause.message}`;
  return err.message;
}

class RegistryClient {
  private token: string | null = null;

  constructor(
    private readonly ref: ImageRef,
    private readonly signal: AbortSignal,
  ) {}

  private get base(): string {
    return `${registryBaseUrl(this.ref.registry)}/v2/${this.ref.repository}`;
  }

  private async request(url: string, accept: string): Promise<Response> {
    const attempt = async (): Promise<Response> => {
      const headers: Record<string, string> = { accept };
      if (this.token !== null) headers.authorization = `Bearer ${this.token}`;
      try {
        return await fetch(url, { headers, signal: AbortSignal.any([this.signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]) });
      } catch (err) {
        if (this.signal.aborted) throw err;
        throw new PullError(`GET ${url}: ${describeFetchError(err)}`);
      }
    };
    let res = await attempt();
    if (res.status === 401 && this.token === null) {
      const challenge = res.headers.get("www-authenticate") ?? "";
      await res.body?.cancel();
      this.token = await this.anonymousToken(challenge, url);
      res = await attempt();
    }
    if (!res.ok) {
      const text = await res.text().catch(() => "");
      const detail = registryErrorDetail(text);
      throw new PullError(`GET ${url}: ${res.status} ${res.statusText}${detail === "" ? "" : `: ${detail}`}`);
    }
    return res;
  }

  /** The Docker token flow, without credentials (the simulator pulls anonymously). */
  private async anonymousToken(challenge: string, url: string): Promise<string> {
    const m = /^Bearer\s+(.*)$/i.exec(challenge.trim());
    if (m === null) throw new PullError(`GET ${url}: 401 Unauthorized (the simulator pulls anonymously)`);
    const params = new Map<string, string>();
    for (const p of (m[1] ?? "").matchAll(/(\w+)="([^"]*)"/g)) params.set(p[1] ?? "", p[2] ?? "");
    const realm = params.get("realm");
    if (realm === undefined) throw new PullError(`GET ${url}: 401 Unauthorized without a token realm`);
    const tokenUrl = new URL(realm);
    for (const key of ["service", "scope"]) {
      const value = params.get(key);
      if (value !== undefined) tokenUrl.searchParams.set(key, value);
    }
    let res: Response;
    try {
      res = await fetch(tokenUrl, { signal: AbortSignal.any([this.signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]) });
    } catch (err) {
      if (this.signal.aborted) throw err;
      throw new PullError(`GET ${tokenUrl.href}: ${describeFetchError(err)}`);
    }
    if (!res.ok) throw new PullError(`GET ${tokenUrl.href}: ${res.status} ${res.statusText}`);
    const body = (await res.json().catch(() => ({}))) as unknown;
    const token = isObject(body) ? (body.token ?? body.access_token) : undefined;
    if (typeof token !== "string" || token === "") throw new PullError(`GET ${tokenUrl.href}: no token in the answer`);
    return token;
  }

  private async readBody(res: Response, url: string, limit: number): Promise<Buffer> {
    const declared = Number(res.headers.get("content-length"));
    if (Number.isFinite(declared) && declared > limit) throw new PullError(`GET ${url}: ${declared} bytes is more than the simulator pulls (${limit})`);
    const chunks: Buffer[] = [];
    let total = 0;
    if (res.body !== null) {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        total += chunk.byteLength;
        if (total > limit) throw new PullError(`GET ${url}: more than ${limit} bytes`);
        chunks.push(Buffer.from(chunk));
      }
    }
    return Buffer.concat(chunks);
  }

  async manifest(reference: string): Promise<{ body: Buffer; mediaType: string; digest: string }> {
    const url = `${this.base}/manifests/${reference}`;
    const res = await this.request(url, ACCEPT);
    const body = await this.readBody(res, url, MAX_MANIFEST_BYTES);
    const digest = sha256(body);
    if (reference.startsWith("sha256:") && digest !== reference) throw new PullError(`manifest ${reference}: its content has digest ${digest}`);
    const mediaType = (res.headers.get("content-type") ?? "").split(";")[0]?.trim() ?? "";
    return { body, mediaType, digest };
  }

  async blob(digest: string, limit: number): Promise<Buffer> {
    if (!DIGEST_RE.test(digest)) throw new PullError(`unsupported blob digest ${JSON.stringify(digest)} (only sha256)`);
    const url = `${this.base}/blobs/${digest}`;
    const res = await this.request(url, "*/*");
    const body = await this.readBody(res, url, limit);
    const actual = sha256(body);
    if (actual !== digest) throw new PullError(`blob ${digest}: its content has digest ${actual}`);
    return body;
  }
}

const PLATFORM_ARCH: Record<string, string> = { x64: "amd64", arm64: "arm64", arm: "arm", ppc64: "ppc64le", s390x: "s390x" };

function parseJson(body: Buffer, what: string): Json {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString("utf8"));
  } catch (err) {
    throw new PullError(`${what} is not JSON: ${(err as Error).message}`);
  }
  if (!isObject(parsed)) throw new PullError(`${what} is not a JSON object`);
  return parsed;
}

/**
 * Pulls `image` and unpacks its layers, in order, into `rootfs` (which must
 * not exist or be empty). Honours `signal` between and during requests.
 */
export async function pullImage(image: string, rootfs: string, signal: AbortSignal): Promise<PulledImage> {
  const ref = parseImageRef(image);
  if (ref === undefined) throw new PullError(`invalid image reference ${JSON.stringify(image)}`);
  const client = new RegistryClient(ref, signal);
  let manifest = await client.manifest(ref.digest ?? ref.tag ?? "latest");
  let doc = parseJson(manifest.body, `manifest of ${image}`);
  const mediaType = typeof doc.mediaType === "string" ? doc.mediaType : manifest.mediaType;
  if (mediaType === MANIFEST_TYPES.ociIndex || mediaType === MANIFEST_TYPES.dockerList || Array.isArray(doc.manifests)) {
    const entries = (Array.isArray(doc.manifests) ? doc.manifests : []).filter(isObject);
    const arch = PLATFORM_ARCH[process.arch] ?? process.arch;
    const platform = (e: Json): Json => (isObject(e.platform) ? e.platform : {});
    const chosen = entries.find((e) => platform(e).os === "linux" && platform(e).architecture === arch) ?? entries.find((e) => platform(e).os === "linux") ?? entries[0];
    if (chosen === undefined || typeof chosen.digest !== "string") throw new PullError(`the image index of ${image} lists no manifest`);
    manifest = await client.manifest(chosen.digest);
    doc = parseJson(manifest.body, `manifest ${chosen.digest} of ${image}`);
  }
  const configDesc = isObject(doc.config) ? doc.config : undefined;
  if (configDesc === undefined || typeof configDesc.digest !== "string" || !Array.isArray(doc.layers)) {
    throw new PullError(`the manifest of ${image} is not an image manifest (no config or layers)`);
  }
  const configDoc = parseJson(await client.blob(configDesc.digest, MAX_MANIFEST_BYTES), `config ${configDesc.digest} of ${image}`);
  const c = isObject(configDoc.config) ? configDoc.config : {};
  const config: ImageConfig = {
    entrypoint: strings(c.Entrypoint),
    cmd: strings(c.Cmd),
    env: strings(c.Env),
    workingDir: typeof c.WorkingDir === "string" ? c.WorkingDir : "",
  };
  const diffIds = isObject(configDoc.rootfs) ? strings(configDoc.rootfs.diff_ids) : [];
  mkdirSync(rootfs, { recursive: true });
  let files = 0;
  let skipped = 0;
  const layers = doc.layers.filter(isObject);
  for (const [i, layer] of layers.entries()) {
    if (typeof layer.digest !== "string") throw new PullError(`layer ${i} of ${image} has no digest`);
    const blob = await client.blob(layer.digest, MAX_LAYER_BYTES);
    let tar: Buffer;
    if (blob[0] === 0x1f && blob[1] === 0x8b) {
      try {
        tar = await gunzipAsync(blob, { maxOutputLength: MAX_UNPACKED_LAYER_BYTES });
      } catch (err) {
        throw new PullError(`layer ${layer.digest} of ${image} could not be decompressed: ${(err as Error).message}`);
      }
    } else if (blob[0] === 0x28 && blob[1] === 0xb5 && blob[2] === 0x2f && blob[3] === 0xfd) {
      throw new PullError(`layer ${layer.digest} of ${image} is zstd-compressed, which the simulator does not unpack (use gzip)`);
    } else {
      tar = blob;
    }
    const diffId = diffIds[i];
    if (diffId !== undefined && diffId.startsWith("sha256:") && sha256(tar) !== diffId) {
      throw new PullError(`layer ${layer.digest} of ${image} unpacks to ${sha256(tar)}, but the config says ${diffId}`);
    }
    signal.throwIfAborted();
    let result: ExtractResult;
    try {
      result = extractTar(tar, rootfs);
    } catch (err) {
      if (err instanceof TarError) throw new PullError(`layer ${layer.digest} of ${image}: ${err.message}`);
      throw err;
    }
    files += result.files;
    skipped += result.skipped;
  }
  return { digest: manifest.digest, config, files, skipped };
}

// ---- tar ---------------------------------------------------------------------------------------

export class TarError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TarError";
  }
}

export interface ExtractResult {
  files: number;
  dirs: number;
  skipped: number;
}

interface TarEntry {
  path: string[];
  type: "file" | "dir" | "hardlink" | "other";
  mode: number;
  data: Buffer;
  linkPath: string[] | null;
}

function cString(buf: Buffer, start: number, length: number): string {
  const field = buf.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.subarray(0, end < 0 ? field.length : end).toString("utf8");
}

function tarNumber(buf: Buffer, start: number, length: number): number {
  const field = buf.subarray(start, start + length);
  if ((field[0] ?? 0) & 0x80) {
    // GNU base-256: big-endian, the top bit of the first byte marks it.
    let value = (field[0] ?? 0) & 0x7f;
    for (let i = 1; i < field.length; i++) value = value * 256 + (field[i] ?? 0);
    return value;
  }
  const text = field.toString("latin1").replace(/\0.*$/s, "").trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarError(`bad number field ${JSON.stringify(text)} in a tar header`);
  return parseInt(text, 8);
}

function checksumOk(header: Buffer): boolean {
  const stored = tarNumber(header, 148, 8);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : (header[i] ?? 0);
  return sum === stored;
}

/** `key=value` records of a pax extended header. */
function paxRecords(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space < 0) break;
    const length = Number(data.subarray(pos, space).toString("latin1"));
    if (!Number.isInteger(length) || length <= 0 || pos + length > data.length) throw new TarError("malformed pax header");
    const record = data.subarray(space + 1, pos + length - 1).toString("utf8");
    const eq = record.indexOf("=");
    if (eq > 0) out.set(record.slice(0, eq), record.slice(eq + 1));
    pos += length;
  }
  return out;
}

/** A path inside the archive as its components; absolute paths and `..` are refused. */
function safePath(raw: string): string[] {
  if (raw.startsWith("/")) throw new TarError(`refusing the absolute path ${JSON.stringify(raw)}`);
  const parts = raw.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw new TarError(`refusing the path ${JSON.stringify(raw)}, which contains ".."`);
  if (parts.some((p) => p.includes("\0"))) throw new TarError(`refusing a path with a NUL byte`);
  return parts;
}

/** Reads the entries of an uncompressed tar archive (ustar, pax and GNU long names). */
export function readTar(data: Buffer): TarEntry[] {
  const entries: TarEntry[] = [];
  let offset = 0;
  let pax = new Map<string, string>();
  let longName: string | null = null;
  let longLink: string | null = null;
  while (offset + 512 <= data.length) {
    const header = data.subarray(offset, offset + 512);
    if (header.every((b) => b === 0)) break;
    if (!checksumOk(header)) throw new TarError(`bad header checksum at offset ${offset}`);
    const typeflag = String.fromCharCode(header[156] ?? 0);
    let size = tarNumber(header, 124, 12);
    const paxSize = pax.get("size");
    if (paxSize !== undefined && /^\d+$/.test(paxSize)) size = Number(paxSize);
    const start = offset + 512;
    if (start + size > data.length) throw new TarError(`entry at offset ${offset} runs past the end of the archive`);
    const body = data.subarray(start, start + size);
    offset = start + Math.ceil(size / 512) * 512;
    if (typeflag === "x") {
      pax = paxRecords(body);
      continue;
    }
    if (typeflag === "g") continue;
    if (typeflag === "L") {
      longName = body.toString("utf8").replace(/\0+$/, "");
      continue;
    }
    if (typeflag === "K") {
      longLink = body.toString("utf8").replace(/\0+$/, "");
      continue;
    }
    const magic = header.subarray(257, 263).toString("latin1");
    const prefix = magic === "ustar\0" ? cString(header, 345, 155) : "";
    const name = cString(header, 0, 100);
    const rawPath = pax.get("path") ?? longName ?? (prefix !== "" ? `${prefix}/${name}` : name);
    const rawLink = pax.get("linkpath") ?? longLink ?? cString(header, 157, 100);
    pax = new Map();
    longName = null;
    longLink = null;
    const type: TarEntry["type"] = typeflag === "0" || typeflag === "\0" || typeflag === "7" ? "file" : typeflag === "5" ? "dir" : typeflag === "1" ? "hardlink" : "other";
    const path = safePath(rawPath);
    entries.push({
      path,
      type: type === "file" && rawPath.endsWith("/") ? "dir" : type,
      mode: tarNumber(header, 100, 8) & 0o7777,
      data: body,
      linkPath: type === "hardlink" ? safePath(rawLink) : null,
    });
  }
  return entries;
}

function removeInside(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) rmSync(join(dir, name), { recursive: true, force: true });
}

/** Makes the directories of `parts` below `root`, replacing anything in the way that is not a directory. */
function ensureDir(root: string, parts: string[]): string {
  let current = root;
  for (const part of parts) {
    current = join(current, part);
    let isDir = false;
    try {
      const st = lstatSync(current);
      isDir = st.isDirectory();
      if (!isDir) rmSync(current, { force: true, recursive: true });
    } catch {
      // missing
    }
    if (!isDir) mkdirSync(current, { mode: 0o755 });
  }
  return current;
}

/**
 * Unpacks a layer into `root`, applying the OCI whiteouts (`.wh.<name>`
 * removes a name of a lower layer, `.wh..wh..opq` empties a directory)
 * before writing the layer's own entries.
 */
export function extractTar(data: Buffer, root: string): ExtractResult {
  const entries = readTar(data);
  const result: ExtractResult = { files: 0, dirs: 0, skipped: 0 };
  const writes: TarEntry[] = [];
  for (const entry of entries) {
    const base = entry.path[entry.path.length - 1];
    if (base !== undefined && base.startsWith(".wh.")) {
      const dir = entry.path.slice(0, -1);
      if (base === ".wh..wh..opq") removeInside(join(root, ...dir));
      else rmSync(join(root, ...dir, base.slice(4)), { recursive: true, force: true });
      continue;
    }
    writes.push(entry);
  }
  for (const entry of writes) {
    if (entry.path.length === 0) continue;
    const parent = ensureDir(root, entry.path.slice(0, -1));
    const target = join(parent, entry.path[entry.path.length - 1] ?? "");
    switch (entry.type) {
      case "dir":
        ensureDir(root, entry.path);
        result.dirs += 1;
        break;
      case "file":
        rmSync(target, { recursive: true, force: true });
        writeFileSync(target, entry.data, { mode: (entry.mode & 0o777) | 0o600 });
        result.files += 1;
        break;
      case "hardlink": {
        const source = join(root, ...(entry.linkPath ?? []));
        try {
          if (!lstatSync(source).isFile()) throw new Error("not a regular file");
          rmSync(target, { recursive: true, force: true });
          copyFileSync(source, target);
          result.files += 1;
        } catch {
          result.skipped += 1;
        }
        break;
      }
      default:
        result.skipped += 1;
    }
  }
  return result;
}
