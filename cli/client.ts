// The CLI's only way to Kumo: JSON over HTTP to the API, problem documents mapped to exit codes.

/** The exit codes of every `kumo` command (documented in docs/cli.md and `kumo --help`). */
export const exitCodes = {
  ok: 0,
  /** The operation failed or was cancelled (with --wait), or any other error. */
  failed: 1,
  /** Unknown command or flag, missing or extra argument. */
  usage: 2,
  /** 401 or 403: no token, an unknown one, or too weak a role. */
  auth: 3,
  notFound: 4,
  conflict: 5,
  /** 400 (and 413, 415, 422): the API refused the input. */
  invalid: 6,
  /** The API cannot be reached, or answered 5xx. */
  unreachable: 7,
} as const;

/** The exit code for an HTTP error status. */
export function exitCodeOf(status: number): number {
  if (status === 401 || status === 403) return exitCodes.auth;
  if (status === 404) return exitCodes.notFound;
  if (status === 409) return exitCodes.conflict;
  if (status === 400 || status === 413 || status === 415 || status === 422) return exitCodes.invalid;
  if (status >= 500) return exitCodes.unreachable;
  return exitCodes.failed;
}

/** An RFC 9457 problem document as the API sends it. */
export interface ProblemDocument {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  errors?: Array<{ field: string; in?: string; message: string }>;
  [extension: string]: unknown;
}

/** A usage error or any failure the CLI itself detects; `exitCode` says which. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = exitCodes.failed,
    /** Extra lines printed after the message (hints, field errors, usage). */
    readonly lines: string[] = [],
  ) {
    super(message);
  }
}

/** An error answer of the API (status >= 400), or no answer at all (status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly method: string,
    readonly url: string,
    readonly body: unknown,
    message: string,
  ) {
    super(message);
  }

  get problem(): ProblemDocument | null {
    return this.body && typeof this.body === 'object' ? (this.body as ProblemDocument) : null;
  }

  get exitCode(): number {
    return this.status === 0 ? exitCodes.unreachable : exitCodeOf(this.status);
  }

  /** What to tell a human: the problem's detail, each wrong field, and a hint for auth errors. */
  describe(): { message: string; lines: string[] } {
    if (this.status === 0) return { message: this.message, lines: ['is the API running? set KUMO_URL or pass --url'] };
    const problem = this.problem;
    const title = problem?.title ?? statusText(this.status);
    const detail = problem?.detail ?? (typeof this.body === 'string' && this.body.trim() ? this.body.trim().slice(0, 500) : this.message);
    const lines = (problem?.errors ?? []).map((error) => `${error.field}: ${error.message}`);
    if (this.status === 401) lines.push('set KUMO_TOKEN or pass --token with a valid API token');
    if (this.status === 403) lines.push('the token is valid but its role does not allow this');
    const running = typeof problem?.operation === 'string' ? problem.operation : null;
    if (this.status === 409 && running) lines.push(`see ${running} (kumo ops get ${running.split('/').pop() ?? ''})`);
    return { message: `${title} (${this.status}): ${detail}`, lines };
  }
}

function statusText(status: number): string {
  const texts: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 409: 'Conflict', 415: 'Unsupported Media Type', 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout' };
  return texts[status] ?? `HTTP ${status}`;
}

export interface RequestOptions {
  /** A JSON body (serialized here). */
  body?: unknown;
  /** A body sent as is, with Content-Type application/json. */
  raw?: string;
  /** The body's Content-Type when it is not application/json (e.g. application/cloudevents+json). */
  contentType?: string;
  /** Statuses >= 400 to return instead of throwing (e.g. an invocation's own error answers). */
  accept?: number[];
  timeoutMs?: number;
}

export interface ApiResponse<T = unknown> {
  status: number;
  body: T;
}

/** A small client of Kumo's API. */
export class Client {
  readonly baseUrl: string;

  constructor(
    baseUrl: string,
    private readonly token: string | undefined,
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
  }

  async request<T = unknown>(method: string, path: string, options: RequestOptions = {}): Promise<ApiResponse<T>> {
    const url = `${this.baseUrl}${path}`;
    const headers: Record<string, string> = { accept: 'application/json, application/problem+json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let body: string | undefined = options.raw;
    if (options.body !== undefined) body = JSON.stringify(options.body);
    if (body !== undefined) headers['content-type'] = options.contentType ?? 'application/json';
    let response: Response;
    try {
      response = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(options.timeoutMs ?? 30_000) });
    } catch (err) {
      throw new ApiError(0, method, url, null, `cannot reach the Kumo API at ${this.baseUrl}: ${reason(err)}`);
    }
    const text = await response.text();
    let parsed: unknown = text;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
    } else parsed = null;
    if (response.status >= 400 && !options.accept?.includes(response.status)) {
      throw new ApiError(response.status, method, url, parsed, `${method} ${path} answered ${response.status}`);
    }
    return { status: response.status, body: parsed as T };
  }

  get<T = unknown>(path: string): Promise<T> {
    return this.request<T>('GET', path).then((response) => response.body);
  }
}

/** The innermost reason of a fetch failure: ECONNREFUSED, a DNS error, a timeout. */
function reason(err: unknown): string {
  if (err instanceof Error) {
    if (err.name === 'TimeoutError') return 'no answer in time';
    const cause = (err as { cause?: unknown }).cause;
    if (cause instanceof Error) {
      const code = (cause as { code?: string }).code;
      return code ? `${code} (${cause.message})` : cause.message;
    }
    return err.message;
  }
  return String(err);
}

/** Encodes one path segment. */
export const seg = (value: string): string => encodeURIComponent(value);
