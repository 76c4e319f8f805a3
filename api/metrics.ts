import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { Context, Handler, MiddlewareHandler } from 'hono';
import { matchedRoutes } from 'hono/route';
import { failureTypes } from '../domain/errors.js';
import { createLogger, type Logger } from '../domain/log.js';
import { operationKinds, operationStatuses } from '../domain/operation.js';
import type { Store } from '../store/index.js';
import { operationIdOf, principalOf } from './auth.js';

/** The Prometheus text exposition format, version 0.0.4. */
export const metricsContentType = 'text/plain; version=0.0.4; charset=utf-8';

/** Upper bounds of the request duration histogram, in seconds: 5 ms … 10 s. */
export const durationBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;


/** The label a request gets when no route matched it (404s): raw paths never become labels. */
export const unmatchedRoute = 'unmatched';
const knownMethods = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
/** Endpoints scraped and probed every few seconds: their access log lines are at debug level, whatever the status. */
const probeRoutes = new Set(['/metrics', '/healthz', '/readyz']);

let processLogger: Logger | undefined;

/** The API process's logger (service `api`, level from KUMO_LOG_LEVEL), shared by main and the access log. */
export function apiLog(): Logger {
  processLogger ??= createLogger({ service: 'api', level: process.env.KUMO_LOG_LEVEL });
  return processLogger;
}

/**
 * HTTP metrics and the access log of one app, and the `/metrics` endpoint that
 * shows them with the operations in the store and the process's own gauges.
 * Mount `middleware` first, so every answer (401s and 404s too) is counted.
 * @example const metrics = apiMetrics(deps); app.use('*', metrics.middleware); app.get('/metrics', metrics.handler);
 */
export function apiMetrics(deps: { store: Store }, options: { logger?: Logger } = {}): { middleware: MiddlewareHandler; handler: Handler; render: () => Promise<string> } {
  const http = new HttpMetrics();
  const loopDelay = eventLoopDelay();
  const log = options.logger ?? apiLog();

  const middleware: MiddlewareHandler = async (c, next) => {
    const started = performance.now();
    let status = 500;
    try {
      await next();
      status = c.res.status;
    } finally {
      const seconds = (performance.now() - started) / 1000;
      const method = knownMethods.has(c.req.method) ? c.req.method : 'OTHER';
      const route = routeOf(c);
      http.observe(method, route, status, seconds);
      const level = probeRoutes.has(route) ? 'debug' : status >= 500 ? 'error' : 'info';
      if (log.isLevelEnabled(level)) {
        log[level](
          {
            method: c.req.method,
            route,
            path: c.req.path,
            status,
            durationMs: Math.round(seconds * 1e6) / 1e3,
            actor: principalOf(c)?.name ?? null,
            operationId: status < 400 ? await operationIdOf(c.res) : null,
          },
          'request',
        );
      }
    }
  };

  const render = async (): Promise<string> => {
    const out = new Exposition();
    http.write(out);
    await writeOperations(out, deps.store, log);
    await writeEvents(out, deps.store, log);
    await writeHealth(out, deps.store, log);
    writeProcess(out, loopDelay);
    return out.text();
  };

  const handler: Handler = async (c) => c.body(await render(), 200, { 'content-type': metricsContentType });

  return { middleware, handler, render };
}

/** The matched route pattern (`/v1/clusters/:id`), not the path: the first endpoint route that matched, else `unmatched`. */
function routeOf(c: Context): string {
  // Middleware (app.use) is registered for every method ("ALL"); endpoints for theirs.
  const endpoint = matchedRoutes(c).find((route) => route.method !== 'ALL');
  return endpoint?.path ?? unmatchedRoute;
}


type Labels = Record<string, string>;

interface HistogramSeries {
  labels: Labels;
  /** Per bucket, not cumulative; cumulated when written. */
  buckets: number[];
  sum: number;
  count: number;
}

/** Request counters and durations, by method, route pattern and status. */
class HttpMetrics {
  private readonly requests = new Map<string, { labels: Labels; value: number }>();
  private readonly durations = new Map<string, HistogramSeries>();

  observe(method: string, route: string, status: number, seconds: number): void {
    const counterLabels = { method, route, status: String(status) };
    const counterKey = JSON.stringify(counterLabels);
    const counter = this.requests.get(counterKey) ?? { labels: counterLabels, value: 0 };
    counter.value += 1;
    this.requests.set(counterKey, counter);

    const histogramLabels = { method, route };
    const histogramKey = JSON.stringify(histogramLabels);
    let series = this.durations.get(histogramKey);
    if (!series) {
      series = { labels: histogramLabels, buckets: durationBuckets.map(() => 0), sum: 0, count: 0 };
      this.durations.set(histogramKey, series);
    }
    const index = durationBuckets.findIndex((bound) => seconds <= bound);
    if (index >= 0) series.buckets[index] = (series.buckets[index] ?? 0) + 1;
    series.sum += seconds;
    series.count += 1;
  }

