/**
 * Decodes Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`)
 * into the JSON the rest of the simulator works with.
 *
 * client-go's typed clients (used by helm and kubectl) send built-in types as
 * protobuf, with no fallback to JSON, so a server must read them. The
 * simulator knows the wire schema of a few types only: the ones such clients
 * write in practice (helm's release Secrets, ConfigMaps, Namespaces,
 * ServiceAccounts, Evictions, and DeleteOptions on deletes). Answers stay JSON,
 * which these clients accept too.
 */

type Obj = Record<string, unknown>;

export const PROTOBUF_CONTENT_TYPE = "application/vnd.kubernetes.protobuf";

/** The body is not a protobuf message the simulator can read. */
export class ProtobufError extends Error {
  constructor(
    message: string,
    /** True when the message is well-formed but of a kind the simulator has no schema for. */
    readonly unsupported = false,
  ) {
    super(message);
  }
}

type Scalar = "string" | "bytes" | "bool" | "int64" | "int32" | "time" | "fieldsV1";
interface Field {
  name: string;
  /** A scalar, or the name of a message in MESSAGES. */
  type: Scalar | { message: string };
  repeated?: boolean;
  /** map<string, string|bytes>: entries are messages with key = 1, value = 2. */
  map?: "string" | "bytes";
}

const str = (name: string): Field => ({ name, type: "string" });
const msg = (name: string, message: string, repeated = false): Field => ({ name, type: { message }, repeated });

/** Field numbers from k8s.io/api and k8s.io/apimachinery `generated.proto`. */
const MESSAGES: Record<string, Record<number, Field>> = {
  ObjectMeta: {
    1: str("name"),
    2: str("generateName"),
    3: str("namespace"),
    4: str("selfLink"),
    5: str("uid"),
    6: str("resourceVersion"),
    7: { name: "generation", type: "int64" },
    8: { name: "creationTimestamp", type: "time" },
    9: { name: "deletionTimestamp", type: "time" },
    10: { name: "deletionGracePeriodSeconds", type: "int64" },
    11: { name: "labels", type: "string", map: "string" },
    12: { name: "annotations", type: "string", map: "string" },
    13: msg("ownerReferences", "OwnerReference", true),
    14: { name: "finalizers", type: "string", repeated: true },
    17: msg("managedFields", "ManagedFieldsEntry", true),
  },
  OwnerReference: {
    5: str("apiVersion"),
    1: str("kind"),
    3: str("name"),
    4: str("uid"),
    6: { name: "controller", type: "bool" },
    7: { name: "blockOwnerDeletion", type: "bool" },
  },
  ManagedFieldsEntry: {
    1: str("manager"),
    2: str("operation"),
    3: str("apiVersion"),
    4: { name: "time", type: "time" },
    6: str("fieldsType"),
    7: { name: "fieldsV1", type: "fieldsV1" },
    8: str("subresource"),
  },
  DeleteOptions: {
    1: { name: "gracePeriodSeconds", type: "int64" },
    2: msg("preconditions", "Preconditions"),
    3: { name: "orphanDependents", type: "bool" },
    4: str("propagationPolicy"),
    5: { name: "dryRun", type: "string", repeated: true },
    6: { name: "ignoreStoreReadErrorWithClusterBreakingPotential", type: "bool" },
  },
  Preconditions: { 1: str("uid"), 2: str("resourceVersion") },
  Time: { 1: { name: "seconds", type: "int64" }, 2: { name: "nanos", type: "int32" } },
  Secret: {
    1: msg("metadata", "ObjectMeta"),
    5: { name: "immutable", type: "bool" },
    2: { name: "data", type: "bytes", map: "bytes" },
    4: { name: "stringData", type: "string", map: "string" },
    3: str("type"),
  },
  ConfigMap: {
    1: msg("metadata", "ObjectMeta"),
    4: { name: "immutable", type: "bool" },
    2: { name: "data", type: "string", map: "string" },
    3: { name: "binaryData", type: "bytes", map: "bytes" },
  },
  Namespace: { 1: msg("metadata", "ObjectMeta"), 2: msg("spec", "NamespaceSpec"), 3: msg("status", "NamespaceStatus") },
  NamespaceSpec: { 1: { name: "finalizers", type: "string", repeated: true } },
  NamespaceStatus: { 1: str("phase") },
  ServiceAccount: {
    1: msg("metadata", "ObjectMeta"),
    2: msg("secrets", "ObjectReference", true),
    3: msg("imagePullSecrets", "LocalObjectReference", true),
    4: { name: "automountServiceAccountToken", type: "bool" },
  },
  ObjectReference: { 1: str("kind"), 2: str("namespace"), 3: str("name"), 4: str("uid"), 5: str("apiVersion"), 6: str("resourceVersion"), 7: str("fieldPath") },
  LocalObjectReference: { 1: str("name") },
  Eviction: { 1: msg("metadata", "ObjectMeta"), 2: msg("deleteOptions", "DeleteOptions") },
  // The envelope: runtime.Unknown and its TypeMeta.
  Unknown: { 1: msg("typeMeta", "TypeMeta"), 2: { name: "raw", type: "bytes" }, 3: str("contentEncoding"), 4: str("contentType") },
  TypeMeta: { 1: str("apiVersion"), 2: str("kind") },
};

/** Kinds whose bodies can be decoded. */
export const PROTOBUF_KINDS: readonly string[] = ["Secret", "ConfigMap", "Namespace", "ServiceAccount", "Eviction", "DeleteOptions"];

const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

