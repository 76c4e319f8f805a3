import { readdirSync, readFileSync } from 'node:fs';

/**
 * Peak resident memory of processes, from Linux's /proc/<pid>/status `VmHWM`
 * (the high-water mark of the resident set over the process's life). Sampled
 * periodically too, so a process that exits before the end still counts.
 */
export class PeakRss {
  private readonly peaks = new Map<string, number>();
  private readonly pids = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;

  /** Follows `pid` under `name` (a later pid under the same name keeps the higher peak). */
  watch(name: string, pid: number | undefined): void {
    if (pid === undefined) return;
    this.pids.set(name, pid);
    this.sample();
  }

  start(intervalMs = 500): void {
    this.timer ??= setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  sample(): void {
    for (const [name, pid] of this.pids) {
      const bytes = highWaterMark(pid);
      if (bytes !== null) this.peaks.set(name, Math.max(this.peaks.get(name) ?? 0, bytes));
    }
  }

  stop(): Map<string, number> {
    this.sample();
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    return new Map(this.peaks);
  }
}

/** VmHWM of a process in bytes, or null when it is gone (or this is not Linux). */
export function highWaterMark(pid: number): number | null {
  try {
    const match = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match?.[1] ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Pids of this process's direct children whose command line contains `fragment` (e.g. the stack's `api/main.ts`). */
export function childPids(fragment: string): number[] {
  const found: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return found;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The parent pid is the 2nd field after the parenthesised command name.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== process.pid) continue;
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').some((arg) => arg.includes(fragment))) found.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}
