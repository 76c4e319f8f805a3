// The `kumo` command line: global flags, dispatch to a group's command, help, and exit codes.
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { auditGroup, tokensGroup } from './access.js';
import { addonsGroup } from './addons.js';
import { ApiError, CliError, Client, exitCodes } from './client.js';
import { clustersGroup } from './clusters.js';
import { type Command, type Context, type Flags, type Group, type OptionSpec } from './command.js';
import { bindingsGroup, eventsGroup, pipelinesGroup } from './events.js';
import { functionsGroup } from './functions.js';
import { healthGroup } from './health.js';
import { opsGroup } from './ops.js';
import { Painter } from './output.js';
import { isMainModule } from '../scripts/tools.js';

export const groups: Group[] = [clustersGroup, addonsGroup, functionsGroup, bindingsGroup, pipelinesGroup, eventsGroup, healthGroup, opsGroup, tokensGroup, auditGroup];

export const defaultUrl = 'http://127.0.0.1:8080';

const globalOptions: Record<string, OptionSpec> = {
  output: { type: 'string', short: 'o', arg: 'json|table', help: "output format (default table); json prints the API's JSON document unchanged" },
  url: { type: 'string', arg: 'URL', help: `the Kumo API (default $KUMO_URL, else ${defaultUrl})` },
  token: { type: 'string', arg: 'TOKEN', help: 'API token, sent as Authorization: Bearer (default $KUMO_TOKEN)' },
  'no-color': { type: 'boolean', help: 'no colors (also with NO_COLOR set); colors are only used on a terminal' },
  help: { type: 'boolean', short: 'h', help: 'help for kumo, a group or a command' },
  version: { type: 'boolean', short: 'V', help: 'print the version' },
};

const exitCodeHelp = [
  ['0', 'ok'],
  ['1', 'the operation failed or was cancelled (with --wait), or another error'],
  ['2', 'usage error: unknown command or flag, missing or extra argument'],
  ['3', 'not authenticated or not allowed (401, 403)'],
  ['4', 'not found (404)'],
  ['5', 'conflict (409): another operation is running, the name is taken, the state does not allow it'],
  ['6', 'invalid input (400): every wrong field is printed'],
  ['7', 'the API cannot be reached, or it failed (5xx)'],
];

export interface Io {
  env: Record<string, string | undefined>;
  stdout: { write(text: string): unknown; isTTY?: boolean; columns?: number };
  stderr: { write(text: string): unknown };
}

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

const find = <T extends { name: string; aliases?: string[] }>(items: T[], name: string | undefined): T | undefined =>
  name === undefined ? undefined : items.find((item) => item.name === name || item.aliases?.includes(name));

function optionLines(options: Record<string, OptionSpec>): string[] {
  const rows = Object.entries(options).map(([name, spec]) => [`${spec.short ? `-${spec.short}, ` : '    '}--${name}${spec.arg ? ` ${spec.arg}` : ''}`, spec.help]);
  const width = Math.max(...rows.map(([flag]) => flag!.length));
  return rows.map(([flag, help]) => `  ${flag!.padEnd(width)}  ${help}`);
}

export function mainHelp(): string {
  const width = Math.max(...groups.map((group) => group.name.length));
  return [
    'kumo: the command line of Kumo (managed Kubernetes and the Function Service)',
    '',
    'Usage: kumo [global flags] <group> <command> [arguments] [flags]',
    '',
    'Groups:',
    ...groups.map((group) => `  ${group.name.padEnd(width)}  ${group.summary}`),
    '',
    'Global flags (anywhere on the line):',
    ...optionLines(globalOptions),
    '',
    'Environment: KUMO_URL (the API), KUMO_TOKEN (the API token), NO_COLOR.',
    'Commands that start an operation take --wait: follow it until it ends; the exit code is its outcome.',
    '',
    'Exit codes:',
    ...exitCodeHelp.map(([code, text]) => `  ${code}  ${text}`),
    '',
    "Run 'kumo <group> --help' for a group's commands, 'kumo <group> <command> --help' for one command.",
  ].join('\n');
}

export function groupHelp(group: Group): string {
  const heads = group.commands.map((command) => [command.name, ...(command.args ?? [])].join(' '));
  const width = Math.max(...heads.map((head) => head.length));
  return [
    `kumo ${group.name}: ${group.summary}`,
    '',
    `Usage: kumo ${group.name} <command> [arguments] [flags]`,
    '',
    'Commands:',
    ...group.commands.map((command, index) => `  ${heads[index]!.padEnd(width)}  ${command.summary}`),
    '',
    `Run 'kumo ${group.name} <command> --help' for a command's flags; 'kumo --help' for the global flags and exit codes.`,
  ].join('\n');
}

export function commandHelp(group: Group, command: Command): string {
  const options = command.options ?? {};
  const lines = [`Usage: kumo ${group.name} ${[command.name, ...(command.args ?? [])].join(' ')}${Object.keys(options).length ? ' [flags]' : ''}`, '', `${command.summary[0]!.toUpperCase()}${command.summary.slice(1)}.`];
  if (command.description) lines.push('', command.description);
  if (Object.keys(options).length) lines.push('', 'Flags:', ...optionLines(options));
  lines.push('', 'Global flags: -o json|table, --url URL, --token TOKEN, --no-color, --help (see kumo --help; it also lists the exit codes)');
  if (command.examples?.length) lines.push('', 'Examples:', ...command.examples.map((example) => `  ${example}`));
  return lines.join('\n');
}

/** Global flags that take a value: skipped with it while looking for the group and command. */
const valued = new Set(['-o', '--output', '--url', '--token']);

