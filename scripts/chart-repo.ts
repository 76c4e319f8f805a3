import { createReadStream } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join, resolve } from 'node:path';

/**
 * The local chart repository the embedded stack serves: a read-only static
 * HTTP server for a folder that `helm repo index` made (index.yaml and the
 * chart archives), e.g. the one scripts/package-charts.ts fills. A production
 * deployment points Kumo at a real chart repository's URL instead.
 *
 * Only GET and HEAD (405 otherwise), only plain file names directly in the
 * folder (index.yaml and *.tgz; anything else, any path with a slash or a dot
 * in front, 404), only regular files (no symbolic links).
 */
export interface ChartRepo {
  /** The repository's URL, e.g. http://127.0.0.1:41234 (no trailing slash). */
  url: string;
  close(): Promise<void>;
}

/** A plain file name: no slash, no leading dot, nothing to decode into either. */
const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,254}$/;

function contentType(name: string): string | undefined {
  if (name === 'index.yaml') return 'application/yaml; charset=utf-8';
  if (name.endsWith('.tgz')) return 'application/gzip';
  return undefined;
}

export async function startChartRepo(options: { dir: string; port?: number; host?: string }): Promise<ChartRepo> {
  const dir = resolve(options.dir);
  const host = options.host ?? '127.0.0.1';

  const send = (res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(text)), 'x-content-type-options': 'nosniff', ...headers });
    res.end(res.req.method === 'HEAD' ? undefined : text);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed: this chart repository is read-only\n', { allow: 'GET, HEAD' });
    // The raw request path, not a URL parser's normalized one: `/../x` must not become `/x`.
    const rawPath = (req.url ?? '').split(/[?#]/, 1)[0] ?? '';
    let name: string;
    try {
      name = decodeURIComponent(rawPath.startsWith('/') ? rawPath.slice(1) : '\0');
    } catch {
      return send(res, 404, 'not found\n');
    }
    const type = FILE_NAME.test(name) ? contentType(name) : undefined;
    if (!type) return send(res, 404, 'not found\n');
    const path = join(dir, name);
    const info = await lstat(path).catch(() => null);
    if (!info?.isFile()) return send(res, 404, 'not found\n');
    res.writeHead(200, {
      'content-type': type,
      'content-length': String(info.size),
      'last-modified': info.mtime.toUTCString(),
      'cache-control': 'no-cache',
      'x-content-type-options': 'nosniff',
    });
    if (req.method === 'HEAD') return void res.end();
    const stream = createReadStream(path);
    stream.on('error', () => res.destroy());
    stream.pipe(res);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) send(res, 500, 'internal error\n');
      else res.destroy();
    });
  });
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolveListen();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : (options.port ?? 0);
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${urlHost}:${port}`,
    close: () =>
      new Promise<void>((resolveClose, reject) => {
        server.close((err) => (err ? reject(err) : resolveClose()));
        server.closeAllConnections();
      }),
  };
}
