/**
 * HTTP plumbing shared by the simulator's routes: Norman error bodies, body
 * reading and JSON replies.
 */
import type { IncomingMessage, ServerResponse } from "node:http";

/** An error that becomes a Norman error body with its HTTP status. */
export class NormanError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly fieldName?: string,
  ) {
    super(message);
    this.name = "NormanError";
  }
}

/** What a route answers; written to the socket only at the very end so faults can replace it. */
export interface Reply {
  status: number;
  body: unknown;
  /** Set for a non-JSON reply, whose body is then a string written as is. */
  contentType?: string;
  /** A streaming reply (Kubernetes watch): called instead of writing `body`. */
  stream?: (res: ServerResponse) => void;
}

/** An error that becomes a Kubernetes `Status` object with its HTTP status. */
export class KubeError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = "KubeError";
  }
}

/** A Kubernetes failure `Status`, e.g. `{kind:"Status", status:"Failure", reason:"NotFound", code:404}`. */
export function kubeStatus(code: number, reason: string, message: string, details?: Record<string, unknown>): Record<string, unknown> {
  const body: Record<string, unknown> = { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason };
  if (details !== undefined) body.details = details;
  body.code = code;
  return body;
}

export function kubeErrorReply(err: KubeError): Reply {
  return { status: err.code, body: kubeStatus(err.code, err.reason, err.message, err.details) };
}

/** The Kubernetes Status reason for an HTTP status, for faults that only name a status. */
export function kubeReasonForStatus(status: number): string {
  switch (status) {
    case 400:
      return "BadRequest";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "NotFound";
    case 405:
      return "MethodNotAllowed";
    case 409:
      return "Conflict";
    case 410:
      return "Expired";
    case 415:
      return "UnsupportedMediaType";
    case 422:
      return "Invalid";
    case 429:
      return "TooManyRequests";
    case 503:
      return "ServiceUnavailable";
    case 504:
      return "Timeout";
    default:
      return "InternalError";
  }
}

/** Norman's error shape, e.g. `{type:"error", status:422, code:"NotUnique", fieldName:"name"}`. */
export function errorBody(status: number, code: string, message: string, fieldName?: string): Record<string, unknown> {
  const body: Record<string, unknown> = { type: "error", baseType: "error", status, code, message };
  if (fieldName !== undefined) body.fieldName = fieldName;
  return body;
}

export function errorReply(status: number, code: string, message: string, fieldName?: string): Reply {
  return { status, body: errorBody(status, code, message, fieldName) };
}

export function fromNormanError(err: NormanError): Reply {
  return errorReply(err.status, err.code, err.message, err.fieldName);
}

/** The Norman code Rancher uses for a status, for faults that only name a status. */
export function codeForStatus(status: number): string {
  switch (status) {
    case 400:
      return "InvalidBodyContent";
    case 401:
      return "Unauthorized";
    case 403:
      return "PermissionDenied";
    case 404:
      return "NotFound";
    case 405:
      return "MethodNotAllowed";
    case 409:
      return "Conflict";
    case 422:
      return "InvalidFormat";
    case 429:
      return "TooManyRequests";
    default:
      return "ServerError";
  }
}

/**
 * Reads the request body up to `limit` bytes. The whole body is always
 * consumed (even when too large) so keep-alive connections stay usable.
 */
export async function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return (await readBodyBytes(req, limit)).toString("utf8");
}

/** The request body as bytes (for binary bodies such as protobuf). */
export function readBodyBytes(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    let settled = false;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        tooLarge = true;
        chunks.length = 0;
      } else if (!tooLarge) {
        chunks.push(chunk);
      }
    });
    req.on("end", () => {
      settled = true;
      if (tooLarge) reject(new NormanError(413, "InvalidBodyContent", `request body is larger than ${limit} bytes`));
      else resolve(Buffer.concat(chunks));
    });
    req.on("error", (err) => {
      if (!settled) reject(err);
      settled = true;
    });
    req.on("close", () => {
      if (!settled) reject(new Error("client closed the connection before the body was read"));
      settled = true;
    });
  });
}

/** True for `{...}` values as produced by JSON.parse (not arrays, not null). */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Parses a request body that must be a JSON object; anything else is
 * Norman's 422 InvalidBodyContent (or `status` when given, for admin routes).
 */
export function parseJsonObject(text: string, status = 422): Record<string, unknown> {
  if (text.trim() === "") throw new NormanError(status, "InvalidBodyContent", "request body must be a JSON object, got an empty body");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new NormanError(status, "InvalidBodyContent", `request body is not valid JSON: ${(err as Error).message}`);
  }
  if (!isPlainObject(parsed)) throw new NormanError(status, "InvalidBodyContent", "request body must be a JSON object");
  return parsed;
}

/** Writes a JSON reply unless the client is already gone (e.g. after close()). */
export function sendReply(res: ServerResponse, reply: Reply): void {
  if (res.headersSent || res.writableEnded || res.destroyed) return;
  if (reply.stream !== undefined) {
    reply.stream(res);
    return;
  }
  const raw = reply.contentType !== undefined && typeof reply.body === "string";
  const text = raw ? (reply.body as string) : JSON.stringify(reply.body);
  res.statusCode = reply.status;
  res.setHeader("content-type", raw ? (reply.contentType as string) : "application/json");
  res.setHeader("content-length", Buffer.byteLength(text));
  res.end(text);
}

/** Rancher's timestamp format: RFC 3339 in UTC without fractional seconds. */
export function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}