class Reader {
  pos = 0;
  constructor(private readonly buf: Buffer) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= this.buf.length) throw new ProtobufError("truncated varint");
      const byte = this.buf[this.pos++] ?? 0;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 63n) throw new ProtobufError("varint too long");
    }
  }

  bytes(): Buffer {
    const length = Number(this.varint());
    if (this.pos + length > this.buf.length) throw new ProtobufError("truncated field");
    const out = this.buf.subarray(this.pos, this.pos + length);
    this.pos += length;
    return out;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.varint();
        return;
      case 1:
        this.pos += 8;
        break;
      case 2:
        this.bytes();
        return;
      case 5:
        this.pos += 4;
        break;
      default:
        throw new ProtobufError(`unsupported wire type ${wireType}`);
    }
    if (this.pos > this.buf.length) throw new ProtobufError("truncated field");
  }
}

/** int64 as Go's JSON writes it: a number (the values that occur fit a double). */
function int64(value: bigint): number {
  return Number(BigInt.asIntN(64, value));
}

function rfc3339(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

function scalar(type: Scalar, wireType: number, r: Reader): unknown {
  switch (type) {
    case "string":
      return r.bytes().toString("utf8");
    case "bytes":
      return r.bytes().toString("base64");
    case "bool":
      return r.varint() !== 0n;
    case "int64":
      return int64(r.varint());
    case "int32":
      return Number(BigInt.asIntN(32, r.varint()));
    case "time": {
      const t = decode("Time", r.bytes());
      return rfc3339(typeof t.seconds === "number" ? t.seconds : 0);
    }
    case "fieldsV1": {
      const raw = new Reader(r.bytes());
      let text = "{}";
      while (!raw.done) {
        const tag = Number(raw.varint());
        if (tag >>> 3 === 1 && (tag & 7) === 2) text = raw.bytes().toString("utf8");
        else raw.skip(tag & 7);
      }
      try {
        return JSON.parse(text) as unknown;
      } catch {
        return {};
      }
    }
  }
  throw new ProtobufError(`unexpected wire type ${wireType}`);
}

function decode(message: string, buf: Buffer): Obj {
  const fields = MESSAGES[message];
  if (fields === undefined) throw new ProtobufError(`no schema for ${message}`, true);
  const out: Obj = {};
  const r = new Reader(buf);
  while (!r.done) {
    const tag = Number(r.varint());
    const number = tag >>> 3;
    const wireType = tag & 7;
    const field = fields[number];
    if (field === undefined) {
      r.skip(wireType);
      continue;
    }
    if (field.map !== undefined) {
      const entry = new Reader(r.bytes());
      let key = "";
      let value: unknown = "";
      while (!entry.done) {
        const t = Number(entry.varint());
        if (t >>> 3 === 1 && (t & 7) === 2) key = entry.bytes().toString("utf8");
        else if (t >>> 3 === 2 && (t & 7) === 2) value = scalar(field.map, 2, entry);
        else entry.skip(t & 7);
      }
      const map = (out[field.name] as Obj | undefined) ?? {};
      map[key] = value;
      out[field.name] = map;
      continue;
    }
    let value: unknown;
    if (typeof field.type === "object") {
      if (wireType !== 2) throw new ProtobufError(`field ${field.name} of ${message} has wire type ${wireType}`);
      value = decode(field.type.message, r.bytes());
    } else if (field.repeated === true && wireType === 2 && (field.type === "bool" || field.type === "int64" || field.type === "int32")) {
      // A packed repeated scalar.
      const packed = new Reader(r.bytes());
      const list = (out[field.name] as unknown[] | undefined) ?? [];
      while (!packed.done) list.push(scalar(field.type, 0, packed));
      out[field.name] = list;
      continue;
    } else {
      const expected = field.type === "bool" || field.type === "int64" || field.type === "int32" ? 0 : 2;
      if (wireType !== expected) throw new ProtobufError(`field ${field.name} of ${message} has wire type ${wireType}`);
      value = scalar(field.type, wireType, r);
    }
    if (field.repeated === true) {
      const list = (out[field.name] as unknown[] | undefined) ?? [];
      list.push(value);
      out[field.name] = list;
    } else {
      out[field.name] = value;
    }
  }
  return out;
}

/**
 * A protobuf body (`k8s\0` + runtime.Unknown wrapping the object) as the JSON
 * object a client would have sent.
 *
 * @throws ProtobufError when it is not such a body, or of a kind without a schema here.
 */
export function decodeKubeProtobuf(body: Buffer): Obj {
  if (body.length < MAGIC.length || !body.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new ProtobufError("the body does not start with the Kubernetes protobuf prefix");
  }
  const envelope = decode("Unknown", body.subarray(MAGIC.length));
  const typeMeta = (envelope.typeMeta as Obj | undefined) ?? {};
  const kind = typeof typeMeta.kind === "string" ? typeMeta.kind : "";
  const apiVersion = typeof typeMeta.apiVersion === "string" ? typeMeta.apiVersion : "";
  if (envelope.contentEncoding !== undefined && envelope.contentEncoding !== "") throw new ProtobufError(`unsupported content encoding ${String(envelope.contentEncoding)}`);
  if (!PROTOBUF_KINDS.includes(kind)) {
    throw new ProtobufError(`the simulator cannot read ${kind || "this kind"} as protobuf (only ${PROTOBUF_KINDS.join(", ")}); send it as application/json`, true);
  }
  const raw = typeof envelope.raw === "string" ? Buffer.from(envelope.raw, "base64") : Buffer.alloc(0);
  const obj = decode(kind, raw);
  const out: Obj = {};
  if (apiVersion !== "") out.apiVersion = apiVersion;
  out.kind = kind;
  return Object.assign(out, obj);
}
