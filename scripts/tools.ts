import { execFileSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The project's root folder. */
export const projectRoot = fileURLToPath(new URL('..', import.meta.url));

/**
 * The `temporal` CLI to run: `TEMPORAL_CLI`, else the one the setup installed in
 * `.tools/`, else one on PATH. Never a download.
 */
export function temporalCli(): string {
  const fromEnv = process.env.TEMPORAL_CLI;
  if (fromEnv) return fromEnv;
  const local = fileURLToPath(new URL('../.tools/bin/temporal', import.meta.url));
  if (existsSync(local)) return local;
  try {
    return execFileSync('sh', ['-c', 'command -v temporal'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('no temporal CLI found: run `npm run setup` (it installs one into .tools/) or set TEMPORAL_CLI');
  }
}

/** The `helm` binary: `HELM_BIN`, else the one the setup built into `.tools/`, else one on PATH. */
export function helmBinary(): string {
  const fromEnv = process.env.HELM_BIN;
  if (fromEnv) return fromEnv;
  const local = fileURLToPath(new URL('../.tools/bin/helm', import.meta.url));
  if (existsSync(local)) return local;
  try {
    return execFileSync('sh', ['-c', 'command -v helm'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('no helm found: run `npm run setup` (it builds one into .tools/) or set HELM_BIN');
  }
}

/** A TCP port free on loopback right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Whether the module at `moduleUrl` is the script node was asked to run (not an import). */
export function isMainModule(moduleUrl: string): boolean {
  try {
    return !!process.argv[1] && moduleUrl === pathToFileURL(realpathSync(process.argv[1])).href;
  } catch {
    return false;
  }
}
