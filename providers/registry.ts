import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { ProviderError, type FailureType } from '../domain/errors.js';
import { classifyHttpStatus } from './http.js';

/**
 * A client for the OCI Distribution API (v2), the one every registry speaks:
 * CNCF distribution (the embedded stack's), Harbor, Zot, cloud registries.
 * Plain `fetch`, HTTP basic auth when credentials are given (bearer-token
 * challenge flows are not implemented), monolithic uploads.
 *
 * Every answer is checked: blob and manifest bodies against their digests,
 * and the digest the registry reports for a pushed manifest against the bytes.
 * Errors are ProviderErrors; their messages name the operation, the repository
 * and the registry's error code, never the credentials or upload URLs.
 */
export interface Registry {
  /** HEAD the blob: true when the repository has it. */
  blobExists(repo: string, digest: string): Promise<boolean>;
  /**
   * Uploads a blob unless the repository has it already. A Buffer is checked
   * against `digest` before anything is sent; a file is streamed and the
   * registry checks it (a mismatch is InvalidSpec either way).
   */
  pushBlob(repo: string, digest: string, data: Buffer | { path: string; size: number }): Promise<'pushed' | 'exists'>;
  /** PUT a manifest under a tag or its digest; resolves to its digest (sha256 of the bytes, as the registry confirmed). */
  putManifest(repo: string, reference: string, manifest: Buffer, mediaType: string): Promise<string>;
  /** The manifest (or index) by tag or digest; null when the repository or reference is unknown. */
  getManifest(repo: string, reference: string): Promise<RegistryManifest | null>;
  /** The blob's bytes, verified; null when unknown. */
  getBlob(repo: string, digest: string): Promise<Buffer | null>;
  /** The repository's tags (all pages); [] when the repository is unknown. */
  listTags(repo: string): Promise<string[]>;
  /** Deletes a manifest by digest (its tags go with it); an absent one is fine. */
  deleteManifest(repo: string, digest: string): Promise<'deleted' | 'absent'>;
}

export interface RegistryManifest {
  digest: string;
  mediaType: string;
  body: Buffer;
}

export interface RegistryOptions {
  /** The registry's base URL, e.g. http://127.0.0.1:5000 or https://registry.example.com. */
  url: string;
  /** Per request; a blob upload gets one more second per 8 MiB of body. */
  timeoutMs: number;
  username?: string;
  password?: string;
}

export const mediaTypes = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
} as const;

