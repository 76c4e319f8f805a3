import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { ZodError } from 'zod';

/** One field that is wrong, in the request's own terms. */
export interface FieldError {
  field: string;
  in: 'body' | 'query' | 'path' | 'header';
  message: string;
}

/** An RFC 9457 problem document, the shape of every error Kumo's API returns. */
export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  errors?: FieldError[];
  [extension: string]: unknown;
}

const titles: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/**
 * Thrown by handlers to answer with a problem document; `app.onError` renders it.
 * @example throw new Problem(404, 'not-found', `no cluster named "${id}"`);
 */
export class Problem extends Error {
  override readonly name = 'Problem';
  constructor(
    readonly status: ContentfulStatusCode,
    readonly kind: string,
    readonly detail: string,
    readonly extensions: Record<string, unknown> = {},
  ) {
    super(detail);
  }
}

/** Renders a problem document with the `application/problem+json` media type. */
export function problemResponse(c: Context, status: ContentfulStatusCode, kind: string, detail: string, extensions: Record<string, unknown> = {}): Response {
  const body: ProblemBody = {
    type: `https://kumo.dev/problems/${kind}`,
    title: titles[status] ?? 'Error',
    status,
    detail,
    instance: c.req.path,
    ...extensions,
  };
  return c.body(JSON.stringify(body), status, { 'content-type': 'application/problem+json' });
}

/** Lists each failing field of a zod error, with where in the request it was. */
export function fieldErrors(error: ZodError, where: FieldError['in']): FieldError[] {
  return error.issues.flatMap((issue) => {
    // zod reports unknown keys on the object holding them; name each key instead.
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ field: [...issue.path.map(String), key].join('.'), in: where, message: 'unknown field' }));
    }
    return [{ field: issue.path.length ? issue.path.map(String).join('.') : '(root)', in: where, message: issue.message }];
  });
}
