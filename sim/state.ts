/**
 * Stored records of the Rancher simulator and their JSON persistence.
 *
 * Only facts are stored (what was asked for, and when); every state a client
 * sees is derived from these timestamps at read time, so a restarted simulator
 * carries on exactly where the old one stopped without any timers.
 */
import { randomInt } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

/** A cluster as the simulator stores it. */
export interface StoredCluster {
  id: string;
  uuid: string;
  name: string;
  description: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  kubernetesVersion: string;
  createdTS: number;
  /** Set by DELETE; the record is purged once nodeRemoveMs has passed. */
  removedTS: number | null;
  /**
   * When the cluster first met the "active" conditions. Kept so a provisioned
   * cluster does not fall back to `provisioning` when its nodes are replaced.
   */
  provisionedTS: number | null;
}

/** A node pool as the simulator stores it. */
export interface StoredNodePool {
  id: string;
  uuid: string;
  clusterId: string;
  name: string;
  hostnamePrefix: string;
  quantity: number;
  controlPlane: boolean;
  etcd: boolean;
  worker: boolean;
  nodeTemplateId: string | null;
  drainBeforeDelete: boolean;
  deleteNotReadyAfterSecs: number;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  createdTS: number;
  removedTS: number | null;
  /** Next hostname number; only ever grows so hostnames are never reused. */
  nextIndex: number;
}

/** A node as the simulator stores it. */
export interface StoredNode {
  id: string;
  uuid: string;
  clusterId: string;
  nodePoolId: string;
  hostname: string;
  /** The number in the hostname. */
  index: number;
  /** Position within the batch the pool created it in; staggers registration. */
  batchIndex: number;
  createdTS: number;
  removedTS: number | null;
  unschedulable: boolean;
  controlPlane: boolean;
  etcd: boolean;
  worker: boolean;
  ipAddress: string;
}

/** Everything the simulator persists. */
export interface SimData {
  clusters: StoredCluster[];
  nodePools: StoredNodePool[];
  nodes: StoredNode[];
  /** Counter behind the made-up node IP addresses. */
  ipCounter: number;
}

const FILE_KIND = "kumo-rancher-simulator-state";
const FILE_VERSION = 1;

/** A fresh, empty state. */
export function emptyState(): SimData {
  return { clusters: [], nodePools: [], nodes: [], ipCounter: 0 };
}

/**
 * Reads the state file, or returns an empty state when it does not exist.
 * A file that exists but cannot be understood is an error rather than being
 * silently replaced, so a bad edit never wipes somebody's simulated clusters.
 */
export function loadState(file: string): SimData {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return emptyState();
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new Error(`rancher simulator state file ${file} is not valid JSON: ${(err as Error).message}`);
  }
  const problem = describeProblem(parsed);
  if (problem !== null) throw new Error(`rancher simulator state file ${file} is not usable: ${problem}`);
  return (parsed as { data: SimData }).data;
}

function describeProblem(parsed: unknown): string | null {
  if (typeof parsed !== "object" || parsed === null) return "top level is not an object";
  const file = parsed as Record<string, unknown>;
  if (file.kind !== FILE_KIND) return `kind is not "${FILE_KIND}"`;
  if (file.version !== FILE_VERSION) return `unsupported version ${String(file.version)}`;
  const data = file.data as Record<string, unknown> | undefined;
  if (typeof data !== "object" || data === null) return "data is missing";
  for (const key of ["clusters", "nodePools", "nodes"]) {
    const list = data[key];
    if (!Array.isArray(list)) return `data.${key} is not an array`;
    for (const item of list) {
      if (typeof item !== "object" || item === null || typeof (item as { id?: unknown }).id !== "string") {
        return `data.${key} holds an entry without an id`;
      }
    }
  }
  if (typeof data.ipCounter !== "number") return "data.ipCounter is not a number";
  return null;
}

/**
 * Writes the whole state atomically: a reader (or a crash) sees either the
 * old file or the new one, never half of each.
 */
export function saveState(file: string, data: SimData): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${randomId(8)}.tmp`;
  const text = JSON.stringify({ kind: FILE_KIND, version: FILE_VERSION, savedAt: new Date().toISOString(), data });
  try {
    writeFileSync(tmp, text + "\n", "utf8");
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/** Random lowercase alphanumeric string, as Rancher uses in its ids. */
export function randomId(length: number): string {
  let out = "";
  for (let i = 0; i < length; i++) out += ALPHABET.charAt(randomInt(ALPHABET.length));
  return out;
}