const MANIFEST_ACCEPT = [mediaTypes.ociManifest, mediaTypes.ociIndex, mediaTypes.dockerManifest, mediaTypes.dockerManifestList].join(', ');
/** Repository names as the distribution spec allows them. */
const REPO_NAME = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
/** Only sha256 digests: what Kumo writes and can verify. */
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** `sha256:<hex>` of the bytes. */
export function sha256Digest(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

function checkRepo(repo: string): void {
  if (repo.length > 255 || !REPO_NAME.test(repo)) throw new ProviderError('InvalidSpec', `registry: invalid repository name ${JSON.stringify(repo.slice(0, 300))}`, { code: 'NAME_INVALID', field: 'repo' });
}

function checkDigest(digest: string): void {
  if (!DIGEST.test(digest)) throw new ProviderError('InvalidSpec', `registry: invalid digest ${JSON.stringify(digest.slice(0, 100))} (expected sha256:<64 hex>)`, { code: 'DIGEST_INVALID', field: 'digest' });
}

function checkReference(reference: string): void {
  if (!TAG.test(reference) && !DIGEST.test(reference)) throw new ProviderError('InvalidSpec', `registry: invalid tag or digest ${JSON.stringify(reference.slice(0, 140))}`, { code: 'TAG_INVALID', field: 'reference' });
}

/** The failure type of a registry's error answer: the spec's error codes first, then the HTTP status. */
export function classifyRegistryError(status: number, code: string): FailureType {
  switch (code) {
    case 'NAME_UNKNOWN':
    case 'MANIFEST_UNKNOWN':
    case 'BLOB_UNKNOWN':
    case 'BLOB_UPLOAD_UNKNOWN':
      // An upload session that vanished is worth a retry (it starts a new one).
      return code === 'BLOB_UPLOAD_UNKNOWN' ? 'Transient' : 'NotFound';
    case 'UNAUTHORIZED':
    case 'DENIED':
      return 'Unauthorized';
    case 'TOOMANYREQUESTS':
      return 'Transient';
    case 'DIGEST_INVALID':
    case 'MANIFEST_INVALID':
    case 'MANIFEST_BLOB_UNKNOWN':
    case 'MANIFEST_UNVERIFIED':
    case 'NAME_INVALID':
    case 'TAG_INVALID':
    case 'SIZE_INVALID':
    case 'BLOB_UPLOAD_INVALID':
    case 'UNSUPPORTED':
      return 'InvalidSpec';
    default:
  }
  if (status === 403) return 'Unauthorized';
  if (status === 405 || status === 413 || status === 415) return 'InvalidSpec';
  return classifyHttpStatus(status, code, '');
}

/** The first error of an OCI error body ({"errors":[{"code","message"}]}), or the status text. */
async function readError(response: Response): Promise<{ code: string; message: string }> {
  const text = await response.text().catch(() => '');
  try {
    const parsed = JSON.parse(text) as { errors?: Array<{ code?: unknown; message?: unknown }> };
    const first = parsed.errors?.[0];
    if (first) return { code: typeof first.code === 'string' ? first.code : '', message: typeof first.message === 'string' ? first.message.slice(0, 500) : '' };
  } catch {
    // Not JSON: a proxy's page or nothing.
  }
  return { code: '', message: response.statusText || text.replace(/\s+/g, ' ').slice(0, 200) };
}

export function createRegistryClient(options: RegistryOptions): Registry {
  const parsed = new URL(options.url);
  // Credentials in the URL are taken out of it, so no URL Kumo builds carries them.
  const username = options.username ?? (parsed.username ? decodeURIComponent(parsed.username) : undefined);
  const password = options.password ?? (parsed.password ? decodeURIComponent(parsed.password) : undefined);
  parsed.username = '';
  parsed.password = '';
  const base = parsed.toString().replace(/\/+$/, '');
  const origin = parsed.origin;
  const secrets = [password, username && password ? Buffer.from(`${username}:${password}`).toString('base64') : undefined].filter((s): s is string => !!s && s.length >= 3);
  const authorization = username !== undefined || password !== undefined ? `Basic ${Buffer.from(`${username ?? ''}:${password ?? ''}`).toString('base64')}` : undefined;

  const redact = (text: string): string => secrets.reduce((out, secret) => out.split(secret).join('***'), text);

  interface Call {
    method: string;
    /** A path under the base URL, or an absolute URL (an upload Location). */
    url: string;
    what: string;
    headers?: Record<string, string>;
    body?: Buffer | { path: string; size: number };
    timeoutMs?: number;
  }

  async function call({ method, url, what, headers = {}, body, timeoutMs = options.timeoutMs }: Call): Promise<Response> {
    const target = /^https?:\/\//i.test(url) ? url : `${base}${url}`;
    // Credentials go to the registry's own origin only, never to one a Location or Link names.
    const sameOrigin = new URL(target).origin === origin;
    const init: RequestInit & { duplex?: 'half' } = {
      method,
      headers: { ...headers, ...(authorization && sameOrigin ? { authorization } : {}) },
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'follow',
    };
    if (Buffer.isBuffer(body)) {
      init.body = body;
    } else if (body) {
      init.body = Readable.toWeb(createReadStream(body.path)) as ReadableStream<Uint8Array>;
      init.duplex = 'half';
      (init.headers as Record<string, string>)['content-length'] = String(body.size);
    }
    try {
      return await fetch(target, init);
    } catch (err) {
      const error = err as Error & { cause?: { code?: string; message?: string } };
      const timedOut = error.name === 'TimeoutError' || error.name === 'AbortError';
      const reason = timedOut ? `timed out after ${timeoutMs} ms` : (error.cause?.code ?? error.cause?.message ?? error.message);
      throw new ProviderError('Transient', redact(`registry ${what}: ${reason}`));
    }
  }

  async function fail(response: Response, what: string): Promise<never> {
    const { code, message } = await readError(response);
    const type = classifyRegistryError(response.status, code);
    throw new ProviderError(type, redact(`registry ${what}: ${response.status}${code ? ` ${code}` : ''}${message ? `: ${message}` : ''}`), { status: response.status, code });
  }

  const discard = async (response: Response) => {
    await response.body?.cancel().catch(() => undefined);
  };

  async function blobExists(repo: string, digest: string): Promise<boolean> {
    checkRepo(repo);
    checkDigest(digest);
    const what = `HEAD blob ${repo}@${digest}`;
    const response = await call({ method: 'HEAD', url: `/v2/${repo}/blobs/${digest}`, what });
    await discard(response);
    if (response.status === 200) return true;
    if (response.status === 404) return false;
    // HEAD answers have no body: classify by status alone.
    return fail(response, what);
  }

  /** The upload URL to PUT to: a Location may be relative or absolute, and may carry a query (upload state) already. */
  function uploadUrl(location: string, digest: string): string {
    const absolute = new URL(location, `${base}/`);
    absolute.username = '';
    absolute.password = '';
    absolute.searchParams.set('digest', digest);
    return absolute.toString();
  }

  return {
    blobExists,

    async pushBlob(repo, digest, data) {
      checkRepo(repo);
      checkDigest(digest);
      const size = Buffer.isBuffer(data) ? data.length : data.size;
      if (!Buffer.isBuffer(data)) {
        const info = await stat(data.path).catch(() => null);
        if (!info?.isFile()) throw new ProviderError('NotFound', `registry push blob ${repo}: the blob's file does not exist`);
        if (info.size !== data.size) throw new ProviderError('InvalidSpec', `registry push blob ${repo}: the file has ${info.size} bytes, not ${data.size}`, { code: 'SIZE_INVALID' });
      }
      if (Buffer.isBuffer(data) && sha256Digest(data) !== digest) {
        throw new ProviderError('InvalidSpec', `registry push blob ${repo}: the data's digest is ${sha256Digest(data)}, not ${digest}`, { code: 'DIGEST_INVALID' });
      }
      if (await blobExists(repo, digest)) return 'exists';
      const what = `push blob ${repo}@${digest}`;
      const started = await call({ method: 'POST', url: `/v2/${repo}/blobs/uploads/`, what, headers: { 'content-length': '0' } });
      await discard(started);
      if (started.status !== 202) return fail(started, what);
      const location = started.headers.get('location');
      if (!location) throw new ProviderError('Transient', `registry ${what}: the upload was started without a Location`);
      const finished = await call({
        method: 'PUT',
        url: uploadUrl(location, digest),
        what,
        headers: { 'content-type': 'application/octet-stream' },
        body: data,
        timeoutMs: options.timeoutMs + Math.ceil(size / (8 * 1024 * 1024)) * 1000,
      });
      if (finished.status !== 201) return fail(finished, what);
      await discard(finished);
      const confirmed = finished.headers.get('docker-content-digest');
      if (confirmed && confirmed !== digest) throw new ProviderError('VerificationFailed', `registry ${what}: the registry stored it as ${confirmed}`);
      return 'pushed';
    },

    async putManifest(repo, reference, manifest, mediaType) {
      checkRepo(repo);
      checkReference(reference);
      const digest = sha256Digest(manifest);
      if (DIGEST.test(reference) && reference !== digest) {
        throw new ProviderError('InvalidSpec', `registry put manifest ${repo}: the manifest's digest is ${digest}, not ${reference}`, { code: 'DIGEST_INVALID' });
      }
      const what = `put manifest ${repo}:${reference}`;
      const response = await call({ method: 'PUT', url: `/v2/${repo}/manifests/${reference}`, what, headers: { 'content-type': mediaType }, body: manifest });
      if (response.status !== 201 && response.status !== 200) return fail(response, what);
      await discard(response);
      const confirmed = response.headers.get('docker-content-digest');
      if (confirmed && confirmed !== digest) throw new ProviderError('VerificationFailed', `registry ${what}: the registry answered digest ${confirmed}, the bytes are ${digest}`);
      return digest;
    },

    async getManifest(repo, reference) {
      checkRepo(repo);
      checkReference(reference);
      const what = `get manifest ${repo}:${reference}`;
      const response = await call({ method: 'GET', url: `/v2/${repo}/manifests/${reference}`, what, headers: { accept: MANIFEST_ACCEPT } });
      if (response.status === 404) {
        await discard(response);
        return null;
      }
      if (response.status !== 200) return fail(response, what);
      const body = Buffer.from(await response.arrayBuffer());
      if (body.length > MAX_MANIFEST_BYTES) throw new ProviderError('VerificationFailed', `registry ${what}: the manifest is ${body.length} bytes`);
      const digest = sha256Digest(body);
      if (DIGEST.test(reference) && reference !== digest) throw new ProviderError('VerificationFailed', `registry ${what}: the body's digest is ${digest}`);
      const reported = response.headers.get('docker-content-digest');
      if (reported && reported.startsWith('sha256:') && reported !== digest) throw new ProviderError('VerificationFailed', `registry ${what}: the registry reports ${reported}, the body is ${digest}`);
      let mediaType = (response.headers.get('content-type') ?? '').split(';')[0]?.trim() ?? '';
      if (!mediaType || mediaType === 'application/json' || mediaType === 'application/octet-stream') {
        try {
          const declared = (JSON.parse(body.toString('utf8')) as { mediaType?: unknown }).mediaType;
          if (typeof declared === 'string') mediaType = declared;
        } catch {
          // Keep what the header said.
        }
      }
      return { digest, mediaType, body };
    },

    async getBlob(repo, digest) {
      checkRepo(repo);
      checkDigest(digest);
      const what = `get blob ${repo}@${digest}`;
      const response = await call({ method: 'GET', url: `/v2/${repo}/blobs/${digest}`, what });
      if (response.status === 404) {
        await discard(response);
        return null;
      }
      if (response.status !== 200) return fail(response, what);
      const body = Buffer.from(await response.arrayBuffer());
      const actual = sha256Digest(body);
      if (actual !== digest) throw new ProviderError('VerificationFailed', `registry ${what}: the body's digest is ${actual}`);
      return body;
    },

    async listTags(repo) {
      checkRepo(repo);
      const what = `list tags ${repo}`;
      const tags: string[] = [];
      let next: string | null = `/v2/${repo}/tags/list`;
      for (let page = 0; next && page < 1000; page++) {
        const response = await call({ method: 'GET', url: next, what });
        if (response.status === 404) {
          await discard(response);
          return [];
        }
        if (response.status !== 200) return fail(response, what);
        const body = (await response.json()) as { tags?: string[] | null };
        tags.push(...(body.tags ?? []));
        // Link: </v2/<repo>/tags/list?n=100&last=x>; rel="next"
        const link = /<([^>]+)>\s*;\s*rel="?next"?/i.exec(response.headers.get('link') ?? '');
        next = link?.[1] ? new URL(link[1], `${base}/`).toString() : null;
      }
      return tags;
    },

    async deleteManifest(repo, digest) {
      checkRepo(repo);
      checkDigest(digest);
      const what = `delete manifest ${repo}@${digest}`;
      const response = await call({ method: 'DELETE', url: `/v2/${repo}/manifests/${digest}`, what });
      if (response.status === 404) {
        await discard(response);
        return 'absent';
      }
      if (response.status !== 202 && response.status !== 200) return fail(response, what);
      await discard(response);
      return 'deleted';
    },
  };
}