  write(out: Exposition): void {
    out.family('kumo_http_requests_total', 'counter', 'HTTP requests answered by the API, by method, matched route pattern and status.');
    for (const { labels, value } of this.requests.values()) out.sample('kumo_http_requests_total', labels, value);
    out.family('kumo_http_request_duration_seconds', 'histogram', 'Time the API took to answer, by method and matched route pattern.');
    for (const series of this.durations.values()) {
      let cumulative = 0;
      durationBuckets.forEach((bound, i) => {
        cumulative += series.buckets[i] ?? 0;
        out.sample('kumo_http_request_duration_seconds_bucket', { ...series.labels, le: formatValue(bound) }, cumulative);
      });
      out.sample('kumo_http_request_duration_seconds_bucket', { ...series.labels, le: '+Inf' }, series.count);
      out.sample('kumo_http_request_duration_seconds_sum', series.labels, series.sum);
      out.sample('kumo_http_request_duration_seconds_count', series.labels, series.count);
    }
  }
}

/**
 * Operations by kind and status, failures by kind and type, running ones by kind,
 * counted from the store at scrape time (one GROUP BY over the operations).
 */
async function writeOperations(out: Exposition, store: Store, log: Logger): Promise<void> {
  const totals = new Map<string, number>();
  const failures = new Map<string, number>();
  const running = new Map<string, number>(operationKinds.map((kind) => [kind, 0]));
  for (const kind of operationKinds) for (const status of operationStatuses) totals.set(`${kind}\n${status}`, 0);
  const known = new Set<string>(failureTypes);
  let up = true;
  try {
    for (const row of await store.operationCounts()) {
      totals.set(`${row.kind}\n${row.status}`, (totals.get(`${row.kind}\n${row.status}`) ?? 0) + row.count);
      if (row.status === 'running') running.set(row.kind, (running.get(row.kind) ?? 0) + row.count);
      if (row.failureType !== null || row.status === 'failed') {
        const label = row.failureType === null ? 'unknown' : known.has(row.failureType) ? row.failureType : 'other';
        failures.set(`${row.kind}\n${label}`, (failures.get(`${row.kind}\n${label}`) ?? 0) + row.count);
      }
    }
  } catch (err) {
    log.warn({ err }, 'metrics: the store could not be read; operation metrics are left out of this scrape');
    up = false;
  }
  out.family('kumo_store_up', 'gauge', 'Whether this scrape could read the operations in the store (1) or not (0).');
  out.sample('kumo_store_up', {}, up ? 1 : 0);
  if (!up) return;
  out.family('kumo_operations_total', 'counter', 'Operations recorded in the store, by kind and status.');
  for (const [key, value] of totals) {
    const [kind = '', status = ''] = key.split('\n');
    out.sample('kumo_operations_total', { kind, status }, value);
  }
  out.family('kumo_operation_failures_total', 'counter', 'Operations recorded in the store with a failure, by kind and failure type (unknown: failed without one recorded).');
  for (const [key, value] of failures) {
    const [kind = '', type = ''] = key.split('\n');
    out.sample('kumo_operation_failures_total', { kind, type }, value);
  }
  out.family('kumo_operations_running', 'gauge', 'Operations running now, by kind.');
  for (const [kind, value] of running) out.sample('kumo_operations_running', { kind }, value);
}

/** Events by origin and status, and the duplicates recognised, counted from the store at scrape time. */
async function writeEvents(out: Exposition, store: Store, log: Logger): Promise<void> {
  let rows: Awaited<ReturnType<Store['events']['eventCounts']>>;
  try {
    rows = await store.events.eventCounts();
  } catch (err) {
    log.warn({ err }, 'metrics: the store could not be read; event metrics are left out of this scrape');
    return;
  }
  out.family('kumo_events_total', 'counter', 'Events received (OpenStack, HTTP, Alertmanager, schedules), by origin and status (unmatched, dispatched, delivered, failed).');
  for (const row of rows) out.sample('kumo_events_total', { origin: row.origin, status: row.status }, row.count);
  const duplicates = new Map<string, number>();
  for (const row of rows) duplicates.set(row.origin, (duplicates.get(row.origin) ?? 0) + row.duplicates);
  out.family('kumo_event_duplicates_total', 'counter', 'Arrivals of an event already received (redeliveries, repeats), recognised and not dispatched again, by origin.');
  for (const [origin, value] of duplicates) out.sample('kumo_event_duplicates_total', { origin }, value);
}

