/**
 * Runs the Rancher simulator as its own process (`npm run sim`).
 *
 * Environment:
 *   SIM_PORT                   port to listen on (default 8090; 0 = any free port)
 *   SIM_TLS_PORT               port of the HTTPS listener, which kubeconfigs point at
 *                              (default 0 = any free port)
 *   SIM_HOST                   address to listen on (default 127.0.0.1)
 *   SIM_STATE_FILE             JSON state file, relative to the working directory
 *                              (default .data/sim/rancher.json; "memory" = no persistence);
 *                              the TLS key and certificate go in tls/ beside it
 *   SIM_TOKEN                  API token clients must send (default kumo-sim-token)
 *   SIM_CLUSTER_PROVISION_MS   minimum time until a cluster is active (default 3000)
 *   SIM_NODE_BOOT_MS           time for a node to boot and register (default 2000)
 *   SIM_NODE_REMOVE_MS         time a removed object stays "removing" (default 1000)
 *   SIM_SNAPSHOT_MS            time an etcd snapshot stays "activating" (default 1000)
 *   SIM_RESTORE_MS             time an etcd restore keeps the cluster "updating" (default 3000)
 *   SIM_NODE_MONITOR_GRACE_MS  time from a node's last heartbeat to Ready Unknown (default 40000)
 *   SIM_NODE_UPGRADE_MS        time one node takes to upgrade Kubernetes (default 1500)
 *   SIM_WORKLOAD_READY_MS      time a workload rollout takes until it is ready (default 1500)
 *   SIM_KNATIVE_PROGRESS_DEADLINE_MS
 *                              time a Knative Revision's process may take to answer
 *                              GET /healthz with 200 (default 60000)
 *
 * Knative Revisions run as local processes, unpacked under knative/ beside the
 * state file (with "memory", in a temporary folder removed on exit).
 */
import { resolve } from "node:path";
import { startRancherSim, type RancherSimOptions } from "./rancher.js";

class ConfigError extends Error {}

function integerEnv(name: string, fallback: number | undefined, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const value = raw.trim();
  if (!/^\d+$/.test(value) || Number(value) > max) {
    throw new ConfigError(`${name} must be an integer from 0 to ${max}, got ${JSON.stringify(raw)}`);
  }
  return Number(value);
}

function readConfig(): RancherSimOptions {
  const stateFile = process.env.SIM_STATE_FILE?.trim() || ".data/sim/rancher.json";
  const token = process.env.SIM_TOKEN ?? "kumo-sim-token";
  if (token.trim() === "") throw new ConfigError("SIM_TOKEN must not be empty");
  return {
    port: integerEnv("SIM_PORT", 8090, 65535),
    tlsPort: integerEnv("SIM_TLS_PORT", 0, 65535),
    host: process.env.SIM_HOST?.trim() || "127.0.0.1",
    stateFile: stateFile === "memory" ? null : resolve(process.cwd(), stateFile),
    token,
    timing: {
      clusterProvisionMs: integerEnv("SIM_CLUSTER_PROVISION_MS", undefined),
      nodeBootMs: integerEnv("SIM_NODE_BOOT_MS", undefined),
      nodeRemoveMs: integerEnv("SIM_NODE_REMOVE_MS", undefined),
      snapshotMs: integerEnv("SIM_SNAPSHOT_MS", undefined),
      restoreMs: integerEnv("SIM_RESTORE_MS", undefined),
      nodeMonitorGraceMs: integerEnv("SIM_NODE_MONITOR_GRACE_MS", undefined),
      nodeUpgradeMs: integerEnv("SIM_NODE_UPGRADE_MS", undefined),
      workloadReadyMs: integerEnv("SIM_WORKLOAD_READY_MS", undefined),
      knativeProgressDeadlineMs: integerEnv("SIM_KNATIVE_PROGRESS_DEADLINE_MS", undefined),
    },
  };
}

async function main(): Promise<void> {
  let options: RancherSimOptions;
  try {
    options = readConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`rancher simulator: ${err.message}`);
    process.exit(1);
  }

  let sim: Awaited<ReturnType<typeof startRancherSim>>;
  try {
    sim = await startRancherSim(options);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    console.error(message.startsWith("rancher simulator") ? message : `rancher simulator: ${message}`);
    process.exit(1);
  }
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    sim.close().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  console.log(`rancher simulator listening on ${sim.url}`);
  console.log(`rancher simulator tls listening on ${sim.tlsUrl}`);
}

main().catch((err) => { console.error(err); process.exit(1); });
