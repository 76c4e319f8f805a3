import { connect } from 'node:net';

/**
 * Opens a TCP connection to `host:port` and closes it at once: 0/1 reachability,
 * with the reason (refused, timed out, no route) when it fails.
 */
export function dialTcp(host: string, port: number, timeoutMs: number): Promise<{ ok: boolean; reason: string }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = connect({ host, port });
    const done = (ok: boolean, reason: string) => {
      socket.destroy();
      resolve({ ok, reason });
    };
    socket.setTimeout(timeoutMs, () => done(false, `no TCP connection to ${host}:${port} within ${timeoutMs} ms`));
    socket.once('connect', () => done(true, `TCP ${host}:${port} connected in ${Date.now() - started} ms`));
    socket.once('error', (err: NodeJS.ErrnoException) => done(false, `TCP ${host}:${port}: ${err.code ?? err.message}`));
  });
}

/** The host and port of an `https://host:port/...` endpoint (443 or 80 when the URL names none). */
export function endpointAddress(url: string): { host: string; port: number } | null {
  try {
    const parsed = new URL(url);
    const port = parsed.port ? Number(parsed.port) : parsed.protocol === 'https:' ? 443 : 80;
    return { host: parsed.hostname.replace(/^\[|\]$/g, ''), port };
  } catch {
    return null;
  }
}
