// Human output: aligned tables, relative times, colored states, the progress line.

const ansi = { reset: '\x1b[0m', bold: '\x1b[1m', dim: '\x1b[2m', red: '\x1b[31m', green: '\x1b[32m', yellow: '\x1b[33m', cyan: '\x1b[36m' } as const;
type Tone = Exclude<keyof typeof ansi, 'reset'>;

const good = new Set(['succeeded', 'active', 'deployed', 'ready', 'passed', 'upgraded', 'true', 'completed', 'delivered']);
const busy = new Set(['running', 'pending', 'provisioning', 'updating', 'deploying', 'deleting', 'upgrading', 'paused', 'installing', 'removing', 'not-started', 'skipped', 'received', 'dispatched', 'waiting', 'retrying']);
const bad = new Set(['failed', 'cancelled', 'error', 'rolled-back', 'aborted', 'false', 'unavailable', 'degraded', 'dead-lettered']);

/** Writes text to the terminal, coloring states only when colors are on. */
export class Painter {
  constructor(readonly enabled: boolean) {}

  paint(text: string, tone: Tone): string {
    return this.enabled ? `${ansi[tone]}${text}${ansi.reset}` : text;
  }

  /** A state (succeeded, failed, running, active…) in its color. */
  state(state: string | null | undefined): string {
    const text = state ?? '-';
    const key = text.toLowerCase();
    if (good.has(key)) return this.paint(text, 'green');
    if (bad.has(key)) return this.paint(text, 'red');
    if (busy.has(key)) return this.paint(text, 'yellow');
    return text;
  }

  bold(text: string): string {
    return this.paint(text, 'bold');
  }

  dim(text: string): string {
    return this.paint(text, 'dim');
  }
}

/** The length of a string as the terminal shows it (escape codes take no room). */
export function visibleLength(text: string): number {
  return text.replace(/\x1b\[[0-9;]*m/g, '').length;
}

/**
 * Aligns rows under headers, two spaces between columns; the last column is not padded.
 * @example table(['NAME', 'STATE'], [['a', 'active']]) // "NAME  STATE\na     active"
 */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((header, column) => Math.max(visibleLength(header), ...rows.map((row) => visibleLength(row[column] ?? ''))));
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell + ' '.repeat(Math.max(0, (widths[column] ?? 0) - visibleLength(cell)))))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** `label: value` lines with the values aligned; null and undefined values are left out. */
export function fields(pairs: Array<[string, string | number | null | undefined]>): string {
  const shown = pairs.filter((pair): pair is [string, string | number] => pair[1] !== null && pair[1] !== undefined && pair[1] !== '');
  const width = Math.max(0, ...shown.map(([label]) => label.length + 1));
  return shown.map(([label, value]) => `${`${label}:`.padEnd(width)}  ${value}`).join('\n');
}

/**
 * How long ago (or until) an instant, in the largest unit: "12s ago", "3m ago", "5h ago", "2d ago", "in 4m".
 * @example relativeTime('2024-01-01T00:00:00Z', Date.parse('2024-01-01T00:03:10Z')) // "3m ago"
 */
export function relativeTime(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '-';
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return iso;
  const seconds = Math.round((now - at) / 1000);
  const span = compact(Math.abs(seconds));
  if (Math.abs(seconds) < 2) return 'just now';
  return seconds >= 0 ? `${span} ago` : `in ${span}`;
}

function compact(seconds: number): string {
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86_400)}d`;
}

/**
 * A duration for humans: "850ms", "4.2s", "3m12s", "2h05m".
 * @example formatDuration(192_000) // "3m12s"
 */
export function formatDuration(ms: number): string {
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const totalSeconds = Math.floor(ms / 1000);
  const hours = Math.floor(totalSeconds / 3600);
  const minutes = Math.floor((totalSeconds % 3600) / 60);
  const seconds = totalSeconds % 60;
  return hours ? `${hours}h${String(minutes).padStart(2, '0')}m` : `${minutes}m${String(seconds).padStart(2, '0')}s`;
}

/** The time between two instants, or from `from` until now when `to` is missing. */
export function durationBetween(from: string | null | undefined, to: string | null | undefined, now = Date.now()): string {
  if (!from) return '-';
  const start = Date.parse(from);
  const end = to ? Date.parse(to) : now;
  if (Number.isNaN(start) || Number.isNaN(end)) return '-';
  return formatDuration(end - start);
}

/** An instant with its relative time: "2024-05-01 10:02:03Z (3m ago)". */
export function timestamp(iso: string | null | undefined, now = Date.now()): string | null {
  if (!iso) return null;
  return `${iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z')} (${relativeTime(iso, now)})`;
}

/** A one-line progress indicator rewritten in place on a terminal (`\r` + erase line), cut to its width. */
export class ProgressLine {
  private shown = false;

  constructor(
    private readonly stream: { write(text: string): unknown; columns?: number },
  ) {}

  update(text: string): void {
    const width = Math.max(20, (this.stream.columns || 100) - 1);
    const cut = visibleLength(text) > width ? text.slice(0, Math.max(0, width - 1)) + '…' : text;
    this.stream.write(`\r\x1b[2K${cut}`);
    this.shown = true;
  }

  /** Removes the progress line so a permanent line can be printed in its place. */
  clear(): void {
    if (this.shown) this.stream.write('\r\x1b[2K');
    this.shown = false;
  }
}

/** The JSON document exactly as the API sent it (indented). */
export function json(value: unknown): string {
  return JSON.stringify(value, null, 2);
}
