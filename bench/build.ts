import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildCodeLayer, buildDependencyLayer, buildRuntimeLayer, imageConfig, pushImage } from '../providers/builder.js';
import { createRegistryClient } from '../providers/registry.js';
import { registryBinary, startRegistry } from '../scripts/registry.js';

const runtimeDir = fileURLToPath(new URL('../runtime/kumo_runtime', import.meta.url));

export interface BuildBench {
  samples: number;
  /** Median milliseconds of a first build (empty layer cache) and of a rebuild after a code-only change. */
  firstMs: number;
  rebuildMs: number;
}

/**
 * A function's first build (pip into the dependency layer, runtime and code
 * layers, push to the real registry) against a rebuild after a change to
 * handler.py only, which reuses the dependency layer. Each sample starts from
 * an empty layer cache. Null when no registry is installed.
 */
export async function benchFunctionBuild(samples: number): Promise<BuildBench | null> {
  if (!registryBinary()) return null;
  const dir = mkdtempSync(join(tmpdir(), 'kumo-bench-build-'));
  const server = await startRegistry({ dataDir: join(dir, 'registry') });
  const registry = createRegistryClient({ url: server.url, timeoutMs: 120_000 });
  const first: number[] = [];
  const rebuild: number[] = [];
  try {
    for (let i = 0; i < samples; i++) {
      const cacheDir = join(dir, `cache-${i}`);
      const files = (version: string) => ({
        'handler.py': `import six\n\ndef handle(event, context):\n    return {"version": "${version}", "six": six.__version__, "sample": ${i}}\n`,
        'requirements.txt': 'six==1.16.0\n',
      });
      const build = async (version: string) => {
        const t = performance.now();
        const code = files(version);
        const layers = [
          await buildDependencyLayer({ requirements: code['requirements.txt'], cacheDir }),
          await buildRuntimeLayer({ runtimeDir, cacheDir }),
          await buildCodeLayer({ files: code, cacheDir }),
        ];
        await pushImage(registry, `bench/fn-${i}`, version, { config: imageConfig({ layers, handler: 'handler.handle', env: {} }), layers });
        return performance.now() - t;
      };
      first.push(await build('v1'));
      rebuild.push(await build('v2'));
    }
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return { samples, firstMs: median(first), rebuildMs: median(rebuild) };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}