/** Clusters by health status and the last sweep, from the store at scrape time: alert on these. */
async function writeHealth(out: Exposition, store: Store, log: Logger): Promise<void> {
  let healths: Awaited<ReturnType<Store['health']['listHealth']>>;
  let sweeps: Awaited<ReturnType<Store['health']['listSweeps']>>;
  try {
    [healths, sweeps] = await Promise.all([store.health.listHealth(), store.health.listSweeps(5)]);
  } catch (err) {
    log.warn({ err }, 'metrics: the store could not be read; health metrics are left out of this scrape');
    return;
  }
  const counts = new Map<string, number>([['healthy', 0], ['degraded', 0], ['unhealthy', 0], ['unknown', 0]]);
  for (const health of healths) counts.set(health.status, (counts.get(health.status) ?? 0) + 1);
  out.family('kumo_clusters_health', 'gauge', "Clusters by the status of their last health check (healthy, degraded, unhealthy, unknown).");
  for (const [status, value] of counts) out.sample('kumo_clusters_health', { status }, value);
  const last = sweeps.find((sweep) => sweep.finishedAt);
  if (!last) return;
  out.family('kumo_health_sweep_duration_seconds', 'gauge', 'How long the last finished fleet health sweep took.');
  out.sample('kumo_health_sweep_duration_seconds', {}, Number(last.summary?.durationMs ?? 0) / 1000);
  out.family('kumo_health_sweep_last_finished_timestamp_seconds', 'gauge', 'When the last fleet health sweep finished (alert when it grows stale).');
  out.sample('kumo_health_sweep_last_finished_timestamp_seconds', {}, Date.parse(last.finishedAt!) / 1000);
}

/** How often the event loop delay is sampled, in milliseconds. */
const loopResolutionMs = 10;
let loopHistogram: IntervalHistogram | undefined;

/** One event loop delay monitor per process (its timer does not keep the process alive). */
function eventLoopDelay(): IntervalHistogram {
  if (!loopHistogram) {
    loopHistogram = monitorEventLoopDelay({ resolution: loopResolutionMs });
    loopHistogram.enable();
  }
  return loopHistogram;
}

function writeProcess(out: Exposition, loopDelay: IntervalHistogram): void {
  const cpu = process.cpuUsage();
  out.family('process_cpu_seconds_total', 'counter', 'Total user and system CPU time spent in seconds.');
  out.sample('process_cpu_seconds_total', {}, (cpu.user + cpu.system) / 1e6);
  out.family('process_resident_memory_bytes', 'gauge', 'Resident memory size in bytes.');
  out.sample('process_resident_memory_bytes', {}, process.memoryUsage.rss());
  out.family('process_start_time_seconds', 'gauge', 'Start time of the process since the Unix epoch in seconds.');
  out.sample('process_start_time_seconds', {}, Math.round((Date.now() / 1000 - process.uptime()) * 1000) / 1000);
  // The monitor records whole timer intervals (resolution + delay): the lag is what exceeds the resolution.
  const mean = loopDelay.count > 0 ? Math.max(0, loopDelay.mean / 1e9 - loopResolutionMs / 1000) : 0;
  loopDelay.reset();
  out.family('nodejs_eventloop_lag_seconds', 'gauge', 'Mean event loop lag since the previous scrape in seconds.');
  out.sample('nodejs_eventloop_lag_seconds', {}, mean);
}

/** A float as the text format writes it (Go's ParseFloat reads it back). */
function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

/** A label value: backslash, double quote and line feed escaped. */
function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** HELP text: backslash and line feed escaped. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** Writes the text exposition format 0.0.4: each family's HELP and TYPE, then its samples. */
class Exposition {
  private readonly lines: string[] = [];

  family(name: string, type: 'counter' | 'gauge' | 'histogram', help: string): void {
    this.lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
  }

  sample(name: string, labels: Labels, value: number): void {
    const pairs = Object.entries(labels).map(([key, v]) => `${key}="${escapeLabel(v)}"`);
    this.lines.push(`${name}${pairs.length ? `{${pairs.join(',')}}` : ''} ${formatValue(value)}`);
  }

  text(): string {
    return `${this.lines.join('\n')}\n`;
  }
}
