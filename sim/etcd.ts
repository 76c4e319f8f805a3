/**
 * Etcd snapshots of simulated RKE clusters, with Rancher's v3 `etcdBackup`
 * shapes: a snapshot captures the cluster's Kubernetes objects and version,
 * and a restore puts exactly those back.
 */
import { randomUUID } from "node:crypto";
import { isPlainObject, NormanError, rfc3339 } from "./http.js";
import type { RancherModel } from "./model.js";
import { randomId, type StoredCluster, type StoredEtcdBackup } from "./state.js";

const BACKUP_NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const RESTORE_RKE_CONFIG = ["", "kubernetesVersion", "all"] as const;

function invalid(fieldName: string, message: string): NormanError {
  return new NormanError(422, "InvalidFormat", message, fieldName);
}

export class EtcdBackups {
  constructor(
    private readonly model: RancherModel,
    /** Called after a restore replaced a cluster's objects (watches of that cluster must end). */
    private readonly onRestore: (clusterId: string) => void,
  ) {}

  private get data(): StoredEtcdBackup[] {
    return this.model.data.etcdBackups;
  }

  all(): StoredEtcdBackup[] {
    return this.data;
  }

  get(id: string): StoredEtcdBackup {
    const found = this.data.find((b) => b.id === id);
    if (found === undefined) throw new NormanError(404, "NotFound", `etcdBackup ${id} not found`);
    return found;
  }

  isActive(backup: StoredEtcdBackup, now: number): boolean {
    return now >= backup.createdTS + this.model.settings.snapshotMs;
  }

  /** `POST /v3/etcdbackups`. */
  create(body: Record<string, unknown>, now: number): StoredEtcdBackup {
    if (body.type !== undefined && body.type !== "etcdBackup") throw invalid("type", 'type must be "etcdBackup"');
    const clusterId = body.clusterId;
    if (clusterId === undefined || clusterId === null || clusterId === "") {
      throw new NormanError(422, "MissingRequired", "clusterId is required", "clusterId");
    }
    if (typeof clusterId !== "string") throw invalid("clusterId", "clusterId must be a string");
    const cluster = this.model.data.clusters.find((c) => c.id === clusterId);
    if (cluster === undefined) throw invalid("clusterId", `cluster not found: ${clusterId}`);
    let name: string | undefined;
    if (body.name !== undefined && body.name !== null && body.name !== "") {
      if (typeof body.name !== "string" || body.name.length > 63 || !BACKUP_NAME_RE.test(body.name)) {
        throw invalid("name", "name must be at most 63 characters of lowercase letters, digits and '-', starting and ending with a letter or digit");
      }
      name = body.name;
    }
    const labels = stringMap(body, "labels");
    const annotations = stringMap(body, "annotations");
    let manual = true;
    if (body.manual !== undefined && body.manual !== null) {
      if (typeof body.manual !== "boolean") throw invalid("manual", "manual must be a boolean");
      manual = body.manual;
    }
    return this.snapshot(cluster, now, name, manual, labels, annotations);
  }

  /** Takes a snapshot of an active cluster: `backupEtcd` and `POST /v3/etcdbackups`. */
  snapshot(
    cluster: StoredCluster,
    now: number,
    name: string | undefined,
    manual: boolean,
    labels: Record<string, string> = {},
    annotations: Record<string, string> = {},
  ): StoredEtcdBackup {
    const state = this.model.clusterStatus(cluster, now).state;
    if (state !== "active") throw new NormanError(409, "Conflict", `cluster ${cluster.id} is ${state}; an etcd snapshot needs an active cluster`);
    const taken = (n: string): boolean => this.data.some((b) => b.clusterId === cluster.id && b.name === n);
    if (name !== undefined && taken(name)) {
      throw new NormanError(422, "NotUnique", `etcd backup name ${JSON.stringify(name)} is already in use in cluster ${cluster.id}`, "name");
    }
    let chosen = name;
    while (chosen === undefined || taken(chosen)) chosen = `${cluster.id}-${manual ? "ml" : "rl"}-${randomId(5)}`;
    const backup: StoredEtcdBackup = {
      id: `${cluster.id}:${chosen}`,
      uuid: randomUUID(),
      name: chosen,
      clusterId: cluster.id,
      filename: `${chosen}_${rfc3339(now)}.zip`,
      manual,
      createdTS: now,
      kubernetesVersion: this.model.apiServerVersion(cluster, now),
      labels,
      annotations,
      objects: structuredClone(this.model.kubeObjects(cluster)),
    };
    this.data.push(backup);
    this.model.dirty = true;
    return backup;
  }