/** Indexes of the first two words that are not flags: the group and the command. */
function words(argv: string[]): number[] {
  const found: number[] = [];
  for (let i = 0; i < argv.length && found.length < 2; i++) {
    const token = argv[i]!;
    if (token === '--') break;
    if (token.startsWith('-') && token !== '-') {
      if (valued.has(token)) i++;
      continue;
    }
    found.push(i);
  }
  return found;
}

/**
 * Runs one `kumo` command line and returns its exit code.
 * @example process.exitCode = await main(['clusters', 'ls'])
 */
export async function main(argv: string[], io: Io = { env: process.env, stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const out = (text: string) => io.stdout.write(`${text}\n`);
  const err = (text: string) => io.stderr.write(`${text}\n`);
  const usageError = (message: string, help: string) => {
    err(`error: ${message}`);
    err('');
    err(help);
    return exitCodes.usage;
  };

  const [groupAt, commandAt] = words(argv);
  let groupName = groupAt === undefined ? undefined : argv[groupAt];
  let commandName = commandAt === undefined ? undefined : argv[commandAt];
  const asksHelp = argv.some((token) => token === '--help' || token === '-h');

  // `kumo help [group [command]]` is `kumo [group [command]] --help`.
  if (groupName === 'help') {
    const rest = argv.filter((_, index) => index !== groupAt);
    return main([...rest, '--help'], io);
  }
  if (groupName === undefined) {
    if (argv.includes('--version') || argv.includes('-V')) {
      out(version());
      return exitCodes.ok;
    }
    if (asksHelp) {
      out(mainHelp());
      return exitCodes.ok;
    }
    const unknownFlag = argv.find((token) => token.startsWith('-') && !valued.has(token) && !['--no-color'].includes(token.split('=')[0]!));
    return usageError(unknownFlag ? `unknown flag ${unknownFlag}` : 'missing command', mainHelp());
  }
  const group = find(groups, groupName);
  if (!group) return usageError(`unknown command "${groupName}"`, mainHelp());
  groupName = group.name;
  const command = find(group.commands, commandName);
  if (!command) {
    if (commandName === undefined && asksHelp) {
      out(groupHelp(group));
      return exitCodes.ok;
    }
    return usageError(commandName === undefined ? `missing command: kumo ${group.name} <command>` : `unknown command "${group.name} ${commandName}"`, groupHelp(group));
  }
  commandName = command.name;

  const options = { ...globalOptions, ...command.options };
  const config: ParseArgsConfig['options'] = Object.fromEntries(
    Object.entries(options).map(([name, spec]) => [name, { type: spec.type, ...(spec.short ? { short: spec.short } : {}), ...(spec.multiple ? { multiple: true } : {}) }]),
  );
  const rest = argv.filter((_, index) => index !== groupAt && index !== commandAt);
  let flags: Flags;
  let positionals: string[];
  try {
    const parsed = parseArgs({ args: rest, options: config, allowPositionals: true, strict: true });
    flags = parsed.values as Flags;
    positionals = parsed.positionals;
  } catch (error) {
    const message = error instanceof Error ? error.message.split('\n')[0]! : String(error);
    return usageError(message.replace(/\. To specify a positional argument.*$/, ''), commandHelp(group, command));
  }
  if (flags.help) {
    out(commandHelp(group, command));
    return exitCodes.ok;
  }
  const wanted = command.args ?? [];
  const required = wanted.filter((arg) => arg.startsWith('<'));
  if (positionals.length < required.length) return usageError(`missing argument ${required.slice(positionals.length).join(' ')}`, commandHelp(group, command));
  if (positionals.length > wanted.length) return usageError(`unexpected argument "${positionals[wanted.length]}"`, commandHelp(group, command));
  const output = (flags.output as string | undefined) ?? 'table';
  if (output !== 'table' && output !== 'json') return usageError(`-o takes json or table, got "${output}"`, commandHelp(group, command));

  const url = (flags.url as string | undefined) ?? io.env.KUMO_URL ?? defaultUrl;
  try {
    new URL(url);
  } catch {
    return usageError(`--url / KUMO_URL is not a URL: "${url}"`, commandHelp(group, command));
  }
  const token = (flags.token as string | undefined) ?? (io.env.KUMO_TOKEN || undefined);
  const tty = io.stdout.isTTY === true;
  const color = tty && !flags['no-color'] && !io.env.NO_COLOR;
  const ctx: Context = {
    client: new Client(url, token),
    output,
    painter: new Painter(color),
    tty,
    stdout: io.stdout,
    stderr: io.stderr,
    print: out,
    note: err,
    pollMs: Number(io.env.KUMO_POLL_MS) > 0 ? Number(io.env.KUMO_POLL_MS) : 1000,
  };
  const painter = new Painter(color || (io.stderr as { isTTY?: boolean }).isTTY === true && !flags['no-color'] && !io.env.NO_COLOR);
  try {
    return await command.run(ctx, positionals, flags);
  } catch (error) {
    if (error instanceof ApiError) {
      const { message, lines } = error.describe();
      err(`${painter.paint('error:', 'red')} ${message}`);
      for (const line of lines) err(`  ${line}`);
      return error.exitCode;
    }
    if (error instanceof CliError) {
      err(`${painter.paint('error:', 'red')} ${error.message}`);
      for (const line of error.lines) err(`  ${line}`);
      if (error.exitCode === exitCodes.usage) {
        err('');
        err(commandHelp(group, command));
      }
      return error.exitCode;
    }
    err(`${painter.paint('error:', 'red')} ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    return exitCodes.failed;
  }
}

/** Run directly (`node --import tsx cli/main.ts …`); bin/kumo.mjs imports and calls main instead. */

if (isMainModule(import.meta.url)) process.exitCode = await main(process.argv.slice(2));
