/**
 * `npm run fuzz`: starts the embedded stack (as the tests do: free ports, a
 * temporary data folder, the simulator), seeds a cluster with an add-on, and
 * runs Schemathesis against `<api>/openapi.json` with an admin token. Prints a
 * summary; exits with Schemathesis' exit code (0: no check failed).
 *
 *   npm run fuzz                                   # the long run: every phase, 100 cases per operation
 *   npm run fuzz -- --bounded                      # the run test/fuzz.test.ts makes
 *   npm run fuzz -- --max-examples 300 --seed 42   # more cases, reproducibly
 *   npm run fuzz -- --url http://127.0.0.1:8080 --token "$TOKEN"   # an API already running
 *   npm run fuzz -- --postgres                     # the store on a throw-away PostgreSQL server instead of SQLite
 *   npm run fuzz -- --serve                        # start and seed the stack, print its URL and token, wait
 *   npm run fuzz -- --no-seed-data                 # an empty stack: no seeded cluster
 *   npm run fuzz -- -- --include-path-regex '^/v1/clusters'         # after `--`: more `st run` arguments
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { projectRoot } from '../scripts/tools.js';
import { startPostgres, type PostgresServer } from '../test/helpers/postgres.js';
import { startTestStack, type TestStack } from '../test/helpers/stack.js';
import { allPhases, boundedRun, formatSummary, fuzzStackEnv, runFuzz, schemathesisBinary, type Phase } from './schemathesis.js';
import { seedStack } from './seed.js';
import { collectAftermath, formatAftermath } from './aftermath.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    bounded: { type: 'boolean', default: false },
    'max-examples': { type: 'string' },
    phases: { type: 'string' },
    workers: { type: 'string' },
    seed: { type: 'string' },
    'max-time': { type: 'string' },
    url: { type: 'string' },
    token: { type: 'string' },
    'no-seed-data': { type: 'boolean', default: false },
    postgres: { type: 'boolean', default: false },
    serve: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (values.help) {
  console.log(readFileSync(new URL(import.meta.url), 'utf8').split('*/')[0]?.replace(/^\/\*\*\n/, '').replace(/^ \*( |$)/gm, ''));
  process.exit(0);
}

const log = (line: string) => process.stderr.write(`[fuzz] ${line}\n`);
const integer = (name: string, value: string | undefined, fallback: number): number => {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1) throw new Error(`--${name} takes a whole number of at least 1, not "${value}"`);
  return parsed;
};

async function main(): Promise<number> {
  const binary = schemathesisBinary();
  if (!binary && !values.serve) {
    log('schemathesis is not installed: run `bash scripts/setup.sh` (it installs it into .tools/fuzz-venv) or set SCHEMATHESIS_BIN');
    return 2;
  }
  const profile = values.bounded ? boundedRun : { maxExamples: 100, phases: allPhases, workers: 2 };
  const phases = (values.phases?.split(',').map((phase) => phase.trim()) ?? profile.phases) as Phase[];
  for (const phase of phases) if (!allPhases.includes(phase)) throw new Error(`unknown phase "${phase}"; phases: ${allPhases.join(', ')}`);

  let stack: TestStack | null = null;
  let postgres: PostgresServer | null = null;
  const stop = async () => {
    const current = stack;
    stack = null;
    if (current) {
      log('stopping the stack');
      await current.destroy();
    }
    const server = postgres;
    postgres = null;
    await server?.stop();
  };
  const onSignal = () => {
    stop().then(
      () => process.exit(130),
      () => process.exit(130),
    );
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    let apiUrl: string;
    let token: string;
    if (values.url) {
      if (!values.token) throw new Error('--url needs --token (a token whose role reaches every operation: admin)');
      apiUrl = values.url.replace(/\/+$/, '');
      token = values.token;
    } else {
      log('starting the stack (Temporal dev server, simulator, worker, API)');
      const started = Date.now();
      const env = { ...fuzzStackEnv };
      if (values.postgres) {
        const server = await startPostgres();
        if ('skipped' in server) throw new Error(`--postgres: ${server.skipped}`);
        postgres = server;
        env.DATABASE_URL = server.url;
        log('the store is on a throw-away PostgreSQL server');
      }
      stack = await startTestStack({ env });
      apiUrl = stack.apiUrl;
      token = stack.adminToken;
      log(`stack up in ${((Date.now() - started) / 1000).toFixed(1)} s at ${apiUrl}`);
      if (!values['no-seed-data']) await seedStack(apiUrl, token, log);
    }

    if (values.serve) {
      log(`serving: ${apiUrl}  (Authorization: Bearer ${token})  — Ctrl-C stops it`);
      await new Promise(() => undefined);
    }

    const reportDir = resolve(projectRoot, '.data', 'fuzz');
    mkdirSync(reportDir, { recursive: true });
    const result = await runFuzz(binary ?? 'st', {
      apiUrl,
      token,
      maxExamples: integer('max-examples', values['max-examples'], profile.maxExamples),
      phases,
      workers: integer('workers', values.workers, profile.workers),
      ...(values.seed !== undefined ? { seed: integer('seed', values.seed, 1) } : {}),
      ...(values['max-time'] !== undefined ? { maxTime: integer('max-time', values['max-time'], 1) } : {}),
      extraArgs: positionals,
      reportDir,
      timeoutMs: 60 * 60_000,
      echo: process.stdout,
      log,
    });
    console.log(`\n${formatSummary(result)}`);
    try {
      console.log(formatAftermath(await collectAftermath(apiUrl, token, stack ? join(stack.dataDir, 'logs', 'api.log') : undefined)));
    } catch (err) {
      log(`could not look at what the run left behind: ${err instanceof Error ? err.message : String(err)}`);
    }
    console.log(`JUnit reports: ${result.passes.map((pass) => relative(projectRoot, pass.junitPath)).join(', ')}`);
    return result.exitCode;
  } finally {
    await stop();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    log(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exit(1);
  },
);
