// What a command is, what it gets to run, and the helpers commands share to read their flags.
import { readFileSync } from 'node:fs';
import { CliError, exitCodes, type Client } from './client.js';
import type { Painter } from './output.js';

/** One flag of a command: its parseArgs type and its line in the help. */
export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  /** The value's placeholder in the help, e.g. "N" or "file.json". */
  arg?: string;
  help: string;
}

export type Flags = Record<string, string | boolean | string[] | undefined>;

/** Everything a command needs: the client, the output mode, where to write. */
export interface Context {
  client: Client;
  output: 'table' | 'json';
  painter: Painter;
  /** stdout is a terminal: progress is rewritten in place. */
  tty: boolean;
  stdout: { write(text: string): unknown; columns?: number };
  stderr: { write(text: string): unknown };
  /** Writes a line (or lines) to stdout. */
  print(text: string): void;
  /** Writes a line to stderr. */
  note(text: string): void;
  /** How often --wait and `ops watch` poll the operation, in ms. */
  pollMs: number;
}

export interface Command {
  name: string;
  aliases?: string[];
  /** The positional arguments, e.g. ["<id>", "<pool>", "<quantity>"]; a trailing "[...]" one is optional. */
  args?: string[];
  summary: string;
  /** Longer help, printed under the usage line. */
  description?: string;
  options?: Record<string, OptionSpec>;
  examples?: string[];
  run(ctx: Context, args: string[], flags: Flags): Promise<number>;
}

export interface Group {
  name: string;
  aliases?: string[];
  summary: string;
  commands: Command[];
}

/** The --wait flag of every command that starts an operation. */
export const waitOption: Record<string, OptionSpec> = {
  wait: { type: 'boolean', short: 'w', help: 'follow the operation until it ends (like `kumo ops watch`); the exit code is its outcome' },
};

/** A usage error (exit 2); main prints the command's usage under it. */
export function usage(message: string): CliError {
  return new CliError(message, exitCodes.usage);
}

export function str(flags: Flags, name: string): string | undefined {
  const value = flags[name];
  return typeof value === 'string' ? value : undefined;
}

export function list(flags: Flags, name: string): string[] {
  const value = flags[name];
  return Array.isArray(value) ? value : typeof value === 'string' ? [value] : [];
}

/** A whole number given as a flag or an argument; anything else is a usage error. */
export function integer(value: string | undefined, what: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value.trim())) throw usage(`${what} must be a whole number, got "${value}"`);
  return Number(value);
}

/** Reads a JSON file ("-" reads stdin); an unreadable or invalid one is a usage error. */
export function readJsonFile(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path === '-' ? 0 : path, 'utf8');
  } catch (err) {
    throw usage(`cannot read ${what} ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw usage(`${what} ${path} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * The JSON given with --data (as text) or --file (a JSON file, "-" for stdin), as
 * compact JSON text; undefined when neither is given. Both, or bad JSON, is a usage error.
 * @example dataText({ data: '{ "a": 1 }' }, 'the event') // '{"a":1}'
 */
export function dataText(flags: Flags, what: string): string | undefined {
  const data = str(flags, 'data');
  const file = str(flags, 'file');
  if (data !== undefined && file !== undefined) throw usage(`give ${what} with --data or --file, not both`);
  if (data !== undefined) {
    try {
      return JSON.stringify(JSON.parse(data));
    } catch {
      throw usage('--data is not valid JSON');
    }
  }
  if (file !== undefined) return JSON.stringify(readJsonFile(file, `${what} file`));
  return undefined;
}

/** `KEY=VALUE` pairs into an object; a pair without "=" is a usage error. */
export function pairs(values: string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of values) {
    const at = pair.indexOf('=');
    if (at <= 0) throw usage(`--${flag} takes KEY=VALUE, got "${pair}"`);
    out[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return out;
}

/**
 * Applies `--set a.b.c=value` to an object: the value is read as JSON when it is
 * JSON (numbers, true, false, null, arrays, quoted strings), else as a string.
 * @example setPath({}, 'output.type=stdout') // { output: { type: 'stdout' } }
 */
export function setPath(target: Record<string, unknown>, assignment: string): Record<string, unknown> {
  const at = assignment.indexOf('=');
  if (at <= 0) throw usage(`--set takes path=value, got "${assignment}"`);
  const path = assignment.slice(0, at).split('.');
  if (path.some((part) => !part)) throw usage(`--set: "${assignment.slice(0, at)}" is not a path like a.b.c`);
  const raw = assignment.slice(at + 1);
  let value: unknown = raw;
  try {
    value = JSON.parse(raw);
  } catch {
    // a plain string
  }
  let node = target;
  for (const part of path.slice(0, -1)) {
    const next = node[part];
    if (!next || typeof next !== 'object' || Array.isArray(next)) node[part] = {};
    node = node[part] as Record<string, unknown>;
  }
  node[path[path.length - 1] as string] = value;
  return target;
}
