import { z } from 'zod';

const port = (fallback: number) =>
  z.coerce.number().int().min(1, 'must be a port between 1 and 65535').max(65535, 'must be a port between 1 and 65535').default(fallback);
const positiveInt = (fallback: number) => z.coerce.number().int().positive('must be a positive whole number').default(fallback);
/** An http(s) URL without credentials: a password in a URL ends up in error messages and logs. */
const url = z
  .string()
  .url('must be a URL such as http://127.0.0.1:8090')
  .refine((value) => /^https?:\/\//i.test(value), 'must start with http:// or https://')
  .refine((value) => {
    try {
      const parsed = new URL(value);
      return parsed.username === '' && parsed.password === '';
    } catch {
      return true;
    }
  }, 'must not carry a user or password; give the token in RANCHER_TOKEN');

/**
 * Every setting Kumo reads from the environment. Production systems are reached
 * through these variables only; defaults are the embedded stack's.
 */
export const ConfigSchema = z.object({
  /** Port of the Kumo API. */
  PORT: port(8080),
  /** Address the API listens on. */
  HOST: z.string().min(1).default('127.0.0.1'),
  /** An existing Temporal frontend (host:port). When unset, `npm start` runs the dev server. */
  TEMPORAL_ADDRESS: z
    .string()
    .regex(/^[^\s:/]+:\d+$/, 'must be host:port, e.g. 127.0.0.1:7233')
    .optional(),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  TEMPORAL_TASK_QUEUE: z.string().min(1).default('kumo'),
  /** Ports of the embedded Temporal dev server and its Web UI. */
  TEMPORAL_PORT: port(7233),
  TEMPORAL_UI_PORT: port(8233),
  /** Base URL of the Temporal Web UI, used for links in operation details. */
  TEMPORAL_UI_URL: url.optional(),
  /** `sqlite:<file>` (default `sqlite:.data/kumo.db`) or `postgres://user:pass@host/db`. */
  DATABASE_URL: z
    .string()
    .regex(/^(sqlite:.+|postgres(ql)?:\/\/.+)$/, 'must be sqlite:<file> or postgres://...')
    .default('sqlite:.data/kumo.db'),
  /** Rancher's base URL (the v3 API lives under `/v3`). The embedded stack points it at the simulator. */
  RANCHER_URL: url.default('http://127.0.0.1:8090'),
  /** Rancher API token (bearer). A secret: never logged, never in workflow inputs. */
  RANCHER_TOKEN: z.string().min(1).default('kumo-sim-token'),
  /** Node template new node pools use. */
  RANCHER_NODE_TEMPLATE: z.string().min(1).default('cattle-global-nt:nt-kumo-default'),
  /** Per-request timeout of Rancher calls. */
  RANCHER_TIMEOUT_MS: positiveInt(10_000),
  /** Port of the Rancher simulator in the embedded stack. */
  SIM_PORT: port(8090),
  /** How often long waits poll Rancher. */
  KUMO_POLL_INTERVAL_MS: positiveInt(1_000),
  /** How long a new cluster may take to become active with every node ready. */
  KUMO_CLUSTER_READY_TIMEOUT_S: positiveInt(1_800),
  /** The chart repository the add-on catalog is published to (`npm start` serves the packaged charts/ on loopback). */
  KUMO_CHART_REPO_URL: url.optional(),
  /** The catalog's source: catalog.json and each chart's values.schema.json (default: this repository's charts/). */
  KUMO_CHARTS_DIR: z.string().min(1).optional(),
  /** How often the add-on reconcile Schedule runs (seconds). */
  KUMO_ADDON_RECONCILE_INTERVAL_S: positiveInt(300),
  /** How often add-on health is polled while an operation waits for it (seconds). */
  KUMO_ADDON_POLL_S: positiveInt(3),
  /** How long a repaired add-on may take to become healthy again (seconds). */
  KUMO_ADDON_HEALTH_TIMEOUT_S: positiveInt(300),
  /** How often the fleet health sweep (a Temporal Schedule) runs (seconds). */
  KUMO_HEALTH_SWEEP_INTERVAL_S: positiveInt(60),
  /** How many clusters a sweep checks at once. */
  KUMO_HEALTH_CONCURRENCY: positiveInt(16),
  /** Bound on each health probe (TCP dial, API GET, Prometheus query). */
  KUMO_HEALTH_PROBE_TIMEOUT_MS: positiveInt(5_000),
  /** How long health history and sweep records are kept (days). */
  KUMO_HEALTH_RETENTION_DAYS: positiveInt(14),
  /** Each cluster's Prometheus, as `<namespace>/<service>:<port>` reached through the cluster API's service proxy (the monitoring add-on's by default). */
  KUMO_PROMETHEUS_SERVICE: z
    .string()
    .regex(/^[a-z0-9-]+\/[a-z0-9-]+:\d{1,5}$/, 'must be <namespace>/<service>:<port>, e.g. kumo-monitoring/kumo-monitoring-prometheus:9090')
    .default('kumo-monitoring/kumo-monitoring-prometheus:9090'),
  /** The OCI registry function images are pushed to (`npm start` runs one on loopback). */
  KUMO_REGISTRY_URL: url.optional(),
  /** `host:port` the functions cluster pulls images from, when it differs from KUMO_REGISTRY_URL's. */
  KUMO_REGISTRY_PULL_HOST: z.string().regex(/^[^\s/]+$/, 'must be host or host:port').optional(),
  /** Registry credentials (secrets: never logged, never in workflow inputs). */
  KUMO_REGISTRY_USERNAME: z.string().min(1).optional(),
  KUMO_REGISTRY_PASSWORD: z.string().min(1).optional(),
  /** The Kumo cluster that runs functions (Knative Serving), and the namespace they run in. */
  KUMO_FUNCTIONS_CLUSTER: z.string().min(1).default('functions'),
  KUMO_FUNCTIONS_NAMESPACE: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a namespace name').default('functions'),
  /** Where built image layers are cached (the dependency layer by the hash of requirements.txt). */
  KUMO_BUILD_CACHE_DIR: z.string().min(1).default('.data/build-cache'),
  /** How long a new function revision may take to become Ready (seconds). */
  KUMO_FUNCTION_READY_TIMEOUT_S: positiveInt(120),
  /**
   * The RabbitMQ of the OpenStack control plane (`amqp://user:pass@host:5672/vhost`; a secret: never logged).
   * Unset: the OpenStack event source is off (the rest of Kumo runs). `npm start` runs a broker on loopback when RabbitMQ is installed.
   */
  KUMO_AMQP_URL: z.string().regex(/^amqps?:\/\/.+/, 'must be amqp://… or amqps://…').optional(),
  /**
   * Where OpenStack services publish notifications, as `exchange:routing-key` pairs, comma-separated
   * (oslo's control exchange per service and topic `notifications.<priority>`).
   */
  KUMO_AMQP_BINDINGS: z
    .string()
    .regex(/^[A-Za-z0-9._-]+:[A-Za-z0-9.*#_-]+(,[A-Za-z0-9._-]+:[A-Za-z0-9.*#_-]+)*$/, 'must be exchange:routing-key[,exchange:routing-key…], e.g. nova:notifications.info')
    .default('nova:notifications.*,cinder:notifications.*,neutron:notifications.*,glance:notifications.*,keystone:notifications.*,openstack:notifications.*'),
  /** Kumo's own durable queue, bound to the exchanges above (never oslo's `notifications.info`, which other consumers share). */
  KUMO_AMQP_QUEUE: z.string().min(1).max(200).default('kumo.notifications'),
  /** Where malformed notifications go, with the reason in the `x-kumo-reason` header. */
  KUMO_AMQP_DEAD_LETTER_QUEUE: z.string().min(1).max(200).default('kumo.notifications.dead'),
  /** Notifications handled at once (the channel's prefetch). */
  KUMO_AMQP_PREFETCH: positiveInt(64),
  /** Whether the exchanges are declared durable (oslo's `amqp_durable_queues`); they must match how OpenStack declared them. */
  KUMO_AMQP_DURABLE_EXCHANGES: z.enum(['true', 'false']).default('false'),
  /** The first admin token's secret, used only when no token exists yet (else one is generated into KUMO_DATA_DIR/admin-token). */
  KUMO_ADMIN_TOKEN: z.string().min(24, 'must be at least 24 characters').optional(),
  /** Level of the JSON logs (trace, debug, info, warn, error, fatal, silent). */
  KUMO_LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  /** Where the worker serves the Temporal SDK's Prometheus metrics (IP:port); off when unset. */
  KUMO_WORKER_METRICS_ADDRESS: z.string().regex(/^[0-9.]+:\d+$|^\[[0-9a-fA-F:]+\]:\d+$/, 'must be IP:port, e.g. 127.0.0.1:9464').optional(),
  /** Folder for the embedded stack's files (databases, logs, simulator state). */
  KUMO_DATA_DIR: z.string().min(1).default('.data'),
});

export type Config = z.infer<typeof ConfigSchema>;

/** Raised with one line per bad variable, so a typo in a deployment is obvious. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/**
 * Parses the environment. Throws a {@link ConfigError} naming each bad variable.
 * @example const config = loadConfig(process.env);
 */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ''));
  const parsed = ConfigSchema.safeParse(present);
  if (parsed.success) return parsed.data;
  const lines = parsed.error.issues.map((issue) => {
    const name = String(issue.path[0] ?? '?');
    const raw = present[name];
    const shown = name === 'RANCHER_TOKEN' || name === 'DATABASE_URL' ? '' : raw === undefined ? '' : ` (got "${raw}")`;
    return `  ${name}: ${issue.message}${shown}`;
  });
  throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
}