  remove(id: string): StoredEtcdBackup {
    const backup = this.get(id);
    this.model.data.etcdBackups = this.data.filter((b) => b !== backup);
    this.model.dirty = true;
    return backup;
  }

  /**
   * `restoreFromEtcdBackup`: the cluster's objects become exactly the captured
   * ones at once (its API answers 503 while the restore runs), and with
   * `restoreRkeConfig` "kubernetesVersion" or "all" the captured version too.
   */
  restore(cluster: StoredCluster, body: Record<string, unknown>, now: number): StoredCluster {
    const backupId = body.etcdBackupId;
    if (backupId === undefined || backupId === null || backupId === "") {
      throw new NormanError(422, "MissingRequired", "etcdBackupId is required", "etcdBackupId");
    }
    if (typeof backupId !== "string") throw invalid("etcdBackupId", "etcdBackupId must be a string");
    const rke = body.restoreRkeConfig ?? "";
    if (typeof rke !== "string" || !(RESTORE_RKE_CONFIG as readonly string[]).includes(rke)) {
      throw invalid("restoreRkeConfig", `restoreRkeConfig must be one of "", "kubernetesVersion", "all"`);
    }
    const backup = this.data.find((b) => b.id === backupId);
    if (backup === undefined) throw invalid("etcdBackupId", `etcd backup ${backupId} not found`);
    if (backup.clusterId !== cluster.id) throw invalid("etcdBackupId", `etcd backup ${backupId} belongs to cluster ${backup.clusterId}, not ${cluster.id}`);
    if (!this.isActive(backup, now)) throw invalid("etcdBackupId", `etcd backup ${backupId} is not active yet`);
    const status = this.model.clusterStatus(cluster, now);
    if (status.state === "removing" || status.state === "provisioning") {
      throw new NormanError(409, "Conflict", `cluster ${cluster.id} is ${status.state}; it cannot be restored`);
    }

    this.model.data.kube[cluster.id] = structuredClone(backup.objects);
    if (rke !== "") {
      cluster.kubernetesVersion = backup.kubernetesVersion;
      cluster.upgrade = null;
      for (const node of this.model.nodesOfCluster(cluster.id)) node.version = backup.kubernetesVersion;
    }
    cluster.restore = { backupId: backup.id, backupName: backup.name, startedTS: now };
    this.model.dirty = true;
    this.onRestore(cluster.id);
    return cluster;
  }
}

function stringMap(body: Record<string, unknown>, field: string): Record<string, string> {
  const value = body[field];
  if (value === undefined || value === null) return {};
  if (!isPlainObject(value) || Object.values(value).some((v) => typeof v !== "string")) {
    throw invalid(field, `${field} must be an object whose values are strings`);
  }
  return { ...(value as Record<string, string>) };
}

/** Reads the body of an action, which may be empty. */
export function actionBody(text: string): Record<string, unknown> {
  if (text.trim() === "") return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new NormanError(422, "InvalidBodyContent", `request body is not valid JSON: ${(err as Error).message}`);
  }
  if (!isPlainObject(parsed)) throw new NormanError(422, "InvalidBodyContent", "request body must be a JSON object");
  return parsed;
}
